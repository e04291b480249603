//! The Fellegi–Sunter model: m and u probabilities per comparison level, a prior, match
//! weights and probabilities, term-frequency adjustments, and explanations.
//!
//! - u (probability of a level among non-matches) is estimated from random pairs, which are
//!   almost all non-matches ([`FellegiSunter::estimate_u`]).
//! - m (probability of a level among matches) and the prior λ (share of matches among the
//!   candidate pairs) are estimated by expectation–maximisation on the candidate pairs,
//!   unsupervised ([`FellegiSunter::estimate_m`]). Identical level patterns are folded
//!   together first, so an iteration costs the number of distinct patterns, not pairs.
//! - The match weight of a pair is `log2(λ / (1 - λ)) + Σ log2(m / u)` over the
//!   comparisons whose level is not null; its probability is `2^w / (1 + 2^w)`.
//! - With a term-frequency adjustment, an exact match on value `v` weighs
//!   `log2(m_exact / f(v))` instead of `log2(m_exact / u_exact)`, where `f(v)` is the
//!   share of records holding `v`: agreeing on "Smith" says less than agreeing on
//!   "Wojciechowski".
//!
//! The prior λ is the match rate among the pairs EM was run on (normally the blocked
//! candidates); scoring other pairs with it assumes a similar match rate.

use std::fmt;

use arrow::array::{Array, StringArray};
use std::collections::HashMap as StdHashMap;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use super::comparison::{Comparison, NULL_LEVEL, compare_all};
use crate::error::{Error, Result};

/// Smallest probability kept for an m or u value, so no weight is infinite.
const FLOOR: f64 = 1e-6;

/// Share of records holding each value of a column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TermFrequencies {
    freq: StdHashMap<String, f64>,
}

impl TermFrequencies {
    /// Counts the non-null, non-empty (trimmed) values of the given columns together.
    pub fn from_columns(columns: &[&StringArray]) -> Self {
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut total = 0u64;
        for column in columns {
            for v in column.iter().flatten() {
                let v = v.trim();
                if v.is_empty() {
                    continue;
                }
                total += 1;
                if let Some(c) = counts.get_mut(v) {
                    *c += 1;
                } else {
                    counts.insert(v.to_string(), 1);
                }
            }
        }
        let freq = counts
            .into_iter()
            .map(|(k, c)| (k, c as f64 / total.max(1) as f64))
            .collect();
        TermFrequencies { freq }
    }

    /// The share of records holding `value` (trimmed), if it was seen.
    pub fn get(&self, value: &str) -> Option<f64> {
        self.freq.get(value.trim()).copied()
    }
}

/// Settings of the EM run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmOptions {
    /// Stop after this many iterations.
    pub max_iterations: usize,
    /// Stop when no parameter moved by more than this.
    pub tolerance: f64,
    /// Keep u fixed (at the values from random sampling) and estimate only m and λ. This
    /// is the usual choice: u from random pairs is unbiased, while u from blocked pairs is
    /// not.
    pub fix_u: bool,
}

impl Default for EmOptions {
    fn default() -> Self {
        EmOptions {
            max_iterations: 100,
            tolerance: 1e-5,
            fix_u: true,
        }
    }
}

/// What an EM run did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmReport {
    /// Iterations run.
    pub iterations: usize,
    /// Whether the largest parameter change fell below the tolerance.
    pub converged: bool,
    /// The largest parameter change of the last iteration.
    pub last_change: f64,
    /// Distinct level patterns among the pairs.
    pub patterns: usize,
    /// EM sessions run (one per blocking rule for blocking-aware EM, else one).
    #[serde(default)]
    pub sessions: usize,
}

/// A Fellegi–Sunter model over a list of comparisons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FellegiSunter {
    /// The comparisons, in order.
    pub comparisons: Vec<Comparison>,
    /// Prior probability that a candidate pair is a match.
    pub lambda: f64,
    /// `m[k][level]`: probability of the level among matches, per comparison.
    pub m: Vec<Vec<f64>>,
    /// `u[k][level]`: probability of the level among non-matches, per comparison.
    pub u: Vec<Vec<f64>>,
    /// Term frequencies of the comparisons with term-frequency adjustment (see
    /// [`FellegiSunter::set_term_frequencies`]).
    #[serde(default)]
    pub tf: Vec<Option<TermFrequencies>>,
}

