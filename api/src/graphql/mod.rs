//! The GraphQL schema served at `/graphql`: queries, mutations and the
//! `tenantEvents` subscription, with depth, complexity and alias limits.

pub mod billing_types;
pub mod errors;
mod mutation;
mod query;
mod subscription;
pub mod tax_types;
pub mod types;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, OutputType, Schema};

use crate::app::{App, RequestCtx};
use crate::error::{ApiError, ApiResult};
use crate::store::{page_size, Page, PageRequest};

pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

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
        let builder = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
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
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
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
