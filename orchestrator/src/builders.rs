//! Pure builders: from an instance's spec, its secrets and the platform's
//! settings, every child object the instance needs, in the order they are
//! applied. No I/O: what the cluster (or the local recorder) receives is
//! exactly what these functions return, so tests check them directly.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, HTTPGetAction, LimitRange, LimitRangeItem,
    LimitRangeSpec, Namespace, PodSpec, PodTemplateSpec, Probe, ResourceQuota, ResourceQuotaSpec,
    ResourceRequirements, Secret, SecretEnvSource, Service, ServiceAccount, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, NetworkPolicy, NetworkPolicyEgressRule,
    NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::core::ApiResource;
use kube::Resource;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::resource::{ChildRef, TenantInstanceSpec};
use crate::secrets::TenantSecrets;
use crate::sizing::Sizing;
use crate::{Error, Settings};

/// Labels every child carries.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "dotmac-orchestrator";
pub const TENANT_LABEL: &str = "dotmac.io/tenant";
pub const INSTANCE_LABEL: &str = "dotmac.io/instance";
/// The label that assigns an instance to one controller (see `Settings::shard`).
pub const SHARD_LABEL: &str = "dotmac.io/shard";
/// The framework's workload: its Deployment, Service, ServiceAccount and Ingress.
pub const WORKLOAD: &str = "isp-framework";
/// The Secret holding the instance's credentials.
pub const SECRET: &str = "isp-framework-secrets";
/// Annotation on the pod template naming the secrets' version, so that a
/// rotation rolls the pods onto the new values.
pub const SECRETS_VERSION_ANNOTATION: &str = "dotmac.io/secrets-version";
/// The container's port.
pub const PORT: i32 = 8000;

/// The kinds of child an instance has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    Namespace,
    ResourceQuota,
    LimitRange,
    NetworkPolicy,
    ServiceAccount,
    Secret,
    Deployment,
    Service,
    Ingress,
}

impl ChildKind {
    pub const ALL: [ChildKind; 9] = [
        ChildKind::Namespace,
        ChildKind::ResourceQuota,
        ChildKind::LimitRange,
        ChildKind::NetworkPolicy,
        ChildKind::ServiceAccount,
        ChildKind::Secret,
        ChildKind::Deployment,
        ChildKind::Service,
        ChildKind::Ingress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Namespace => "Namespace",
            ChildKind::ResourceQuota => "ResourceQuota",
            ChildKind::LimitRange => "LimitRange",
            ChildKind::NetworkPolicy => "NetworkPolicy",
            ChildKind::ServiceAccount => "ServiceAccount",
            ChildKind::Secret => "Secret",
            ChildKind::Deployment => "Deployment",
            ChildKind::Service => "Service",
            ChildKind::Ingress => "Ingress",
        }
    }

    pub fn parse(s: &str) -> Option<ChildKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Where the kind lives in the API.
    pub fn api_resource(self) -> ApiResource {
        match self {
            ChildKind::Namespace => ApiResource::erase::<Namespace>(&()),
            ChildKind::ResourceQuota => ApiResource::erase::<ResourceQuota>(&()),
            ChildKind::LimitRange => ApiResource::erase::<LimitRange>(&()),
            ChildKind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
            ChildKind::ServiceAccount => ApiResource::erase::<ServiceAccount>(&()),
            ChildKind::Secret => ApiResource::erase::<Secret>(&()),
            ChildKind::Deployment => ApiResource::erase::<Deployment>(&()),
            ChildKind::Service => ApiResource::erase::<Service>(&()),
            ChildKind::Ingress => ApiResource::erase::<Ingress>(&()),
        }
    }
}

/// One object to apply: its kind, where it goes, and the object itself.
#[derive(Clone, PartialEq)]
pub struct Child {
    pub kind: ChildKind,
    pub namespace: Option<String>,
    pub name: String,
    /// The full object with `apiVersion` and `kind`, as server-side apply wants it.
    pub object: serde_json::Value,
    /// Holds secret values: never printed, logged or recorded in clear.
    pub sensitive: bool,
}

