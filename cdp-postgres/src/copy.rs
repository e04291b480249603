//! PostgreSQL's binary `COPY` format, straight to and from Arrow arrays.
//!
//! The decoder appends each field to an Arrow builder as it parses it (no intermediate
//! rows or JSON values); the encoder walks Arrow arrays and writes each row's fields.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    DictionaryArray, Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder,
    ListArray, NullBufferBuilder, RecordBatch, StringArray, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, FieldRef, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use bytes::{Buf, BufMut, BytesMut};

use crate::types::{PG_EPOCH_DAYS, PG_EPOCH_MICROS, PgKind};

/// The 11-byte signature that opens a binary COPY stream.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// Appends values of one column to an Arrow builder.
#[derive(Debug)]
enum Column {
    Bool(BooleanBuilder),
    Int2(Int16Builder),
    Int4(Int32Builder),
    Int8(Int64Builder),
    Float4(Float32Builder),
    Float8(Float64Builder),
    Numeric(Decimal128Builder, i8),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Uuid(StringBuilder),
    Bytea(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        element_oid: u32,
        element: Box<Column>,
    },
}

impl Column {
    fn new(kind: &PgKind) -> Column {
        match kind {
            PgKind::Bool => Column::Bool(BooleanBuilder::new()),
            PgKind::Int2 => Column::Int2(Int16Builder::new()),
            PgKind::Int4 => Column::Int4(Int32Builder::new()),
            PgKind::Int8 => Column::Int8(Int64Builder::new()),
            PgKind::Float4 => Column::Float4(Float32Builder::new()),
            PgKind::Float8 => Column::Float8(Float64Builder::new()),
            PgKind::Numeric { precision, scale } => Column::Numeric(
                Decimal128Builder::new().with_data_type(DataType::Decimal128(*precision, *scale)),
                *scale,
            ),
            PgKind::Text => Column::Text(StringBuilder::new()),
            PgKind::Jsonb => Column::Jsonb(StringBuilder::new()),
            PgKind::Uuid => Column::Uuid(StringBuilder::new()),
            PgKind::Bytea => Column::Bytea(BinaryBuilder::new()),
            PgKind::Date => Column::Date(Date32Builder::new()),
            PgKind::Timestamp => Column::Timestamp(TimestampMicrosecondBuilder::new()),
            PgKind::Timestamptz => {
                Column::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            PgKind::Time => Column::Time(Time64MicrosecondBuilder::new()),
            PgKind::Array(element) => Column::List {
                field: Arc::new(Field::new_list_field(element.arrow_type(), true)),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
                element_oid: element.oid(),
                element: Box::new(Column::new(element)),
            },
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::Bool(b) => b.append_null(),
            Column::Int2(b) => b.append_null(),
            Column::Int4(b) => b.append_null(),
            Column::Int8(b) => b.append_null(),
            Column::Float4(b) => b.append_null(),
            Column::Float8(b) => b.append_null(),
            Column::Numeric(b, _) => b.append_null(),
            Column::Text(b) | Column::Jsonb(b) | Column::Uuid(b) => b.append_null(),
            Column::Bytea(b) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
            Column::Time(b) => b.append_null(),
            Column::List { offsets, nulls, .. } => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                nulls.append_null();
            }
        }
    }

