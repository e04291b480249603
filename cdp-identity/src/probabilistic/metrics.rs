//! String metrics for comparisons, from `rapidfuzz` (bit-parallel, with an early exit once
//! a score cannot reach the lowest band).
//!
//! ASCII strings are compared as bytes, which gives the same result as comparing chars
//! without UTF-8 decoding in the inner loops. [`RowScorer`] keeps the preprocessed left value
//! (its bit pattern) while consecutive pairs share a left row, as sorted candidate pairs do.

use rapidfuzz::distance::{damerau_levenshtein as dl, jaro_winkler as jw, levenshtein as lev};

/// Runs `metric` over the bytes of two ASCII strings, or their chars otherwise.
macro_rules! by_char_or_byte {
    ($a:expr, $b:expr, |$x:ident, $y:ident| $metric:expr) => {
        if $a.is_ascii() && $b.is_ascii() {
            let ($x, $y) = ($a.bytes(), $b.bytes());
            $metric
        } else {
            let ($x, $y) = ($a.chars(), $b.chars());
            $metric
        }
    };
}

/// Jaro-Winkler similarity (prefix weight 0.1, boost above a Jaro similarity of 0.7), or 0
/// below `cutoff`.
pub(crate) fn jaro_winkler(a: &str, b: &str, cutoff: f64) -> f64 {
    let args = jw::Args::default().score_cutoff(cutoff);
    by_char_or_byte!(a, b, |x, y| jw::similarity_with_args(x, y, &args)).unwrap_or(0.0)
}

/// Levenshtein distance, or `usize::MAX` above `cutoff`.
pub(crate) fn levenshtein(a: &str, b: &str, cutoff: usize) -> usize {
    let args = lev::Args::default().score_cutoff(cutoff);
    by_char_or_byte!(a, b, |x, y| lev::distance_with_args(x, y, &args)).unwrap_or(usize::MAX)
}

/// Unrestricted Damerau-Levenshtein distance, or `usize::MAX` above `cutoff`.
pub(crate) fn damerau_levenshtein(a: &str, b: &str, cutoff: usize) -> usize {
    let args = dl::Args::default().score_cutoff(cutoff);
    by_char_or_byte!(a, b, |x, y| dl::distance_with_args(x, y, &args)).unwrap_or(usize::MAX)
}

/// A metric with one side fixed: the left value of a run of pairs.
pub(crate) enum RowScorer {
    /// Jaro-Winkler against a fixed string.
    JaroWinkler(jw::BatchComparator<char>, f64),
    /// Levenshtein against a fixed string.
    Levenshtein(lev::BatchComparator<char>, usize),
}

impl RowScorer {
    /// Jaro-Winkler against `a`, scores below `cutoff` reported as 0.
    pub(crate) fn jaro_winkler(a: &str, cutoff: f64) -> Self {
        RowScorer::JaroWinkler(jw::BatchComparator::new(a.chars()), cutoff)
    }

    /// Levenshtein against `a`, distances above `cutoff` reported as `usize::MAX`.
    pub(crate) fn levenshtein(a: &str, cutoff: usize) -> Self {
        RowScorer::Levenshtein(lev::BatchComparator::new(a.chars()), cutoff)
    }

    /// Jaro-Winkler similarity of the fixed string and `b`.
    pub(crate) fn similarity(&self, b: &str) -> f64 {
        match self {
            RowScorer::JaroWinkler(c, cutoff) => {
                let args = jw::Args::default().score_cutoff(*cutoff);
                c.similarity_with_args(b.chars(), &args).unwrap_or(0.0)
            }
            RowScorer::Levenshtein(..) => 0.0,
        }
    }

    /// Levenshtein distance of the fixed string and `b`.
    pub(crate) fn distance(&self, b: &str) -> usize {
        match self {
            RowScorer::Levenshtein(c, cutoff) => {
                let args = lev::Args::default().score_cutoff(*cutoff);
                c.distance_with_args(b.chars(), &args).unwrap_or(usize::MAX)
            }
            RowScorer::JaroWinkler(..) => usize::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_side_scores_equal_pairwise_scores() {
        let words = [
            "martha", "marhta", "dwayne", "duane", "dixon", "dicksonx", "zoë", "zoe", "",
        ];
        for a in words {
            let jw_row = RowScorer::jaro_winkler(a, 0.0);
            let lev_row = RowScorer::levenshtein(a, 3);
            for b in words {
                assert!((jw_row.similarity(b) - jaro_winkler(a, b, 0.0)).abs() < 1e-12);
                assert_eq!(lev_row.distance(b), levenshtein(a, b, 3), "{a} / {b}");
            }
        }
    }

    #[test]
    fn reference_values() {
        // Winkler's examples.
        assert!((jaro_winkler("martha", "marhta", 0.0) - 0.9611).abs() < 1e-4);
        assert!((jaro_winkler("dwayne", "duane", 0.0) - 0.84).abs() < 1e-4);
        assert!((jaro_winkler("dixon", "dicksonx", 0.0) - 0.8133).abs() < 1e-4);
        assert_eq!(levenshtein("kitten", "sitting", 5), 3);
        assert_eq!(levenshtein("kitten", "sitting", 2), usize::MAX);
        assert_eq!(damerau_levenshtein("ca", "abc", 5), 2);
        assert_eq!(levenshtein("zoë", "zoe", 5), 1);
    }
}
