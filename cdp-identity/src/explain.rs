//! Explanations: why two identifiers share a profile (or do not), and how a profile was
//! built. Both render as readable text (`Display`) and serialise with serde.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::graph::{IdentityGraph, MergeInfo, NONE};
use crate::identifier::{Identifier, ProfileId};
use crate::log::{EntryKind, RefusalReason};

/// Most refusals an explanation lists; the count says how many there were.
const MAX_REFUSALS: usize = 20;

/// One link on a path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hop {
    /// From.
    pub from: Identifier,
    /// To.
    pub to: Identifier,
    /// The rule that made the link.
    pub rule: String,
    /// The source of its first evidence.
    pub source: String,
    /// First seen, UTC milliseconds.
    pub first_seen: i64,
    /// Last seen.
    pub last_seen: i64,
    /// Times seen.
    pub count: u32,
    /// Confidence.
    pub confidence: f32,
}

/// A refused link, as explained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefusalNote {
    /// Log sequence number.
    pub seq: u64,
    /// When.
    pub at: i64,
    /// The row's anchor.
    pub a: Identifier,
    /// The identifier not linked.
    pub b: Identifier,
    /// The source of the evidence.
    pub source: String,
    /// Why.
    pub reason: RefusalReason,
}

/// Whether two identifiers share a profile, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The first identifier.
    pub a: Identifier,
    /// The second identifier.
    pub b: Identifier,
    /// The first one's profile, if it has one.
    pub profile_a: Option<ProfileId>,
    /// The second one's profile.
    pub profile_b: Option<ProfileId>,
    /// Whether they share a profile.
    pub same_profile: bool,
    /// The shortest chain of links from `a` to `b`, when they share a profile.
    pub path: Vec<Hop>,
    /// Links refused between their two profiles (when they do not share one), newest first.
    pub refusals: Vec<RefusalNote>,
    /// How many refusals there were in all.
    pub refusal_count: usize,
}

/// What a profile is made of and how it came to be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileExplanation {
    /// The profile id asked about.
    pub requested: ProfileId,
    /// The live profile it resolves to.
    pub profile: ProfileId,
    /// Ids merged into it, directly or not.
    pub merged_ids: Vec<ProfileId>,
    /// Its identifiers with their last-seen time.
    pub identifiers: Vec<(Identifier, i64)>,
    /// Its links.
    pub links: Vec<Hop>,
    /// The merges in effect that built it, oldest first.
    pub merges: Vec<MergeInfo>,
    /// Links its identifiers were refused, newest first.
    pub refusals: Vec<RefusalNote>,
    /// How many refusals there were in all.
    pub refusal_count: usize,
}

impl IdentityGraph {
    /// Explains whether `a` and `b` (normalised values) share a profile: the shortest path of
    /// links between them with rule, source, time and confidence, or the refusals that kept
    /// their profiles apart.
    pub fn explain(&self, a: &Identifier, b: &Identifier) -> Result<Explanation> {
        let na = self
            .node_of(a)
            .ok_or_else(|| Error::NotFound(format!("identifier {a}")))?;
        let nb = self
            .node_of(b)
            .ok_or_else(|| Error::NotFound(format!("identifier {b}")))?;
        let (sa, sb) = (self.slot_of(na), self.slot_of(nb));
        let pid = |s: u32| (s != NONE).then(|| self.profile_uuid(s));
        let same = sa != NONE && sa == sb;
        let path = if same { self.path(na, nb) } else { Vec::new() };
        let (refusals, refusal_count) = if same {
            (Vec::new(), 0)
        } else {
            self.refusals(|x, y| {
                let (px, py) = (self.slot_of(x), self.slot_of(y));
                (px == sa && py == sb) || (px == sb && py == sa) || {
                    // Either identifier alone, when one has no profile.
                    (x == na || y == na) && (x == nb || y == nb)
                }
            })
        };
        Ok(Explanation {
            a: a.clone(),
            b: b.clone(),
            profile_a: pid(sa),
            profile_b: pid(sb),
            same_profile: same,
            path,
            refusals,
            refusal_count,
        })
    }

    /// Explains a profile (a merged id is resolved first): its identifiers, links, the merges
    /// that built it and the links it was refused.
    pub fn explain_profile(&self, id: ProfileId) -> Result<ProfileExplanation> {
        let slot = self
            .slot_by_uuid(id)
            .and_then(|s| self.live_slot(s))
            .ok_or_else(|| Error::NotFound(format!("profile {id}")))?;
        let start = self
            .component_node(slot)
            .ok_or_else(|| Error::NotFound(format!("profile {id} has no identifiers")))?;
        let members = self.members(start);
        let mut identifiers: Vec<(Identifier, i64)> = members
            .iter()
            .map(|&n| (self.identifier(n), self.last_seen_of(n)))
            .collect();
        identifiers.sort();
        let mut links = Vec::new();
        for &n in &members {
            for (other, w) in self.links_of(n) {
                // Each link is met from both ends; keep it once.
                if n < other {
                    links.push(self.hop(n, other, w));
                }
            }
        }
        links.sort_by(|p, q| (p.first_seen, &p.from, &p.to).cmp(&(q.first_seen, &q.from, &q.to)));
        let merges: Vec<MergeInfo> = self
            .merge_records()
            .iter()
            .filter(|m| !m.undone && self.live_slot(m.absorbed) == Some(slot))
            .map(|m| self.merge_info(m))
            .collect();
        let merged_ids = (0..self.slot_count() as u32)
            .filter(|&s| s != slot && self.live_slot(s) == Some(slot))
            .map(|s| self.profile_uuid(s))
            .collect();
        let (refusals, refusal_count) =
            self.refusals(|x, y| self.slot_of(x) == slot || self.slot_of(y) == slot);
        Ok(ProfileExplanation {
            requested: id,
            profile: self.profile_uuid(slot),
            merged_ids,
            identifiers,
            links,
            merges,
            refusals,
            refusal_count,
        })
    }

