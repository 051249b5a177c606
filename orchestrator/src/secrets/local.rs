//! Tenant secrets for `dotmac dev`: one file per tenant in the data dir,
//! encrypted with ChaCha20-Poly1305 under a key made on first use (mode 0600
//! beside them). Versions are kept like KV v2 keeps them; revocation deletes
//! the file. Written to a temporary file and renamed, so a crash never leaves
//! half a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{checked, generate, SecretValue, SecretVault, TenantSecrets};
use crate::Error;

/// Versions kept per tenant, as the production store keeps them.
const MAX_VERSIONS: usize = 10;

#[derive(Default, Serialize, Deserialize)]
struct Versions {
    /// (version, generation, values), oldest first.
    versions: Vec<(u64, u32, BTreeMap<String, SecretValue>)>,
}

pub struct LocalSecrets {
    dir: PathBuf,
    cipher: ChaCha20Poly1305,
    /// One writer at a time: read-modify-write of a tenant's file.
    lock: Mutex<()>,
}

fn io(op: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Io {
        op,
        reason: e.to_string(),
    }
}

impl LocalSecrets {
    /// The store under `dir` (made if missing), with its key.
    pub fn open(dir: &Path) -> Result<LocalSecrets, Error> {
        std::fs::create_dir_all(dir).map_err(io("create the secrets dir"))?;
        let key_path = dir.join(".key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 32 => k,
            Ok(_) => {
                return Err(Error::Invalid {
                    field: "secrets key",
                    reason: format!("{} is not a 32-byte key", key_path.display()),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut k);
                write_private(&key_path, &k)?;
                k
            }
            Err(e) => return Err(io("read the secrets key")(e)),
        };
        Ok(LocalSecrets {
            dir: dir.to_owned(),
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
            lock: Mutex::new(()),
        })
    }

    fn file(&self, tenant: &str) -> PathBuf {
        self.dir.join(format!("{tenant}.sealed"))
    }

    fn load(&self, tenant: &str) -> Result<Versions, Error> {
        let sealed = match std::fs::read(self.file(tenant)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Versions::default()),
            Err(e) => return Err(io("read a tenant's secrets")(e)),
        };
        if sealed.len() < 12 {
            return Err(Error::Crypto("a sealed secrets file is truncated".into()));
        }
        let (nonce, body) = sealed.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| {
                Error::Crypto("a sealed secrets file does not open with this key".into())
            })?;
        serde_json::from_slice(&plain)
            .map_err(|e| Error::Crypto(format!("a sealed secrets file is not readable: {e}")))
    }

    fn store(&self, tenant: &str, v: &Versions) -> Result<(), Error> {
        let plain = serde_json::to_vec(v).map_err(|e| Error::Crypto(e.to_string()))?;
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let body = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| Error::Crypto("sealing failed".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend(body);
        write_private(&self.file(tenant), &sealed)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, readable
/// by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io("write a sealed file"))?;
    f.write_all(bytes).map_err(io("write a sealed file"))?;
    f.sync_all().map_err(io("sync a sealed file"))?;
    std::fs::rename(&tmp, path).map_err(io("rename a sealed file"))
}

#[async_trait::async_trait]
impl SecretVault for LocalSecrets {
    async fn ensure(&self, tenant_id: &str, generation: u32) -> Result<TenantSecrets, Error> {
        let tenant = checked(tenant_id)?.to_string();
        let _one_writer = self.lock.lock().await;
        let mut all = self.load(&tenant)?;
        if let Some((version, g, values)) = all.versions.last() {
            if *g >= generation {
                return Ok(TenantSecrets {
                    version: *version,
                    values: values.clone(),
                });
            }
        }
        let version = all.versions.last().map(|(v, _, _)| v + 1).unwrap_or(1);
        let values = generate();
        all.versions.push((version, generation, values.clone()));
        if all.versions.len() > MAX_VERSIONS {
            all.versions.remove(0);
        }
        self.store(&tenant, &all)?;
        Ok(TenantSecrets { version, values })
    }

    async fn version(&self, tenant_id: &str, version: u64) -> Result<Option<TenantSecrets>, Error> {
        let tenant = checked(tenant_id)?.to_string();
        let _one_writer = self.lock.lock().await;
        Ok(self
            .load(&tenant)?
            .versions
            .into_iter()
            .find(|(v, _, _)| *v == version)
            .map(|(version, _, values)| TenantSecrets { version, values }))
    }

    async fn revoke(&self, tenant_id: &str) -> Result<(), Error> {
        let tenant = checked(tenant_id)?.to_string();
        let _one_writer = self.lock.lock().await;
        match std::fs::remove_file(self.file(&tenant)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete a tenant's secrets")(e)),
        }
    }

    fn describe(&self) -> String {
        format!("local encrypted store in {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "ten_0123456789abcdef0123456789abcdef";

    #[tokio::test]
    async fn rotation_keeps_versions_and_revocation_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecrets::open(dir.path()).unwrap();
        let first = store.ensure(TENANT, 0).await.unwrap();
        assert_eq!(first.version, 1);
        assert_eq!(store.ensure(TENANT, 0).await.unwrap(), first, "idempotent");
        let second = store.ensure(TENANT, 1).await.unwrap();
        assert_eq!(second.version, 2);
        assert_ne!(second.values, first.values);
        assert_eq!(store.version(TENANT, 1).await.unwrap(), Some(first.clone()));
        // The file holds no value in clear, and reopening with the key reads it.
        let raw = std::fs::read(dir.path().join(format!("{TENANT}.sealed"))).unwrap();
        let pw = first.values["DATABASE_PASSWORD"].expose().as_bytes();
        assert!(!raw.windows(pw.len()).any(|w| w == pw));
        let reopened = LocalSecrets::open(dir.path()).unwrap();
        assert_eq!(reopened.ensure(TENANT, 1).await.unwrap(), second);
        reopened.revoke(TENANT).await.unwrap();
        reopened.revoke(TENANT).await.unwrap();
        assert_eq!(reopened.version(TENANT, 2).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_file_sealed_under_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecrets::open(dir.path()).unwrap();
        store.ensure(TENANT, 0).await.unwrap();
        std::fs::write(dir.path().join(".key"), [7u8; 32]).unwrap();
        let other = LocalSecrets::open(dir.path()).unwrap();
        let err = other.ensure(TENANT, 0).await.unwrap_err();
        assert!(err.to_string().contains("does not open"), "{err}");
    }
}
