//! Stable, column-wise content hashing of rows (`_cdp_record_hash`).
//!
//! The hash of a row depends on the column names and the logical values, not on how Arrow
//! happens to encode them: a dictionary column hashes like its plain values, `Utf8` like
//! `LargeUtf8` and `Utf8View`, and every integer width like its `Int64` value, so widening a
//! column upstream does not make every record look new. Each column is hashed in one pass
//! over its values (xxh3, two chained 64-bit lanes), never by serialising rows.

use arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::Result;

const LANE_B_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const NULL_MARK: u64 = 0xA076_1D64_78BD_642F;
const NAME_SEED: u64 = 0xE703_7ED1_A0B4_28DB;
/// An odd constant with well-spread bits (from wyhash), for the name fold.
const MIX: u64 = 0x8EBC_6AF0_9C88_C6E3;

/// Two independent 64-bit chains per row: together a 128-bit hash.
struct Lanes {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl Lanes {
    fn new(rows: usize) -> Self {
        Lanes {
            a: vec![0; rows],
            b: vec![LANE_B_SEED; rows],
        }
    }

    #[inline]
    fn value(&mut self, row: usize, bytes: &[u8]) {
        self.a[row] = xxh3_64_with_seed(bytes, self.a[row]);
        self.b[row] = xxh3_64_with_seed(bytes, self.b[row] ^ LANE_B_SEED);
    }

    #[inline]
    fn null(&mut self, row: usize) {
        self.a[row] = xxh3_64_with_seed(&[], self.a[row] ^ NULL_MARK);
        self.b[row] = xxh3_64_with_seed(&[], self.b[row] ^ NULL_MARK.rotate_left(32));
    }

    /// Mixes a column name into every row, so that moving a value between columns changes it.
    /// The name is hashed once; each row only folds that constant in.
    fn name(&mut self, name: &str) {
        let (ha, hb) = (
            xxh3_64_with_seed(name.as_bytes(), NAME_SEED),
            xxh3_64_with_seed(name.as_bytes(), NAME_SEED ^ LANE_B_SEED),
        );
        for a in &mut self.a {
            *a = (*a ^ ha).rotate_left(27).wrapping_mul(MIX);
        }
        for b in &mut self.b {
            *b = (*b ^ hb).rotate_left(31).wrapping_mul(MIX);
        }
    }

    fn finish(self) -> StringArray {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = StringBuilder::with_capacity(self.a.len(), self.a.len() * 32);
        let mut text = [0u8; 32];
        for (a, b) in self.a.iter().zip(&self.b) {
            let bytes = a.to_be_bytes().into_iter().chain(b.to_be_bytes());
            for (i, byte) in bytes.enumerate() {
                text[2 * i] = HEX[usize::from(byte >> 4)];
                text[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
            }
            // The buffer only ever holds ASCII hex digits.
            out.append_value(std::str::from_utf8(&text).unwrap_or_default());
        }
        out.finish()
    }
}

/// Hashes `rows` rows made of the named `columns`, in the given order.
pub(crate) fn record_hashes(columns: &[(&str, &ArrayRef)], rows: usize) -> Result<StringArray> {
    let mut lanes = Lanes::new(rows);
    for (name, column) in columns {
        lanes.name(name);
        hash_column(&mut lanes, column, None)?;
    }
    Ok(lanes.finish())
}

/// Hashes the rows of `batch`'s user columns (the ones without the `_cdp_` prefix).
pub fn hash_rows(batch: &arrow::array::RecordBatch) -> Result<StringArray> {
    let schema = batch.schema();
    let columns: Vec<(&str, &ArrayRef)> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !crate::record::is_system_column(f.name()))
        .map(|(f, c)| (f.name().as_str(), c))
        .collect();
    record_hashes(&columns, batch.num_rows())
}

fn hash_column(lanes: &mut Lanes, column: &ArrayRef, outer: Option<&NullBuffer>) -> Result<()> {
    let nulls = NullBuffer::union(outer, column.logical_nulls().as_ref());
    let is_null = |row: usize| nulls.as_ref().is_some_and(|n| n.is_null(row));
    match column.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let column = cast(column, &DataType::Utf8View)?;
            let values = column.as_string_view();
            for row in 0..values.len() {
                if is_null(row) {
                    lanes.null(row);
                } else {
                    lanes.value(row, values.value(row).as_bytes());
                }
            }
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let column = cast(column, &DataType::BinaryView)?;
            let values = column.as_binary_view();
            for row in 0..values.len() {
                if is_null(row) {
                    lanes.null(row);
                } else {
                    lanes.value(row, values.value(row));
                }
            }
        }
        DataType::Boolean => {
            let values = column.as_boolean();
            for row in 0..values.len() {
                if is_null(row) {
                    lanes.null(row);
                } else {
                    lanes.value(row, &[u8::from(values.value(row))]);
                }
            }
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let column = cast(column, &DataType::Int64)?;
            let values = column.as_primitive::<arrow::datatypes::Int64Type>();
            hash_native(lanes, values.values(), &is_null);
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let column = cast(column, &DataType::UInt64)?;
            let values = column.as_primitive::<arrow::datatypes::UInt64Type>();
            hash_native(lanes, values.values(), &is_null);
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let column = cast(column, &DataType::Float64)?;
            let values = column.as_primitive::<arrow::datatypes::Float64Type>();
            hash_native(lanes, values.values(), &is_null);
        }
        DataType::Dictionary(_, value_type) => {
            let plain = cast(column, value_type)?;
            hash_column(lanes, &plain, nulls.as_ref())?;
        }
        DataType::Struct(fields) => {
            let strukt = column.as_struct();
            for (field, child) in fields.iter().zip(strukt.columns()) {
                lanes.name(field.name());
                hash_column(lanes, child, nulls.as_ref())?;
            }
            // A null struct must differ from a struct of nulls.
            for row in 0..column.len() {
                if is_null(row) {
                    lanes.null(row);
                }
            }
        }
        data_type if data_type.is_primitive() => {
            let data = column.to_data();
            let width = data_type.primitive_width().unwrap_or(1);
            let bytes = &data.buffers()[0].as_slice()[data.offset() * width..];
            for row in 0..column.len() {
                if is_null(row) {
                    lanes.null(row);
                } else {
                    lanes.value(row, &bytes[row * width..(row + 1) * width]);
                }
            }
        }
        _ => {
            // Lists, maps, unions: hash the canonical text rendering, one row at a time.
            let options = FormatOptions::default().with_null("\u{0}null");
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
            let mut text = String::new();
            for row in 0..column.len() {
                if is_null(row) {
                    lanes.null(row);
                } else {
                    text.clear();
                    use std::fmt::Write;
                    let _ = write!(text, "{}", formatter.value(row));
                    lanes.value(row, text.as_bytes());
                }
            }
        }
    }
    Ok(())
}

