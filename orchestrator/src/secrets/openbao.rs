//! Tenant secrets in OpenBao/Vault (KV v2, works on Vault OSS): each tenant
//! has the path `<mount>/tenants/<id>/instance`, a policy `tenant-<id>` that
//! reads only under `tenants/<id>/`, and an orphan token holding only that
//! policy, delivered to its namespace so the instance reads its own secrets
//! and nothing else. Rotation writes a new KV version (the previous ones stay
//! readable by version); revocation revokes the token, deletes the policy and
//! every version.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::{checked, generate, SecretValue, SecretVault, TenantSecrets, GENERATION_KEY};
use crate::Error;

/// Where the instance's token is kept beside its secrets (never delivered).
const ACCESSOR_KEY: &str = "_token_accessor";
/// The instance's own token, delivered with its secrets.
const TOKEN_KEY: &str = "VAULT_TOKEN";

/// How to reach the store.
#[derive(Clone)]
pub struct OpenBaoSettings {
    pub address: String,
    /// The platform's token: writes tenants' paths and policies.
    pub token: SecretValue,
    /// The KV v2 mount.
    pub mount: String,
    /// Versions KV keeps of each tenant's secrets.
    pub max_versions: u64,
}

impl std::fmt::Debug for OpenBaoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBaoSettings")
            .field("address", &self.address)
            .field("mount", &self.mount)
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

    fn path(tenant: &str) -> String {
        format!("tenants/{tenant}/instance")
    }

    fn policy_name(tenant: &str) -> String {
        format!("tenant-{tenant}")
    }

    /// Reads under `tenants/<id>/` only.
    fn policy(&self, tenant: &str) -> String {
        let m = &self.settings.mount;
        format!(
            "path \"{m}/data/tenants/{tenant}/*\" {{ capabilities = [\"read\"] }}\n\
             path \"{m}/metadata/tenants/{tenant}/*\" {{ capabilities = [\"read\", \"list\"] }}\n"
        )
    }

    async fn read_latest(
        &self,
        tenant: &str,
    ) -> Result<Option<(u64, BTreeMap<String, String>)>, Error> {
        let path = Self::path(tenant);
        let meta =
            match vaultrs::kv2::read_metadata(&self.client, &self.settings.mount, &path).await {
                Ok(m) => m,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(vault_error("read metadata")(e)),
            };
        let version = meta.current_version;
        match vaultrs::kv2::read_version(&self.client, &self.settings.mount, &path, version).await {
            Ok(data) => Ok(Some((version, data))),
            // Deleted (not destroyed) versions answer 404 too.
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(vault_error("read")(e)),
        }
    }

    async fn write(&self, tenant: &str, data: &BTreeMap<String, String>) -> Result<u64, Error> {
        let meta = vaultrs::kv2::set(
            &self.client,
            &self.settings.mount,
            &Self::path(tenant),
            data,
        )
        .await
        .map_err(vault_error("write"))?;
        Ok(meta.version)
    }

    async fn instance_token(&self, tenant: &str) -> Result<(String, String), Error> {
        vaultrs::sys::policy::set(
            &self.client,
            &Self::policy_name(tenant),
            &self.policy(tenant),
        )
        .await
        .map_err(vault_error("write policy"))?;
        let auth = vaultrs::token::new_orphan(
            &self.client,
            Some(
                vaultrs::api::token::requests::CreateOrphanTokenRequest::builder()
                    .policies(vec![Self::policy_name(tenant)])
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
        let (stored_generation, secrets) = match self.read_latest(&tenant).await? {
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
                    None => self.instance_token(&tenant).await?,
                };
                data.insert(TOKEN_KEY.into(), token);
                data.insert(ACCESSOR_KEY.into(), accessor);
                data.insert(GENERATION_KEY.into(), generation.to_string());
                if existing.is_none() {
                    vaultrs::kv2::set_metadata(
                        &self.client,
                        &self.settings.mount,
                        &Self::path(&tenant),
                        Some(
                            vaultrs::api::kv2::requests::SetSecretMetadataRequest::builder()
                                .max_versions(self.settings.max_versions),
                        ),
                    )
                    .await
                    .map_err(vault_error("write metadata"))?;
                }
                let version = self.write(&tenant, &data).await?;
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
        let tenant = checked(tenant_id)?.to_string();
        match vaultrs::kv2::read_version::<BTreeMap<String, String>>(
            &self.client,
            &self.settings.mount,
            &Self::path(&tenant),
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
        if let Some((_, data)) = self.read_latest(&tenant).await? {
            if let Some(accessor) = data.get(ACCESSOR_KEY) {
                match vaultrs::token::revoke_accessor(&self.client, accessor).await {
                    // Already revoked (a retried cleanup): nothing to do.
                    Ok(())
                    | Err(ClientError::APIError {
                        code: 400 | 404, ..
                    }) => {}
                    Err(e) => return Err(vault_error("revoke instance token")(e)),
                }
            }
        }
        match vaultrs::kv2::delete_metadata(
            &self.client,
            &self.settings.mount,
            &Self::path(&tenant),
        )
        .await
        {
            Ok(()) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(vault_error("delete secrets")(e)),
        }
        match vaultrs::sys::policy::delete(&self.client, &Self::policy_name(&tenant)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(vault_error("delete policy")(e)),
        }
    }

    fn describe(&self) -> String {
        format!(
            "OpenBao/Vault at {} (KV v2 mount {})",
            self.settings.address, self.settings.mount
        )
    }
}
