//! Resource tiers: the namespace quota a tenant instance gets (DESIGN.md §8).

/// Size of a tenant's instance.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "snake_case")]
pub enum ResourceTier {
    #[default]
    Micro,
    Small,
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
