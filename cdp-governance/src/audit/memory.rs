//! The in-memory audit log.

use std::sync::{Mutex, MutexGuard};

use chrono::Utc;

use super::{AuditEntry, AuditEvent, AuditLog};
use crate::error::{Error, Result};

/// An audit log held in memory: for tests, and for processes that ship entries elsewhere.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    entries: Mutex<Vec<AuditEntry>>,
}

impl MemoryAuditLog {
    /// An empty log.
    pub fn new() -> Self {
        MemoryAuditLog::default()
    }

    /// A log holding `entries` as they are (an export read back); verify it before
    /// appending to it.
    pub fn from_entries(entries: Vec<AuditEntry>) -> Self {
        MemoryAuditLog {
            entries: Mutex::new(entries),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Vec<AuditEntry>>> {
        self.entries
            .lock()
            .map_err(|_| Error::Audit("memory audit log lock poisoned".into()))
    }
}

impl AuditLog for MemoryAuditLog {
    fn append(&self, event: AuditEvent) -> Result<AuditEntry> {
        let mut entries = self.lock()?;
        let prev = entries.last().map(|e| (e.seq, e.hash));
        let entry = AuditEntry::chain(&event, prev, Utc::now())?;
        entries.push(entry.clone());
        Ok(entry)
    }

    fn entries(&self) -> Result<Vec<AuditEntry>> {
        Ok(self.lock()?.clone())
    }
}
