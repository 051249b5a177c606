//! The aggregator's catalog read from the relational store: tenants (with
//! their states and resellers) and live meters, in the system scope.

use std::collections::HashMap;
use std::sync::RwLock;

use dotmac_aggregator::catalog::{Catalog, CatalogError, CatalogFuture, CatalogSource};
use sea_orm::{EntityTrait, QueryFilter, QuerySelect};

use crate::store::entity::{meter, tenant};
use crate::store::Store;

/// Tenants and live meters, read in the system scope. Also remembers each
/// tenant's reseller, so usage updates can be scoped for subscribers.
pub struct StoreCatalog {
    store: Store,
    resellers: RwLock<HashMap<String, Option<String>>>,
}

impl StoreCatalog {
    pub fn new(store: Store) -> StoreCatalog {
        StoreCatalog {
            store,
            resellers: RwLock::new(HashMap::new()),
        }
    }

    /// The reseller of `tenant`, as of the last load.
    pub fn reseller_of(&self, tenant: &str) -> Option<String> {
        self.resellers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
            .cloned()
            .flatten()
    }

    async fn load_catalog(&self) -> Result<Catalog, CatalogError> {
        let err = |e: &dyn std::fmt::Display| CatalogError(e.to_string());
        let tx = self.store.begin_system().await.map_err(|e| err(&e))?;
        let rows: Vec<(String, String, Option<String>)> = tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Id)
            .column(tenant::Column::State)
            .column(tenant::Column::ResellerId)
            .into_tuple()
            .all(&tx)
            .await
            .map_err(|e| err(&e))?;
        *self.resellers.write().unwrap_or_else(|p| p.into_inner()) = rows
            .iter()
            .map(|(t, _, r)| (t.clone(), r.clone()))
            .collect();
        let tenants = rows.into_iter().map(|(t, s, _)| (t, s));
        let rows = meter::Entity::find()
            .filter(sea_orm::ColumnTrait::is_null(&meter::Column::ArchivedAt))
            .all(&tx)
            .await
            .map_err(|e| err(&e))?;
        let meters = rows
            .iter()
            .map(crate::store::meter_rows::definition)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(&e))?;
        Ok(Catalog::new(tenants, meters))
    }
}

impl CatalogSource for StoreCatalog {
    fn load(&self) -> CatalogFuture<'_> {
        Box::pin(self.load_catalog())
    }
}
