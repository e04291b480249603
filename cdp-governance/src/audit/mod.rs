//! A tamper-evident audit log: append-only, each entry hash-chained (SHA-256) to the one
//! before it.
//!
//! Entry `n` stores `hash(n) = SHA-256(domain ‖ n ‖ time ‖ kind ‖ actor ‖ subject ‖ detail
//! ‖ hash(n-1))`, every variable-length part length-prefixed. [`verify_entries`] recomputes
//! every hash and link and reports, by sequence number, entries that were edited, deleted,
//! duplicated or moved. Rewriting the whole tail consistently is only detectable against
//! an [`Anchor`] kept elsewhere (printed in a report, stored in another system):
//! [`verify_with_anchor`].

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::mask::hash::{from_hex, to_hex};
pub use memory::MemoryAuditLog;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteAuditLog;

/// Domain separator: hashes of this format never collide with hashes of anything else.
const DOMAIN: &[u8] = b"cdp-audit-v1\0";

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The `prev_hash` of the first entry.
    pub const GENESIS: Digest = Digest([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        from_hex(s)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Digest)
            .ok_or_else(|| Error::Audit(format!("`{s}` is not a SHA-256 hex digest")))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// A flow was allowed or refused by a policy.
    PolicyDecision,
    /// A policy was adopted or changed.
    PolicyChange,
    /// A person's data was erased.
    Erasure,
    /// Profiles were merged (or unmerged) by identity resolution.
    Merge,
    /// Data was read through a governed view.
    GovernedRead,
    /// An access request was decided.
    Access,
    /// Consent was recorded or withdrawn.
    Consent,
    /// A retention sweep removed data.
    Retention,
    /// Anything else.
    Other,
}

impl AuditKind {
    /// The snake-case name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::PolicyDecision => "policy_decision",
            AuditKind::PolicyChange => "policy_change",
            AuditKind::Erasure => "erasure",
            AuditKind::Merge => "merge",
            AuditKind::GovernedRead => "governed_read",
            AuditKind::Access => "access",
            AuditKind::Consent => "consent",
            AuditKind::Retention => "retention",
            AuditKind::Other => "other",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| Error::Audit(format!("unknown audit kind `{s}`")))
    }
}

/// Something to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// Who or what did it (principal, pipeline, component).
    pub actor: String,
    /// What it concerned (flow, identifier digest, profile, policy).
    pub subject: String,
    /// The particulars.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// An event.
    pub fn new(
        kind: AuditKind,
        actor: impl Into<String>,
        subject: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        AuditEvent {
            kind,
            actor: actor.into(),
            subject: subject.into(),
            detail,
        }
    }
}

impl AuditEvent {
    /// A merge of profiles by identity resolution: `merged` now belong to `survivor`.
    pub fn merge(
        resolver: impl Into<String>,
        survivor: &str,
        merged: &[&str],
        reason: impl Into<String>,
    ) -> Self {
        AuditEvent::new(
            AuditKind::Merge,
            resolver,
            survivor.to_string(),
            serde_json::json!({ "merged": merged, "reason": reason.into() }),
        )
    }
}

/// A recorded, chained entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When it was recorded (microsecond precision).
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: AuditKind,
    /// Who or what did it.
    pub actor: String,
    /// What it concerned.
    pub subject: String,
    /// The particulars as JSON text, exactly as hashed.
    pub detail: String,
    /// The previous entry's hash ([`Digest::GENESIS`] for the first).
    pub prev_hash: Digest,
    /// This entry's hash.
    pub hash: Digest,
}

impl AuditEntry {
    /// Chains `event` after an entry with `prev` (`None` for the first entry).
    pub fn chain(
        event: &AuditEvent,
        prev: Option<(u64, Digest)>,
        at: DateTime<Utc>,
    ) -> Result<Self> {
        let (seq, prev_hash) = match prev {
            None => (1, Digest::GENESIS),
            Some((seq, hash)) => (seq + 1, hash),
        };
        // Truncated to microseconds so every store can hold the exact instant hashed.
        let at = DateTime::from_timestamp_micros(at.timestamp_micros())
            .ok_or_else(|| Error::Audit(format!("timestamp {at} out of range")))?;
        let mut entry = AuditEntry {
            seq,
            at,
            kind: event.kind,
            actor: event.actor.clone(),
            subject: event.subject.clone(),
            detail: serde_json::to_string(&event.detail)?,
            prev_hash,
            hash: Digest::GENESIS,
        };
        entry.hash = entry.compute_hash();
        Ok(entry)
    }