impl FellegiSunter {
    /// A model with starting values: λ = 0.01, m rising and u falling with the level.
    pub fn new(comparisons: Vec<Comparison>) -> Result<Self> {
        for c in &comparisons {
            c.validate()?;
        }
        let m = comparisons
            .iter()
            .map(|c| normalised((0..c.num_levels()).map(|l| 4f64.powi(l as i32)).collect()))
            .collect();
        let u = comparisons
            .iter()
            .map(|c| {
                normalised(
                    (0..c.num_levels())
                        .map(|l| 4f64.powi((c.num_levels() - 1 - l) as i32))
                        .collect(),
                )
            })
            .collect();
        let tf = vec![None; comparisons.len()];
        Ok(FellegiSunter {
            comparisons,
            lambda: 0.01,
            m,
            u,
            tf,
        })
    }

    /// Sets the term frequencies of comparison `k` (only used when the comparison asks for
    /// a term-frequency adjustment).
    pub fn set_term_frequencies(&mut self, k: usize, tf: TermFrequencies) -> Result<()> {
        let slot = self
            .tf
            .get_mut(k)
            .ok_or_else(|| Error::NotFound(format!("comparison {k}")))?;
        *slot = Some(tf);
        Ok(())
    }

    /// Estimates u from `samples` random pairs of rows: `left_rows` × `right_rows`, or
    /// distinct pairs within one table of `left_rows` when `right_rows` is `None`. Random
    /// pairs are almost all non-matches, so their level frequencies are u. Counts get a
    /// pseudo-count of one per level so that no level has u = 0. Deterministic for a seed.
    pub fn estimate_u(
        &mut self,
        columns: &[(&StringArray, &StringArray)],
        left_rows: usize,
        right_rows: Option<usize>,
        samples: usize,
        seed: u64,
    ) -> Result<()> {
        let right_n = right_rows.unwrap_or(left_rows);
        if left_rows == 0 || right_n == 0 || (right_rows.is_none() && left_rows < 2) {
            return Err(Error::InvalidOperation(
                "too few rows to sample pairs for u".into(),
            ));
        }
        let mut rng = SplitMix64(seed);
        let mut pairs = Vec::with_capacity(samples);
        while pairs.len() < samples {
            let l = rng.below(left_rows as u64);
            let r = rng.below(right_n as u64);
            if right_rows.is_none() && l == r {
                continue;
            }
            pairs.push(l << 32 | r);
        }
        // Sorted by left row, so comparisons reuse work on the left value (counts do not
        // depend on the order).
        pairs.sort_unstable();
        let li: Vec<u32> = pairs.iter().map(|p| (p >> 32) as u32).collect();
        let ri: Vec<u32> = pairs.iter().map(|&p| p as u32).collect();
        let levels = compare_all(&self.comparisons, columns, &li, &ri)?;
        for (k, (c, levels)) in self.comparisons.iter().zip(&levels).enumerate() {
            let mut counts = vec![1.0; c.num_levels()];
            for &l in levels {
                if let Some(n) = counts.get_mut(l as usize) {
                    *n += 1.0;
                }
            }
            self.u[k] = normalised(counts);
        }
        Ok(())
    }

    /// Estimates m and λ (and u unless `options.fix_u`) by expectation–maximisation on the
    /// levels of the candidate pairs (`levels[k][pair]`).
    ///
    /// Comparisons on columns the blocking rules key on are biased here: candidate pairs
    /// agree on them far more often than random pairs, and EM can read that agreement as
    /// evidence of a match. [`FellegiSunter::estimate_m_by_rule`] avoids the bias.
    pub fn estimate_m(&mut self, levels: &[Vec<u8>], options: EmOptions) -> Result<EmReport> {
        self.check_levels(levels)?;
        let patterns = fold_patterns(levels, |_| true);
        let active = vec![true; self.comparisons.len()];
        Ok(self.em(&patterns, &active, true, options))
    }

