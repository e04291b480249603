//! Type promotion rules on Arrow types, in the spirit of Avro and Iceberg, and the readable
//! and canonical names of types.
//!
//! A *promotion* is a change of a field's type that readers of the new type can apply to
//! data written with the old one. Which promotions are allowed depends on the rule set:
//!
//! | from → to | [`Avro`](Promotions::Avro) | [`Iceberg`](Promotions::Iceberg) | [`Arrow`](Promotions::Arrow) |
//! |---|---|---|---|
//! | int32 → int64 | yes | yes | yes |
//! | int32 → float32 / float64 | yes | no | yes |
//! | int64 → float32 / float64 | yes | no | yes |
//! | float32 → float64 | yes | yes | yes |
//! | string ↔ bytes | yes | no | string → bytes only |
//! | decimal(P,S) → decimal(P',S), P' > P | no | yes | yes (also S' ≥ S keeping integer digits) |
//! | date → timestamp / timestamp_ns (no zone) | no | yes (v3) | yes |
//! | null (Iceberg `unknown`) → any | no | yes (v3) | yes |
//! | utf8 → large utf8, binary → large binary, int8 → int16, … | same Avro type | same Iceberg type | yes |
//!
//! Dictionary encoding and view layouts (`Utf8View`, `BinaryView`) are encodings, not
//! types: a change between `Dictionary(_, Utf8)`, `Utf8View` and `Utf8` is no change.
//! Narrowing (the reverse of a promotion) and every other change are refused.

use arrow::datatypes::{DataType, Field, IntervalUnit, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Field metadata key: comma-separated earlier names of the field (explicit renames).
pub const ALIASES_KEY: &str = "cdp.aliases";
/// Field metadata key: the value readers use when the field is missing (any non-empty
/// text; its presence is what makes adding a required field compatible).
pub const DEFAULT_KEY: &str = "cdp.default";
/// Field metadata key: the unit of measure (`cents`, `ms`, `kg`).
pub const UNIT_KEY: &str = "cdp.unit";
/// Field metadata key: the format of textual values (`email`, `iso8601`, `e164`).
pub const FORMAT_KEY: &str = "cdp.format";
/// Field metadata key: the governance data class (`pii.email`, `financial`).
pub const DATA_CLASS_KEY: &str = "cdp.data_class";
/// The metadata keys whose change is a semantic change, with their display names.
pub const SEMANTIC_KEYS: [(&str, &str); 3] = [
    (UNIT_KEY, "unit"),
    (FORMAT_KEY, "format"),
    (DATA_CLASS_KEY, "data class"),
];

/// The earlier names a field declares in [`ALIASES_KEY`].
pub fn aliases(field: &Field) -> Vec<&str> {
    field
        .metadata()
        .get(ALIASES_KEY)
        .map(|a| {
            a.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Which type promotions count as compatible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Promotions {
    /// Avro schema resolution: int → long, float, double; long → float, double;
    /// float → double; string ↔ bytes. Decimals must match exactly.
    Avro,
    /// Iceberg schema evolution: int → long; float → double; decimal precision widening
    /// at the same scale; date → timestamp(\_ns); unknown (null) → any.
    Iceberg,
    /// Both of the above (except bytes → string, which can fail on invalid UTF-8), plus
    /// every lossless Arrow widening (int8 → int16, uint32 → int64, utf8 → large utf8,
    /// list → large list, decimal128 → decimal256, …). The default.
    #[default]
    Arrow,
}

impl std::fmt::Display for Promotions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Promotions::Avro => "avro",
            Promotions::Iceberg => "iceberg",
            Promotions::Arrow => "arrow",
        })
    }
}

/// How a field's new type relates to its old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeRelation {
    /// The same logical type (possibly another encoding).
    Same,
    /// The new type is a promotion of the old one: old data reads as new.
    Widened,
    /// The old type is a promotion of the new one: new data reads as old, not the reverse.
    Narrowed,
    /// Neither reads as the other.
    Incompatible,
}

/// How `new` relates to `old` under `rules`. Nested types relate as their containers
/// (use the diff or compatibility check for their children).
pub fn relate(old: &DataType, new: &DataType, rules: Promotions) -> TypeRelation {
    if same_logical(old, new) {
        TypeRelation::Same
    } else if can_promote(old, new, rules) {
        TypeRelation::Widened
    } else if can_promote(new, old, rules) {
        TypeRelation::Narrowed
    } else {
        TypeRelation::Incompatible
    }
}

