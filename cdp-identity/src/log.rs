//! The identity log: every link, refused link, unlink, merge, unmerge, hold, approval and
//! expiry, in order.
//!
//! The graph keeps its own log in a compact form (24 bytes an event, identifiers by id) and
//! exports it as [`LogRecord`]s with identifiers spelled out. Replaying the records with
//! [`IdentityGraph::replay`](crate::IdentityGraph::replay) rebuilds an identical graph: the
//! same identifiers, links (with their counts and times), profiles, profile ids and merge
//! history. Replay applies the recorded decisions instead of re-deciding them, and checks
//! every recorded outcome (link effect, merge survivor) against what it produced.
//!
//! [`IdentityLog`] is where records go to survive a restart: [`MemoryLog`] for tests and
//! `SqliteLog` (feature `sqlite`) for the embedded default.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::identifier::{Identifier, ProfileId};

/// What a link did to the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkEffect {
    /// A new identifier started a new profile.
    Created,
    /// A known identifier, or a known link, was seen again.
    Seen,
    /// A new identifier joined an existing profile.
    Joined,
    /// Two identifiers of the same profile were linked for the first time.
    NewEdge,
    /// The link joined two profiles (a `merge` event follows).
    Merged,
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum RefusalReason {
    /// The profile would hold more identifiers of a type than the type's limit.
    Limit {
        /// The identifier type.
        kind: String,
        /// Its per-profile limit.
        limit: u32,
        /// How many the profile would have held.
        would_hold: u32,
    },
    /// The other identifier's value is blocked.
    Blocked,
    /// The two sides carry consent scopes that must not share a profile.
    Scope {
        /// Scopes on the anchor's side.
        left: Vec<String>,
        /// Scopes on the other side.
        right: Vec<String>,
    },
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::Limit {
                kind,
                limit,
                would_hold,
            } => write!(
                f,
                "limit: a profile holds at most {limit} `{kind}`, this link would make {would_hold}"
            ),
            RefusalReason::Blocked => write!(f, "blocked value"),
            RefusalReason::Scope { left, right } => write!(
                f,
                "consent: scopes [{}] may not share a profile with [{}]",
                left.join(", "),
                right.join(", ")
            ),
        }
    }
}

/// One identity change, with identifiers and profile ids spelled out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogEvent {
    /// An identifier was observed, alone (`b` absent) or linked to another one.
    Link {
        /// When, UTC milliseconds.
        at: i64,
        /// The row's anchor: its highest-priority identifier.
        a: Identifier,
        /// The identifier linked to the anchor.
        b: Option<Identifier>,
        /// The rule that produced the link.
        rule: String,
        /// The source the evidence came from.
        source: String,
        /// 1.0 for deterministic rules.
        confidence: f32,
        /// What the link did.
        effect: LinkEffect,
        /// The profile created, for `created` links.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<ProfileId>,
    },
    /// A link was refused; nothing was linked.
    Refused {
        /// When.
        at: i64,
        /// The anchor.
        a: Identifier,
        /// The identifier that was not linked.
        b: Identifier,
        /// The rule that produced the link.
        rule: String,
        /// The source the evidence came from.
        source: String,
        /// Why.
        reason: RefusalReason,
    },
    /// Two profiles became one; follows the `link` that caused it.
    Merge {
        /// When.
        at: i64,
        /// The id that survived.
        survivor: ProfileId,
        /// The id recorded as merged into the survivor.
        absorbed: ProfileId,
        /// The linked identifiers.
        a: Identifier,
        /// The linked identifiers.
        b: Identifier,
    },
    /// A merge was held for review because the graph is frozen.
    Held {
        /// When.
        at: i64,
        /// Review item number, for `approve` and `reject`.
        review: u32,
        /// The anchor.
        a: Identifier,
        /// The identifier from the other profile.
        b: Identifier,
        /// The rule that produced the link.
        rule: String,
        /// The source the evidence came from.
        source: String,
        /// The link's confidence.
        confidence: f32,
    },
    /// A held merge was approved; the resulting `link` (or `refused`) events follow.
    Approved {
        /// When.
        at: i64,
        /// The review item.
        review: u32,
    },
    /// A held merge was rejected and dropped.
    Rejected {
        /// When.
        at: i64,
        /// The review item.
        review: u32,
    },
    /// A link was removed; the profile split if it was the only bridge.
    Unlink {
        /// When.
        at: i64,
        /// One end.
        a: Identifier,
        /// The other end.
        b: Identifier,
    },
    /// A merge was undone: the links between its two sides were removed and the absorbed
    /// profile got its id back.
    Unmerge {
        /// When.
        at: i64,
        /// Sequence number of the `merge` event undone.
        merge: u64,
        /// The profile that had survived.
        survivor: ProfileId,
        /// The profile restored.
        absorbed: ProfileId,
    },
    /// An identifier passed its type's TTL and left its profile.
    Expire {
        /// When.
        at: i64,
        /// The identifier.
        identifier: Identifier,
    },
    /// A person was erased: the profile of `identifier` and every identifier in it left
    /// the graph.
    Erase {
        /// When.
        at: i64,
        /// The identifier the erasure was asked for (normalised).
        identifier: Identifier,
    },
    /// Freeze mode was switched on or off.
    Freeze {
        /// When.
        at: i64,
        /// Whether merges are now held for review.
        frozen: bool,
    },
}

