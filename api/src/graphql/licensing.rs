//! Licensing's GraphQL: the plugin catalog (read by everyone signed in,
//! written by platform admins), tenants' licences with their seats and
//! signed files (scoped like the tenant), and the changes of a licence
//! (take, change tier, cancel, revoke, activate, deactivate).

use async_graphql::connection::Connection;
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use dotmac_schema::{LicenceId, LicenceKind, LicenceState, PluginId, PluginTier};

use super::{connection, ctx, page_request, Result};
use crate::service::licensing::catalog::{
    self, granted, PluginInput as PluginSpec, TierFeature, TierInput, VersionInput,
};
use crate::service::licensing::licences::{self, TakeLicence};
use crate::store::licence_rows::LicenceRow;
use crate::store::plugin_rows::PluginEntry;

/// How a feature is enforced once its licence has expired.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum FeatureEnforcement {
    /// Never refused; expiry is only reported.
    Advisory,
    /// New use refused once the grace has ended.
    Soft,
    /// New use refused from expiry on.
    Hard,
}

impl From<dotmac_licence::Enforcement> for FeatureEnforcement {
    fn from(e: dotmac_licence::Enforcement) -> Self {
        match e {
            dotmac_licence::Enforcement::Advisory => FeatureEnforcement::Advisory,
            dotmac_licence::Enforcement::Soft => FeatureEnforcement::Soft,
            dotmac_licence::Enforcement::Hard => FeatureEnforcement::Hard,
        }
    }
}

impl From<FeatureEnforcement> for dotmac_licence::Enforcement {
    fn from(e: FeatureEnforcement) -> Self {
        match e {
            FeatureEnforcement::Advisory => dotmac_licence::Enforcement::Advisory,
            FeatureEnforcement::Soft => dotmac_licence::Enforcement::Soft,
            FeatureEnforcement::Hard => dotmac_licence::Enforcement::Hard,
        }
    }
}

#[derive(SimpleObject)]
pub struct Feature {
    pub name: String,
    pub enforcement: FeatureEnforcement,
}

impl From<TierFeature> for Feature {
    fn from(f: TierFeature) -> Self {
        Feature {
            name: f.name,
            enforcement: f.enforcement.into(),
        }
    }
}

/// A tier of a plugin: what it adds, everything it grants, what it costs.
#[derive(SimpleObject)]
pub struct PluginTierView {
    pub tier: PluginTier,
    /// The features this tier adds to the ones below it.
    pub added_features: Vec<Feature>,
    /// Everything it grants (its own and every lower tier's).
    pub features: Vec<Feature>,
    /// Per month, a decimal string.
    pub monthly_fee: String,
    pub currency: String,
    pub usage_meter: Option<String>,
    pub usage_unit_price: Option<String>,
    /// Instances that may hold a seat of a licence at this tier.
    pub activation_limit: i32,
}

#[derive(SimpleObject)]
pub struct PluginVersionView {
    pub version: String,
    /// The oldest framework version it runs on, and the newest (if bounded).
    pub framework_min: String,
    pub framework_max: Option<String>,
}

/// A plugin of the catalog.
pub struct Plugin(pub PluginEntry);

#[Object]
impl Plugin {
    async fn id(&self) -> ID {
        ID(self.0.plugin.id.clone())
    }
    async fn slug(&self) -> &str {
        &self.0.plugin.slug
    }
    async fn name(&self) -> &str {
        &self.0.plugin.name
    }
    async fn description(&self) -> &str {
        &self.0.plugin.description
    }
    async fn category(&self) -> &str {
        &self.0.plugin.category
    }
    /// Its tiers, lowest first.
    async fn tiers(&self) -> Result<Vec<PluginTierView>> {
        let mut out = Vec::new();
        for t in &self.0.tiers {
            out.push(PluginTierView {
                tier: t.tier,
                added_features: catalog::added_features(t)?
                    .into_iter()
                    .map(Feature::from)
                    .collect(),
                features: granted(&self.0, t.tier)?
                    .into_iter()
                    .map(Feature::from)
                    .collect(),
                monthly_fee: t.monthly_fee.clone(),
                currency: t.currency.clone(),
                usage_meter: t.usage_meter.clone(),
                usage_unit_price: t.usage_unit_price.clone(),
                activation_limit: licences::activation_limit(t.tier),
            });
        }
        Ok(out)
    }
    /// Its versions, oldest first.
    async fn versions(&self) -> Vec<PluginVersionView> {
        self.0
            .versions
            .iter()
            .map(|v| PluginVersionView {
                version: v.version.clone(),
                framework_min: v.framework_min.clone(),
                framework_max: v.framework_max.clone(),
            })
            .collect()
    }
}

