//! One call from Arrow tables to scored pairs: [`MatchSettings`] (written in TOML or JSON,
//! or inferred from column names and types) run blocking, u sampling, comparisons, EM and
//! scoring, and return a [`MatchRun`] to decide on, explain, write out or apply to an
//! identity graph.

use std::time::{Duration, Instant};

use arrow::array::{Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::blocking::{Blocking, BlockingKey, BlockingRule, CandidatePairs, string_column};
use super::comparison::{Comparison, ComparisonKind, compare_all};
use super::decide::{GraphOutcome, ScoredPairs, Thresholds, apply_changes};
use super::model::{
    EmOptions, EmReport, FellegiSunter, PairExplanation, TermFrequencies, probability,
};
use crate::error::{Error, Result};
use crate::graph::{Change, IdentityGraph};

/// Everything a match run needs, serde-ready so it can live in a `match.toml`:
///
/// ```toml
/// u_samples = 100000
///
/// [thresholds]
/// auto_link = 0.95
/// review = 0.5
///
/// [[comparisons]]
/// column = "surname"
/// kind = { type = "jaro_winkler", thresholds = [0.92, 0.8] }
///
/// [[comparisons]]
/// column = "postcode"
/// kind = { type = "exact" }
/// term_frequency = true
///
/// [[blocking.rules]]
/// keys = [{ type = "soundex", column = "surname" }]
///
/// [[blocking.rules]]
/// keys = [{ type = "exact", column = "postcode" }]
/// ```
///
/// A comparison without a `name` is named after its column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSettings {
    /// The comparisons, in the order explanations list them.
    pub comparisons: Vec<Comparison>,
    /// The blocking rules (a union) and an optional block-size limit.
    pub blocking: Blocking,
    /// Auto-link and review thresholds on the match probability.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Random pairs sampled to estimate u.
    #[serde(default = "default_u_samples")]
    pub u_samples: usize,
    /// Seed of the u sampler (runs are reproducible for a seed).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// EM settings.
    #[serde(default)]
    pub em: EmOptions,
    /// How m is trained.
    #[serde(default)]
    pub training: Training,
}

/// How EM trains m on the candidate pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Training {
    /// One session per blocking rule, leaving out the comparisons that rule keys on (their
    /// agreement among candidates is caused by the blocking, not by matching); see
    /// [`FellegiSunter::estimate_m_by_rule`]. The default.
    #[default]
    ByBlockingRule,
    /// One session on all candidate pairs ([`FellegiSunter::estimate_m`]): faster, but
    /// biased when compared columns are also blocked on.
    AllPairs,
}

/// Blocking-rule sessions with fewer pairs than this are skipped (too few to estimate m).
const MIN_SESSION_PAIRS: usize = 200;

fn default_u_samples() -> usize {
    100_000
}

fn default_seed() -> u64 {
    1
}

/// How long each stage of a run took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchTimings {
    /// Building candidate pairs.
    pub blocking: Duration,
    /// Sampling random pairs and comparing them for u.
    pub u: Duration,
    /// Comparing the candidate pairs.
    pub compare: Duration,
    /// Expectation–maximisation.
    pub em: Duration,
    /// Match weights.
    pub score: Duration,
}

