//! Per-field comparisons with levels.
//!
//! A comparison turns the two values of a candidate pair into a small integer *level*:
//! `0` is "different" (the else level), higher levels mean more similar, and the top level
//! (`num_levels() - 1`) is an exact match. A null or empty value on either side yields
//! [`NULL_LEVEL`], which the model treats as "unknown" (weight 0), not as "different".
//!
//! Comparisons are columnar: they take Arrow [`StringArray`]s and the two index arrays of
//! the candidate pairs and produce one `Vec<u8>` of levels per comparison.

use arrow::array::{Array, StringArray};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::metrics::{RowScorer, damerau_levenshtein, jaro_winkler, levenshtein};
use crate::error::{Error, Result};

/// The level of a pair where either value is null or empty: "unknown", weight 0.
pub const NULL_LEVEL: u8 = u8::MAX;

/// How two values of one field are compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ComparisonKind {
    /// Two levels: different, exact.
    Exact,
    /// Exact, then one level per Jaro-Winkler similarity threshold (descending, e.g.
    /// `[0.92, 0.8]`), then different.
    JaroWinkler {
        /// Similarity thresholds, highest first; a pair falls in the first it reaches.
        thresholds: Vec<f64>,
    },
    /// Exact, then one level per maximum Levenshtein distance (ascending, e.g. `[1, 2]`),
    /// then different.
    Levenshtein {
        /// Edit-distance limits, smallest first.
        max_distances: Vec<usize>,
    },
    /// As [`ComparisonKind::Levenshtein`] but with transpositions counting as one edit
    /// (unrestricted Damerau-Levenshtein).
    DamerauLevenshtein {
        /// Edit-distance limits, smallest first.
        max_distances: Vec<usize>,
    },
    /// Dates (`YYYY-MM-DD`, `YYYYMMDD` or `DD/MM/YYYY`): exact, day and month swapped,
    /// within `tolerance_days`, different. Unparseable values compare as unknown unless
    /// they are equal strings.
    Date {
        /// Largest difference in days that still counts as close.
        tolerance_days: i64,
    },
    /// Numbers: exact, within `tolerance` (absolute), different. Unparseable values compare
    /// as unknown unless they are equal strings.
    Numeric {
        /// Largest absolute difference that still counts as close.
        tolerance: f64,
    },
}

/// One comparison: a name, the column compared on each side, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    /// The name used in explanations (defaults to the column name in [`Comparison::new`],
    /// and in [`MatchSettings`](super::MatchSettings) when left out or empty).
    #[serde(default)]
    pub name: String,
    /// The column compared (the same name on both sides).
    pub column: String,
    /// How the values are compared.
    pub kind: ComparisonKind,
    /// Whether exact matches get a term-frequency adjustment (agreeing on a rare value is
    /// stronger evidence than agreeing on a common one).
    #[serde(default)]
    pub term_frequency: bool,
}

impl Comparison {
    /// A comparison of `column` named after it, without term-frequency adjustment.
    pub fn new(column: impl Into<String>, kind: ComparisonKind) -> Self {
        let column = column.into();
        Comparison {
            name: column.clone(),
            column,
            kind,
            term_frequency: false,
        }
    }

    /// Turns the term-frequency adjustment on for exact matches.
    pub fn with_term_frequency(mut self) -> Self {
        self.term_frequency = true;
        self
    }

