//! Profiles: traits merged by survivorship rules, computed traits, and the stores that serve
//! them.
//!
//! The [`Resolver`](crate::Resolver) turns every batch and every graph operation into a
//! [`ProfileDelta`] and hands it to its [`ProfileStore`]. The store is a trait so that other
//! backends can follow; [`MemoryProfileStore`] is the embedded one, with lookups by
//! identifier or profile id that do not wait on a long write.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::graph::{Change, IdentityGraph, NONE, SlotState};
use crate::identifier::{IdentifierKey, ProfileId};

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;
mod survivorship;

pub use memory::MemoryProfileStore;
pub use survivorship::{StoreConfig, Survivorship, TraitRule, TraitValue};

/// A profile as served: traits and computed traits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The profile id.
    pub id: ProfileId,
    /// Traits, by name, each with the value that survived.
    pub traits: BTreeMap<String, TraitValue>,
    /// Rows resolved to this profile (computed).
    pub event_count: u64,
    /// Earliest row time, UTC milliseconds (computed); `None` before any row.
    pub first_seen: Option<i64>,
    /// Latest row time (computed).
    pub last_seen: Option<i64>,
    /// Profile ids merged into this one.
    pub merged_from: Vec<ProfileId>,
}

impl Profile {
    /// An empty profile.
    pub fn new(id: ProfileId) -> Self {
        Profile {
            id,
            traits: BTreeMap::new(),
            event_count: 0,
            first_seen: None,
            last_seen: None,
            merged_from: Vec::new(),
        }
    }

    /// Adds one observation under `config`'s survivorship rules.
    pub fn observe(&mut self, config: &StoreConfig, o: &Observation) {
        self.event_count += 1;
        self.first_seen = Some(self.first_seen.map_or(o.at, |t| t.min(o.at)));
        self.last_seen = Some(self.last_seen.map_or(o.at, |t| t.max(o.at)));
        for (name, value) in &o.traits {
            let incoming = TraitValue {
                value: value.clone(),
                at: o.at,
                source: o.source.clone(),
            };
            let merged = config.combine(name, self.traits.get(name.as_ref()), &incoming);
            self.traits.insert(name.to_string(), merged);
        }
    }

    /// Folds `other` (merged into this profile) in under `config`'s rules.
    pub fn absorb(&mut self, config: &StoreConfig, other: &Profile) {
        self.event_count += other.event_count;
        self.first_seen = min_opt(self.first_seen, other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        for (name, value) in &other.traits {
            let merged = config.combine(name, self.traits.get(name), value);
            self.traits.insert(name.clone(), merged);
        }
        self.merged_from.push(other.id);
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// One row's contribution to its profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The profile the row resolved to.
    pub profile: ProfileId,
    /// The row's time, UTC milliseconds.
    pub at: i64,
    /// The source the row came from.
    pub source: Arc<str>,
    /// Trait values the row carried.
    pub traits: Vec<(Arc<str>, serde_json::Value)>,
}

/// A profile split, as the store sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitDelta {
    /// The profile that split.
    pub from: ProfileId,
    /// The resulting profiles, each flagged `true` when it is a restored (previously
    /// merged) profile rather than a new one.
    pub into: Vec<(ProfileId, bool)>,
}

/// Everything a store must do to follow the graph, in application order: create, assign,
/// merge, split, unassign, retire, observe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileDelta {
    /// New profiles and their creation time.
    pub created: Vec<(ProfileId, i64)>,
    /// Identifiers that now belong to a profile.
    pub assign: Vec<(IdentifierKey, ProfileId)>,
    /// Merges, as (absorbed, survivor), in order.
    pub merges: Vec<(ProfileId, ProfileId)>,
    /// Splits (unmerge, unlink, expiry).
    pub splits: Vec<SplitDelta>,
    /// Identifiers that left every profile (expired).
    pub unassign: Vec<IdentifierKey>,
    /// Profiles that no longer exist (their last identifier expired).
    pub retired: Vec<ProfileId>,
    /// Row observations, for traits and computed traits.
    pub observations: Vec<Observation>,
}

impl ProfileDelta {
    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.assign.is_empty()
            && self.merges.is_empty()
            && self.splits.is_empty()
            && self.unassign.is_empty()
            && self.retired.is_empty()
            && self.observations.is_empty()
    }
}

/// Where profiles are kept and served from.
///
/// `apply` is called by one writer at a time, in order; lookups may run concurrently with
/// it from any number of threads and must not wait for a whole `apply` to finish.
pub trait ProfileStore: std::fmt::Debug + Send + Sync {
    /// Applies the changes of one batch or one graph operation.
    fn apply(&self, delta: &ProfileDelta) -> Result<()>;