impl LogEvent {
    /// When the event happened, UTC milliseconds.
    pub fn at(&self) -> i64 {
        match self {
            LogEvent::Link { at, .. }
            | LogEvent::Refused { at, .. }
            | LogEvent::Merge { at, .. }
            | LogEvent::Held { at, .. }
            | LogEvent::Approved { at, .. }
            | LogEvent::Rejected { at, .. }
            | LogEvent::Unlink { at, .. }
            | LogEvent::Unmerge { at, .. }
            | LogEvent::Expire { at, .. }
            | LogEvent::Erase { at, .. }
            | LogEvent::Freeze { at, .. } => *at,
        }
    }

    /// The event kind as a short name (`link`, `merge`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            LogEvent::Link { .. } => "link",
            LogEvent::Refused { .. } => "refused",
            LogEvent::Merge { .. } => "merge",
            LogEvent::Held { .. } => "held",
            LogEvent::Approved { .. } => "approved",
            LogEvent::Rejected { .. } => "rejected",
            LogEvent::Unlink { .. } => "unlink",
            LogEvent::Unmerge { .. } => "unmerge",
            LogEvent::Expire { .. } => "expire",
            LogEvent::Erase { .. } => "erase",
            LogEvent::Freeze { .. } => "freeze",
        }
    }
}

/// A log event and its position in the log, counting from 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Position in the log.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: LogEvent,
}

/// Durable storage for identity log records.
pub trait IdentityLog: fmt::Debug + Send {
    /// Appends records; they must continue the log (`seq` equal to [`IdentityLog::len`]).
    fn append(&mut self, records: &[LogRecord]) -> Result<()>;

    /// Every record, in order.
    fn load(&self) -> Result<Vec<LogRecord>>;

    /// How many records the log holds.
    fn len(&self) -> Result<u64>;

    /// Whether the log is empty.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// An identity log held in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryLog {
    records: Vec<LogRecord>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        MemoryLog::default()
    }

    /// The records appended so far.
    pub fn records(&self) -> &[LogRecord] {
        &self.records
    }
}

impl IdentityLog for MemoryLog {
    fn append(&mut self, records: &[LogRecord]) -> Result<()> {
        check_continues(self.records.len() as u64, records)?;
        self.records.extend_from_slice(records);
        Ok(())
    }

    fn load(&self) -> Result<Vec<LogRecord>> {
        Ok(self.records.clone())
    }

    fn len(&self) -> Result<u64> {
        Ok(self.records.len() as u64)
    }
}

pub(crate) fn check_continues(len: u64, records: &[LogRecord]) -> Result<()> {
    if let Some(first) = records.first()
        && first.seq != len
    {
        return Err(crate::Error::InvalidOperation(format!(
            "log append must continue at seq {len}, got {}",
            first.seq
        )));
    }
    Ok(())
}

/// The graph's in-memory form of a log event: 24 bytes, identifiers as node ids.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
    pub(crate) at: i64,
    pub(crate) a: u32,
    pub(crate) b: u32,
    /// Kind-specific: confidence bits, refusal code, merge or review number.
    pub(crate) payload: u32,
    pub(crate) source: u16,
    pub(crate) rule: u8,
    pub(crate) kind: EntryKind,
}

// No `repr`: the compiler packs the nested link effect into the one tag byte, which keeps
// `Entry` at 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Link(LinkEffect),
    Refused,
    Merge,
    Held,
    Approved,
    Rejected,
    Unlink,
    Unmerge,
    Expire,
    Erase,
    Freeze,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_stays_compact() {
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }
}

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteLog;

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::Path;

    use rusqlite::{Connection, params};

    use super::{IdentityLog, LogRecord, check_continues};
    use crate::error::Result;

    /// An identity log in a SQLite file (bundled SQLite): one row per record, the event as
    /// JSON next to its kind and time, appended in one transaction per call.
    #[derive(Debug)]
    pub struct SqliteLog {
        conn: Connection,
    }

    impl SqliteLog {
        /// Opens (creating if needed) the log at `path`.
        pub fn open(path: impl AsRef<Path>) -> Result<Self> {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            Self::init(conn)
        }

        /// A log in memory, for tests.
        pub fn in_memory() -> Result<Self> {
            Self::init(Connection::open_in_memory()?)
        }

        fn init(conn: Connection) -> Result<Self> {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS identity_log (
                    seq INTEGER PRIMARY KEY,
                    kind TEXT NOT NULL,
                    at INTEGER NOT NULL,
                    event TEXT NOT NULL
                );",
            )?;
            Ok(SqliteLog { conn })
        }
    }

    impl IdentityLog for SqliteLog {
        fn append(&mut self, records: &[LogRecord]) -> Result<()> {
            check_continues(self.len()?, records)?;
            let tx = self.conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO identity_log (seq, kind, at, event) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for r in records {
                    let json = serde_json::to_string(&r.event)?;
                    let seq = i64::try_from(r.seq).unwrap_or(i64::MAX);
                    insert.execute(params![seq, r.event.kind_name(), r.event.at(), json])?;
                }
            }
            tx.commit()?;
            Ok(())
        }

        fn load(&self) -> Result<Vec<LogRecord>> {
            let mut stmt = self
                .conn
                .prepare("SELECT seq, event FROM identity_log ORDER BY seq")?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, json) = row?;
                out.push(LogRecord {
                    seq: seq as u64,
                    event: serde_json::from_str(&json)?,
                });
            }
            Ok(out)
        }

        fn len(&self) -> Result<u64> {
            // Sequence numbers are contiguous from 0; MAX uses the primary key, COUNT would
            // scan the table on every append.
            let n: i64 = self.conn.query_row(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM identity_log",
                [],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        }
    }
}
