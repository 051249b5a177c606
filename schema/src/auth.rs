//! Who is asking and what they may see: roles, principals and the scope every
//! store call is made in.

use crate::ids::{ApiKeyId, ResellerId, TenantId, UserId};

/// The role of a human user; it fixes which kind of scope the user lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    PlatformAdmin,
    /// Platform staff with read-only access to everything.
    Support,
    ResellerAdmin,
    ResellerAgent,
    TenantAdmin,
    /// Read-only member of one tenant.
    TenantUser,
}

/// Which kind of scope a role is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Platform,
    Reseller,
    Tenant,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::PlatformAdmin,
        Role::Support,
        Role::ResellerAdmin,
        Role::ResellerAgent,
        Role::TenantAdmin,
        Role::TenantUser,
    ];

    pub fn scope_kind(self) -> ScopeKind {
        match self {
            Role::PlatformAdmin | Role::Support => ScopeKind::Platform,
            Role::ResellerAdmin | Role::ResellerAgent => ScopeKind::Reseller,
            Role::TenantAdmin | Role::TenantUser => ScopeKind::Tenant,
        }
    }

    /// Read-only roles may query but never mutate.
    pub fn can_write(self) -> bool {
        !matches!(self, Role::Support | Role::TenantUser)
    }

    /// Whether a user of this role may invite a user with `other`: admins
    /// invite within their own scope kind or below it, never above.
    pub fn may_grant(self, other: Role) -> bool {
        match self {
            Role::PlatformAdmin => true,
            Role::ResellerAdmin => other.scope_kind() != ScopeKind::Platform,
            Role::TenantAdmin => other.scope_kind() == ScopeKind::Tenant,
            Role::Support | Role::ResellerAgent | Role::TenantUser => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::Support => "support",
            Role::ResellerAdmin => "reseller_admin",
            Role::ResellerAgent => "reseller_agent",
            Role::TenantAdmin => "tenant_admin",
            Role::TenantUser => "tenant_user",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The set of tenants a request may see. Resolved once per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every tenant (platform staff).
    All,
    /// The tenants whose reseller is this one.
    Reseller(ResellerId),
    /// Exactly one tenant.
    Tenant(TenantId),
}

impl Scope {
    /// Whether a tenant owned by `reseller` is inside this scope.
    pub fn covers_tenant(&self, tenant: &TenantId, reseller: Option<&ResellerId>) -> bool {
        match self {
            Scope::All => true,
            Scope::Reseller(r) => reseller == Some(r),
            Scope::Tenant(t) => t == tenant,
        }
    }

    /// Whether a reseller's own record is inside this scope.
    pub fn covers_reseller(&self, reseller: &ResellerId) -> bool {
        match self {
            Scope::All => true,
            Scope::Reseller(r) => r == reseller,
            Scope::Tenant(_) => false,
        }
    }
}

/// Permission carried by an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
pub enum ApiKeyScope {
    #[cfg_attr(feature = "graphql", graphql(name = "USAGE_WRITE"))]
    #[serde(rename = "usage:write")]
    UsageWrite,
    #[cfg_attr(feature = "graphql", graphql(name = "LICENSE_READ"))]
    #[serde(rename = "license:read")]
    LicenseRead,
    #[cfg_attr(feature = "graphql", graphql(name = "TENANT_READ"))]
    #[serde(rename = "tenant:read")]
    TenantRead,
}

impl ApiKeyScope {
    pub const ALL: [ApiKeyScope; 3] = [
        ApiKeyScope::UsageWrite,
        ApiKeyScope::LicenseRead,
        ApiKeyScope::TenantRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyScope::UsageWrite => "usage:write",
            ApiKeyScope::LicenseRead => "license:read",
            ApiKeyScope::TenantRead => "tenant:read",
        }
    }

    pub fn parse(s: &str) -> Option<ApiKeyScope> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What authenticated the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    User {
        id: UserId,
        role: Role,
    },
    ApiKey {
        id: ApiKeyId,
        scopes: Vec<ApiKeyScope>,
    },
    /// The platform itself, running a scheduled or operator job (a period
    /// close, dunning, the demo seed): platform-wide, with a platform
    /// admin's rights, named by its job in audit records. No credential
    /// resolves to it.
    System {
        job: &'static str,
    },
}

/// An authenticated caller and the scope it acts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub scope: Scope,
}

impl Principal {
    /// The platform acting for `job` (see [`PrincipalKind::System`]).
    pub fn system(job: &'static str) -> Principal {
        Principal {
            kind: PrincipalKind::System { job },
            scope: Scope::All,
        }
    }

    pub fn role(&self) -> Option<Role> {
        match &self.kind {
            PrincipalKind::User { role, .. } => Some(*role),
            PrincipalKind::ApiKey { .. } => None,
            PrincipalKind::System { .. } => Some(Role::PlatformAdmin),
        }
    }

    pub fn user_id(&self) -> Option<&UserId> {
        match &self.kind {
            PrincipalKind::User { id, .. } => Some(id),
            PrincipalKind::ApiKey { .. } | PrincipalKind::System { .. } => None,
        }
    }

    /// A stable text naming the actor, for audit records.
    pub fn actor(&self) -> String {
        match &self.kind {
            PrincipalKind::User { id, .. } => id.to_string(),
            PrincipalKind::ApiKey { id, .. } => id.to_string(),
            PrincipalKind::System { job } => format!("system:{job}"),
        }
    }

    pub fn can_write(&self) -> bool {
        self.role().is_some_and(Role::can_write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_acts_platform_wide_under_its_job_name() {
        let p = Principal::system("dunning");
        assert_eq!(p.scope, Scope::All);
        assert!(p.can_write());
        assert_eq!(p.user_id(), None);
        assert_eq!(p.actor(), "system:dunning");
    }

    #[test]
    fn read_only_roles_cannot_write() {
        assert!(!Role::Support.can_write());
        assert!(!Role::TenantUser.can_write());
        assert!(Role::TenantAdmin.can_write());
    }

    #[test]
    fn nobody_grants_above_their_scope() {
        for r in Role::ALL {
            for o in Role::ALL {
                if r.may_grant(o) {
                    let rank = |k: ScopeKind| match k {
                        ScopeKind::Platform => 2,
                        ScopeKind::Reseller => 1,
                        ScopeKind::Tenant => 0,
                    };
                    assert!(
                        rank(o.scope_kind()) <= rank(r.scope_kind()),
                        "{r:?} grants {o:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn scopes_cover_only_their_tenants() {
        let (a, b) = (TenantId::new(), TenantId::new());
        let r = ResellerId::new();
        assert!(Scope::Tenant(a.clone()).covers_tenant(&a, None));
        assert!(!Scope::Tenant(a.clone()).covers_tenant(&b, Some(&r)));
        assert!(Scope::Reseller(r.clone()).covers_tenant(&b, Some(&r)));
        assert!(!Scope::Reseller(r.clone()).covers_tenant(&a, None));
        assert!(Scope::All.covers_tenant(&a, None));
    }
}
