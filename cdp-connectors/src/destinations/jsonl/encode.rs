//! Values JSON has no literal for, written as documented instead of changed.
//!
//! arrow-json writes NaN and ±infinity as `null`, and a value its formatter cannot render
//! (a PostgreSQL `time '24:00:00'`, a date beyond chrono's range) as the error message
//! text. Neither keeps the value. So:
//!
//! - NaN, `+∞` and `−∞` are written as the strings `"NaN"`, `"Infinity"` and
//!   `"-Infinity"` (what PostgreSQL, JavaScript's `Number()` and arrow's own number parser
//!   read back), finite values as numbers, as before;
//! - the end of the day (`24:00:00`, which PostgreSQL's `time` holds and chrono does not) is
//!   written as `"24:00:00"`;
//! - a row holding any other temporal value that cannot be rendered is refused (it becomes
//!   a dead letter with the reason) instead of written with an error message for a value.

use std::io::Write;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, FieldRef, Float16Type, Float32Type,
    Float64Type, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampSecondType,
};
use arrow::error::ArrowError;
use arrow_json::writer::{Encoder, EncoderFactory, EncoderOptions, NullableEncoder};
use cdp_core::RejectedRow;

/// The encoder factory of the JSONL destination: see the [module docs](self).
#[derive(Debug)]
pub(crate) struct ExactValues;

impl EncoderFactory for ExactValues {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        let nulls = || array.nulls().cloned();
        let encoder: Box<dyn Encoder + 'a> = match array.data_type() {
            DataType::Float16 => {
                let values = array.as_primitive::<Float16Type>();
                if values.values().iter().all(|v| v.is_finite()) {
                    return Ok(None);
                }
                Box::new(FloatEncoder(values, |v| f64::from(v.to_f32())))
            }
            DataType::Float32 => {
                let values = array.as_primitive::<Float32Type>();
                if values.values().iter().all(|v| v.is_finite()) {
                    return Ok(None);
                }
                Box::new(FloatEncoder(values, f64::from))
            }
            DataType::Float64 => {
                let values = array.as_primitive::<Float64Type>();
                if values.values().iter().all(|v| v.is_finite()) {
                    return Ok(None);
                }
                Box::new(FloatEncoder(values, |v| v))
            }
            DataType::Time32(_) | DataType::Time64(_) => {
                let Some(per_second) = time_units_per_second(array.data_type()) else {
                    return Ok(None);
                };
                let day = 86_400 * per_second;
                let micros = time_micros(array)?;
                let ends_a_day = (0..array.len()).any(|i| array.is_valid(i) && micros[i] == day);
                if !ends_a_day {
                    return Ok(None);
                }
                Box::new(TimeEncoder {
                    micros,
                    day,
                    per_second,
                })
            }
            _ => return Ok(None),
        };
        Ok(Some(NullableEncoder::new(encoder, nulls())))
    }
}

/// Floats with NaN or infinities among them.
struct FloatEncoder<'a, T: ArrowPrimitiveType>(&'a PrimitiveArray<T>, fn(T::Native) -> f64);

impl<T: ArrowPrimitiveType> Encoder for FloatEncoder<'_, T> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let value = (self.1)(self.0.value(idx));
        let text: &[u8] = if value.is_nan() {
            b"\"NaN\""
        } else if value == f64::INFINITY {
            b"\"Infinity\""
        } else if value == f64::NEG_INFINITY {
            b"\"-Infinity\""
        } else {
            // Finite: serde_json writes the shortest text that reads back to the same value.
            let _ = serde_json::to_writer(&mut *out, &value);
            return;
        };
        out.extend_from_slice(text);
    }
}

/// Times of day with the end of the day (`24:00:00`) among them; every value is in the
/// column's own unit (`per_second` of them a second).
struct TimeEncoder {
    micros: Vec<i64>,
    day: i64,
    per_second: i64,
}

impl Encoder for TimeEncoder {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let value = self.micros[idx];
        out.push(b'"');
        if value == self.day {
            out.extend_from_slice(b"24:00:00");
        } else {
            let secs = value.div_euclid(self.per_second);
            let frac = value.rem_euclid(self.per_second);
            let nanos = frac * (1_000_000_000 / self.per_second);
            match chrono::NaiveTime::from_num_seconds_from_midnight_opt(
                u32::try_from(secs).unwrap_or(u32::MAX),
                u32::try_from(nanos).unwrap_or(u32::MAX),
            ) {
                Some(time) => {
                    let _ = write!(out, "{time}");
                }
                // Refused before writing (see `unrenderable`); never reached.
                None => out.extend_from_slice(b"?"),
            }
        }
        out.push(b'"');
    }
}

fn time_units_per_second(data_type: &DataType) -> Option<i64> {
    Some(match data_type {
        DataType::Time32(TimeUnit::Second) => 1,
        DataType::Time32(TimeUnit::Millisecond) => 1_000,
        DataType::Time64(TimeUnit::Microsecond) => 1_000_000,
        DataType::Time64(TimeUnit::Nanosecond) => 1_000_000_000,
        _ => return None,
    })
}

/// A time column's values as `i64`, in its own unit.
fn time_micros(array: &dyn Array) -> Result<Vec<i64>, ArrowError> {
    Ok(match array.data_type() {
        DataType::Time32(TimeUnit::Second) => widen(array.as_primitive::<Time32SecondType>()),
        DataType::Time32(TimeUnit::Millisecond) => {
            widen(array.as_primitive::<Time32MillisecondType>())
        }
        DataType::Time64(TimeUnit::Microsecond) => array
            .as_primitive::<Time64MicrosecondType>()
            .values()
            .to_vec(),
        DataType::Time64(TimeUnit::Nanosecond) => array
            .as_primitive::<Time64NanosecondType>()
            .values()
            .to_vec(),
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "{other} is not a time type"
            )));
        }
    })
}