    fn append(&mut self, value: &[u8]) -> Result<(), String> {
        match self {
            Column::Bool(b) => b.append_value(fixed::<1>(value)?[0] != 0),
            Column::Int2(b) => b.append_value(i16::from_be_bytes(fixed(value)?)),
            Column::Int4(b) => b.append_value(i32::from_be_bytes(fixed(value)?)),
            Column::Int8(b) => b.append_value(i64::from_be_bytes(fixed(value)?)),
            Column::Float4(b) => b.append_value(f32::from_be_bytes(fixed(value)?)),
            Column::Float8(b) => b.append_value(f64::from_be_bytes(fixed(value)?)),
            Column::Numeric(b, scale) => match decode_numeric(value, *scale)? {
                Some(v) => b.append_value(v),
                None => b.append_null(),
            },
            Column::Text(b) => b.append_value(utf8(value)?),
            Column::Jsonb(b) => match value.split_first() {
                Some((1, json)) => b.append_value(utf8(json)?),
                _ => return Err("unknown jsonb binary version".into()),
            },
            Column::Uuid(b) => b.append_value(uuid_text(&fixed::<16>(value)?)),
            Column::Bytea(b) => b.append_value(value),
            Column::Date(b) => match i32::from_be_bytes(fixed(value)?) {
                i32::MAX | i32::MIN => b.append_null(),
                days => b.append_value(days.saturating_add(PG_EPOCH_DAYS)),
            },
            Column::Timestamp(b) => match i64::from_be_bytes(fixed(value)?) {
                i64::MAX | i64::MIN => b.append_null(),
                micros => b.append_value(micros.saturating_add(PG_EPOCH_MICROS)),
            },
            Column::Time(b) => b.append_value(i64::from_be_bytes(fixed(value)?)),
            Column::List {
                offsets,
                nulls,
                element_oid,
                element,
                ..
            } => {
                let count = decode_array(value, *element_oid, element)?;
                let last = offsets.last().copied().unwrap_or(0);
                let count = i32::try_from(count).map_err(|e| e.to_string())?;
                offsets.push(last + count);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match self {
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Int2(b) => Arc::new(b.finish()),
            Column::Int4(b) => Arc::new(b.finish()),
            Column::Int8(b) => Arc::new(b.finish()),
            Column::Float4(b) => Arc::new(b.finish()),
            Column::Float8(b) => Arc::new(b.finish()),
            Column::Numeric(b, _) => Arc::new(b.finish()),
            Column::Text(b) | Column::Jsonb(b) | Column::Uuid(b) => Arc::new(b.finish()),
            Column::Bytea(b) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Time(b) => Arc::new(b.finish()),
            Column::List {
                field,
                offsets,
                nulls,
                element,
                ..
            } => {
                let values = element.finish()?;
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(
                    ListArray::try_new(field.clone(), offsets, values, nulls.finish())
                        .map_err(|e| e.to_string())?,
                )
            }
        })
    }
}

fn fixed<const N: usize>(value: &[u8]) -> Result<[u8; N], String> {
    value
        .try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", value.len()))
}

fn utf8(value: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(value).map_err(|e| format!("invalid UTF-8: {e}"))
}

fn uuid_text(bytes: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Powers of ten that fit an `i128`.
fn pow10(exponent: u32) -> Option<i128> {
    10i128.checked_pow(exponent)
}

/// PostgreSQL's binary `numeric` as an unscaled `i128` at `scale`; `None` for NaN and
/// infinities, which `Decimal128` cannot hold.
fn decode_numeric(value: &[u8], scale: i8) -> Result<Option<i128>, String> {
    let mut buf = value;
    if buf.len() < 8 {
        return Err("numeric value too short".into());
    }
    let ndigits = buf.get_i16();
    let weight = i32::from(buf.get_i16());
    let sign = buf.get_u16();
    let _dscale = buf.get_u16();
    if sign != 0x0000 && sign != 0x4000 {
        return Ok(None);
    }
    let ndigits = usize::try_from(ndigits).map_err(|_| "negative numeric digit count")?;
    if buf.len() < 2 * ndigits {
        return Err("numeric value truncated".into());
    }
    let overflow = || "numeric value does not fit its declared precision".to_string();
    let mut total: i128 = 0;
    for i in 0..ndigits {
        let digit = i128::from(buf.get_i16());
        // The digit's weight in powers of ten, shifted by the scale.
        let index = i32::try_from(i).map_err(|_| overflow())?;
        let exponent = 4 * (weight - index) + i32::from(scale);
        let term = if exponent >= 0 {
            let factor =
                pow10(u32::try_from(exponent).map_err(|_| overflow())?).ok_or_else(overflow)?;
            digit.checked_mul(factor).ok_or_else(overflow)?
        } else {
            match pow10(exponent.unsigned_abs()) {
                Some(divisor) => digit / divisor,
                None => 0,
            }
        };
        total = total.checked_add(term).ok_or_else(overflow)?;
    }
    Ok(Some(if sign == 0x4000 { -total } else { total }))
}

/// Decodes a one-dimensional array into `element`; returns the number of elements.
fn decode_array(value: &[u8], element_oid: u32, element: &mut Column) -> Result<usize, String> {
    let mut buf = value;
    if buf.len() < 12 {
        return Err("array value too short".into());
    }
    let ndim = buf.get_i32();
    let _has_nulls = buf.get_i32();
    let oid = buf.get_u32();
    if ndim == 0 {
        return Ok(0);
    }
    if ndim != 1 {
        return Err(format!(
            "{ndim}-dimensional arrays are not supported (only one dimension maps to a list)"
        ));
    }
    if oid != element_oid {
        return Err(format!("array element type {oid}, expected {element_oid}"));
    }
    if buf.len() < 8 {
        return Err("array header truncated".into());
    }
    let count = usize::try_from(buf.get_i32()).map_err(|_| "negative array length")?;
    let _lower_bound = buf.get_i32();
    for _ in 0..count {
        if buf.len() < 4 {
            return Err("array element truncated".into());
        }
        let len = buf.get_i32();
        if len < 0 {
            element.append_null();
            continue;
        }
        let len = usize::try_from(len).map_err(|_| "bad element length")?;
        if buf.len() < len {
            return Err("array element truncated".into());
        }
        element.append(&buf[..len])?;
        buf.advance(len);
    }
    Ok(count)
}

/// Parses a binary `COPY … TO STDOUT` stream into Arrow columns, one row at a time.
///
/// Push the stream's chunks as they arrive and call [`next_row`](Self::next_row) until it
/// returns `Ok(false)`; [`finish`](Self::finish) takes the rows decoded so far as arrays
/// of the kinds' [Arrow types](PgKind::arrow_type), so a long stream becomes several
/// batches.
#[derive(Debug)]
pub struct CopyDecoder {
    names: Vec<String>,
    columns: Vec<Column>,
    buf: BytesMut,
    header_done: bool,
    finished: bool,
    rows: usize,
}

impl CopyDecoder {
    /// A decoder for columns `names` of kinds `kinds` (in `SELECT` order).
    pub fn new(names: Vec<String>, kinds: &[PgKind]) -> Self {
        CopyDecoder {
            names,
            columns: kinds.iter().map(Column::new).collect(),
            buf: BytesMut::new(),
            header_done: false,
            finished: false,
            rows: 0,
        }
    }

    /// Appends a chunk of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Rows decoded since the last [`finish`](Self::finish).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the trailer was seen.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Decodes the next complete row from what was pushed; `Ok(false)` when more bytes
    /// are needed (or the stream ended). An error names what is malformed (and the column).
    pub fn next_row(&mut self) -> Result<bool, String> {
        if self.finished {
            return Ok(false);
        }
        if !self.header_done {
            if self.buf.len() < SIGNATURE.len() + 8 {
                return Ok(false);
            }
            if &self.buf[..SIGNATURE.len()] != SIGNATURE {
                return Err("not a binary COPY stream".into());
            }
            let ext = u32::from_be_bytes(fixed(&self.buf[15..19])?);
            let ext = usize::try_from(ext).map_err(|e| e.to_string())?;
            if self.buf.len() < 19 + ext {
                return Ok(false);
            }
            self.buf.advance(19 + ext);
            self.header_done = true;
        }
        if self.buf.len() < 2 {
            return Ok(false);
        }
        let fields = i16::from_be_bytes(fixed(&self.buf[..2])?);
        if fields == -1 {
            self.finished = true;
            self.buf.advance(2);
            return Ok(false);
        }
        if usize::try_from(fields).ok() != Some(self.columns.len()) {
            return Err(format!(
                "row has {fields} fields, expected {}",
                self.columns.len()
            ));
        }
        // Check the whole row is here before touching any builder.
        let mut pos = 2;
        for _ in 0..self.columns.len() {
            if self.buf.len() < pos + 4 {
                return Ok(false);
            }
            let len = i32::from_be_bytes(fixed(&self.buf[pos..pos + 4])?);
            pos += 4;
            if len > 0 {
                pos += usize::try_from(len).map_err(|e| e.to_string())?;
            }
        }
        if self.buf.len() < pos {
            return Ok(false);
        }
        let mut at = 2;
        for (column, name) in self.columns.iter_mut().zip(&self.names) {
            let len = i32::from_be_bytes(fixed(&self.buf[at..at + 4])?);
            at += 4;
            if len < 0 {
                column.append_null();
                continue;
            }
            let len = usize::try_from(len).map_err(|e| e.to_string())?;
            column
                .append(&self.buf[at..at + len])
                .map_err(|e| format!("column `{name}`: {e}"))?;
            at += len;
        }
        self.buf.advance(pos);
        self.rows += 1;
        Ok(true)
    }

    /// The decoded rows as arrays (builders are reset for the next batch).
    pub fn finish(&mut self) -> Result<Vec<ArrayRef>, String> {
        self.rows = 0;
        self.columns.iter_mut().map(Column::finish).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// The type the encoder takes for a column of `data_type`: `Int8` becomes `Int16`,
/// `Date64` becomes `Date32`, nanosecond timestamps become microseconds, and so on.
/// Dictionary-encoded strings with `Int32` keys (the runtime's `_cdp_source` and
/// `_cdp_lineage_id`) are written as they are; other dictionaries are decoded.
pub fn normalized(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Dictionary(key, value)
            if **key == DataType::Int32 && **value == DataType::Utf8 =>
        {
            data_type.clone()
        }
        DataType::Dictionary(_, value) => normalized_type(value),
        other => normalized_type(other),
    }
}

fn normalized_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Int8 | DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::UInt64 => DataType::Decimal128(20, 0),
        DataType::Float16 => DataType::Float32,
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            DataType::Binary
        }
        DataType::Date64 => DataType::Date32,
        DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
        DataType::Time32(_) | DataType::Time64(_) => DataType::Time64(TimeUnit::Microsecond),
        DataType::List(field) | DataType::LargeList(field) => DataType::List(Arc::new(
            Field::new_list_field(normalized_type(field.data_type()), true),
        )),
        other => other.clone(),
    }
}

