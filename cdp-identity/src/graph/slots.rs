//! Profile slots: one per profile ever created, live, merged into another or retired. A
//! slot holds the profile's id, its founder and the counters the rules check (size, consent
//! scopes, best priority, per-type counts); merged slots point at the slot that absorbed
//! them, so their ids keep resolving.

use std::collections::HashMap;

use uuid::Uuid;

use super::{IdentityGraph, NONE};
use crate::identifier::{ProfileId, hash128};

/// Where a profile slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    Live,
    Merged,
    Retired,
}

/// Profile slots, one vector per field.
#[derive(Debug, Default)]
pub(super) struct Slots {
    pub(super) uuid: Vec<Uuid>,
    pub(super) created: Vec<i64>,
    pub(super) founder: Vec<u32>,
    pub(super) state: Vec<SlotState>,
    pub(super) merged_into: Vec<u32>,
    /// The merge record that absorbed the slot, when merged.
    pub(super) merge_rec: Vec<u32>,
    pub(super) size: Vec<u32>,
    pub(super) scope_mask: Vec<u32>,
    /// Best (lowest) priority number among the members.
    pub(super) best: Vec<u8>,
    /// Per-type counters for the limited types, `k` per slot.
    pub(super) counts: Vec<u16>,
    /// Slots merged directly into a slot, for walking merge trees on a split.
    pub(super) absorbed: HashMap<u32, Vec<u32>>,
    pub(super) by_uuid: hashbrown::HashMap<Uuid, u32>,
    pub(super) live: usize,
}

impl IdentityGraph {
    /// The profile id of a slot as text, without going through `fmt`.
    pub(crate) fn profile_string(&self, slot: u32) -> String {
        let mut buf = Uuid::encode_buffer();
        String::from(
            self.slots.uuid[slot as usize]
                .hyphenated()
                .encode_lower(&mut buf) as &str,
        )
    }

    pub(crate) fn profile_uuid(&self, slot: u32) -> ProfileId {
        ProfileId(self.slots.uuid[slot as usize])
    }

    /// The live slot a slot resolves to, following merges.
    pub(crate) fn live_slot(&self, mut slot: u32) -> Option<u32> {
        // Merge chains are acyclic by construction; the bound guards against a bug turning
        // a lookup into a hang.
        for _ in 0..=self.slots.state.len() {
            match self.slots.state[slot as usize] {
                SlotState::Live => return Some(slot),
                SlotState::Retired => return None,
                SlotState::Merged => slot = self.slots.merged_into[slot as usize],
            }
        }
        None
    }

    pub(crate) fn slot_by_uuid(&self, id: ProfileId) -> Option<u32> {
        self.slots.by_uuid.get(&id.0).copied()
    }

    /// A node in the component of a live slot.
    pub(crate) fn component_node(&self, slot: u32) -> Option<u32> {
        let f = self.slots.founder[slot as usize];
        if f != NONE && self.slot_of(f) == slot {
            return Some(f);
        }
        // The founder left (expired or split off): fall back to a scan. Rare.
        (0..self.ids.len() as u32).find(|&n| self.slot_of(n) == slot)
    }

    pub(super) fn counts(&self, slot: u32) -> &[u16] {
        let k = self.rules.limited.len();
        &self.slots.counts[slot as usize * k..(slot as usize + 1) * k]
    }

    pub(super) fn counts_mut(&mut self, slot: u32) -> &mut [u16] {
        let k = self.rules.limited.len();
        &mut self.slots.counts[slot as usize * k..(slot as usize + 1) * k]
    }

    fn derive_uuid(&self, at: i64, founder: u32, slot: u32) -> Uuid {
        let h = hash128(
            &[
                &[self.ids.kind(founder)],
                self.ids.value(founder).as_bytes(),
                &slot.to_le_bytes(),
            ],
            self.rules.config().id_seed,
        )
        .to_le_bytes();
        let mut random = [0u8; 10];
        random.copy_from_slice(&h[..10]);
        uuid::Builder::from_unix_timestamp_millis(at.max(0) as u64, &random).into_uuid()
    }

    pub(super) fn new_slot(&mut self, founder: u32, at: i64) -> u32 {
        let slot = self.slots.uuid.len() as u32;
        let mut uuid = self.derive_uuid(at, founder, slot);
        // A 74-bit collision needs billions of profiles; stepping keeps ids unique anyway.
        while self.slots.by_uuid.contains_key(&uuid) {
            uuid = Uuid::from_u128(uuid.as_u128().wrapping_add(1));
        }
        self.slots.uuid.push(uuid);
        self.slots.by_uuid.insert(uuid, slot);
        self.slots.created.push(at);
        self.slots.founder.push(founder);
        self.slots.state.push(SlotState::Live);
        self.slots.merged_into.push(NONE);
        self.slots.merge_rec.push(NONE);
        self.slots.size.push(0);
        self.slots.scope_mask.push(0);
        self.slots.best.push(u8::MAX);
        let k = self.rules.limited.len();
        self.slots.counts.extend(std::iter::repeat_n(0, k));
        self.slots.live += 1;
        slot
    }

    /// Adds a node's contribution to a slot's counters.
    pub(super) fn account(&mut self, slot: u32, n: u32) {
        let kind = self.ids.kind(n);
        let t = &self.rules.types[kind as usize];
        let (limit_slot, priority) = (t.limit_slot, t.priority);
        let s = slot as usize;
        self.slots.size[s] += 1;
        self.slots.scope_mask[s] |= 1 << self.scope[n as usize];
        self.slots.best[s] = self.slots.best[s].min(priority);
        if let Some(j) = limit_slot {
            let c = &mut self.counts_mut(slot)[j];
            *c = c.saturating_add(1);
        }
    }

    // ---- read access for the rest of the crate ----

    /// Number of slots ever created (live, merged and retired).
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.state.len()
    }

    /// Whether a slot is live, merged or retired.
    pub(crate) fn slot_state(&self, slot: u32) -> SlotState {
        self.slots.state[slot as usize]
    }

    /// When a slot's profile was created, UTC milliseconds.
    pub(crate) fn slot_created(&self, slot: u32) -> i64 {
        self.slots.created[slot as usize]
    }

    /// The slot a merged slot was merged into (NONE when it was not merged).
    pub(crate) fn merged_into(&self, slot: u32) -> u32 {
        self.slots.merged_into[slot as usize]
    }
}