impl std::fmt::Debug for Child {
    // The object of a Secret child holds credentials: Debug names it only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Child {
    fn of<K: Resource<DynamicType = ()> + Serialize>(
        kind: ChildKind,
        object: &K,
    ) -> Result<Child, Error> {
        let meta = object.meta();
        let mut value = serde_json::to_value(object).map_err(|e| Error::Invalid {
            field: "child",
            reason: e.to_string(),
        })?;
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), K::api_version(&()).into());
            map.insert("kind".into(), K::kind(&()).into());
        }
        Ok(Child {
            kind,
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            object: value,
            sensitive: kind == ChildKind::Secret,
        })
    }

    pub fn reference(&self) -> ChildRef {
        ChildRef {
            kind: self.kind.as_str().to_owned(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// The namespace of a tenant's instance: derived from its validated id only,
/// never from text a user typed, so no name can collide with or aim at
/// another tenant's (or the system's) namespace.
pub fn namespace_for(tenant_id: &str) -> Result<String, Error> {
    let id: dotmac_schema::TenantId = tenant_id.parse().map_err(|e| Error::Invalid {
        field: "spec.tenantId",
        reason: format!("{e}"),
    })?;
    let body = id
        .as_str()
        .strip_prefix("ten_")
        .unwrap_or(id.as_str())
        .to_ascii_lowercase();
    Ok(format!("tenant-{body}"))
}

/// The name of a tenant's `TenantInstance` (cluster-scoped): its namespace's.
pub fn instance_name(tenant_id: &str) -> Result<String, Error> {
    namespace_for(tenant_id)
}

fn labels(spec: &TenantInstanceSpec, namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (TENANT_LABEL.to_owned(), spec.tenant_id.clone()),
        (INSTANCE_LABEL.to_owned(), namespace.to_owned()),
    ])
}

fn meta(
    spec: &TenantInstanceSpec,
    namespace: &str,
    name: &str,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels(spec, namespace)),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..Default::default()
    }
}

fn quantities(pairs: &[(&str, String)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity(v.clone())))
        .collect()
}

/// The platform's side of the network policy: where traffic may come from and go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSettings {
    /// Label (key, value) of the namespace the ingress controller runs in.
    pub ingress_namespace: (String, String),
    /// Label (key, value) of the namespace the control plane's API runs in.
    pub control_plane_namespace: (String, String),
    /// The control plane API's port.
    pub control_plane_port: i32,
    /// Where Vault/OpenBao answers: a CIDR and a port.
    pub vault_cidr: String,
    pub vault_port: i32,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            ingress_namespace: ("dotmac.io/role".into(), "ingress".into()),
            control_plane_namespace: ("dotmac.io/role".into(), "control-plane".into()),
            control_plane_port: 8080,
            vault_cidr: "10.0.0.0/8".into(),
            vault_port: 8200,
        }
    }
}

/// Every child of one instance, in apply order: namespace → quota and limits
/// → network isolation → identity and secrets → workload.
///
/// `version` is the framework version to run (the spec's, or the previous one
/// during a rollback); `owner` is the `TenantInstance`'s reference for the
/// namespaced children (the namespace itself is never owned, so no garbage
/// collection can delete a tenant's data: only the finalizer's cleanup does).
pub fn children(
    spec: &TenantInstanceSpec,
    version: &str,
    secrets: &TenantSecrets,
    settings: &Settings,
    owner: Option<&OwnerReference>,
) -> Result<Vec<Child>, Error> {
    let ns = namespace_for(&spec.tenant_id)?;
    valid_version(version)?;
    let sizing = Sizing::of(spec.tier.into())?;
    let mut out = vec![
        Child::of(ChildKind::Namespace, &namespace(spec, &ns))?,
        Child::of(ChildKind::ResourceQuota, &quota(spec, &ns, &sizing, owner))?,
        Child::of(
            ChildKind::LimitRange,
            &limit_range(spec, &ns, &sizing, owner),
        )?,
    ];
    for policy in network_policies(spec, &ns, &settings.network, owner) {
        out.push(Child::of(ChildKind::NetworkPolicy, &policy)?);
    }
    out.push(Child::of(
        ChildKind::ServiceAccount,
        &service_account(spec, &ns, owner),
    )?);
    out.push(Child::of(
        ChildKind::Secret,
        &secret(spec, &ns, secrets, owner),
    )?);
    out.push(Child::of(
        ChildKind::Deployment,
        &deployment(
            spec,
            &ns,
            version,
            &sizing,
            secrets.version,
            settings,
            owner,
        ),
    )?);
    out.push(Child::of(ChildKind::Service, &service(spec, &ns, owner))?);
    if let Some(domain) = spec.domain.as_deref() {
        out.push(Child::of(
            ChildKind::Ingress,
            &ingress(spec, &ns, domain, settings, owner)?,
        )?);
    }
    Ok(out)
}

