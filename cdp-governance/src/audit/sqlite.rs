//! The SQLite audit log: one table, append-only by trigger, hash-chained by content.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{AuditEntry, AuditEvent, AuditLog, Digest};
use crate::error::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_log (
    position  INTEGER PRIMARY KEY AUTOINCREMENT,
    seq       INTEGER NOT NULL,
    at_micros INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
";

/// An audit log in a SQLite file (bundled SQLite, nothing to install).
///
/// Triggers refuse updates and deletes through SQL, which stops accidents; someone with
/// the file can still drop them, which is what the hash chain and [`AuditLog::verify`] are
/// for. Appends run in an immediate transaction, so several processes can share one file.
#[derive(Debug)]
pub struct SqliteAuditLog {
    conn: Mutex<Connection>,
}

impl SqliteAuditLog {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::init(conn)
    }

    /// A log in a private in-memory database.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteAuditLog {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| Error::Audit("sqlite audit log lock poisoned".into()))
    }
}

fn read_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AuditEntry>> {
    let seq: i64 = row.get(0)?;
    let at: i64 = row.get(1)?;
    let kind: String = row.get(2)?;
    let prev: String = row.get(6)?;
    let hash: String = row.get(7)?;
    let (actor, subject, detail) = (row.get(3)?, row.get(4)?, row.get(5)?);
    Ok((|| {
        Ok(AuditEntry {
            seq: u64::try_from(seq).map_err(|_| Error::Audit(format!("negative seq {seq}")))?,
            at: DateTime::<Utc>::from_timestamp_micros(at)
                .ok_or_else(|| Error::Audit(format!("bad timestamp {at}")))?,
            kind: kind.parse()?,
            actor,
            subject,
            detail,
            prev_hash: prev.parse()?,
            hash: hash.parse()?,
        })
    })())
}

impl AuditLog for SqliteAuditLog {
    fn append(&self, event: AuditEvent) -> Result<AuditEntry> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM audit_log ORDER BY position DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let prev = match head {
            None => None,
            Some((seq, hash)) => Some((
                u64::try_from(seq).map_err(|_| Error::Audit(format!("negative seq {seq}")))?,
                hash.parse::<Digest>()?,
            )),
        };
        let entry = AuditEntry::chain(&event, prev, Utc::now())?;
        tx.execute(
            "INSERT INTO audit_log (seq, at_micros, kind, actor, subject, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                entry.seq as i64,
                entry.at.timestamp_micros(),
                entry.kind.as_str(),
                entry.actor,
                entry.subject,
                entry.detail,
                entry.prev_hash.to_string(),
                entry.hash.to_string(),
            ],
        )?;
        tx.commit()?;
        Ok(entry)
    }

    fn entries(&self) -> Result<Vec<AuditEntry>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT seq, at_micros, kind, actor, subject, detail, prev_hash, hash
             FROM audit_log ORDER BY position",
        )?;
        let rows = stmt.query_map([], read_entry)?;
        let mut entries = Vec::new();
        for row in rows {
            entries.push(row??);
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditKind;

    #[test]
    fn appends_chain_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        {
            let log = SqliteAuditLog::open(&path).unwrap();
            for i in 0..3 {
                log.append(AuditEvent::new(
                    AuditKind::Other,
                    "t",
                    "s",
                    serde_json::json!(i),
                ))
                .unwrap();
            }
        }
        let log = SqliteAuditLog::open(&path).unwrap();
        let e = log
            .append(AuditEvent::new(
                AuditKind::Other,
                "t",
                "s",
                serde_json::json!(3),
            ))
            .unwrap();
        assert_eq!(e.seq, 4);
        let v = log.verify().unwrap();
        assert!(v.is_intact(), "{v}");
        assert_eq!(v.entries, 4);
    }

    #[test]
    fn sql_updates_and_deletes_are_refused() {
        let log = SqliteAuditLog::in_memory().unwrap();
        log.append(AuditEvent::new(
            AuditKind::Other,
            "t",
            "s",
            serde_json::json!(1),
        ))
        .unwrap();
        let conn = log.lock().unwrap();
        assert!(
            conn.execute("UPDATE audit_log SET actor = 'x'", [])
                .is_err()
        );
        assert!(conn.execute("DELETE FROM audit_log", []).is_err());
    }
}
