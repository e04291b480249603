//! Splits: removing a link (unlink) or undoing a merge (unmerge), and rebuilding the parts
//! of a profile that fell apart. Each part gets a slot back by its founder (a former profile
//! whose founder it holds gets that profile's id again), and merged ids are repointed at the
//! part their founder ended up in.

use std::collections::{HashMap, HashSet, VecDeque};

use cdp_core::IdentityEvent;
use petgraph::visit::EdgeRef;

use super::store::node;
use super::{Change, Ctx, IdentityGraph, MergeRecord, NONE, SlotState};
use crate::error::{Error, Result};
use crate::identifier::Identifier;
use crate::log::EntryKind;

/// What a split was caused by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SplitCause {
    Unlink,
    Unmerge,
    Expire,
}

/// A profile split into parts.
#[derive(Debug, Clone)]
pub(crate) struct Split {
    pub(crate) cause: SplitCause,
    pub(crate) old: u32,
    /// Each part's slot and members.
    pub(crate) parts: Vec<(u32, Vec<u32>)>,
    /// Slots brought back to life by the split.
    pub(crate) revived: Vec<u32>,
    /// Members that left every profile (expired).
    pub(crate) removed: Vec<u32>,
}

impl IdentityGraph {
    /// Removes the link between two identifiers; the profile splits if it was the only
    /// bridge, and the parts get back the ids they had before they were joined.
    pub fn unlink(
        &mut self,
        a: &Identifier,
        b: &Identifier,
        at: i64,
    ) -> Result<Vec<IdentityEvent>> {
        let (na, nb) = (self.require_node(a)?, self.require_node(b)?);
        let mut changes = Vec::new();
        self.unlink_nodes(na, nb, at, &mut changes)?;
        Ok(self.core_events(&changes))
    }

    pub(crate) fn unlink_nodes(
        &mut self,
        a: u32,
        b: u32,
        at: i64,
        changes: &mut Vec<Change>,
    ) -> Result<()> {
        let e = self.graph.find_edge(node(a), node(b)).ok_or_else(|| {
            Error::NotFound(format!(
                "link between {} and {}",
                self.identifier_string(a),
                self.identifier_string(b)
            ))
        })?;
        let slot = self.slot_of(a);
        let members = self.members(a);
        self.graph.remove_edge(e);
        self.record(EntryKind::Unlink, a, b, 0, Ctx::at(at));
        if !self.connected(a, b) {
            self.resplit(slot, &members, at, SplitCause::Unlink, changes);
        }
        Ok(())
    }

    fn connected(&self, a: u32, b: u32) -> bool {
        let mut seen = HashSet::from([a]);
        let mut queue = VecDeque::from([a]);
        while let Some(x) = queue.pop_front() {
            if x == b {
                return true;
            }
            for y in self.graph.neighbors(node(x)) {
                let y = y.index() as u32;
                if seen.insert(y) {
                    queue.push_back(y);
                }
            }
        }
        false
    }

    /// Undoes a merge, given the sequence number of its `merge` log event: removes every
    /// link between the two sides (each identifier is on the side of the profile it first
    /// joined, directly or through the identifier it was linked to) and restores the
    /// absorbed profile's id.
    pub fn unmerge(&mut self, merge_seq: u64, at: i64) -> Result<Vec<IdentityEvent>> {
        let mut changes = Vec::new();
        self.unmerge_changes(merge_seq, at, &mut changes)?;
        Ok(self.core_events(&changes))
    }

    /// Undoes the merge that the link between `a` and `b` caused.
    pub fn unmerge_link(
        &mut self,
        a: &Identifier,
        b: &Identifier,
        at: i64,
    ) -> Result<Vec<IdentityEvent>> {
        let seq = self.merge_of_link(a, b)?;
        self.unmerge(seq, at)
    }

