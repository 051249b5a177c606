//! The licence verifier an ISP instance embeds.
//!
//! Three signed documents travel from the platform to an instance, each an
//! [`envelope`]: a licence file (what the tenant may use, until when), a
//! revocation list (licences withdrawn, with a sequence that only rises) and
//! an entitlements snapshot (the tenant's effective features and limits,
//! versioned). Each is ed25519 over the exact payload bytes (no canonical
//! JSON), under a key id whose public key is compiled in ([`keys`]); nothing
//! at run time can add a key.
//!
//! [`Verifier`] checks licences offline: signature, validity window, grace,
//! revocation and the clock (a high-water mark of the time seen, so setting
//! the clock back never extends a licence and is reported).
//! [`Checker`] answers feature checks lock-free from the current snapshot,
//! says which source answered (live, cached, fallback) and keeps the last
//! snapshot on disk for a cold start without the platform.

pub mod clock;
pub mod envelope;
pub mod keys;
pub mod licence;
pub mod revocation;
#[cfg(feature = "sign")]
pub mod sign;
pub mod snapshot;

pub use clock::HighWater;
pub use envelope::Kind;
pub use licence::{
    Decision, Enforcement, FeatureGrant, LicencePayload, PluginGrant, Standing, Use, Verified,
    Verifier,
};
pub use revocation::RevocationList;
pub use snapshot::{Check, Checker, Entitlement, EntitlementValue, Snapshot, Source};

/// Why a document was refused. Every variant names what was wrong; none
/// carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("this is a {found}, not a {expected}")]
    WrongKind {
        expected: &'static str,
        found: &'static str,
    },
    #[error("signed with key {0:?}, which this verifier does not know")]
    UnknownKey(String),
    #[error("the signature does not match the content")]
    BadSignature,
    #[error("not valid before {not_before} (now {now})")]
    NotYetValid { not_before: i64, now: i64 },
    #[error("expired at {expires_at}; its grace ended at {grace_until} (now {now})")]
    Expired {
        expires_at: i64,
        grace_until: i64,
        now: i64,
    },
    #[error("revoked by revocation list {sequence}")]
    Revoked { sequence: u64 },
    #[error("revocation list {offered} is older than the one held ({held})")]
    StaleRevocations { offered: u64, held: u64 },
    #[error("the licence names revocation list {wanted}; the newest held is {held}")]
    RevocationsBehind { wanted: u64, held: u64 },
    #[error("issued for tenant {licensed}, not {asked}")]
    WrongTenant { licensed: String, asked: String },
    #[error("instance {0:?} is not activated on this licence")]
    NotActivated(String),
    #[error("snapshot version {offered} is older than the one held ({held})")]
    StaleSnapshot { offered: u64, held: u64 },
    #[error("snapshot cache {path}: {reason}")]
    Cache { path: String, reason: String },
}
