//! CSV values are text; this is where a column's text becomes its type, only when the type
//! holds what the text says. Inference uses the same rules to pick types, so a column is a
//! number only when every sampled value is a canonical number: `02134`, `1E5` and
//! `0044123456` stay text.
//!
//! - integers: `-?(0|[1-9][0-9]*)` within 64 bits;
//! - floats: a canonical integer or decimal (`-?(0|[1-9][0-9]*)\.[0-9]+`) of at most 15
//!   significant digits, no exponent;
//! - booleans: `true` or `false`, in any case;
//! - dates: `YYYY-MM-DD`;
//! - timestamps: `YYYY-MM-DD[T ]HH:MM:SS[.fraction]`, with a zone (`Z` or `±HH:MM`) for a
//!   zoned column (an instant, kept in UTC) and without one for a naive column, the
//!   fraction no finer than the column's unit. A column of an explicit schema takes any
//!   timestamp text arrow reads (a naive one as UTC).
//!
//! An empty value is null in every column.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, PrimitiveBuilder, StringArray,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use chrono::{NaiveDate, Utc};

use crate::sources::schemaless::text::{canonical_int, canonical_number};

/// The class of one sampled value, for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Null,
    Bool,
    Int,
    Decimal,
    Date,
    /// A timestamp: with a zone or not, and whether its fraction needs nanoseconds.
    Timestamp {
        zoned: bool,
        nanos: bool,
    },
    Text,
}

/// Classifies one value.
pub(crate) fn classify(text: &str) -> Class {
    if text.is_empty() {
        return Class::Null;
    }
    if canonical_int(text).is_some() {
        return Class::Int;
    }
    if canonical_number(text).is_some() {
        return Class::Decimal;
    }
    if text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false") {
        return Class::Bool;
    }
    if date_days(text).is_some() {
        return Class::Date;
    }
    if let Some(shape) = timestamp_shape(text)
        && instant(text).is_some()
    {
        return Class::Timestamp {
            zoned: shape.zoned,
            nanos: shape.fraction > 6,
        };
    }
    Class::Text
}

/// The class of a column that held values of `seen` and then one of `class`: the one
/// class both fit, else text.
pub(crate) fn merge(seen: Option<Class>, class: Class) -> Option<Class> {
    Some(match (seen, class) {
        (seen, Class::Null) => return seen,
        (None, class) => class,
        (Some(a), b) if a == b => a,
        (Some(Class::Int | Class::Decimal), Class::Int | Class::Decimal) => Class::Decimal,
        (
            Some(Class::Timestamp { zoned: a, nanos: x }),
            Class::Timestamp { zoned: b, nanos: y },
        ) if a == b => Class::Timestamp {
            zoned: a,
            nanos: x || y,
        },
        _ => Class::Text,
    })
}

/// The type a column of sampled values gets: the one type they all fit, else text.
#[cfg(test)]
pub(crate) fn resolve(classes: impl IntoIterator<Item = Class>) -> DataType {
    column_type(classes.into_iter().fold(None, merge))
}

/// The type of a column whose sampled values merged into `seen`.
pub(crate) fn column_type(seen: Option<Class>) -> DataType {
    match seen {
        None | Some(Class::Null | Class::Text) => DataType::Utf8,
        Some(Class::Bool) => DataType::Boolean,
        Some(Class::Int) => DataType::Int64,
        Some(Class::Decimal) => DataType::Float64,
        Some(Class::Date) => DataType::Date32,
        Some(Class::Timestamp { zoned, nanos }) => {
            let unit = if nanos {
                TimeUnit::Nanosecond
            } else {
                TimeUnit::Microsecond
            };
            DataType::Timestamp(unit, zoned.then(|| "UTC".into()))
        }
    }
}

/// The type a column widens to for a value it does not take: a float for a decimal in an
/// integer column, text for anything else.
pub(crate) fn widened(data_type: &DataType, text: &str) -> DataType {
    if data_type.is_integer() && canonical_number(text).is_some() {
        DataType::Float64
    } else {
        DataType::Utf8
    }
}

