//! Webhook signatures: HMAC-SHA-256 over the timestamp and the body, the scheme Stripe
//! uses, so a receiver can check who sent a request and refuse a replayed one.
//!
//! The header reads `t=<unix seconds>,v1=<hex of HMAC-SHA-256(secret, "<t>.<body>")>`. A
//! receiver recomputes the MAC over the timestamp it was given and the raw body, compares
//! in constant time, and refuses a timestamp outside its tolerance: a request captured and
//! sent again later fails, and so does one whose body or timestamp was changed.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex(&mac(secret, timestamp, body)))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The header is not `t=…,v1=…`.
    Malformed,
    /// The timestamp is further from now than the tolerance: a replay, or a clock off.
    Expired {
        /// How far from now it is, in seconds.
        age_secs: i64,
    },
    /// No `v1` signature matches the body and timestamp.
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Malformed => f.write_str("the signature header is not `t=…,v1=…`"),
            SignatureError::Expired { age_secs } => write!(
                f,
                "the signature's timestamp is {age_secs} s from now, outside the tolerance"
            ),
            SignatureError::Mismatch => f.write_str("no signature matches the body"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// Checks `header` (a value made by [`sign`]) for `body`, received at `now` (Unix
/// seconds), accepting timestamps within `tolerance` of it. Several `v1` entries (a
/// secret being rotated) pass if one matches.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.push(s),
            _ => {}
        }
    }
    let (Some(timestamp), false) = (timestamp, signatures.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    let age_secs = now - timestamp;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if age_secs.abs() > tolerance {
        return Err(SignatureError::Expired { age_secs });
    }
    let matches = signatures.iter().any(|s| {
        let Some(given) = unhex(s) else {
            return false;
        };
        let mut mac = keyed(secret);
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = keyed(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);

    #[test]
    fn a_signature_verifies_and_a_change_does_not() {
        let header = sign(b"whsec", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            verify(b"whsec", &header, b"{\"a\":1}", 1_700_000_010, TOLERANCE),
            Ok(())
        );
        assert_eq!(
            verify(b"whsec", &header, b"{\"a\":2}", 1_700_000_010, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, b"{\"a\":1}", 1_700_000_010, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        let forged = header.replace("t=1700000000", "t=1700000005");
        assert_eq!(
            verify(b"whsec", &forged, b"{\"a\":1}", 1_700_000_010, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"whsec", &header, b"{\"a\":1}", 1_700_000_900, TOLERANCE),
            Err(SignatureError::Expired { age_secs: 900 })
        );
        assert_eq!(
            verify(b"whsec", "v1=00", b"", 0, TOLERANCE),
            Err(SignatureError::Malformed)
        );
    }
}
