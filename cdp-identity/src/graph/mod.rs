//! The identity graph: identifiers as nodes, links as edges, profiles as connected
//! components.
//!
//! Nodes live in a [`petgraph::Graph`] whose node index is the identifier's interned id
//! (a `u32`); node data is kept in flat per-node vectors rather than in node weights, so an
//! identifier costs a few dozen bytes and no allocation of its own. Components are tracked
//! with a union–find (with a circular member list per component, so a profile's members can
//! be walked without scanning the graph); splits (unlink, unmerge, expiry) rebuild the
//! union–find for the one affected component from the petgraph edges.
//!
//! Profiles are numbered *slots*: a live slot per component, plus merged slots that point at
//! the slot they were merged into (so their ids keep resolving) and retired ones. Every
//! change appends to the graph's log ([`crate::log`]).
//!
//! The [`IdentityGraph`] is defined here; its methods are spread over one submodule per
//! topic:
//!
//! - `store`: nodes, links and labels, and the union–find lookups over them;
//! - `slots`: profile slots, their ids and per-profile counters;
//! - `query`: the read-only public API (profile of an identifier, members, partition);
//! - `links`: observing rows, linking identifiers, joins and merges;
//! - `refusal`: the rule checks that refuse a join or a merge, and how refusals are encoded;
//! - `review`: freeze mode and the review queue of held merges;
//! - `split`: unlink, unmerge and rebuilding the parts of a split profile;
//! - `expire`: expiry of identifiers past their type's TTL;
//! - `erase`: forgetting a person (every identifier of their profile) on request;
//! - `journal`: appending to the log, exporting it and replaying it;
//! - `digest`: a canonical dump to compare graphs;
//! - `events`: the changes an operation makes, turned into runtime events.

use petgraph::Undirected;
use petgraph::graph::Graph;

use crate::error::Result;
use crate::identifier::Interner;
use crate::log::Entry;
use crate::rules::{Rules, RulesConfig};

mod digest;
mod erase;
mod events;
mod expire;
mod journal;
mod links;
mod query;
mod refusal;
mod review;
mod slots;
mod split;
mod store;

pub use digest::{DigestLink, GraphDigest};
pub use erase::Erased;
pub(crate) use events::Change;
pub use links::Evidence;
pub(crate) use links::{Ctx, MergeRecord};
pub use query::MergeInfo;
use review::Held;
pub use review::{Proposal, ReviewItem, ReviewStatus};
pub(crate) use slots::SlotState;
use slots::Slots;
pub(crate) use split::{Split, SplitCause};
pub(crate) use store::Edge;
use store::Labels;

/// "No node" / "no slot" in the flat per-node and per-slot vectors.
pub(crate) const NONE: u32 = u32::MAX;

/// The identity graph. See the [module docs](self).
///
/// The fields are private to this module and its submodules: the rest of the crate reads
/// the graph through accessor methods, so the invariants between the vectors below (one
/// entry per node, one per slot) are kept in one place.
#[derive(Debug)]
pub struct IdentityGraph {
    rules: Rules,
    ids: Interner,
    // Per node, indexed by interned id.
    flags: Vec<u8>,
    scope: Vec<u8>,
    last_seen: Vec<i64>,
    parent: Vec<u32>,
    next: Vec<u32>,
    root_slot: Vec<u32>,
    /// The slot a node first belonged to, inherited from the anchor it joined through:
    /// decides which side of a merge a node is on when the merge is undone.
    origin: Vec<u32>,
    graph: Graph<(), Edge, Undirected, u32>,
    slots: Slots,
    merges: Vec<MergeRecord>,
    journal: Vec<Entry>,
    scope_refusals: Vec<(u32, u32)>,
    rule_labels: Labels,
    source_labels: Labels,
    review: Vec<Held>,
    frozen: bool,
}

impl IdentityGraph {
    /// An empty graph under `rules`.
    pub fn new(rules: Rules) -> Self {
        IdentityGraph {
            rules,
            ids: Interner::default(),
            flags: Vec::new(),
            scope: Vec::new(),
            last_seen: Vec::new(),
            parent: Vec::new(),
            next: Vec::new(),
            root_slot: Vec::new(),
            origin: Vec::new(),
            graph: Graph::default(),
            slots: Slots::default(),
            merges: Vec::new(),
            journal: Vec::new(),
            scope_refusals: Vec::new(),
            rule_labels: Labels::default(),
            source_labels: Labels::default(),
            review: Vec::new(),
            frozen: false,
        }
    }

    /// An empty graph under rules compiled from `config`.
    pub fn from_config(config: RulesConfig) -> Result<Self> {
        Ok(IdentityGraph::new(Rules::new(config)?))
    }

    /// Reserves room for `identifiers` more identifiers of about `bytes` bytes of text in
    /// total and `links` more links, so a bulk load does not regrow its tables.
    pub fn reserve(&mut self, identifiers: usize, bytes: usize, links: usize) {
        self.ids.reserve(identifiers, bytes);
        for v in [
            &mut self.parent,
            &mut self.next,
            &mut self.root_slot,
            &mut self.origin,
        ] {
            v.reserve(identifiers);
        }
        self.flags.reserve(identifiers);
        self.scope.reserve(identifiers);
        self.last_seen.reserve(identifiers);
        self.graph.reserve_nodes(identifiers);
        self.graph.reserve_edges(links);
    }
}
