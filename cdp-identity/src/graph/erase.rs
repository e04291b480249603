//! Erasure: a person asked to be forgotten. Every identifier of their profile leaves the
//! graph's partition, every link between them is removed, held merges that involve them are
//! rejected, and the profile is retired — in one step, so no intermediate profile holding
//! part of the person is ever created (as removing them one by one would).

use cdp_core::IdentityEvent;
use petgraph::visit::EdgeRef;

use super::review::ReviewStatus;
use super::store::{EXPIRED, node};
use super::{Change, Ctx, IdentityGraph, NONE};
use crate::error::Result;
use crate::identifier::{Identifier, ProfileId};
use crate::log::EntryKind;

/// What erasing a person removed from the graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    /// The profile retired; `None` when the identifier was unknown or had no profile.
    pub profile: Option<ProfileId>,
    /// Every identifier the profile held (normalised), the erased one included: the person's
    /// other identifiers, to suppress and to tombstone downstream as well.
    pub identifiers: Vec<Identifier>,
}

impl IdentityGraph {
    /// Erases the person `identifier` (a raw value, normalised by the rules) belongs to:
    /// see the [module docs](self). Erasing an unknown identifier removes nothing and is
    /// not an error, so an erasure can be retried.
    pub fn erase(
        &mut self,
        identifier: &Identifier,
        at: i64,
    ) -> Result<(Erased, Vec<IdentityEvent>)> {
        let mut changes = Vec::new();
        let erased = self.erase_changes(identifier, at, &mut changes);
        Ok((erased, self.core_events(&changes)))
    }

    pub(crate) fn erase_changes(
        &mut self,
        identifier: &Identifier,
        at: i64,
        changes: &mut Vec<Change>,
    ) -> Erased {
        let Some(value) = self.rules.normalise(&identifier.kind, &identifier.value) else {
            return Erased::default();
        };
        let normalised = Identifier::new(identifier.kind.clone(), value);
        match self.node_of(&normalised) {
            Some(n) if self.slot_of(n) != NONE => self.erase_node(n, at, changes),
            _ => Erased::default(),
        }
    }

    /// Erases the profile of node `n`, which has one.
    pub(super) fn erase_node(&mut self, n: u32, at: i64, changes: &mut Vec<Change>) -> Erased {
        let slot = self.slot_of(n);
        let members = self.members(n);
        let profile = self.profile_uuid(slot);
        let identifiers = members.iter().map(|&m| self.identifier(m)).collect();
        for &m in &members {
            while let Some(e) = self.graph.edges(node(m)).next().map(|e| e.id()) {
                self.graph.remove_edge(e);
            }
            self.flags[m as usize] |= EXPIRED;
            self.parent[m as usize] = m;
            self.next[m as usize] = m;
            self.root_slot[m as usize] = NONE;
        }
        // A held merge approved later would bring part of the person back.
        for held in &mut self.review {
            if held.status == ReviewStatus::Pending
                && (members.contains(&held.a) || members.contains(&held.b))
            {
                held.status = ReviewStatus::Rejected;
            }
        }
        self.record(EntryKind::Erase, n, NONE, 0, Ctx::at(at));
        self.retire(slot);
        changes.push(Change::Erased {
            slot,
            nodes: members,
        });
        Erased {
            profile: Some(profile),
            identifiers,
        }
    }
}