    /// The hash this entry's content and link should have.
    pub fn compute_hash(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(self.seq.to_be_bytes());
        h.update(self.at.timestamp_micros().to_be_bytes());
        for part in [
            self.kind.as_str(),
            self.actor.as_str(),
            self.subject.as_str(),
            self.detail.as_str(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.update(self.prev_hash.0);
        Digest(h.finalize().into())
    }

    /// The detail, parsed.
    pub fn detail_json(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.detail)?)
    }
}

/// The head of a log at some moment, to keep elsewhere and check later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Sequence number of the last entry.
    pub seq: u64,
    /// Its hash.
    pub hash: Digest,
}

/// One way the log differs from what was appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "problem")]
pub enum Tampering {
    /// The entry's content no longer matches its hash.
    Edited {
        /// Its sequence number.
        seq: u64,
        /// Its position in storage order, from 0.
        position: usize,
    },
    /// The entry's link disagrees with the previous entry's hash: the previous entry was
    /// altered (and re-hashed) after this one was written, or this link was.
    BrokenLink {
        /// The entry whose link is wrong.
        seq: u64,
        /// The entry it should link to.
        previous: u64,
    },
    /// Entries are missing from the middle of the chain.
    Deleted {
        /// First missing sequence number.
        first: u64,
        /// Last missing sequence number.
        last: u64,
    },
    /// The entry is stored out of sequence order.
    Reordered {
        /// Its sequence number.
        seq: u64,
        /// Its position in storage order, from 0.
        position: usize,
    },
    /// Two entries carry the same sequence number.
    Duplicated {
        /// The sequence number.
        seq: u64,
        /// Position of the second one.
        position: usize,
    },
    /// The log does not reach, or does not match, an anchor taken earlier: entries at or
    /// before it were removed or rewritten.
    AnchorMismatch {
        /// The anchor's sequence number.
        seq: u64,
        /// What was found there.
        found: String,
    },
}

impl fmt::Display for Tampering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tampering::Edited { seq, position } => write!(
                f,
                "entry {seq} (position {position}) was edited: its content does not match its hash"
            ),
            Tampering::BrokenLink { seq, previous } => write!(
                f,
                "entry {seq} does not link to entry {previous}: entry {previous} was altered after \
                 entry {seq} was written"
            ),
            Tampering::Deleted { first, last } if first == last => {
                write!(f, "entry {first} was deleted")
            }
            Tampering::Deleted { first, last } => {
                write!(f, "entries {first} to {last} were deleted")
            }
            Tampering::Reordered { seq, position } => {
                write!(
                    f,
                    "entry {seq} is out of order (stored at position {position})"
                )
            }
            Tampering::Duplicated { seq, position } => {
                write!(
                    f,
                    "entry {seq} appears twice (again at position {position})"
                )
            }
            Tampering::AnchorMismatch { seq, found } => {
                write!(f, "anchor at entry {seq} does not match: {found}")
            }
        }
    }
}

/// The result of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Entries read.
    pub entries: usize,
    /// The last entry in sequence order, if any.
    pub head: Option<Anchor>,
    /// Everything found wrong, in storage order.
    pub problems: Vec<Tampering>,
}

impl Verification {
    /// Whether the log is intact.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_intact() {
            return write!(f, "audit log intact: {} entries", self.entries);
        }
        write!(f, "audit log tampered ({} entries read):", self.entries)?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// Verifies entries given in storage order.
///
/// Problems are listed entry by entry in storage order, then the gaps in the sequence.
/// An entry counts as moved when it is not where sorting by sequence number would put it,
/// so swapping two entries reports exactly those two.
pub fn verify_entries(entries: &[AuditEntry]) -> Verification {
    let mut problems = Vec::new();
    let mut by_seq: HashMap<u64, &AuditEntry> = HashMap::new();
    for entry in entries {
        by_seq.entry(entry.seq).or_insert(entry);
    }
    let mut sorted: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    sorted.sort_unstable();
    let mut seen: HashSet<u64> = HashSet::new();
    for (position, entry) in entries.iter().enumerate() {
        if entry.compute_hash() != entry.hash {
            problems.push(Tampering::Edited {
                seq: entry.seq,
                position,
            });
        }
        if !seen.insert(entry.seq) {
            problems.push(Tampering::Duplicated {
                seq: entry.seq,
                position,
            });
        } else if sorted[position] != entry.seq {
            problems.push(Tampering::Reordered {
                seq: entry.seq,
                position,
            });
        }
        let link_ok = match entry.seq {
            0 => false,
            1 => entry.prev_hash == Digest::GENESIS,
            seq => by_seq
                .get(&(seq - 1))
                .is_none_or(|previous| previous.hash == entry.prev_hash),
        };
        if !link_ok {
            problems.push(Tampering::BrokenLink {
                seq: entry.seq,
                previous: entry.seq.saturating_sub(1),
            });
        }
    }
    let mut run: Option<(u64, u64)> = None;
    let max = sorted.last().copied().unwrap_or(0);
    for seq in 1..=max {
        if by_seq.contains_key(&seq) {
            if let Some((first, last)) = run.take() {
                problems.push(Tampering::Deleted { first, last });
            }
        } else {
            run = Some(run.map_or((seq, seq), |(first, _)| (first, seq)));
        }
    }
    let head = entries.iter().max_by_key(|e| e.seq).map(|e| Anchor {
        seq: e.seq,
        hash: e.hash,
    });
    Verification {
        entries: entries.len(),
        head,
        problems,
    }
}