/// Whether `text` fits a column of `data_type` (`explicit`: from a configured schema).
pub(crate) fn fits(text: &str, data_type: &DataType, explicit: bool) -> bool {
    if text.is_empty() {
        return true;
    }
    let array = StringArray::from(vec![text]);
    convert(&array, data_type, explicit).is_ok()
}

/// Converts a column of text into `data_type`; `Err` with the first row that does not fit.
pub(crate) fn convert(
    text: &StringArray,
    data_type: &DataType,
    explicit: bool,
) -> Result<ArrayRef, usize> {
    fn build<B, T>(
        text: &StringArray,
        mut builder: B,
        parse: impl Fn(&str) -> Option<T>,
        mut append: impl FnMut(&mut B, Option<T>),
        finish: impl FnOnce(B) -> ArrayRef,
    ) -> Result<ArrayRef, usize> {
        for (row, value) in text.iter().enumerate() {
            match value {
                None | Some("") => append(&mut builder, None),
                Some(value) => match parse(value) {
                    Some(parsed) => append(&mut builder, Some(parsed)),
                    None => return Err(row),
                },
            }
        }
        Ok(finish(builder))
    }
    let n = text.len();
    match data_type {
        DataType::Utf8 => Ok(Arc::new(text.clone())),
        DataType::Int64 => build(
            text,
            Int64Builder::with_capacity(n),
            canonical_int,
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
        ),
        DataType::Int32 => build(
            text,
            Int32Builder::with_capacity(n),
            |s| canonical_int(s).and_then(|v| i32::try_from(v).ok()),
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
        ),
        DataType::Float64 => build(
            text,
            Float64Builder::with_capacity(n),
            canonical_number,
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
        ),
        DataType::Float32 => build(
            text,
            Float32Builder::with_capacity(n),
            |s| canonical_number(s).map(|v| v as f32),
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
        ),
        DataType::Boolean => build(
            text,
            BooleanBuilder::with_capacity(n),
            |s| {
                if s.eq_ignore_ascii_case("true") {
                    Some(true)
                } else if s.eq_ignore_ascii_case("false") {
                    Some(false)
                } else {
                    None
                }
            },
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
        ),
        DataType::Date32 => build(
            text,
            Date32Builder::with_capacity(n),
            date_days,
            |b, v| b.append_option(v),
            |mut b| Arc::new(b.finish()),
        ),
        DataType::Timestamp(unit, tz) => {
            let zoned = tz.is_some();
            let value = |s: &str| -> Option<i64> {
                if !explicit {
                    let shape = timestamp_shape(s)?;
                    if shape.zoned != zoned || shape.fraction > unit_digits(*unit) {
                        return None;
                    }
                }
                let at = instant(s)?;
                match unit {
                    TimeUnit::Second => Some(at.timestamp()),
                    TimeUnit::Millisecond => Some(at.timestamp_millis()),
                    TimeUnit::Microsecond => Some(at.timestamp_micros()),
                    TimeUnit::Nanosecond => at.timestamp_nanos_opt(),
                }
            };
            let tz = tz.clone();
            match unit {
                TimeUnit::Second => timestamps::<TimestampSecondType>(text, value, tz),
                TimeUnit::Millisecond => timestamps::<TimestampMillisecondType>(text, value, tz),
                TimeUnit::Microsecond => timestamps::<TimestampMicrosecondType>(text, value, tz),
                TimeUnit::Nanosecond => timestamps::<TimestampNanosecondType>(text, value, tz),
            }
        }
        other => {
            // A type only a configured schema names: arrow's own conversion, refusing what
            // it cannot convert.
            let options = CastOptions {
                safe: false,
                ..CastOptions::default()
            };
            let blanks: StringArray = text.iter().map(|v| v.filter(|s| !s.is_empty())).collect();
            match cast_with_options(&blanks, other, &options) {
                Ok(array) => Ok(array),
                Err(_) => {
                    let safe = cast_with_options(&blanks, other, &CastOptions::default())
                        .map_err(|_| 0usize)?;
                    Err((0..n)
                        .find(|&i| safe.is_null(i) && !blanks.is_null(i))
                        .unwrap_or(0))
                }
            }
        }
    }
}