/// An instance holding a seat of a licence.
#[derive(SimpleObject)]
pub struct Seat {
    pub instance_id: String,
    pub activated_at: DateTime<Utc>,
}

/// A tenant's licence of a plugin.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Licence {
    pub id: ID,
    pub tenant_id: ID,
    pub plugin_id: ID,
    pub tier: PluginTier,
    pub kind: LicenceKind,
    pub state: LicenceState,
    pub activation_limit: i32,
    pub starts_at: DateTime<Utc>,
    /// A trial's end, or when it was cancelled or revoked.
    pub ends_at: Option<DateTime<Utc>>,
}

impl From<LicenceRow> for Licence {
    fn from(r: LicenceRow) -> Self {
        Licence {
            id: ID(r.id),
            tenant_id: ID(r.tenant_id),
            plugin_id: ID(r.plugin_id),
            tier: r.tier,
            kind: r.kind,
            state: r.state,
            activation_limit: r.activation_limit,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
        }
    }
}

#[ComplexObject]
impl Licence {
    async fn plugin(&self, gctx: &Context<'_>) -> Result<Plugin> {
        let (app, rc) = ctx(gctx);
        Ok(Plugin(
            catalog::plugin(&app.licensing, rc, &self.plugin_id).await?,
        ))
    }

    /// The instances holding its seats.
    async fn seats(&self, gctx: &Context<'_>) -> Result<Vec<Seat>> {
        let (app, rc) = ctx(gctx);
        Ok(licences::seats(&app.licensing, rc, &self.id)
            .await?
            .into_iter()
            .map(|s| Seat {
                instance_id: s.instance_id,
                activated_at: s.activated_at,
            })
            .collect())
    }

    /// The signed licence file its instances verify offline (valid for a
    /// week, to be refreshed daily); only while the licence is live.
    async fn file(&self, gctx: &Context<'_>) -> Result<String> {
        let (app, rc) = ctx(gctx);
        Ok(licences::licence_file(&app.licensing, rc, &self.id)
            .await?
            .1)
    }
}

#[derive(InputObject)]
pub struct FeatureInput {
    pub name: String,
    pub enforcement: FeatureEnforcement,
}

#[derive(InputObject)]
pub struct PluginTierInput {
    pub tier: PluginTier,
    /// What this tier adds to the tiers below it.
    pub features: Vec<FeatureInput>,
    pub monthly_fee: String,
    pub currency: String,
    pub usage_meter: Option<String>,
    pub usage_unit_price: Option<String>,
}

#[derive(InputObject)]
pub struct PluginVersionInput {
    pub version: String,
    pub framework_min: String,
    pub framework_max: Option<String>,
}

#[derive(InputObject)]
pub struct PluginInput {
    pub slug: String,
    pub name: String,
    #[graphql(default)]
    pub description: String,
    pub category: String,
    pub tiers: Vec<PluginTierInput>,
    #[graphql(default)]
    pub versions: Vec<PluginVersionInput>,
}

impl From<PluginInput> for PluginSpec {
    fn from(i: PluginInput) -> Self {
        PluginSpec {
            slug: i.slug,
            name: i.name,
            description: i.description,
            category: i.category,
            tiers: i
                .tiers
                .into_iter()
                .map(|t| TierInput {
                    tier: t.tier,
                    features: t
                        .features
                        .into_iter()
                        .map(|f| TierFeature {
                            name: f.name,
                            enforcement: f.enforcement.into(),
                        })
                        .collect(),
                    monthly_fee: t.monthly_fee,
                    currency: t.currency,
                    usage_meter: t.usage_meter,
                    usage_unit_price: t.usage_unit_price,
                })
                .collect(),
            versions: i
                .versions
                .into_iter()
                .map(|v| VersionInput {
                    version: v.version,
                    framework_min: v.framework_min,
                    framework_max: v.framework_max,
                })
                .collect(),
        }
    }
}

#[derive(InputObject)]
pub struct TakeLicenceInput {
    pub tenant_id: ID,
    /// The plugin's id or slug.
    pub plugin: String,
    pub tier: PluginTier,
    pub kind: LicenceKind,
}

#[derive(Default)]
pub struct LicensingQuery;