    pub(crate) fn merge_of_link(&self, a: &Identifier, b: &Identifier) -> Result<u64> {
        let (na, nb) = (self.require_node(a)?, self.require_node(b)?);
        self.merges
            .iter()
            .rev()
            .find(|m| !m.undone && ((m.a, m.b) == (na, nb) || (m.a, m.b) == (nb, na)))
            .map(|m| m.seq)
            .ok_or_else(|| Error::NotFound(format!("a merge in effect caused by {a} — {b}")))
    }

    pub(crate) fn unmerge_changes(
        &mut self,
        merge_seq: u64,
        at: i64,
        changes: &mut Vec<Change>,
    ) -> Result<()> {
        let idx = self
            .merges
            .iter()
            .position(|m| m.seq == merge_seq)
            .ok_or_else(|| Error::NotFound(format!("merge event {merge_seq}")))?;
        let rec = self.merges[idx].clone();
        if rec.undone || self.slots.state[rec.absorbed as usize] != SlotState::Merged {
            return Err(Error::InvalidOperation(format!(
                "merge {merge_seq} is no longer in effect"
            )));
        }
        let Some(live) = self.live_slot(rec.absorbed) else {
            return Err(Error::InvalidOperation(format!(
                "merge {merge_seq}: the merged profile was retired"
            )));
        };
        let start = [rec.a, rec.b]
            .into_iter()
            .find(|&n| self.slot_of(n) == live)
            .or_else(|| self.component_node(live))
            .ok_or_else(|| Error::InvalidOperation(format!("merge {merge_seq}: no members")))?;
        let members = self.members(start);
        let member_set: HashSet<u32> = members.iter().copied().collect();
        let y_side: HashSet<u32> = members
            .iter()
            .copied()
            .filter(|&n| self.on_absorbed_side(n, &rec))
            .collect();
        let mut cut = Vec::new();
        for &n in &y_side {
            for e in self.graph.edges(node(n)) {
                let other = if e.source().index() as u32 == n {
                    e.target().index() as u32
                } else {
                    e.source().index() as u32
                };
                if member_set.contains(&other) && !y_side.contains(&other) {
                    cut.push((n, other));
                }
            }
        }
        for (x, y) in cut {
            if let Some(e) = self.graph.find_edge(node(x), node(y)) {
                self.graph.remove_edge(e);
            }
        }
        self.record(EntryKind::Unmerge, rec.a, rec.b, idx as u32, Ctx::at(at));
        self.merges[idx].undone = true;
        self.resplit(live, &members, at, SplitCause::Unmerge, changes);
        Ok(())
    }

    fn on_absorbed_side(&self, n: u32, rec: &MergeRecord) -> bool {
        let mut s = self.origin[n as usize];
        for _ in 0..=self.slots.state.len() {
            if s == rec.absorbed {
                return true;
            }
            if s == NONE || self.slots.state[s as usize] != SlotState::Merged {
                return false;
            }
            let m = self.slots.merge_rec[s as usize];
            if m == NONE || self.merges[m as usize].seq >= rec.seq {
                return false;
            }
            s = self.slots.merged_into[s as usize];
        }
        false
    }

    pub(super) fn retire(&mut self, slot: u32) {
        if self.slots.state[slot as usize] == SlotState::Live {
            self.slots.live -= 1;
        }
        self.slots.state[slot as usize] = SlotState::Retired;
    }

