//! Linking: observing a row's identifiers, creating profiles, joining new identifiers to a
//! profile and merging two profiles, with the evidence each link carries and the record of
//! every merge (which unmerge undoes).

use cdp_core::IdentityEvent;

use super::refusal::REFUSED_BLOCKED;
use super::store::{EXPIRED, node};
use super::{Change, Edge, IdentityGraph, NONE, SlotState};
use crate::error::{Error, Result};
use crate::identifier::ProfileId;
use crate::log::{EntryKind, LinkEffect};
use crate::rules::MergePolicy;

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

/// [`Evidence`] with its source and rule interned as labels: what every link operation
/// carries, and what the log records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub(crate) at: i64,
    pub(crate) source: u16,
    pub(crate) rule: u8,
    pub(crate) confidence: f32,
}

impl IdentityGraph {
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

    pub(super) fn create_profile(&mut self, n: u32, ctx: Ctx, changes: &mut Vec<Change>) {
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

    pub(super) fn bump_or_add_edge(&mut self, a: u32, b: u32, ctx: Ctx) {
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
        self.graph.add_edge(node(a), node(b), Edge::new(ctx));
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
    pub(super) fn join(
        &mut self,
        ra: u32,
        anchor: u32,
        x: u32,
        ctx: Ctx,
        changes: &mut Vec<Change>,
    ) -> u32 {
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

    pub(super) fn merge(
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

    /// Every merge as recorded, oldest first (undone ones included).
    pub(crate) fn merge_records(&self) -> &[MergeRecord] {
        &self.merges
    }
}

impl Ctx {
    /// The context of an operation that carries no evidence (unlink, unmerge, expiry):
    /// only its time.
    pub(super) fn at(at: i64) -> Ctx {
        Ctx {
            at,
            source: 0,
            rule: 0,
            confidence: 1.0,
        }
    }
}