fn timestamps<T>(
    text: &StringArray,
    value: impl Fn(&str) -> Option<i64>,
    tz: Option<Arc<str>>,
) -> Result<ArrayRef, usize>
where
    T: arrow::datatypes::ArrowTimestampType,
{
    let mut builder = PrimitiveBuilder::<T>::with_capacity(text.len());
    for (row, s) in text.iter().enumerate() {
        match s {
            None | Some("") => builder.append_null(),
            Some(s) => builder.append_value(value(s).ok_or(row)?),
        }
    }
    Ok(Arc::new(builder.finish().with_timezone_opt(tz)))
}

fn unit_digits(unit: TimeUnit) -> usize {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    }
}

/// Days since the epoch of a `YYYY-MM-DD` date.
fn date_days(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((date - epoch).num_days()).ok()
}

/// What the text of a timestamp says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimestampShape {
    zoned: bool,
    /// Digits of the fraction of a second.
    fraction: usize,
}

/// The shape of `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|±HH:MM]`, or `None`.
fn timestamp_shape(text: &str) -> Option<TimestampShape> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let fixed = b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !fixed {
        return None;
    }
    let mut at = 19;
    let mut fraction = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
            fraction += 1;
        }
        if fraction == 0 || fraction > 9 {
            return None;
        }
    }
    let zone = &b[at..];
    let zoned = match zone {
        [] => false,
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) =>
        {
            true
        }
        _ => return None,
    };
    Some(TimestampShape { zoned, fraction })
}

/// The instant a timestamp's text names (a naive one read as UTC).
fn instant(text: &str) -> Option<chrono::DateTime<Utc>> {
    arrow::compute::kernels::cast_utils::string_to_datetime(&Utc, text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_keeps_identifiers_as_text() {
        let column = |values: &[&str]| resolve(values.iter().map(|v| classify(v)));
        assert_eq!(column(&["02134", "10001"]), DataType::Utf8);
        assert_eq!(column(&["1E5", "2"]), DataType::Utf8);
        assert_eq!(column(&["0044123456"]), DataType::Utf8);
        assert_eq!(column(&["1", "", "-2"]), DataType::Int64);
        assert_eq!(column(&["1", "2.5"]), DataType::Float64);
        assert_eq!(column(&["true", "FALSE"]), DataType::Boolean);
        assert_eq!(column(&["", ""]), DataType::Utf8);
        assert_eq!(column(&["2024-05-01"]), DataType::Date32);
        assert_eq!(
            column(&["2020-01-01T00:01:22Z", "2020-01-01 00:01:23+02:00"]),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            column(&["2020-01-01T00:01:22", "2020-01-01T00:01:22.123456789"]),
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        );
        assert_eq!(
            column(&["2020-01-01T00:01:22Z", "2020-01-01T00:01:22"]),
            DataType::Utf8
        );
        assert_eq!(column(&["2020-13-01"]), DataType::Utf8);
    }

    #[test]
    fn conversion_keeps_instants_and_refuses_what_does_not_fit() {
        let zoned = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let text = StringArray::from(vec![
            Some("2020-01-01T00:01:22Z"),
            None,
            Some("2020-01-01T02:01:22+02:00"),
        ]);
        let array = convert(&text, &zoned, false).unwrap();
        let array = array
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(array.value(0), 1_577_836_882_000_000);
        assert_eq!(array.value(2), 1_577_836_882_000_000);
        assert_eq!(array.timezone(), Some("UTC"));
        assert!(!fits("2020-01-01T00:01:22", &zoned, false));
        assert!(fits("2020-01-01T00:01:22", &zoned, true));
        let ints = StringArray::from(vec!["1", "007"]);
        assert_eq!(convert(&ints, &DataType::Int64, false).unwrap_err(), 1);
        assert_eq!(widened(&DataType::Int64, "1.5"), DataType::Float64);
        assert_eq!(widened(&DataType::Int64, "n/a"), DataType::Utf8);
    }
}
