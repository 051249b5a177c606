//! The plugin catalog: platform admins write it, everyone signed in reads
//! it. A plugin has versions (each with the framework versions it runs on)
//! and tiers; a tier adds features (each with its enforcement) to the tiers
//! below it and has a monthly fee, optionally a usage price through a
//! meter. Tiers are cumulative by construction: what a tier grants is
//! computed as the union of every tier up to it, never stored.

use std::collections::BTreeSet;

use dotmac_licence::Enforcement;
use dotmac_schema::{Currency, PluginId, PluginTier, Role};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Licensing;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::required_text;
use crate::store::audit_log::{self, AuditEntry};
use crate::store::plugin_rows::{self, PluginEntry, PluginRow, PluginTierRow, PluginVersionRow};
use crate::store::{meter_rows, Page, PageRequest};

/// Features one tier may add, and tiers and versions one plugin may have.
pub const MAX_FEATURES: usize = 50;
pub const MAX_VERSIONS: usize = 100;
/// The highest monthly fee or unit price accepted.
const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// One feature a tier adds, as stored (JSON) and signed into licences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierFeature {
    pub name: String,
    pub enforcement: Enforcement,
}

/// A tier as given.
#[derive(Debug, Clone)]
pub struct TierInput {
    pub tier: PluginTier,
    pub features: Vec<TierFeature>,
    pub monthly_fee: String,
    pub currency: String,
    pub usage_meter: Option<String>,
    pub usage_unit_price: Option<String>,
}

/// A version as given.
#[derive(Debug, Clone)]
pub struct VersionInput {
    pub version: String,
    pub framework_min: String,
    pub framework_max: Option<String>,
}

/// A plugin as given (created whole, or replaced whole).
#[derive(Debug, Clone)]
pub struct PluginInput {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub tiers: Vec<TierInput>,
    pub versions: Vec<VersionInput>,
}

/// The features a tier adds, decoded.
pub fn added_features(row: &PluginTierRow) -> ApiResult<Vec<TierFeature>> {
    serde_json::from_str(&row.features).map_err(|e| {
        ApiError::internal(format!(
            "stored features of {} {:?} are unreadable: {e}",
            row.plugin_id, row.tier
        ))
    })
}

/// Everything `tier` of a plugin grants: its features and every lower
/// tier's (a feature added twice keeps the lower tier's enforcement).
pub fn granted(entry: &PluginEntry, tier: PluginTier) -> ApiResult<Vec<TierFeature>> {
    let mut seen = BTreeSet::new();
    let mut all = Vec::new();
    for row in entry.tiers.iter().filter(|t| t.tier <= tier) {
        for f in added_features(row)? {
            if seen.insert(f.name.clone()) {
                all.push(f);
            }
        }
    }
    Ok(all)
}

/// The standard tiers of DESIGN §8 with a fee each: what `dev` seeds.
pub fn standard_tiers(fees: [&str; 3], currency: &str) -> Vec<TierInput> {
    PluginTier::ALL
        .into_iter()
        .zip(fees)
        .map(|(tier, fee)| TierInput {
            tier,
            features: tier
                .standard_features()
                .iter()
                .map(|name| TierFeature {
                    name: (*name).to_owned(),
                    enforcement: if *name == "api_access" || *name == "custom_integrations" {
                        Enforcement::Hard
                    } else if *name == "priority_support" || *name == "sla_guarantees" {
                        Enforcement::Advisory
                    } else {
                        Enforcement::Soft
                    },
                })
                .collect(),
            monthly_fee: fee.to_owned(),
            currency: currency.to_owned(),
            usage_meter: None,
            usage_unit_price: None,
        })
        .collect()
}

fn price(field: &str, text: &str) -> ApiResult<Decimal> {
    let d: Decimal = text
        .trim()
        .parse()
        .map_err(|_| ApiError::validation(field, "must be a decimal number such as 12.50"))?;
    if d.is_sign_negative() || d > MAX_PRICE {
        return Err(ApiError::validation(
            field,
            format!("must be 0 to {MAX_PRICE}"),
        ));
    }
    if d.scale() > 6 {
        return Err(ApiError::validation(field, "has more than 6 decimals"));
    }
    Ok(d.normalize())
}

/// `major.minor.patch`, digits only.
fn semver(field: &str, v: &str) -> ApiResult<String> {
    let parts: Vec<&str> = v.trim().split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(v.trim().to_owned())
    } else {
        Err(ApiError::validation(
            field,
            "must be a version such as 1.4.0",
        ))
    }
}

fn version_key(v: &str) -> Vec<u64> {
    v.split('.').filter_map(|p| p.parse().ok()).collect()
}

