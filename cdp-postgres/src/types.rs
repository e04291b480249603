//! PostgreSQL types and Arrow types, both ways, and values rendered as SQL text.
//!
//! | PostgreSQL | Arrow | notes |
//! |---|---|---|
//! | `boolean` | `Boolean` | |
//! | `smallint`, `integer`, `bigint` | `Int16`, `Int32`, `Int64` | |
//! | `real`, `double precision` | `Float32`, `Float64` | |
//! | `numeric(p,s)`, p ≤ 38 | `Decimal128(p,s)` | `NaN` reads as null |
//! | `numeric` (no precision), `numeric(p,s)` p > 38 | `Utf8` | the exact decimal text |
//! | `text`, `varchar`, `char`, `name`, `citext` | `Utf8` | |
//! | `json`, `jsonb` | `Utf8` | JSON text |
//! | `uuid` | `Utf8` | canonical lower-case text |
//! | `bytea` | `Binary` | |
//! | `date` | `Date32` | `±infinity` reads as null |
//! | `timestamp` | `Timestamp(µs)` | `±infinity` reads as null |
//! | `timestamptz` | `Timestamp(µs, "UTC")` | `±infinity` reads as null |
//! | `time` | `Time64(µs)` | |
//! | one-dimensional arrays of the above | `List` | |
//! | anything else (enums, `inet`, `interval`, …) | `Utf8` | PostgreSQL's text output |
//!
//! `uuid` maps to `Utf8` rather than `FixedSizeBinary(16)` because every other connector,
//! the record hash and identity matching treat identifiers as text; a 16-byte binary would
//! need converting at every one of them. Every field read from PostgreSQL carries its
//! declared type in the field metadata key [`PG_TYPE_METADATA`], so a PostgreSQL
//! destination recreates `jsonb`, `uuid`, unconstrained `numeric` and the text-mapped types
//! instead of plain `text`.

use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, StringArray, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveTime};

/// Field metadata key holding the PostgreSQL type a column was read from
/// (`format_type` output, e.g. `jsonb`, `character varying(40)`, `numeric(12,2)[]`).
pub const PG_TYPE_METADATA: &str = "cdp.postgres.type";

/// Days from 1970-01-01 (Arrow) to 2000-01-01 (PostgreSQL).
pub(crate) const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 (Arrow) to 2000-01-01 (PostgreSQL).
pub(crate) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// How a value travels in PostgreSQL's binary format, which fixes its Arrow type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgKind {
    /// `boolean`.
    Bool,
    /// `smallint`.
    Int2,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `real`.
    Float4,
    /// `double precision`.
    Float8,
    /// `numeric(precision, scale)`, read into `Decimal128`.
    Numeric {
        /// Total digits, at most 38.
        precision: u8,
        /// Digits after the decimal point.
        scale: i8,
    },
    /// Text-format types: `text`, `varchar`, `char`, `name`, `json`, and anything cast to text.
    Text,
    /// `jsonb`, read as its JSON text.
    Jsonb,
    /// `uuid`, read as canonical lower-case text.
    Uuid,
    /// `bytea`.
    Bytea,
    /// `date`.
    Date,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `timestamptz`, read as UTC.
    Timestamptz,
    /// `time` (without time zone).
    Time,
    /// One-dimensional array of the element kind.
    Array(Box<PgKind>),
}

impl PgKind {
    /// The kind PostgreSQL's binary output of type `oid` (typmod `typmod`) decodes as, or
    /// `None` when the column should be read through a cast to `text`.
    pub fn from_oid(oid: u32, typmod: i32) -> Option<PgKind> {
        Some(match oid {
            16 => PgKind::Bool,
            21 => PgKind::Int2,
            23 => PgKind::Int4,
            20 => PgKind::Int8,
            700 => PgKind::Float4,
            701 => PgKind::Float8,
            1700 => {
                let (precision, scale) = numeric_typmod(typmod)?;
                if precision == 0 || precision > 38 {
                    return None;
                }
                PgKind::Numeric {
                    precision: u8::try_from(precision).ok()?,
                    scale: i8::try_from(scale).ok()?,
                }
            }
            25 | 1043 | 1042 | 19 | 114 => PgKind::Text,
            3802 => PgKind::Jsonb,
            2950 => PgKind::Uuid,
            17 => PgKind::Bytea,
            1082 => PgKind::Date,
            1114 => PgKind::Timestamp,
            1184 => PgKind::Timestamptz,
            1083 => PgKind::Time,
            _ => return None,
        })
    }

