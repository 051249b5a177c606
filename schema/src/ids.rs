//! Typed, prefixed identifiers (`ten_…`, `usr_…`): parsed once at the edge so
//! that an id of one kind can never be passed where another is expected.

use std::fmt;
use std::str::FromStr;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected an id starting with `{expected}_`")]
    WrongPrefix { expected: &'static str },
    #[error("the part after `{prefix}_` must be 32 lowercase hex characters")]
    BadBody { prefix: &'static str },
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id; time-ordered (UUID v7) so that ids sort roughly by creation.
            pub fn new() -> Self {
                Self(format!("{}_{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let body = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .ok_or(IdError::WrongPrefix { expected: $prefix })?;
                let hex_ok = body.len() == 32
                    && body.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !hex_ok {
                    return Err(IdError::BadBody { prefix: $prefix });
                }
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

typed_id!(
    /// A plugin of the marketplace's catalog.
    PluginId, "plg"
);
typed_id!(
    /// A tenant's licence of one plugin.
    LicenceId, "lic"
);
typed_id!(
    /// An effective-dated change of a licence's tier.
    LicenceChangeId, "lch"
);
typed_id!(
    /// One instance's activation of a licence (a seat).
    ActivationId, "act"
);
typed_id!(
    /// A rollout of a framework version across tenants' instances.
    RolloutId, "rol"
);
typed_id!(
    /// A tenant (an ISP onboarded onto the platform).
    TenantId, "ten"
);
typed_id!(
    /// A human user of any portal.
    UserId, "usr"
);
typed_id!(
    /// A reseller that brings tenants and earns commission.
    ResellerId, "rsl"
);
typed_id!(
    /// A service credential bound to one tenant.
    ApiKeyId, "key"
);
typed_id!(
    /// An append-only audit record.
    AuditId, "aud"
);
typed_id!(
    /// An invitation to join with a role and scope.
    InvitationId, "ivt"
);
typed_id!(
    /// A meter definition.
    MeterId, "mtr"
);
typed_id!(
    /// One version of a plan.
    PlanId, "pln"
);
typed_id!(
    /// A tenant's subscription to a plan.
    SubscriptionId, "sub"
);
typed_id!(
    /// An invoice.
    InvoiceId, "inv"
);
typed_id!(
    /// A jurisdiction's tax rate from a date on.
    TaxRateId, "txr"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_round_trip_and_keep_their_kind() {
        let id = TenantId::new();
        assert!(id.as_str().starts_with("ten_"));
        assert_eq!(id.as_str().parse::<TenantId>(), Ok(id.clone()));
        assert_eq!(
            id.as_str().parse::<UserId>(),
            Err(IdError::WrongPrefix { expected: "usr" })
        );
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        assert!("ten_".parse::<TenantId>().is_err());
        assert!("ten_XYZ".parse::<TenantId>().is_err());
        assert!("tenx0123456789abcdef0123456789abcdef"
            .parse::<TenantId>()
            .is_err());
        assert!("ten_0123456789ABCDEF0123456789abcdef"
            .parse::<TenantId>()
            .is_err());
    }
}
