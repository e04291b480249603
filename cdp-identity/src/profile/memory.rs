//! The embedded profile store: lookups without locks while one writer applies deltas.
//!
//! Readers never take a lock. Identifier keys and profile ids map to profile *slots* through
//! open-addressing tables of atomics (an entry is published by writing its key last, with
//! release ordering); a slot is a cell holding the profile behind an [`ArcSwapOption`] and
//! whether it was merged into another slot. A lookup by identifier is one table probe, one
//! cell and one `Arc` clone — three memory accesses — whatever the writer is doing. The
//! writer (one at a time, behind a mutex) replaces a profile by storing a new `Arc`, and
//! grows a table by building a larger copy and swapping it in.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;

use super::{Profile, ProfileDelta, ProfileStore, StoreConfig};
use crate::error::Result;
use crate::identifier::{IdentifierKey, ProfileId};

/// A lookup follows at most this many merges; chains are short because merges point at the
/// profile that was live at the time.
const MAX_HOPS: usize = 64;
const SEGMENT: usize = 4096;
const LIVE: u32 = u32::MAX;
const RETIRED: u32 = u32::MAX - 1;
const TOMBSTONE: u32 = u32::MAX;

/// An insert-or-update hash table from 128-bit keys to `u32`, read without locks.
///
/// Keys are hashes already, so their low bits pick the bucket. The key's top bit is forced
/// to 1 so that a zero `hi` word always means "empty": a 127-bit key, which changes nothing
/// at these sizes. Removal leaves a tombstone value so probe chains stay intact.
struct Table {
    entries: Box<[Entry]>,
    mask: usize,
}

struct Entry {
    hi: AtomicU64,
    lo: AtomicU64,
    value: AtomicU32,
}

fn split(key: u128) -> (u64, u64) {
    (((key >> 64) as u64) | (1 << 63), key as u64)
}

impl Table {
    fn with_capacity(n: usize) -> Table {
        // At most 70% full: short probe chains.
        let buckets = (n * 10 / 7 + 1).next_power_of_two().max(16);
        Table {
            entries: (0..buckets)
                .map(|_| Entry {
                    hi: AtomicU64::new(0),
                    lo: AtomicU64::new(0),
                    value: AtomicU32::new(TOMBSTONE),
                })
                .collect(),
            mask: buckets - 1,
        }
    }

    fn capacity(&self) -> usize {
        (self.mask + 1) * 7 / 10
    }

