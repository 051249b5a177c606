//! The `TenantInstance` custom resource: what the control plane wants of one
//! tenant's instance (spec) and what the controller last saw of it (status).
//! The CRD's YAML under `deploy/crds/` is generated from these types.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer that holds a deleted instance until its ordered cleanup ran.
pub const FINALIZER: &str = "dotmac.io/cleanup";

/// The resource tier of an instance, as the CRD spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstanceTier {
    Micro,
    Small,
    Large,
}

impl From<dotmac_schema::ResourceTier> for InstanceTier {
    fn from(t: dotmac_schema::ResourceTier) -> Self {
        match t {
            dotmac_schema::ResourceTier::Micro => InstanceTier::Micro,
            dotmac_schema::ResourceTier::Small => InstanceTier::Small,
            dotmac_schema::ResourceTier::Large => InstanceTier::Large,
        }
    }
}

impl From<InstanceTier> for dotmac_schema::ResourceTier {
    fn from(t: InstanceTier) -> Self {
        match t {
            InstanceTier::Micro => dotmac_schema::ResourceTier::Micro,
            InstanceTier::Small => dotmac_schema::ResourceTier::Small,
            InstanceTier::Large => dotmac_schema::ResourceTier::Large,
        }
    }
}

/// One tenant's ISP-framework instance, as the control plane wants it.
// Each `printcolumn(...)` repeats `type_ = "string"`: clippy reads the derive's
// arguments as repeated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dotmac.io",
    version = "v1alpha1",
    kind = "TenantInstance",
    plural = "tenantinstances",
    shortname = "ti",
    status = "TenantInstanceStatus",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantId"),
    printcolumn(name = "Tier", type_ = "string", json_path = ".spec.tier"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantInstanceSpec {
    /// The tenant (`ten_…`); the namespace's name is derived from it.
    pub tenant_id: String,
    pub tier: InstanceTier,
    /// The ISP framework's version; the image is `<image>:<version>`.
    pub version: String,
    /// The framework's image repository (the version is its tag).
    pub image: String,
    /// The host the instance answers on, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Scaled to zero, its data kept.
    #[serde(default)]
    pub suspended: bool,
    /// While on, deleting the instance cleans nothing up: the finalizer waits.
    #[serde(default = "protected")]
    pub deletion_protection: bool,
    /// Raised by the control plane to ask for a new generation of the
    /// instance's secrets (rotation): the secret store's next version.
    #[serde(default)]
    pub secrets_generation: u32,
    /// Set by a platform admin when a cleanup cannot finish: the finalizer is
    /// released whatever is left behind, and the status says what.
    #[serde(default)]
    pub abandon_cleanup: bool,
}

fn protected() -> bool {
    true
}

/// Where an instance is, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
pub enum Phase {
    #[default]
    Provisioning,
    Ready,
    Degraded,
    Suspended,
    Upgrading,
    Terminating,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Degraded => "Degraded",
            Phase::Suspended => "Suspended",
            Phase::Upgrading => "Upgrading",
            Phase::Terminating => "Terminating",
        }
    }
}

/// The steps of a reconcile and of a cleanup, each reported as a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionType {
    QuotaApplied,
    NetworkIsolated,
    SecretsSynced,
    WorkloadAvailable,
    Ready,
    /// Progress of the finalizer's cleanup.
    CleanedUp,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::QuotaApplied => "QuotaApplied",
            ConditionType::NetworkIsolated => "NetworkIsolated",
            ConditionType::SecretsSynced => "SecretsSynced",
            ConditionType::WorkloadAvailable => "WorkloadAvailable",
            ConditionType::Ready => "Ready",
            ConditionType::CleanedUp => "CleanedUp",
        }
    }
}

/// One condition, in Kubernetes' shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// One CamelCase word for machines.
    pub reason: String,
    /// A sentence for people.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    #[serde(default)]
    pub observed_generation: i64,
}

/// One child object the controller applied, so that what the spec no longer
/// wants is swept without listing the cluster.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub struct ChildRef {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

/// What the controller last saw.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantInstanceStatus {
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default)]
    pub phase: Phase,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The namespace the instance runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The version running now, and the one before it (the rollback target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// Set when an upgrade missed its progress deadline and the previous
    /// version was put back; cleared by the next spec change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<String>,
    /// Children applied, for the sweep.
    #[serde(default)]
    pub children: Vec<ChildRef>,
    /// A digest of the children last applied: equal means nothing to apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,
    /// When every child was last applied (RFC 3339): a resync re-applies
    /// them all after `resync_every`, correcting drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// The secret store's version delivered to the namespace.
    #[serde(default)]
    pub secrets_version: u64,
    /// When the instance first reported Ready (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<String>,
}

impl TenantInstanceStatus {
    pub fn condition(&self, t: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == t)
    }
}

/// The CRD as YAML, the text committed under `deploy/crds/`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = TenantInstance::crd();
    format!(
        "# Generated from dotmac_orchestrator::resource::TenantInstance by\n# `dotmac orchestrate crd`; do not edit.\n{}",
        serde_yaml::to_string(&crd).expect("a CRD serializes")
    )
}