    /// Checks the thresholds (ordered, in range, and at most 250 levels).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("comparison `{}`: {m}", self.name)));
        match &self.kind {
            ComparisonKind::JaroWinkler { thresholds } => {
                if thresholds.windows(2).any(|w| w[0] <= w[1]) {
                    return bad("Jaro-Winkler thresholds must be strictly descending");
                }
                if thresholds.iter().any(|t| !(0.0..=1.0).contains(t)) {
                    return bad("Jaro-Winkler thresholds must be within 0..=1");
                }
            }
            ComparisonKind::Levenshtein { max_distances }
            | ComparisonKind::DamerauLevenshtein { max_distances }
                if max_distances.windows(2).any(|w| w[0] >= w[1]) =>
            {
                return bad("edit distances must be strictly ascending");
            }
            ComparisonKind::Date { tolerance_days } if *tolerance_days < 0 => {
                return bad("tolerance_days must not be negative");
            }
            ComparisonKind::Numeric { tolerance } if tolerance.is_nan() || *tolerance < 0.0 => {
                return bad("tolerance must not be negative");
            }
            _ => {}
        }
        if self.num_levels() > 250 {
            return bad("too many levels");
        }
        Ok(())
    }

    /// How many levels (including the else level 0, excluding [`NULL_LEVEL`]).
    pub fn num_levels(&self) -> usize {
        match &self.kind {
            ComparisonKind::Exact => 2,
            ComparisonKind::JaroWinkler { thresholds } => thresholds.len() + 2,
            ComparisonKind::Levenshtein { max_distances }
            | ComparisonKind::DamerauLevenshtein { max_distances } => max_distances.len() + 2,
            ComparisonKind::Date { .. } => 4,
            ComparisonKind::Numeric { .. } => 3,
        }
    }

    /// The top level: an exact match.
    pub fn exact_level(&self) -> u8 {
        (self.num_levels() - 1) as u8
    }

    /// A human label for a level, used in explanations.
    pub fn level_label(&self, level: u8) -> String {
        if level == NULL_LEVEL {
            return "null (unknown)".to_string();
        }
        if level == 0 {
            return "different".to_string();
        }
        if level == self.exact_level() {
            return "exact".to_string();
        }
        // Levels between 0 and exact, counted from the top.
        let i = (self.exact_level() - 1 - level) as usize;
        match &self.kind {
            ComparisonKind::JaroWinkler { thresholds } => {
                format!(
                    "jaro-winkler >= {}",
                    thresholds.get(i).copied().unwrap_or(0.0)
                )
            }
            ComparisonKind::Levenshtein { max_distances } => {
                format!(
                    "levenshtein <= {}",
                    max_distances.get(i).copied().unwrap_or(0)
                )
            }
            ComparisonKind::DamerauLevenshtein { max_distances } => {
                format!("damerau <= {}", max_distances.get(i).copied().unwrap_or(0))
            }
            ComparisonKind::Date { tolerance_days } => match level {
                2 => "day and month swapped".to_string(),
                _ => format!("within {tolerance_days} days"),
            },
            ComparisonKind::Numeric { tolerance } => format!("within {tolerance}"),
            ComparisonKind::Exact => "exact".to_string(),
        }
    }

    /// The level of one pair of values (`None` or empty is null).
    pub fn level(&self, a: Option<&str>, b: Option<&str>) -> u8 {
        let (Some(a), Some(b)) = (present(a), present(b)) else {
            return NULL_LEVEL;
        };
        if a == b {
            return self.exact_level();
        }
        match &self.kind {
            ComparisonKind::Date { tolerance_days } => {
                date_level(parse_date(a), parse_date(b), *tolerance_days)
            }
            ComparisonKind::Numeric { tolerance } => {
                numeric_level(a.parse().ok(), b.parse().ok(), *tolerance)
            }
            _ => self.string_level(a, b),
        }
    }

    /// The level of two present, different strings under a string metric.
    fn string_level(&self, a: &str, b: &str) -> u8 {
        let exact = self.exact_level();
        match &self.kind {
            ComparisonKind::Exact => 0,
            ComparisonKind::JaroWinkler { thresholds } => {
                let s = jaro_winkler(a, b, lowest(thresholds));
                band(thresholds.iter().position(|t| s >= *t), exact)
            }
            ComparisonKind::Levenshtein { max_distances } => {
                let d = levenshtein(a, b, largest(max_distances));
                band(max_distances.iter().position(|m| d <= *m), exact)
            }
            ComparisonKind::DamerauLevenshtein { max_distances } => {
                let d = damerau_levenshtein(a, b, largest(max_distances));
                band(max_distances.iter().position(|m| d <= *m), exact)
            }
            // Parsed kinds are handled by their callers; as strings they only differ.
            ComparisonKind::Date { .. } | ComparisonKind::Numeric { .. } => 0,
        }
    }

    /// The level of every candidate pair: `left_idx[i]` in `left` against `right_idx[i]` in
    /// `right` (for deduplication pass the same array twice).
    pub fn compare(
        &self,
        left: &StringArray,
        right: &StringArray,
        left_idx: &[u32],
        right_idx: &[u32],
    ) -> Result<Vec<u8>> {
        if left_idx.len() != right_idx.len() {
            return Err(Error::InvalidOperation(format!(
                "pair index arrays differ in length ({} and {})",
                left_idx.len(),
                right_idx.len()
            )));
        }
        check_range(left, left_idx, &self.column)?;
        check_range(right, right_idx, &self.column)?;
        let (l, r) = (self.prepare(left), self.prepare(right));
        Ok(self.compare_prepared(&l, &r, left_idx, right_idx))
    }

    /// Trims every row, and parses dates or numbers, once per row rather than once per pair.
    fn prepare<'a>(&self, array: &'a StringArray) -> Prepared<'a> {
        let values: Vec<Option<&str>> = array.iter().map(present).collect();
        let parsed = match &self.kind {
            ComparisonKind::Date { .. } => Parsed::Dates(parse_rows(&values, parse_date)),
            ComparisonKind::Numeric { .. } => {
                Parsed::Numbers(parse_rows(&values, |s| s.parse::<f64>().ok()))
            }
            _ => Parsed::Strings,
        };
        Prepared { values, parsed }
    }

    /// Levels of pairs of prepared rows; the indices were range-checked by the caller.
    fn compare_prepared(
        &self,
        left: &Prepared<'_>,
        right: &Prepared<'_>,
        left_idx: &[u32],
        right_idx: &[u32],
    ) -> Vec<u8> {
        let exact = self.exact_level();
        // While pairs share their left row (candidate pairs are sorted), the left value's
        // preprocessing is kept; it is built on the second pair of a run.
        let mut row: Option<(usize, Option<RowScorer>)> = None;
        let mut out = Vec::with_capacity(left_idx.len());
        for (&l, &r) in left_idx.iter().zip(right_idx) {
            let (l, r) = (l as usize, r as usize);
            let level = match (left.values[l], right.values[r]) {
                (Some(a), Some(b)) if a == b => exact,
                (Some(a), Some(b)) => match (&self.kind, &left.parsed, &right.parsed) {
                    (
                        ComparisonKind::Date { tolerance_days },
                        Parsed::Dates(x),
                        Parsed::Dates(y),
                    ) => date_level(x[l], y[r], *tolerance_days),
                    (
                        ComparisonKind::Numeric { tolerance },
                        Parsed::Numbers(x),
                        Parsed::Numbers(y),
                    ) => numeric_level(x[l], y[r], *tolerance),
                    (
                        ComparisonKind::JaroWinkler { .. } | ComparisonKind::Levenshtein { .. },
                        ..,
                    ) => match &mut row {
                        Some((run, scorer)) if *run == l => {
                            let scorer = scorer.get_or_insert_with(|| self.row_scorer(a));
                            self.scored_level(scorer, b)
                        }
                        _ => {
                            row = Some((l, None));
                            self.string_level(a, b)
                        }
                    },
                    _ => self.string_level(a, b),
                },
                _ => NULL_LEVEL,
            };
            out.push(level);
        }
        out
    }

    /// The fixed-left-side metric of a Jaro-Winkler or Levenshtein comparison.
    fn row_scorer(&self, a: &str) -> RowScorer {
        match &self.kind {
            ComparisonKind::Levenshtein { max_distances } => {
                RowScorer::levenshtein(a, largest(max_distances))
            }
            ComparisonKind::JaroWinkler { thresholds } => {
                RowScorer::jaro_winkler(a, lowest(thresholds))
            }
            // Not called for other kinds; a scorer that never reaches a band is harmless.
            _ => RowScorer::jaro_winkler(a, f64::INFINITY),
        }
    }

    /// As [`Comparison::string_level`], with the left value held by `scorer`.
    fn scored_level(&self, scorer: &RowScorer, b: &str) -> u8 {
        let exact = self.exact_level();
        match (&self.kind, scorer) {
            (ComparisonKind::JaroWinkler { thresholds }, RowScorer::JaroWinkler(..)) => {
                let s = scorer.similarity(b);
                band(thresholds.iter().position(|t| s >= *t), exact)
            }
            (ComparisonKind::Levenshtein { max_distances }, RowScorer::Levenshtein(..)) => {
                let d = scorer.distance(b);
                band(max_distances.iter().position(|m| d <= *m), exact)
            }
            _ => 0,
        }
    }
}