/// The type with dictionary encoding and view layouts removed.
pub fn logical(data_type: &DataType) -> &DataType {
    match data_type {
        DataType::Dictionary(_, value) => logical(value),
        DataType::Utf8View => &DataType::Utf8,
        DataType::BinaryView => &DataType::Binary,
        other => other,
    }
}

/// Whether two types are the same logical type (ignoring encoding).
pub fn same_logical(a: &DataType, b: &DataType) -> bool {
    let (a, b) = (logical(a), logical(b));
    match (a, b) {
        (DataType::List(x), DataType::ListView(y))
        | (DataType::ListView(x), DataType::List(y))
        | (DataType::LargeList(x), DataType::LargeListView(y))
        | (DataType::LargeListView(x), DataType::LargeList(y)) => {
            x.is_nullable() == y.is_nullable() && same_logical(x.data_type(), y.data_type())
        }
        _ => a == b,
    }
}

/// Whether a value of type `from` can be read as `to` under `rules` (a strict promotion:
/// `false` when the types are the same). Only the container is judged for nested types.
pub fn can_promote(from: &DataType, to: &DataType, rules: Promotions) -> bool {
    let (from, to) = (logical(from), logical(to));
    if from == to {
        return false;
    }
    match rules {
        Promotions::Avro => avro_promotes(from, to),
        Promotions::Iceberg => iceberg_promotes(from, to),
        Promotions::Arrow => {
            lossless(from, to)
                || iceberg_promotes(from, to)
                || (avro_promotes(from, to) && !(is_binary(from) && is_string(to)))
        }
    }
}

/// Avro's primitive types, as Arrow types map onto them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AvroKind {
    Int,
    Long,
    Float,
    Double,
    String,
    Bytes,
}

fn avro_kind(t: &DataType) -> Option<AvroKind> {
    use DataType::*;
    Some(match t {
        Int8 | Int16 | Int32 | UInt8 | UInt16 => AvroKind::Int,
        Int64 | UInt32 => AvroKind::Long,
        Float16 | Float32 => AvroKind::Float,
        Float64 => AvroKind::Double,
        Utf8 | LargeUtf8 => AvroKind::String,
        Binary | LargeBinary => AvroKind::Bytes,
        _ => return None,
    })
}

fn avro_promotes(from: &DataType, to: &DataType) -> bool {
    use AvroKind::*;
    match (avro_kind(from), avro_kind(to)) {
        (Some(a), Some(b)) if a == b => lossless(from, to),
        (Some(a), Some(b)) => matches!(
            (a, b),
            (Int, Long | Float | Double)
                | (Long, Float | Double)
                | (Float, Double)
                | (String, Bytes)
                | (Bytes, String)
        ),
        // Other types (decimals, dates, nested) resolve only when identical in Avro;
        // their lossless Arrow encodings (list -> large list) still read.
        _ => is_container_widening(from, to),
    }
}

/// Iceberg's primitive types, as Arrow types map onto them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IcebergKind {
    Unknown,
    Int,
    Long,
    Float,
    Double,
    Decimal(u8, i8),
    Date,
    Timestamp { nanos: bool, zoned: bool },
    String,
    Binary,
    Other,
}

fn iceberg_kind(t: &DataType) -> IcebergKind {
    use DataType::*;
    match t {
        Null => IcebergKind::Unknown,
        Int8 | Int16 | Int32 | UInt8 | UInt16 => IcebergKind::Int,
        Int64 | UInt32 => IcebergKind::Long,
        Float16 | Float32 => IcebergKind::Float,
        Float64 => IcebergKind::Double,
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => {
            IcebergKind::Decimal(*p, *s)
        }
        Date32 | Date64 => IcebergKind::Date,
        Timestamp(unit, tz) => IcebergKind::Timestamp {
            nanos: *unit == TimeUnit::Nanosecond,
            zoned: tz.is_some(),
        },
        Utf8 | LargeUtf8 => IcebergKind::String,
        Binary | LargeBinary => IcebergKind::Binary,
        _ => IcebergKind::Other,
    }
}

fn iceberg_promotes(from: &DataType, to: &DataType) -> bool {
    use IcebergKind::*;
    let (a, b) = (iceberg_kind(from), iceberg_kind(to));
    match (a, b) {
        (Unknown, _) => true,
        (Int, Long) | (Float, Double) => true,
        (Decimal(p1, s1), Decimal(p2, s2)) => s1 == s2 && p2 > p1,
        (Date, Timestamp { zoned: false, .. }) => {
            matches!(
                to,
                DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _)
            )
        }
        (Other, Other) => is_container_widening(from, to),
        (a, b) if a == b => lossless(from, to),
        _ => false,
    }
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_binary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

