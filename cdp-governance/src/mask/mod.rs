//! Masking methods and the [`Masking`] transform that applies them, column at a time.
//!
//! Every method works on whole Arrow arrays. A masked field keeps its name; its metadata
//! records its class ([`CLASS_METADATA_KEY`](crate::class::CLASS_METADATA_KEY)) and the
//! method applied ([`MASKING_METADATA_KEY`]), which is what the
//! [`Enforcer`](crate::Enforcer) reads to decide whether a flow satisfies the policy.

pub mod generalise;
pub mod hash;
mod nested;
pub mod token;

use std::fmt;
use std::sync::{Arc, Mutex};

use cdp_core::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, StringArray, StringBuilder,
};
use cdp_core::arrow::compute::{can_cast_types, cast};
use cdp_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cdp_core::{Batch, Transform, TransformOutput};
use serde::{Deserialize, Serialize};

use crate::class::{DataClass, with_class};
use crate::error::{Error, Result};
pub use hash::HashKey;
pub(crate) use nested::{Action, Plan};
pub use token::Tokenizer;

/// Field metadata key recording which masking method produced a field's values.
pub const MASKING_METADATA_KEY: &str = "cdp.masking";

/// What redaction writes in place of a value.
pub const REDACTED: &str = "[redacted]";

/// A way to make a field safe for a destination.
///
/// In TOML: `"drop"`, `"null"`, `"redact"`, `"hash"`, `"tokenize"`, `"year"`,
/// `{ partial = { keep_last = 4 } }`, `{ ip_prefix = { v4 = 24, v6 = 48 } }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Method {
    /// Remove the field.
    Drop,
    /// Keep the field, every value null.
    Null,
    /// Replace every non-null value with `[redacted]` (the column becomes text).
    Redact,
    /// Keep the last `keep_last` characters and mask the rest with `*`; values no longer
    /// than `keep_last` are masked entirely, since keeping them would reveal them whole.
    Partial {
        /// Characters kept at the end.
        keep_last: usize,
    },
    /// Keyed hash, HMAC-SHA-256 in lower-case hex: joinable, not reversible.
    Hash,
    /// Deterministic AES-256-SIV token: joinable, reversible by a key holder.
    Tokenize,
    /// Dates and timestamps become the first instant of their year (UTC).
    Year,
    /// IP addresses become their network: `v4` / `v6` leading bits kept.
    IpPrefix {
        /// Bits of an IPv4 address kept.
        v4: u8,
        /// Bits of an IPv6 address kept.
        v6: u8,
    },
}

impl Method {
    /// The value written into [`MASKING_METADATA_KEY`]: stable, parseable by
    /// [`Method::from_marker`].
    pub fn marker(&self) -> String {
        match self {
            Method::Drop => "drop".into(),
            Method::Null => "null".into(),
            Method::Redact => "redact".into(),
            Method::Partial { keep_last } => format!("partial:{keep_last}"),
            Method::Hash => "hash".into(),
            Method::Tokenize => "tokenize".into(),
            Method::Year => "year".into(),
            Method::IpPrefix { v4, v6 } => format!("ip_prefix:{v4}:{v6}"),
        }
    }

    /// Parses a [`marker`](Method::marker).
    pub fn from_marker(marker: &str) -> Option<Method> {
        let mut parts = marker.split(':');
        let method = match (parts.next()?, parts.next(), parts.next()) {
            ("drop", None, None) => Method::Drop,
            ("null", None, None) => Method::Null,
            ("redact", None, None) => Method::Redact,
            ("hash", None, None) => Method::Hash,
            ("tokenize", None, None) => Method::Tokenize,
            ("year", None, None) => Method::Year,
            ("partial", Some(n), None) => Method::Partial {
                keep_last: n.parse().ok()?,
            },
            ("ip_prefix", Some(v4), Some(v6)) => Method::IpPrefix {
                v4: v4.parse().ok()?,
                v6: v6.parse().ok()?,
            },
            _ => return None,
        };
        parts.next().is_none().then_some(method)
    }

