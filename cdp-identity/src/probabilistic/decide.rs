//! Decisions: auto-link, review, or no link, by match probability.
//!
//! Auto-links enter the [`IdentityGraph`] through [`IdentityGraph::observe`] as links with
//! rule [`PROBABILISTIC_RULE`] and the match probability as confidence, so the identifier
//! limits and blocked values of the deterministic rules still apply: a link the rules
//! refuse is counted in [`GraphOutcome::refused`] and nothing merges.
//!
//! Review-band pairs go to the graph's review queue through [`IdentityGraph::propose`]
//! (approve or reject them there, with the same audit trail as frozen-graph merges) and
//! are listed in [`GraphOutcome::review`] with what the graph did with each.

use arrow::array::{Array, StringArray};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::{Change, Evidence, IdentityGraph, Proposal};

/// The rule name recorded on probabilistic links.
pub const PROBABILISTIC_RULE: &str = "probabilistic";

/// Probability thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// At or above: linked automatically.
    pub auto_link: f64,
    /// At or above (and below `auto_link`): sent to review.
    pub review: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            auto_link: 0.95,
            review: 0.5,
        }
    }
}

/// What to do with a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Link automatically.
    Link,
    /// Ask a person.
    Review,
    /// Leave apart.
    NoLink,
}

impl Thresholds {
    /// Checks `0 <= review <= auto_link <= 1`.
    pub fn validate(&self) -> Result<()> {
        if !(0.0 <= self.review && self.review <= self.auto_link && self.auto_link <= 1.0) {
            return Err(Error::Config(format!(
                "thresholds must satisfy 0 <= review ({}) <= auto_link ({}) <= 1",
                self.review, self.auto_link
            )));
        }
        Ok(())
    }

    /// The decision for one probability.
    pub fn decide(&self, probability: f64) -> Decision {
        if probability >= self.auto_link {
            Decision::Link
        } else if probability >= self.review {
            Decision::Review
        } else {
            Decision::NoLink
        }
    }
}

/// A pair waiting for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewPair {
    /// Left row.
    pub left: u32,
    /// Right row.
    pub right: u32,
    /// Left record id.
    pub left_id: String,
    /// Right record id.
    pub right_id: String,
    /// Match probability.
    pub probability: f64,
    /// What the graph did: queued (with the review item number), already linked, refused
    /// by the rules, or ignored.
    pub proposal: Proposal,
}

/// What applying the decisions to a graph did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphOutcome {
    /// Auto-link pairs that ended up in one profile.
    pub linked: usize,
    /// Auto-link pairs the graph's rules refused (limit, blocked value, scope).
    pub refused: usize,
    /// Pairs in the review band, each proposed to the graph's review queue.
    pub review: Vec<ReviewPair>,
    /// Pairs below the review threshold.
    pub no_link: usize,
    /// Pairs skipped because an id was null or empty.
    pub missing_id: usize,
}

/// Applies the thresholds to scored pairs: auto-links are observed in `graph` as links
/// between the identifiers (`kind`, left id) and (`kind`, right id) with rule
/// [`PROBABILISTIC_RULE`] and confidence = probability; review-band pairs are proposed to
/// the graph's review queue with the same rule and confidence.
#[allow(clippy::too_many_arguments)]
pub fn apply_to_graph(
    graph: &mut IdentityGraph,
    thresholds: &Thresholds,
    kind: &str,
    left_ids: &StringArray,
    right_ids: &StringArray,
    left_idx: &[u32],
    right_idx: &[u32],
    probabilities: &[f64],
    at: i64,
    source: &str,
) -> Result<GraphOutcome> {
    let pairs = ScoredPairs {
        left_ids,
        right_ids,
        left_idx,
        right_idx,
        probabilities,
    };
    apply_changes(graph, thresholds, kind, &pairs, at, source, &mut Vec::new())
}

/// Scored pairs with the id columns they index.
pub(crate) struct ScoredPairs<'a> {
    pub(crate) left_ids: &'a StringArray,
    pub(crate) right_ids: &'a StringArray,
    pub(crate) left_idx: &'a [u32],
    pub(crate) right_idx: &'a [u32],
    pub(crate) probabilities: &'a [f64],
}

/// [`apply_to_graph`], collecting the graph's changes (for a resolver's profile store).
pub(crate) fn apply_changes(
    graph: &mut IdentityGraph,
    thresholds: &Thresholds,
    kind: &str,
    pairs: &ScoredPairs<'_>,
    at: i64,
    source: &str,
    changes: &mut Vec<Change>,
) -> Result<GraphOutcome> {
    let ScoredPairs {
        left_ids,
        right_ids,
        left_idx,
        right_idx,
        probabilities,
    } = *pairs;
    thresholds.validate()?;
    if left_idx.len() != right_idx.len() || left_idx.len() != probabilities.len() {
        return Err(Error::InvalidOperation(
            "pairs and probabilities differ in length".into(),
        ));
    }
    let id = |a: &StringArray, i: u32| -> Option<String> {
        let i = i as usize;
        (i < a.len() && a.is_valid(i) && !a.value(i).trim().is_empty())
            .then(|| a.value(i).to_string())
    };
    let mut out = GraphOutcome::default();
    for ((&l, &r), &p) in left_idx.iter().zip(right_idx).zip(probabilities) {
        let decision = thresholds.decide(p);
        if decision == Decision::NoLink {
            out.no_link += 1;
            continue;
        }
        let (Some(a), Some(b)) = (id(left_ids, l), id(right_ids, r)) else {
            out.missing_id += 1;
            continue;
        };
        let evidence = Evidence {
            at,
            source: source.to_string(),
            rule: PROBABILISTIC_RULE.to_string(),
            confidence: p as f32,
        };
        match decision {
            Decision::Review => {
                let proposal = graph.propose_changes((kind, &a), (kind, &b), &evidence, changes)?;
                out.review.push(ReviewPair {
                    left: l,
                    right: r,
                    left_id: a,
                    right_id: b,
                    probability: p,
                    proposal,
                });
            }
            Decision::Link => {
                graph.observe_changes(&[(kind, &a), (kind, &b)], &evidence, None, changes)?;
                let pa = graph.profile_of(kind, &a);
                if pa.is_some() && pa == graph.profile_of(kind, &b) {
                    out.linked += 1;
                } else {
                    out.refused += 1;
                }
            }
            Decision::NoLink => {}
        }
    }
    Ok(out)
}