    /// The element type's oid, written into array headers.
    pub fn oid(&self) -> u32 {
        match self {
            PgKind::Bool => 16,
            PgKind::Int2 => 21,
            PgKind::Int4 => 23,
            PgKind::Int8 => 20,
            PgKind::Float4 => 700,
            PgKind::Float8 => 701,
            PgKind::Numeric { .. } => 1700,
            PgKind::Text => 25,
            PgKind::Jsonb => 3802,
            PgKind::Uuid => 2950,
            PgKind::Bytea => 17,
            PgKind::Date => 1082,
            PgKind::Timestamp => 1114,
            PgKind::Timestamptz => 1184,
            PgKind::Time => 1083,
            PgKind::Array(element) => match **element {
                PgKind::Bool => 1000,
                PgKind::Int2 => 1005,
                PgKind::Int4 => 1007,
                PgKind::Int8 => 1016,
                PgKind::Float4 => 1021,
                PgKind::Float8 => 1022,
                PgKind::Numeric { .. } => 1231,
                PgKind::Jsonb => 3807,
                PgKind::Uuid => 2951,
                PgKind::Bytea => 1001,
                PgKind::Date => 1182,
                PgKind::Timestamp => 1115,
                PgKind::Timestamptz => 1185,
                PgKind::Time => 1183,
                PgKind::Text | PgKind::Array(_) => 1009,
            },
        }
    }

    /// The Arrow type values of this kind are read into.
    pub fn arrow_type(&self) -> DataType {
        match self {
            PgKind::Bool => DataType::Boolean,
            PgKind::Int2 => DataType::Int16,
            PgKind::Int4 => DataType::Int32,
            PgKind::Int8 => DataType::Int64,
            PgKind::Float4 => DataType::Float32,
            PgKind::Float8 => DataType::Float64,
            PgKind::Numeric { precision, scale } => DataType::Decimal128(*precision, *scale),
            PgKind::Text | PgKind::Jsonb | PgKind::Uuid => DataType::Utf8,
            PgKind::Bytea => DataType::Binary,
            PgKind::Date => DataType::Date32,
            PgKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgKind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            PgKind::Time => DataType::Time64(TimeUnit::Microsecond),
            PgKind::Array(element) => {
                DataType::List(Arc::new(Field::new_list_field(element.arrow_type(), true)))
            }
        }
    }

    /// The SQL type this kind is written as.
    pub fn sql_type(&self) -> String {
        match self {
            PgKind::Bool => "boolean".into(),
            PgKind::Int2 => "smallint".into(),
            PgKind::Int4 => "integer".into(),
            PgKind::Int8 => "bigint".into(),
            PgKind::Float4 => "real".into(),
            PgKind::Float8 => "double precision".into(),
            PgKind::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
            PgKind::Text => "text".into(),
            PgKind::Jsonb => "jsonb".into(),
            PgKind::Uuid => "uuid".into(),
            PgKind::Bytea => "bytea".into(),
            PgKind::Date => "date".into(),
            PgKind::Timestamp => "timestamp".into(),
            PgKind::Timestamptz => "timestamptz".into(),
            PgKind::Time => "time".into(),
            PgKind::Array(element) => format!("{}[]", element.sql_type()),
        }
    }

    /// The kind an Arrow column is written as, after [`normalized`](crate::copy::normalized)
    /// has cast the types the encoder does not take directly. `None`: not writable.
    pub fn from_arrow(data_type: &DataType) -> Option<PgKind> {
        Some(match data_type {
            DataType::Boolean => PgKind::Bool,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => PgKind::Int2,
            DataType::Int32 | DataType::UInt16 => PgKind::Int4,
            DataType::Int64 | DataType::UInt32 => PgKind::Int8,
            DataType::UInt64 => PgKind::Numeric {
                precision: 20,
                scale: 0,
            },
            DataType::Float16 | DataType::Float32 => PgKind::Float4,
            DataType::Float64 => PgKind::Float8,
            DataType::Decimal128(precision, scale) => PgKind::Numeric {
                precision: *precision,
                scale: *scale,
            },
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PgKind::Text,
            DataType::Dictionary(_, value) if value.is_string() => PgKind::Text,
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => PgKind::Bytea,
            DataType::Date32 | DataType::Date64 => PgKind::Date,
            DataType::Timestamp(_, None) => PgKind::Timestamp,
            DataType::Timestamp(_, Some(_)) => PgKind::Timestamptz,
            DataType::Time32(_) | DataType::Time64(_) => PgKind::Time,
            DataType::List(field) | DataType::LargeList(field) => {
                match PgKind::from_arrow(field.data_type())? {
                    PgKind::Array(_) => return None,
                    element => PgKind::Array(Box::new(element)),
                }
            }
            _ => return None,
        })
    }
}

/// Precision and scale of a `numeric` typmod; `None` for unconstrained `numeric`.
fn numeric_typmod(typmod: i32) -> Option<(i32, i32)> {
    if typmod < 4 {
        return None;
    }
    let packed = typmod - 4;
    let precision = (packed >> 16) & 0xffff;
    // The scale is an 11-bit two's-complement number since PostgreSQL 15.
    let scale = ((packed & 0x7ff) ^ 1024) - 1024;
    Some((precision, scale))
}

/// Types a column of which can serve as a cursor: ordered, and growing with new rows in
/// the usual schemas.
pub fn is_cursor_kind(kind: &PgKind) -> bool {
    matches!(
        kind,
        PgKind::Int2
            | PgKind::Int4
            | PgKind::Int8
            | PgKind::Numeric { .. }
            | PgKind::Date
            | PgKind::Timestamp
            | PgKind::Timestamptz
    )
}

