//! The plugin catalog's rows: plugins, their versions and tiers. The
//! catalog is the platform's: every scope reads all of it; only platform
//! admins write it (the use case checks).

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::entity::{plugin, plugin_tier, plugin_version};
use super::{fetch_page, is_unique_violation, Page, PageRequest, Tx};
use crate::error::{ApiError, ApiResult};

pub use plugin::Model as PluginRow;
pub use plugin_tier::Model as PluginTierRow;
pub use plugin_version::Model as PluginVersionRow;

/// A plugin with its tiers (lowest first) and versions (oldest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEntry {
    pub plugin: PluginRow,
    pub tiers: Vec<PluginTierRow>,
    pub versions: Vec<PluginVersionRow>,
}

/// Writes a plugin whole: the row (inserted, or updated when its id
/// exists), and its tiers and versions replaced. CONFLICT on a slug taken.
pub async fn put(tx: &Tx, entry: &PluginEntry, is_new: bool) -> ApiResult<()> {
    let row = plugin::ActiveModel::from(entry.plugin.clone()).reset_all();
    let written = if is_new {
        row.insert(tx).await.map(|_| ())
    } else {
        row.update(tx).await.map(|_| ())
    };
    written.map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict("input.slug", "a plugin with this slug already exists")
        } else {
            e.into()
        }
    })?;
    plugin_tier::Entity::delete_many()
        .filter(plugin_tier::Column::PluginId.eq(&entry.plugin.id))
        .exec(tx)
        .await?;
    plugin_version::Entity::delete_many()
        .filter(plugin_version::Column::PluginId.eq(&entry.plugin.id))
        .exec(tx)
        .await?;
    for t in &entry.tiers {
        plugin_tier::ActiveModel::from(t.clone())
            .reset_all()
            .insert(tx)
            .await?;
    }
    for v in &entry.versions {
        plugin_version::ActiveModel::from(v.clone())
            .reset_all()
            .insert(tx)
            .await?;
    }
    Ok(())
}

/// The plugin whose id or slug is `key`.
pub async fn get(tx: &Tx, key: &str) -> ApiResult<Option<PluginEntry>> {
    let found = plugin::Entity::find()
        .filter(plugin::Column::Id.eq(key).or(plugin::Column::Slug.eq(key)))
        .one(tx)
        .await?;
    match found {
        Some(p) => Ok(Some(entries(tx, vec![p]).await?.remove(0))),
        None => Ok(None),
    }
}

/// Plugins, a page at a time, by id.
pub async fn list(tx: &Tx, page: PageRequest<'_>) -> ApiResult<Page<PluginEntry>> {
    let page = fetch_page(tx, plugin::Entity::find(), plugin::Column::Id, page).await?;
    Ok(Page {
        items: entries(tx, page.items).await?,
        has_next: page.has_next,
    })
}

/// Several plugins by id, with their tiers and versions.
pub async fn get_many(tx: &Tx, ids: &[String]) -> ApiResult<Vec<PluginEntry>> {
    let plugins = plugin::Entity::find()
        .filter(plugin::Column::Id.is_in(ids.iter().cloned()))
        .all(tx)
        .await?;
    entries(tx, plugins).await
}

/// Tiers and versions of `plugins`, in two queries for the lot.
async fn entries(tx: &Tx, plugins: Vec<PluginRow>) -> ApiResult<Vec<PluginEntry>> {
    let ids: Vec<String> = plugins.iter().map(|p| p.id.clone()).collect();
    let mut tiers = plugin_tier::Entity::find()
        .filter(plugin_tier::Column::PluginId.is_in(ids.iter().cloned()))
        .all(tx)
        .await?;
    tiers.sort_by_key(|t| t.tier);
    let versions = plugin_version::Entity::find()
        .filter(plugin_version::Column::PluginId.is_in(ids))
        .order_by_asc(plugin_version::Column::ReleasedAt)
        .all(tx)
        .await?;
    Ok(plugins
        .into_iter()
        .map(|p| PluginEntry {
            tiers: tiers
                .iter()
                .filter(|t| t.plugin_id == p.id)
                .cloned()
                .collect(),
            versions: versions
                .iter()
                .filter(|v| v.plugin_id == p.id)
                .cloned()
                .collect(),
            plugin: p,
        })
        .collect())
}