/// A column ready for comparing: trimmed values (blank = absent), parsed where the kind
/// needs it.
struct Prepared<'a> {
    values: Vec<Option<&'a str>>,
    parsed: Parsed,
}

/// Per-row parsed values of a column.
enum Parsed {
    Strings,
    Dates(Vec<Option<NaiveDate>>),
    Numbers(Vec<Option<f64>>),
}

/// `value` trimmed, or `None` when absent or blank.
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// An error naming the column when a pair index is out of range.
fn check_range(array: &StringArray, idx: &[u32], column: &str) -> Result<()> {
    match idx.iter().copied().max() {
        Some(i) if i as usize >= array.len() => Err(Error::InvalidOperation(format!(
            "pair index {i} out of range for column `{column}` of {} rows",
            array.len()
        ))),
        _ => Ok(()),
    }
}

/// Every present row parsed; `None` for absent or unparseable.
fn parse_rows<T>(rows: &[Option<&str>], parse: impl Fn(&str) -> Option<T>) -> Vec<Option<T>> {
    rows.iter().map(|v| v.and_then(&parse)).collect()
}

/// The level of two different date strings: exact (equal dates written differently),
/// swapped day and month, within tolerance, different; null when either did not parse.
fn date_level(x: Option<NaiveDate>, y: Option<NaiveDate>, tolerance_days: i64) -> u8 {
    let (Some(x), Some(y)) = (x, y) else {
        return NULL_LEVEL;
    };
    if x == y {
        3
    } else if x.year() == y.year() && x.day() == y.month() && x.month() == y.day() {
        2
    } else if (x - y).num_days().abs() <= tolerance_days {
        1
    } else {
        0
    }
}