    fn hop(&self, from: u32, to: u32, w: &crate::graph::Edge) -> Hop {
        Hop {
            from: self.identifier(from),
            to: self.identifier(to),
            rule: self.rule_name(w.rule).to_string(),
            source: self.source_name(w.source).to_string(),
            first_seen: w.first_seen(),
            last_seen: w.last_seen(),
            count: w.count,
            confidence: w.confidence,
        }
    }

    /// Shortest chain of links from `a` to `b` (breadth first).
    fn path(&self, a: u32, b: u32) -> Vec<Hop> {
        let mut prev: HashMap<u32, (u32, crate::graph::Edge)> = HashMap::new();
        let mut queue = VecDeque::from([a]);
        prev.insert(a, (NONE, crate::graph::Edge::default()));
        while let Some(x) = queue.pop_front() {
            if x == b {
                break;
            }
            for (y, w) in self.links_of(x) {
                if let std::collections::hash_map::Entry::Vacant(v) = prev.entry(y) {
                    v.insert((x, *w));
                    queue.push_back(y);
                }
            }
        }
        let mut hops = Vec::new();
        let mut at = b;
        while let Some(&(p, w)) = prev.get(&at) {
            if p == NONE {
                break;
            }
            hops.push(self.hop(p, at, &w));
            at = p;
        }
        hops.reverse();
        hops
    }

    fn refusals(&self, keep: impl Fn(u32, u32) -> bool) -> (Vec<RefusalNote>, usize) {
        let mut out = Vec::new();
        let mut count = 0;
        for (seq, e) in self.journal().iter().enumerate().rev() {
            if e.kind != EntryKind::Refused || !keep(e.a, e.b) {
                continue;
            }
            count += 1;
            if out.len() < MAX_REFUSALS {
                out.push(RefusalNote {
                    seq: seq as u64,
                    at: e.at,
                    a: self.identifier(e.a),
                    b: self.identifier(e.b),
                    source: self.source_name(e.source).to_string(),
                    reason: self.refusal_reason(e.payload),
                });
            }
        }
        (out, count)
    }
}

pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms}ms"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

fn id_or_none(p: &Option<ProfileId>) -> String {
    p.map_or_else(|| "no profile".to_string(), |p| p.to_string())
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} — {}  [rule {}, source {}, confidence {:.2}, seen {}× from {} to {}]",
            self.from,
            self.to,
            self.rule,
            self.source,
            self.confidence,
            self.count,
            time(self.first_seen),
            time(self.last_seen)
        )
    }
}

impl fmt::Display for RefusalNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {}: {} — {} refused ({}), source {}",
            self.seq,
            time(self.at),
            self.a,
            self.b,
            self.reason,
            self.source
        )
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.same_profile {
            writeln!(
                f,
                "{} and {} share profile {} through {} link(s):",
                self.a,
                self.b,
                id_or_none(&self.profile_a),
                self.path.len()
            )?;
            for (i, hop) in self.path.iter().enumerate() {
                writeln!(f, "  {}. {hop}", i + 1)?;
            }
            return Ok(());
        }
        writeln!(
            f,
            "{} ({}) and {} ({}) are in different profiles.",
            self.a,
            id_or_none(&self.profile_a),
            self.b,
            id_or_none(&self.profile_b)
        )?;
        if self.refusal_count == 0 {
            writeln!(f, "  No link between them was ever seen.")?;
        } else {
            writeln!(
                f,
                "  {} link(s) between them were refused:",
                self.refusal_count
            )?;
            for r in &self.refusals {
                writeln!(f, "  - {r}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for ProfileExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Profile {}", self.profile)?;
        if self.requested != self.profile {
            write!(f, " (asked for {}, merged into it)", self.requested)?;
        }
        writeln!(f)?;
        if !self.merged_ids.is_empty() {
            let ids: Vec<String> = self.merged_ids.iter().map(|p| p.to_string()).collect();
            writeln!(f, "  merged ids: {}", ids.join(", "))?;
        }
        writeln!(f, "  {} identifier(s):", self.identifiers.len())?;
        for (id, seen) in &self.identifiers {
            writeln!(f, "    {id}  (last seen {})", time(*seen))?;
        }
        writeln!(f, "  {} link(s):", self.links.len())?;
        for l in &self.links {
            writeln!(f, "    {l}")?;
        }
        writeln!(f, "  {} merge(s):", self.merges.len())?;
        for m in &self.merges {
            writeln!(
                f,
                "    #{} {}: {} merged into {} by {} — {}",
                m.seq,
                time(m.at),
                m.absorbed,
                m.survivor,
                m.link.0,
                m.link.1
            )?;
        }
        if self.refusal_count > 0 {
            writeln!(f, "  {} refused link(s):", self.refusal_count)?;
            for r in &self.refusals {
                writeln!(f, "    {r}")?;
            }
        }
        Ok(())
    }
}
