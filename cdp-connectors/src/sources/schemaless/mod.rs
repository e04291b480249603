//! Schemaless decoding: what a source does when a record does not fit the schema it
//! inferred (or was given), shared by every source that reads JSON or CSV without a fixed
//! contract.
//!
//! Nothing is dropped silently. Two settings, per source, decide what happens instead:
//!
//! - [`NewFields`], for a key (at any depth, `properties.plan`) or a CSV column the schema
//!   has no field for: [`Evolve`](NewFields::Evolve) adds the field (typed from the value)
//!   and announces a [`SourceEvent::SchemaChange`](cdp_core::SourceEvent::SchemaChange)
//!   before the first batch that carries it, so the schema guard, the registry and the
//!   destinations evolve as they do for any additive change;
//!   [`Overflow`](NewFields::Overflow) keeps the schema and puts the unknown keys, as one
//!   JSON object per row, in a text column (`_overflow` unless configured);
//!   [`DeadLetter`](NewFields::DeadLetter) sends the record to the dead letters.
//! - [`TypeConflicts`], for a value whose type does not fit its field:
//!   [`Widen`](TypeConflicts::Widen) widens the field by the rules below (a schema change
//!   like any other), or sends the record to the dead letters when no rule applies;
//!   [`DeadLetter`](TypeConflicts::DeadLetter) always sends it to the dead letters, with
//!   the field and both types in the reason.
//!
//! Widening rules (inferred fields only: a column of an explicit schema keeps its type, and
//! a value that does not fit it is a dead letter):
//!
//! | field | value | becomes |
//! |---|---|---|
//! | null (every sampled value was null) | anything | the value's type |
//! | integer | a fractional number | `Float64` |
//! | number | an integer beyond 64 bits | `Utf8`, the number's exact text |
//! | number or boolean | a string, or another scalar | `Utf8`, each value's JSON text |
//! | number or boolean | an object or a list | `Utf8`, each value's JSON text |
//! | text | a number, boolean, object or list | stays `Utf8`: the value's JSON text |
//! | object (struct) or list | anything else | not widened: a dead letter |
//!
//! In CSV every value is text, so the rules read: an integer column takes a decimal by
//! becoming `Float64`, and any column takes any text by becoming `Utf8`.
//!
//! Inference applies the same rules to the sample, so one odd record cannot fail a run:
//! with `widen`, a field whose sampled values disagree gets the type that holds them all (an
//! integer and a float make a float; anything else mixed makes text); with `dead_letter`,
//! it gets the type most sampled records have, and the others are dead letters when read.
//!
//! Every kind of drift a read finds (per field, kind and outcome) is reported once as a
//! [`SourceEvent::Drift`](cdp_core::SourceEvent::Drift), which the run report counts per
//! stream. The fields a read added or widened are kept in the stream's cursor, so a resumed
//! read decodes with the schema the interrupted one had reached and every row comes out
//! the same.

pub(crate) mod delta;
pub(crate) mod path;
pub(crate) mod text;

#[cfg(feature = "jsonl")]
pub(crate) mod decode;
#[cfg(feature = "jsonl")]
pub(crate) mod json;

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cdp_core::record::is_system_column;
use cdp_core::{DriftAction, DriftKind, Error, Result};
use serde::{Deserialize, Serialize};

/// Name of the overflow column unless configured.
pub const DEFAULT_OVERFLOW_COLUMN: &str = "_overflow";

/// Most fields (at every depth) a stream's schema may grow to by evolving; a record that
/// would push it further is a dead letter. Keeps a stream of random keys (ids used as keys)
/// from growing an unbounded schema and cursor.
pub(crate) const MAX_FIELDS: usize = 2000;

/// What a schemaless source does with a key, or a CSV column, its schema has no field for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewFields {
    /// Add the field, typed from its value: a schema change that flows to the destinations.
    #[default]
    Evolve,
    /// Keep the schema; put the unknown keys of each record, as a JSON object, in the
    /// overflow column (a text column, `_overflow` unless configured).
    Overflow,
    /// Send the record to the dead letters.
    DeadLetter,
}

/// What a schemaless source does with a value whose type does not fit its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeConflicts {
    /// Widen the field by the documented rules (a schema change); a conflict no rule covers
    /// (an object where a list was) sends the record to the dead letters.
    #[default]
    Widen,
    /// Send the record to the dead letters.
    DeadLetter,
}

