//! Tenant instances on Kubernetes and their secrets.
//!
//! A cluster-scoped [`TenantInstance`](resource::TenantInstance) per tenant
//! says what the control plane wants; [`reconcile`] makes the cluster match
//! it through two ports: a [`Cluster`](cluster::Cluster) (the Kubernetes API
//! in production, a recorder of YAML files in `dotmac dev`) and a
//! [`SecretVault`](secrets::SecretVault) (OpenBao/Vault, or an encrypted file
//! store). [`controller`] runs it as a kube-rs controller.

pub mod builders;
pub mod cluster;
pub mod controller;
pub mod kube_cluster;
pub mod local;
pub mod reconcile;
pub mod resource;
#[cfg(test)]
mod scenarios;
pub mod secrets;
pub mod sizing;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::time::Duration;

pub use builders::NetworkSettings;
pub use resource::{Phase, TenantInstance, TenantInstanceSpec, TenantInstanceStatus};

/// What can go wrong orchestrating an instance. No variant carries a secret
/// value: store errors carry the server's words, not the request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("secret store ({op}): {reason}")]
    Vault { op: &'static str, reason: String },
    #[error("local store ({op}): {reason}")]
    Io { op: &'static str, reason: String },
    #[error("sealed secrets: {0}")]
    Crypto(String),
}

/// The platform's choices for every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The framework's image repository for new instances.
    pub image: String,
    /// How long a rollout may take before it is rolled back.
    pub progress_deadline_seconds: i32,
    /// The Ingress class of instances' Ingresses, if the cluster needs one named.
    pub ingress_class: Option<String>,
    pub network: NetworkSettings,
    /// Every child is applied again this often, correcting drift.
    pub resync_every: Duration,
    /// How soon an instance that is not Ready yet is looked at again (a
    /// change of its workload triggers it sooner).
    pub poll_while_pending: Duration,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// When set, this controller reconciles only the instances labelled
    /// `dotmac.io/shard=<shard>`, and the control plane labels the instances
    /// it declares so: several controllers (or test runs) share one cluster
    /// without touching each other's instances.
    pub shard: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            image: "ghcr.io/dotmac/isp-framework".into(),
            progress_deadline_seconds: 600,
            ingress_class: None,
            network: NetworkSettings::default(),
            resync_every: Duration::from_secs(600),
            poll_while_pending: Duration::from_secs(30),
            concurrency: 16,
            shard: None,
        }
    }
}
