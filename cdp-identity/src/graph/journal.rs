//! The graph's journal: every operation appends entries as it runs; they are exported as
//! [`LogRecord`]s for an [`IdentityLog`](crate::log::IdentityLog), and a graph is rebuilt by
//! replaying them, checking each recorded outcome.

use super::{Ctx, IdentityGraph, NONE, ReviewStatus};
use crate::error::{Error, Result};
use crate::identifier::Identifier;
use crate::log::{Entry, EntryKind, LinkEffect, LogEvent, LogRecord};
use crate::rules::Rules;

impl IdentityGraph {
    /// Appends to the log, and moves last-seen times forward for the identifiers the
    /// event observed (so replay moves them the same way).
    pub(super) fn record(&mut self, kind: EntryKind, a: u32, b: u32, payload: u32, ctx: Ctx) {
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

    /// The journal's entries, in sequence order (an entry's index is its sequence number).
    pub(crate) fn journal(&self) -> &[Entry] {
        &self.journal
    }

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
            EntryKind::Erase => LogEvent::Erase {
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
            LogEvent::Erase { at, identifier } => {
                let n = self.require_node(identifier)?;
                if self.slot_of(n) == NONE {
                    return Err(Error::InvalidOperation(format!(
                        "{identifier} has no profile"
                    )));
                }
                self.erase_node(n, *at, &mut changes);
            }
            LogEvent::Freeze { at, frozen } => self.set_frozen(*frozen, *at),
        }
        Ok(())
    }
}