    /// Blocking-aware EM, as record-linkage practice does it: one EM session per blocking
    /// rule, on the pairs that rule produces (`rule_pairs[r][pair]`), leaving out the
    /// comparisons the rule keys on (`excluded[r][k]`), whose levels are distorted by the
    /// blocking. Each comparison's m is the mean over the sessions that estimated it
    /// (sessions of fewer than `min_session_pairs` pairs are skipped); a comparison no
    /// session could estimate falls back to plain EM on all pairs. Finally λ is fitted on
    /// all candidate pairs with m and u fixed.
    pub fn estimate_m_by_rule(
        &mut self,
        levels: &[Vec<u8>],
        rule_pairs: &[Vec<bool>],
        excluded: &[Vec<bool>],
        min_session_pairs: usize,
        options: EmOptions,
    ) -> Result<EmReport> {
        self.check_levels(levels)?;
        let n = levels.first().map_or(0, Vec::len);
        let k = self.comparisons.len();
        if rule_pairs.len() != excluded.len()
            || rule_pairs.iter().any(|r| r.len() != n)
            || excluded.iter().any(|e| e.len() != k)
        {
            return Err(Error::InvalidOperation(
                "rule pair masks must have one entry per pair, exclusions one per comparison"
                    .into(),
            ));
        }
        let start = self.clone();
        let mut sums: Vec<Vec<f64>> = self.m.iter().map(|v| vec![0.0; v.len()]).collect();
        let mut sessions_of = vec![0usize; k];
        let mut report = EmReport {
            iterations: 0,
            converged: true,
            last_change: 0.0,
            patterns: 0,
            sessions: 0,
        };
        for (members, excluded) in rule_pairs.iter().zip(excluded) {
            let count = members.iter().filter(|&&m| m).count();
            let active: Vec<bool> = excluded.iter().map(|e| !e).collect();
            if count < min_session_pairs.max(1) || !active.iter().any(|&a| a) {
                continue;
            }
            let mut session = start.clone();
            let patterns = fold_patterns(levels, |i| members[i]);
            let r = session.em(&patterns, &active, true, options);
            report.iterations += r.iterations;
            report.converged &= r.converged;
            report.last_change = report.last_change.max(r.last_change);
            report.sessions += 1;
            for c in 0..k {
                if active[c] {
                    sessions_of[c] += 1;
                    for (sum, m) in sums[c].iter_mut().zip(&session.m[c]) {
                        *sum += m;
                    }
                }
            }
        }
        // Comparisons no session estimated: plain EM on all pairs, for them alone.
        let untrained: Vec<bool> = sessions_of.iter().map(|&s| s == 0).collect();
        let all = fold_patterns(levels, |_| true);
        if untrained.iter().any(|&u| u) {
            let mut fallback = start.clone();
            let r = fallback.em(&all, &vec![true; k], true, options);
            report.iterations += r.iterations;
            report.converged &= r.converged;
            for c in (0..k).filter(|&c| untrained[c]) {
                self.m[c] = fallback.m[c].clone();
                if !options.fix_u {
                    self.u[c] = fallback.u[c].clone();
                }
            }
        }
        for c in (0..k).filter(|&c| !untrained[c]) {
            self.m[c] = normalised(sums[c].clone());
        }
        // λ on every candidate pair, m and u as estimated.
        let lambda_only = EmOptions {
            fix_u: true,
            ..options
        };
        let r = self.em(&all, &vec![true; k], false, lambda_only);
        report.iterations += r.iterations;
        report.converged &= r.converged;
        report.patterns = r.patterns;
        Ok(report)
    }

