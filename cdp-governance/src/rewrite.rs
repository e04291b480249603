//! Rebuilding a column with some of its nested fields changed: the one walk over structs,
//! lists and maps that masking and retention share.
//!
//! A [`Rewrite`] is asked at each node, from the top-level column down, whether to keep it,
//! replace it, drop it, or descend into it; the containers on the way are rebuilt around
//! their new children, keeping their offsets and nulls, and untouched subtrees are shared,
//! not copied. Without an array (`None`) only the output field is computed, so an output
//! schema and the batches it describes come from the same code.

use std::sync::Arc;

use cdp_core::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, GenericListArray, MapArray, OffsetSizeTrait,
    StructArray, UInt32Array,
};
use cdp_core::arrow::buffer::OffsetBuffer;
use cdp_core::arrow::datatypes::{DataType, Field, FieldRef, Fields};

use crate::error::Result;
use crate::path::NestedPath;

/// What happens at one node.
#[derive(Debug)]
pub(crate) enum Visit {
    /// The node stays as it is, with everything inside it.
    Keep,
    /// The node is rebuilt from its rewritten children (a leaf is kept).
    Descend,
    /// The node becomes this field and array.
    Replace(FieldRef, Option<ArrayRef>),
    /// The node goes.
    Drop,
}

/// Which top-level row each element at the current depth belongs to: inside a list, the
/// elements of row `i` are `offsets[i]..offsets[i + 1]` of its values.
#[derive(Debug, Clone)]
pub(crate) enum Rows {
    /// One element per row (the column itself, or a struct field of it).
    Same,
    /// Element `j` belongs to row `indices[j]`; null for values no row points at.
    Mapped(UInt32Array),
}

impl Rows {
    /// The rows of the elements of a list whose slots are at `self`.
    fn through<O: OffsetSizeTrait>(&self, offsets: &OffsetBuffer<O>, values: usize) -> Rows {
        let mut indices: Vec<Option<u32>> = vec![None; values];
        for (slot, window) in offsets.windows(2).enumerate() {
            let row = match self {
                Rows::Same => Some(slot as u32),
                Rows::Mapped(rows) => rows.is_valid(slot).then(|| rows.value(slot)),
            };
            let (start, end) = (window[0].as_usize(), window[1].as_usize());
            for index in indices.iter_mut().take(end.min(values)).skip(start) {
                *index = row;
            }
        }
        Rows::Mapped(UInt32Array::from(indices))
    }

    fn fixed(&self, size: usize, slots: usize, values: usize) -> Rows {
        let mut indices: Vec<Option<u32>> = vec![None; values];
        for slot in 0..slots {
            let row = match self {
                Rows::Same => Some(slot as u32),
                Rows::Mapped(rows) => rows.is_valid(slot).then(|| rows.value(slot)),
            };
            for index in indices.iter_mut().skip(slot * size).take(size) {
                *index = row;
            }
        }
        Rows::Mapped(UInt32Array::from(indices))
    }
}

/// Decides what happens at each node.
pub(crate) trait Rewrite {
    /// At `path` (`field`, and its array when rewriting data; `rows` maps its elements to
    /// top-level rows): what to do.
    fn visit(
        &self,
        path: &NestedPath,
        field: &FieldRef,
        array: Option<&ArrayRef>,
        rows: &Rows,
    ) -> Result<Visit>;

    /// Whether [`visit`](Rewrite::visit) reads `rows`; when not, they are not computed.
    fn needs_rows(&self) -> bool {
        false
    }
}

/// The field (and, given one, the column) the top-level `field` becomes; `None` when it is
/// dropped.
pub(crate) fn rewrite_column(
    field: &FieldRef,
    column: Option<&ArrayRef>,
    rewrite: &dyn Rewrite,
) -> Result<Option<(FieldRef, Option<ArrayRef>)>> {
    node(
        field,
        column,
        NestedPath::column(field.name()),
        &Rows::Same,
        rewrite,
    )
}

type Node = Option<(FieldRef, Option<ArrayRef>)>;

