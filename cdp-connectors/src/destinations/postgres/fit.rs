//! Values an existing column would change on the way in: refused, row by row, at write.
//!
//! PostgreSQL refuses a value out of a column's range (`integer out of range`), which the
//! flush's isolation turns into a dead letter with its SQLSTATE. But some casts change the
//! value and say nothing: a `double precision` cast to `bigint` rounds (10.75 becomes 11),
//! one cast to `numeric(12,2)` rounds to the scale, a timestamp cast to `timestamp(0)`
//! rounds to the second, a text longer than `character varying(5)` is cut short by an
//! explicit cast (the merge assigns unbounded text instead, see
//! [`assignable_type`](cdp_postgres::refusal::assignable_type), but trailing spaces would
//! still be trimmed), and Arrow nanoseconds would be truncated to PostgreSQL's
//! microseconds. Those rows are refused here, with the reason, before anything is sent.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Decimal128Type, DecimalType, Float16Type, Float32Type, Float64Type,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use cdp_core::RejectedRow;
use cdp_postgres::refusal::Declared;

/// What the rows of one column would become, for the reason.
type Check<'a> = Box<dyn Fn(usize) -> Option<String> + 'a>;
/// A column's values by row, as `i64`.
type Values<'a> = Box<dyn Fn(usize) -> i64 + 'a>;

/// Adds to `rejected` the rows of `batch` whose value in a column of the table (declared as
/// `declared(name)` says) would be changed by the cast into it. Each row is refused once,
/// for its first such column.
pub(super) fn refuse_misfits(
    batch: &RecordBatch,
    declared: impl Fn(&str) -> Option<(String, Declared)>,
    rejected: &mut Vec<RejectedRow>,
) {
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let Some((sql_type, target)) = declared(field.name()) else {
            continue;
        };
        let Some(check) = check(column, &target, &sql_type) else {
            continue;
        };
        for row in 0..column.len() {
            if column.is_null(row) || rejected.iter().any(|r| r.row == row) {
                continue;
            }
            if let Some(why) = check(row) {
                rejected.push(RejectedRow {
                    row,
                    reason: format!(
                        "column `{}` is {sql_type} in the table: {why}",
                        field.name()
                    ),
                });
            }
        }
    }
}

/// The check of `column`'s values against a column declared `target`, when one is needed.
fn check<'a>(column: &'a ArrayRef, target: &Declared, sql_type: &str) -> Option<Check<'a>> {
    let temporal_target = sql_type.starts_with("timestamp") || sql_type.starts_with("time");
    match (target, column.data_type()) {
        (
            Declared::Integer { min, max },
            DataType::Float16 | DataType::Float32 | DataType::Float64,
        ) => {
            let (min, max) = (*min as f64, *max as f64 + 1.0);
            let values = floats(column)?;
            Some(Box::new(move |row| {
                let v = values(row);
                if !v.is_finite() {
                    Some(format!("{v} is not a number it can hold"))
                } else if v.fract() != 0.0 {
                    Some(format!("{v} is not a whole number, and would be rounded"))
                } else if v < min || v >= max {
                    Some(format!("{v} is out of its range"))
                } else {
                    None
                }
            }))
        }
        (Declared::Numeric { scale }, DataType::Decimal128(precision, from))
            if i32::from(*from) > *scale =>
        {
            let divisor = 10_i128.checked_pow(u32::try_from(i32::from(*from) - scale).ok()?)?;
            let values = column.as_primitive::<Decimal128Type>();
            let (precision, from, scale) = (*precision, *from, *scale);
            Some(Box::new(move |row| {
                (values.value(row) % divisor != 0).then(|| {
                    format!(
                        "{} has more than {scale} decimals, and would be rounded",
                        Decimal128Type::format_decimal(values.value(row), precision, from)
                    )
                })
            }))
        }
        (
            Declared::Numeric { scale },
            DataType::Float16 | DataType::Float32 | DataType::Float64,
        ) => {
            let values = floats(column)?;
            let scale = i64::from(*scale);
            Some(Box::new(move |row| {
                let v = values(row);
                (v.is_finite() && fraction_digits(v) > scale)
                    .then(|| format!("{v} has more than {scale} decimals, and would be rounded"))
            }))
        }
        (
            Declared::Chars { max, padded },
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View,
        ) => {
            let (max, padded) = (*max, *padded);
            let text = strings(column)?;
            Some(Box::new(move |row| {
                let value = text(row);
                let value = if padded {
                    value.trim_end_matches(' ')
                } else {
                    value
                };
                // Bytes bound characters: count only what may be too long.
                if value.len() <= max {
                    return None;
                }
                let chars = value.chars().count();
                (chars > max).then(|| format!("a text of {chars} characters does not fit"))
            }))
        }
        (Declared::FractionalSeconds { digits }, DataType::Timestamp(..) | DataType::Time64(_)) => {
            let (units, per_second) = temporal(column)?;
            let digits = *digits;
            let step = per_second / 10_i64.pow(digits);
            Some(Box::new(move |row| {
                (units(row) % step != 0).then(|| {
                    format!(
                        "the value has more than {digits} digits of a second, and would be rounded"
                    )
                })
            }))
        }
        (
            _,
            DataType::Timestamp(TimeUnit::Nanosecond, _) | DataType::Time64(TimeUnit::Nanosecond),
        ) if temporal_target => {
            let (units, _) = temporal(column)?;
            Some(Box::new(move |row| {
                (units(row) % 1_000 != 0).then(|| {
                    "the value has nanoseconds, and PostgreSQL keeps microseconds".to_string()
                })
            }))
        }
        _ => None,
    }
}