    /// EM over folded patterns: only `active` comparisons enter the likelihood and are
    /// updated; m (and u unless fixed) move only when `update_m`, λ always.
    fn em(
        &mut self,
        patterns: &[(Vec<u8>, f64)],
        active: &[bool],
        update_m: bool,
        options: EmOptions,
    ) -> EmReport {
        let total: f64 = patterns.iter().map(|(_, c)| c).sum();
        let mut report = EmReport {
            iterations: 0,
            converged: false,
            last_change: f64::INFINITY,
            patterns: patterns.len(),
            sessions: 1,
        };
        if total == 0.0 {
            return report;
        }
        while report.iterations < options.max_iterations {
            report.iterations += 1;
            let ln_m: Vec<Vec<f64>> = self.m.iter().map(|v| ln_all(v)).collect();
            let ln_u: Vec<Vec<f64>> = self.u.iter().map(|v| ln_all(v)).collect();
            let (ln_l, ln_nl) = (self.lambda.ln(), (1.0 - self.lambda).ln());
            let mut m_acc: Vec<Vec<f64>> = self.m.iter().map(|v| vec![0.0; v.len()]).collect();
            let mut u_acc = m_acc.clone();
            let mut matches = 0.0;
            for (pattern, count) in patterns {
                let (mut a, mut b) = (ln_l, ln_nl);
                for (k, &l) in pattern.iter().enumerate() {
                    if l != NULL_LEVEL && active[k] {
                        a += ln_m[k][l as usize];
                        b += ln_u[k][l as usize];
                    }
                }
                let post = 1.0 / (1.0 + (b - a).exp());
                matches += post * count;
                for (k, &l) in pattern.iter().enumerate() {
                    if l != NULL_LEVEL && active[k] {
                        m_acc[k][l as usize] += post * count;
                        u_acc[k][l as usize] += (1.0 - post) * count;
                    }
                }
            }
            let lambda = (matches / total).clamp(FLOOR, 1.0 - FLOOR);
            let mut change = (lambda - self.lambda).abs();
            self.lambda = lambda;
            for k in (0..self.m.len()).filter(|&k| update_m && active[k]) {
                if m_acc[k].iter().sum::<f64>() > 0.0 {
                    let new = normalised(m_acc[k].clone());
                    change = change.max(max_diff(&new, &self.m[k]));
                    self.m[k] = new;
                }
                if !options.fix_u && u_acc[k].iter().sum::<f64>() > 0.0 {
                    let new = normalised(u_acc[k].clone());
                    change = change.max(max_diff(&new, &self.u[k]));
                    self.u[k] = new;
                }
            }
            report.last_change = change;
            if change < options.tolerance {
                report.converged = true;
                break;
            }
        }
        report
    }

    /// The prior as a weight: `log2(λ / (1 - λ))`.
    pub fn prior_weight(&self) -> f64 {
        (self.lambda / (1.0 - self.lambda)).log2()
    }

    /// The weight of comparison `k` at `level`: `log2(m / u)`, or 0 for null.
    pub fn level_weight(&self, k: usize, level: u8) -> f64 {
        if level == NULL_LEVEL {
            return 0.0;
        }
        match (
            self.m.get(k).and_then(|v| v.get(level as usize)),
            self.u.get(k).and_then(|v| v.get(level as usize)),
        ) {
            (Some(m), Some(u)) => (m / u).log2(),
            _ => 0.0,
        }
    }

    /// Match weights of all pairs. `tf_columns[k]` is the left column of comparison `k`,
    /// needed only where the comparison has a term-frequency adjustment (pass `None`
    /// elsewhere, or an empty slice to skip all adjustments); `left_idx` are the pairs'
    /// left rows.
    pub fn score(
        &self,
        levels: &[Vec<u8>],
        tf_columns: &[Option<&StringArray>],
        left_idx: &[u32],
    ) -> Result<Vec<f64>> {
        self.check_levels(levels)?;
        let n = levels.first().map_or(0, Vec::len);
        let tables: Vec<Vec<f64>> = (0..self.comparisons.len())
            .map(|k| {
                (0..self.m[k].len())
                    .map(|l| self.level_weight(k, l as u8))
                    .collect()
            })
            .collect();
        let mut weights = vec![self.prior_weight(); n];
        for (k, lv) in levels.iter().enumerate() {
            let table = &tables[k];
            for (w, &l) in weights.iter_mut().zip(lv) {
                if l != NULL_LEVEL {
                    *w += table[l as usize];
                }
            }
            if let Some((tf, column, exact)) = self.tf_input(k, tf_columns) {
                for (i, (w, &l)) in weights.iter_mut().zip(lv).enumerate() {
                    if l == exact {
                        *w += self.tf_adjustment(k, tf, column, left_idx, i)?;
                    }
                }
            }
        }
        Ok(weights)
    }