    /// A profile by id; merged ids resolve to the profile they were merged into.
    fn get(&self, id: ProfileId) -> Option<Arc<Profile>>;

    /// The live profile id for an identifier key, without fetching the profile.
    fn profile_id(&self, key: IdentifierKey) -> Option<ProfileId>;

    /// The profile an identifier belongs to.
    fn lookup(&self, key: IdentifierKey) -> Option<Arc<Profile>> {
        self.get(self.profile_id(key)?)
    }

    /// Number of live profiles.
    fn len(&self) -> usize;

    /// Whether the store holds no live profile.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn key_of(graph: &IdentityGraph, n: u32) -> IdentifierKey {
    IdentifierKey::new(graph.rules().type_name(graph.kind_of(n)), graph.value_of(n))
}

/// The delta of graph changes alone (operations outside batches).
pub(crate) fn changes_delta(graph: &IdentityGraph, changes: &[Change]) -> ProfileDelta {
    let mut d = ProfileDelta::default();
    let pid = |s: u32| graph.profile_uuid(s);
    for c in changes {
        match c {
            Change::Created { slot, node } => {
                d.created.push((pid(*slot), graph.slot_created(*slot)));
                d.assign.push((key_of(graph, *node), pid(*slot)));
            }
            Change::Joined { slot, node } => d.assign.push((key_of(graph, *node), pid(*slot))),
            Change::Merged {
                survivor, absorbed, ..
            } => d.merges.push((pid(*absorbed), pid(*survivor))),
            Change::Refused { .. } | Change::Held { .. } => {}
            Change::Split(split) => {
                let crate::graph::Split {
                    old,
                    parts,
                    revived,
                    removed,
                    ..
                } = &**split;
                let mut into = Vec::with_capacity(parts.len());
                for (slot, nodes) in parts {
                    if slot != old && !revived.contains(slot) {
                        d.created.push((pid(*slot), graph.slot_created(*slot)));
                    }
                    into.push((pid(*slot), revived.contains(slot)));
                    for &n in nodes {
                        d.assign.push((key_of(graph, n), pid(*slot)));
                    }
                }
                d.splits.push(SplitDelta {
                    from: pid(*old),
                    into,
                });
                d.unassign.extend(removed.iter().map(|&n| key_of(graph, n)));
                if parts.iter().all(|(s, _)| s != old) {
                    d.retired.push(pid(*old));
                }
            }
            Change::Retired { slot, node } => {
                d.unassign.push(key_of(graph, *node));
                d.retired.push(pid(*slot));
            }
            Change::Erased { slot, nodes } => {
                d.unassign.extend(nodes.iter().map(|&n| key_of(graph, n)));
                d.retired.push(pid(*slot));
            }
        }
    }
    d
}

/// The delta of one resolved batch: its changes plus one observation per resolved row.
pub(crate) fn batch_delta(
    graph: &IdentityGraph,
    changes: &[Change],
    anchors: &[u32],
    times: &[i64],
    source: &Arc<str>,
    traits: &[(Arc<str>, Vec<Option<serde_json::Value>>)],
) -> ProfileDelta {
    let mut d = changes_delta(graph, changes);
    d.observations.reserve(anchors.len());
    for (r, &anchor) in anchors.iter().enumerate() {
        if anchor == NONE {
            continue;
        }
        let slot = graph.slot_of(anchor);
        if slot == NONE {
            continue;
        }
        d.observations.push(Observation {
            profile: graph.profile_uuid(slot),
            at: times[r],
            source: source.clone(),
            traits: traits
                .iter()
                .filter_map(|(name, values)| Some((name.clone(), values[r].clone()?)))
                .collect(),
        });
    }
    d
}

/// The delta that brings an empty store to the graph's current state.
pub(crate) fn full_delta(graph: &IdentityGraph) -> ProfileDelta {
    let mut d = ProfileDelta::default();
    for s in 0..graph.slot_count() as u32 {
        match graph.slot_state(s) {
            SlotState::Retired => {}
            // Merged ids become plain profiles first, then merge, so they keep resolving.
            SlotState::Live | SlotState::Merged => d
                .created
                .push((graph.profile_uuid(s), graph.slot_created(s))),
        }
    }
    for s in 0..graph.slot_count() as u32 {
        if graph.slot_state(s) == SlotState::Merged {
            d.merges.push((
                graph.profile_uuid(s),
                graph.profile_uuid(graph.merged_into(s)),
            ));
        }
    }
    for n in 0..graph.interned_count() as u32 {
        let slot = graph.slot_of(n);
        if slot != NONE {
            d.assign.push((key_of(graph, n), graph.profile_uuid(slot)));
        }
    }
    d
}
