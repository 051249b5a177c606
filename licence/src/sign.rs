//! The platform's side: signing licences, revocation lists and snapshots
//! (feature `sign`). The seed comes from OpenBao in production and from the
//! data dir in `dotmac dev`; it is never printed (its `Debug` shows the key
//! id only).

use ed25519_dalek::{Signer as _, SigningKey};
use serde::Serialize;

use crate::envelope::{self, Kind, MAX_KEY_ID};
use crate::keys;
use crate::Error;

pub struct Signer {
    key_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The key `key_id` from its 32-byte seed.
    pub fn from_seed(key_id: &str, seed: [u8; 32]) -> Result<Signer, Error> {
        let valid = !key_id.is_empty()
            && key_id.len() <= MAX_KEY_ID
            && key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(Error::Malformed(format!(
                "key id {key_id:?} is not 1 to {MAX_KEY_ID} letters, digits, - or _"
            )));
        }
        Ok(Signer {
            key_id: key_id.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The development key (trusted only by `dev-key` builds).
    pub fn dev() -> Signer {
        Signer {
            key_id: keys::DEV_KEY_ID.to_owned(),
            key: SigningKey::from_bytes(&keys::DEV_SEED),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Signs `payload` as a `kind` document.
    pub fn sign(&self, kind: Kind, payload: &[u8]) -> String {
        let input = envelope::signing_input(kind, &self.key_id, payload);
        let signature = self.key.sign(input.as_bytes()).to_bytes();
        envelope::sealed(input, &signature)
    }

    /// Signs `value` encoded as JSON.
    pub fn sign_json<T: Serialize>(&self, kind: Kind, value: &T) -> Result<String, Error> {
        let payload =
            serde_json::to_vec(value).map_err(|e| Error::Malformed(format!("payload: {e}")))?;
        Ok(self.sign(kind, &payload))
    }
}