    /// Whether data masked with `self` is acceptable where `required` is demanded: the
    /// same method, one that reveals less of the same kind (fewer kept characters, shorter
    /// prefixes), or one that reveals nothing (`null`, `redact`). `drop` is only ever
    /// satisfied by absence.
    pub fn satisfies(&self, required: &Method) -> bool {
        match (self, required) {
            (_, Method::Drop) | (Method::Drop, _) => false,
            (Method::Null | Method::Redact, _) => true,
            (Method::Partial { keep_last: a }, Method::Partial { keep_last: r }) => a <= r,
            (Method::IpPrefix { v4: a4, v6: a6 }, Method::IpPrefix { v4: r4, v6: r6 }) => {
                a4 <= r4 && a6 <= r6
            }
            (a, r) => a == r,
        }
    }

    /// Checks the method can be applied to a field of `data_type` with the given keys.
    pub fn check(&self, field: &str, data_type: &DataType, keys: &Keys) -> Result<()> {
        let textual = || {
            if can_cast_types(data_type, &DataType::Utf8) {
                Ok(())
            } else {
                Err(Error::masking(
                    field,
                    self,
                    format!("{data_type} cannot be rendered as text"),
                ))
            }
        };
        let nested = matches!(
            data_type,
            DataType::Struct(_)
                | DataType::List(_)
                | DataType::LargeList(_)
                | DataType::FixedSizeList(..)
                | DataType::Map(..)
        );
        match self {
            Method::Drop | Method::Null => Ok(()),
            _ if nested => Err(Error::masking(
                field,
                self,
                format!(
                    "the field is {data_type}, not a value: mask the fields inside it, or use                      `null` or `drop`"
                ),
            )),
            Method::Redact | Method::Partial { .. } => textual(),
            Method::Hash => {
                textual()?;
                keys.hash.as_ref().map(|_| ()).ok_or_else(|| {
                    Error::masking(field, self, "no hash key configured (Keys::with_hash_key)")
                })
            }
            Method::Tokenize => {
                textual()?;
                keys.token.as_ref().map(|_| ()).ok_or_else(|| {
                    Error::masking(
                        field,
                        self,
                        "no token key configured (Keys::with_token_key)",
                    )
                })
            }
            Method::Year if generalise::supports_year(data_type) => Ok(()),
            Method::Year => Err(Error::masking(
                field,
                self,
                format!("needs a date or timestamp, the field is {data_type}"),
            )),
            Method::IpPrefix { v4, v6 } if *v4 > 32 || *v6 > 128 => Err(Error::masking(
                field,
                self,
                "prefixes must be at most 32 (IPv4) and 128 (IPv6) bits",
            )),
            Method::IpPrefix { .. }
                if matches!(
                    data_type,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                Ok(())
            }
            Method::IpPrefix { .. } => Err(Error::masking(
                field,
                self,
                format!("needs a text column of addresses, the field is {data_type}"),
            )),
        }
    }

    /// The field a masked `field` becomes (`None` for `drop`), with class and method in its
    /// metadata.
    pub fn output_field(&self, field: &Field, class: DataClass) -> Option<Field> {
        let (data_type, nullable) = match self {
            Method::Drop => return None,
            Method::Null => (field.data_type().clone(), true),
            Method::Year => (field.data_type().clone(), field.is_nullable()),
            Method::IpPrefix { .. } => (DataType::Utf8, true),
            Method::Redact | Method::Partial { .. } | Method::Hash | Method::Tokenize => {
                (DataType::Utf8, field.is_nullable())
            }
        };
        let mut out = with_class(
            Field::new(field.name(), data_type, nullable).with_metadata(field.metadata().clone()),
            class,
        );
        let mut metadata = out.metadata().clone();
        if !matches!(self, Method::Null | Method::Year) {
            // The values are no longer what an extension type said they were (JSON text
            // hashed is not JSON).
            metadata.remove(crate::path::EXTENSION_NAME_KEY);
            metadata.remove("ARROW:extension:metadata");
        }
        metadata.insert(MASKING_METADATA_KEY.to_string(), self.marker());
        out.set_metadata(metadata);
        Some(out)
    }

