//! `POST /v1/webhooks/payments`: payments reported by a payment provider,
//! signed like Stripe's and svix's webhooks: header
//! `dotmac-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
//! with `billing.payment_webhook_secret`. A signature older or newer than
//! five minutes is refused (replay), and a redelivered payment (same
//! `reference`) is recorded once.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use sha2::{Digest, Sha256};

use super::HttpState;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::billing::settlement::{record_payment, NewPayment};
use dotmac_schema::PaymentMethod;

/// Signatures this far from now (either way) are refused.
pub const TOLERANCE_SECS: i64 = 300;

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The header value signing `body` at `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    format!(
        "t={t},v1={}",
        hex::encode(hmac_sha256(secret.as_bytes(), &message))
    )
}

/// Why a signature is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    Stale,
    Mismatch,
}

/// Checks a `dotmac-signature` header at `now` (unix seconds).
pub fn verify(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    // The sender chooses `t`: any i64, so the distance is computed without
    // overflow.
    if now.abs_diff(t) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    let expected = hmac_sha256(secret.as_bytes(), &message);
    // Constant time over the expected length; any listed signature may match
    // (so the secret can be rotated with two in flight).
    let matches = |sig: &Vec<u8>| {
        sig.len() == expected.len()
            && sig
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    };
    if v1.iter().any(matches) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Body {
    invoice_id: String,
    amount: String,
    currency: String,
    reference: String,
}

/// Why a signature is refused, in words for the sender.
fn refusal(e: SignatureError) -> ApiError {
    ApiError::Unauthenticated(
        match e {
            SignatureError::Missing => "the dotmac-signature header is required",
            SignatureError::Malformed => "dotmac-signature must be t=<unix seconds>,v1=<hex>",
            SignatureError::Stale => "the signature's timestamp is more than 5 minutes away",
            SignatureError::Mismatch => "the signature does not match the body",
        }
        .into(),
    )
}

pub async fn handle(
    State(st): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let app = &st.app;
    let secret = &app.config.billing.payment_webhook_secret;
    if secret.is_empty() {
        // Not configured: as if the route did not exist.
        return Err(ApiError::not_found("payment webhook"));
    }
    let header = headers
        .get("dotmac-signature")
        .and_then(|v| v.to_str().ok());
    verify(secret, header, &body, app.clock.now().timestamp()).map_err(refusal)?;
    let body: Body =
        serde_json::from_slice(&body).map_err(|e| ApiError::validation("body", e.to_string()))?;
    let input = NewPayment {
        invoice_id: &body.invoice_id,
        amount: &body.amount,
        currency: Some(&body.currency),
        reference: &body.reference,
        method: PaymentMethod::Webhook,
        received_at: app.clock.now(),
    };
    let p = record_payment(&app.billing, &RequestCtx::system("payment-webhook"), input).await?;
    Ok(Json(serde_json::json!({
        "paymentId": p.id,
        "toInvoice": p.to_invoice,
        "toCreditBalance": p.to_credit_balance,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signatures_verify_and_refuse() {
        let secret = "whsec_0123456789abcdef0123456789abcdef";
        let body = br#"{"invoiceId":"inv_1"}"#;
        let header = sign(secret, 1_000, body);
        assert_eq!(verify(secret, Some(&header), body, 1_100), Ok(()));
        assert_eq!(
            verify(secret, Some(&header), b"{}", 1_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(secret, Some(&header), body, 1_400),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("another-secret", Some(&header), body, 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(secret, None, body, 1_000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(secret, Some("v1=zz"), body, 1_000),
            Err(SignatureError::Malformed)
        );
        // Timestamps at the ends of i64 are stale, not an overflow.
        for t in [i64::MIN, i64::MAX] {
            let far = sign(secret, t, body);
            assert_eq!(
                verify(secret, Some(&far), body, 1_000),
                Err(SignatureError::Stale)
            );
        }
        let rotated = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(verify(secret, Some(&rotated), body, 1_000), Ok(()));
    }
}
