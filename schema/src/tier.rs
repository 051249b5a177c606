//! Tiers: the namespace quota a tenant instance gets, and
//! the tier a reseller partners at.

/// Size of a tenant's instance.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
#[serde(rename_all = "snake_case")]
pub enum ResourceTier {
    #[default]
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "micro"))]
    Micro,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "small"))]
    Small,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "large"))]
    Large,
}

/// Kubernetes quota of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub cpu: &'static str,
    pub memory: &'static str,
    pub storage: &'static str,
}

impl ResourceTier {
    pub const ALL: [ResourceTier; 3] = [
        ResourceTier::Micro,
        ResourceTier::Small,
        ResourceTier::Large,
    ];

    pub fn quota(self) -> Quota {
        match self {
            ResourceTier::Micro => Quota {
                cpu: "500m",
                memory: "512Mi",
                storage: "5Gi",
            },
            ResourceTier::Small => Quota {
                cpu: "1",
                memory: "2Gi",
                storage: "20Gi",
            },
            ResourceTier::Large => Quota {
                cpu: "4",
                memory: "8Gi",
                storage: "100Gi",
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceTier::Micro => "micro",
            ResourceTier::Small => "small",
            ResourceTier::Large => "large",
        }
    }

    pub fn parse(s: &str) -> Option<ResourceTier> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_round_trip_and_match_design_quotas() {
        for t in ResourceTier::ALL {
            assert_eq!(ResourceTier::parse(t.as_str()), Some(t));
        }
        assert_eq!(ResourceTier::Small.quota().memory, "2Gi");
    }
}

/// A reseller's partner tier (its commission rate follows from it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(
    feature = "sea-orm",
    derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum),
    sea_orm(rs_type = "String", db_type = "Text")
)]
#[serde(rename_all = "snake_case")]
pub enum ResellerTier {
    #[default]
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "bronze"))]
    Bronze,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "silver"))]
    Silver,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "gold"))]
    Gold,
    #[cfg_attr(feature = "sea-orm", sea_orm(string_value = "platinum"))]
    Platinum,
}

impl ResellerTier {
    pub const ALL: [ResellerTier; 4] = [
        ResellerTier::Bronze,
        ResellerTier::Silver,
        ResellerTier::Gold,
        ResellerTier::Platinum,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResellerTier::Bronze => "bronze",
            ResellerTier::Silver => "silver",
            ResellerTier::Gold => "gold",
            ResellerTier::Platinum => "platinum",
        }
    }
}