/// Digits after the decimal point in the shortest text that reads back as `v`.
fn fraction_digits(v: f64) -> i64 {
    let text = format!("{v:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i64);
    decimals - exponent.parse::<i64>().unwrap_or(0)
}

fn floats<'a>(column: &'a ArrayRef) -> Option<impl Fn(usize) -> f64 + 'a> {
    enum F<'a> {
        H(&'a arrow::array::Float16Array),
        S(&'a arrow::array::Float32Array),
        D(&'a arrow::array::Float64Array),
    }
    let values = match column.data_type() {
        DataType::Float16 => F::H(column.as_primitive::<Float16Type>()),
        DataType::Float32 => F::S(column.as_primitive::<Float32Type>()),
        DataType::Float64 => F::D(column.as_primitive::<Float64Type>()),
        _ => return None,
    };
    Some(move |row| match &values {
        F::H(a) => f64::from(a.value(row).to_f32()),
        F::S(a) => f64::from(a.value(row)),
        F::D(a) => a.value(row),
    })
}

fn strings<'a>(column: &'a ArrayRef) -> Option<impl Fn(usize) -> &'a str + 'a> {
    enum S<'a> {
        Plain(&'a arrow::array::StringArray),
        Large(&'a arrow::array::LargeStringArray),
        View(&'a arrow::array::StringViewArray),
    }
    let values = match column.data_type() {
        DataType::Utf8 => S::Plain(column.as_string::<i32>()),
        DataType::LargeUtf8 => S::Large(column.as_string::<i64>()),
        DataType::Utf8View => S::View(column.as_string_view()),
        _ => return None,
    };
    Some(move |row| match &values {
        S::Plain(a) => a.value(row),
        S::Large(a) => a.value(row),
        S::View(a) => a.value(row),
    })
}

/// A timestamp or time column's values in its own unit, and how many of them make a
/// second.
fn temporal<'a>(column: &'a ArrayRef) -> Option<(Values<'a>, i64)> {
    Some(match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            let a = column.as_primitive::<TimestampSecondType>();
            (Box::new(move |row| a.value(row)), 1)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let a = column.as_primitive::<TimestampMillisecondType>();
            (Box::new(move |row| a.value(row)), 1_000)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let a = column.as_primitive::<TimestampMicrosecondType>();
            (Box::new(move |row| a.value(row)), 1_000_000)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            let a = column.as_primitive::<TimestampNanosecondType>();
            (Box::new(move |row| a.value(row)), 1_000_000_000)
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let a = column.as_primitive::<Time64MicrosecondType>();
            (Box::new(move |row| a.value(row)), 1_000_000)
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            let a = column.as_primitive::<Time64NanosecondType>();
            (Box::new(move |row| a.value(row)), 1_000_000_000)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::array::{Decimal128Array, Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn refused(columns: Vec<(&str, ArrayRef, &str)>) -> Vec<(usize, String)> {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, c, _)| Field::new(*name, c.data_type().clone(), true))
            .collect();
        let declared: Vec<(String, String)> = columns
            .iter()
            .map(|(name, _, sql)| (name.to_string(), sql.to_string()))
            .collect();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, c, _)| c).collect(),
        )
        .unwrap();
        let mut rejected = Vec::new();
        refuse_misfits(
            &batch,
            |name| {
                declared
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, sql)| (sql.clone(), Declared::parse(sql)))
            },
            &mut rejected,
        );
        rejected.into_iter().map(|r| (r.row, r.reason)).collect()
    }

    #[test]
    fn floats_that_an_integer_column_would_round_are_refused() {
        let values = Arc::new(Float64Array::from(vec![
            Some(10.0),
            Some(10.75),
            Some(0.4),
            None,
            Some(f64::NAN),
            Some(9.3e18),
            Some(-2.0),
        ])) as ArrayRef;
        let rows: Vec<usize> = refused(vec![("n", values, "bigint")])
            .into_iter()
            .map(|(row, _)| row)
            .collect();
        assert_eq!(rows, [1, 2, 4, 5]);
    }

    #[test]
    fn decimals_beyond_the_scale_and_texts_beyond_the_length_are_refused() {
        let amounts = Arc::new(
            Decimal128Array::from(vec![Some(12_300), Some(12_345), None])
                .with_precision_and_scale(10, 3)
                .unwrap(),
        ) as ArrayRef;
        let floats =
            Arc::new(Float64Array::from(vec![Some(1.25), Some(1.5), Some(1e20)])) as ArrayRef;
        let codes = Arc::new(StringArray::from(vec![
            Some("AB"),
            Some("ÅÅÅÅÅ"),
            Some("TOOLONGCODE"),
        ])) as ArrayRef;
        let out = refused(vec![
            ("amount", amounts, "numeric(12,2)"),
            ("ratio", floats, "numeric(8,1)"),
            ("code", codes, "character varying(5)"),
        ]);
        let rows: Vec<usize> = out.iter().map(|(row, _)| *row).collect();
        assert_eq!(rows, [1, 0, 2], "{out:?}");
        assert!(
            out[0].1.contains("12.345 has more than 2 decimals"),
            "{out:?}"
        );
        assert!(out[2].1.contains("character varying(5)"), "{out:?}");
        assert_eq!(fraction_digits(10.75), 2);
        assert_eq!(fraction_digits(0.4), 1);
        assert_eq!(fraction_digits(1e20), -20);
    }
}
