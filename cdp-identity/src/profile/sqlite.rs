//! SQLite persistence of a [`MemoryProfileStore`]: a snapshot written in one transaction,
//! so a crash leaves either the previous snapshot or the new one.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, params};

use super::memory::Slot;
use super::{MemoryProfileStore, Profile, StoreConfig};
use crate::error::{Error, Result};
use crate::identifier::{IdentifierKey, ProfileId};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS profile_index (
    key BLOB PRIMARY KEY,
    profile TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    merged_into TEXT,
    profile TEXT
);";

impl MemoryProfileStore {
    /// Writes a snapshot of the store to the SQLite file at `path`, replacing the previous
    /// one atomically.
    pub fn save_sqlite(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        let (index, profiles) = self.entries();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM profile_index", [])?;
        tx.execute("DELETE FROM profiles", [])?;
        {
            let mut insert =
                tx.prepare("INSERT INTO profile_index (key, profile) VALUES (?1, ?2)")?;
            for (key, id) in index {
                insert.execute(params![key.0.to_be_bytes().to_vec(), id.to_string()])?;
            }
            let mut insert = tx.prepare(
                "INSERT INTO profiles (id, state, merged_into, profile) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (id, slot) in profiles {
                let (state, into, profile) = match slot {
                    Slot::Live(p) => ("live", None, Some(serde_json::to_string(&*p)?)),
                    Slot::Merged { into, snapshot } => (
                        "merged",
                        Some(into.to_string()),
                        Some(serde_json::to_string(&*snapshot)?),
                    ),
                    Slot::Retired => ("retired", None, None),
                };
                insert.execute(params![id.to_string(), state, into, profile])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Loads a store from a snapshot written by [`MemoryProfileStore::save_sqlite`].
    pub fn load_sqlite(config: StoreConfig, path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        let mut index = Vec::new();
        let mut stmt = conn.prepare("SELECT key, profile FROM profile_index")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (key, id) = row?;
            let key: [u8; 16] = key
                .try_into()
                .map_err(|_| Error::InvalidOperation("profile_index key is not 16 bytes".into()))?;
            index.push((IdentifierKey(u128::from_be_bytes(key)), id.parse()?));
        }
        let mut profiles = Vec::new();
        let mut stmt = conn.prepare("SELECT id, state, merged_into, profile FROM profiles")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        for row in rows {
            let (id, state, into, json) = row?;
            let id: ProfileId = id.parse()?;
            let profile = || -> Result<Arc<Profile>> {
                let json = json
                    .as_deref()
                    .ok_or_else(|| Error::InvalidOperation(format!("profile {id} has no data")))?;
                Ok(Arc::new(serde_json::from_str(json)?))
            };
            let slot = match (state.as_str(), &into) {
                ("live", _) => Slot::Live(profile()?),
                ("merged", Some(into)) => Slot::Merged {
                    into: into.parse()?,
                    snapshot: profile()?,
                },
                ("retired", _) => Slot::Retired,
                (other, _) => {
                    return Err(Error::InvalidOperation(format!(
                        "profile {id}: unknown state `{other}`"
                    )));
                }
            };
            profiles.push((id, slot));
        }
        let store = MemoryProfileStore::with_capacity(config, index.len(), profiles.len());
        store.load_entries(index, profiles);
        Ok(store)
    }
}
