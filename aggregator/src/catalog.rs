//! What the aggregator needs from the relational store: which tenants may
//! meter, and the live meters by event type. Loaded through a
//! [`CatalogSource`] and refreshed while running, so meter and tenant changes
//! apply without a restart.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use dotmac_schema::usage::Meter;

/// Tenant states whose usage is metered: a tenant under maintenance still
/// serves its subscribers, so its usage still counts.
pub const METERED_STATES: &[&str] = &["active", "maintenance"];

/// A snapshot of tenants and meters.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    tenants: HashMap<String, String>,
    meters_by_type: HashMap<String, Vec<Meter>>,
    meter_count: usize,
}

impl Catalog {
    /// `tenants` as (id, state); `meters` are the unarchived ones.
    pub fn new(tenants: impl IntoIterator<Item = (String, String)>, meters: Vec<Meter>) -> Catalog {
        let meter_count = meters.len();
        let mut meters_by_type: HashMap<String, Vec<Meter>> = HashMap::new();
        for m in meters {
            meters_by_type
                .entry(m.event_type.clone())
                .or_default()
                .push(m);
        }
        Catalog {
            tenants: tenants.into_iter().collect(),
            meters_by_type,
            meter_count,
        }
    }

    /// The tenant's state, when the tenant exists.
    pub fn tenant_state(&self, id: &str) -> Option<&str> {
        self.tenants.get(id).map(String::as_str)
    }

    /// The meters that count events of this type.
    pub fn meters_for(&self, event_type: &str) -> &[Meter] {
        self.meters_by_type
            .get(event_type)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn meter_count(&self) -> usize {
        self.meter_count
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }
}

/// Why a catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("loading the catalog: {0}")]
pub struct CatalogError(pub String);

pub type CatalogFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Catalog, CatalogError>> + Send + 'a>>;

/// Where the aggregator reads tenants and meters from (Postgres in
/// production, SQLite in `dotmac dev`).
pub trait CatalogSource: Send + Sync + 'static {
    fn load(&self) -> CatalogFuture<'_>;
}

/// A fixed catalog, for benchmarks and tools that have no database.
pub struct StaticCatalog(pub Catalog);

impl CatalogSource for StaticCatalog {
    fn load(&self) -> CatalogFuture<'_> {
        let c = self.0.clone();
        Box::pin(async move { Ok(c) })
    }
}
