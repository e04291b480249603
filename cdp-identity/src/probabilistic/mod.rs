//! Probabilistic record linkage (Fellegi–Sunter) for people who never share an identifier.
//!
//! The pipeline, columnar on Arrow data, for one table (deduplication) or two (linkage):
//!
//! 1. [`blocking`]: a union of blocking rules yields deduplicated candidate pairs as two
//!    index arrays, never the full cross product.
//! 2. [`comparison`]: each comparison turns every candidate pair into a level (exact,
//!    similarity bands, dates, numbers; null is "unknown").
//! 3. [`model`]: u from random pairs, m and the prior by EM — one session per blocking rule
//!    leaving out the comparisons the rule keys on, so agreement the blocking caused is not
//!    read as a match — match weight and probability, term-frequency adjustments, and a
//!    per-pair waterfall explanation.
//! 4. [`decide`]: thresholds split pairs into auto-link (into the identity graph, under its
//!    rules), review and no-link.
//!
//! [`MatchSettings`] runs all of it in one call on one table or two, from a `match.toml`
//! or from settings inferred from the column names; the steps are public for finer
//! control.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{RecordBatch, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use cdp_identity::probabilistic::{
//!     Blocking, BlockingKey, BlockingRule, Comparison, ComparisonKind, EmOptions,
//!     FellegiSunter, compare_all, probability, string_column,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("surname", DataType::Utf8, true),
//!     Field::new("dob", DataType::Utf8, true),
//! ]));
//! let table = RecordBatch::try_new(schema, vec![
//!     Arc::new(StringArray::from(vec!["smith", "smyth", "jones", "smith"])),
//!     Arc::new(StringArray::from(vec!["1980-02-01", "1980-01-02", "1975-05-05", "1990-01-01"])),
//! ])?;
//! let blocking = Blocking::new(vec![BlockingRule::single(BlockingKey::Soundex {
//!     column: "surname".into(),
//! })]);
//! let pairs = blocking.dedupe(&table)?;
//! assert_eq!(pairs.len(), 3); // the three S530 rows pair up; jones stays alone
//!
//! let comparisons = vec![
//!     Comparison::new("surname", ComparisonKind::JaroWinkler { thresholds: vec![0.88] }),
//!     Comparison::new("dob", ComparisonKind::Date { tolerance_days: 30 }),
//! ];
//! let columns = [string_column(&table, "surname")?, string_column(&table, "dob")?];
//! let cols: Vec<_> = columns.iter().map(|c| (c, c)).collect();
//! let levels = compare_all(&comparisons, &cols, &pairs.left, &pairs.right)?;
//!
//! let mut model = FellegiSunter::new(comparisons)?;
//! model.estimate_u(&cols, table.num_rows(), None, 100, 42)?;
//! model.estimate_m(&levels, EmOptions::default())?;
//! let weights = model.score(&levels, &[], &pairs.left)?;
//! let explanation = model.explain(&levels, &[], &pairs.left, 0)?;
//! assert!((explanation.total_weight - weights[0]).abs() < 1e-9);
//! assert!((explanation.probability - probability(weights[0])).abs() < 1e-12);
//! # Ok(()) }
//! ```

pub mod blocking;
pub mod comparison;
pub mod decide;
pub mod matcher;
mod metrics;
pub mod model;

pub use blocking::{Blocking, BlockingKey, BlockingRule, CandidatePairs, soundex, string_column};
pub use comparison::{Comparison, ComparisonKind, NULL_LEVEL, compare_all, parse_date};
pub use decide::{
    Decision, GraphOutcome, PROBABILISTIC_RULE, ReviewPair, Thresholds, apply_to_graph,
};
pub use matcher::{MatchRun, MatchSettings, MatchTimings, Training};
pub use model::{
    EmOptions, EmReport, FellegiSunter, PairExplanation, TermFrequencies, WeightTerm, probability,
};
