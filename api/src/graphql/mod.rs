//! The GraphQL schema served at `/graphql`, with depth, complexity and
//! alias limits. Each capability has its own root file (queries, mutations,
//! subscriptions and their types), merged here; a new capability adds a
//! file and a line in each root below.

pub mod audit;
pub mod billing;
pub mod directory;
pub mod errors;
pub mod identity;
pub mod instance_views;
pub mod instances;
pub mod licensing;
pub mod metering;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, MergedObject, MergedSubscription, OutputType, Schema};
use dotmac_schema::{ResellerId, Scope, TenantId};

use crate::app::App;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::store::{page_size, Page, PageRequest};

type Result<T> = async_graphql::Result<T>;

/// Every query field, by capability.
#[derive(MergedObject, Default)]
pub struct QueryRoot(
    identity::IdentityQuery,
    directory::DirectoryQuery,
    metering::MeteringQuery,
    billing::BillingQuery,
    audit::AuditQuery,
    instances::InstanceQuery,
    licensing::LicensingQuery,
);

/// Every mutation, by capability.
#[derive(MergedObject, Default)]
pub struct MutationRoot(
    identity::IdentityMutation,
    directory::DirectoryMutation,
    instances::InstanceMutation,
    licensing::LicensingMutation,
    metering::MeteringMutation,
    billing::BillingMutation,
);

/// Every subscription, by capability.
#[derive(MergedSubscription, Default)]
pub struct SubscriptionRoot(
    directory::DirectorySubscription,
    instances::InstanceSubscription,
    metering::MeteringSubscription,
    billing::BillingSubscription,
);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schemas of one process: `http` answers queries and mutations (the
/// HTTP handler applies error codes and the alias limit), `ws` serves
/// subscriptions with the [`errors::ErrorCodes`] extension doing the same.
#[derive(Clone)]
pub struct Schemas {
    pub http: AppSchema,
    pub ws: AppSchema,
}

/// Builds the schemas with the limits from the configuration.
pub fn build_schemas(app: App) -> Schemas {
    let cfg = app.config.graphql.clone();
    let base = || {
        let builder = Schema::build(
            QueryRoot::default(),
            MutationRoot::default(),
            SubscriptionRoot::default(),
        )
        .data(app.clone())
        .limit_depth(cfg.max_depth)
        .limit_complexity(cfg.max_complexity);
        if cfg.introspection {
            builder
        } else {
            builder.disable_introspection()
        }
    };
    Schemas {
        http: base().finish(),
        ws: base()
            .extension(errors::ErrorCodes {
                max_aliases: cfg.max_aliases,
            })
            .finish(),
    }
}

/// The SDL of the schema, committed as `schema/dotmac.graphql`.
pub fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .finish()
    .sdl()
}

/// The application and the caller of this request.
pub(crate) fn ctx<'a>(gctx: &'a Context<'_>) -> (&'a App, &'a RequestCtx) {
    static ANONYMOUS: std::sync::OnceLock<RequestCtx> = std::sync::OnceLock::new();
    let rc = gctx
        .data_opt::<RequestCtx>()
        .unwrap_or_else(|| ANONYMOUS.get_or_init(RequestCtx::default));
    (gctx.data_unchecked::<App>(), rc)
}

/// The complexity of a connection field: its page size (`first`, or the
/// default page; clamped as the store clamps it) times what one item
/// costs, so that a hundred-item page of nested fields counts as such
/// against `graphql.max_complexity`.
pub(crate) fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    use crate::store::{DEFAULT_PAGE, MAX_PAGE};
    let items = first.map_or(DEFAULT_PAGE, |f| {
        u64::try_from(f).unwrap_or(1).clamp(1, MAX_PAGE)
    });
    usize::try_from(items)
        .unwrap_or(usize::MAX)
        .saturating_mul(child_complexity)
        .saturating_add(1)
}

/// Validates `first`/`after` of a connection; `after` must be an id of the listed kind.
pub(crate) fn page_request<'a, T: std::str::FromStr>(
    first: Option<i32>,
    after: Option<&'a str>,
) -> ApiResult<PageRequest<'a>> {
    let first = page_size(first)?;
    if let Some(a) = after {
        if a.parse::<T>().is_err() {
            return Err(ApiError::validation(
                "after",
                "is not a cursor of this list",
            ));
        }
    }
    Ok(PageRequest { first, after })
}

/// A Relay connection from one page; the cursor is the row id.
pub(crate) fn connection<R, N: OutputType>(
    page: Page<R>,
    had_cursor: bool,
    id_of: impl Fn(&R) -> String,
    node: impl Fn(R) -> N,
) -> Connection<String, N> {
    let mut conn = Connection::new(had_cursor, page.has_next);
    conn.edges.extend(
        page.items
            .into_iter()
            .map(|r| Edge::new(id_of(&r), node(r))),
    );
    conn
}

/// A `tenantId` argument checked against the caller's scope: NOT_FOUND when
/// outside it, whatever exists.
pub(crate) async fn tenant_in_scope(
    app: &App,
    scope: &Scope,
    tenant_id: Option<&str>,
) -> Result<Option<String>> {
    let Some(t) = tenant_id else {
        return Ok(None);
    };
    let id: TenantId = crate::service::parse_id("tenantId", t)?;
    let tx = app.store.begin(scope).await?;
    crate::store::tenant_rows::get(&tx, scope, &id).await?;
    tx.commit().await?;
    Ok(Some(id.to_string()))
}

/// A subscription lives no longer than the token that opened it.
pub(crate) fn token_expiry(app: &App, rc: &RequestCtx) -> tokio::time::Sleep {
    let remaining = rc
        .expires_at
        .map(|exp| (exp - app.clock.now()).to_std().unwrap_or_default())
        .unwrap_or(std::time::Duration::MAX);
    tokio::time::sleep(remaining.min(std::time::Duration::from_secs(86_400 * 365)))
}

/// Whether `scope` may see an event of this tenant.
pub(crate) fn covers(scope: &Scope, tenant_id: &str, reseller_id: Option<&str>) -> bool {
    let Ok(tenant) = tenant_id.parse::<TenantId>() else {
        return false;
    };
    let reseller = reseller_id.and_then(|r| r.parse::<ResellerId>().ok());
    scope.covers_tenant(&tenant, reseller.as_ref())
}