/// The level of two different number strings: exact (equal numbers written differently),
/// within tolerance, different; null when either did not parse.
fn numeric_level(x: Option<f64>, y: Option<f64>, tolerance: f64) -> u8 {
    let (Some(x), Some(y)) = (x, y) else {
        return NULL_LEVEL;
    };
    if x == y {
        2
    } else if (x - y).abs() <= tolerance {
        1
    } else {
        0
    }
}

/// The lowest similarity threshold (the only one a score must reach to matter).
fn lowest(thresholds: &[f64]) -> f64 {
    thresholds.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The largest distance limit.
fn largest(limits: &[usize]) -> usize {
    limits.iter().copied().max().unwrap_or(0)
}

/// Level for the band at `position` (0 = closest band, just below exact), or 0.
fn band(position: Option<usize>, exact: u8) -> u8 {
    match position {
        Some(p) => exact - 1 - p as u8,
        None => 0,
    }
}

/// Parses `YYYY-MM-DD`, `YYYYMMDD` or `DD/MM/YYYY`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    ["%Y-%m-%d", "%Y%m%d", "%d/%m/%Y"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
}

/// Compares every comparison over the same candidate pairs, one `Vec<u8>` of levels per
/// comparison. `columns[k]` is the `(left, right)` column of `comparisons[k]`. With enough
/// pairs for it to pay, each comparison runs on scoped threads, one chunk of pairs per
/// available core.
pub fn compare_all(
    comparisons: &[Comparison],
    columns: &[(&StringArray, &StringArray)],
    left_idx: &[u32],
    right_idx: &[u32],
) -> Result<Vec<Vec<u8>>> {
    if comparisons.len() != columns.len() {
        return Err(Error::InvalidOperation(format!(
            "{} comparisons but {} column pairs",
            comparisons.len(),
            columns.len()
        )));
    }
    if left_idx.len() != right_idx.len() {
        return Err(Error::InvalidOperation(format!(
            "pair index arrays differ in length ({} and {})",
            left_idx.len(),
            right_idx.len()
        )));
    }
    let mut prepared = Vec::with_capacity(comparisons.len());
    for (c, (l, r)) in comparisons.iter().zip(columns) {
        check_range(l, left_idx, &c.column)?;
        check_range(r, right_idx, &c.column)?;
        prepared.push((c.prepare(l), c.prepare(r)));
    }
    if left_idx.len() < 50_000 {
        return Ok(comparisons
            .iter()
            .zip(&prepared)
            .map(|(c, (l, r))| c.compare_prepared(l, r, left_idx, right_idx))
            .collect());
    }
    // Every comparison is cut into chunks of pairs, so that one expensive comparison
    // (Jaro-Winkler on long strings) does not leave the other cores idle.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = left_idx.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<Vec<_>> = comparisons
            .iter()
            .zip(&prepared)
            .map(|(c, (l, r))| {
                left_idx
                    .chunks(chunk)
                    .zip(right_idx.chunks(chunk))
                    .map(|(li, ri)| s.spawn(move || c.compare_prepared(l, r, li, ri)))
                    .collect()
            })
            .collect();
        handles
            .into_iter()
            .map(|parts| {
                let mut levels = Vec::with_capacity(left_idx.len());
                for h in parts {
                    let part = h.join().map_err(|_| {
                        Error::InvalidOperation("comparison thread panicked".into())
                    })?;
                    levels.extend(part);
                }
                Ok(levels)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_null() {
        let c = Comparison::new("x", ComparisonKind::Exact);
        assert_eq!(c.level(Some("a"), Some("a")), 1);
        assert_eq!(c.level(Some("a"), Some("b")), 0);
        assert_eq!(c.level(None, Some("b")), NULL_LEVEL);
        assert_eq!(c.level(Some(" "), Some("b")), NULL_LEVEL);
    }

    #[test]
    fn columnar_compare() {
        let c = Comparison::new("x", ComparisonKind::Exact);
        let a = StringArray::from(vec![Some("a"), None, Some("b")]);
        let levels = c.compare(&a, &a, &[0, 0, 1], &[2, 0, 2]).unwrap();
        assert_eq!(levels, vec![0, 1, NULL_LEVEL]);
        assert!(c.compare(&a, &a, &[5], &[0]).is_err());
    }
}
