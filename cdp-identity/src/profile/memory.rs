//! The embedded profile store: sharded maps, short locks.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{Profile, ProfileDelta, ProfileStore, StoreConfig};
use crate::error::Result;
use crate::identifier::{IdentifierKey, ProfileId};

const SHARDS: usize = 64;
/// A lookup follows at most this many merges; chains are short because merges point at the
/// profile that was live at the time.
const MAX_HOPS: usize = 64;

/// A map split into independently locked shards. Writers take one shard's lock for one
/// insert at a time, so a reader waits at most for one insert, never for a batch.
pub(crate) struct Sharded<K, V> {
    shards: Box<[Shard<K, V>]>,
}

// Its own cache line per shard: readers of one shard do not slow down writers of the next.
#[repr(align(128))]
struct Shard<K, V>(RwLock<hashbrown::HashMap<K, V>>);

pub(crate) trait ShardKey: Eq + std::hash::Hash + Copy {
    fn shard(&self) -> usize;
}

impl ShardKey for IdentifierKey {
    fn shard(&self) -> usize {
        (self.0 >> 64) as usize % SHARDS
    }
}

impl ShardKey for ProfileId {
    fn shard(&self) -> usize {
        // The low bits of a derived id are hash output.
        self.0.as_u128() as usize % SHARDS
    }
}

impl<K: ShardKey, V: Clone> Sharded<K, V> {
    fn with_capacity(capacity: usize) -> Self {
        Sharded {
            shards: (0..SHARDS)
                .map(|_| {
                    Shard(RwLock::new(hashbrown::HashMap::with_capacity(
                        capacity / SHARDS,
                    )))
                })
                .collect(),
        }
    }

    fn shard(&self, k: &K) -> &RwLock<hashbrown::HashMap<K, V>> {
        &self.shards[k.shard()].0
    }

    #[inline]
    fn get(&self, k: &K) -> Option<V> {
        self.shard(k).read().get(k).cloned()
    }

    fn insert(&self, k: K, v: V) {
        self.shard(&k).write().insert(k, v);
    }

    fn remove(&self, k: &K) -> Option<V> {
        self.shard(k).write().remove(k)
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.read().len()).sum()
    }

    fn values(&self) -> Vec<(K, V)> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            out.extend(s.0.read().iter().map(|(k, v)| (*k, v.clone())));
        }
        out
    }
}

/// A consistent copy of a store's index and profile slots.
#[cfg(feature = "sqlite")]
pub(crate) type Entries = (Vec<(IdentifierKey, ProfileId)>, Vec<(ProfileId, Slot)>);

#[derive(Debug, Clone)]
pub(crate) enum Slot {
    Live(Arc<Profile>),
    /// Merged into another profile; the snapshot is what it held at the merge, restored if
    /// the merge is undone.
    Merged {
        into: ProfileId,
        snapshot: Arc<Profile>,
    },
    Retired,
}

/// Profiles in memory, served while a resolver writes.
///
/// Lookups take a shard's read lock for one hash probe (two for an identifier: key to
/// profile id, then profile id to profile) and return an `Arc`, so readers never hold a
/// lock while using a profile. Writers change one entry per lock acquisition.
pub struct MemoryProfileStore {
    config: StoreConfig,
    index: Sharded<IdentifierKey, ProfileId>,
    profiles: Sharded<ProfileId, Slot>,
    writer: Mutex<()>,
}

impl fmt::Debug for MemoryProfileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryProfileStore")
            .field("config", &self.config)
            .field("identifiers", &self.index.len())
            .field("profiles", &self.profiles.len())
            .finish()
    }
}

impl Default for MemoryProfileStore {
    fn default() -> Self {
        MemoryProfileStore::new(StoreConfig::default())
    }
}

impl MemoryProfileStore {
    /// An empty store with these survivorship rules.
    pub fn new(config: StoreConfig) -> Self {
        MemoryProfileStore::with_capacity(config, 0, 0)
    }

    /// An empty store sized for about `identifiers` identifiers and `profiles` profiles, so
    /// a bulk load does not rehash under readers.
    pub fn with_capacity(config: StoreConfig, identifiers: usize, profiles: usize) -> Self {
        MemoryProfileStore {
            config,
            index: Sharded::with_capacity(identifiers),
            profiles: Sharded::with_capacity(profiles),
            writer: Mutex::new(()),
        }
    }

