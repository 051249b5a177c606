//! The public keys this verifier trusts, compiled in. A key id names each,
//! so the platform can sign with a new key while instances still trust the
//! old one (rotation: add the new key here, release, then sign with it).
//! Nothing at run time adds a key: a configurable key would let anyone who
//! can write the configuration sign their own licence.

/// Key id of the development key.
pub const DEV_KEY_ID: &str = "dev-2026";

/// The development key's seed. Public on purpose: `dotmac dev` and the
/// tests sign with it. Only builds with the `dev-key` feature trust it.
pub const DEV_SEED: [u8; 32] = *b"dotmac-development-licence-key!!";

/// The development key's public half (a test checks it is `DEV_SEED`'s).
#[cfg(feature = "dev-key")]
const DEV_PUBLIC: [u8; 32] = [
    0xeb, 0x1a, 0xfe, 0xd8, 0xe3, 0x32, 0x93, 0x57, 0x83, 0x09, 0x8e, 0x66, 0x05, 0x2a, 0x8d, 0x2a,
    0x0f, 0x8b, 0xfd, 0x8a, 0xf1, 0xff, 0xa4, 0xa5, 0x94, 0x65, 0xcb, 0xd6, 0xc5, 0x12, 0x57, 0x84,
];

/// The platform's production keys: `(key id, public key)`. Their private
/// halves are made by `dotmac licence keygen` straight into OpenBao and
/// never leave it; the ceremony adds the public half here.
const PRODUCTION: &[(&str, [u8; 32])] = &[];

/// The public key of `key_id`, if this build trusts it.
pub fn public_key(key_id: &str) -> Option<[u8; 32]> {
    #[cfg(feature = "dev-key")]
    if key_id == DEV_KEY_ID {
        return Some(DEV_PUBLIC);
    }
    PRODUCTION
        .iter()
        .find(|(id, _)| *id == key_id)
        .map(|(_, key)| *key)
}

/// Every key id this build trusts.
pub fn trusted() -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = PRODUCTION.iter().map(|(id, _)| *id).collect();
    if cfg!(feature = "dev-key") {
        ids.push(DEV_KEY_ID);
    }
    ids
}

#[cfg(all(test, feature = "dev-key"))]
mod tests {
    use super::*;

    #[test]
    fn the_dev_public_key_is_the_dev_seeds() {
        let derived = ed25519_dalek::SigningKey::from_bytes(&DEV_SEED)
            .verifying_key()
            .to_bytes();
        assert_eq!(derived, DEV_PUBLIC, "DEV_PUBLIC should be {derived:#04x?}");
    }

    #[test]
    fn only_compiled_in_keys_are_trusted() {
        assert!(public_key(DEV_KEY_ID).is_some());
        assert!(public_key("someone-elses").is_none());
        assert!(trusted().contains(&DEV_KEY_ID));
    }
}