/// Bits of a signed or unsigned integer type, with its signedness.
fn int_bits(t: &DataType) -> Option<(u32, bool)> {
    use DataType::*;
    Some(match t {
        Int8 => (8, true),
        Int16 => (16, true),
        Int32 => (32, true),
        Int64 => (64, true),
        UInt8 => (8, false),
        UInt16 => (16, false),
        UInt32 => (32, false),
        UInt64 => (64, false),
        _ => return None,
    })
}

/// Mantissa bits of a float type (integers up to this many bits convert exactly).
fn float_mantissa(t: &DataType) -> Option<u32> {
    match t {
        DataType::Float16 => Some(11),
        DataType::Float32 => Some(24),
        DataType::Float64 => Some(53),
        _ => None,
    }
}

fn decimal(t: &DataType) -> Option<(u8, i8, u8)> {
    match t {
        DataType::Decimal32(p, s) => Some((*p, *s, 9)),
        DataType::Decimal64(p, s) => Some((*p, *s, 18)),
        DataType::Decimal128(p, s) => Some((*p, *s, 38)),
        DataType::Decimal256(p, s) => Some((*p, *s, 76)),
        _ => None,
    }
}

/// Arrow widenings that keep every value exactly.
fn lossless(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if let (Some((fb, fs)), Some((tb, ts))) = (int_bits(from), int_bits(to)) {
        return match (fs, ts) {
            (true, true) | (false, false) => tb > fb,
            (false, true) => tb > fb,
            (true, false) => false,
        };
    }
    if let (Some((fb, _)), Some(m)) = (int_bits(from), float_mantissa(to)) {
        return fb < m;
    }
    if let (Some(fm), Some(tm)) = (float_mantissa(from), float_mantissa(to)) {
        return tm > fm;
    }
    if let (Some((p1, s1, _)), Some((p2, s2, max2))) = (decimal(from), decimal(to)) {
        let int_digits = |p: u8, s: i8| i16::from(p) - i16::from(s);
        return p2 <= max2 && s2 >= s1 && int_digits(p2, s2) >= int_digits(p1, s1);
    }
    if let (Some((bits, _)), Some((p, s, _))) = (int_bits(from), decimal(to)) {
        let digits: i16 = match bits {
            8 => 3,
            16 => 5,
            32 => 10,
            _ => 20,
        };
        return i16::from(p) - i16::from(s) >= digits;
    }
    match (from, to) {
        (Null, _) => true,
        (Utf8, LargeUtf8) | (Binary, LargeBinary) => true,
        (Utf8 | LargeUtf8, Binary | LargeBinary) => true,
        (FixedSizeBinary(_), Binary | LargeBinary) => true,
        (Date32, Date64) => true,
        _ => is_container_widening(from, to),
    }
}

/// List containers that hold more (or the same) with the same element semantics; the
/// element types are compared separately.
fn is_container_widening(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    matches!(
        (from, to),
        (
            List(_) | ListView(_) | FixedSizeList(..),
            LargeList(_) | LargeListView(_)
        ) | (FixedSizeList(..), List(_) | ListView(_))
    )
}

/// The element field of a list-like type.
pub fn list_element(t: &DataType) -> Option<&Field> {
    match logical(t) {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => Some(f),
        _ => None,
    }
}

/// Whether the type has children (struct, list, map, union, run-end encoded).
pub fn is_nested(t: &DataType) -> bool {
    matches!(
        logical(t),
        DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(..)
            | DataType::Map(..)
            | DataType::Union(..)
            | DataType::RunEndEncoded(..)
    )
}

fn unit(u: &TimeUnit) -> &'static str {
    match u {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    }
}