/// The drift settings of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DriftPolicy {
    pub(crate) new_fields: NewFields,
    pub(crate) type_conflicts: TypeConflicts,
    pub(crate) overflow_column: String,
}

impl Default for DriftPolicy {
    fn default() -> Self {
        DriftPolicy {
            new_fields: NewFields::default(),
            type_conflicts: TypeConflicts::default(),
            overflow_column: DEFAULT_OVERFLOW_COLUMN.to_string(),
        }
    }
}

impl DriftPolicy {
    pub(crate) fn widen(&self) -> bool {
        self.type_conflicts == TypeConflicts::Widen
    }

    /// What is wrong with the overflow column's name, if anything.
    pub(crate) fn overflow_problem(&self) -> Option<String> {
        let name = &self.overflow_column;
        if name.is_empty() {
            return Some("must not be empty".into());
        }
        if is_system_column(name) {
            return Some(format!(
                "`{name}` uses the reserved prefix `_cdp_`; choose another name"
            ));
        }
        None
    }

    pub(crate) fn validate(&self, connector: &str) -> Result<()> {
        match self.overflow_problem() {
            Some(problem) => Err(Error::Config(format!(
                "{connector}: `overflow_column` {problem}"
            ))),
            None => Ok(()),
        }
    }

    /// `schema` with the overflow column appended when the policy uses one.
    pub(crate) fn with_overflow(&self, connector: &str, schema: SchemaRef) -> Result<SchemaRef> {
        if self.new_fields != NewFields::Overflow {
            return Ok(schema);
        }
        if schema.column_with_name(&self.overflow_column).is_some() {
            return Err(Error::Config(format!(
                "{connector}: the schema already has a column `{}`, the name of the overflow \
                 column; set `overflow_column` to another name",
                self.overflow_column
            )));
        }
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        // Marked as JSON text, so governance treats what it holds as opaque.
        fields.push(Arc::new(cdp_core::record::json_text_field(
            &self.overflow_column,
        )));
        Ok(Arc::new(Schema::new_with_metadata(
            fields,
            schema.metadata().clone(),
        )))
    }
}

/// A drift found while decoding, before it is placed in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DriftNote {
    pub(crate) path: String,
    pub(crate) kind: DriftKind,
    pub(crate) action: DriftAction,
    pub(crate) detail: String,
}

/// Drift notes waiting to be emitted, each kind reported once per read.
#[derive(Debug, Default)]
pub(crate) struct DriftLog {
    reported: HashSet<(String, DriftKind, DriftAction)>,
    pending: Vec<DriftNote>,
}

impl DriftLog {
    /// Queues `note` unless the same path, kind and action were reported already.
    pub(crate) fn note(
        &mut self,
        path: impl Into<String>,
        kind: DriftKind,
        action: DriftAction,
        detail: impl FnOnce() -> String,
    ) {
        let path = path.into();
        if self.reported.insert((path.clone(), kind, action)) {
            self.pending.push(DriftNote {
                path,
                kind,
                action,
                detail: detail(),
            });
        }
    }

    pub(crate) fn take(&mut self) -> Vec<DriftNote> {
        std::mem::take(&mut self.pending)
    }
}

/// What a format reports after a step: drift found, and the schema if it changed.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub(crate) drift: Vec<DriftNote>,
    /// The new schema and the cursor state that rebuilds it, when the schema changed.
    pub(crate) schema: Option<(SchemaRef, serde_json::Value)>,
}

/// Counts the fields of `schema` at every depth.
pub(crate) fn field_count(schema: &Schema) -> usize {
    fn count(data_type: &DataType) -> usize {
        match data_type {
            DataType::Struct(fields) => fields.iter().map(|f| 1 + count(f.data_type())).sum(),
            DataType::List(item) | DataType::LargeList(item) => count(item.data_type()),
            _ => 0,
        }
    }
    schema
        .fields()
        .iter()
        .map(|f| 1 + count(f.data_type()))
        .sum()
}

/// A short name of a type for reasons and drift details.
pub(crate) fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Struct(_) => "object (Struct)".into(),
        DataType::List(_) | DataType::LargeList(_) => "list".into(),
        other => other.to_string(),
    }
}
