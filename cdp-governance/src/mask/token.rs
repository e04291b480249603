//! Deterministic, reversible tokenisation with AES-256-SIV (RFC 5297).
//!
//! SIV is the standard construction for deterministic authenticated encryption: the same
//! value always gives the same token (so tokenised columns still join), a token reveals
//! nothing but equality, and tampering with one is detected on reversal. Only a holder of
//! the key can reverse a token.

use std::fmt;
use std::sync::Arc;

use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use cdp_core::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};

use super::hash::{encode_hex_into, from_hex};
use crate::error::{Error, Result};

/// Length of an AES-256-SIV key: two 256-bit halves (MAC key, encryption key).
pub const TOKEN_KEY_LEN: usize = 64;

/// Associated data bound into every token, so tokens from another system or format version
/// do not reverse under this key by accident.
const DOMAIN: &[u8] = b"cdp-token-v1";

/// Turns values into tokens and back.
#[derive(Clone)]
pub struct Tokenizer {
    key: Arc<[u8; TOKEN_KEY_LEN]>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokenizer(<redacted>)")
    }
}

impl Tokenizer {
    /// A tokenizer with a 64-byte AES-256-SIV key.
    pub fn new(key: &[u8]) -> Result<Self> {
        let key: [u8; TOKEN_KEY_LEN] = key.try_into().map_err(|_| {
            Error::Key(format!(
                "AES-256-SIV key has {} bytes; exactly {TOKEN_KEY_LEN} are required",
                key.len()
            ))
        })?;
        Ok(Tokenizer { key: Arc::new(key) })
    }

    fn cipher(&self) -> Aes256Siv {
        Aes256Siv::new(aes_siv::Key::<Aes256Siv>::from_slice(&self.key[..]))
    }

    /// The token of `value`: hex of the SIV tag and ciphertext.
    pub fn tokenize(&self, value: &str) -> Result<String> {
        let bytes = self
            .cipher()
            .encrypt([DOMAIN], value.as_bytes())
            .map_err(|e| Error::Key(format!("tokenisation failed: {e}")))?;
        let mut out = Vec::with_capacity(bytes.len() * 2);
        encode_hex_into(&bytes, &mut out);
        String::from_utf8(out).map_err(|e| Error::Token(e.to_string()))
    }

    /// The value a token stands for.
    pub fn detokenize(&self, token: &str) -> Result<String> {
        let bytes = from_hex(token).ok_or_else(|| Error::Token("not a hex token".into()))?;
        let plain = self
            .cipher()
            .decrypt([DOMAIN], &bytes)
            .map_err(|_| Error::Token("wrong key, or the token was altered".into()))?;
        String::from_utf8(plain).map_err(|e| Error::Token(e.to_string()))
    }

    /// Tokenises every value of a column (rendered as text); nulls stay null.
    pub fn tokenize_array(&self, array: &ArrayRef) -> Result<ArrayRef> {
        let strings = super::as_strings(array)?;
        let mut cipher = self.cipher();
        let mut out = StringBuilder::with_capacity(strings.len(), strings.value_data().len() * 2);
        // Buffers reused for every value: no allocation per row.
        let mut bytes: Vec<u8> = Vec::new();
        let mut hex = Vec::new();
        for value in strings.iter() {
            match value {
                None => out.append_null(),
                Some(value) => {
                    bytes.clear();
                    bytes.extend_from_slice(value.as_bytes());
                    cipher
                        .encrypt_in_place([DOMAIN], &mut bytes)
                        .map_err(|e| Error::Key(format!("tokenisation failed: {e}")))?;
                    hex.clear();
                    encode_hex_into(&bytes, &mut hex);
                    let text =
                        std::str::from_utf8(&hex).map_err(|e| Error::Token(e.to_string()))?;
                    out.append_value(text);
                }
            }
        }
        Ok(Arc::new(out.finish()))
    }

    /// Reverses every token of a column; nulls stay null, a bad token is an error.
    pub fn detokenize_array(&self, array: &StringArray) -> Result<StringArray> {
        let mut out = StringBuilder::with_capacity(array.len(), array.value_data().len() / 2);
        for token in array.iter() {
            match token {
                None => out.append_null(),
                Some(token) => out.append_value(self.detokenize(token)?),
            }
        }
        Ok(out.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        Tokenizer::new(&[7u8; TOKEN_KEY_LEN]).unwrap()
    }

    #[test]
    fn deterministic_and_reversible() {
        let t = tokenizer();
        let a = t.tokenize("a@x.io").unwrap();
        assert_eq!(a, t.tokenize("a@x.io").unwrap());
        assert_ne!(a, t.tokenize("b@x.io").unwrap());
        assert_eq!(t.detokenize(&a).unwrap(), "a@x.io");
    }

    #[test]
    fn other_keys_and_altered_tokens_do_not_reverse() {
        let t = tokenizer();
        let token = t.tokenize("a@x.io").unwrap();
        let other = Tokenizer::new(&[8u8; TOKEN_KEY_LEN]).unwrap();
        assert!(other.detokenize(&token).is_err());
        let mut altered = token.into_bytes();
        altered[0] = if altered[0] == b'0' { b'1' } else { b'0' };
        assert!(
            t.detokenize(std::str::from_utf8(&altered).unwrap())
                .is_err()
        );
    }

    #[test]
    fn columns_round_trip() {
        let t = tokenizer();
        let column: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("a")]));
        let tokens = t.tokenize_array(&column).unwrap();
        let tokens = tokens.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(tokens.value(0), tokens.value(2));
        let back = t.detokenize_array(tokens).unwrap();
        assert_eq!(back, StringArray::from(vec![Some("a"), None, Some("a")]));
    }
}
