//! Tenant secrets in OpenBao/Vault, in one of two scopes chosen by config
//! ([`VaultScope`]):
//!
//! - `kv-path` (works on Vault OSS): each tenant has the path
//!   `<mount>/tenants/<id>/instance` and a policy `tenant-<id>` that reads
//!   only under `tenants/<id>/`, in the platform's namespace;
//! - `namespace` (OpenBao ≥ 2.3, Vault Enterprise): each tenant has its own
//!   namespace `tenant-<id>` holding its KV v2 mount, the path `instance`
//!   and the policy `instance`; deleting the namespace removes all of it.
//!
//! Either way an orphan token holding only the tenant's policy is delivered
//! to its Kubernetes namespace, so the instance reads its own secrets and
//! nothing else. Rotation writes a new KV version (the previous ones stay
//! readable by version); revocation revokes the token and deletes the
//! policy and every version (in `namespace` scope, the namespace itself).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{Client, VaultClient, VaultClientSettings, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::{checked, generate, SecretValue, SecretVault, TenantSecrets, GENERATION_KEY};
use crate::Error;

/// Where the instance's token is kept beside its secrets (never delivered).
const ACCESSOR_KEY: &str = "_token_accessor";
/// The instance's own token, delivered with its secrets.
const TOKEN_KEY: &str = "VAULT_TOKEN";

/// The instance's OpenBao namespace, delivered beside its token (`namespace` scope).
const NAMESPACE_KEY: &str = "VAULT_NAMESPACE";

/// Where each tenant's secrets are kept apart from the others'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaultScope {
    /// A KV v2 path and a policy per tenant in the platform's namespace:
    /// works on every Vault and OpenBao.
    #[default]
    KvPath,
    /// A namespace per tenant (OpenBao ≥ 2.3 or Vault Enterprise): the
    /// tenant's mount, policy and token live inside it, and deleting it
    /// removes them all at once.
    Namespace,
}

/// How to reach the store.
#[derive(Clone)]
pub struct OpenBaoSettings {
    pub address: String,
    /// The platform's token: writes tenants' paths and policies (and, in
    /// `namespace` scope, creates and deletes tenants' namespaces).
    pub token: SecretValue,
    /// The KV v2 mount (in `namespace` scope, the mount made in each tenant's namespace).
    pub mount: String,
    /// Versions KV keeps of each tenant's secrets.
    pub max_versions: u64,
    pub scope: VaultScope,
}

/// Where one tenant's secrets are: the store's namespace (if any), mount and
/// path, and the policy its instance token holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretLocation {
    pub namespace: Option<String>,
    pub mount: String,
    pub path: String,
    pub policy: String,
}

/// The platform's client, speaking inside one namespace (or the platform's
/// own). It shares the platform client's connection pool and token; only the
/// namespace header differs.
struct Scoped<'a> {
    base: &'a VaultClient,
    middle: EndpointMiddleware,
}

impl Client for Scoped<'_> {
    fn http(&self) -> &rustify::clients::reqwest::Client {
        &self.base.http
    }

    fn middle(&self) -> &EndpointMiddleware {
        &self.middle
    }

    fn settings(&self) -> &VaultClientSettings {
        &self.base.settings
    }

    fn set_token(&mut self, token: &str) {
        self.middle.token = token.to_owned();
    }
}

impl std::fmt::Debug for OpenBaoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBaoSettings")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

pub struct OpenBao {
    client: VaultClient,
    settings: OpenBaoSettings,
    /// What this process last read or wrote per tenant: a reconcile that
    /// changes nothing costs no round trip to the store.
    cache: Mutex<HashMap<String, (u32, TenantSecrets)>>,
}

fn vault_error(op: &'static str) -> impl Fn(ClientError) -> Error {
    move |e| Error::Vault {
        op,
        // The server's own words (e.g. "permission denied"), never a value:
        // requests carrying secrets are not echoed back by the server.
        reason: match e {
            ClientError::APIError { code, errors } => {
                format!("status {code}: {}", errors.join("; "))
            }
            other => other.to_string(),
        },
    }
}

