//! Changes and runtime events: what an operation did to profiles, collected while it runs,
//! and its translation into the runtime's [`IdentityEvent`] summaries (the profile store
//! follows the same changes, see [`crate::profile`]).

use cdp_core::{IdentityEvent, IdentityEventKind};

use super::{IdentityGraph, NONE, Split, SplitCause};

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
    /// A person was erased: every member of `slot` left it and it was retired.
    Erased {
        slot: u32,
        nodes: Vec<u32>,
    },
}

impl IdentityGraph {
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
                // The identifiers are not repeated: the event outlives the erasure.
                Change::Erased { slot, .. } => out.push(IdentityEvent {
                    kind: IdentityEventKind::Unlink,
                    profile_id: pid(*slot),
                    other_profile_id: None,
                    identifiers: Vec::new(),
                    reason: "erased: profile retired".into(),
                }),
            }
        }
        out
    }
}