    /// Masks a whole column; `None` for `drop`.
    pub fn apply(&self, field: &str, array: &ArrayRef, keys: &Keys) -> Result<Option<ArrayRef>> {
        let in_field = |e: Error| match e {
            Error::Masking {
                method, message, ..
            } => Error::Masking {
                field: field.to_string(),
                method,
                message,
            },
            other => other,
        };
        let out: ArrayRef = match self {
            Method::Drop => return Ok(None),
            Method::Null => cdp_core::arrow::array::new_null_array(array.data_type(), array.len()),
            Method::Redact => Arc::new(redact(array)),
            Method::Partial { keep_last } => {
                Arc::new(partial(array, *keep_last).map_err(in_field)?)
            }
            Method::Hash => keys
                .hash
                .as_ref()
                .ok_or_else(|| Error::masking(field, self, "no hash key configured"))?
                .hash_array(array)
                .map_err(in_field)?,
            Method::Tokenize => keys
                .token
                .as_ref()
                .ok_or_else(|| Error::masking(field, self, "no token key configured"))?
                .tokenize_array(array)
                .map_err(in_field)?,
            Method::Year => generalise::year(array).map_err(in_field)?,
            Method::IpPrefix { v4, v6 } => {
                generalise::ip_prefix(array, *v4, *v6).map_err(in_field)?
            }
        };
        Ok(Some(out))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Partial { keep_last } => write!(f, "partial (keep last {keep_last})"),
            Method::IpPrefix { v4, v6 } => write!(f, "ip_prefix (/{v4} IPv4, /{v6} IPv6)"),
            other => f.write_str(&other.marker()),
        }
    }
}

/// The secrets masking needs. Never part of a policy file: load them from a secret store
/// and hand them over in code.
#[derive(Clone, Default)]
pub struct Keys {
    hash: Option<HashKey>,
    token: Option<Tokenizer>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = |set: bool| if set { "set" } else { "unset" };
        f.debug_struct("Keys")
            .field("hash", &state(self.hash.is_some()))
            .field("token", &state(self.token.is_some()))
            .finish()
    }
}

impl Keys {
    /// No keys: only methods that need none (`drop`, `null`, `redact`, `partial`, `year`,
    /// `ip_prefix`) are available.
    pub fn new() -> Self {
        Keys::default()
    }

    /// Adds the HMAC-SHA-256 key (at least 16 bytes; 32 random bytes recommended).
    pub fn with_hash_key(mut self, key: &[u8]) -> Result<Self> {
        self.hash = Some(HashKey::new(key)?);
        Ok(self)
    }

    /// Adds the AES-256-SIV tokenisation key (64 bytes).
    pub fn with_token_key(mut self, key: &[u8]) -> Result<Self> {
        self.token = Some(Tokenizer::new(key)?);
        Ok(self)
    }

    /// The hash key, if set.
    pub fn hash_key(&self) -> Option<&HashKey> {
        self.hash.as_ref()
    }

    /// The tokenizer, if a token key is set.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.token.as_ref()
    }
}

/// A column rendered as UTF-8 text (zero-copy when it already is `Utf8`).
pub(crate) fn as_strings(array: &ArrayRef) -> Result<StringArray> {
    if let Some(strings) = array.as_string_opt::<i32>() {
        return Ok(strings.clone());
    }
    let cast = cast(array, &DataType::Utf8)?;
    Ok(cast.as_string::<i32>().clone())
}

/// Every non-null value becomes [`REDACTED`].
pub fn redact(array: &ArrayRef) -> StringArray {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * REDACTED.len());
    for row in 0..array.len() {
        if array.is_valid(row) {
            out.append_value(REDACTED);
        } else {
            out.append_null();
        }
    }
    out.finish()
}

/// Keeps the last `keep_last` characters of each value and masks the rest with `*`.
pub fn partial(array: &ArrayRef, keep_last: usize) -> Result<StringArray> {
    let strings = as_strings(array)?;
    let mut out = StringBuilder::with_capacity(strings.len(), strings.value_data().len());
    // One buffer reused for every value: no allocation per row.
    let mut buffer = String::new();
    for value in strings.iter() {
        let Some(value) = value else {
            out.append_null();
            continue;
        };
        let chars = if value.is_ascii() {
            value.len()
        } else {
            value.chars().count()
        };
        let (masked, kept) = if chars <= keep_last {
            (chars, "")
        } else if value.is_ascii() {
            (chars - keep_last, &value[chars - keep_last..])
        } else {
            let split = value
                .char_indices()
                .nth(chars - keep_last)
                .map_or(value.len(), |(i, _)| i);
            (chars - keep_last, &value[split..])
        };
        buffer.clear();
        buffer.extend(std::iter::repeat_n('*', masked));
        buffer.push_str(kept);
        out.append_value(&buffer);
    }
    Ok(out.finish())
}