impl MatchSettings {
    /// Settings picked from column names and types, for tables nobody wrote a config for.
    /// Columns in `skip` (record ids, cluster labels) are left out.
    ///
    /// Names are recognised case-insensitively: given/first names and surnames
    /// (Jaro-Winkler, blocked by Soundex), dates of birth and date columns (dates with
    /// swapped day/month, blocked exactly), postcodes (Levenshtein ≤ 1 with term frequencies,
    /// blocked), phone, ssn, email (Levenshtein, blocked exactly), other ids and numbers
    /// (Levenshtein), age and numeric columns (numeric), state/country/gender (exact with
    /// term frequencies); any other column is compared with Jaro-Winkler. Fails when no
    /// column can be compared or none can block.
    pub fn infer(schema: &Schema, skip: &[&str]) -> Result<Self> {
        let mut comparisons = Vec::new();
        let mut rules = Vec::new();
        for field in schema.fields() {
            if skip.contains(&field.name().as_str()) {
                continue;
            }
            let (comparison, rule) = pick(field);
            comparisons.push(comparison);
            rules.extend(rule);
        }
        if comparisons.is_empty() {
            return Err(Error::Config("no columns to compare".into()));
        }
        if rules.is_empty() {
            return Err(Error::Config(
                "no column suitable for blocking (names, dates of birth, postcodes, ids); \
                 give blocking rules in a config"
                    .into(),
            ));
        }
        Ok(MatchSettings {
            comparisons,
            blocking: Blocking::new(rules),
            thresholds: Thresholds::default(),
            u_samples: default_u_samples(),
            seed: default_seed(),
            em: EmOptions::default(),
            training: Training::default(),
        })
    }

    /// Checks the settings: comparisons and thresholds valid, at least one blocking rule,
    /// every rule with a key.
    pub fn validate(&self) -> Result<()> {
        if self.comparisons.is_empty() {
            return Err(Error::Config("no comparisons".into()));
        }
        for c in &self.comparisons {
            c.validate()?;
        }
        self.thresholds.validate()?;
        if self.blocking.rules.is_empty() || self.blocking.rules.iter().any(|r| r.keys.is_empty()) {
            return Err(Error::Config(
                "blocking needs at least one rule, each with at least one key \
                 (a full cross product is never built)"
                    .into(),
            ));
        }
        if self.u_samples == 0 {
            return Err(Error::Config("u_samples must be positive".into()));
        }
        Ok(())
    }

    /// Deduplicates one table.
    pub fn dedupe(&self, table: &RecordBatch) -> Result<MatchRun> {
        self.run(table, None)
    }

    /// Links two tables (the comparison columns must exist in both).
    pub fn link(&self, left: &RecordBatch, right: &RecordBatch) -> Result<MatchRun> {
        self.run(left, Some(right))
    }

    fn run(&self, left: &RecordBatch, right: Option<&RecordBatch>) -> Result<MatchRun> {
        self.validate()?;
        let mut comparisons = self.comparisons.clone();
        for c in &mut comparisons {
            if c.name.is_empty() {
                c.name = c.column.clone();
            }
        }
        let mut timings = MatchTimings::default();

        let t = Instant::now();
        let pairs = match right {
            Some(r) => self.blocking.link(left, r)?,
            None => self.blocking.dedupe(left)?,
        };
        timings.blocking = t.elapsed();

        let columns = |table: &RecordBatch| -> Result<Vec<StringArray>> {
            comparisons
                .iter()
                .map(|c| string_column(table, &c.column))
                .collect()
        };
        let left_cols = columns(left)?;
        let right_cols = match right {
            Some(r) => columns(r)?,
            None => left_cols.clone(),
        };
        let cols: Vec<_> = left_cols.iter().zip(&right_cols).collect();
        let mut model = FellegiSunter::new(comparisons.clone())?;
        for (k, c) in comparisons.iter().enumerate() {
            if c.term_frequency {
                let tf = match right {
                    Some(_) => TermFrequencies::from_columns(&[&left_cols[k], &right_cols[k]]),
                    None => TermFrequencies::from_columns(&[&left_cols[k]]),
                };
                model.set_term_frequencies(k, tf)?;
            }
        }

        let t = Instant::now();
        model.estimate_u(
            &cols,
            left.num_rows(),
            right.map(RecordBatch::num_rows),
            self.u_samples,
            self.seed,
        )?;
        timings.u = t.elapsed();

        let t = Instant::now();
        let levels = compare_all(&comparisons, &cols, &pairs.left, &pairs.right)?;
        timings.compare = t.elapsed();

        let t = Instant::now();
        let em = match self.training {
            Training::AllPairs => model.estimate_m(&levels, self.em)?,
            Training::ByBlockingRule => {
                let members = self.blocking.rule_membership(left, right, &pairs)?;
                let excluded: Vec<Vec<bool>> = self
                    .blocking
                    .rules
                    .iter()
                    .map(|rule| {
                        comparisons
                            .iter()
                            .map(|c| rule.uses_column(&c.column))
                            .collect()
                    })
                    .collect();
                model.estimate_m_by_rule(
                    &levels,
                    &members,
                    &excluded,
                    MIN_SESSION_PAIRS,
                    self.em,
                )?
            }
        };
        timings.em = t.elapsed();

        let t = Instant::now();
        let tf_columns: Vec<Option<StringArray>> = comparisons
            .iter()
            .zip(left_cols)
            .map(|(c, col)| c.term_frequency.then_some(col))
            .collect();
        let refs: Vec<Option<&StringArray>> = tf_columns.iter().map(Option::as_ref).collect();
        let weights = model.score(&levels, &refs, &pairs.left)?;
        timings.score = t.elapsed();

        Ok(MatchRun {
            pairs,
            levels,
            weights,
            model,
            em,
            timings,
            thresholds: self.thresholds,
            tf_columns,
        })
    }
}