/// A short, readable name of a type: `int64`, `string`, `decimal128(10,2)`,
/// `timestamp(us, UTC)`, `list<string>`, `struct<id: int64, name: string>`.
pub fn type_name(t: &DataType) -> String {
    use DataType::*;
    match t {
        Null => "null".into(),
        Boolean => "bool".into(),
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32
        | Float64 | Date32 | Date64 => t.to_string().to_lowercase(),
        Utf8 => "string".into(),
        LargeUtf8 => "large_string".into(),
        Utf8View => "string_view".into(),
        Binary => "binary".into(),
        LargeBinary => "large_binary".into(),
        BinaryView => "binary_view".into(),
        FixedSizeBinary(n) => format!("fixed_binary({n})"),
        Decimal32(p, s) => format!("decimal32({p},{s})"),
        Decimal64(p, s) => format!("decimal64({p},{s})"),
        Decimal128(p, s) => format!("decimal128({p},{s})"),
        Decimal256(p, s) => format!("decimal256({p},{s})"),
        Timestamp(u, None) => format!("timestamp({})", unit(u)),
        Timestamp(u, Some(tz)) => format!("timestamp({}, {tz})", unit(u)),
        Time32(u) => format!("time32({})", unit(u)),
        Time64(u) => format!("time64({})", unit(u)),
        Duration(u) => format!("duration({})", unit(u)),
        Interval(IntervalUnit::YearMonth) => "interval(year_month)".into(),
        Interval(IntervalUnit::DayTime) => "interval(day_time)".into(),
        Interval(IntervalUnit::MonthDayNano) => "interval(month_day_nano)".into(),
        List(f) => format!("list<{}>", type_name(f.data_type())),
        ListView(f) => format!("list_view<{}>", type_name(f.data_type())),
        LargeList(f) => format!("large_list<{}>", type_name(f.data_type())),
        LargeListView(f) => format!("large_list_view<{}>", type_name(f.data_type())),
        FixedSizeList(f, n) => format!("fixed_list<{}, {n}>", type_name(f.data_type())),
        Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect();
            format!("struct<{}>", inner.join(", "))
        }
        Map(entries, _) => match entries.data_type() {
            Struct(kv) if kv.len() == 2 => format!(
                "map<{}, {}>",
                type_name(kv[0].data_type()),
                type_name(kv[1].data_type())
            ),
            other => format!("map<{}>", type_name(other)),
        },
        Dictionary(k, v) => format!("dictionary<{}, {}>", type_name(k), type_name(v)),
        RunEndEncoded(_, v) => format!("run_end_encoded<{}>", type_name(v.data_type())),
        Union(fields, _) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|(_, f)| type_name(f.data_type()))
                .collect();
            format!("union<{}>", inner.join(", "))
        }
        // Future Arrow types: the Debug form is unambiguous, if not pretty.
        #[allow(unreachable_patterns)]
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The coarse family of a type, used for split-column suffixes (`amount__string`) and
/// contract type checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeFamily {
    /// Booleans.
    Boolean,
    /// Signed and unsigned integers.
    Integer,
    /// Floating point numbers.
    Float,
    /// Decimals.
    Decimal,
    /// Text.
    String,
    /// Bytes.
    Binary,
    /// Dates.
    Date,
    /// Timestamps.
    Timestamp,
    /// Times of day, durations and intervals.
    Time,
    /// Structs.
    Struct,
    /// Lists.
    List,
    /// Maps.
    Map,
    /// Anything else (null, union).
    Other,
}

impl TypeFamily {
    /// The family of `t`.
    pub fn of(t: &DataType) -> TypeFamily {
        use DataType::*;
        match logical(t) {
            Boolean => TypeFamily::Boolean,
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => TypeFamily::Integer,
            Float16 | Float32 | Float64 => TypeFamily::Float,
            Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => TypeFamily::Decimal,
            Utf8 | LargeUtf8 => TypeFamily::String,
            Binary | LargeBinary | FixedSizeBinary(_) => TypeFamily::Binary,
            Date32 | Date64 => TypeFamily::Date,
            Timestamp(..) => TypeFamily::Timestamp,
            Time32(_) | Time64(_) | Duration(_) | Interval(_) => TypeFamily::Time,
            Struct(_) => TypeFamily::Struct,
            Map(..) => TypeFamily::Map,
            t if list_element(t).is_some() => TypeFamily::List,
            _ => TypeFamily::Other,
        }
    }

    /// The lowercase name (`string`, `integer`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TypeFamily::Boolean => "boolean",
            TypeFamily::Integer => "integer",
            TypeFamily::Float => "float",
            TypeFamily::Decimal => "decimal",
            TypeFamily::String => "string",
            TypeFamily::Binary => "binary",
            TypeFamily::Date => "date",
            TypeFamily::Timestamp => "timestamp",
            TypeFamily::Time => "time",
            TypeFamily::Struct => "struct",
            TypeFamily::List => "list",
            TypeFamily::Map => "map",
            TypeFamily::Other => "other",
        }
    }

    /// The Arrow type values of this family are cast to when checked; `None` for nested
    /// families (checked by type only).
    pub fn canonical_type(self) -> Option<DataType> {
        Some(match self {
            TypeFamily::Boolean => DataType::Boolean,
            TypeFamily::Integer => DataType::Int64,
            TypeFamily::Float => DataType::Float64,
            TypeFamily::Decimal => DataType::Decimal128(38, 10),
            TypeFamily::String => DataType::Utf8,
            TypeFamily::Binary => DataType::Binary,
            TypeFamily::Date => DataType::Date32,
            TypeFamily::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            _ => return None,
        })
    }
}

