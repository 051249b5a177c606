//! Tax rates per jurisdiction (the platform's catalogue) and their
//! conversion to the billing crate's [`JurisdictionRate`].

use chrono::NaiveDate;
use dotmac_billing::{JurisdictionRate, TaxRate};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};

use super::entity::tax_rate;
use super::{fetch_page, insert_unique, Page, PageRequest, Tx};
use crate::error::{ApiError, ApiResult};

pub use tax_rate::Model as TaxRateRow;

/// Adds a rate; CONFLICT when the jurisdiction has one from that date.
pub async fn insert(tx: &Tx, row: TaxRateRow) -> ApiResult<TaxRateRow> {
    insert_unique(
        tx,
        tax_rate::ActiveModel::from(row).reset_all(),
        "input.effectiveFrom",
        "the jurisdiction has a rate from this date already",
    )
    .await
}

/// Rates, optionally of one jurisdiction, a page at a time.
pub async fn list(
    tx: &Tx,
    jurisdiction: Option<&str>,
    page: PageRequest<'_>,
) -> ApiResult<Page<TaxRateRow>> {
    let mut q = tax_rate::Entity::find();
    if let Some(j) = jurisdiction {
        q = q.filter(tax_rate::Column::Jurisdiction.eq(j));
    }
    fetch_page(tx, q, tax_rate::Column::Id, page).await
}

/// Every rate (the close resolves each tenant's from them).
pub async fn all(tx: &Tx) -> ApiResult<Vec<JurisdictionRate>> {
    tax_rate::Entity::find()
        .all(tx)
        .await?
        .iter()
        .map(jurisdiction_rate)
        .collect()
}

pub fn jurisdiction_rate(row: &TaxRateRow) -> ApiResult<JurisdictionRate> {
    let corrupt = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!("stored tax rate {} is unreadable: {e}", row.id))
    };
    Ok(JurisdictionRate {
        jurisdiction: row.jurisdiction.clone(),
        effective_from: row
            .effective_from
            .parse::<NaiveDate>()
            .map_err(|e| corrupt(&e))?,
        rate: TaxRate {
            name: row.name.clone(),
            percent: row.percent.parse().map_err(|e| corrupt(&e))?,
            inclusive: row.inclusive,
        },
    })
}