/// Writes one column's values.
enum Writer<'a> {
    Missing,
    Bool(&'a arrow::array::BooleanArray),
    Int2(&'a arrow::array::PrimitiveArray<Int16Type>),
    Int4(&'a arrow::array::PrimitiveArray<Int32Type>),
    Int8(&'a arrow::array::PrimitiveArray<Int64Type>),
    Float4(&'a arrow::array::PrimitiveArray<Float32Type>),
    Float8(&'a arrow::array::PrimitiveArray<Float64Type>),
    Numeric(&'a arrow::array::PrimitiveArray<Decimal128Type>, i8),
    Text(&'a StringArray),
    Dict(&'a DictionaryArray<Int32Type>, &'a StringArray),
    Bytea(&'a arrow::array::BinaryArray),
    Date(&'a arrow::array::PrimitiveArray<Date32Type>),
    Timestamp(&'a arrow::array::PrimitiveArray<TimestampMicrosecondType>),
    Time(&'a arrow::array::PrimitiveArray<Time64MicrosecondType>),
    List(&'a ListArray, u32, Box<Writer<'a>>),
}

impl<'a> Writer<'a> {
    fn new(array: &'a dyn Array) -> Result<Writer<'a>, String> {
        Ok(match array.data_type() {
            DataType::Null => Writer::Missing,
            DataType::Boolean => Writer::Bool(array.as_boolean()),
            DataType::Int16 => Writer::Int2(array.as_primitive()),
            DataType::Int32 => Writer::Int4(array.as_primitive()),
            DataType::Int64 => Writer::Int8(array.as_primitive()),
            DataType::Float32 => Writer::Float4(array.as_primitive()),
            DataType::Float64 => Writer::Float8(array.as_primitive()),
            DataType::Decimal128(_, scale) => Writer::Numeric(array.as_primitive(), *scale),
            DataType::Utf8 => Writer::Text(array.as_string()),
            DataType::Dictionary(key, value)
                if **key == DataType::Int32 && **value == DataType::Utf8 =>
            {
                let dict = array.as_dictionary::<Int32Type>();
                Writer::Dict(dict, dict.values().as_string())
            }
            DataType::Binary => Writer::Bytea(array.as_binary()),
            DataType::Date32 => Writer::Date(array.as_primitive()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                Writer::Timestamp(array.as_primitive())
            }
            DataType::Time64(TimeUnit::Microsecond) => Writer::Time(array.as_primitive()),
            DataType::List(field) => {
                let list = array.as_list::<i32>();
                let element = PgKind::from_arrow(field.data_type())
                    .ok_or_else(|| format!("lists of {} cannot be written", field.data_type()))?;
                Writer::List(
                    list,
                    element.oid(),
                    Box::new(Writer::new(list.values().as_ref())?),
                )
            }
            other => return Err(format!("{other} cannot be written to PostgreSQL")),
        })
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Writer::Missing => true,
            Writer::Bool(a) => a.is_null(row),
            Writer::Int2(a) => a.is_null(row),
            Writer::Int4(a) => a.is_null(row),
            Writer::Int8(a) => a.is_null(row),
            Writer::Float4(a) => a.is_null(row),
            Writer::Float8(a) => a.is_null(row),
            Writer::Numeric(a, _) => a.is_null(row),
            Writer::Text(a) => a.is_null(row),
            Writer::Dict(a, _) => a.is_null(row),
            Writer::Bytea(a) => a.is_null(row),
            Writer::Date(a) => a.is_null(row),
            Writer::Timestamp(a) => a.is_null(row),
            Writer::Time(a) => a.is_null(row),
            Writer::List(a, _, _) => a.is_null(row),
        }
    }

    /// Writes the field (length word and value) of `row`.
    fn write(&self, row: usize, out: &mut BytesMut) -> Result<(), String> {
        if self.is_null(row) {
            out.put_i32(-1);
            return Ok(());
        }
        match self {
            Writer::Missing => out.put_i32(-1),
            Writer::Bool(a) => {
                out.put_i32(1);
                out.put_u8(u8::from(a.value(row)));
            }
            Writer::Int2(a) => {
                out.put_i32(2);
                out.put_i16(a.value(row));
            }
            Writer::Int4(a) => {
                out.put_i32(4);
                out.put_i32(a.value(row));
            }
            Writer::Int8(a) => {
                out.put_i32(8);
                out.put_i64(a.value(row));
            }
            Writer::Float4(a) => {
                out.put_i32(4);
                out.put_f32(a.value(row));
            }
            Writer::Float8(a) => {
                out.put_i32(8);
                out.put_f64(a.value(row));
            }
            Writer::Numeric(a, scale) => {
                let start = out.len();
                out.put_i32(0);
                encode_numeric(a.value(row), *scale, out);
                patch_len(out, start)?;
            }
            Writer::Text(a) => put_bytes(out, a.value(row).as_bytes())?,
            Writer::Dict(a, values) => {
                let key = usize::try_from(a.keys().value(row)).map_err(|e| e.to_string())?;
                put_bytes(out, values.value(key).as_bytes())?;
            }
            Writer::Bytea(a) => put_bytes(out, a.value(row))?,
            Writer::Date(a) => {
                out.put_i32(4);
                out.put_i32(a.value(row).saturating_sub(PG_EPOCH_DAYS));
            }
            Writer::Timestamp(a) => {
                out.put_i32(8);
                out.put_i64(a.value(row).saturating_sub(PG_EPOCH_MICROS));
            }
            Writer::Time(a) => {
                out.put_i32(8);
                out.put_i64(a.value(row));
            }
            Writer::List(a, oid, element) => {
                let start = out.len();
                out.put_i32(0);
                let offsets = a.value_offsets();
                let (from, to) = (offsets[row], offsets[row + 1]);
                let from = usize::try_from(from).map_err(|e| e.to_string())?;
                let to = usize::try_from(to).map_err(|e| e.to_string())?;
                if from == to {
                    out.put_i32(0);
                    out.put_i32(0);
                    out.put_u32(*oid);
                } else {
                    let has_nulls = (from..to).any(|i| element.is_null(i));
                    out.put_i32(1);
                    out.put_i32(i32::from(has_nulls));
                    out.put_u32(*oid);
                    out.put_i32(i32::try_from(to - from).map_err(|e| e.to_string())?);
                    out.put_i32(1);
                    for i in from..to {
                        element.write(i, out)?;
                    }
                }
                patch_len(out, start)?;
            }
        }
        Ok(())
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) -> Result<(), String> {
    out.put_i32(i32::try_from(bytes.len()).map_err(|_| "value larger than 2 GiB")?);
    out.put_slice(bytes);
    Ok(())
}

/// Fills in the length word written at `start` once the value after it is complete.
fn patch_len(out: &mut BytesMut, start: usize) -> Result<(), String> {
    let len = i32::try_from(out.len() - start - 4).map_err(|_| "value larger than 2 GiB")?;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Writes `value` (unscaled, at `scale`) in PostgreSQL's binary `numeric` layout: base-10000
/// digits around the decimal point. The common case works on integers, without allocating.
fn encode_numeric(value: i128, scale: i8, out: &mut BytesMut) {
    if !(0..=34).contains(&scale) {
        return encode_numeric_text(value, scale, out);
    }
    let scale_u = u32::from(scale.unsigned_abs());
    let magnitude = value.unsigned_abs();
    let Some(divisor) = 10u128.checked_pow(scale_u) else {
        return encode_numeric_text(value, scale, out);
    };
    let (mut int_part, frac_part) = (magnitude / divisor, magnitude % divisor);
    // Base-10000 groups, most significant first: integer part, then the fraction padded
    // on the right to whole groups.
    let mut groups = [0i16; 24];
    let mut int_len = 0usize;
    let mut int_rev = [0i16; 12];
    while int_part > 0 {
        int_rev[int_len] = i16::try_from(int_part % 10_000).unwrap_or(0);
        int_part /= 10_000;
        int_len += 1;
    }
    for i in 0..int_len {
        groups[i] = int_rev[int_len - 1 - i];
    }
    let frac_groups = scale_u.div_ceil(4);
    let pad = frac_groups * 4 - scale_u;
    let mut frac = frac_part * 10u128.pow(pad);
    let frac_len = usize::try_from(frac_groups).unwrap_or(0);
    for i in (0..frac_len).rev() {
        groups[int_len + i] = i16::try_from(frac % 10_000).unwrap_or(0);
        frac /= 10_000;
    }
    let total = int_len + frac_len;
    let leading = groups[..total].iter().take_while(|&&g| g == 0).count();
    let mut end = total;
    while end > leading && groups[end - 1] == 0 {
        end -= 1;
    }
    let dscale = u16::from(scale.unsigned_abs());
    if end == leading {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(0);
        out.put_u16(dscale);
        return;
    }
    let weight = i16::try_from(int_len).unwrap_or(0) - 1 - i16::try_from(leading).unwrap_or(0);
    out.put_i16(i16::try_from(end - leading).unwrap_or(0));
    out.put_i16(weight);
    out.put_u16(if value < 0 { 0x4000 } else { 0 });
    out.put_u16(dscale);
    for g in &groups[leading..end] {
        out.put_i16(*g);
    }
}

/// [`encode_numeric`] through decimal text, for scales the integer path cannot hold.
fn encode_numeric_text(value: i128, scale: i8, out: &mut BytesMut) {
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let (int_part, frac_part): (String, String) = if scale <= 0 {
        let zeros = "0".repeat(usize::from(scale.unsigned_abs()));
        (format!("{digits}{zeros}"), String::new())
    } else {
        let scale = usize::from(scale.unsigned_abs());
        let padded = if digits.len() <= scale {
            format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
        } else {
            digits
        };
        let split = padded.len() - scale;
        (padded[..split].to_string(), padded[split..].to_string())
    };
    let group = |s: &str| -> i16 {
        s.bytes()
            .fold(0i16, |acc, b| acc * 10 + i16::from(b - b'0'))
    };
    let int_pad = (4 - int_part.len() % 4) % 4;
    let int_padded = format!("{}{int_part}", "0".repeat(int_pad));
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let frac_padded = format!("{frac_part}{}", "0".repeat(frac_pad));
    let mut groups: Vec<i16> = int_padded
        .as_bytes()
        .chunks(4)
        .chain(frac_padded.as_bytes().chunks(4))
        .map(|c| group(std::str::from_utf8(c).unwrap_or("0")))
        .collect();
    let int_groups = int_padded.len() / 4;
    let mut weight = i16::try_from(int_groups).unwrap_or(i16::MAX) - 1;
    // Strip leading and trailing zero groups.
    let leading = groups.iter().take_while(|&&g| g == 0).count();
    groups.drain(..leading);
    weight -= i16::try_from(leading).unwrap_or(0);
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let dscale = u16::try_from(scale.max(0)).unwrap_or(0);
    if groups.is_empty() {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(0);
        out.put_u16(dscale);
        return;
    }
    out.put_i16(i16::try_from(groups.len()).unwrap_or(i16::MAX));
    out.put_i16(weight);
    out.put_u16(if negative { 0x4000 } else { 0 });
    out.put_u16(dscale);
    for g in groups {
        out.put_i16(g);
    }
}

/// Encodes record batches as a binary `COPY … FROM STDIN` stream for a fixed column list.
///
/// Send [`take`](Self::take) whenever [`buffered`](Self::buffered) has grown large enough,
/// and [`finish`](Self::finish) at the end, so memory stays bounded however many rows go
/// through.
#[derive(Debug)]
pub struct CopyEncoder {
    columns: Vec<String>,
    types: Vec<DataType>,
    buf: BytesMut,
}

impl CopyEncoder {
    /// An encoder for the staging columns `columns`, of the [`normalized`] types `types`;
    /// the header is written.
    pub fn new(columns: Vec<String>, types: Vec<DataType>) -> Self {
        let mut buf = BytesMut::with_capacity(1 << 20);
        buf.put_slice(SIGNATURE);
        buf.put_i32(0);
        buf.put_i32(0);
        CopyEncoder {
            columns,
            types,
            buf,
        }
    }

    /// Appends the rows of `batch` selected by `keep` (all when `None`); columns the batch
    /// lacks are written as nulls, columns of another type are cast. An error names the
    /// column whose values cannot be written.
    pub fn write(&mut self, batch: &RecordBatch, keep: Option<&[bool]>) -> Result<(), String> {
        let arrays: Vec<Option<ArrayRef>> = self
            .columns
            .iter()
            .zip(&self.types)
            .map(|(name, data_type)| match batch.column_by_name(name) {
                Some(array) if array.data_type() == data_type => Ok(Some(array.clone())),
                Some(array) => arrow::compute::cast(array, data_type).map(Some),
                None => Ok(None),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let writers: Vec<Writer<'_>> = arrays
            .iter()
            .zip(&self.columns)
            .map(|(array, name)| match array {
                Some(array) => {
                    Writer::new(array.as_ref()).map_err(|e| format!("column `{name}`: {e}"))
                }
                None => Ok(Writer::Missing),
            })
            .collect::<Result<_, _>>()?;
        let fields = i16::try_from(writers.len()).map_err(|_| "too many columns")?;
        for row in 0..batch.num_rows() {
            if keep.is_some_and(|k| !k[row]) {
                continue;
            }
            self.buf.put_i16(fields);
            for (writer, name) in writers.iter().zip(&self.columns) {
                writer
                    .write(row, &mut self.buf)
                    .map_err(|e| format!("column `{name}`: {e}"))?;
            }
        }
        Ok(())
    }

    /// Bytes buffered so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the bytes buffered so far.
    pub fn take(&mut self) -> bytes::Bytes {
        self.buf.split().freeze()
    }

    /// Writes the trailer and takes the rest.
    pub fn finish(mut self) -> bytes::Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int64Array, ListBuilder, TimestampMicrosecondArray};
    use arrow::datatypes::Schema;

    #[test]
    fn numerics_encode_and_decode() {
        for (value, scale) in [
            (0i128, 2i8),
            (12345, 2),
            (-12345, 2),
            (1, 6),
            (-100_000_000, 0),
            (99_999_999_999_999_999_999_999_999_999_999_999_999, 0),
            (123_456_789, 8),
            (5, -3),
            (10_000, 4),
            (-1, 34),
            (12_345_678_900, 3),
        ] {
            let mut out = BytesMut::new();
            encode_numeric(value, scale, &mut out);
            let mut text = BytesMut::new();
            encode_numeric_text(value, scale, &mut text);
            assert_eq!(out, text, "{value} scale {scale}");
            assert_eq!(
                decode_numeric(&out, scale).unwrap(),
                Some(value),
                "{value} scale {scale}"
            );
        }
    }

    #[test]
    fn rows_round_trip_through_the_copy_format() {
        let mut list = ListBuilder::new(Int64Builder::new());
        list.append_value([Some(1), None, Some(3)]);
        list.append_null();
        list.append_value([]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("tags", list.finish().data_type().clone(), true),
        ]));
        let mut list = ListBuilder::new(Int64Builder::new());
        list.append_value([Some(1), None, Some(3)]);
        list.append_null();
        list.append_value([]);
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(
                    Decimal128Array::from(vec![Some(-1050), None, Some(7)])
                        .with_precision_and_scale(12, 2)
                        .unwrap(),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(0),
                        Some(1_700_000_000_000_000),
                        None,
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(list.finish()),
            ],
        )
        .unwrap();
        let names: Vec<String> = ["id", "amount", "at", "tags"].map(String::from).to_vec();
        let types = batch
            .schema()
            .fields()
            .iter()
            .map(|f| normalized(f.data_type()))
            .collect();
        let mut encoder = CopyEncoder::new(names.clone(), types);
        encoder.write(&batch, None).unwrap();
        let bytes = encoder.finish();

        let kinds = [
            PgKind::Int8,
            PgKind::Numeric {
                precision: 12,
                scale: 2,
            },
            PgKind::Timestamptz,
            PgKind::Array(Box::new(PgKind::Int8)),
        ];
        let mut decoder = CopyDecoder::new(names, &kinds);
        // Feed in awkward pieces: rows span chunks.
        for chunk in bytes.chunks(5) {
            decoder.push(chunk);
            while decoder.next_row().unwrap() {}
        }
        assert!(decoder.is_finished());
        let arrays = decoder.finish().unwrap();
        for (got, want) in arrays.iter().zip(batch.columns()) {
            assert_eq!(got.as_ref(), want.as_ref());
        }
    }
}