/// What a [`Masking`] transform does to one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldAction {
    /// The field: a top-level name or a path to a nested one (`traits.email`,
    /// `contacts[].email`; see [`path`](crate::path)).
    pub field: String,
    /// Its class, written into the output field's metadata.
    pub class: DataClass,
    /// The method; `None` passes the values unchanged (only the class is recorded).
    pub method: Option<Method>,
}

/// The last schema a [`Masking`] planned for, and its plan.
type PlannedSchema = (SchemaRef, Arc<Plan>);

/// A transform applying masking methods to fields at any depth, one column (or child
/// array) at a time.
///
/// Two ways to say what it does:
///
/// * built from a policy ([`Policy::masking_for`](crate::Policy::masking_for)), it asks the
///   policy about every field of every schema it sees, so a field that appears in a later
///   schema change — a new nested key of schemaless input — is masked as the policy says;
/// * built by hand with [`field`](Masking::field), it does exactly the listed actions.
///   Fields it was not told about pass through untouched and unannotated, so the
///   [`Enforcer`](crate::Enforcer) classifies them afresh and refuses what the policy
///   forbids. Listed fields missing from a batch are skipped (nothing to protect).
///
/// A nested field is masked in place: the method runs on its child array and the structs,
/// lists and maps above it are rebuilt around the result, keeping their other fields and
/// their nulls. `drop` removes the field from its struct's type (a struct left empty goes
/// too); on a whole struct, list or map only `null` and `drop` apply.
#[derive(Debug, Clone)]
pub struct Masking {
    name: String,
    actions: Vec<FieldAction>,
    keys: Keys,
    /// The policy and destination to ask, when built from a policy.
    derived: Option<(crate::policy::Policy, String)>,
    /// The plan of the last schema seen: schemas change rarely, batches often.
    cache: Arc<Mutex<Option<PlannedSchema>>>,
}

impl Masking {
    /// A masking transform called `name`, using `keys` for hashing and tokenisation.
    pub fn new(name: impl Into<String>, keys: Keys) -> Self {
        Masking {
            name: name.into(),
            actions: Vec::new(),
            keys,
            derived: None,
            cache: Arc::default(),
        }
    }

    /// A masking transform doing what `policy` requires for `destination`, for every schema
    /// it is given.
    pub(crate) fn derived(
        name: impl Into<String>,
        policy: crate::policy::Policy,
        destination: impl Into<String>,
    ) -> Self {
        let keys = policy.keys().clone();
        Masking {
            derived: Some((policy, destination.into())),
            ..Masking::new(name, keys)
        }
    }

    /// Adds an action on `field` (a name or a path).
    pub fn field(
        mut self,
        field: impl Into<String>,
        class: DataClass,
        method: Option<Method>,
    ) -> Self {
        self.actions.push(FieldAction {
            field: field.into(),
            class,
            method,
        });
        self
    }

    /// The listed actions, in the order they were added (empty for a transform built from
    /// a policy: see [`actions_for`](Masking::actions_for)).
    pub fn actions(&self) -> &[FieldAction] {
        &self.actions
    }

    /// What the transform does to each field of `schema` (paths as printed, in schema
    /// order).
    pub fn actions_for(&self, schema: &Schema) -> Result<Vec<FieldAction>> {
        let plan = self.plan(schema)?;
        Ok(plan.listed())
    }