/// A comparison (and maybe a blocking rule) for a column, by its name and type.
fn pick(field: &Field) -> (Comparison, Option<BlockingRule>) {
    let name = field.name();
    let n = name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
    let jw = || ComparisonKind::JaroWinkler {
        thresholds: vec![0.92, 0.8],
    };
    let levenshtein = |max_distances: Vec<usize>| ComparisonKind::Levenshtein { max_distances };
    let block = |key: BlockingKey| Some(BlockingRule::single(key));
    let exact_rule = || {
        block(BlockingKey::Exact {
            column: name.clone(),
        })
    };
    let date = ComparisonKind::Date {
        tolerance_days: 365,
    };
    let is_date_type = matches!(
        field.data_type(),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
    );
    if has(&["surname", "last_name", "lastname", "family"]) || has(&["given", "first", "forename"])
    {
        // Blocking on both name columns catches pairs whose other name was mistyped.
        let rule = block(BlockingKey::Soundex {
            column: name.clone(),
        });
        (Comparison::new(name, jw()), rule)
    } else if has(&["birth", "dob"]) {
        (Comparison::new(name, date), exact_rule())
    } else if is_date_type {
        (Comparison::new(name, date), None)
    } else if has(&["postcode", "zip", "postal"]) {
        (
            Comparison::new(name, levenshtein(vec![1])).with_term_frequency(),
            exact_rule(),
        )
    } else if has(&["soc_sec", "ssn", "email", "phone"]) {
        // Strong ids also block: a pair with every name and date mistyped still shares one.
        (Comparison::new(name, levenshtein(vec![1, 2])), exact_rule())
    } else if has(&["_id", "number"]) {
        (Comparison::new(name, levenshtein(vec![1, 2])), None)
    } else if has(&["age"]) || field.data_type().is_numeric() {
        let kind = ComparisonKind::Numeric { tolerance: 2.0 };
        (Comparison::new(name, kind), None)
    } else if has(&["state", "country", "gender", "sex"]) {
        (
            Comparison::new(name, ComparisonKind::Exact).with_term_frequency(),
            None,
        )
    } else {
        (Comparison::new(name, jw()), None)
    }
}

/// The outcome of a match run: candidate pairs with their levels, weights and the fitted
/// model.
#[derive(Debug, Clone)]
pub struct MatchRun {
    /// The candidate pairs (sorted by left row, then right row).
    pub pairs: CandidatePairs,
    /// `levels[k][pair]`: the level of comparison `k` for each pair.
    pub levels: Vec<Vec<u8>>,
    /// Match weight of each pair.
    pub weights: Vec<f64>,
    /// The fitted model (m, u, λ, term frequencies); serde, so it can be saved and reused.
    pub model: FellegiSunter,
    /// How EM went.
    pub em: EmReport,
    /// Time per stage.
    pub timings: MatchTimings,
    /// The thresholds of the settings.
    pub thresholds: Thresholds,
    tf_columns: Vec<Option<StringArray>>,
}

