//! Node and link storage: interning identifiers as nodes, the link edges between them, the
//! rule and source labels, and the union–find lookups (a node's component, its slot, its
//! members). Also the read accessors the rest of the crate uses instead of the fields.

use std::collections::HashMap;

use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::{Ctx, Evidence, IdentityGraph, NONE};
use crate::error::{Error, Result};
use crate::identifier::Identifier;

/// Node flag: the value is blocked by the rules and never links.
pub(super) const BLOCKED: u8 = 1;
/// Node flag: the identifier expired and left its profile (it may come back).
pub(super) const EXPIRED: u8 = 2;

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
    /// A link first seen with `ctx`.
    pub(super) fn new(ctx: Ctx) -> Self {
        Edge {
            first_seen: pack(ctx.at),
            last_seen: pack(ctx.at),
            count: 1,
            confidence: ctx.confidence,
            source: ctx.source,
            rule: ctx.rule,
        }
    }

    pub(crate) fn first_seen(&self) -> i64 {
        unpack(self.first_seen)
    }

    pub(crate) fn last_seen(&self) -> i64 {
        unpack(self.last_seen)
    }

    pub(super) fn seen(&mut self, at: i64) {
        self.count = self.count.saturating_add(1);
        self.last_seen = pack(self.last_seen().max(at));
        self.first_seen = pack(self.first_seen().min(at));
    }
}

/// Names of rules and sources, stored once and referenced by small numbers.
#[derive(Debug, Default, Clone)]
pub(super) struct Labels {
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

    pub(super) fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("?", String::as_str)
    }
}

pub(super) fn node(i: u32) -> NodeIndex<u32> {
    NodeIndex::new(i as usize)
}

impl IdentityGraph {
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

    pub(super) fn require_node(&self, id: &Identifier) -> Result<u32> {
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

    pub(super) fn priority(&self, n: u32) -> u8 {
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

    pub(super) fn has_profile(&self, n: u32) -> bool {
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

    // ---- read access for the rest of the crate ----

    /// The identifier type of node `n`, as an index into the rules' types.
    pub(crate) fn kind_of(&self, n: u32) -> u8 {
        self.ids.kind(n)
    }

    /// The normalised value of node `n`.
    pub(crate) fn value_of(&self, n: u32) -> &str {
        self.ids.value(n)
    }

    /// When node `n` was last observed, UTC milliseconds.
    pub(crate) fn last_seen_of(&self, n: u32) -> i64 {
        self.last_seen[n as usize]
    }

    /// Every link: its two ends and its edge.
    pub(crate) fn links(&self) -> impl Iterator<Item = (u32, u32, &Edge)> {
        self.graph.edge_references().map(|e| {
            (
                e.source().index() as u32,
                e.target().index() as u32,
                e.weight(),
            )
        })
    }

    /// The links of node `n`: the node at the other end of each, and its edge.
    pub(crate) fn links_of(&self, n: u32) -> impl Iterator<Item = (u32, &Edge)> {
        self.graph.edges(node(n)).map(move |e| {
            let (x, y) = (e.source().index() as u32, e.target().index() as u32);
            (if x == n { y } else { x }, e.weight())
        })
    }

    /// The name of a rule label (as stored on edges and log entries).
    pub(crate) fn rule_name(&self, rule: u8) -> &str {
        self.rule_labels.name(u32::from(rule))
    }

    /// The name of a source label (as stored on edges and log entries).
    pub(crate) fn source_name(&self, source: u16) -> &str {
        self.source_labels.name(u32::from(source))
    }
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
