//! Identifiers: their owned form, normalisers, stable lookup keys, and the string arena that
//! interns them for the graph.

use std::fmt;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use xxhash_rust::xxh3::{xxh3_64_with_seed, xxh3_128_with_seed};

use crate::error::{Error, Result};

/// One identifier: its type (`email`, `device_id`, ...) and, in the graph, its normalised
/// value. The identifier vocabulary of `cdp-core`, shared with governance and the
/// `normalize` transform.
pub use cdp_core::identifier::Identifier;
/// How raw values of an identifier type are cleaned before they are compared; values a
/// normaliser rejects never become identifiers. The vocabulary of `cdp-core`.
pub use cdp_core::identifier::Normaliser;

/// A profile id: a UUID v7 whose timestamp is when the profile was created.
///
/// The graph derives ids from the data (creation time, founding identifier, position in the
/// graph's history) instead of drawing them at random, so resolving the same input again, or
/// replaying the identity log, gives the same ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfileId(pub Uuid);

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl std::str::FromStr for ProfileId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s)
            .map(ProfileId)
            .map_err(|e| Error::NotFound(format!("`{s}` is not a profile id: {e}")))
    }
}

/// A 128-bit hash of an identifier's type and normalised value.
///
/// Profile stores index identifiers by this key rather than by the strings, which keeps an
/// index entry at 16 bytes; at 128 bits an accidental collision is not a practical concern
/// (about 10⁻²⁰ for a billion identifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdentifierKey(pub u128);

impl IdentifierKey {
    /// The key of `kind:value` (`value` already normalised).
    pub fn new(kind: &str, value: &str) -> Self {
        // The separator keeps `ab` + `c` apart from `a` + `bc`; 0xFF never occurs in UTF-8.
        const SEED: u64 = 0x6364_7069_6465_6e74;
        IdentifierKey(hash128(&[kind.as_bytes(), &[0xFF], value.as_bytes()], SEED))
    }

    /// The key the profile store indexes `identifier` (normalised) under.
    pub fn of(identifier: &Identifier) -> Self {
        IdentifierKey::new(&identifier.kind, &identifier.value)
    }
}