/// Renders row `row` of `array` as PostgreSQL input text, for cursors, keys and literals.
/// `Ok(None)` for null; an error for types that cannot be keys (lists).
pub fn value_text(array: &dyn Array, row: usize) -> Result<Option<String>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    let text = match array.data_type() {
        DataType::Boolean => downcast::<BooleanArray>(array)?.value(row).to_string(),
        DataType::Int16 => downcast::<Int16Array>(array)?.value(row).to_string(),
        DataType::Int32 => downcast::<Int32Array>(array)?.value(row).to_string(),
        DataType::Int64 => downcast::<Int64Array>(array)?.value(row).to_string(),
        DataType::Float32 => float_text(f64::from(downcast::<Float32Array>(array)?.value(row))),
        DataType::Float64 => float_text(downcast::<Float64Array>(array)?.value(row)),
        DataType::Decimal128(_, _) => downcast::<Decimal128Array>(array)?.value_as_string(row),
        DataType::Utf8 => downcast::<StringArray>(array)?.value(row).to_string(),
        DataType::Binary => {
            let bytes = array.as_binary::<i32>().value(row);
            let mut text = String::with_capacity(2 + 2 * bytes.len());
            text.push_str("\\x");
            for b in bytes {
                text.push_str(&format!("{b:02x}"));
            }
            text
        }
        DataType::Date32 => {
            let days = downcast::<Date32Array>(array)?.value(row);
            NaiveDate::default()
                .checked_add_signed(chrono::Duration::days(i64::from(days)))
                .map(|d| d.format("%Y-%m-%d").to_string())
                .ok_or_else(|| format!("date {days} out of range"))?
        }
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            let micros = downcast::<TimestampMicrosecondArray>(array)?.value(row);
            let at = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| format!("timestamp {micros} out of range"))?;
            let text = at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            if zone.is_some() {
                format!("{text}+00")
            } else {
                text
            }
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let micros = downcast::<Time64MicrosecondArray>(array)?.value(row);
            let secs = u32::try_from(micros.div_euclid(1_000_000)).map_err(|e| e.to_string())?;
            let nanos =
                u32::try_from(micros.rem_euclid(1_000_000) * 1000).map_err(|e| e.to_string())?;
            NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
                .map(|t| t.format("%H:%M:%S%.6f").to_string())
                .ok_or_else(|| format!("time {micros} out of range"))?
        }
        other => return Err(format!("a {other} value cannot be a cursor or key")),
    };
    Ok(Some(text))
}

fn float_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        // Rust's shortest representation that reads back to the same value.
        format!("{value:?}")
    }
}

fn downcast<T: 'static>(array: &dyn Array) -> Result<&T, String> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("unexpected array type {}", array.data_type()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_typmods() {
        // numeric(12,2): ((12 << 16) | 2) + 4
        assert_eq!(numeric_typmod((12 << 16) + 2 + 4), Some((12, 2)));
        assert_eq!(numeric_typmod(-1), None);
        assert_eq!(
            PgKind::from_oid(1700, (12 << 16) + 2 + 4),
            Some(PgKind::Numeric {
                precision: 12,
                scale: 2
            })
        );
        assert_eq!(PgKind::from_oid(1700, -1), None);
        assert_eq!(PgKind::from_oid(1700, (40 << 16) + 4), None);
    }

    #[test]
    fn arrow_round_trip_of_kinds() {
        for kind in [
            PgKind::Bool,
            PgKind::Int2,
            PgKind::Int4,
            PgKind::Int8,
            PgKind::Float4,
            PgKind::Float8,
            PgKind::Numeric {
                precision: 10,
                scale: 3,
            },
            PgKind::Text,
            PgKind::Bytea,
            PgKind::Date,
            PgKind::Timestamp,
            PgKind::Timestamptz,
            PgKind::Time,
            PgKind::Array(Box::new(PgKind::Int8)),
        ] {
            assert_eq!(PgKind::from_arrow(&kind.arrow_type()), Some(kind));
        }
    }

    #[test]
    fn values_render_as_postgres_input() {
        let ts = TimestampMicrosecondArray::from(vec![1_700_000_000_123_456]).with_timezone("UTC");
        assert_eq!(
            value_text(&ts, 0).unwrap().unwrap(),
            "2023-11-14 22:13:20.123456+00"
        );
        let d = Decimal128Array::from(vec![-12345])
            .with_precision_and_scale(10, 2)
            .unwrap();
        assert_eq!(value_text(&d, 0).unwrap().unwrap(), "-123.45");
        let f = Float64Array::from(vec![0.1]);
        assert_eq!(value_text(&f, 0).unwrap().unwrap(), "0.1");
        let date = Date32Array::from(vec![19_000]);
        assert_eq!(value_text(&date, 0).unwrap().unwrap(), "2022-01-08");
    }
}
