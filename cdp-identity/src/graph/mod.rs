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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use cdp_core::{IdentityEvent, IdentityEventKind};
use petgraph::Undirected;
use petgraph::graph::{Graph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::identifier::{Identifier, Interner, ProfileId, hash128};
use crate::log::{Entry, EntryKind, LinkEffect, LogEvent, LogRecord, RefusalReason};
use crate::rules::{MergePolicy, Rules, RulesConfig};

pub(crate) const NONE: u32 = u32::MAX;
const BLOCKED: u8 = 1;
const EXPIRED: u8 = 2;

const REFUSED_LIMIT: u32 = 0;
const REFUSED_BLOCKED: u32 = 1;
const REFUSED_SCOPE: u32 = 2;

/// A link edge: what linked two identifiers, and how often.
///
/// Times are kept as pairs of `u32` so the struct aligns to 4 and packs into 28 bytes
/// (a petgraph edge with its adjacency links is then 44 bytes, not 48).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Edge {
    first_seen: [u32; 2],
    last_seen: [u32; 2],
    pub(crate) count: u32,
    pub(crate) confidence: f32,
    pub(crate) source: u16,
    pub(crate) rule: u8,
}

fn pack(t: i64) -> [u32; 2] {
    [t as u32, (t >> 32) as u32]
}

fn unpack(t: [u32; 2]) -> i64 {
    (i64::from(t[1] as i32) << 32) | i64::from(t[0])
}

impl Edge {
    pub(crate) fn first_seen(&self) -> i64 {
        unpack(self.first_seen)
    }

    pub(crate) fn last_seen(&self) -> i64 {
        unpack(self.last_seen)
    }

    fn seen(&mut self, at: i64) {
        self.count = self.count.saturating_add(1);
        self.last_seen = pack(self.last_seen().max(at));
        self.first_seen = pack(self.first_seen().min(at));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    Live,
    Merged,
    Retired,
}

/// Profile slots, one vector per field.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    pub(crate) uuid: Vec<Uuid>,
    pub(crate) created: Vec<i64>,
    pub(crate) founder: Vec<u32>,
    pub(crate) state: Vec<SlotState>,
    pub(crate) merged_into: Vec<u32>,
    /// The merge record that absorbed the slot, when merged.
    merge_rec: Vec<u32>,
    pub(crate) size: Vec<u32>,
    scope_mask: Vec<u32>,
    /// Best (lowest) priority number among the members.
    best: Vec<u8>,
    /// Per-type counters for the limited types, `k` per slot.
    counts: Vec<u16>,
    /// Slots merged directly into a slot, for walking merge trees on a split.
    absorbed: HashMap<u32, Vec<u32>>,
    by_uuid: hashbrown::HashMap<Uuid, u32>,
    pub(crate) live: usize,
}

/// One merge, as recorded.
#[derive(Debug, Clone)]
pub(crate) struct MergeRecord {
    pub(crate) seq: u64,
    pub(crate) survivor: u32,
    pub(crate) absorbed: u32,
    pub(crate) a: u32,
    pub(crate) b: u32,
    pub(crate) at: i64,
    pub(crate) undone: bool,
}

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

/// Where a link's evidence came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// When, UTC milliseconds.
    pub at: i64,
    /// The source (connector instance) the row came from.
    pub source: String,
    /// The rule that linked the identifiers.
    pub rule: String,
    /// 1.0 for deterministic rules.
    pub confidence: f32,
}

impl Evidence {
    /// Deterministic evidence from `source` at `at` under the default rule (`same_event`).
    pub fn new(at: i64, source: impl Into<String>) -> Self {
        Evidence {
            at,
            source: source.into(),
            rule: crate::DEFAULT_RULE.to_string(),
            confidence: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub(crate) at: i64,
    pub(crate) source: u16,
    pub(crate) rule: u8,
    pub(crate) confidence: f32,
}

/// Review status of a held merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Waiting for a decision.
    Pending,
    /// Approved and applied (or refused by the rules when applied).
    Approved,
    /// Rejected; nothing was linked.
    Rejected,
}

/// What [`IdentityGraph::propose`] did with a link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Proposal {
    /// Queued for review under this item number.
    Held {
        /// The review item.
        review: u32,
    },
    /// The two identifiers already share this profile; nothing to review.
    AlreadyLinked(ProfileId),
    /// The rules refuse the link (limit, blocked value, consent scope); logged.
    Refused(RefusalReason),
    /// An identifier normalised to nothing, was too long, or both were blocked.
    Ignored,
}

/// A merge held for review: a link made while the graph was frozen, or one proposed with
/// [`IdentityGraph::propose`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// The item number.
    pub id: u32,
    /// When it was held.
    pub at: i64,
    /// The anchor of the row that would have merged.
    pub a: Identifier,
    /// The identifier on the other profile.
    pub b: Identifier,
    /// The rule that produced the link.
    pub rule: String,
    /// The source of the evidence.
    pub source: String,
    /// Where it stands.
    pub status: ReviewStatus,
}

#[derive(Debug, Clone)]
struct Held {
    a: u32,
    b: u32,
    ctx: Ctx,
    status: ReviewStatus,
}

/// What a split was caused by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SplitCause {
    Unlink,
    Unmerge,
    Expire,
}

/// A change to profiles, kept while an operation runs so the caller can turn it into
/// runtime events and profile store updates.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Created {
        slot: u32,
        node: u32,
    },
    Joined {
        slot: u32,
        node: u32,
    },
    Merged {
        survivor: u32,
        absorbed: u32,
        a: u32,
        b: u32,
    },
    Refused {
        a: u32,
        b: u32,
        slot_a: u32,
        slot_b: u32,
        /// The refusal as encoded in the log; decoded only when reported.
        payload: u32,
    },
    Held {
        a: u32,
        b: u32,
        slot_a: u32,
        slot_b: u32,
    },
    Split(Box<Split>),
    Retired {
        slot: u32,
        node: u32,
    },
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

