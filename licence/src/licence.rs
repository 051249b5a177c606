//! The licence file and its offline verification: who it is for, which
//! plugins at which tiers, the features they grant and how each is
//! enforced, limits, and its validity window (not before → refresh after →
//! expires → grace until).
//!
//! Enforcement never stops running traffic: past expiry, `hard` features
//! refuse new use at once, `soft` ones when the grace ends, `advisory` ones
//! only warn; use already under way is always allowed (with a warning).

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::clock::HighWater;
use crate::envelope::{self, Kind};
use crate::revocation::RevocationList;
use crate::Error;

/// How a feature is enforced once its licence has expired, most lenient
/// first (the order is the declaration's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Never refused; expiry is only reported.
    Advisory,
    /// New use refused once the grace has ended.
    Soft,
    /// New use refused from expiry on.
    Hard,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureGrant {
    pub enforcement: Enforcement,
}

/// A plugin the licence covers, at its tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginGrant {
    pub plugin: String,
    pub tier: String,
    /// A trial: granted while it lasts, once per tenant and plugin.
    pub trial: bool,
}

/// What a licence file says. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicencePayload {
    pub licence_id: String,
    pub tenant_id: String,
    /// The instances activated on it (ids made at install).
    pub instance_ids: Vec<String>,
    pub plugins: Vec<PluginGrant>,
    pub features: BTreeMap<String, FeatureGrant>,
    pub limits: BTreeMap<String, i64>,
    pub issued_at: i64,
    pub not_before: i64,
    /// Ask the platform for a fresh file from here on.
    pub refresh_after: i64,
    pub expires_at: i64,
    pub grace_until: i64,
    /// The revocation list current when it was issued.
    pub revocation_seq: u64,
}

impl LicencePayload {
    fn check_window(&self) -> Result<(), Error> {
        let ordered = self.not_before <= self.refresh_after
            && self.refresh_after <= self.expires_at
            && self.expires_at <= self.grace_until;
        if ordered {
            Ok(())
        } else {
            Err(Error::Malformed(
                "validity must run not_before ≤ refresh_after ≤ expires_at ≤ grace_until".into(),
            ))
        }
    }
}

/// Where a licence is in its life, by the verifier's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Valid,
    /// Still valid; a fresh file should be fetched.
    RefreshDue,
    /// Expired, inside its grace.
    InGrace,
    /// Expired and past its grace.
    PastGrace,
}

/// Whether a use is new or already under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    New,
    Running,
}

/// The answer to "may this feature be used?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed, with something the operator should hear.
    Warn(String),
    Deny(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        !matches!(self, Decision::Deny(_))
    }
}

/// A licence whose signature, window, tenant, instance and revocation
/// checked out, judged at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
    pub payload: LicencePayload,
    pub standing: Standing,
    /// The instant it was judged at (the clock, or the high-water mark).
    pub judged_at: i64,
    /// Set when the clock was behind the high-water mark by more than the tolerance.
    pub clock_rolled_back_by: Option<i64>,
    /// The licence was issued after a revocation list newer than the one
    /// held: fetch the list.
    pub revocations_behind: bool,
}

impl Verified {
    /// May `feature` be used now?
    pub fn decide(&self, feature: &str, use_: Use) -> Decision {
        let Some(grant) = self.payload.features.get(feature) else {
            return Decision::Deny(format!("{feature} is not licensed"));
        };
        let expired = match self.standing {
            Standing::Valid | Standing::RefreshDue => return Decision::Allow,
            Standing::InGrace => format!(
                "the licence expired at {}; grace until {}",
                self.payload.expires_at, self.payload.grace_until
            ),
            Standing::PastGrace => format!(
                "the licence expired at {} and its grace ended at {}",
                self.payload.expires_at, self.payload.grace_until
            ),
        };
        let refuse = match (grant.enforcement, self.standing) {
            (_, _) if use_ == Use::Running => false,
            (Enforcement::Hard, _) => true,
            (Enforcement::Soft, Standing::PastGrace) => true,
            _ => false,
        };
        if refuse {
            Decision::Deny(format!("{feature}: {expired}"))
        } else {
            Decision::Warn(format!("{feature}: {expired}"))
        }
    }
}

/// Verifies licence files offline. Holds the newest revocation list seen
/// and the clock's high-water mark; shareable across threads.
#[derive(Debug, Default)]
pub struct Verifier {
    clock: HighWater,
    revocations: ArcSwap<RevocationList>,
}

impl Verifier {
    /// A verifier whose clock has seen `high_water` (kept from an earlier
    /// run; 0 for none).
    pub fn new(high_water: i64) -> Verifier {
        Verifier {
            clock: HighWater::new(high_water),
            revocations: ArcSwap::from_pointee(RevocationList::default()),
        }
    }

    /// The latest time seen, to keep for the next run.
    pub fn high_water(&self) -> i64 {
        self.clock.seen()
    }

    /// The sequence of the revocation list held.
    pub fn revocation_sequence(&self) -> u64 {
        self.revocations.load().sequence
    }

    /// Takes a signed revocation list, refusing one older than the list held.
    pub fn accept_revocations(&self, document: &[u8]) -> Result<u64, Error> {
        let offered = RevocationList::open(document)?;
        let held = self.revocations.load();
        if offered.sequence < held.sequence {
            return Err(Error::StaleRevocations {
                offered: offered.sequence,
                held: held.sequence,
            });
        }
        let sequence = offered.sequence;
        // Two lists accepted at once: the higher sequence stays.
        self.revocations.rcu(|current| {
            if current.sequence > offered.sequence {
                Arc::clone(current)
            } else {
                Arc::new(offered.clone())
            }
        });
        Ok(sequence)
    }

    /// Verifies a licence file for `tenant_id` (and, when given, the
    /// activated `instance_id`) at `now` (Unix seconds).
    pub fn verify(
        &self,
        document: &[u8],
        tenant_id: &str,
        instance_id: Option<&str>,
        now: i64,
    ) -> Result<Verified, Error> {
        let (key_id, payload) = envelope::open_json::<LicencePayload>(document, Kind::Licence)?;
        payload.check_window()?;
        if payload.tenant_id != tenant_id {
            return Err(Error::WrongTenant {
                licensed: payload.tenant_id,
                asked: tenant_id.to_owned(),
            });
        }
        if let Some(instance) = instance_id {
            if !payload.instance_ids.iter().any(|i| i == instance) {
                return Err(Error::NotActivated(instance.to_owned()));
            }
        }
        let revocations = self.revocations.load();
        if revocations.revokes(&payload.licence_id) {
            return Err(Error::Revoked {
                sequence: revocations.sequence,
            });
        }
        let reading = self.clock.observe(now);
        let at = reading.now;
        if at < payload.not_before {
            return Err(Error::NotYetValid {
                not_before: payload.not_before,
                now: at,
            });
        }
        let standing = if at < payload.refresh_after {
            Standing::Valid
        } else if at < payload.expires_at {
            Standing::RefreshDue
        } else if at < payload.grace_until {
            Standing::InGrace
        } else {
            Standing::PastGrace
        };
        Ok(Verified {
            key_id,
            revocations_behind: payload.revocation_seq > revocations.sequence,
            payload,
            standing,
            judged_at: at,
            clock_rolled_back_by: reading.rolled_back_by,
        })
    }
}
