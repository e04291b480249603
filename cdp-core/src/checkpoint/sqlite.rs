use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::StateStore;
use crate::error::{Error, Result};
use crate::event::PipelineState;

/// Keeps state in a SQLite file (bundled SQLite, nothing to install): the embedded default.
///
/// Each commit is one transaction in WAL mode with `synchronous=FULL`, so a crash leaves
/// either the old state or the new one. Several pipelines may share one file.
#[derive(Debug, Clone)]
pub struct SqliteStateStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStateStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let conn = Connection::open(path)
            .map_err(|e| sql_error(&format!("open {}", path.display()), e))?;
        Self::init(conn)
    }

    /// A store in memory, for tests.
    pub fn in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|e| sql_error("open in-memory", e))?;
        Self::init(conn)
    }

    fn init(conn: Connection) -> Result<Self> {
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
        })
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
}