fn widen<T: ArrowPrimitiveType<Native = i32>>(array: &PrimitiveArray<T>) -> Vec<i64> {
    array.values().iter().map(|v| i64::from(*v)).collect()
}

/// The rows of `batch` holding a top-level temporal value the JSON writer cannot render
/// (a time outside `00:00:00`–`24:00:00`, a date or timestamp beyond chrono's range), each
/// with the reason. Cheap when there are none: each column's range is checked first.
pub(crate) fn unrenderable(batch: &RecordBatch) -> Vec<RejectedRow> {
    let mut refused: Vec<RejectedRow> = Vec::new();
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let bad = bad_rows(column);
        for row in bad {
            if refused.iter().any(|r| r.row == row) {
                continue;
            }
            refused.push(RejectedRow {
                row,
                reason: format!(
                    "column `{}` holds a {} value outside the range JSON text can render \
                     (times 00:00:00 to 24:00:00, dates and timestamps within ±262,000 years)",
                    field.name(),
                    column.data_type()
                ),
            });
        }
    }
    refused.sort_by_key(|r| r.row);
    refused
}

/// Rows of a temporal column whose values fall outside what can be rendered.
fn bad_rows(column: &ArrayRef) -> Vec<usize> {
    fn outside<T: ArrowPrimitiveType>(
        array: &PrimitiveArray<T>,
        ok: impl Fn(T::Native) -> bool,
    ) -> Vec<usize>
    where
        T::Native: Copy,
    {
        if array.values().iter().all(|v| ok(*v)) {
            return Vec::new();
        }
        (0..array.len())
            .filter(|&i| array.is_valid(i) && !ok(array.value(i)))
            .collect()
    }
    // chrono's range, as days (and seconds) from 1970-01-01.
    let epoch = chrono::NaiveDate::default();
    let max_days = (chrono::NaiveDate::MAX - epoch).num_days();
    let min_days = (chrono::NaiveDate::MIN - epoch).num_days();
    let seconds_ok = move |s: i64| (min_days * 86_400..=max_days * 86_400 + 86_399).contains(&s);
    match column.data_type() {
        DataType::Time32(_) | DataType::Time64(_) => {
            let (Some(per_second), Ok(values)) = (
                time_units_per_second(column.data_type()),
                time_micros(column.as_ref()),
            ) else {
                return Vec::new();
            };
            let day = 86_400 * per_second;
            (0..column.len())
                .filter(|&i| column.is_valid(i) && !(0..=day).contains(&values[i]))
                .collect()
        }
        DataType::Date32 => outside(column.as_primitive::<Date32Type>(), |d| {
            (min_days..=max_days).contains(&i64::from(d))
        }),
        DataType::Date64 => outside(column.as_primitive::<Date64Type>(), |ms| {
            seconds_ok(ms.div_euclid(1_000))
        }),
        DataType::Timestamp(TimeUnit::Second, _) => {
            outside(column.as_primitive::<TimestampSecondType>(), seconds_ok)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            outside(column.as_primitive::<TimestampMillisecondType>(), |v| {
                seconds_ok(v.div_euclid(1_000))
            })
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            outside(column.as_primitive::<TimestampMicrosecondType>(), |v| {
                seconds_ok(v.div_euclid(1_000_000))
            })
        }
        // Every i64 of nanoseconds is within chrono's range, and nothing else is temporal.
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::array::{Date32Array, Float64Array, Time64MicrosecondArray};
    use arrow::datatypes::{Field, Schema};
    use arrow_json::writer::{LineDelimited, WriterBuilder};

    use super::*;

    fn write(batch: &RecordBatch) -> String {
        let mut out = Vec::new();
        let mut writer = WriterBuilder::new()
            .with_encoder_factory(Arc::new(ExactValues))
            .build::<_, LineDelimited>(&mut out);
        writer.write(batch).unwrap();
        writer.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn non_finite_floats_and_the_end_of_the_day_keep_their_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Float64, true),
            Field::new("t", DataType::Time64(TimeUnit::Microsecond), true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![
                    Some(f64::NAN),
                    Some(f64::INFINITY),
                    Some(f64::NEG_INFINITY),
                    Some(0.1),
                    None,
                ])),
                Arc::new(Time64MicrosecondArray::from(vec![
                    Some(86_400_000_000),
                    Some(3_723_500_000),
                    None,
                    Some(0),
                    None,
                ])),
            ],
        )
        .unwrap();
        assert!(unrenderable(&batch).is_empty());
        let text = write(&batch);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"f":"NaN","t":"24:00:00"}"#,
                r#"{"f":"Infinity","t":"01:02:03.500"}"#,
                r#"{"f":"-Infinity"}"#,
                r#"{"f":0.1,"t":"00:00:00"}"#,
                r#"{}"#,
            ]
        );
    }

    #[test]
    fn values_that_cannot_be_rendered_are_refused_row_by_row() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Time64(TimeUnit::Microsecond), true),
            Field::new("d", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Time64MicrosecondArray::from(vec![
                    Some(86_400_000_001),
                    Some(1),
                    Some(1),
                ])),
                Arc::new(Date32Array::from(vec![Some(1), Some(i32::MAX), None])),
            ],
        )
        .unwrap();
        let rows: Vec<usize> = unrenderable(&batch).iter().map(|r| r.row).collect();
        assert_eq!(rows, [0, 1]);
    }
}
