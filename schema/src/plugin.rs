//! Plugins and their licences: the ordered, cumulative plugin tiers (a tier
//! grants its own features and every lower tier's, by construction), the
//! kinds and lifecycle of a licence, and how each feature is enforced once
//! a licence has expired.

use std::collections::BTreeSet;

/// A plugin's licence tier. Ordered: `Basic < Professional < Enterprise`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
#[serde(rename_all = "snake_case")]
pub enum PluginTier {
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "basic"))]
    Basic,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "professional"))]
    Professional,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "enterprise"))]
    Enterprise,
}

impl PluginTier {
    pub const ALL: [PluginTier; 3] = [
        PluginTier::Basic,
        PluginTier::Professional,
        PluginTier::Enterprise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PluginTier::Basic => "basic",
            PluginTier::Professional => "professional",
            PluginTier::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<PluginTier> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The features DESIGN §8 gives this tier on its own (a new plugin's
    /// defaults): basic {customer_portal, basic_billing}; professional adds
    /// {advanced_analytics, api_access, white_labeling}; enterprise adds
    /// {custom_integrations, priority_support, sla_guarantees}.
    pub fn standard_features(self) -> &'static [&'static str] {
        match self {
            PluginTier::Basic => &["customer_portal", "basic_billing"],
            PluginTier::Professional => &["advanced_analytics", "api_access", "white_labeling"],
            PluginTier::Enterprise => {
                &["custom_integrations", "priority_support", "sla_guarantees"]
            }
        }
    }
}

/// The features `tier` grants, given what each tier adds (`added(t)`):
/// the union over every tier up to it. Cumulative by construction: a
/// feature of a lower tier is granted by every higher one.
pub fn granted_features<'a, I>(
    tier: PluginTier,
    added: impl Fn(PluginTier) -> I,
) -> BTreeSet<String>
where
    I: IntoIterator<Item = &'a str>,
{
    PluginTier::ALL
        .into_iter()
        .filter(|t| *t <= tier)
        .flat_map(added)
        .map(str::to_owned)
        .collect()
}

/// How a licence was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
#[serde(rename_all = "snake_case")]
pub enum LicenceKind {
    /// Free while it lasts (14 days); once per tenant and plugin.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "trial"))]
    Trial,
    /// Billed on the tenant's invoices.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "paid"))]
    Paid,
}

/// Where a licence is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
#[serde(rename_all = "snake_case")]
pub enum LicenceState {
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "active"))]
    Active,
    /// Cancelled by the tenant (or its reseller); ends at `ends_at`.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "cancelled"))]
    Cancelled,
    /// Withdrawn by the platform: on the revocation list.
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "revoked"))]
    Revoked,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn design_tiers_are_cumulative() {
        let std = |t: PluginTier| t.standard_features().iter().copied();
        assert_eq!(granted_features(PluginTier::Basic, std).len(), 2);
        assert_eq!(granted_features(PluginTier::Professional, std).len(), 5);
        let all = granted_features(PluginTier::Enterprise, std);
        assert_eq!(all.len(), 8);
        assert!(all.contains("customer_portal") && all.contains("sla_guarantees"));
        assert!(PluginTier::Basic < PluginTier::Professional);
        assert!(PluginTier::Professional < PluginTier::Enterprise);
    }

    proptest! {
        /// Whatever each tier adds, every feature of a lower tier is
        /// granted by every higher tier.
        #[test]
        fn any_lower_tiers_feature_is_granted_by_every_higher_tier(
            added in prop::collection::vec(prop::collection::vec("[a-e]{1,2}", 0..5), 3)
        ) {
            let of = |t: PluginTier| added[t as usize].iter().map(String::as_str);
            for lower in PluginTier::ALL {
                for higher in PluginTier::ALL.into_iter().filter(|h| *h >= lower) {
                    let (l, h) = (granted_features(lower, of), granted_features(higher, of));
                    prop_assert!(l.is_subset(&h), "{lower:?} {l:?} ⊄ {higher:?} {h:?}");
                }
            }
        }
    }
}