/// A digest of what `children` returned: equal digests mean there is
/// nothing to apply. Secret values enter only through their version.
pub fn digest(children: &[Child], secrets_version: u64) -> String {
    let mut h = Sha256::new();
    for c in children {
        h.update(c.kind.as_str());
        h.update(c.name.as_bytes());
        if c.sensitive {
            h.update(secrets_version.to_be_bytes());
        } else {
            h.update(c.object.to_string().as_bytes());
        }
    }
    hex::encode(&h.finalize()[..16])
}

pub fn namespace(spec: &TenantInstanceSpec, ns: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(ns.to_owned()),
            labels: Some(labels(spec, ns)),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn quota(
    spec: &TenantInstanceSpec,
    ns: &str,
    s: &Sizing,
    owner: Option<&OwnerReference>,
) -> ResourceQuota {
    let cpu = Sizing::cpu(s.quota_cpu_millis);
    let memory = Sizing::memory(s.quota_memory_mib);
    ResourceQuota {
        metadata: meta(spec, ns, "tier-quota", owner),
        spec: Some(ResourceQuotaSpec {
            hard: Some(quantities(&[
                ("requests.cpu", cpu.clone()),
                ("limits.cpu", cpu),
                ("requests.memory", memory.clone()),
                ("limits.memory", memory),
                ("requests.storage", format!("{}Gi", s.quota_storage_gib)),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn limit_range(
    spec: &TenantInstanceSpec,
    ns: &str,
    s: &Sizing,
    owner: Option<&OwnerReference>,
) -> LimitRange {
    LimitRange {
        metadata: meta(spec, ns, "tier-defaults", owner),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(quantities(&[
                    ("cpu", Sizing::cpu(s.limit_cpu_millis)),
                    ("memory", Sizing::memory(s.limit_memory_mib)),
                ])),
                default_request: Some(quantities(&[
                    ("cpu", Sizing::cpu(s.request_cpu_millis)),
                    ("memory", Sizing::memory(s.request_memory_mib)),
                ])),
                max: Some(quantities(&[
                    ("cpu", Sizing::cpu(s.quota_cpu_millis)),
                    ("memory", Sizing::memory(s.quota_memory_mib)),
                ])),
                ..Default::default()
            }],
        }),
    }
}

fn namespace_peer(label: &(String, String), pods: Option<LabelSelector>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([label.clone()])),
            ..Default::default()
        }),
        pod_selector: pods,
        ..Default::default()
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// A default deny for both directions, then the only allows the instance
/// needs: in from the ingress controller; out to DNS, the control plane's
/// API and Vault.
pub fn network_policies(
    spec: &TenantInstanceSpec,
    ns: &str,
    net: &NetworkSettings,
    owner: Option<&OwnerReference>,
) -> Vec<NetworkPolicy> {
    let deny = NetworkPolicy {
        metadata: meta(spec, ns, "default-deny", owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ..Default::default()
        }),
    };
    let dns_pods = LabelSelector {
        match_labels: Some(BTreeMap::from([("k8s-app".into(), "kube-dns".into())])),
        ..Default::default()
    };
    let allow = NetworkPolicy {
        metadata: meta(spec, ns, "instance-allow", owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".into(),
                    WORKLOAD.into(),
                )])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![namespace_peer(&net.ingress_namespace, None)]),
                ports: Some(vec![tcp(PORT)]),
            }]),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector::default()),
                        pod_selector: Some(dns_pods),
                        ..Default::default()
                    }]),
                    ports: Some(vec![
                        NetworkPolicyPort {
                            port: Some(IntOrString::Int(53)),
                            protocol: Some("UDP".into()),
                            ..Default::default()
                        },
                        tcp(53),
                    ]),
                },
                NetworkPolicyEgressRule {
                    to: Some(vec![namespace_peer(&net.control_plane_namespace, None)]),
                    ports: Some(vec![tcp(net.control_plane_port)]),
                },
                NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: net.vault_cidr.clone(),
                            except: None,
                        }),
                        ..Default::default()
                    }]),
                    ports: Some(vec![tcp(net.vault_port)]),
                },
            ]),
        }),
    };
    vec![deny, allow]
}