    fn plan(&self, schema: &Schema) -> Result<Arc<Plan>> {
        if let Ok(cache) = self.cache.lock()
            && let Some((cached, plan)) = cache.as_ref()
            && **cached == *schema
        {
            return Ok(plan.clone());
        }
        let plan = match &self.derived {
            Some((policy, destination)) => policy.plan_for(destination, schema)?,
            None => self.listed_plan(schema),
        };
        plan.check(schema, &self.keys)?;
        let plan = Arc::new(plan);
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((Arc::new(schema.clone()), plan.clone()));
        }
        Ok(plan)
    }

    fn listed_plan(&self, schema: &Schema) -> Plan {
        let mut plan = Plan::default();
        let nodes = crate::path::nodes(schema);
        for action in &self.actions {
            let key = action.field.replace("[]", "");
            for path in nodes
                .iter()
                .filter(|p| p.key() == key || (p.is_top_level() && p.name() == action.field))
            {
                plan.insert(
                    path.clone(),
                    Action {
                        class: action.class,
                        method: action.method.clone(),
                        rule: None,
                    },
                );
            }
        }
        plan
    }

    /// Masks a record batch.
    pub fn apply_to(&self, data: &RecordBatch) -> Result<RecordBatch> {
        let schema = data.schema();
        let plan = self.plan(&schema)?;
        if plan.is_empty() {
            return Ok(data.clone());
        }
        let mut fields = Vec::with_capacity(schema.fields().len());
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (field, column) in schema.fields().iter().zip(data.columns()) {
            if let Some((field, Some(column))) = plan.rebuild(field, Some(column), &self.keys)? {
                fields.push(field);
                columns.push(column);
            }
        }
        let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
        // The row count is explicit so that dropping every column still keeps the rows.
        let options = RecordBatchOptions::new().with_row_count(Some(data.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(schema),
            columns,
            &options,
        )?)
    }

    /// The schema [`apply_to`](Masking::apply_to) produces for `input`.
    pub fn masked_schema(&self, input: &Schema) -> Result<SchemaRef> {
        let plan = self.plan(input)?;
        let mut fields = Vec::with_capacity(input.fields().len());
        for field in input.fields() {
            if let Some((field, _)) = plan.rebuild(field, None, &self.keys)? {
                fields.push(field);
            }
        }
        Ok(Arc::new(Schema::new_with_metadata(
            fields,
            input.metadata().clone(),
        )))
    }
}

impl Transform for Masking {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_schema(&self, input: &SchemaRef) -> cdp_core::Result<SchemaRef> {
        Ok(self.masked_schema(input)?)
    }

    fn apply(&self, batch: Batch) -> cdp_core::Result<TransformOutput> {
        let data = self.apply_to(&batch.data)?;
        Ok(TransformOutput::pass(Batch { data, ..batch }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_core::arrow::array::Int64Array;

    #[test]
    fn markers_round_trip() {
        for m in [
            Method::Drop,
            Method::Null,
            Method::Redact,
            Method::Partial { keep_last: 4 },
            Method::Hash,
            Method::Tokenize,
            Method::Year,
            Method::IpPrefix { v4: 24, v6: 48 },
        ] {
            assert_eq!(Method::from_marker(&m.marker()), Some(m));
        }
        assert_eq!(Method::from_marker("hash:1"), None);
    }

    #[test]
    fn partial_keeps_last_characters_only() {
        let column: ArrayRef = Arc::new(StringArray::from(vec![
            Some("4111111111111111"),
            Some("abc"),
            None,
            Some("héllo"),
        ]));
        let masked = partial(&column, 4).unwrap();
        assert_eq!(masked.value(0), "************1111");
        assert_eq!(masked.value(1), "***");
        assert!(masked.is_null(2));
        assert_eq!(masked.value(3), "*éllo");
    }

    #[test]
    fn satisfaction_is_by_kind_and_strength() {
        let p = |k| Method::Partial { keep_last: k };
        assert!(p(2).satisfies(&p(4)));
        assert!(!p(6).satisfies(&p(4)));
        assert!(Method::Null.satisfies(&Method::Hash));
        assert!(!Method::Tokenize.satisfies(&Method::Hash));
        assert!(!Method::Null.satisfies(&Method::Drop));
    }

    #[test]
    fn masking_transform_masks_named_fields_and_passes_others() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("email", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("ssn", DataType::Utf8, true),
        ]));
        let data = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a@x.io"])),
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(StringArray::from(vec!["123-45-6789"])),
            ],
        )
        .unwrap();
        let keys = Keys::new().with_hash_key(&[1; 32]).unwrap();
        let masking = Masking::new("mask", keys.clone())
            .field("email", DataClass::Sensitive, Some(Method::Hash))
            .field("ssn", DataClass::Restricted, Some(Method::Drop));
        let out = masking.apply_to(&data).unwrap();
        assert_eq!(out.schema(), masking.masked_schema(&schema).unwrap());
        assert_eq!(out.num_columns(), 2);
        let email = out.column(0).as_string::<i32>();
        assert_eq!(email.value(0), keys.hash_key().unwrap().hash_hex(b"a@x.io"));
        assert_eq!(
            out.schema()
                .field(0)
                .metadata()
                .get(MASKING_METADATA_KEY)
                .map(String::as_str),
            Some("hash")
        );
    }
}
