//! The relational store (sea-orm over Postgres or SQLite). Every function
//! takes the caller's [`Scope`] and filters by it; on Postgres the same scope
//! is also set on the transaction so row-level security enforces it twice.

pub mod api_key_rows;
pub mod audit_log;
pub mod billing_rows;
pub mod entity;
pub mod instance_rows;
pub mod licence_rows;
pub mod login_attempt_rows;
pub mod meter_rows;
pub mod outbox_rows;
pub mod plugin_rows;
pub mod reseller_rows;
pub mod rollout_rows;
pub mod tax_rate_rows;
pub mod tenant_rows;
pub mod token_rows;
pub mod user_rows;

use std::time::Duration;

use dotmac_schema::Scope;
use sea_orm::sea_query::{Condition, Expr, Query, SimpleExpr};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::error::{ApiError, ApiResult, InternalError};

pub type Tx = DatabaseTransaction;

/// A pool of connections to the relational database.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// This process's row-level security key: each Postgres session learns
    /// it on its first transaction and then accepts a scope only with a
    /// proof made with it (migration `000013_proven_scope`).
    scope_key: std::sync::Arc<[u8; 32]>,
}

/// One page of a keyset-paginated list, ordered by id (ids are time-ordered).
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    pub first: u64,
    pub after: Option<&'a str>,
}

pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

pub const DEFAULT_PAGE: u64 = 20;
pub const MAX_PAGE: u64 = 100;

impl Store {
    /// Connects; SQLite files are created when missing and put in WAL mode.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Store, sea_orm::DbErr> {
        let sqlite = url.starts_with("sqlite:");
        let mut opts = ConnectOptions::new(url.to_owned());
        // One writer at a time is what SQLite can do anyway; a single
        // connection avoids SQLITE_BUSY on lock upgrades inside transactions.
        opts.max_connections(if sqlite { 1 } else { pool_size })
            .min_connections(if sqlite { 1 } else { 2.min(pool_size) })
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false);
        let db = Database::connect(opts).await?;
        if sqlite {
            db.execute_unprepared("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;")
                .await?;
        }
        Ok(Store {
            db,
            scope_key: std::sync::Arc::new(rand::random()),
        })
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), sea_orm::DbErr> {
        dotmac_migrations::Migrator::up(&self.db, None).await
    }

    /// Whether row-level security would not bind this connection: the role is
    /// a superuser or BYPASSRLS, or the policies are not active for it.
    /// Always false on SQLite, which has none.
    pub async fn role_bypasses_rls(&self) -> Result<bool, sea_orm::DbErr> {
        if self.backend() != DbBackend::Postgres {
            return Ok(false);
        }
        let row = self
            .db
            .query_one(Statement::from_string(
                DbBackend::Postgres,
                "SELECT (rolsuper OR rolbypassrls OR NOT row_security_active('public.tenants')) AS bypass \
                 FROM pg_roles WHERE rolname = current_user",
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<bool>("", "bypass")?,
            None => false,
        })
    }

    /// A transaction acting in `scope`.
    pub async fn begin(&self, scope: &Scope) -> ApiResult<Tx> {
        let tx = self.db.begin().await?;
        if self.backend() == DbBackend::Postgres {
            let (kind, tenant, reseller) = match scope {
                Scope::All => ("all", String::new(), String::new()),
                Scope::Reseller(r) => ("reseller", String::new(), r.to_string()),
                Scope::Tenant(t) => ("tenant", t.to_string(), String::new()),
            };
            let proven = tx
                .query_one(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT dotmac_enter_scope($1, $2, $3, $4) AS proven",
                    [
                        kind.into(),
                        tenant.into(),
                        reseller.into(),
                        self.scope_key.to_vec().into(),
                    ],
                ))
                .await?
                .map(|row| row.try_get::<bool>("", "proven"))
                .transpose()?;
            // False only when this session's key is not ours: someone else
            // installed one first. Every statement would see nothing, so
            // say so instead of answering empty.
            if proven != Some(true) {
                return Err(ApiError::Internal(InternalError::Other(
                    "row-level security: this database session holds another scope key".into(),
                )));
            }
        }
        Ok(tx)
    }

    /// A transaction with platform-wide visibility, for the code paths that are
    /// explicitly allowed it: authentication (a login does not know its scope
    /// until the user is found), bootstrap and seeding.
    pub async fn begin_system(&self) -> ApiResult<Tx> {
        self.begin(&Scope::All).await
    }
}

/// Rows of `tenants` visible in `scope`.
pub fn tenant_rows_in(scope: &Scope) -> Condition {
    use entity::tenant::Column;
    match scope {
        Scope::All => Condition::all(),
        Scope::Reseller(r) => Condition::all().add(Column::ResellerId.eq(r.as_str())),
        Scope::Tenant(t) => Condition::all().add(Column::Id.eq(t.as_str())),
    }
}

/// Rows whose `tenant_col` names a tenant visible in `scope`.
pub fn owned_by_tenant_in<C: sea_orm::ColumnTrait>(scope: &Scope, tenant_col: C) -> SimpleExpr {
    use entity::tenant::{Column, Entity};
    match scope {
        Scope::All => Expr::value(true),
        Scope::Tenant(t) => tenant_col.eq(t.as_str()),
        Scope::Reseller(r) => tenant_col.in_subquery(
            Query::select()
                .column(Column::Id)
                .from(Entity)
                .and_where(Column::ResellerId.eq(r.as_str()))
                .to_owned(),
        ),
    }
}

use sea_orm::ColumnTrait as _;

/// Clamps a requested page size to `1..=MAX_PAGE`.
pub fn page_size(first: Option<i32>) -> ApiResult<u64> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n < 1 => Err(ApiError::validation("first", "must be at least 1")),
        Some(n) if n as u64 > MAX_PAGE => Err(ApiError::validation(
            "first",
            format!("must be at most {MAX_PAGE}"),
        )),
        Some(n) => Ok(n as u64),
    }
}

/// Cuts one extra row fetched to learn whether another page follows.
pub fn into_page<T>(mut rows: Vec<T>, first: u64) -> Page<T> {
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Page {
        items: rows,
        has_next,
    }
}

/// One page of `query` in id order: rows after the cursor, one extra
/// fetched to learn whether another page follows.
pub async fn fetch_page<E>(
    tx: &Tx,
    query: sea_orm::Select<E>,
    id: E::Column,
    page: PageRequest<'_>,
) -> ApiResult<Page<E::Model>>
where
    E: sea_orm::EntityTrait,
{
    use sea_orm::{QueryFilter, QueryOrder, QuerySelect};
    let mut query = query;
    if let Some(after) = page.after {
        query = query.filter(id.gt(after));
    }
    let rows = query.order_by_asc(id).limit(page.first + 1).all(tx).await?;
    Ok(into_page(rows, page.first))
}

/// Inserts `row` whole; a unique-constraint violation answers CONFLICT on
/// `field` with `reason` (what is unique says what the caller did twice).
pub async fn insert_unique<A>(
    tx: &Tx,
    row: A,
    field: &str,
    reason: &str,
) -> ApiResult<<A::Entity as sea_orm::EntityTrait>::Model>
where
    A: sea_orm::ActiveModelTrait + sea_orm::ActiveModelBehavior + Send,
    <A::Entity as sea_orm::EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    row.insert(tx).await.map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict(field, reason)
        } else {
            e.into()
        }
    })
}

/// Is this a unique-constraint violation (for a CONFLICT answer)?
pub fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
