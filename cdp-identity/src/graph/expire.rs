//! Expiry: identifiers of a type with a TTL leave their profile once they were last seen
//! more than the TTL ago; a profile left with no identifier is retired, one that falls apart
//! is split.

use cdp_core::IdentityEvent;
use petgraph::visit::EdgeRef;

use super::store::{EXPIRED, node};
use super::{Change, Ctx, IdentityGraph, NONE, SplitCause};
use crate::error::Result;
use crate::log::EntryKind;

impl IdentityGraph {
    /// Expires identifiers whose type has a TTL and that were last seen more than the TTL
    /// before `now`. Returns how many expired.
    pub fn expire(&mut self, now: i64) -> Result<(usize, Vec<IdentityEvent>)> {
        let mut changes = Vec::new();
        let n = self.expire_changes(now, &mut changes);
        Ok((n, self.core_events(&changes)))
    }

    pub(crate) fn expire_changes(&mut self, now: i64, changes: &mut Vec<Change>) -> usize {
        let due: Vec<u32> = (0..self.ids.len() as u32)
            .filter(|&n| {
                let ttl = self.rules.types[self.ids.kind(n) as usize].ttl_ms;
                ttl.is_some_and(|ttl| now.saturating_sub(self.last_seen[n as usize]) > ttl)
                    && !self.is_expired(n)
                    && self.has_profile(n)
            })
            .collect();
        for &n in &due {
            self.expire_node(n, now, changes);
        }
        due.len()
    }

    pub(crate) fn expire_node(&mut self, n: u32, at: i64, changes: &mut Vec<Change>) {
        let slot = self.slot_of(n);
        if slot == NONE {
            return;
        }
        let members = self.members(n);
        while let Some(e) = self.graph.edges(node(n)).next().map(|e| e.id()) {
            self.graph.remove_edge(e);
        }
        self.flags[n as usize] |= EXPIRED;
        self.record(EntryKind::Expire, n, NONE, 0, Ctx::at(at));
        if members.len() == 1 {
            self.root_slot[n as usize] = NONE;
            self.retire(slot);
            changes.push(Change::Retired { slot, node: n });
        } else {
            self.resplit(slot, &members, at, SplitCause::Expire, changes);
        }
    }
}