    #[inline]
    fn get(&self, key: u128) -> Option<u32> {
        let (hi, lo) = split(key);
        let mut i = lo as usize & self.mask;
        for _ in 0..=self.mask {
            let e = &self.entries[i];
            let h = e.hi.load(Ordering::Acquire);
            if h == 0 {
                return None;
            }
            if h == hi && e.lo.load(Ordering::Relaxed) == lo {
                let v = e.value.load(Ordering::Acquire);
                return (v != TOMBSTONE).then_some(v);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Inserts or updates; returns whether the key is new. Writer only.
    fn insert(&self, key: u128, value: u32) -> bool {
        let (hi, lo) = split(key);
        let mut i = lo as usize & self.mask;
        loop {
            let e = &self.entries[i];
            let h = e.hi.load(Ordering::Relaxed);
            if h == 0 {
                e.lo.store(lo, Ordering::Relaxed);
                e.value.store(value, Ordering::Relaxed);
                // Publishes the entry: a reader that sees `hi` sees `lo` and `value`.
                e.hi.store(hi, Ordering::Release);
                return true;
            }
            if h == hi && e.lo.load(Ordering::Relaxed) == lo {
                let was = e.value.swap(value, Ordering::Release);
                return was == TOMBSTONE;
            }
            i = (i + 1) & self.mask;
        }
    }

    fn remove(&self, key: u128) -> bool {
        let (hi, lo) = split(key);
        let mut i = lo as usize & self.mask;
        for _ in 0..=self.mask {
            let e = &self.entries[i];
            let h = e.hi.load(Ordering::Relaxed);
            if h == 0 {
                return false;
            }
            if h == hi && e.lo.load(Ordering::Relaxed) == lo {
                return e.value.swap(TOMBSTONE, Ordering::Release) != TOMBSTONE;
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// Live (key, value) pairs, keys with the forced top bit.
    fn pairs(&self) -> impl Iterator<Item = (u128, u32)> + '_ {
        self.entries.iter().filter_map(|e| {
            let h = e.hi.load(Ordering::Acquire);
            let v = e.value.load(Ordering::Acquire);
            (h != 0 && v != TOMBSTONE).then(|| {
                (
                    (u128::from(h) << 64) | u128::from(e.lo.load(Ordering::Relaxed)),
                    v,
                )
            })
        })
    }
}

/// A table plus the writer's count of what it holds (tombstones included, since they keep
/// their bucket).
struct Growing {
    table: ArcSwap<Table>,
    used: AtomicUsize,
    live: AtomicUsize,
}

impl Growing {
    fn with_capacity(n: usize) -> Self {
        Growing {
            table: ArcSwap::from_pointee(Table::with_capacity(n)),
            used: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn get(&self, key: u128) -> Option<u32> {
        self.table.load().get(key)
    }

    /// Writer only.
    fn insert(&self, key: u128, value: u32) {
        let table = self.table.load_full();
        if self.used.load(Ordering::Relaxed) + 1 > table.capacity() {
            // Readers keep using the old table until the swap; nobody else writes.
            let live = self.live.load(Ordering::Relaxed);
            let bigger = Table::with_capacity((live + 1) * 2);
            for (k, v) in table.pairs() {
                bigger.insert(k, v);
            }
            self.used.store(live, Ordering::Relaxed);
            self.table.store(Arc::new(bigger));
        }
        let table = self.table.load();
        let fresh_bucket = table.get(key).is_none() && !self.has_tombstone(&table, key);
        if table.insert(key, value) {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        if fresh_bucket {
            self.used.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn has_tombstone(&self, table: &Table, key: u128) -> bool {
        let (hi, lo) = split(key);
        let mut i = lo as usize & table.mask;
        loop {
            let e = &table.entries[i];
            let h = e.hi.load(Ordering::Relaxed);
            if h == 0 {
                return false;
            }
            if h == hi && e.lo.load(Ordering::Relaxed) == lo {
                return true;
            }
            i = (i + 1) & table.mask;
        }
    }

    fn remove(&self, key: u128) {
        if self.table.load().remove(key) {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

/// A profile slot: the profile (live, or as it was when merged away) and where the slot
/// stands.
struct Cell {
    /// `LIVE`, `RETIRED`, or the slot it was merged into.
    state: AtomicU32,
    profile: ArcSwapOption<Profile>,
}

/// A slot's state, for snapshots.
#[cfg(feature = "sqlite")]
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

/// A consistent copy of a store's index and profile slots.
#[cfg(feature = "sqlite")]
pub(crate) type Entries = (Vec<(IdentifierKey, ProfileId)>, Vec<(ProfileId, Slot)>);

/// What only the writer touches.
struct Writer {
    /// Profile id of each slot.
    ids: Vec<ProfileId>,
}

/// Profiles in memory, served while a resolver writes.
///
/// Readers never take a lock: identifier keys and profile ids map to profile slots through
/// open-addressing tables of atomics, and each slot holds its profile behind an `ArcSwap`,
/// so a lookup by identifier is one table probe, one slot and one `Arc` clone whatever the
/// writer is doing. One writer at a time applies deltas; it replaces a profile by storing a
/// new `Arc` and grows a table by swapping in a larger copy.
pub struct MemoryProfileStore {
    config: StoreConfig,
    index: Growing,
    by_id: Growing,
    cells: ArcSwap<Vec<Arc<[Cell]>>>,
    live: AtomicUsize,
    writer: Mutex<Writer>,
}

impl fmt::Debug for MemoryProfileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryProfileStore")
            .field("config", &self.config)
            .field("identifiers", &self.index.len())
            .field("profiles", &self.len())
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
    /// a bulk load does not regrow its tables.
    pub fn with_capacity(config: StoreConfig, identifiers: usize, profiles: usize) -> Self {
        MemoryProfileStore {
            config,
            index: Growing::with_capacity(identifiers),
            by_id: Growing::with_capacity(profiles),
            cells: ArcSwap::from_pointee(Vec::new()),
            live: AtomicUsize::new(0),
            writer: Mutex::new(Writer {
                ids: Vec::with_capacity(profiles),
            }),
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

    #[inline]
    fn with_cell<T>(&self, slot: u32, f: impl FnOnce(&Cell) -> T) -> Option<T> {
        let cells = self.cells.load();
        let segment = cells.get(slot as usize / SEGMENT)?;
        Some(f(&segment[slot as usize % SEGMENT]))
    }

    /// The live slot `slot` resolves to, following merges.
    #[inline]
    fn live_slot(&self, mut slot: u32) -> Option<u32> {
        for _ in 0..MAX_HOPS {
            match self.with_cell(slot, |c| c.state.load(Ordering::Acquire))? {
                LIVE => return Some(slot),
                RETIRED => return None,
                into => slot = into,
            }
        }
        None
    }

    #[inline]
    fn profile_at(&self, slot: u32) -> Option<Arc<Profile>> {
        let slot = self.live_slot(slot)?;
        self.with_cell(slot, |c| c.profile.load_full())?
    }

    // ---- writer side ----

    fn slot_of(&self, id: ProfileId) -> Option<u32> {
        self.by_id.get(id.0.as_u128())
    }

    fn new_slot(&self, w: &mut Writer, id: ProfileId, profile: Profile) -> u32 {
        let slot = w.ids.len() as u32;
        w.ids.push(id);
        let cells = self.cells.load_full();
        if slot as usize >= cells.len() * SEGMENT {
            let mut grown: Vec<Arc<[Cell]>> = cells.iter().cloned().collect();
            grown.push(
                (0..SEGMENT)
                    .map(|_| Cell {
                        state: AtomicU32::new(RETIRED),
                        profile: ArcSwapOption::empty(),
                    })
                    .collect(),
            );
            self.cells.store(Arc::new(grown));
        }
        // The cell is complete before the id is published.
        self.with_cell(slot, |c| {
            c.profile.store(Some(Arc::new(profile)));
            c.state.store(LIVE, Ordering::Release);
        });
        self.live.fetch_add(1, Ordering::Relaxed);
        self.by_id.insert(id.0.as_u128(), slot);
        slot
    }

    fn set_state(&self, slot: u32, state: u32) {
        let was = self
            .with_cell(slot, |c| c.state.swap(state, Ordering::Release))
            .unwrap_or(RETIRED);
        match (was == LIVE, state == LIVE) {
            (true, false) => {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
            (false, true) => {
                self.live.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn cell_profile(&self, slot: u32) -> Option<Arc<Profile>> {
        self.with_cell(slot, |c| c.profile.load_full()).flatten()
    }

    fn store_profile(&self, slot: u32, profile: Profile) {
        self.with_cell(slot, |c| c.profile.store(Some(Arc::new(profile))));
    }

    /// Every index entry and profile slot, taken under the writer lock (a consistent
    /// snapshot).
    #[cfg(feature = "sqlite")]
    pub(crate) fn entries(&self) -> Entries {
        let w = self.writer.lock();
        let index = self
            .index
            .table
            .load()
            .pairs()
            .filter_map(|(k, slot)| Some((IdentifierKey(k), *w.ids.get(slot as usize)?)))
            .collect();
        let mut slots = Vec::with_capacity(w.ids.len());
        for (slot, id) in w.ids.iter().enumerate() {
            let slot = slot as u32;
            let state = self.with_cell(slot, |c| c.state.load(Ordering::Acquire));
            let profile = self.cell_profile(slot);
            let entry = match (state, profile) {
                (Some(LIVE), Some(p)) => Slot::Live(p),
                (Some(into), Some(p)) if into != RETIRED => Slot::Merged {
                    into: w.ids[into as usize],
                    snapshot: p,
                },
                _ => Slot::Retired,
            };
            slots.push((*id, entry));
        }
        (index, slots)
    }

    /// Loads snapshot entries into an empty store.
    #[cfg(feature = "sqlite")]
    pub(crate) fn load_entries(
        &self,
        index: Vec<(IdentifierKey, ProfileId)>,
        profiles: Vec<(ProfileId, Slot)>,
    ) {
        let mut w = self.writer.lock();
        for (id, slot) in &profiles {
            let profile = match slot {
                Slot::Live(p) | Slot::Merged { snapshot: p, .. } => (**p).clone(),
                Slot::Retired => Profile::new(*id),
            };
            self.new_slot(&mut w, *id, profile);
        }
        for (id, slot) in &profiles {
            let Some(s) = self.slot_of(*id) else { continue };
            match slot {
                Slot::Live(_) => {}
                Slot::Merged { into, .. } => {
                    if let Some(into) = self.slot_of(*into) {
                        self.set_state(s, into);
                    }
                }
                Slot::Retired => self.set_state(s, RETIRED),
            }
        }
        for (key, id) in index {
            if let Some(slot) = self.slot_of(id) {
                self.index.insert(key.0, slot);
            }
        }
    }
}

impl ProfileStore for MemoryProfileStore {
    fn apply(&self, d: &ProfileDelta) -> Result<()> {
        let mut w = self.writer.lock();
        for &(id, _) in &d.created {
            if self.slot_of(id).is_none() {
                self.new_slot(&mut w, id, Profile::new(id));
            }
        }
        for &(key, id) in &d.assign {
            if let Some(slot) = self.slot_of(id) {
                self.index.insert(key.0, slot);
            }
        }
        for &(absorbed, survivor) in &d.merges {
            let (Some(a), Some(s)) = (self.slot_of(absorbed), self.slot_of(survivor)) else {
                continue;
            };
            let Some(s) = self.live_slot(s) else { continue };
            if a == s || self.live_slot(a) != Some(a) {
                continue;
            }
            let (Some(target), Some(gone)) = (self.cell_profile(s), self.cell_profile(a)) else {
                continue;
            };
            let mut merged = (*target).clone();
            merged.absorb(&self.config, &gone);
            // The survivor holds both before the absorbed id starts pointing at it.
            self.store_profile(s, merged);
            self.set_state(a, s);
        }
        for split in &d.splits {
            for &(id, restored) in &split.into {
                match self.slot_of(id) {
                    Some(slot) if restored => self.set_state(slot, LIVE),
                    Some(_) => {}
                    None => {
                        self.new_slot(&mut w, id, Profile::new(id));
                    }
                }
            }
        }
        for key in &d.unassign {
            self.index.remove(key.0);
        }
        for id in &d.retired {
            if let Some(slot) = self.slot_of(*id) {
                self.set_state(slot, RETIRED);
            }
        }
        // One copy-on-write per profile per delta, however many rows it had.
        let mut touched: HashMap<u32, Profile> = HashMap::new();
        for o in &d.observations {
            let Some(slot) = self.slot_of(o.profile).and_then(|s| self.live_slot(s)) else {
                continue;
            };
            let profile = touched.entry(slot).or_insert_with(|| {
                self.cell_profile(slot)
                    .map_or_else(|| Profile::new(o.profile), |p| (*p).clone())
            });
            profile.observe(&self.config, o);
        }
        for (slot, p) in touched {
            self.store_profile(slot, p);
        }
        Ok(())
    }

    #[inline]
    fn get(&self, id: ProfileId) -> Option<Arc<Profile>> {
        self.profile_at(self.by_id.get(id.0.as_u128())?)
    }

    #[inline]
    fn profile_id(&self, key: IdentifierKey) -> Option<ProfileId> {
        let slot = self.live_slot(self.index.get(key.0)?)?;
        self.with_cell(slot, |c| c.profile.load().as_ref().map(|p| p.id))?
    }

    #[inline]
    fn lookup(&self, key: IdentifierKey) -> Option<Arc<Profile>> {
        self.profile_at(self.index.get(key.0)?)
    }

    fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_inserts_updates_removes_and_grows() {
        let g = Growing::with_capacity(4);
        for k in 1..=10_000u128 {
            g.insert(
                k.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
                k as u32,
            );
        }
        assert_eq!(g.len(), 10_000);
        let key = |k: u128| k.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        assert_eq!(g.get(key(1234)), Some(1234));
        g.insert(key(1234), 7);
        assert_eq!(g.get(key(1234)), Some(7));
        g.remove(key(1234));
        assert_eq!(g.get(key(1234)), None);
        assert_eq!(g.len(), 9_999);
        g.insert(key(1234), 8);
        assert_eq!(g.get(key(1234)), Some(8));
        assert_eq!(g.get(key(20_000)), None);
        assert_eq!(g.get(0), None);
        g.insert(0, 1);
        assert_eq!(g.get(0), Some(1));
    }
}
