use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::StateStore;
use super::lease::{LEASE_POLL, Lease, LeaseGuard, LocalLeases, holder_description};
use crate::error::{Error, Result};
use crate::event::PipelineState;

/// Keeps state in a SQLite file (bundled SQLite, nothing to install): the embedded default.
///
/// Each commit is one transaction in WAL mode with `synchronous=FULL`, so a crash leaves
/// either the old state or the new one. Several pipelines may share one file.
///
/// The [lease](StateStore::lease) of a pipeline is an exclusive lock (`flock` on Unix) on a
/// file beside the database, `{file}-lease-{pipeline}`, which holds the holder's process id
/// for the error a second run gets. The operating system drops the lock when the process
/// ends, however it ends. A store in memory keeps its leases within the process.
#[derive(Debug, Clone)]
pub struct SqliteStateStore {
    conn: Arc<Mutex<Connection>>,
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
    local: LocalLeases,
}

impl SqliteStateStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let conn = Connection::open(path)
            .map_err(|e| sql_error(&format!("open {}", path.display()), e))?;
        Self::init(conn, Some(path.to_path_buf()))
    }

    /// A store in memory, for tests.
    pub fn in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|e| sql_error("open in-memory", e))?;
        Self::init(conn, None)
    }

    fn init(conn: Connection, path: Option<PathBuf>) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| sql_error("busy_timeout", e))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS cdp_pipeline_state (
                 pipeline_id TEXT PRIMARY KEY,
                 epoch INTEGER NOT NULL,
                 state TEXT NOT NULL,
                 committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
             );",
        )
        .map_err(|e| sql_error("create table cdp_pipeline_state", e))?;
        Ok(SqliteStateStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
            local: LocalLeases::default(),
        })
    }

    /// The lock file of `pipeline_id`'s lease beside the database at `db`.
    fn lease_path(db: &Path, pipeline_id: &str) -> PathBuf {
        let safe: String = pipeline_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(format!("-lease-{safe}"));
        if safe != pipeline_id {
            // Two ids that differ only in characters a file name cannot hold keep apart.
            let hash = xxhash_rust::xxh3::xxh3_64(pipeline_id.as_bytes());
            name.push(format!("-{:08x}", hash as u32));
        }
        db.with_file_name(name)
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Error::State("sqlite state store lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::State(format!("sqlite task failed: {e}")))?
    }
}

fn sql_error(what: &str, e: rusqlite::Error) -> Error {
    Error::State(format!("sqlite {what}: {e}"))
}

#[async_trait]
impl StateStore for SqliteStateStore {
    async fn load(&self, pipeline_id: &str) -> Result<PipelineState> {
        let id = pipeline_id.to_string();
        let text: Option<String> = self
            .with_conn(move |conn| {
                conn.query_row(
                    "SELECT state FROM cdp_pipeline_state WHERE pipeline_id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|e| sql_error("load", e))
            })
            .await?;
        match text {
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                Error::State(format!(
                    "state of pipeline `{pipeline_id}` is not valid JSON: {e}"
                ))
            }),
            None => Ok(PipelineState::default()),
        }
    }

    async fn commit(&self, pipeline_id: &str, state: &PipelineState) -> Result<()> {
        let id = pipeline_id.to_string();
        let text = serde_json::to_string(state)?;
        let epoch = i64::try_from(state.epoch)
            .map_err(|_| Error::State(format!("epoch {} out of range", state.epoch)))?;
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(|e| sql_error("begin", e))?;
            tx.execute(
                "INSERT INTO cdp_pipeline_state (pipeline_id, epoch, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT(pipeline_id) DO UPDATE SET epoch = excluded.epoch,
                     state = excluded.state,
                     committed_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                params![id, epoch, text],
            )
            .map_err(|e| sql_error("commit", e))?;
            tx.commit().map_err(|e| sql_error("commit", e))
        })
        .await
    }

    async fn lease(&self, pipeline_id: &str, wait: Duration) -> Result<Lease> {
        let Some(db) = &self.path else {
            return self.local.acquire(pipeline_id, wait).await;
        };
        let path = Self::lease_path(db, pipeline_id);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let attempt = path.clone();
            let taken = tokio::task::spawn_blocking(move || try_lock(&attempt))
                .await
                .map_err(|e| Error::State(format!("sqlite lease task failed: {e}")))??;
            match taken {
                Ok(file) => return Ok(Lease::new(pipeline_id, FileLease { _file: file, path })),
                Err(holder) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Leased {
                        pipeline: pipeline_id.to_string(),
                        holder,
                        waited: wait,
                    });
                }
                Err(_) => tokio::time::sleep(LEASE_POLL).await,
            }
        }
    }

    async fn reset(&self, pipeline_id: &str) -> Result<()> {
        let id = pipeline_id.to_string();
        self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM cdp_pipeline_state WHERE pipeline_id = ?1",
                params![id],
            )
            .map(|_| ())
            .map_err(|e| sql_error("reset", e))
        })
        .await
    }
}

/// Tries the lock of the lease file at `path` once: the locked file, or who holds it.
fn try_lock(path: &Path) -> Result<std::result::Result<std::fs::File, String>> {
    let io = |e| Error::io(path.display().to_string(), e);
    // Never truncated on open: the holder's description is in it.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", holder_description()).map_err(io)?;
            file.flush().map_err(io)?;
            Ok(Ok(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            // The holder writes its description right after it locks: give it a moment.
            let mut holder = String::new();
            for _ in 0..10 {
                holder.clear();
                let _ = file
                    .rewind()
                    .and_then(|()| file.read_to_string(&mut holder));
                if !holder.trim().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let holder = holder.trim();
            Ok(Err(if holder.is_empty() {
                format!("lock file {}", path.display())
            } else {
                format!("{holder}, lock file {}", path.display())
            }))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// A lease held by the lock on its file; the lock goes with the file handle.
#[derive(Debug)]
struct FileLease {
    _file: std::fs::File,
    path: PathBuf,
}

impl LeaseGuard for FileLease {}

impl Drop for FileLease {
    fn drop(&mut self) {
        tracing::debug!(path = %self.path.display(), "lease released");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commit_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteStateStore::open(&path).unwrap();
        assert_eq!(store.load("p").await.unwrap(), PipelineState::default());
        let mut state = PipelineState {
            epoch: 3,
            ..Default::default()
        };
        state
            .streams
            .insert("events".into(), serde_json::json!({"offset": 42}));
        store.commit("p", &state).await.unwrap();
        drop(store);
        let reopened = SqliteStateStore::open(&path).unwrap();
        assert_eq!(reopened.load("p").await.unwrap(), state);
        assert_eq!(
            reopened.load("other").await.unwrap(),
            PipelineState::default()
        );
        reopened.reset("p").await.unwrap();
        assert_eq!(reopened.load("p").await.unwrap(), PipelineState::default());
    }

    #[tokio::test]
    async fn a_lease_keeps_a_second_store_on_the_same_file_out_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let first = SqliteStateStore::open(&path).unwrap();
        let second = SqliteStateStore::open(&path).unwrap();
        let lease = first.lease("sync/a b", Duration::ZERO).await.unwrap();
        let refused = second.lease("sync/a b", Duration::ZERO).await.unwrap_err();
        let message = refused.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("already running"), "{message}");
        // Another pipeline in the same file is not held up.
        second.lease("other", Duration::ZERO).await.unwrap();
        let waiting =
            tokio::spawn(async move { second.lease("sync/a b", Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished());
        drop(lease);
        waiting.await.unwrap().unwrap();
    }
}
