//! The SQLite registry store.

use std::io::Cursor;
use std::path::Path;
use std::sync::Mutex;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use super::{RegisteredSchema, RegistryStore};
use crate::error::{Error, Result, lock};
use crate::severity::SchemaPolicy;

/// Keeps versions and policies in a SQLite file (bundled SQLite, nothing to install).
///
/// Schemas are stored as Arrow IPC (which keeps every type, nested field and metadata
/// entry), contracts and policies as JSON. A version is one row, inserted atomically; the
/// `(subject, version)` key turns concurrent registrations into [`Error::Conflict`].
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_versions (
    subject TEXT NOT NULL,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    schema_ipc BLOB NOT NULL,
    contract TEXT,
    registered_at TEXT NOT NULL,
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS schema_versions_fingerprint ON schema_versions (fingerprint);
CREATE TABLE IF NOT EXISTS schema_policies (
    subject TEXT PRIMARY KEY,
    policy TEXT NOT NULL
);";

impl SqliteStore {
    /// Opens (creating if needed) the registry at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Self::with_connection(conn)
    }

    /// A registry in a private in-memory database.
    pub fn in_memory() -> Result<Self> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(conn: Connection) -> Result<Self> {
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn query(&self, sql: &str, param: &str) -> Result<Vec<RegisteredSchema>> {
        let conn = lock(&self.conn, "sqlite registry")?;
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map([param], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Vec<u8>>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (subject, version, fingerprint, ipc, contract, at) = row?;
            out.push(RegisteredSchema {
                schema: decode_schema(&ipc)?,
                contract: contract.map(|c| serde_json::from_str(&c)).transpose()?,
                registered_at: DateTime::parse_from_rfc3339(&at)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        Error::Config(format!("bad timestamp `{at}` in schema registry: {e}"))
                    })?,
                subject,
                version,
                fingerprint,
            });
        }
        Ok(out)
    }
}

fn encode_schema(schema: &Schema) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
    writer.finish()?;
    Ok(writer.into_inner()?)
}

fn decode_schema(bytes: &[u8]) -> Result<SchemaRef> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    Ok(reader.schema())
}

impl RegistryStore for SqliteStore {
    fn subjects(&self) -> Result<Vec<String>> {
        let conn = lock(&self.conn, "sqlite registry")?;
        let mut stmt =
            conn.prepare_cached("SELECT DISTINCT subject FROM schema_versions ORDER BY subject")?;
        let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn versions(&self, subject: &str) -> Result<Vec<RegisteredSchema>> {
        self.query(
            "SELECT subject, version, fingerprint, schema_ipc, contract, registered_at \
             FROM schema_versions WHERE subject = ?1 ORDER BY version",
            subject,
        )
    }

    fn append(&self, entry: &RegisteredSchema) -> Result<()> {
        let ipc = encode_schema(&entry.schema)?;
        let contract = entry
            .contract
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        let conn = lock(&self.conn, "sqlite registry")?;
        let inserted = conn.execute(
            "INSERT INTO schema_versions \
             (subject, version, fingerprint, schema_ipc, contract, registered_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                entry.subject,
                entry.version,
                entry.fingerprint,
                ipc,
                contract,
                entry.registered_at.to_rfc3339()
            ],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                Err(Error::Conflict {
                    subject: entry.subject.clone(),
                    version: entry.version,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn find_fingerprint(&self, fingerprint: &str) -> Result<Vec<RegisteredSchema>> {
        self.query(
            "SELECT subject, version, fingerprint, schema_ipc, contract, registered_at \
             FROM schema_versions WHERE fingerprint = ?1 ORDER BY subject, version",
            fingerprint,
        )
    }

    fn policy(&self, subject: &str) -> Result<Option<SchemaPolicy>> {
        let conn = lock(&self.conn, "sqlite registry")?;
        let text: Option<String> = conn
            .query_row(
                "SELECT policy FROM schema_policies WHERE subject = ?1",
                [subject],
                |row| row.get(0),
            )
            .optional()?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }

    fn set_policy(&self, subject: &str, policy: &SchemaPolicy) -> Result<()> {
        let text = serde_json::to_string(policy)?;
        lock(&self.conn, "sqlite registry")?.execute(
            "INSERT INTO schema_policies (subject, policy) VALUES (?1, ?2) \
             ON CONFLICT (subject) DO UPDATE SET policy = excluded.policy",
            params![subject, text],
        )?;
        Ok(())
    }
}