fn node(
    field: &FieldRef,
    array: Option<&ArrayRef>,
    path: NestedPath,
    rows: &Rows,
    rewrite: &dyn Rewrite,
) -> Result<Node> {
    match rewrite.visit(&path, field, array, rows)? {
        Visit::Keep => return Ok(Some((field.clone(), array.cloned()))),
        Visit::Replace(field, array) => return Ok(Some((field, array))),
        Visit::Drop => return Ok(None),
        Visit::Descend => {}
    }
    let rows_of = |make: &dyn Fn() -> Rows| {
        if rewrite.needs_rows() {
            make()
        } else {
            Rows::Same
        }
    };
    match field.data_type() {
        DataType::Struct(fields) if !fields.is_empty() => {
            let parent = array.map(|a| a.as_struct());
            let mut out_fields = Vec::with_capacity(fields.len());
            let mut out_columns = Vec::with_capacity(fields.len());
            for (i, child) in fields.iter().enumerate() {
                let column = parent.map(|p| p.column(i));
                if let Some((f, c)) = node(child, column, path.child(child.name()), rows, rewrite)?
                {
                    out_fields.push(f);
                    out_columns.extend(c);
                }
            }
            // A struct with nothing left carries nothing: it goes too (an empty struct
            // cannot be written to Parquet either).
            if out_fields.is_empty() {
                return Ok(None);
            }
            let out_fields = Fields::from(out_fields);
            let out = match parent {
                Some(parent) => Some(Arc::new(StructArray::try_new(
                    out_fields.clone(),
                    out_columns,
                    parent.nulls().cloned(),
                )?) as ArrayRef),
                None => None,
            };
            Ok(Some((container(field, DataType::Struct(out_fields)), out)))
        }
        DataType::List(item) => list::<i32>(field, item, array, path, rows, rewrite),
        DataType::LargeList(item) => list::<i64>(field, item, array, path, rows, rewrite),
        DataType::FixedSizeList(item, size) => {
            let list = array.map(|a| a.as_fixed_size_list());
            let inner = list.map_or(Rows::Same, |l| {
                rows_of(&|| rows.fixed(*size as usize, l.len(), l.values().len()))
            });
            let Some((item, values)) =
                node(item, list.map(|l| l.values()), path.item(), &inner, rewrite)?
            else {
                return Ok(None);
            };
            let out = match (list, values) {
                (Some(list), Some(values)) => Some(Arc::new(FixedSizeListArray::try_new(
                    item.clone(),
                    *size,
                    values,
                    list.nulls().cloned(),
                )?) as ArrayRef),
                _ => None,
            };
            Ok(Some((
                container(field, DataType::FixedSizeList(item, *size)),
                out,
            )))
        }
        DataType::Map(entries, sorted) => {
            let map = array.map(|a| a.as_map());
            let entries_array = map.map(|m| Arc::new(m.entries().clone()) as ArrayRef);
            let inner = map.map_or(Rows::Same, |m| {
                rows_of(&|| rows.through(m.offsets(), m.entries().len()))
            });
            let Some((entries_out, rebuilt)) = node(
                entries,
                entries_array.as_ref(),
                path.item(),
                &inner,
                rewrite,
            )?
            else {
                return Ok(None);
            };
            // A map needs both its keys and its values: without one of them it goes whole.
            match entries_out.data_type() {
                DataType::Struct(kv) if kv.len() == 2 => {}
                _ => return Ok(None),
            }
            let out = match (map, rebuilt) {
                (Some(map), Some(rebuilt)) => Some(Arc::new(MapArray::try_new(
                    entries_out.clone(),
                    map.offsets().clone(),
                    rebuilt.as_struct().clone(),
                    map.nulls().cloned(),
                    *sorted,
                )?) as ArrayRef),
                _ => None,
            };
            Ok(Some((
                container(field, DataType::Map(entries_out, *sorted)),
                out,
            )))
        }
        // A leaf asked to descend stays as it is.
        _ => Ok(Some((field.clone(), array.cloned()))),
    }
}

/// A list (`i32` offsets) or large list (`i64`) rebuilt around its rewritten items.
fn list<O: OffsetSizeTrait>(
    field: &FieldRef,
    item: &FieldRef,
    array: Option<&ArrayRef>,
    path: NestedPath,
    rows: &Rows,
    rewrite: &dyn Rewrite,
) -> Result<Node> {
    let list = array.map(|a| a.as_list::<O>());
    let inner = match list {
        Some(l) if rewrite.needs_rows() => rows.through(l.offsets(), l.values().len()),
        _ => Rows::Same,
    };
    let Some((item, values)) = node(item, list.map(|l| l.values()), path.item(), &inner, rewrite)?
    else {
        return Ok(None);
    };
    let out = match (list, values) {
        (Some(list), Some(values)) => Some(Arc::new(GenericListArray::<O>::try_new(
            item.clone(),
            list.offsets().clone(),
            values,
            list.nulls().cloned(),
        )?) as ArrayRef),
        _ => None,
    };
    let data_type = GenericListArray::<O>::DATA_TYPE_CONSTRUCTOR(item);
    Ok(Some((container(field, data_type), out)))
}

/// `field` with a new type, same name, nullability and metadata.
fn container(field: &FieldRef, data_type: DataType) -> FieldRef {
    Arc::new(
        Field::new(field.name(), data_type, field.is_nullable())
            .with_metadata(field.metadata().clone()),
    )
}
