//! When the text of a value is a number that a typed column can hold without changing what
//! the text says: shared by the JSON decoder's strict columns and CSV inference, so the fast
//! path and the record-by-record path always agree.

/// Significant digits an `f64` carries through a decimal round trip.
const F64_DIGITS: usize = 15;
/// Integers up to this magnitude are exact in an `f64`.
const F64_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// An integer written canonically: an optional `-`, no `+`, no leading zeros (`0` itself
/// is fine, `-0` is not), no exponent, and within 64 bits.
pub(crate) fn canonical_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let bytes = digits.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if (bytes[0] == b'0' && bytes.len() > 1) || text == "-0" {
        return None;
    }
    text.parse().ok()
}

/// A decimal written canonically: an integer part as [`canonical_int`] allows (or `0`, or
/// `-0`), a `.` and at least one digit, no exponent, and at most 15 significant digits, so
/// the `f64` it becomes prints back as the same number.
pub(crate) fn canonical_decimal(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = unsigned.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) || (int.len() > 1 && int.starts_with('0')) {
        return None;
    }
    let significant = int
        .bytes()
        .chain(frac.bytes())
        .skip_while(|b| *b == b'0')
        .count();
    if significant > F64_DIGITS {
        return None;
    }
    text.parse().ok()
}

/// A canonical integer or decimal, as an `f64` column takes it.
pub(crate) fn canonical_number(text: &str) -> Option<f64> {
    match canonical_int(text) {
        Some(i) if i.unsigned_abs() <= 1 << 53 => Some(i as f64),
        Some(_) => None,
        None => canonical_decimal(text),
    }
}

/// What a JSON number literal is, for the columns that may hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberKind {
    /// An integer within 64 bits, or a literal with a fraction or exponent whose value is
    /// an integer exact in an `f64` (`10.0`, `1e3`): an integer column holds it unchanged.
    Int,
    /// An integer beyond 64 bits: only text keeps it exactly.
    BigInt,
    /// Anything else: a float.
    Float,
}

/// Classifies the text of a JSON number (as it appears in the input).
pub(crate) fn number_kind(text: &str) -> NumberKind {
    if !text.contains(['.', 'e', 'E']) {
        return match text.parse::<i64>() {
            Ok(_) => NumberKind::Int,
            Err(_) => NumberKind::BigInt,
        };
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() <= F64_EXACT_INT => NumberKind::Int,
        _ => NumberKind::Float,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_not_canonical_numbers() {
        for text in [
            "02134",
            "0044123456",
            "1E5",
            "1e5",
            "+5",
            "-0",
            "",
            "-",
            "1.",
            ".5",
            "00.5",
            "1_000",
            " 1",
            "0x10",
            "NaN",
            "inf",
            "1.0000000000000001",
            "99999999999999999999",
        ] {
            assert_eq!(canonical_number(text), None, "{text:?}");
        }
        assert_eq!(canonical_int("0"), Some(0));
        assert_eq!(canonical_int("-42"), Some(-42));
        assert_eq!(canonical_int("9223372036854775807"), Some(i64::MAX));
        assert_eq!(canonical_int("9223372036854775808"), None);
        assert_eq!(canonical_decimal("0.5"), Some(0.5));
        assert_eq!(canonical_decimal("-0.25"), Some(-0.25));
        assert_eq!(canonical_decimal("1.50"), Some(1.5));
        assert_eq!(canonical_decimal("0.000000000000000000123"), Some(1.23e-19));
        assert_eq!(canonical_number("12"), Some(12.0));
        // Past 2^53 an integer is no longer exact as a float.
        assert_eq!(canonical_number("9007199254740993"), None);
    }

    #[test]
    fn json_numbers_classify_by_what_holds_them_exactly() {
        assert_eq!(number_kind("10"), NumberKind::Int);
        assert_eq!(number_kind("-10"), NumberKind::Int);
        assert_eq!(number_kind("10.0"), NumberKind::Int);
        assert_eq!(number_kind("1e3"), NumberKind::Int);
        assert_eq!(number_kind("10.75"), NumberKind::Float);
        assert_eq!(number_kind("1e-3"), NumberKind::Float);
        assert_eq!(number_kind("1e300"), NumberKind::Float);
        assert_eq!(number_kind("12345678901234567890"), NumberKind::BigInt);
    }
}
