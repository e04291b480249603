//! Review: freeze mode, which holds merges instead of applying them, and the review queue of
//! held or proposed merges with their approval and rejection.

use cdp_core::IdentityEvent;
use serde::{Deserialize, Serialize};

use super::refusal::REFUSED_BLOCKED;
use super::{Change, Ctx, Evidence, IdentityGraph, NONE};
use crate::error::{Error, Result};
use crate::identifier::{Identifier, ProfileId};
use crate::log::{EntryKind, RefusalReason};

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

/// A review item as stored: the two nodes, the evidence and the decision.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) a: u32,
    pub(super) b: u32,
    pub(super) ctx: Ctx,
    pub(super) status: ReviewStatus,
}

impl IdentityGraph {
    /// Whether new merges are held for review.
    pub fn is_frozen(&self) -> bool {
        self.frozen
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

    pub(super) fn hold(
        &mut self,
        a: u32,
        b: u32,
        slot_a: u32,
        slot_b: u32,
        ctx: Ctx,
        c: &mut Vec<Change>,
    ) {
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

    pub(super) fn pending_review(&self, review: u32) -> Result<Held> {
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
}
