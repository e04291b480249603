//! Refusals: the rule checks that keep an identifier out of a profile or two profiles
//! apart (per-type limits, consent scopes, blocked values), and how a refusal is encoded in
//! a log entry's payload and decoded into a [`RefusalReason`].

use super::{Change, Ctx, IdentityGraph, NONE};
use crate::error::{Error, Result};
use crate::log::{EntryKind, RefusalReason};

// Refusal codes, in the low byte of a refusal's payload. A limit refusal carries the type
// and the would-be count above it, a scope refusal the index of the scope masks it refused.
const REFUSED_LIMIT: u32 = 0;
pub(super) const REFUSED_BLOCKED: u32 = 1;
const REFUSED_SCOPE: u32 = 2;

impl IdentityGraph {
    /// Refusal code when a new identifier may not join `slot`.
    pub(super) fn check_join(&self, slot: u32, x: u32) -> Option<u32> {
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
    pub(super) fn check_merge(&self, a: u32, b: u32) -> Option<u32> {
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn refuse(
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

    pub(super) fn encode_reason(&mut self, reason: &RefusalReason) -> Result<u32> {
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
}

fn limit_code(kind: u8, would: u32) -> u32 {
    REFUSED_LIMIT | (u32::from(kind) << 8) | (would.min(0xFFFF) << 16)
}