fn not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 404, .. })
}

impl OpenBao {
    pub fn new(settings: OpenBaoSettings) -> Result<OpenBao, Error> {
        let client = VaultClient::new(
            VaultClientSettingsBuilder::default()
                .address(settings.address.as_str())
                .token(settings.token.expose())
                .timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| Error::Invalid {
                    field: "vault.address",
                    reason: e.to_string(),
                })?,
        )
        .map_err(vault_error("connect"))?;
        Ok(OpenBao {
            client,
            settings,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Where `tenant`'s secrets are, in this store's scope. `tenant` is a
    /// checked tenant id: it is the only thing that names a path.
    pub fn location(&self, tenant: &str) -> SecretLocation {
        let mount = self.settings.mount.clone();
        match self.settings.scope {
            VaultScope::KvPath => SecretLocation {
                namespace: None,
                mount,
                path: format!("tenants/{tenant}/instance"),
                policy: format!("tenant-{tenant}"),
            },
            VaultScope::Namespace => SecretLocation {
                namespace: Some(format!("tenant-{tenant}")),
                mount,
                path: "instance".into(),
                policy: "instance".into(),
            },
        }
    }

    /// A secret of the platform itself (e.g. the licence signing key), at
    /// `<mount>/platform/<name>` in the platform's namespace. `None` when
    /// it does not exist.
    pub async fn platform_secret(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, SecretValue>>, Error> {
        match vaultrs::kv2::read::<BTreeMap<String, String>>(
            &self.client,
            &self.settings.mount,
            &format!("platform/{name}"),
        )
        .await
        {
            Ok(data) => Ok(Some(
                data.into_iter()
                    .map(|(k, v)| (k, SecretValue::new(v)))
                    .collect(),
            )),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(vault_error("read platform secret")(e)),
        }
    }

    /// Writes a secret of the platform itself (a new KV version).
    pub async fn put_platform_secret(
        &self,
        name: &str,
        values: &BTreeMap<String, SecretValue>,
    ) -> Result<(), Error> {
        let data: BTreeMap<&str, &str> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        vaultrs::kv2::set(
            &self.client,
            &self.settings.mount,
            &format!("platform/{name}"),
            &data,
        )
        .await
        .map_err(vault_error("write platform secret"))?;
        Ok(())
    }

    /// The policy of the instance's token: reads its own path only.
    fn policy(at: &SecretLocation) -> String {
        let (m, p) = (&at.mount, &at.path);
        format!(
            "path \"{m}/data/{p}\" {{ capabilities = [\"read\"] }}\n\
             path \"{m}/metadata/{p}\" {{ capabilities = [\"read\", \"list\"] }}\n"
        )
    }

    /// The platform's client inside `at`'s namespace.
    fn client(&self, at: &SecretLocation) -> Scoped<'_> {
        let mut middle = self.client.middle.clone();
        if let Some(ns) = &at.namespace {
            middle.namespace = Some(ns.clone());
        }
        Scoped {
            base: &self.client,
            middle,
        }
    }

    /// `sys/namespaces/<name>`, which vaultrs does not cover: answers the
    /// status and the body's `data`.
    async fn namespace_call(
        &self,
        method: reqwest::Method,
        name: &str,
        op: &'static str,
    ) -> Result<(u16, serde_json::Value), Error> {
        let url = format!(
            "{}/v1/sys/namespaces/{name}",
            self.settings.address.trim_end_matches('/')
        );
        let failed = |reason: String| Error::Vault { op, reason };
        let response = self
            .client
            .http
            .http
            .request(method, url)
            .header("X-Vault-Token", self.settings.token.expose())
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status >= 400 && status != 404 {
            let errors = body["errors"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .filter_map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            return Err(failed(format!("status {status}: {errors}")));
        }
        Ok((status, body["data"].clone()))
    }

    /// The tenant's namespace and its KV mount, made if missing (`namespace`
    /// scope; nothing to do in `kv-path`). Both steps are idempotent.
    async fn prepare(&self, at: &SecretLocation) -> Result<(), Error> {
        let Some(ns) = &at.namespace else {
            return Ok(());
        };
        // Creating a namespace that exists answers it as it is.
        self.namespace_call(reqwest::Method::POST, ns, "create namespace")
            .await?;
        let mounted = vaultrs::sys::mount::enable(
            &self.client(at),
            &at.mount,
            "kv",
            Some(
                vaultrs::api::sys::requests::EnableEngineRequest::builder()
                    .options(HashMap::from([("version".to_owned(), "2".to_owned())])),
            ),
        )
        .await;
        match mounted {
            Ok(()) => Ok(()),
            // Made by an earlier pass that stopped before writing.
            Err(ClientError::APIError { code: 400, errors })
                if errors.iter().any(|e| e.contains("already in use")) =>
            {
                Ok(())
            }
            Err(e) => Err(vault_error("mount tenant's KV")(e)),
        }
    }

    /// Deletes the tenant's namespace with everything in it. The store
    /// deletes in the background: this waits (bounded) until it is gone, and
    /// answers an error while it is not, so the cleanup step is retried
    /// rather than reported done early.
    async fn delete_namespace(&self, ns: &str) -> Result<(), Error> {
        self.namespace_call(reqwest::Method::DELETE, ns, "delete namespace")
            .await?;
        for _ in 0..40 {
            let (status, _) = self
                .namespace_call(reqwest::Method::GET, ns, "read namespace")
                .await?;
            if status == 404 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(Error::Vault {
            op: "delete namespace",
            reason: format!("{ns} is still being deleted"),
        })
    }

    async fn read_latest(
        &self,
        at: &SecretLocation,
    ) -> Result<Option<(u64, BTreeMap<String, String>)>, Error> {
        let client = self.client(at);
        // A missing namespace or mount answers 404 like a missing path.
        let meta = match vaultrs::kv2::read_metadata(&client, &at.mount, &at.path).await {
            Ok(m) => m,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(vault_error("read metadata")(e)),
        };
        let version = meta.current_version;
        match vaultrs::kv2::read_version(&client, &at.mount, &at.path, version).await {
            Ok(data) => Ok(Some((version, data))),
            // Deleted (not destroyed) versions answer 404 too.
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(vault_error("read")(e)),
        }
    }

    async fn write(
        &self,
        at: &SecretLocation,
        data: &BTreeMap<String, String>,
    ) -> Result<u64, Error> {
        let meta = vaultrs::kv2::set(&self.client(at), &at.mount, &at.path, data)
            .await
            .map_err(vault_error("write"))?;
        Ok(meta.version)
    }

    async fn instance_token(
        &self,
        tenant: &str,
        at: &SecretLocation,
    ) -> Result<(String, String), Error> {
        let client = self.client(at);
        vaultrs::sys::policy::set(&client, &at.policy, &Self::policy(at))
            .await
            .map_err(vault_error("write policy"))?;
        let auth = vaultrs::token::new_orphan(
            &client,
            Some(
                vaultrs::api::token::requests::CreateOrphanTokenRequest::builder()
                    .policies(vec![at.policy.clone()])
                    .no_default_policy(true)
                    .display_name(format!("instance-{tenant}"))
                    .meta(HashMap::from([("tenant".to_owned(), tenant.to_owned())]))
                    .period("768h")
                    .renewable(true),
            ),
        )
        .await
        .map_err(vault_error("create instance token"))?;
        Ok((auth.client_token, auth.accessor))
    }
}

fn delivered(version: u64, data: &BTreeMap<String, String>) -> TenantSecrets {
    TenantSecrets {
        version,
        values: data
            .iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .map(|(k, v)| (k.clone(), SecretValue::new(v.clone())))
            .collect(),
    }
}

fn generation_of(data: &BTreeMap<String, String>) -> u32 {
    data.get(GENERATION_KEY)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl SecretVault for OpenBao {
    async fn ensure(&self, tenant_id: &str, generation: u32) -> Result<TenantSecrets, Error> {
        let tenant = checked(tenant_id)?.to_string();
        if let Some((g, s)) = self.cache.lock().expect("cache lock").get(&tenant) {
            if *g >= generation {
                return Ok(s.clone());
            }
        }
        let at = self.location(&tenant);
        let (stored_generation, secrets) = match self.read_latest(&at).await? {
            Some((version, data)) if generation_of(&data) >= generation => {
                (generation_of(&data), delivered(version, &data))
            }
            existing => {
                let mut data: BTreeMap<String, String> = generate()
                    .into_iter()
                    .map(|(k, v)| (k, v.expose().to_owned()))
                    .collect();
                // A rotation renews the framework's secrets; the instance's
                // token stays (revoking it would cut off the running pods
                // before they have the new version).
                let kept = existing.as_ref().and_then(|(_, old)| {
                    Some((old.get(TOKEN_KEY)?.clone(), old.get(ACCESSOR_KEY)?.clone()))
                });
                let (token, accessor) = match kept {
                    Some(pair) => pair,
                    None => {
                        self.prepare(&at).await?;
                        self.instance_token(&tenant, &at).await?
                    }
                };
                data.insert(TOKEN_KEY.into(), token);
                data.insert(ACCESSOR_KEY.into(), accessor);
                data.insert(GENERATION_KEY.into(), generation.to_string());
                if let Some(ns) = &at.namespace {
                    data.insert(NAMESPACE_KEY.into(), ns.clone());
                }
                if existing.is_none() {
                    vaultrs::kv2::set_metadata(
                        &self.client(&at),
                        &at.mount,
                        &at.path,
                        Some(
                            vaultrs::api::kv2::requests::SetSecretMetadataRequest::builder()
                                .max_versions(self.settings.max_versions),
                        ),
                    )
                    .await
                    .map_err(vault_error("write metadata"))?;
                }
                let version = self.write(&at, &data).await?;
                (generation, delivered(version, &data))
            }
        };
        self.cache
            .lock()
            .expect("cache lock")
            .insert(tenant, (stored_generation, secrets.clone()));
        Ok(secrets)
    }

    async fn version(&self, tenant_id: &str, version: u64) -> Result<Option<TenantSecrets>, Error> {
        let at = self.location(&checked(tenant_id)?.to_string());
        match vaultrs::kv2::read_version::<BTreeMap<String, String>>(
            &self.client(&at),
            &at.mount,
            &at.path,
            version,
        )
        .await
        {
            Ok(data) => Ok(Some(delivered(version, &data))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(vault_error("read version")(e)),
        }
    }

    async fn revoke(&self, tenant_id: &str) -> Result<(), Error> {
        let tenant = checked(tenant_id)?.to_string();
        self.cache.lock().expect("cache lock").remove(&tenant);
        let at = self.location(&tenant);
        let client = self.client(&at);
        if let Some((_, data)) = self.read_latest(&at).await? {
            if let Some(accessor) = data.get(ACCESSOR_KEY) {
                match vaultrs::token::revoke_accessor(&client, accessor).await {
                    // Already revoked (a retried cleanup): nothing to do.
                    Ok(())
                    | Err(ClientError::APIError {
                        code: 400 | 404, ..
                    }) => {}
                    Err(e) => return Err(vault_error("revoke instance token")(e)),
                }
            }
        }
        if let Some(ns) = &at.namespace {
            return self.delete_namespace(ns).await;
        }
        match vaultrs::kv2::delete_metadata(&client, &at.mount, &at.path).await {
            Ok(()) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(vault_error("delete secrets")(e)),
        }
        match vaultrs::sys::policy::delete(&client, &at.policy).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(vault_error("delete policy")(e)),
        }
    }

    fn describe(&self) -> String {
        let scope = match self.settings.scope {
            VaultScope::KvPath => "a path and policy per tenant",
            VaultScope::Namespace => "a namespace per tenant",
        };
        format!(
            "OpenBao/Vault at {} (KV v2 mount {}, {scope})",
            self.settings.address, self.settings.mount
        )
    }
}
