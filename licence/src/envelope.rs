//! The signed envelope of every document: one line of ASCII,
//!
//! ```text
//! <kind>.<key id>.<payload, base64url>.<signature, base64url>
//! ```
//!
//! optionally followed by one `\n`. The signature is ed25519 over the bytes
//! `<kind>.<key id>.<payload, base64url>` exactly as they appear, so the kind
//! and the key id are signed with the payload and no byte can change
//! unnoticed. Base64 is strict (no padding, no stray bits), sizes are
//! bounded, and nothing is parsed before the signature is checked.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::keys;
use crate::Error;

/// The largest document accepted, in bytes.
pub const MAX_LEN: usize = 256 * 1024;
/// The longest key id.
pub const MAX_KEY_ID: usize = 32;

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Licence,
    Revocations,
    Snapshot,
}

impl Kind {
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Licence => "dmlic1",
            Kind::Revocations => "dmrev1",
            Kind::Snapshot => "dment1",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Licence => "licence",
            Kind::Revocations => "revocation list",
            Kind::Snapshot => "entitlements snapshot",
        }
    }

    fn of_tag(tag: &str) -> Option<Kind> {
        [Kind::Licence, Kind::Revocations, Kind::Snapshot]
            .into_iter()
            .find(|k| k.tag() == tag)
    }
}

/// A document whose signature checked out: its key id and payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub key_id: String,
    pub payload: Vec<u8>,
}

/// Checks `document` is a `kind` signed by a known key, and answers its
/// payload. Never panics, whatever the input.
pub fn open(document: &[u8], kind: Kind) -> Result<Opened, Error> {
    if document.len() > MAX_LEN {
        return Err(Error::Malformed(format!(
            "{} bytes; at most {MAX_LEN}",
            document.len()
        )));
    }
    let text = document.strip_suffix(b"\n").unwrap_or(document);
    let text = std::str::from_utf8(text).map_err(|_| Error::Malformed("not ASCII text".into()))?;
    let mut parts = text.split('.');
    let (Some(tag), Some(key_id), Some(payload), Some(signature), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Error::Malformed(
            "expected four parts: kind.key.payload.signature".into(),
        ));
    };
    let found = Kind::of_tag(tag)
        .ok_or_else(|| Error::Malformed(format!("unknown kind {:?}", truncated(tag))))?;
    if found != kind {
        return Err(Error::WrongKind {
            expected: kind.name(),
            found: found.name(),
        });
    }
    if key_id.is_empty()
        || key_id.len() > MAX_KEY_ID
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::Malformed(format!(
            "key id {:?} is not 1 to {MAX_KEY_ID} letters, digits, - or _",
            truncated(key_id)
        )));
    }
    let key = keys::public_key(key_id).ok_or_else(|| Error::UnknownKey(key_id.to_owned()))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| Error::Malformed(format!("signature: {e}")))?;
    let signature = Signature::from_slice(&signature)
        .map_err(|_| Error::Malformed("signature: not 64 bytes".into()))?;
    let signed_len = tag.len() + 1 + key_id.len() + 1 + payload.len();
    let verifying =
        VerifyingKey::from_bytes(&key).map_err(|_| Error::UnknownKey(key_id.to_owned()))?;
    verifying
        .verify_strict(&text.as_bytes()[..signed_len], &signature)
        .map_err(|_| Error::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| Error::Malformed(format!("payload: {e}")))?;
    Ok(Opened {
        key_id: key_id.to_owned(),
        payload,
    })
}

/// Opens and decodes a JSON payload.
pub fn open_json<T: serde::de::DeserializeOwned>(
    document: &[u8],
    kind: Kind,
) -> Result<(String, T), Error> {
    let opened = open(document, kind)?;
    let value = serde_json::from_slice(&opened.payload)
        .map_err(|e| Error::Malformed(format!("payload: {e}")))?;
    Ok((opened.key_id, value))
}

/// The unsigned head of a document: what the signature covers.
pub(crate) fn signing_input(kind: Kind, key_id: &str, payload: &[u8]) -> String {
    format!(
        "{}.{key_id}.{}",
        kind.tag(),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

/// A document made of its signing input and signature.
pub(crate) fn sealed(signing_input: String, signature: &[u8; 64]) -> String {
    format!("{signing_input}.{}\n", URL_SAFE_NO_PAD.encode(signature))
}

fn truncated(s: &str) -> String {
    s.chars().take(40).collect()
}