    /// Rebuilds the components of what was one profile (`old`, with `nodes` as members)
    /// after links were removed, and gives each part a slot: the part holding a former
    /// profile's founder gets that profile back (the shallowest in the merge tree wins);
    /// `old` stays with its founder's part, or the best part when the founder left; parts
    /// left over get new profiles.
    pub(super) fn resplit(
        &mut self,
        old: u32,
        nodes: &[u32],
        at: i64,
        cause: SplitCause,
        changes: &mut Vec<Change>,
    ) {
        for &n in nodes {
            self.parent[n as usize] = n;
            self.next[n as usize] = n;
            self.root_slot[n as usize] = NONE;
        }
        // Components of the remaining nodes.
        let mut part_of: HashMap<u32, usize> = HashMap::with_capacity(nodes.len());
        let mut parts: Vec<Vec<u32>> = Vec::new();
        for &start in nodes {
            if self.is_expired(start) || part_of.contains_key(&start) {
                continue;
            }
            let p = parts.len();
            let mut part = vec![start];
            part_of.insert(start, p);
            let mut i = 0;
            while i < part.len() {
                let x = part[i];
                i += 1;
                for y in self.graph.neighbors(node(x)) {
                    let y = y.index() as u32;
                    if let std::collections::hash_map::Entry::Vacant(v) = part_of.entry(y) {
                        v.insert(p);
                        part.push(y);
                    }
                }
            }
            parts.push(part);
        }
        // Deterministic part order (replay numbers nodes differently): by best identifier.
        let keys: Vec<(u8, u8, String)> = parts
            .iter()
            .map(|part| {
                part.iter()
                    .map(|&n| {
                        (
                            self.priority(n),
                            self.ids.kind(n),
                            self.ids.value(n).to_string(),
                        )
                    })
                    .min()
                    .unwrap_or((u8::MAX, u8::MAX, String::new()))
            })
            .collect();
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by(|&x, &y| keys[x].cmp(&keys[y]));
        let parts: Vec<Vec<u32>> = order.iter().map(|&i| parts[i].clone()).collect();
        let keys: Vec<(u8, u8, String)> = order.iter().map(|&i| keys[i].clone()).collect();
        for (p, part) in parts.iter().enumerate() {
            for &n in part {
                part_of.insert(n, p);
            }
        }

        // The merge tree under `old`, with depths.
        let mut tree: Vec<(u32, u32)> = vec![(old, 0)];
        let mut i = 0;
        while i < tree.len() {
            let (s, d) = tree[i];
            i += 1;
            if let Some(children) = self.slots.absorbed.get(&s) {
                for &c in children {
                    if self.slots.state[c as usize] == SlotState::Merged {
                        tree.push((c, d + 1));
                    }
                }
            }
        }
        // A slot is found again through its founder, as long as the founder still descends
        // from it (a founder that expired and came back founded a new profile instead).
        // Computed before anything below changes the merge chains.
        let found_in: HashMap<u32, usize> = tree
            .iter()
            .filter_map(|&(s, _)| {
                let f = self.slots.founder[s as usize];
                if f == NONE || !self.origin_reaches(self.origin[f as usize], s) {
                    return None;
                }
                Some((s, *part_of.get(&f)?))
            })
            .collect();
        let part_of_slot = |_: &Self, s: u32| found_in.get(&s).copied();
        let mut assigned: Vec<u32> = vec![NONE; parts.len()];
        let mut best: Vec<(u32, i64, u32)> = vec![(u32::MAX, i64::MAX, u32::MAX); parts.len()];
        for &(s, d) in &tree {
            if let Some(p) = part_of_slot(self, s) {
                let key = (d, self.slots.created[s as usize], s);
                if key < best[p] {
                    best[p] = key;
                    assigned[p] = s;
                }
            }
        }
        if !parts.is_empty() && !assigned.contains(&old) {
            // The founder left: `old` stays with the best part, preferring one that has no
            // profile of its own to restore.
            let p = (0..parts.len()).find(|&p| assigned[p] == NONE).unwrap_or(0);
            assigned[p] = old;
        }
        // The member matching a part's best key (its highest-priority identifier).
        let best_member = |graph: &Self, part: &[u32], key: &(u8, u8, String)| {
            part.iter()
                .copied()
                .find(|&n| {
                    (graph.priority(n), graph.ids.kind(n), graph.ids.value(n))
                        == (key.0, key.1, key.2.as_str())
                })
                .unwrap_or(part[0])
        };
        let mut revived = Vec::new();
        let mut result = Vec::with_capacity(parts.len());
        for (p, part) in parts.iter().enumerate() {
            let mut slot = assigned[p];
            if slot == NONE {
                let founder = best_member(self, part, &keys[p]);
                slot = self.new_slot(founder, at);
                for &n in part {
                    self.origin[n as usize] = slot;
                }
            } else if slot != old {
                self.revive(slot);
                revived.push(slot);
            } else if part_of_slot(self, old) != Some(p) {
                // `old` moved to a part without its founder: the part's best identifier
                // founds it from now on, so a later split finds it again.
                let founder = best_member(self, part, &keys[p]);
                self.slots.founder[old as usize] = founder;
            }

            // Rebuild the union–find for the part: a star on its first node, one ring.
            let root = part[0];
            for (i, &n) in part.iter().enumerate() {
                self.parent[n as usize] = root;
                self.next[n as usize] = part[(i + 1) % part.len()];
            }
            self.root_slot[root as usize] = slot;
            let s = slot as usize;
            self.slots.size[s] = 0;
            self.slots.scope_mask[s] = 0;
            self.slots.best[s] = u8::MAX;
            self.counts_mut(slot).fill(0);
            for &n in part {
                self.account(slot, n);
            }
            result.push((slot, part.clone()));
        }
        if !assigned.contains(&old) {
            self.retire(old);
        }
        // Merged slots now resolve through the part their founder is in.
        for &(s, _) in &tree {
            if self.slots.state[s as usize] != SlotState::Merged {
                continue;
            }
            let Some(p) = part_of_slot(self, s) else {
                continue;
            };
            let mut target = assigned[p];
            let mut up = self.slots.merged_into[s as usize];
            while up != NONE {
                if part_of_slot(self, up) == Some(p) {
                    target = up;
                    break;
                }
                if self.slots.state[up as usize] != SlotState::Merged {
                    break;
                }
                up = self.slots.merged_into[up as usize];
            }
            if self.slots.merged_into[s as usize] != target && target != s {
                self.repoint(s, target);
            }
        }
        // Keep every member's origin leading to its part's profile, so that undoing a later
        // merge puts it on the right side. Done last: revivals above change where chains
        // lead.
        for (slot, part) in &result {
            for &n in part {
                if !self.origin_reaches(self.origin[n as usize], *slot) {
                    self.origin[n as usize] = *slot;
                }
            }
        }
        let removed = nodes
            .iter()
            .copied()
            .filter(|&n| self.is_expired(n))
            .collect();
        changes.push(Change::Split(Box::new(Split {
            cause,
            old,
            parts: result,
            revived,
            removed,
        })));
    }

    fn origin_reaches(&self, mut s: u32, target: u32) -> bool {
        for _ in 0..=self.slots.state.len() {
            if s == target {
                return true;
            }
            if s == NONE || self.slots.state[s as usize] != SlotState::Merged {
                return false;
            }
            s = self.slots.merged_into[s as usize];
        }
        false
    }

    fn revive(&mut self, slot: u32) {
        let parent = self.slots.merged_into[slot as usize];
        if let Some(children) = self.slots.absorbed.get_mut(&parent) {
            children.retain(|&c| c != slot);
        }
        let m = self.slots.merge_rec[slot as usize];
        if m != NONE {
            self.merges[m as usize].undone = true;
        }
        self.slots.state[slot as usize] = SlotState::Live;
        self.slots.merged_into[slot as usize] = NONE;
        self.slots.merge_rec[slot as usize] = NONE;
        self.slots.live += 1;
    }

    fn repoint(&mut self, slot: u32, target: u32) {
        let parent = self.slots.merged_into[slot as usize];
        if let Some(children) = self.slots.absorbed.get_mut(&parent) {
            children.retain(|&c| c != slot);
        }
        self.slots.merged_into[slot as usize] = target;
        self.slots.absorbed.entry(target).or_default().push(slot);
    }
}
