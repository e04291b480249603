//! The read-only public API: counts, the profile of an identifier, a profile's members, the
//! partition into profiles, and the merges made so far.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::{IdentityGraph, MergeRecord, NONE, SlotState};
use crate::identifier::{Identifier, ProfileId};
use crate::rules::Rules;

/// A merge, for callers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeInfo {
    /// Sequence number of the `merge` log event; pass it to
    /// [`IdentityGraph::unmerge`].
    pub seq: u64,
    /// When, UTC milliseconds.
    pub at: i64,
    /// The id that survived.
    pub survivor: ProfileId,
    /// The id merged into it.
    pub absorbed: ProfileId,
    /// The identifiers whose link caused the merge.
    pub link: (Identifier, Identifier),
    /// Whether the merge was undone since.
    pub undone: bool,
}

impl IdentityGraph {
    /// The rules the graph applies.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Number of identifiers that belong to a profile.
    pub fn identifier_count(&self) -> usize {
        (0..self.ids.len() as u32)
            .filter(|&n| self.has_profile(n))
            .count()
    }

    /// Number of identifiers ever interned (including blocked and expired ones).
    pub fn interned_count(&self) -> usize {
        self.ids.len()
    }

    /// Number of live profiles.
    pub fn profile_count(&self) -> usize {
        self.slots.live
    }

    /// Number of links (distinct identifier pairs).
    pub fn link_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// Number of events in the log.
    pub fn log_len(&self) -> u64 {
        self.journal.len() as u64
    }

    /// The profile of an identifier given as a raw value (normalised with its type's
    /// normaliser).
    pub fn profile_of(&self, kind: &str, raw: &str) -> Option<ProfileId> {
        let k = self.rules.type_index(kind)?;
        let mut buf = String::new();
        let value = self.rules.types[k as usize]
            .normaliser
            .apply(raw, &mut buf)?;
        let n = self.ids.get(k, value)?;
        let slot = self.slot_of(n);
        (slot != NONE).then(|| self.profile_uuid(slot))
    }

    /// The live profile id a profile id resolves to: itself when live, the profile it was
    /// merged into (transitively) when merged, `None` when unknown or retired.
    pub fn resolve(&self, id: ProfileId) -> Option<ProfileId> {
        let slot = self.live_slot(self.slot_by_uuid(id)?)?;
        Some(self.profile_uuid(slot))
    }

    /// The identifiers of a profile (resolving merged ids), sorted.
    pub fn members_of(&self, id: ProfileId) -> Option<Vec<Identifier>> {
        let slot = self.live_slot(self.slot_by_uuid(id)?)?;
        let founder = self.component_node(slot)?;
        let mut out: Vec<Identifier> = self
            .members(founder)
            .into_iter()
            .map(|n| self.identifier(n))
            .collect();
        out.sort();
        Some(out)
    }

    /// Every live profile and its identifiers.
    pub fn partition(&self) -> BTreeMap<ProfileId, BTreeSet<Identifier>> {
        let mut by_root: HashMap<u32, BTreeSet<Identifier>> = HashMap::new();
        for n in 0..self.ids.len() as u32 {
            if self.has_profile(n) {
                by_root
                    .entry(self.find_ro(n))
                    .or_default()
                    .insert(self.identifier(n));
            }
        }
        by_root
            .into_iter()
            .map(|(root, ids)| (self.profile_uuid(self.root_slot[root as usize]), ids))
            .collect()
    }

    /// The live profile ids.
    pub fn profile_ids(&self) -> Vec<ProfileId> {
        (0..self.slots.state.len() as u32)
            .filter(|&s| self.slots.state[s as usize] == SlotState::Live)
            .map(|s| self.profile_uuid(s))
            .collect()
    }

    /// Every merge, oldest first.
    pub fn merges(&self) -> Vec<MergeInfo> {
        self.merges.iter().map(|m| self.merge_info(m)).collect()
    }

    pub(crate) fn merge_info(&self, m: &MergeRecord) -> MergeInfo {
        MergeInfo {
            seq: m.seq,
            at: m.at,
            survivor: self.profile_uuid(m.survivor),
            absorbed: self.profile_uuid(m.absorbed),
            link: (self.identifier(m.a), self.identifier(m.b)),
            undone: m.undone,
        }
    }
}
