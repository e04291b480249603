//! Keyed hashing (HMAC-SHA-256): equal inputs give equal outputs under one key, so hashed
//! columns still join and count distinct, while nobody without the key can test a guess.

use std::fmt;

use cdp_core::arrow::array::{Array, ArrayRef, StringArray};
use cdp_core::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Shortest HMAC key accepted: anything shorter is guessable.
pub const MIN_HASH_KEY_LEN: usize = 16;

/// A secret key for HMAC-SHA-256, with the keyed state prepared once.
#[derive(Clone)]
pub struct HashKey {
    mac: HmacSha256,
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

impl HashKey {
    /// A key of at least [`MIN_HASH_KEY_LEN`] bytes (32 random bytes recommended).
    pub fn new(key: &[u8]) -> Result<Self> {
        if key.len() < MIN_HASH_KEY_LEN {
            return Err(Error::Key(format!(
                "HMAC key has {} bytes; at least {MIN_HASH_KEY_LEN} are required",
                key.len()
            )));
        }
        let mac = HmacSha256::new_from_slice(key).map_err(|e| Error::Key(e.to_string()))?;
        Ok(HashKey { mac })
    }

    /// HMAC-SHA-256 of `bytes`.
    pub fn hash(&self, bytes: &[u8]) -> [u8; 32] {
        // Cloning the keyed state skips re-deriving the inner and outer pads per value.
        let mut mac = self.mac.clone();
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA-256 of `bytes`, lower-case hex.
    pub fn hash_hex(&self, bytes: &[u8]) -> String {
        to_hex(&self.hash(bytes))
    }

    /// Hashes every value of a UTF-8 column into lower-case hex; nulls stay null.
    pub fn hash_strings(&self, array: &StringArray) -> Result<StringArray> {
        const WIDTH: usize = 64;
        let rows = array.len();
        let capacity = rows
            .checked_mul(WIDTH)
            .filter(|c| *c <= i32::MAX as usize)
            .ok_or_else(|| {
                Error::masking(
                    "<column>",
                    "hash",
                    format!("{rows} rows of hashes exceed a Utf8 column; split the batch"),
                )
            })?;
        let mut values: Vec<u8> = Vec::with_capacity(capacity);
        let mut offsets: Vec<i32> = Vec::with_capacity(rows + 1);
        offsets.push(0);
        for value in array.iter() {
            if let Some(value) = value {
                encode_hex_into(&self.hash(value.as_bytes()), &mut values);
            }
            offsets.push(values.len() as i32);
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        Ok(StringArray::try_new(
            offsets,
            Buffer::from_vec(values),
            array.nulls().cloned(),
        )?)
    }

    /// Hashes any column that casts to UTF-8 (its text rendering is what gets hashed).
    pub fn hash_array(&self, array: &ArrayRef) -> Result<ArrayRef> {
        let strings = super::as_strings(array)?;
        Ok(std::sync::Arc::new(self.hash_strings(&strings)?))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the lower-case hex of `bytes` to `out`.
pub(crate) fn encode_hex_into(bytes: &[u8], out: &mut Vec<u8>) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0x0f) as usize]);
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    encode_hex_into(bytes, &mut out);
    out.into_iter().map(char::from).collect()
}

/// Bytes from hex (either case); `None` if `text` is not hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe" is shorter than we allow, so use the MAC directly.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(to_hex(&mac.finalize().into_bytes()), expected);
    }

    #[test]
    fn column_hash_equals_scalar_hash_and_keeps_nulls() {
        let key = HashKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let column = StringArray::from(vec![Some("a@x.io"), None, Some("")]);
        let hashed = key.hash_strings(&column).unwrap();
        assert_eq!(hashed.value(0), key.hash_hex(b"a@x.io"));
        assert!(hashed.is_null(1));
        assert_eq!(hashed.value(2), key.hash_hex(b""));
        assert_eq!(hashed.value(0).len(), 64);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(HashKey::new(b"short").is_err());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 254, 255])).unwrap(),
            [0, 1, 254, 255]
        );
        assert!(from_hex("zz").is_none());
    }
}