    /// The waterfall of one pair (index `pair` into the arrays given to
    /// [`FellegiSunter::score`]): the prior and each comparison's weight, which sum to the
    /// pair's total weight.
    pub fn explain(
        &self,
        levels: &[Vec<u8>],
        tf_columns: &[Option<&StringArray>],
        left_idx: &[u32],
        pair: usize,
    ) -> Result<PairExplanation> {
        self.check_levels(levels)?;
        let prior_weight = self.prior_weight();
        let mut total = prior_weight;
        let mut terms = Vec::with_capacity(levels.len());
        for (k, lv) in levels.iter().enumerate() {
            let level = *lv
                .get(pair)
                .ok_or_else(|| Error::NotFound(format!("pair {pair}")))?;
            let c = &self.comparisons[k];
            let weight = self.level_weight(k, level);
            let mut tf_adjustment = 0.0;
            if let Some((tf, column, exact)) = self.tf_input(k, tf_columns)
                && level == exact
            {
                tf_adjustment = self.tf_adjustment(k, tf, column, left_idx, pair)?;
            }
            let known = level != NULL_LEVEL;
            total += weight;
            total += tf_adjustment;
            terms.push(WeightTerm {
                comparison: c.name.clone(),
                level: known.then_some(level),
                label: c.level_label(level),
                m: known.then(|| self.m[k][level as usize]),
                u: known.then(|| self.u[k][level as usize]),
                weight,
                tf_adjustment,
            });
        }
        Ok(PairExplanation {
            prior_weight,
            terms,
            total_weight: total,
            probability: probability(total),
        })
    }

    fn tf_input<'a>(
        &'a self,
        k: usize,
        tf_columns: &[Option<&'a StringArray>],
    ) -> Option<(&'a TermFrequencies, &'a StringArray, u8)> {
        let c = &self.comparisons[k];
        if !c.term_frequency {
            return None;
        }
        let tf = self.tf.get(k)?.as_ref()?;
        let column = (*tf_columns.get(k)?)?;
        Some((tf, column, c.exact_level()))
    }

    fn tf_adjustment(
        &self,
        k: usize,
        tf: &TermFrequencies,
        column: &StringArray,
        left_idx: &[u32],
        pair: usize,
    ) -> Result<f64> {
        let row = *left_idx
            .get(pair)
            .ok_or_else(|| Error::NotFound(format!("pair {pair}")))? as usize;
        if row >= column.len() || column.is_null(row) {
            return Ok(0.0);
        }
        let exact = self.comparisons[k].exact_level() as usize;
        Ok(match tf.get(column.value(row)) {
            Some(f) => (self.u[k][exact] / f.max(FLOOR)).log2(),
            None => 0.0,
        })
    }

    fn check_levels(&self, levels: &[Vec<u8>]) -> Result<()> {
        // A deserialised model may not match its comparisons.
        let shapes_match = self.m.len() == self.comparisons.len()
            && self.u.len() == self.comparisons.len()
            && self.comparisons.iter().enumerate().all(|(k, c)| {
                self.m[k].len() == c.num_levels() && self.u[k].len() == c.num_levels()
            });
        if !shapes_match {
            return Err(Error::InvalidOperation(
                "m and u do not have one probability per level of each comparison".into(),
            ));
        }
        if levels.len() != self.comparisons.len() {
            return Err(Error::InvalidOperation(format!(
                "{} level vectors for {} comparisons",
                levels.len(),
                self.comparisons.len()
            )));
        }
        let n = levels.first().map_or(0, Vec::len);
        for (k, lv) in levels.iter().enumerate() {
            if lv.len() != n {
                return Err(Error::InvalidOperation(
                    "level vectors differ in length".into(),
                ));
            }
            let max = self.m[k].len();
            if lv.iter().any(|&l| l != NULL_LEVEL && l as usize >= max) {
                return Err(Error::InvalidOperation(format!(
                    "level out of range for comparison `{}`",
                    self.comparisons[k].name
                )));
            }
        }
        Ok(())
    }
}

/// Match probability of a match weight: `2^w / (1 + 2^w)`.
pub fn probability(weight: f64) -> f64 {
    1.0 / (1.0 + (-weight).exp2())
}