/// Names of rules and sources, stored once and referenced by small numbers.
#[derive(Debug, Default, Clone)]
pub(crate) struct Labels {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Labels {
    fn get_or_add(&mut self, name: &str, max: usize) -> Result<u32> {
        if let Some(&i) = self.index.get(name) {
            return Ok(i);
        }
        if self.names.len() >= max {
            return Err(Error::Capacity(format!("more than {max} distinct names")));
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        Ok(i)
    }

    pub(crate) fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("?", String::as_str)
    }
}

/// The identity graph. See the [module docs](self).
#[derive(Debug)]
pub struct IdentityGraph {
    pub(crate) rules: Rules,
    pub(crate) ids: Interner,
    flags: Vec<u8>,
    scope: Vec<u8>,
    pub(crate) last_seen: Vec<i64>,
    parent: Vec<u32>,
    next: Vec<u32>,
    root_slot: Vec<u32>,
    /// The slot a node first belonged to, inherited from the anchor it joined through:
    /// decides which side of a merge a node is on when the merge is undone.
    origin: Vec<u32>,
    pub(crate) graph: Graph<(), Edge, Undirected, u32>,
    pub(crate) slots: Slots,
    pub(crate) merges: Vec<MergeRecord>,
    pub(crate) journal: Vec<Entry>,
    scope_refusals: Vec<(u32, u32)>,
    pub(crate) rule_labels: Labels,
    pub(crate) source_labels: Labels,
    review: Vec<Held>,
    frozen: bool,
}

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

fn node(i: u32) -> NodeIndex<u32> {
    NodeIndex::new(i as usize)
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

    /// Whether new merges are held for review.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    // ---- nodes ----

    pub(crate) fn source_label(&mut self, name: &str) -> Result<u16> {
        Ok(self.source_labels.get_or_add(name, u16::MAX as usize)? as u16)
    }

    pub(crate) fn rule_label(&mut self, name: &str) -> Result<u8> {
        Ok(self.rule_labels.get_or_add(name, u8::MAX as usize)? as u8)
    }

    pub(crate) fn ctx(&mut self, evidence: &Evidence) -> Result<Ctx> {
        Ok(Ctx {
            at: evidence.at,
            source: self.source_label(&evidence.source)?,
            rule: self.rule_label(&evidence.rule)?,
            confidence: evidence.confidence,
        })
    }

    /// The node of a normalised value, creating it when new. `scope` is the scope index the
    /// row carries (0 to use the type's default).
    pub(crate) fn intern(&mut self, kind: u8, value: &str, scope: u8, at: i64) -> Result<u32> {
        let (n, new) = self.ids.intern(kind, value)?;
        if new {
            let blocked = self.rules.is_blocked_index(kind, value);
            self.flags.push(if blocked { BLOCKED } else { 0 });
            let scope = if scope == 0 {
                self.rules.types[kind as usize].scope
            } else {
                scope
            };
            self.scope.push(scope);
            self.last_seen.push(at);
            self.parent.push(n);
            self.next.push(n);
            self.root_slot.push(NONE);
            self.origin.push(NONE);
            self.graph.add_node(());
        }
        Ok(n)
    }

    pub(crate) fn node_of(&self, id: &Identifier) -> Option<u32> {
        let kind = self.rules.type_index(&id.kind)?;
        self.ids.get(kind, &id.value)
    }

    fn require_node(&self, id: &Identifier) -> Result<u32> {
        self.node_of(id)
            .ok_or_else(|| Error::NotFound(format!("identifier {id}")))
    }

    pub(crate) fn identifier(&self, n: u32) -> Identifier {
        Identifier {
            kind: self.rules.type_name(self.ids.kind(n)).to_string(),
            value: self.ids.value(n).to_string(),
        }
    }

    pub(crate) fn identifier_string(&self, n: u32) -> String {
        let (kind, value) = (self.rules.type_name(self.ids.kind(n)), self.ids.value(n));
        let mut s = String::with_capacity(kind.len() + 1 + value.len());
        s.push_str(kind);
        s.push(':');
        s.push_str(value);
        s
    }

    /// The profile id of a slot as text, without going through `fmt`.
    pub(crate) fn profile_string(&self, slot: u32) -> String {
        let mut buf = Uuid::encode_buffer();
        String::from(
            self.slots.uuid[slot as usize]
                .hyphenated()
                .encode_lower(&mut buf) as &str,
        )
    }

    fn priority(&self, n: u32) -> u8 {
        self.rules.types[self.ids.kind(n) as usize].priority
    }

    pub(crate) fn is_blocked(&self, n: u32) -> bool {
        self.flags[n as usize] & BLOCKED != 0
    }

    pub(crate) fn is_expired(&self, n: u32) -> bool {
        self.flags[n as usize] & EXPIRED != 0
    }

    pub(crate) fn find(&mut self, mut x: u32) -> u32 {
        // Path halving: every other node on the way points to its grandparent.
        loop {
            let p = self.parent[x as usize];
            if p == x {
                return x;
            }
            let gp = self.parent[p as usize];
            self.parent[x as usize] = gp;
            x = gp;
        }
    }

    pub(crate) fn find_ro(&self, mut x: u32) -> u32 {
        loop {
            let p = self.parent[x as usize];
            if p == x {
                return x;
            }
            x = p;
        }
    }

    /// The live slot of a node's component, or NONE.
    pub(crate) fn slot_of(&self, n: u32) -> u32 {
        self.root_slot[self.find_ro(n) as usize]
    }

    fn has_profile(&self, n: u32) -> bool {
        self.slot_of(n) != NONE
    }

    pub(crate) fn members(&self, n: u32) -> Vec<u32> {
        let root = self.find_ro(n);
        let mut out = vec![root];
        let mut x = self.next[root as usize];
        while x != root {
            out.push(x);
            x = self.next[x as usize];
        }
        out
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

    // ---- reading ----

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

    /// A node in the component of a live slot.
    pub(crate) fn component_node(&self, slot: u32) -> Option<u32> {
        let f = self.slots.founder[slot as usize];
        if f != NONE && self.slot_of(f) == slot {
            return Some(f);
        }
        // The founder left (expired or split off): fall back to a scan. Rare.
        (0..self.ids.len() as u32).find(|&n| self.slot_of(n) == slot)
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

    /// The merges held for review.
    pub fn review_queue(&self) -> Vec<ReviewItem> {
        self.review
            .iter()
            .enumerate()
            .map(|(i, h)| ReviewItem {
                id: i as u32,
                at: h.ctx.at,
                a: self.identifier(h.a),
                b: self.identifier(h.b),
                rule: self.rule_labels.name(u32::from(h.ctx.rule)).to_string(),
                source: self.source_labels.name(u32::from(h.ctx.source)).to_string(),
                status: h.status,
            })
            .collect()
    }

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

    // ---- writing: links ----

    /// Observes one row's identifiers (type name, raw value) and links them by the rules.
    /// Returns the profile the row belongs to, or `None` when it carried no usable
    /// identifier, with the changes as runtime events.
    ///
    /// ```
    /// use cdp_identity::{Evidence, IdentityGraph, RulesConfig};
    /// let rules: RulesConfig = serde_json::from_str(r#"{"identifiers": [
    ///     {"name": "email", "priority": 1, "limit": 1, "normaliser": "email"},
    ///     {"name": "device_id", "priority": 2}]}"#).unwrap();
    /// let mut graph = IdentityGraph::from_config(rules).unwrap();
    /// let (p1, _) = graph.observe(&[("email", "Ada@x.io"), ("device_id", "d1")],
    ///                             &Evidence::new(0, "web")).unwrap();
    /// let (p2, _) = graph.observe(&[("device_id", "d1")], &Evidence::new(1, "app")).unwrap();
    /// assert_eq!(p1, p2);
    /// ```
    pub fn observe(
        &mut self,
        identifiers: &[(&str, &str)],
        evidence: &Evidence,
    ) -> Result<(Option<ProfileId>, Vec<IdentityEvent>)> {
        self.observe_scoped(identifiers, evidence, None)
    }

    /// [`IdentityGraph::observe`] for a row that carries a consent scope.
    pub fn observe_scoped(
        &mut self,
        identifiers: &[(&str, &str)],
        evidence: &Evidence,
        scope: Option<&str>,
    ) -> Result<(Option<ProfileId>, Vec<IdentityEvent>)> {
        let mut changes = Vec::new();
        let profile = self.observe_changes(identifiers, evidence, scope, &mut changes)?;
        Ok((profile, self.core_events(&changes)))
    }

    /// [`IdentityGraph::observe_scoped`], collecting the changes for the caller.
    pub(crate) fn observe_changes(
        &mut self,
        identifiers: &[(&str, &str)],
        evidence: &Evidence,
        scope: Option<&str>,
        changes: &mut Vec<Change>,
    ) -> Result<Option<ProfileId>> {
        let ctx = self.ctx(evidence)?;
        let scope = match scope {
            Some(s) => self
                .rules
                .scope_index(s)
                .ok_or_else(|| Error::config(format!("unknown scope `{s}`")))?,
            None => 0,
        };
        let mut row: Vec<(u8, u8, u32)> = Vec::with_capacity(identifiers.len());
        let mut buf = String::new();
        for (position, (kind, raw)) in identifiers.iter().enumerate() {
            let k = self.rules.require_type(kind)?;
            let t = &self.rules.types[k as usize];
            let priority = t.priority;
            let Some(value) = t.normaliser.apply(raw, &mut buf) else {
                continue;
            };
            if value.len() > crate::identifier::MAX_IDENTIFIER_LEN {
                continue;
            }
            let value = value.to_string();
            let n = self.intern(k, &value, scope, ctx.at)?;
            row.push((priority, position as u8, n));
        }
        row.sort_unstable();
        let nodes: Vec<u32> = row.into_iter().map(|(_, _, n)| n).collect();
        let anchor = self.link_row(&nodes, ctx, changes);
        Ok((anchor != NONE).then(|| self.profile_uuid(self.slot_of(anchor))))
    }

    /// Links one row's nodes, given highest priority first. Returns the anchor (the row's
    /// highest-priority usable identifier) or NONE.
    pub(crate) fn link_row(&mut self, row: &[u32], ctx: Ctx, changes: &mut Vec<Change>) -> u32 {
        let Some(pos) = row.iter().position(|&n| n != NONE && !self.is_blocked(n)) else {
            return NONE;
        };
        let anchor = row[pos];
        let mut ra = self.find(anchor);
        let mut paired = false;
        if self.root_slot[ra as usize] == NONE {
            self.create_profile(anchor, ctx, changes);
            ra = anchor;
            paired = true;
        }
        for (i, &x) in row.iter().enumerate() {
            if x == NONE || x == anchor || row[..i].contains(&x) {
                continue;
            }
            paired = true;
            if self.is_blocked(x) {
                let sa = self.root_slot[ra as usize];
                self.refuse(anchor, x, sa, NONE, REFUSED_BLOCKED, ctx, changes);
                continue;
            }
            let rx = self.find(x);
            if rx == ra {
                self.bump_or_add_edge(anchor, x, ctx);
                continue;
            }
            let sa = self.root_slot[ra as usize];
            let sx = self.root_slot[rx as usize];
            if sx == NONE {
                match self.check_join(sa, x) {
                    None => ra = self.join(ra, anchor, x, ctx, changes),
                    Some(code) => {
                        self.create_profile(x, ctx, changes);
                        let sx = self.root_slot[x as usize];
                        self.refuse(anchor, x, sa, sx, code, ctx, changes);
                    }
                }
            } else {
                match self.check_merge(sa, sx) {
                    Some(code) => self.refuse(anchor, x, sa, sx, code, ctx, changes),
                    None if self.frozen => self.hold(anchor, x, sa, sx, ctx, changes),
                    None => ra = self.merge(ra, rx, anchor, x, ctx, changes),
                }
            }
        }
        if !paired {
            self.record(EntryKind::Link(LinkEffect::Seen), anchor, NONE, 0, ctx);
        }
        anchor
    }

    /// Appends to the log, and moves last-seen times forward for the identifiers the
    /// event observed (so replay moves them the same way).
    fn record(&mut self, kind: EntryKind, a: u32, b: u32, payload: u32, ctx: Ctx) {
        if matches!(
            kind,
            EntryKind::Link(_) | EntryKind::Refused | EntryKind::Held
        ) {
            for n in [a, b] {
                if n != NONE {
                    let t = &mut self.last_seen[n as usize];
                    *t = (*t).max(ctx.at);
                }
            }
        }
        self.journal.push(Entry {
            at: ctx.at,
            a,
            b,
            payload,
            source: ctx.source,
            rule: ctx.rule,
            kind,
        });
    }

    fn counts(&self, slot: u32) -> &[u16] {
        let k = self.rules.limited.len();
        &self.slots.counts[slot as usize * k..(slot as usize + 1) * k]
    }

    fn counts_mut(&mut self, slot: u32) -> &mut [u16] {
        let k = self.rules.limited.len();
        &mut self.slots.counts[slot as usize * k..(slot as usize + 1) * k]
    }

    /// Refusal code when a new identifier may not join `slot`.
    fn check_join(&self, slot: u32, x: u32) -> Option<u32> {
        let kind = self.ids.kind(x);
        let t = &self.rules.types[kind as usize];
        if let (Some(j), Some(limit)) = (t.limit_slot, t.limit) {
            let would = u32::from(self.counts(slot)[j]) + 1;
            if would > limit {
                return Some(limit_code(kind, would));
            }
        }
        let mask = 1u32 << self.scope[x as usize];
        if !self
            .rules
            .scopes_compatible(self.slots.scope_mask[slot as usize], mask)
        {
            return Some(REFUSED_SCOPE);
        }
        None
    }

    /// Refusal code when two profiles may not merge.
    fn check_merge(&self, a: u32, b: u32) -> Option<u32> {
        let (ca, cb) = (self.counts(a), self.counts(b));
        for (j, &kind) in self.rules.limited.iter().enumerate() {
            let would = u32::from(ca[j]) + u32::from(cb[j]);
            let limit = self.rules.types[kind as usize].limit.unwrap_or(u32::MAX);
            if would > limit {
                return Some(limit_code(kind, would));
            }
        }
        let (ma, mb) = (
            self.slots.scope_mask[a as usize],
            self.slots.scope_mask[b as usize],
        );
        if !self.rules.scopes_compatible(ma, mb) {
            return Some(REFUSED_SCOPE);
        }
        None
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

    fn new_slot(&mut self, founder: u32, at: i64) -> u32 {
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
    fn account(&mut self, slot: u32, n: u32) {
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

    fn create_profile(&mut self, n: u32, ctx: Ctx, changes: &mut Vec<Change>) {
        let slot = self.new_slot(n, ctx.at);
        self.flags[n as usize] &= !EXPIRED;
        self.parent[n as usize] = n;
        self.next[n as usize] = n;
        self.root_slot[n as usize] = slot;
        self.origin[n as usize] = slot;
        self.account(slot, n);
        self.record(EntryKind::Link(LinkEffect::Created), n, NONE, slot, ctx);
        changes.push(Change::Created { slot, node: n });
    }

    fn bump_or_add_edge(&mut self, a: u32, b: u32, ctx: Ctx) {
        // `find_edge` walks the first node's edges: start from `b`, the lower-priority
        // identifier, which links to few others (the anchor may link to hundreds).
        let effect = match self.graph.find_edge(node(b), node(a)) {
            Some(e) => {
                self.graph[e].seen(ctx.at);
                LinkEffect::Seen
            }
            None => {
                self.add_edge(a, b, ctx);
                LinkEffect::NewEdge
            }
        };
        self.record(EntryKind::Link(effect), a, b, ctx.confidence.to_bits(), ctx);
    }

    fn add_edge(&mut self, a: u32, b: u32, ctx: Ctx) {
        self.graph.add_edge(
            node(a),
            node(b),
            Edge {
                first_seen: pack(ctx.at),
                last_seen: pack(ctx.at),
                count: 1,
                confidence: ctx.confidence,
                source: ctx.source,
                rule: ctx.rule,
            },
        );
    }

    /// Splices two member rings and points the smaller tree at the larger; returns the
    /// new root. Slot bookkeeping is the caller's.
    fn union(&mut self, ra: u32, rb: u32, size_a: u32, size_b: u32) -> u32 {
        let (root, child) = if size_a >= size_b { (ra, rb) } else { (rb, ra) };
        self.parent[child as usize] = root;
        self.next.swap(ra as usize, rb as usize);
        root
    }

    /// A new identifier `x` joins the component rooted at `ra` through `anchor`.
    fn join(&mut self, ra: u32, anchor: u32, x: u32, ctx: Ctx, changes: &mut Vec<Change>) -> u32 {
        let slot = self.root_slot[ra as usize];
        self.flags[x as usize] &= !EXPIRED;
        self.parent[x as usize] = x;
        self.next[x as usize] = x;
        let size = self.slots.size[slot as usize];
        let root = self.union(ra, x, size, 1);
        self.root_slot[root as usize] = slot;
        self.origin[x as usize] = self.origin[anchor as usize];
        self.account(slot, x);
        self.add_edge(anchor, x, ctx);
        self.record(
            EntryKind::Link(LinkEffect::Joined),
            anchor,
            x,
            ctx.confidence.to_bits(),
            ctx,
        );
        changes.push(Change::Joined { slot, node: x });
        root
    }

    fn survivor(&self, a: u32, b: u32) -> (u32, u32) {
        let s = &self.slots;
        let older = (s.created[a as usize], a) <= (s.created[b as usize], b);
        let a_wins = match self.rules.config().merge_policy {
            MergePolicy::OldestProfile => older,
            MergePolicy::HighestPriorityIdentifier => {
                let (pa, pb) = (s.best[a as usize], s.best[b as usize]);
                pa < pb || (pa == pb && older)
            }
        };
        if a_wins { (a, b) } else { (b, a) }
    }

    fn merge(
        &mut self,
        ra: u32,
        rb: u32,
        a: u32,
        b: u32,
        ctx: Ctx,
        changes: &mut Vec<Change>,
    ) -> u32 {
        let (sa, sb) = (self.root_slot[ra as usize], self.root_slot[rb as usize]);
        let (survivor, absorbed) = self.survivor(sa, sb);
        let (za, zb) = (self.slots.size[sa as usize], self.slots.size[sb as usize]);
        let root = self.union(ra, rb, za, zb);
        self.root_slot[ra as usize] = NONE;
        self.root_slot[rb as usize] = NONE;
        self.root_slot[root as usize] = survivor;

        let (s, x) = (survivor as usize, absorbed as usize);
        self.slots.size[s] += self.slots.size[x];
        self.slots.scope_mask[s] |= self.slots.scope_mask[x];
        self.slots.best[s] = self.slots.best[s].min(self.slots.best[x]);
        let k = self.rules.limited.len();
        for j in 0..k {
            let add = self.slots.counts[x * k + j];
            let c = &mut self.slots.counts[s * k + j];
            *c = c.saturating_add(add);
        }
        self.slots.state[x] = SlotState::Merged;
        self.slots.merged_into[x] = survivor;
        self.slots.merge_rec[x] = self.merges.len() as u32;
        self.slots
            .absorbed
            .entry(survivor)
            .or_default()
            .push(absorbed);
        self.slots.live -= 1;

        self.add_edge(a, b, ctx);
        self.record(
            EntryKind::Link(LinkEffect::Merged),
            a,
            b,
            ctx.confidence.to_bits(),
            ctx,
        );
        let rec = self.merges.len() as u32;
        self.merges.push(MergeRecord {
            seq: self.journal.len() as u64,
            survivor,
            absorbed,
            a,
            b,
            at: ctx.at,
            undone: false,
        });
        self.record(EntryKind::Merge, a, b, rec, ctx);
        changes.push(Change::Merged {
            survivor,
            absorbed,
            a,
            b,
        });
        root
    }

    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &mut self,
        a: u32,
        b: u32,
        slot_a: u32,
        slot_b: u32,
        code: u32,
        ctx: Ctx,
        changes: &mut Vec<Change>,
    ) {
        let payload = if code == REFUSED_SCOPE {
            let left = self.slots.scope_mask[slot_a as usize];
            let right = if slot_b == NONE {
                1 << self.scope[b as usize]
            } else {
                self.slots.scope_mask[slot_b as usize]
            };
            let i = self.scope_refusals.len() as u32;
            self.scope_refusals.push((left, right));
            REFUSED_SCOPE | (i.min(0x00FF_FFFF) << 8)
        } else {
            code
        };
        self.record(EntryKind::Refused, a, b, payload, ctx);
        changes.push(Change::Refused {
            a,
            b,
            slot_a,
            slot_b,
            payload,
        });
    }

    pub(crate) fn refusal_reason(&self, payload: u32) -> RefusalReason {
        match payload & 0xFF {
            REFUSED_LIMIT => {
                let kind = ((payload >> 8) & 0xFF) as u8;
                RefusalReason::Limit {
                    kind: self.rules.type_name(kind).to_string(),
                    limit: self.rules.types[kind as usize].limit.unwrap_or(0),
                    would_hold: payload >> 16,
                }
            }
            REFUSED_SCOPE => {
                let (l, r) = self
                    .scope_refusals
                    .get((payload >> 8) as usize)
                    .copied()
                    .unwrap_or((0, 0));
                RefusalReason::Scope {
                    left: self.rules.scope_mask_names(l),
                    right: self.rules.scope_mask_names(r),
                }
            }
            _ => RefusalReason::Blocked,
        }
    }

    fn encode_reason(&mut self, reason: &RefusalReason) -> Result<u32> {
        Ok(match reason {
            RefusalReason::Limit {
                kind, would_hold, ..
            } => limit_code(self.rules.require_type(kind)?, *would_hold),
            RefusalReason::Blocked => REFUSED_BLOCKED,
            RefusalReason::Scope { left, right } => {
                let mask = |names: &[String]| -> Result<u32> {
                    names.iter().try_fold(0u32, |m, n| {
                        let i = self
                            .rules
                            .scope_index(n)
                            .ok_or_else(|| Error::config(format!("unknown scope `{n}`")))?;
                        Ok(m | (1 << i))
                    })
                };
                let pair = (mask(left)?, mask(right)?);
                let i = self.scope_refusals.len() as u32;
                self.scope_refusals.push(pair);
                REFUSED_SCOPE | (i.min(0x00FF_FFFF) << 8)
            }
        })
    }

    fn hold(&mut self, a: u32, b: u32, slot_a: u32, slot_b: u32, ctx: Ctx, c: &mut Vec<Change>) {
        let id = self.review.len() as u32;
        self.review.push(Held {
            a,
            b,
            ctx,
            status: ReviewStatus::Pending,
        });
        self.record(EntryKind::Held, a, b, id, ctx);
        c.push(Change::Held {
            a,
            b,
            slot_a,
            slot_b,
        });
    }

    // ---- writing: freeze and review ----

    /// Switches freeze mode: while frozen, links that would merge two profiles are held in
    /// the review queue instead of applied (new identifiers still join profiles).
    pub fn set_frozen(&mut self, frozen: bool, at: i64) {
        self.frozen = frozen;
        let ctx = Ctx {
            at,
            source: 0,
            rule: 0,
            confidence: 1.0,
        };
        self.record(EntryKind::Freeze, NONE, NONE, u32::from(frozen), ctx);
    }

    /// Applies a held merge, checking the rules again (it is refused if a limit would now be
    /// exceeded).
    pub fn approve(&mut self, review: u32, at: i64) -> Result<Vec<IdentityEvent>> {
        let mut changes = Vec::new();
        self.approve_changes(review, at, &mut changes)?;
        Ok(self.core_events(&changes))
    }

    pub(crate) fn approve_changes(
        &mut self,
        review: u32,
        at: i64,
        changes: &mut Vec<Change>,
    ) -> Result<()> {
        let held = self.pending_review(review)?;
        self.review[review as usize].status = ReviewStatus::Approved;
        let ctx = Ctx { at, ..held.ctx };
        self.record(EntryKind::Approved, NONE, NONE, review, ctx);
        let frozen = std::mem::replace(&mut self.frozen, false);
        self.link_row(&[held.a, held.b], ctx, changes);
        self.frozen = frozen;
        Ok(())
    }

    /// Drops a held merge.
    pub fn reject(&mut self, review: u32, at: i64) -> Result<()> {
        let held = self.pending_review(review)?;
        self.review[review as usize].status = ReviewStatus::Rejected;
        let ctx = Ctx { at, ..held.ctx };
        self.record(EntryKind::Rejected, NONE, NONE, review, ctx);
        Ok(())
    }

    /// Puts a link between two identifiers in the review queue, frozen or not: for evidence
    /// that is not strong enough to link automatically (a probabilistic match in the review
    /// band). New identifiers get profiles of their own; the link waits for
    /// [`IdentityGraph::approve`] (which checks the rules again) or
    /// [`IdentityGraph::reject`]. A link the rules would refuse now is refused and logged,
    /// not queued.
    pub fn propose(
        &mut self,
        a: (&str, &str),
        b: (&str, &str),
        evidence: &Evidence,
    ) -> Result<(Proposal, Vec<IdentityEvent>)> {
        let mut changes = Vec::new();
        let proposal = self.propose_changes(a, b, evidence, &mut changes)?;
        Ok((proposal, self.core_events(&changes)))
    }

    /// [`IdentityGraph::propose`], collecting the changes for the caller.
    pub(crate) fn propose_changes(
        &mut self,
        a: (&str, &str),
        b: (&str, &str),
        evidence: &Evidence,
        changes: &mut Vec<Change>,
    ) -> Result<Proposal> {
        let ctx = self.ctx(evidence)?;
        let mut nodes = [NONE; 2];
        let mut buf = String::new();
        for (slot, (kind, raw)) in nodes.iter_mut().zip([a, b]) {
            let k = self.rules.require_type(kind)?;
            let Some(value) = self.rules.types[k as usize].normaliser.apply(raw, &mut buf) else {
                return Ok(Proposal::Ignored);
            };
            if value.len() > crate::identifier::MAX_IDENTIFIER_LEN {
                return Ok(Proposal::Ignored);
            }
            let value = value.to_string();
            *slot = self.intern(k, &value, 0, ctx.at)?;
        }
        // A blocked value is never the anchor: the other side is, and the link is refused.
        let [mut na, mut nb] = nodes;
        if self.is_blocked(na) {
            std::mem::swap(&mut na, &mut nb);
        }
        if self.is_blocked(na) {
            return Ok(Proposal::Ignored);
        }
        for n in [na, nb] {
            if self.is_blocked(n) {
                continue;
            }
            let root = self.find(n);
            if self.root_slot[root as usize] == NONE {
                self.create_profile(n, ctx, changes);
            }
        }
        let sa = self.slot_of(na);
        let proposal = if self.is_blocked(nb) {
            self.refuse(na, nb, sa, NONE, REFUSED_BLOCKED, ctx, changes);
            Proposal::Refused(self.refusal_reason(REFUSED_BLOCKED))
        } else if self.find(na) == self.find(nb) {
            Proposal::AlreadyLinked(self.profile_uuid(sa))
        } else {
            let sb = self.slot_of(nb);
            match self.check_merge(sa, sb) {
                Some(code) => {
                    self.refuse(na, nb, sa, sb, code, ctx, changes);
                    Proposal::Refused(self.refusal_of(changes))
                }
                None => {
                    let review = self.review.len() as u32;
                    self.hold(na, nb, sa, sb, ctx, changes);
                    Proposal::Held { review }
                }
            }
        };
        Ok(proposal)
    }

    /// The reason of the refusal at the end of `changes`.
    fn refusal_of(&self, changes: &[Change]) -> RefusalReason {
        match changes.last() {
            Some(Change::Refused { payload, .. }) => self.refusal_reason(*payload),
            _ => RefusalReason::Blocked,
        }
    }

    fn pending_review(&self, review: u32) -> Result<Held> {
        let held = self
            .review
            .get(review as usize)
            .ok_or_else(|| Error::NotFound(format!("review item {review}")))?;
        if held.status != ReviewStatus::Pending {
            return Err(Error::InvalidOperation(format!(
                "review item {review} is already {:?}",
                held.status
            )));
        }
        Ok(held.clone())
    }

    // ---- writing: splits ----

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

    fn retire(&mut self, slot: u32) {
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
    fn resplit(
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

    // ---- log export and replay ----

    /// The log, from event `from` on.
    pub fn log_since(&self, from: u64) -> Vec<LogRecord> {
        (from..self.journal.len() as u64)
            .map(|seq| LogRecord {
                seq,
                event: self.export_entry(&self.journal[seq as usize]),
            })
            .collect()
    }

    /// The whole log.
    pub fn log(&self) -> Vec<LogRecord> {
        self.log_since(0)
    }

    fn export_entry(&self, e: &Entry) -> LogEvent {
        let id = |n: u32| self.identifier(n);
        let rule = || self.rule_labels.name(u32::from(e.rule)).to_string();
        let source = || self.source_labels.name(u32::from(e.source)).to_string();
        match e.kind {
            EntryKind::Link(effect) => LogEvent::Link {
                at: e.at,
                a: id(e.a),
                b: (e.b != NONE).then(|| id(e.b)),
                rule: rule(),
                source: source(),
                confidence: if effect == LinkEffect::Created || e.b == NONE {
                    1.0
                } else {
                    f32::from_bits(e.payload)
                },
                effect,
                profile: (effect == LinkEffect::Created).then(|| self.profile_uuid(e.payload)),
            },
            EntryKind::Refused => LogEvent::Refused {
                at: e.at,
                a: id(e.a),
                b: id(e.b),
                rule: rule(),
                source: source(),
                reason: self.refusal_reason(e.payload),
            },
            EntryKind::Merge => {
                let m = &self.merges[e.payload as usize];
                LogEvent::Merge {
                    at: e.at,
                    survivor: self.profile_uuid(m.survivor),
                    absorbed: self.profile_uuid(m.absorbed),
                    a: id(e.a),
                    b: id(e.b),
                }
            }
            EntryKind::Held => LogEvent::Held {
                at: e.at,
                review: e.payload,
                a: id(e.a),
                b: id(e.b),
                rule: rule(),
                source: source(),
                confidence: self
                    .review
                    .get(e.payload as usize)
                    .map_or(1.0, |h| h.ctx.confidence),
            },
            EntryKind::Approved => LogEvent::Approved {
                at: e.at,
                review: e.payload,
            },
            EntryKind::Rejected => LogEvent::Rejected {
                at: e.at,
                review: e.payload,
            },
            EntryKind::Unlink => LogEvent::Unlink {
                at: e.at,
                a: id(e.a),
                b: id(e.b),
            },
            EntryKind::Unmerge => {
                let m = &self.merges[e.payload as usize];
                LogEvent::Unmerge {
                    at: e.at,
                    merge: m.seq,
                    survivor: self.profile_uuid(m.survivor),
                    absorbed: self.profile_uuid(m.absorbed),
                }
            }
            EntryKind::Expire => LogEvent::Expire {
                at: e.at,
                identifier: id(e.a),
            },
            EntryKind::Freeze => LogEvent::Freeze {
                at: e.at,
                frozen: e.payload != 0,
            },
        }
    }

    /// Rebuilds a graph from its log. The recorded decisions are applied as they were
    /// (a refused link stays refused even if the rules changed since); every recorded
    /// outcome is checked, and a mismatch is [`Error::ReplayDiverged`].
    pub fn replay(rules: Rules, records: impl IntoIterator<Item = LogRecord>) -> Result<Self> {
        let mut g = IdentityGraph::new(rules);
        for r in records {
            g.replay_one(&r)?;
        }
        Ok(g)
    }

    /// Applies one more record to a graph rebuilt by [`IdentityGraph::replay`].
    pub fn replay_one(&mut self, r: &LogRecord) -> Result<()> {
        let len = self.journal.len() as u64;
        let diverged = |message: String| Error::ReplayDiverged {
            seq: r.seq,
            message,
        };
        if r.seq > len {
            return Err(diverged(format!("expected event {len} next")));
        }
        if r.seq == len {
            self.apply_record(&r.event)
                .map_err(|e| diverged(e.to_string()))?;
        }
        let Some(entry) = self.journal.get(r.seq as usize) else {
            return Err(diverged("the event produced nothing".into()));
        };
        let produced = self.export_entry(entry);
        if produced != r.event {
            return Err(diverged(format!(
                "recorded {:?}, replay produced {produced:?}",
                r.event
            )));
        }
        Ok(())
    }

    fn replay_node(&mut self, id: &Identifier, at: i64) -> Result<u32> {
        let kind = self.rules.require_type(&id.kind)?;
        self.intern(kind, &id.value, 0, at)
    }

    fn evidence_ctx(&mut self, at: i64, rule: &str, source: &str, confidence: f32) -> Result<Ctx> {
        Ok(Ctx {
            at,
            source: self.source_label(source)?,
            rule: self.rule_label(rule)?,
            confidence,
        })
    }

    fn apply_record(&mut self, event: &LogEvent) -> Result<()> {
        let mut changes = Vec::new();
        match event {
            LogEvent::Link {
                at,
                a,
                b,
                rule,
                source,
                confidence,
                effect,
                ..
            } => {
                let ctx = self.evidence_ctx(*at, rule, source, *confidence)?;
                let na = self.replay_node(a, *at)?;
                let ra = self.find(na);
                match b {
                    None if *effect == LinkEffect::Created => {
                        if self.root_slot[ra as usize] != NONE {
                            return Err(Error::InvalidOperation(format!("{a} already exists")));
                        }
                        self.create_profile(na, ctx, &mut changes);
                    }
                    None => self.record(EntryKind::Link(LinkEffect::Seen), na, NONE, 0, ctx),
                    Some(b) => {
                        let nb = self.replay_node(b, *at)?;
                        if self.root_slot[ra as usize] == NONE {
                            return Err(Error::InvalidOperation(format!("{a} has no profile")));
                        }
                        let rb = self.find(nb);
                        if rb == ra {
                            self.bump_or_add_edge(na, nb, ctx);
                        } else if self.root_slot[rb as usize] == NONE {
                            self.join(ra, na, nb, ctx, &mut changes);
                        } else {
                            self.merge(ra, rb, na, nb, ctx, &mut changes);
                        }
                    }
                }
            }
            LogEvent::Refused {
                at,
                a,
                b,
                rule,
                source,
                reason,
            } => {
                let ctx = self.evidence_ctx(*at, rule, source, 1.0)?;
                let (na, nb) = (self.replay_node(a, *at)?, self.replay_node(b, *at)?);
                let payload = self.encode_reason(reason)?;
                self.record(EntryKind::Refused, na, nb, payload, ctx);
            }
            LogEvent::Merge { .. } => {
                return Err(Error::InvalidOperation(
                    "a merge must directly follow the link that caused it".into(),
                ));
            }
            LogEvent::Held {
                at,
                review,
                a,
                b,
                rule,
                source,
                confidence,
            } => {
                let ctx = self.evidence_ctx(*at, rule, source, *confidence)?;
                let (na, nb) = (self.replay_node(a, *at)?, self.replay_node(b, *at)?);
                if *review as usize != self.review.len() {
                    return Err(Error::InvalidOperation(format!("review item {review}")));
                }
                let (sa, sb) = (self.slot_of(na), self.slot_of(nb));
                self.hold(na, nb, sa, sb, ctx, &mut changes);
            }
            LogEvent::Approved { at, review } => {
                let held = self.pending_review(*review)?;
                self.review[*review as usize].status = ReviewStatus::Approved;
                self.record(
                    EntryKind::Approved,
                    NONE,
                    NONE,
                    *review,
                    Ctx {
                        at: *at,
                        ..held.ctx
                    },
                );
            }
            LogEvent::Rejected { at, review } => self.reject(*review, *at)?,
            LogEvent::Unlink { at, a, b } => {
                let (na, nb) = (self.require_node(a)?, self.require_node(b)?);
                self.unlink_nodes(na, nb, *at, &mut changes)?;
            }
            LogEvent::Unmerge { at, merge, .. } => {
                self.unmerge_changes(*merge, *at, &mut changes)?;
            }
            LogEvent::Expire { at, identifier } => {
                let n = self.require_node(identifier)?;
                if self.slot_of(n) == NONE {
                    return Err(Error::InvalidOperation(format!(
                        "{identifier} has no profile"
                    )));
                }
                self.expire_node(n, *at, &mut changes);
            }
            LogEvent::Freeze { at, frozen } => self.set_frozen(*frozen, *at),
        }
        Ok(())
    }

    // ---- runtime events ----

    /// Turns changes into the runtime's event summaries.
    pub(crate) fn core_events(&self, changes: &[Change]) -> Vec<IdentityEvent> {
        let mut out = Vec::with_capacity(changes.len());
        let pid = |s: u32| self.profile_string(s);
        let opt = |s: u32| (s != NONE).then(|| pid(s));
        for c in changes {
            match c {
                Change::Created { slot, node } => out.push(IdentityEvent {
                    kind: IdentityEventKind::Link,
                    profile_id: pid(*slot),
                    other_profile_id: None,
                    identifiers: vec![self.identifier_string(*node)],
                    reason: "new profile".into(),
                }),
                Change::Joined { slot, node } => out.push(IdentityEvent {
                    kind: IdentityEventKind::Link,
                    profile_id: pid(*slot),
                    other_profile_id: None,
                    identifiers: vec![self.identifier_string(*node)],
                    reason: "joined profile".into(),
                }),
                Change::Merged {
                    survivor,
                    absorbed,
                    a,
                    b,
                } => out.push(IdentityEvent {
                    kind: IdentityEventKind::Merge,
                    profile_id: pid(*survivor),
                    other_profile_id: Some(pid(*absorbed)),
                    identifiers: vec![self.identifier_string(*a), self.identifier_string(*b)],
                    reason: format!("merge policy {:?}", self.rules.config().merge_policy),
                }),
                Change::Refused {
                    a,
                    b,
                    slot_a,
                    slot_b,
                    payload,
                } => out.push(IdentityEvent {
                    kind: IdentityEventKind::RefusedLink,
                    profile_id: opt(*slot_a).unwrap_or_default(),
                    other_profile_id: opt(*slot_b),
                    identifiers: vec![self.identifier_string(*a), self.identifier_string(*b)],
                    reason: self.refusal_reason(*payload).to_string(),
                }),
                Change::Held {
                    a,
                    b,
                    slot_a,
                    slot_b,
                } => out.push(IdentityEvent {
                    kind: IdentityEventKind::HeldForReview,
                    profile_id: opt(*slot_a).unwrap_or_default(),
                    other_profile_id: opt(*slot_b),
                    identifiers: vec![self.identifier_string(*a), self.identifier_string(*b)],
                    reason: "graph frozen: merge held for review".into(),
                }),
                Change::Split(split) => {
                    let Split {
                        cause,
                        old,
                        parts,
                        revived,
                        ..
                    } = &**split;
                    let (kind, reason) = match cause {
                        SplitCause::Unmerge => (IdentityEventKind::Unmerge, "unmerge"),
                        SplitCause::Unlink => (IdentityEventKind::Unlink, "unlink split profile"),
                        SplitCause::Expire => (IdentityEventKind::Unlink, "expiry split profile"),
                    };
                    for (slot, nodes) in parts {
                        if slot == old {
                            continue;
                        }
                        let restored = revived.contains(slot);
                        out.push(IdentityEvent {
                            kind,
                            profile_id: pid(*old),
                            other_profile_id: Some(pid(*slot)),
                            identifiers: nodes.iter().map(|&n| self.identifier_string(n)).collect(),
                            reason: if restored {
                                format!("{reason}: profile id restored")
                            } else {
                                format!("{reason}: new profile")
                            },
                        });
                    }
                }
                Change::Retired { slot, node } => out.push(IdentityEvent {
                    kind: IdentityEventKind::Unlink,
                    profile_id: pid(*slot),
                    other_profile_id: None,
                    identifiers: vec![self.identifier_string(*node)],
                    reason: "expired: profile retired".into(),
                }),
            }
        }
        out
    }
}

impl Ctx {
    fn at(at: i64) -> Ctx {
        Ctx {
            at,
            source: 0,
            rule: 0,
            confidence: 1.0,
        }
    }
}

fn limit_code(kind: u8, would: u32) -> u32 {
    REFUSED_LIMIT | (u32::from(kind) << 8) | (would.min(0xFFFF) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_stay_compact_and_times_round_trip() {
        assert_eq!(std::mem::size_of::<Edge>(), 28);
        for t in [0, 1, -1, 1_700_000_000_123, i64::MAX, i64::MIN] {
            assert_eq!(unpack(pack(t)), t);
        }
    }
}
