//! Digests: a canonical dump of a graph (partition, links, aliases, last-seen times) that
//! does not depend on internal numbering, to compare two graphs, for example one rebuilt
//! from the log with the original.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::visit::EdgeRef;
use serde::Serialize;

use super::{IdentityGraph, SlotState};
use crate::identifier::{Identifier, ProfileId};

/// A canonical dump of a graph, to compare two graphs (for example one rebuilt from the log)
/// independently of internal numbering.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphDigest {
    /// Live profiles and their identifiers.
    pub partition: BTreeMap<ProfileId, BTreeSet<Identifier>>,
    /// Every link: ends (ordered), rule, source, first and last seen, count, confidence.
    pub links: BTreeSet<DigestLink>,
    /// Every merged-away id and the live id it resolves to.
    pub aliases: BTreeMap<ProfileId, Option<ProfileId>>,
    /// Last seen time of every identifier in a profile.
    pub last_seen: BTreeMap<Identifier, i64>,
}

/// One link in a [`GraphDigest`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DigestLink {
    /// The lesser end.
    pub a: Identifier,
    /// The greater end.
    pub b: Identifier,
    /// Rule name.
    pub rule: String,
    /// Source name.
    pub source: String,
    /// First seen, ms.
    pub first_seen: i64,
    /// Last seen, ms.
    pub last_seen: i64,
    /// Times seen.
    pub count: u32,
    /// Confidence bits (exact comparison).
    pub confidence_bits: u32,
}

impl IdentityGraph {
    /// A canonical dump for comparing graphs.
    pub fn digest(&self) -> GraphDigest {
        let mut links = BTreeSet::new();
        for e in self.graph.edge_references() {
            let (x, y) = (
                self.identifier(e.source().index() as u32),
                self.identifier(e.target().index() as u32),
            );
            let (a, b) = if x <= y { (x, y) } else { (y, x) };
            let w = e.weight();
            links.insert(DigestLink {
                a,
                b,
                rule: self.rule_labels.name(u32::from(w.rule)).to_string(),
                source: self.source_labels.name(u32::from(w.source)).to_string(),
                first_seen: w.first_seen(),
                last_seen: w.last_seen(),
                count: w.count,
                confidence_bits: w.confidence.to_bits(),
            });
        }
        let aliases = (0..self.slots.state.len() as u32)
            .filter(|&s| self.slots.state[s as usize] != SlotState::Live)
            .map(|s| {
                (
                    self.profile_uuid(s),
                    self.live_slot(s).map(|l| self.profile_uuid(l)),
                )
            })
            .collect();
        let last_seen = (0..self.ids.len() as u32)
            .filter(|&n| self.has_profile(n))
            .map(|n| (self.identifier(n), self.last_seen[n as usize]))
            .collect();
        GraphDigest {
            partition: self.partition(),
            links,
            aliases,
            last_seen,
        }
    }
}