impl std::fmt::Display for TypeFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A canonical text of a field: name, type (with nested names and nullability), and
/// sorted metadata. Independent of Arrow's `Debug`/`Display`, which change between
/// versions, so fingerprints stay stable.
fn canonical_field(field: &Field, out: &mut String) {
    out.push_str(&escape(field.name()));
    out.push(':');
    canonical_type(field.data_type(), out);
    if !field.is_nullable() {
        out.push('!');
    }
    canonical_metadata(field.metadata().iter(), out);
}

fn canonical_metadata<'a>(
    metadata: impl Iterator<Item = (&'a String, &'a String)>,
    out: &mut String,
) {
    let mut entries: Vec<_> = metadata.collect();
    if entries.is_empty() {
        return;
    }
    entries.sort();
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&escape(k));
        out.push('=');
        out.push_str(&escape(v));
    }
    out.push('}');
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | ':' | '{' | '}' | '<' | '>' | '=' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn canonical_type(t: &DataType, out: &mut String) {
    use DataType::*;
    let children = |fields: &mut dyn Iterator<Item = &Field>, out: &mut String| {
        out.push('<');
        for (i, f) in fields.enumerate() {
            if i > 0 {
                out.push(',');
            }
            canonical_field(f, out);
        }
        out.push('>');
    };
    match t {
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) => {
            out.push_str(match t {
                List(_) => "list",
                LargeList(_) => "large_list",
                ListView(_) => "list_view",
                _ => "large_list_view",
            });
            children(&mut std::iter::once(f.as_ref()), out);
        }
        FixedSizeList(f, n) => {
            out.push_str(&format!("fixed_list({n})"));
            children(&mut std::iter::once(f.as_ref()), out);
        }
        Struct(fields) => {
            out.push_str("struct");
            children(&mut fields.iter().map(|f| f.as_ref()), out);
        }
        Map(entries, sorted) => {
            out.push_str(if *sorted { "sorted_map" } else { "map" });
            children(&mut std::iter::once(entries.as_ref()), out);
        }
        Union(fields, mode) => {
            out.push_str(&format!("union({mode:?}"));
            for (id, _) in fields.iter() {
                out.push_str(&format!(",{id}"));
            }
            out.push(')');
            children(&mut fields.iter().map(|(_, f)| f.as_ref()), out);
        }
        RunEndEncoded(ends, values) => {
            out.push_str("run_end_encoded");
            children(&mut [ends.as_ref(), values.as_ref()].into_iter(), out);
        }
        Dictionary(k, v) => {
            out.push_str("dictionary<");
            canonical_type(k, out);
            out.push(',');
            canonical_type(v, out);
            out.push('>');
        }
        other => out.push_str(&type_name(other)),
    }
}

/// The canonical text of a schema that [`fingerprint`] hashes.
pub fn canonical_form(schema: &Schema) -> String {
    let mut out = String::from("schema<");
    for (i, f) in schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        canonical_field(f, &mut out);
    }
    out.push('>');
    canonical_metadata(schema.metadata().iter(), &mut out);
    out
}

/// A stable SHA-256 fingerprint (64 hex digits) of a schema: field names, order, types,
/// nullability and metadata all count.
pub fn fingerprint(schema: &Schema) -> String {
    let digest = Sha256::digest(canonical_form(schema).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_nullability_and_metadata() {
        let a = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
        let b = Schema::new(vec![Field::new("id", DataType::Int64, true)]);
        let c = Schema::new(vec![
            Field::new("id", DataType::Int64, false).with_metadata([(UNIT_KEY, "cents")]),
        ]);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_eq!(fingerprint(&a).len(), 64);
    }

    #[test]
    fn encodings_are_the_same_type() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        assert_eq!(
            relate(&dict, &DataType::Utf8, Promotions::Iceberg),
            TypeRelation::Same
        );
        assert_eq!(
            relate(&DataType::Utf8View, &DataType::Utf8, Promotions::Avro),
            TypeRelation::Same
        );
    }
}
