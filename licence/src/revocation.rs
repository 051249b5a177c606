//! The signed revocation list: the licences the platform has withdrawn,
//! under a sequence number that only rises. Shipped with every refresh; a
//! verifier never goes back to an older list, so an old list replayed
//! cannot un-revoke a licence.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::envelope::{self, Kind};
use crate::Error;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// Rises with every list the platform issues.
    pub sequence: u64,
    pub issued_at: i64,
    /// Ids of revoked licences.
    pub revoked: BTreeSet<String>,
}

impl RevocationList {
    /// Verifies a signed list.
    pub fn open(document: &[u8]) -> Result<RevocationList, Error> {
        let (_, list) = envelope::open_json::<RevocationList>(document, Kind::Revocations)?;
        Ok(list)
    }

    pub fn revokes(&self, licence_id: &str) -> bool {
        self.revoked.contains(licence_id)
    }
}
