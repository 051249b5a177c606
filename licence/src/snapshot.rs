//! Entitlements snapshots and the lock-free checker an instance asks at
//! every request.
//!
//! A snapshot is the tenant's effective entitlements (from its plan,
//! plugin licences, add-ons and overrides) under a version that only
//! rises, signed like a licence. [`Checker::enabled`] answers from the
//! snapshot held, without a lock, and says which source answered: `Live`
//! (installed from the platform), `Cached` (held, but the last refresh
//! failed) or `Fallback` (read back from disk at a cold start, before the
//! platform answered). Every snapshot installed is kept on disk (written
//! whole, then renamed), so a cold start without the platform still
//! answers from the last one instead of refusing everything.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

use crate::envelope::{self, Kind};
use crate::licence::Enforcement;
use crate::Error;

/// What one entitlement grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EntitlementValue {
    /// On or off.
    Boolean { enabled: bool },
    /// A configuration value (a limit, a name, a list).
    Config { value: serde_json::Value },
    /// A metered limit: a meter's use in the current reset period against
    /// the grants. Amounts are decimal strings (exact).
    Metered {
        meter: String,
        period: String,
        granted: String,
        used: String,
        balance: String,
        /// The instant (Unix seconds) the usage was committed up to.
        usage_as_of: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entitlement {
    pub value: EntitlementValue,
    pub enforcement: Enforcement,
}

impl Entitlement {
    /// Whether it lets the feature be used at all: a boolean that is on, any
    /// configuration, a metered limit with balance left.
    pub fn grants(&self) -> bool {
        match &self.value {
            EntitlementValue::Boolean { enabled } => *enabled,
            EntitlementValue::Config { .. } => true,
            EntitlementValue::Metered { balance, .. } => {
                !balance.starts_with('-') && balance.bytes().any(|b| (b'1'..=b'9').contains(&b))
            }
        }
    }
}

/// A tenant's entitlements at one version. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub tenant_id: String,
    /// Rises with every change of the tenant's entitlements.
    pub version: u64,
    pub issued_at: i64,
    pub entitlements: BTreeMap<String, Entitlement>,
}

/// Which snapshot answered a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Installed from the platform, and the last refresh succeeded.
    Live,
    /// Installed from the platform; the last refresh failed.
    Cached,
    /// Read back from disk at start; the platform has not answered yet.
    Fallback,
}

/// The answer to a feature check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub allowed: bool,
    /// `None` when no snapshot is held at all (nothing is allowed then).
    pub source: Option<Source>,
}

struct Held {
    snapshot: Snapshot,
    /// Feature → whether it is granted: the check's one lookup.
    grants: HashMap<String, bool>,
    source: Source,
    document: Arc<[u8]>,
}

/// Answers feature checks for one tenant; share it across threads.
pub struct Checker {
    tenant_id: String,
    held: ArcSwapOption<Held>,
    cache: Option<PathBuf>,
}

impl Checker {
    /// A checker for `tenant_id`, keeping its snapshots in `cache` (a file
    /// path) when given.
    pub fn new(tenant_id: &str, cache: Option<PathBuf>) -> Checker {
        Checker {
            tenant_id: tenant_id.to_owned(),
            held: ArcSwapOption::empty(),
            cache,
        }
    }

    /// At a cold start: the snapshot kept on disk, verified again, as the
    /// fallback. `false` when none is kept; an error when the kept one does
    /// not verify (it is then not used).
    pub fn load_fallback(&self) -> Result<bool, Error> {
        let Some(path) = &self.cache else {
            return Ok(false);
        };
        let document = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(cache_error(path, e)),
        };
        let snapshot = self.open(&document)?;
        if self.held.load().is_some() {
            // The platform answered meanwhile: its snapshot stays.
            return Ok(false);
        }
        self.held
            .store(Some(Arc::new(held(snapshot, Source::Fallback, document))));
        Ok(true)
    }

    /// Installs a snapshot from the platform: verified, for this tenant, not
    /// older than the one held; kept on disk. Answers its version.
    pub fn install(&self, document: &[u8]) -> Result<u64, Error> {
        let snapshot = self.open(document)?;
        if let Some(current) = self.held.load_full() {
            // A fallback read from disk never outranks what the platform sends.
            if current.source != Source::Fallback && snapshot.version < current.snapshot.version {
                return Err(Error::StaleSnapshot {
                    offered: snapshot.version,
                    held: current.snapshot.version,
                });
            }
        }
        let version = snapshot.version;
        if let Some(path) = &self.cache {
            write_whole(path, document)?;
        }
        self.held.store(Some(Arc::new(held(
            snapshot,
            Source::Live,
            document.to_vec(),
        ))));
        Ok(version)
    }

    /// A refresh failed: what is held keeps answering, as `Cached`.
    pub fn refresh_failed(&self) {
        self.held.rcu(|current| {
            current.as_ref().map(|h| {
                if h.source == Source::Live {
                    Arc::new(Held {
                        snapshot: h.snapshot.clone(),
                        grants: h.grants.clone(),
                        source: Source::Cached,
                        document: h.document.clone(),
                    })
                } else {
                    Arc::clone(h)
                }
            })
        });
    }

    /// Is `feature` granted? Lock-free: one atomic load and one lookup.
    pub fn enabled(&self, feature: &str) -> Check {
        let held = self.held.load();
        match held.as_ref() {
            Some(h) => Check {
                allowed: h.grants.get(feature).copied().unwrap_or(false),
                source: Some(h.source),
            },
            None => Check {
                allowed: false,
                source: None,
            },
        }
    }

    /// The entitlement of `feature`, with its value (configuration, metered
    /// balance) and enforcement.
    pub fn entitlement(&self, feature: &str) -> Option<(Entitlement, Source)> {
        let held = self.held.load();
        let h = held.as_ref()?;
        Some((h.snapshot.entitlements.get(feature)?.clone(), h.source))
    }

    /// The version held and where it came from.
    pub fn version(&self) -> Option<(u64, Source)> {
        self.held
            .load()
            .as_ref()
            .map(|h| (h.snapshot.version, h.source))
    }

    fn open(&self, document: &[u8]) -> Result<Snapshot, Error> {
        let (_, snapshot) = envelope::open_json::<Snapshot>(document, Kind::Snapshot)?;
        if snapshot.tenant_id != self.tenant_id {
            return Err(Error::WrongTenant {
                licensed: snapshot.tenant_id,
                asked: self.tenant_id.clone(),
            });
        }
        Ok(snapshot)
    }
}

fn held(snapshot: Snapshot, source: Source, document: Vec<u8>) -> Held {
    let grants = snapshot
        .entitlements
        .iter()
        .map(|(k, e)| (k.clone(), e.grants()))
        .collect();
    Held {
        snapshot,
        grants,
        source,
        document: document.into(),
    }
}

fn cache_error(path: &Path, e: std::io::Error) -> Error {
    Error::Cache {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes `bytes` to a sibling file and renames it over `path`: a crash
/// leaves the old snapshot or the new one, never half of one.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let tmp = path.with_extension("partial");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| cache_error(path, e))
}