pub fn service_account(
    spec: &TenantInstanceSpec,
    ns: &str,
    owner: Option<&OwnerReference>,
) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(spec, ns, WORKLOAD, owner),
        // The framework talks to no Kubernetes API: no token in its pods.
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

pub fn secret(
    spec: &TenantInstanceSpec,
    ns: &str,
    secrets: &TenantSecrets,
    owner: Option<&OwnerReference>,
) -> Secret {
    Secret {
        metadata: meta(spec, ns, SECRET, owner),
        type_: Some("Opaque".into()),
        data: Some(
            secrets
                .values
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.expose().as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn selector_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".into(), WORKLOAD.into())])
}

pub fn deployment(
    spec: &TenantInstanceSpec,
    ns: &str,
    version: &str,
    s: &Sizing,
    secrets_version: u64,
    settings: &Settings,
    owner: Option<&OwnerReference>,
) -> Deployment {
    let mut pod_labels = labels(spec, ns);
    pod_labels.extend(selector_labels());
    pod_labels.insert("app.kubernetes.io/version".into(), version.to_owned());
    Deployment {
        metadata: meta(spec, ns, WORKLOAD, owner),
        spec: Some(DeploymentSpec {
            replicas: Some(if spec.suspended { 0 } else { 1 }),
            selector: LabelSelector {
                match_labels: Some(selector_labels()),
                ..Default::default()
            },
            progress_deadline_seconds: Some(settings.progress_deadline_seconds),
            revision_history_limit: Some(3),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        SECRETS_VERSION_ANNOTATION.into(),
                        secrets_version.to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(WORKLOAD.into()),
                    automount_service_account_token: Some(false),
                    containers: vec![Container {
                        name: "framework".into(),
                        image: Some(format!("{}:{}", spec.image, version)),
                        ports: Some(vec![ContainerPort {
                            container_port: PORT,
                            name: Some("http".into()),
                            ..Default::default()
                        }]),
                        env_from: Some(vec![EnvFromSource {
                            secret_ref: Some(SecretEnvSource {
                                name: SECRET.into(),
                                optional: Some(false),
                            }),
                            ..Default::default()
                        }]),
                        resources: Some(ResourceRequirements {
                            requests: Some(quantities(&[
                                ("cpu", Sizing::cpu(s.request_cpu_millis)),
                                ("memory", Sizing::memory(s.request_memory_mib)),
                            ])),
                            limits: Some(quantities(&[
                                ("cpu", Sizing::cpu(s.limit_cpu_millis)),
                                ("memory", Sizing::memory(s.limit_memory_mib)),
                            ])),
                            ..Default::default()
                        }),
                        readiness_probe: Some(Probe {
                            http_get: Some(HTTPGetAction {
                                path: Some("/health".into()),
                                port: IntOrString::Int(PORT),
                                ..Default::default()
                            }),
                            period_seconds: Some(10),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service(spec: &TenantInstanceSpec, ns: &str, owner: Option<&OwnerReference>) -> Service {
    Service {
        metadata: meta(spec, ns, WORKLOAD, owner),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(PORT)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A framework version as an image tag accepts it (`1.4.0`, `2.0.0-rc.1`).
pub fn valid_version(version: &str) -> Result<(), Error> {
    let ok = !version.is_empty()
        && version.len() <= 128
        && version.as_bytes()[0].is_ascii_alphanumeric()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            field: "spec.version",
            reason: format!("{version:?} is not an image tag (letters, digits, '.', '-', '_')"),
        })
    }
}

/// A host name as an Ingress rule accepts it (RFC 1123, lowercase).
fn valid_host(domain: &str) -> bool {
    domain.len() <= 253
        && domain.split('.').count() >= 2
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

pub fn ingress(
    spec: &TenantInstanceSpec,
    ns: &str,
    domain: &str,
    settings: &Settings,
    owner: Option<&OwnerReference>,
) -> Result<Ingress, Error> {
    if !valid_host(domain) {
        return Err(Error::Invalid {
            field: "spec.domain",
            reason: format!("{domain:?} is not a lowercase DNS host name"),
        });
    }
    Ok(Ingress {
        metadata: meta(spec, ns, WORKLOAD, owner),
        spec: Some(IngressSpec {
            ingress_class_name: settings.ingress_class.clone(),
            rules: Some(vec![IngressRule {
                host: Some(domain.to_owned()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: WORKLOAD.into(),
                                port: Some(ServiceBackendPort {
                                    number: Some(80),
                                    ..Default::default()
                                }),
                            }),
                            ..Default::default()
                        },
                    }],
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::InstanceTier;
    use crate::secrets::SecretValue;

    fn spec(tier: InstanceTier) -> TenantInstanceSpec {
        TenantInstanceSpec {
            tenant_id: "ten_0123456789abcdef0123456789abcdef".into(),
            tier,
            version: "1.4.0".into(),
            image: "registry.example/isp-framework".into(),
            domain: Some("acme.isp.example".into()),
            suspended: false,
            deletion_protection: true,
            secrets_generation: 0,
            abandon_cleanup: false,
        }
    }

    fn secrets() -> TenantSecrets {
        TenantSecrets {
            version: 3,
            values: BTreeMap::from([(
                "DATABASE_PASSWORD".into(),
                SecretValue::new("s3cret".into()),
            )]),
        }
    }

    #[test]
    fn namespace_comes_from_the_tenant_id_only() {
        let ns = namespace_for("ten_0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(ns, "tenant-0123456789abcdef0123456789abcdef");
        assert!(ns.len() <= 63);
        for bad in [
            "kube-system",
            "ten_../x",
            "ten_0123",
            "",
            "TEN_0123456789abcdef0123456789abcdef",
        ] {
            assert!(namespace_for(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn children_come_in_apply_order_with_the_tenant_label() {
        let s = spec(InstanceTier::Small);
        let kids = children(&s, "1.4.0", &secrets(), &Settings::default(), None).unwrap();
        let kinds: Vec<&str> = kids.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ResourceQuota",
                "LimitRange",
                "NetworkPolicy",
                "NetworkPolicy",
                "ServiceAccount",
                "Secret",
                "Deployment",
                "Service",
                "Ingress"
            ]
        );
        for c in &kids {
            assert_eq!(
                c.object["metadata"]["labels"][TENANT_LABEL], s.tenant_id,
                "{c:?}"
            );
            assert_eq!(c.object["metadata"]["labels"][MANAGED_BY], MANAGER);
            assert!(c.object["apiVersion"].is_string() && c.object["kind"].is_string());
            if c.kind != ChildKind::Namespace {
                assert_eq!(
                    c.namespace.as_deref(),
                    Some("tenant-0123456789abcdef0123456789abcdef")
                );
            }
        }
        let without_domain = TenantInstanceSpec { domain: None, ..s };
        let kids = children(
            &without_domain,
            "1.4.0",
            &secrets(),
            &Settings::default(),
            None,
        )
        .unwrap();
        assert!(kids.iter().all(|c| c.kind != ChildKind::Ingress));
    }

    #[test]
    fn quota_is_the_tiers() {
        let s = spec(InstanceTier::Micro);
        let q = quota(&s, "ns", &Sizing::of(s.tier.into()).unwrap(), None);
        let hard = q.spec.unwrap().hard.unwrap();
        assert_eq!(hard["limits.cpu"].0, "500m");
        assert_eq!(hard["limits.memory"].0, "512Mi");
        assert_eq!(hard["requests.storage"].0, "5Gi");
    }

    #[test]
    fn network_is_denied_by_default_and_opened_only_where_needed() {
        let s = spec(InstanceTier::Micro);
        let policies = network_policies(&s, "ns", &NetworkSettings::default(), None);
        let deny = policies[0].spec.as_ref().unwrap();
        assert_eq!(deny.pod_selector, Some(LabelSelector::default()));
        assert_eq!(
            deny.policy_types.as_deref(),
            Some(&["Ingress".to_owned(), "Egress".to_owned()][..])
        );
        assert!(deny.ingress.is_none() && deny.egress.is_none());
        let allow = policies[1].spec.as_ref().unwrap();
        assert_eq!(allow.ingress.as_ref().unwrap().len(), 1);
        let egress_ports: Vec<i32> = allow
            .egress
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|r| r.ports.clone().unwrap())
            .filter_map(|p| match p.port {
                Some(IntOrString::Int(n)) => Some(n),
                _ => None,
            })
            .collect();
        assert_eq!(egress_ports, [53, 53, 8080, 8200]);
    }

    #[test]
    fn suspension_scales_to_zero_and_keeps_everything_else() {
        let s = spec(InstanceTier::Large);
        let running = children(&s, "1.4.0", &secrets(), &Settings::default(), None).unwrap();
        let suspended_spec = TenantInstanceSpec {
            suspended: true,
            ..s
        };
        let suspended = children(
            &suspended_spec,
            "1.4.0",
            &secrets(),
            &Settings::default(),
            None,
        )
        .unwrap();
        assert_eq!(running.len(), suspended.len());
        let replicas = |kids: &[Child]| {
            kids.iter()
                .find(|c| c.kind == ChildKind::Deployment)
                .unwrap()
                .object["spec"]["replicas"]
                .as_i64()
        };
        assert_eq!(replicas(&running), Some(1));
        assert_eq!(replicas(&suspended), Some(0));
        assert_ne!(digest(&running, 3), digest(&suspended, 3));
    }

    #[test]
    fn the_digest_moves_with_the_secrets_version_not_their_values() {
        let s = spec(InstanceTier::Micro);
        let kids = children(&s, "1.4.0", &secrets(), &Settings::default(), None).unwrap();
        let secret = kids.iter().find(|c| c.kind == ChildKind::Secret).unwrap();
        assert!(secret.sensitive);
        assert!(!format!("{secret:?}").contains("s3cret"));
        let d = digest(&kids, 3);
        assert_eq!(d, digest(&kids, 3));
        // A rotation changes the pod template's annotation, and so the digest.
        let mut rotated = secrets();
        rotated.version = 4;
        let kids4 = children(&s, "1.4.0", &rotated, &Settings::default(), None).unwrap();
        assert_ne!(d, digest(&kids4, 4));
    }

    #[test]
    fn versions_are_image_tags() {
        for ok in ["1.4.0", "2.0.0-rc.1", "v3_beta"] {
            assert!(valid_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-1", "1.0 ; rm", "a/b", "1:2", &"9".repeat(129)] {
            assert!(valid_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_domain_that_is_not_a_host_is_refused_naming_the_field() {
        let s = TenantInstanceSpec {
            domain: Some("Evil Host/..".into()),
            ..spec(InstanceTier::Micro)
        };
        let err = children(&s, "1.4.0", &secrets(), &Settings::default(), None).unwrap_err();
        assert!(err.to_string().contains("spec.domain"), "{err}");
    }
}
