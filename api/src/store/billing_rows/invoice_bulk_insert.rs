//! The Postgres insert of a close's invoices: one text array per column,
//! unnested by the server.

use sea_orm::{ColumnTrait, DbBackend, Statement};

use super::InvoiceRow;
use crate::error::{ApiError, ApiResult};
use crate::store::entity::invoice;

/// The Postgres insert of `rows` as one text array per column that the
/// server unnests: 23 binary binds for the whole chunk, where one JSON
/// parameter made Postgres parse (and the client escape) every invoice's
/// lines a second time, and a bind per value would pass 65,535 at 2,849
/// rows. Columns come from the entity, so a new one cannot be left out.
/// An array bound through sea-query cannot hold NULL, so an optional
/// column sends '' for none and reads it back through NULLIF.
pub(super) fn unnest_insert(rows: &[InvoiceRow]) -> ApiResult<Statement> {
    use sea_orm::sea_query::{ArrayType, Value};
    use sea_orm::{Iterable, ModelTrait};
    let mut names = Vec::new();
    let mut selects = Vec::new();
    let mut arrays = Vec::new();
    for (i, column) in invoice::Column::iter().enumerate() {
        let name = sea_orm::IdenStatic::as_str(&column).to_owned();
        let mut timestamp = false;
        let mut cells = Vec::with_capacity(rows.len());
        for row in rows {
            let text = match row.get(column) {
                Value::String(Some(text)) if text.is_empty() && column.def().is_null() => {
                    return Err(ApiError::internal(format!(
                        "invoice column {name} cannot be sent empty"
                    )))
                }
                Value::String(text) => text.map(|t| *t).unwrap_or_default(),
                Value::ChronoDateTimeUtc(at) => {
                    timestamp = true;
                    at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                        .unwrap_or_default()
                }
                other => {
                    return Err(ApiError::internal(format!(
                        "invoice column {name} has an unexpected type: {other:?}"
                    )))
                }
            };
            cells.push(Value::String(Some(Box::new(text))));
        }
        let mut select = format!("c{i}");
        if column.def().is_null() {
            select = format!("NULLIF({select}, '')");
        }
        if timestamp {
            select = format!("{select}::timestamptz");
        }
        names.push(name);
        selects.push(select);
        arrays.push(Value::Array(ArrayType::String, Some(Box::new(cells))));
    }
    let params: Vec<String> = (1..=arrays.len())
        .map(|i| format!("${i}::text[]"))
        .collect();
    let aliases: Vec<String> = (0..arrays.len()).map(|i| format!("c{i}")).collect();
    let sql = format!(
        "INSERT INTO invoices ({}) SELECT {} FROM unnest({}) AS r({}) \
         ON CONFLICT (subscription_id, period_start) DO NOTHING",
        names.join(", "),
        selects.join(", "),
        params.join(", "),
        aliases.join(", ")
    );
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        arrays,
    ))
}