fn hash_native<T: Copy + ToLeBytes>(
    lanes: &mut Lanes,
    values: &[T],
    is_null: &dyn Fn(usize) -> bool,
) {
    for (row, value) in values.iter().enumerate() {
        if is_null(row) {
            lanes.null(row);
        } else {
            lanes.value(row, &value.to_le()[..]);
        }
    }
}

/// Little-endian bytes of a native value, so hashes agree across platforms.
trait ToLeBytes {
    fn to_le(self) -> [u8; 8];
}

impl ToLeBytes for i64 {
    fn to_le(self) -> [u8; 8] {
        self.to_le_bytes()
    }
}

impl ToLeBytes for u64 {
    fn to_le(self) -> [u8; 8] {
        self.to_le_bytes()
    }
}

impl ToLeBytes for f64 {
    fn to_le(self) -> [u8; 8] {
        // -0.0 and 0.0 are the same value; so is every NaN.
        let canonical = if self == 0.0 {
            0.0
        } else if self.is_nan() {
            f64::NAN
        } else {
            self
        };
        canonical.to_bits().to_le_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{DictionaryArray, Int32Array, Int64Array, LargeStringArray, StructArray};
    use arrow::datatypes::{Field, Int32Type};

    fn hashes(columns: &[(&str, ArrayRef)]) -> Vec<String> {
        let refs: Vec<(&str, &ArrayRef)> = columns.iter().map(|(n, c)| (*n, c)).collect();
        let rows = columns[0].1.len();
        let out = record_hashes(&refs, rows).unwrap();
        out.iter().map(|v| v.unwrap().to_string()).collect()
    }

    #[test]
    fn hash_is_stable_across_encodings() {
        let plain: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a"]));
        let large: ArrayRef = Arc::new(LargeStringArray::from(vec!["a", "b", "a"]));
        let dict: ArrayRef = Arc::new(
            vec!["a", "b", "a"]
                .into_iter()
                .collect::<DictionaryArray<Int32Type>>(),
        );
        let h = hashes(&[("k", plain)]);
        assert_eq!(h, hashes(&[("k", large)]));
        assert_eq!(h, hashes(&[("k", dict)]));
        assert_eq!(h[0], h[2]);
        assert_ne!(h[0], h[1]);
        assert_eq!(h[0].len(), 32);
    }

    #[test]
    fn integer_widening_keeps_hash() {
        let narrow: ArrayRef = Arc::new(Int32Array::from(vec![1, -7]));
        let wide: ArrayRef = Arc::new(Int64Array::from(vec![1, -7]));
        assert_eq!(hashes(&[("n", narrow)]), hashes(&[("n", wide)]));
    }

    #[test]
    fn null_differs_from_empty_and_names_matter() {
        let col: ArrayRef = Arc::new(StringArray::from(vec![Some(""), None]));
        let h = hashes(&[("x", col.clone())]);
        assert_ne!(h[0], h[1]);
        assert_ne!(h, hashes(&[("y", col)]));
    }

    #[test]
    fn value_in_other_column_changes_hash() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("v"), None]));
        let b: ArrayRef = Arc::new(StringArray::from(vec![None, Some("v")]));
        let h = hashes(&[("a", a), ("b", b)]);
        assert_ne!(h[0], h[1]);
    }

    #[test]
    fn null_struct_differs_from_struct_of_nulls() {
        let child: ArrayRef = Arc::new(Int64Array::from(vec![None, None]));
        let fields = vec![Arc::new(Field::new("c", DataType::Int64, true))];
        let nulls = NullBuffer::from(vec![true, false]);
        let s: ArrayRef = Arc::new(StructArray::new(fields.into(), vec![child], Some(nulls)));
        let h = hashes(&[("s", s)]);
        assert_ne!(h[0], h[1]);
    }
}