/// [`verify_entries`], and also checks the log still holds `anchor`'s entry unchanged.
pub fn verify_with_anchor(entries: &[AuditEntry], anchor: &Anchor) -> Verification {
    let mut verification = verify_entries(entries);
    match entries.iter().find(|e| e.seq == anchor.seq) {
        Some(e) if e.hash == anchor.hash => {}
        Some(e) => verification.problems.push(Tampering::AnchorMismatch {
            seq: anchor.seq,
            found: format!("hash {} instead of {}", e.hash, anchor.hash),
        }),
        None => verification.problems.push(Tampering::AnchorMismatch {
            seq: anchor.seq,
            found: "no such entry (the log was truncated)".into(),
        }),
    }
    verification
}

/// An append-only, hash-chained log.
pub trait AuditLog: fmt::Debug + Send + Sync {
    /// Appends `event` after the current head and returns the chained entry.
    fn append(&self, event: AuditEvent) -> Result<AuditEntry>;

    /// Every entry, in storage order.
    fn entries(&self) -> Result<Vec<AuditEntry>>;

    /// Checks every entry and link; see [`verify_entries`].
    fn verify(&self) -> Result<Verification> {
        Ok(verify_entries(&self.entries()?))
    }

    /// The current head, to keep somewhere else for [`verify_with_anchor`].
    fn anchor(&self) -> Result<Option<Anchor>> {
        Ok(self
            .entries()?
            .iter()
            .max_by_key(|e| e.seq)
            .map(|e| Anchor {
                seq: e.seq,
                hash: e.hash,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let prev = entries.last().map(|e| (e.seq, e.hash));
            let event = AuditEvent::new(
                AuditKind::Other,
                "test",
                format!("item {i}"),
                serde_json::json!({ "i": i }),
            );
            entries.push(AuditEntry::chain(&event, prev, Utc::now()).unwrap());
        }
        entries
    }

    #[test]
    fn intact_log_verifies() {
        let v = verify_entries(&log(5));
        assert!(v.is_intact(), "{v}");
        assert_eq!(v.head.map(|a| a.seq), Some(5));
    }

    #[test]
    fn edit_is_located() {
        let mut entries = log(5);
        entries[2].detail = "{\"i\":99}".into();
        assert_eq!(
            verify_entries(&entries).problems,
            [Tampering::Edited {
                seq: 3,
                position: 2
            }]
        );
    }

    #[test]
    fn edit_with_rehash_breaks_the_next_link() {
        let mut entries = log(5);
        entries[2].detail = "{\"i\":99}".into();
        entries[2].hash = entries[2].compute_hash();
        assert_eq!(
            verify_entries(&entries).problems,
            [Tampering::BrokenLink {
                seq: 4,
                previous: 3
            }]
        );
    }

    #[test]
    fn deletion_and_reordering_are_located() {
        let mut entries = log(6);
        entries.drain(2..4);
        assert_eq!(
            verify_entries(&entries).problems,
            [Tampering::Deleted { first: 3, last: 4 }]
        );
        let mut entries = log(5);
        entries.swap(1, 3);
        assert_eq!(
            verify_entries(&entries).problems,
            [
                Tampering::Reordered {
                    seq: 4,
                    position: 1
                },
                Tampering::Reordered {
                    seq: 2,
                    position: 3
                },
            ]
        );
    }

    #[test]
    fn anchors_catch_tail_truncation() {
        let entries = log(5);
        let anchor = Anchor {
            seq: 5,
            hash: entries[4].hash,
        };
        assert!(verify_with_anchor(&entries, &anchor).is_intact());
        let v = verify_with_anchor(&entries[..3], &anchor);
        assert!(matches!(
            v.problems[..],
            [Tampering::AnchorMismatch { seq: 5, .. }]
        ));
    }
}