/// xxh3-128 of the concatenated parts, off the heap for usual sizes (live lookups and id
/// derivation compute it on every call).
pub(crate) fn hash128(parts: &[&[u8]], seed: u64) -> u128 {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let bytes: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let mut at = 0;
    for p in parts {
        bytes[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    xxh3_128_with_seed(bytes, seed)
}

/// Longest identifier value, in bytes. Longer values are not identifiers (they are treated
/// like invalid ones), which keeps the arena's length prefix at two bytes.
pub const MAX_IDENTIFIER_LEN: usize = u16::MAX as usize;

/// Where identifier strings live: one growing arena of `[type][length][id][bytes]`
/// records, `u32` ids, and a hash table of arena offsets.
///
/// A probe compares against the arena record the table entry points at, and the record
/// carries the id, so a hit costs one memory access into the arena. Per identifier the
/// interner holds the value's bytes plus seven, a 4-byte offset, a 1-byte type and 5–10
/// bytes of table, with no allocation per identifier.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    arena: Vec<u8>,
    starts: Vec<u32>,
    kinds: Vec<u8>,
    table: HashTable<u32>,
}

const HEADER: usize = 7;

fn hash(kind: u8, value: &str) -> u64 {
    xxh3_64_with_seed(value.as_bytes(), u64::from(kind))
}

/// The record at `start`: type, id and value bytes.
fn record(arena: &[u8], start: u32) -> (u8, u32, &[u8]) {
    let s = start as usize;
    let len = usize::from(u16::from_le_bytes([arena[s + 1], arena[s + 2]]));
    let id = u32::from_le_bytes([arena[s + 3], arena[s + 4], arena[s + 5], arena[s + 6]]);
    (arena[s], id, &arena[s + HEADER..s + HEADER + len])
}

fn matches(arena: &[u8], start: u32, kind: u8, value: &str) -> bool {
    let (k, _, bytes) = record(arena, start);
    k == kind && bytes == value.as_bytes()
}

impl Interner {
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    pub(crate) fn reserve(&mut self, identifiers: usize, bytes: usize) {
        self.starts.reserve(identifiers);
        self.kinds.reserve(identifiers);
        self.arena.reserve(bytes + HEADER * identifiers);
        let Interner { arena, table, .. } = self;
        table.reserve(identifiers, |&start| rehash(arena, start));
    }

    pub(crate) fn get(&self, kind: u8, value: &str) -> Option<u32> {
        let h = hash(kind, value);
        self.table
            .find(h, |&start| matches(&self.arena, start, kind, value))
            .map(|&start| record(&self.arena, start).1)
    }

    /// The id of `kind:value`, adding it when new; the flag says whether it was added.
    pub(crate) fn intern(&mut self, kind: u8, value: &str) -> Result<(u32, bool)> {
        let h = hash(kind, value);
        let Interner {
            arena,
            starts,
            kinds,
            table,
        } = self;
        if let Some(&start) = table.find(h, |&start| matches(arena, start, kind, value)) {
            return Ok((record(arena, start).1, false));
        }
        let len = u16::try_from(value.len()).map_err(|_| {
            Error::Capacity(format!(
                "identifier of {} bytes (at most {MAX_IDENTIFIER_LEN})",
                value.len()
            ))
        })?;
        let id = u32::try_from(starts.len())
            .ok()
            .filter(|&id| id < u32::MAX)
            .ok_or_else(|| Error::Capacity("more than 4,294,967,294 identifiers".into()))?;
        let start = u32::try_from(arena.len())
            .ok()
            .filter(|s| s.checked_add((HEADER + value.len()) as u32).is_some())
            .ok_or_else(|| Error::Capacity("more than 4 GiB of identifier text".into()))?;
        arena.push(kind);
        arena.extend_from_slice(&len.to_le_bytes());
        arena.extend_from_slice(&id.to_le_bytes());
        arena.extend_from_slice(value.as_bytes());
        starts.push(start);
        kinds.push(kind);
        table.insert_unique(h, start, |&start| rehash(arena, start));
        Ok((id, true))
    }

    pub(crate) fn kind(&self, id: u32) -> u8 {
        self.kinds[id as usize]
    }

    pub(crate) fn value(&self, id: u32) -> &str {
        let (_, _, bytes) = record(&self.arena, self.starts[id as usize]);
        // Only `&str` values enter the arena, at record boundaries.
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

fn rehash(arena: &[u8], start: u32) -> u64 {
    let (kind, _, bytes) = record(arena, start);
    xxh3_64_with_seed(bytes, u64::from(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_round_trips_and_separates_types() {
        let mut i = Interner::default();
        let (a, new_a) = i.intern(0, "x").unwrap();
        let (b, new_b) = i.intern(1, "x").unwrap();
        let (a2, new_a2) = i.intern(0, "x").unwrap();
        assert!(new_a && new_b && !new_a2);
        assert_ne!(a, b);
        assert_eq!(a, a2);
        assert_eq!(i.value(b), "x");
        assert_eq!(i.kind(b), 1);
        assert_eq!(i.get(1, "x"), Some(b));
        assert_eq!(i.get(2, "x"), None);
        for n in 0..10_000 {
            i.intern(3, &format!("v{n}")).unwrap();
        }
        assert_eq!(i.get(3, "v9999").map(|id| i.value(id)), Some("v9999"));
    }

    #[test]
    fn keys_differ_by_type() {
        assert_ne!(IdentifierKey::new("a", "bc"), IdentifierKey::new("ab", "c"));
        assert_eq!(
            IdentifierKey::of(&Identifier::new("email", "x")),
            IdentifierKey::new("email", "x")
        );
    }
}