    /// The survivorship rules.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Number of identifiers indexed.
    pub fn identifier_count(&self) -> usize {
        self.index.len()
    }

    /// Every index entry and profile slot, taken under the writer lock (a consistent
    /// snapshot).
    #[cfg(feature = "sqlite")]
    pub(crate) fn entries(&self) -> Entries {
        let _w = self.writer.lock();
        (self.index.values(), self.profiles.values())
    }

    #[cfg(feature = "sqlite")]
    pub(crate) fn load_entries(
        &self,
        index: Vec<(IdentifierKey, ProfileId)>,
        profiles: Vec<(ProfileId, Slot)>,
    ) {
        let _w = self.writer.lock();
        for (k, v) in index {
            self.index.insert(k, v);
        }
        for (k, v) in profiles {
            self.profiles.insert(k, v);
        }
    }

    fn live(&self, mut id: ProfileId) -> Option<(ProfileId, Arc<Profile>)> {
        for _ in 0..MAX_HOPS {
            match self.profiles.get(&id)? {
                Slot::Live(p) => return Some((id, p)),
                Slot::Merged { into, .. } => id = into,
                Slot::Retired => return None,
            }
        }
        None
    }
}

impl ProfileStore for MemoryProfileStore {
    fn apply(&self, d: &ProfileDelta) -> Result<()> {
        let _w = self.writer.lock();
        for &(id, _) in &d.created {
            if self.profiles.get(&id).is_none() {
                self.profiles
                    .insert(id, Slot::Live(Arc::new(Profile::new(id))));
            }
        }
        for &(key, id) in &d.assign {
            self.index.insert(key, id);
        }
        for &(absorbed, survivor) in &d.merges {
            let Some((survivor, target)) = self.live(survivor) else {
                continue;
            };
            let Some(Slot::Live(gone)) = self.profiles.get(&absorbed) else {
                continue;
            };
            let mut merged = (*target).clone();
            merged.absorb(&self.config, &gone);
            self.profiles.insert(survivor, Slot::Live(Arc::new(merged)));
            self.profiles.insert(
                absorbed,
                Slot::Merged {
                    into: survivor,
                    snapshot: gone,
                },
            );
        }
        for split in &d.splits {
            for &(id, restored) in &split.into {
                match self.profiles.get(&id) {
                    Some(Slot::Merged { snapshot, .. }) if restored => {
                        self.profiles.insert(id, Slot::Live(snapshot));
                    }
                    Some(Slot::Live(_)) => {}
                    _ => self
                        .profiles
                        .insert(id, Slot::Live(Arc::new(Profile::new(id)))),
                }
            }
        }
        for key in &d.unassign {
            self.index.remove(key);
        }
        for id in &d.retired {
            self.profiles.insert(*id, Slot::Retired);
        }
        // One copy-on-write per profile per delta, however many rows it had.
        let mut touched: HashMap<ProfileId, Profile> = HashMap::new();
        for o in &d.observations {
            let profile = match touched.get_mut(&o.profile) {
                Some(p) => p,
                None => {
                    let current = match self.profiles.get(&o.profile) {
                        Some(Slot::Live(p)) => (*p).clone(),
                        _ => Profile::new(o.profile),
                    };
                    touched.entry(o.profile).or_insert(current)
                }
            };
            profile.observe(&self.config, o);
        }
        for (id, p) in touched {
            self.profiles.insert(id, Slot::Live(Arc::new(p)));
        }
        Ok(())
    }

    #[inline]
    fn get(&self, id: ProfileId) -> Option<Arc<Profile>> {
        self.live(id).map(|(_, p)| p)
    }

    #[inline]
    fn profile_id(&self, key: IdentifierKey) -> Option<ProfileId> {
        let id = self.index.get(&key)?;
        self.live(id).map(|(id, _)| id)
    }

    #[inline]
    fn lookup(&self, key: IdentifierKey) -> Option<Arc<Profile>> {
        self.get(self.index.get(&key)?)
    }

    fn len(&self) -> usize {
        self.profiles
            .values()
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Live(_)))
            .count()
    }
}