/// One comparison's bar in a waterfall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightTerm {
    /// The comparison.
    pub comparison: String,
    /// The level, `None` when null (unknown).
    pub level: Option<u8>,
    /// What the level means.
    pub label: String,
    /// m at this level (`None` when null).
    pub m: Option<f64>,
    /// u at this level (`None` when null).
    pub u: Option<f64>,
    /// `log2(m / u)`, 0 when null.
    pub weight: f64,
    /// The term-frequency adjustment (0 when none applies).
    pub tf_adjustment: f64,
}

/// Why a pair scored what it did: the prior and each comparison's contribution.
/// `prior_weight + Σ (weight + tf_adjustment) = total_weight`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairExplanation {
    /// `log2(λ / (1 - λ))`.
    pub prior_weight: f64,
    /// One term per comparison.
    pub terms: Vec<WeightTerm>,
    /// The match weight.
    pub total_weight: f64,
    /// The match probability.
    pub probability: f64,
}

impl fmt::Display for PairExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut running = self.prior_weight;
        writeln!(
            f,
            "{:<20} {:<24} {:>8} {:>9}",
            "comparison", "level", "weight", "running"
        )?;
        writeln!(
            f,
            "{:<20} {:<24} {:>+8.3} {:>+9.3}",
            "prior", "", self.prior_weight, running
        )?;
        for t in &self.terms {
            running += t.weight;
            writeln!(
                f,
                "{:<20} {:<24} {:>+8.3} {:>+9.3}",
                t.comparison, t.label, t.weight, running
            )?;
            if t.tf_adjustment != 0.0 {
                running += t.tf_adjustment;
                writeln!(
                    f,
                    "{:<20} {:<24} {:>+8.3} {:>+9.3}",
                    "", "term frequency", t.tf_adjustment, running
                )?;
            }
        }
        write!(
            f,
            "{:<20} {:<24} {:>8} {:>+9.3}  (probability {:.4})",
            "total", "", "", self.total_weight, self.probability
        )
    }
}

/// Identical level patterns of the selected pairs, folded together with their counts.
fn fold_patterns(levels: &[Vec<u8>], select: impl Fn(usize) -> bool) -> Vec<(Vec<u8>, f64)> {
    let n = levels.first().map_or(0, Vec::len);
    let mut patterns: HashMap<Vec<u8>, f64> = HashMap::new();
    let mut buf = vec![0u8; levels.len()];
    for i in (0..n).filter(|&i| select(i)) {
        for (b, l) in buf.iter_mut().zip(levels) {
            *b = l[i];
        }
        if let Some(c) = patterns.get_mut(buf.as_slice()) {
            *c += 1.0;
        } else {
            patterns.insert(buf.clone(), 1.0);
        }
    }
    // Sorted, so sums over patterns do not depend on hash order: runs are reproducible
    // to the last bit.
    let mut patterns: Vec<(Vec<u8>, f64)> = patterns.into_iter().collect();
    patterns.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    patterns
}

fn normalised(mut v: Vec<f64>) -> Vec<f64> {
    for x in &mut v {
        *x = x.max(0.0);
    }
    let sum: f64 = v.iter().sum();
    if sum > 0.0 {
        for x in &mut v {
            *x = (*x / sum).max(FLOOR);
        }
    }
    let sum: f64 = v.iter().sum();
    if sum > 0.0 {
        for x in &mut v {
            *x /= sum;
        }
    }
    v
}

fn ln_all(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.max(FLOOR).ln()).collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// A small deterministic generator for sampling pairs (SplitMix64).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_of_weights() {
        assert!((probability(0.0) - 0.5).abs() < 1e-12);
        assert!((probability(1.0) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn mismatched_parameters_are_an_error_not_a_panic() {
        let c = Comparison::new("x", super::super::comparison::ComparisonKind::Exact);
        let mut model = FellegiSunter::new(vec![c]).unwrap();
        model.m[0].pop();
        assert!(model.score(&[vec![0]], &[], &[0]).is_err());
        model.m.clear();
        assert!(model.explain(&[vec![0]], &[], &[0], 0).is_err());
    }

    #[test]
    fn sampler_stays_in_range() {
        let mut r = SplitMix64(7);
        assert!((0..1000).all(|_| r.below(3) < 3));
    }
}