fn feature_name(field: &str, name: &str) -> ApiResult<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ApiError::validation(
            field,
            "must be 1 to 64 lowercase letters, digits or _ starting with a letter",
        ))
    }
}

/// Checks a plugin as given and makes its rows (the plugin's id and times
/// are the caller's).
async fn entry(
    tx: &crate::store::Tx,
    plugin: PluginRow,
    input: &PluginInput,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<PluginEntry> {
    if input.tiers.is_empty() {
        return Err(ApiError::validation(
            "input.tiers",
            "must offer at least one tier",
        ));
    }
    let mut tiers = Vec::new();
    let mut meters = Vec::new();
    let mut seen_features = BTreeSet::new();
    for (i, t) in input.tiers.iter().enumerate() {
        let at = |f: &str| format!("input.tiers[{i}].{f}");
        if tiers.iter().any(|r: &PluginTierRow| r.tier == t.tier) {
            return Err(ApiError::validation(at("tier"), "is given twice"));
        }
        if t.features.len() > MAX_FEATURES {
            return Err(ApiError::validation(
                at("features"),
                format!("at most {MAX_FEATURES}"),
            ));
        }
        let mut features = Vec::new();
        for (j, f) in t.features.iter().enumerate() {
            let name = feature_name(&at(&format!("features[{j}].name")), &f.name)?;
            if !seen_features.insert(name.clone()) {
                return Err(ApiError::validation(
                    at(&format!("features[{j}].name")),
                    format!("{name} is granted by another tier already (tiers are cumulative)"),
                ));
            }
            features.push(TierFeature {
                name,
                enforcement: f.enforcement,
            });
        }
        let fee = price(&at("monthlyFee"), &t.monthly_fee)?;
        let currency: Currency = t.currency.parse().map_err(|_| {
            ApiError::validation(at("currency"), "must be an ISO 4217 code we bill in")
        })?;
        let (meter, unit_price) = match (&t.usage_meter, &t.usage_unit_price) {
            (None, None) => (None, None),
            (Some(m), Some(p)) => {
                meters.push((at("usageMeter"), m.clone()));
                (
                    Some(m.clone()),
                    Some(price(&at("usageUnitPrice"), p)?.to_string()),
                )
            }
            _ => {
                return Err(ApiError::validation(
                    at("usageMeter"),
                    "a usage price needs both usageMeter and usageUnitPrice",
                ))
            }
        };
        tiers.push(PluginTierRow {
            plugin_id: plugin.id.clone(),
            tier: t.tier,
            features: serde_json::to_string(&features)
                .map_err(|e| ApiError::internal(e.to_string()))?,
            monthly_fee: fee.to_string(),
            currency: currency.code().to_owned(),
            usage_meter: meter,
            usage_unit_price: unit_price,
        });
    }
    if tiers.iter().any(|t| t.currency != tiers[0].currency) {
        return Err(ApiError::validation(
            "input.tiers",
            "every tier of a plugin is priced in one currency",
        ));
    }
    for (field, slug) in &meters {
        if !meter_rows::unknown_slugs(tx, &[slug.as_str()])
            .await?
            .is_empty()
        {
            return Err(ApiError::validation(
                field.clone(),
                format!("no meter {slug:?}"),
            ));
        }
    }
    tiers.sort_by_key(|t| t.tier);
    if input.versions.len() > MAX_VERSIONS {
        return Err(ApiError::validation(
            "input.versions",
            format!("at most {MAX_VERSIONS}"),
        ));
    }
    let mut versions: Vec<PluginVersionRow> = Vec::new();
    for (i, v) in input.versions.iter().enumerate() {
        let at = |f: &str| format!("input.versions[{i}].{f}");
        let version = semver(&at("version"), &v.version)?;
        if versions.iter().any(|r| r.version == version) {
            return Err(ApiError::validation(at("version"), "is given twice"));
        }
        let min = semver(&at("frameworkMin"), &v.framework_min)?;
        let max = v
            .framework_max
            .as_deref()
            .map(|m| semver(&at("frameworkMax"), m))
            .transpose()?;
        if max
            .as_deref()
            .is_some_and(|m| version_key(m) < version_key(&min))
        {
            return Err(ApiError::validation(
                at("frameworkMax"),
                "must not be below frameworkMin",
            ));
        }
        versions.push(PluginVersionRow {
            plugin_id: plugin.id.clone(),
            version,
            framework_min: min,
            framework_max: max,
            released_at: now,
        });
    }
    Ok(PluginEntry {
        plugin,
        tiers,
        versions,
    })
}

fn checked_plugin(input: &PluginInput) -> ApiResult<(String, String, String, String)> {
    let slug = input.slug.trim().to_owned();
    dotmac_schema::validate_slug(&slug)
        .map_err(|e| ApiError::validation("input.slug", e.to_string()))?;
    let description = input.description.trim();
    if description.chars().count() > 2000 {
        return Err(ApiError::validation(
            "input.description",
            "must be at most 2000 characters",
        ));
    }
    Ok((
        slug,
        required_text("input.name", &input.name, 100)?,
        description.to_owned(),
        required_text("input.category", &input.category, 50)?,
    ))
}

fn platform_admin(ctx: &RequestCtx) -> ApiResult<&dotmac_schema::Principal> {
    ctx.principal()?;
    ctx.writer_with(&[Role::PlatformAdmin])
        .map_err(|_| ApiError::Forbidden("the plugin catalog is managed by platform admins".into()))
}

/// Adds a plugin to the catalog (platform admins). Audited.
pub async fn create_plugin(
    licensing: &Licensing,
    ctx: &RequestCtx,
    input: &PluginInput,
) -> ApiResult<PluginEntry> {
    let p = platform_admin(ctx)?;
    let (slug, name, description, category) = checked_plugin(input)?;
    let now = licensing.clock.now();
    let tx = licensing.store.begin(&p.scope).await?;
    let plugin = PluginRow {
        id: PluginId::new().to_string(),
        slug,
        name,
        description,
        category,
        created_at: now,
        updated_at: now,
    };
    let entry = entry(&tx, plugin, input, now).await?;
    save(tx, ctx, p, now, entry, None).await
}

/// Writes a plugin whole with its audit record and commits: created when
/// there is no `before` (the previous slug), replaced otherwise.
async fn save(
    tx: crate::store::Tx,
    ctx: &RequestCtx,
    p: &dotmac_schema::Principal,
    now: chrono::DateTime<chrono::Utc>,
    entry: PluginEntry,
    before: Option<String>,
) -> ApiResult<PluginEntry> {
    plugin_rows::put(&tx, &entry, before.is_none()).await?;
    audit_log::record(
        &tx,
        now,
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: if before.is_none() {
                "plugin.create"
            } else {
                "plugin.update"
            },
            tenant_id: None,
            reseller_id: None,
            object_id: Some(entry.plugin.id.clone()),
            before,
            after: Some(entry.plugin.slug.clone()),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(entry)
}

/// Replaces a plugin's description, tiers and versions (platform admins).
/// Prices apply to periods billed from now on; licences keep their tier.
pub async fn update_plugin(
    licensing: &Licensing,
    ctx: &RequestCtx,
    id: &str,
    input: &PluginInput,
) -> ApiResult<PluginEntry> {
    let p = platform_admin(ctx)?;
    let (slug, name, description, category) = checked_plugin(input)?;
    let now = licensing.clock.now();
    let tx = licensing.store.begin(&p.scope).await?;
    let before = plugin_rows::get(&tx, id)
        .await?
        .ok_or(ApiError::not_found("plugin"))?;
    let removed: Vec<PluginTier> = before
        .tiers
        .iter()
        .map(|t| t.tier)
        .filter(|t| !input.tiers.iter().any(|i| i.tier == *t))
        .collect();
    if !removed.is_empty()
        && crate::store::licence_rows::any_live_at(&tx, &before.plugin.id, &removed).await?
    {
        return Err(ApiError::conflict(
            "input.tiers",
            format!("licences are held at {removed:?}: move them before removing the tier"),
        ));
    }
    let plugin = PluginRow {
        slug,
        name,
        description,
        category,
        updated_at: now,
        ..before.plugin.clone()
    };
    let mut entry = entry(&tx, plugin, input, now).await?;
    // A version listed before keeps its release time.
    for v in &mut entry.versions {
        if let Some(old) = before.versions.iter().find(|o| o.version == v.version) {
            v.released_at = old.released_at;
        }
    }
    save(tx, ctx, p, now, entry, Some(before.plugin.slug)).await
}

/// One plugin by id or slug (anyone signed in).
pub async fn plugin(licensing: &Licensing, ctx: &RequestCtx, key: &str) -> ApiResult<PluginEntry> {
    let p = ctx.principal()?;
    let tx = licensing.store.begin(&p.scope).await?;
    let found = plugin_rows::get(&tx, key).await?;
    tx.commit().await?;
    found.ok_or(ApiError::not_found("plugin"))
}

/// The catalog, a page at a time (anyone signed in).
pub async fn plugins(
    licensing: &Licensing,
    ctx: &RequestCtx,
    page: PageRequest<'_>,
) -> ApiResult<Page<PluginEntry>> {
    let p = ctx.principal()?;
    let tx = licensing.store.begin(&p.scope).await?;
    let page = plugin_rows::list(&tx, page).await?;
    tx.commit().await?;
    Ok(page)
}