impl MatchRun {
    /// The number of candidate pairs.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether blocking found no candidate pair.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Match probability of pair `i`.
    pub fn probability(&self, i: usize) -> f64 {
        probability(self.weights[i])
    }

    /// Indices of the pairs at or above `min_probability`.
    pub fn above(&self, min_probability: f64) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(move |&i| self.probability(i) >= min_probability)
    }

    /// The waterfall of pair `i`: prior and per-comparison weights summing to its weight.
    pub fn explain(&self, i: usize) -> Result<PairExplanation> {
        let refs: Vec<Option<&StringArray>> = self.tf_columns.iter().map(Option::as_ref).collect();
        self.model.explain(&self.levels, &refs, &self.pairs.left, i)
    }

    /// The pairs at or above `min_probability` as Arrow: `left_id`, `right_id`,
    /// `match_weight`, `match_probability`, ids taken from the given id columns.
    pub fn to_record_batch(
        &self,
        left_ids: &StringArray,
        right_ids: &StringArray,
        min_probability: f64,
    ) -> Result<RecordBatch> {
        let picked: Vec<usize> = self.above(min_probability).collect();
        let id = |ids: &StringArray, row: u32| -> Result<Option<String>> {
            let row = row as usize;
            if row >= ids.len() {
                return Err(Error::InvalidOperation(format!(
                    "id column has {} rows, pair refers to row {row}",
                    ids.len()
                )));
            }
            Ok(ids.is_valid(row).then(|| ids.value(row).to_string()))
        };
        let mut left = Vec::with_capacity(picked.len());
        let mut right = Vec::with_capacity(picked.len());
        for &i in &picked {
            left.push(id(left_ids, self.pairs.left[i])?);
            right.push(id(right_ids, self.pairs.right[i])?);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("left_id", DataType::Utf8, true),
            Field::new("right_id", DataType::Utf8, true),
            Field::new("match_weight", DataType::Float64, false),
            Field::new("match_probability", DataType::Float64, false),
        ]));
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(left)),
                Arc::new(StringArray::from(right)),
                Arc::new(Float64Array::from_iter_values(
                    picked.iter().map(|&i| self.weights[i]),
                )),
                Arc::new(Float64Array::from_iter_values(
                    picked.iter().map(|&i| self.probability(i)),
                )),
            ],
        )?)
    }

    /// Applies the run's thresholds to `graph`: auto-links become links with rule
    /// `probabilistic` (under the graph's limits and blocked values), review-band pairs go
    /// to its review queue. Ids are identifiers of type `kind`. With a
    /// [`Resolver`](crate::Resolver), use
    /// [`Resolver::apply_match_run`](crate::Resolver::apply_match_run) so its profile store
    /// follows.
    pub fn apply_to_graph(
        &self,
        graph: &mut IdentityGraph,
        kind: &str,
        left_ids: &StringArray,
        right_ids: &StringArray,
        at: i64,
        source: &str,
    ) -> Result<GraphOutcome> {
        self.apply_changes(
            graph,
            kind,
            left_ids,
            right_ids,
            at,
            source,
            &mut Vec::new(),
        )
    }

    /// [`MatchRun::apply_to_graph`], collecting the graph's changes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_changes(
        &self,
        graph: &mut IdentityGraph,
        kind: &str,
        left_ids: &StringArray,
        right_ids: &StringArray,
        at: i64,
        source: &str,
        changes: &mut Vec<Change>,
    ) -> Result<GraphOutcome> {
        let probabilities: Vec<f64> = (0..self.len()).map(|i| self.probability(i)).collect();
        let pairs = ScoredPairs {
            left_ids,
            right_ids,
            left_idx: &self.pairs.left,
            right_idx: &self.pairs.right,
            probabilities: &probabilities,
        };
        apply_changes(graph, &self.thresholds, kind, &pairs, at, source, changes)
    }
}