#[Object]
impl LicensingQuery {
    /// The plugin catalog (everyone signed in).
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn plugins(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Plugin>> {
        let (app, rc) = ctx(gctx);
        let page = page_request::<PluginId>(first, after.as_deref())?;
        let rows = catalog::plugins(&app.licensing, rc, page).await?;
        Ok(connection(
            rows,
            after.is_some(),
            |r| r.plugin.id.clone(),
            Plugin,
        ))
    }

    /// One plugin, by id or slug.
    async fn plugin(&self, gctx: &Context<'_>, id: String) -> Result<Plugin> {
        let (app, rc) = ctx(gctx);
        Ok(Plugin(catalog::plugin(&app.licensing, rc, &id).await?))
    }

    /// Licences in the caller's scope, optionally of one tenant.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn licences(
        &self,
        gctx: &Context<'_>,
        tenant_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Licence>> {
        let (app, rc) = ctx(gctx);
        let page = page_request::<LicenceId>(first, after.as_deref())?;
        let rows = licences::list(
            &app.licensing,
            rc,
            tenant_id.as_ref().map(|t| t.as_str()),
            page,
        )
        .await?;
        Ok(connection(
            rows,
            after.is_some(),
            |r| r.id.clone(),
            Licence::from,
        ))
    }

    async fn licence(&self, gctx: &Context<'_>, id: ID) -> Result<Licence> {
        let (app, rc) = ctx(gctx);
        Ok(licences::get(&app.licensing, rc, &id).await?.into())
    }
}

#[derive(Default)]
pub struct LicensingMutation;

#[Object]
impl LicensingMutation {
    /// Adds a plugin to the catalog (platform admins).
    async fn create_plugin(&self, gctx: &Context<'_>, input: PluginInput) -> Result<Plugin> {
        let (app, rc) = ctx(gctx);
        Ok(Plugin(
            catalog::create_plugin(&app.licensing, rc, &input.into()).await?,
        ))
    }

    /// Replaces a plugin's details, tiers and versions (platform admins).
    async fn update_plugin(
        &self,
        gctx: &Context<'_>,
        id: ID,
        input: PluginInput,
    ) -> Result<Plugin> {
        let (app, rc) = ctx(gctx);
        Ok(Plugin(
            catalog::update_plugin(&app.licensing, rc, &id, &input.into()).await?,
        ))
    }

    /// Takes a licence of a plugin for a tenant: a 14-day trial (once per
    /// tenant and plugin) or paid (its admins, its reseller's, the platform's).
    async fn take_licence(&self, gctx: &Context<'_>, input: TakeLicenceInput) -> Result<Licence> {
        let (app, rc) = ctx(gctx);
        let take = TakeLicence {
            tenant_id: input.tenant_id.0,
            plugin: input.plugin,
            tier: input.tier,
            kind: input.kind,
        };
        Ok(licences::take(&app.licensing, rc, &take).await?.into())
    }

    /// Moves a licence to another tier from now on (no gap in access).
    async fn change_licence_tier(
        &self,
        gctx: &Context<'_>,
        id: ID,
        tier: PluginTier,
    ) -> Result<Licence> {
        let (app, rc) = ctx(gctx);
        Ok(licences::change_tier(&app.licensing, rc, &id, tier)
            .await?
            .into())
    }

    /// Ends a licence now; its seats are freed.
    async fn cancel_licence(&self, gctx: &Context<'_>, id: ID) -> Result<Licence> {
        let (app, rc) = ctx(gctx);
        Ok(licences::cancel(&app.licensing, rc, &id).await?.into())
    }

    /// Withdraws a licence onto the revocation list (platform admins).
    async fn revoke_licence(&self, gctx: &Context<'_>, id: ID, reason: String) -> Result<Licence> {
        let (app, rc) = ctx(gctx);
        Ok(licences::revoke(&app.licensing, rc, &id, &reason)
            .await?
            .into())
    }

    /// Takes a seat of the licence for an instance (idempotent).
    async fn activate_licence(
        &self,
        gctx: &Context<'_>,
        id: ID,
        instance_id: String,
    ) -> Result<Seat> {
        let (app, rc) = ctx(gctx);
        let seat = licences::activate(&app.licensing, rc, &id, &instance_id).await?;
        Ok(Seat {
            instance_id: seat.instance_id,
            activated_at: seat.activated_at,
        })
    }

    /// Frees an instance's seat.
    async fn deactivate_licence(
        &self,
        gctx: &Context<'_>,
        id: ID,
        instance_id: String,
    ) -> Result<bool> {
        let (app, rc) = ctx(gctx);
        licences::deactivate(&app.licensing, rc, &id, &instance_id).await?;
        Ok(true)
    }
}
