//! Erasure ("right to be forgotten"): remove a person from the profile store and identity
//! graph, tell destinations to delete them (tombstones), and block their re-ingestion
//! (a suppression list and the [`Suppress`] transform).
//!
//! The suppression list holds keyed hashes (HMAC-SHA-256) of identifiers, never the
//! identifiers: a list of erased people's emails would itself be personal data nobody can
//! erase. For the same reason the audit log records digests only.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use cdp_core::arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBufferBuilder, RecordBatch, StringArray, StructArray,
    UInt8Array, new_null_array,
};
use cdp_core::arrow::compute::{cast, filter_record_batch};
use cdp_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cdp_core::identifier::Vocabulary;
use cdp_core::path::FieldPath;
use cdp_core::{Batch, OP_COLUMN, Op, Transform, TransformOutput, async_trait};
use serde::Serialize;

use crate::audit::{AuditEvent, AuditKind, AuditLog, Digest};
use crate::error::{Error, Result};
use crate::mask::HashKey;

/// Something that identifies a person: a kind (`email`, `user_id`, `anonymous_id`,
/// `phone`, ...) and a value as received. The identifier vocabulary of `cdp-core`: the
/// [`SuppressionList`]'s [`Vocabulary`] says how each kind is compared.
pub use cdp_core::identifier::Identifier;

/// What one target removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetErasure {
    /// The target's name.
    pub target: String,
    /// Records removed (profiles, graph nodes, rows).
    pub records_removed: u64,
    /// Other identifiers the person had there (emails, device ids, ...), to suppress too.
    pub linked: Vec<Identifier>,
}

/// A store holding people's data that must forget a person on request: the identity graph
/// and the profile store (`cdp::erasure` implements it for both, in the umbrella crate,
/// since this crate does not depend on `cdp-identity`), a CRM, a warehouse with a delete API.
#[async_trait]
pub trait ErasureTarget: fmt::Debug + Send + Sync {
    /// Name, used in receipts and the audit log.
    fn name(&self) -> &str;

    /// Removes everything held about the person `identifier` belongs to, and returns the
    /// person's other identifiers so they are suppressed as well. Erasing someone unknown
    /// is not an error: it removes nothing.
    async fn erase(&self, identifier: &Identifier) -> Result<TargetErasure>;
}

/// Keyed digests of erased identifiers; re-ingestion of any of them is blocked by
/// [`Suppress`].
#[derive(Debug)]
pub struct SuppressionList {
    key: HashKey,
    vocabulary: Vocabulary,
    digests: RwLock<HashSet<Digest>>,
}

impl SuppressionList {
    /// An empty list hashing with `key` (keep it as secret, and as stable, as the list),
    /// comparing identifiers by the [standard vocabulary](Vocabulary::standard).
    pub fn new(key: HashKey) -> Self {
        SuppressionList {
            key,
            vocabulary: Vocabulary::standard(),
            digests: RwLock::new(HashSet::new()),
        }
    }

    /// Compares identifiers by `vocabulary` — use the identity rules' own
    /// (`Rules::vocabulary` in `cdp-identity`), so a person erased by any spelling of an
    /// identifier is suppressed in every spelling the identity graph would link. Set it
    /// before suppressing anything: digests are of normalised values.
    pub fn with_vocabulary(mut self, vocabulary: Vocabulary) -> Self {
        self.vocabulary = vocabulary;
        self
    }

    /// The vocabulary identifiers are compared by.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// The digest of a raw value of `kind`: of its normalised form, or of the trimmed raw
    /// value when the normaliser refuses it (an erasure of an odd value still blocks that
    /// value).
    fn digest_raw(&self, kind: &str, raw: &str, buf: &mut String) -> Digest {
        let normaliser = self.vocabulary.normaliser(kind);
        let value = match normaliser.apply(raw, buf) {
            Some(v) => v,
            None => raw.trim(),
        };
        self.digest_of(kind, value)
    }

    fn digest_of(&self, kind: &str, normalised: &str) -> Digest {
        let mut bytes = Vec::with_capacity(kind.len() + 1 + normalised.len());
        bytes.extend_from_slice(kind.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(normalised.as_bytes());
        Digest(self.key.hash(&bytes))
    }

    /// The keyed digest of `identifier`.
    pub fn digest(&self, identifier: &Identifier) -> Digest {
        self.digest_raw(&identifier.kind, &identifier.value, &mut String::new())
    }

    /// Adds `identifier`; returns its digest.
    pub fn suppress(&self, identifier: &Identifier) -> Result<Digest> {
        let digest = self.digest(identifier);
        self.write()?.insert(digest);
        Ok(digest)
    }

    /// Adds digests recorded earlier (from [`digests`](SuppressionList::digests) or the
    /// audit log).
    pub fn extend(&self, digests: impl IntoIterator<Item = Digest>) -> Result<()> {
        self.write()?.extend(digests);
        Ok(())
    }

    /// Whether `identifier` is suppressed.
    pub fn contains(&self, identifier: &Identifier) -> Result<bool> {
        let digest = self.digest(identifier);
        Ok(self.read()?.contains(&digest))
    }

    /// Every digest, sorted, for persisting the list.
    pub fn digests(&self) -> Result<Vec<Digest>> {
        let mut all: Vec<Digest> = self.read()?.iter().copied().collect();
        all.sort_unstable();
        Ok(all)
    }

    /// Number of suppressed identifiers.
    pub fn len(&self) -> Result<usize> {
        Ok(self.read()?.len())
    }

    /// Whether nothing is suppressed.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.read()?.is_empty())
    }

    /// Re-adds every digest recorded by [`Eraser`] in `log`: the audit log is durable and
    /// tamper-evident, so it doubles as the list's persistence. Returns how many were read.
    pub fn restore_from_audit(&self, log: &dyn AuditLog) -> Result<usize> {
        let mut restored = Vec::new();
        for entry in log.entries()? {
            if entry.kind != AuditKind::Erasure {
                continue;
            }
            let detail = entry.detail_json()?;
            if let Some(list) = detail.get("suppressed").and_then(|s| s.as_array()) {
                for digest in list.iter().filter_map(|d| d.as_str()) {
                    restored.push(digest.parse()?);
                }
            }
        }
        let n = restored.len();
        self.extend(restored)?;
        Ok(n)
    }

    /// For each row of `column` (values of identifier `kind`), whether it is suppressed.
    pub fn matches(&self, column: &ArrayRef, kind: &str) -> Result<BooleanArray> {
        let text = cast(column, &DataType::Utf8)?;
        let strings = text
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::column(kind, "could not be read as text"))?;
        let digests = self.read()?;
        let mut out = BooleanBufferBuilder::new(strings.len());
        let mut buf = String::new();
        for value in strings.iter() {
            let hit = value.is_some_and(|v| digests.contains(&self.digest_raw(kind, v, &mut buf)));
            out.append(hit);
        }
        Ok(BooleanArray::new(out.finish(), None))
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, HashSet<Digest>>> {
        self.digests
            .read()
            .map_err(|_| Error::Audit("suppression list lock poisoned".into()))
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, HashSet<Digest>>> {
        self.digests
            .write()
            .map_err(|_| Error::Audit("suppression list lock poisoned".into()))
    }
}

/// A transform dropping every row that carries a suppressed identifier, so an erased person
/// is not re-ingested. Put it first in the pipeline. Tombstones (`_cdp_op` = delete) pass:
/// deletions of erased people must still reach destinations.
#[derive(Debug)]
pub struct Suppress {
    list: Arc<SuppressionList>,
    columns: Vec<(FieldPath, String)>,
    dropped: AtomicU64,
}

impl Suppress {
    /// A transform checking no column yet; add them with [`column`](Suppress::column).
    pub fn new(list: Arc<SuppressionList>) -> Self {
        Suppress {
            list,
            columns: Vec::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Checks `column` — a column name or a dot path into struct columns
    /// (`context.traits.email`, see [`FieldPath`]) — whose values are identifiers of `kind`.
    /// Text that is no valid path is taken as one column name.
    pub fn column(mut self, column: impl AsRef<str>, kind: impl Into<String>) -> Self {
        let column = column.as_ref();
        let path = FieldPath::parse(column).unwrap_or_else(|_| FieldPath::field(column));
        self.columns.push((path, kind.into()));
        self
    }

    /// Rows dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The rows of `data` that may pass.
    pub fn filter(&self, data: &RecordBatch) -> Result<RecordBatch> {
        let rows = data.num_rows();
        let mut drop = vec![false; rows];
        let mut any = false;
        for (path, kind) in &self.columns {
            // A batch without the field carries no identifier of it.
            let Ok(values) = path.column(data) else {
                continue;
            };
            let hits = self.list.matches(&values, kind)?;
            for (row, hit) in hits.values().iter().enumerate() {
                if hit {
                    drop[row] = true;
                    any = true;
                }
            }
        }
        if !any {
            return Ok(data.clone());
        }
        if let Some(ops) = data.column_by_name(OP_COLUMN) {
            let ops = ops
                .as_any()
                .downcast_ref::<UInt8Array>()
                .ok_or_else(|| Error::column(OP_COLUMN, "must be UInt8"))?;
            for (row, op) in ops.iter().enumerate() {
                if op == Some(Op::Delete as u8) {
                    drop[row] = false;
                }
            }
        }
        let keep = BooleanArray::from(drop.iter().map(|d| !d).collect::<Vec<bool>>());
        let kept = filter_record_batch(data, &keep)?;
        self.dropped
            .fetch_add((rows - kept.num_rows()) as u64, Ordering::Relaxed);
        Ok(kept)
    }
}

impl Transform for Suppress {
    fn name(&self) -> &str {
        "suppress erased identifiers"
    }

    fn output_schema(&self, input: &SchemaRef) -> cdp_core::Result<SchemaRef> {
        Ok(input.clone())
    }

    fn apply(&self, batch: Batch) -> cdp_core::Result<TransformOutput> {
        let data = self.filter(&batch.data)?;
        Ok(TransformOutput::pass(Batch { data, ..batch }))
    }
}

/// The outcome of [`Eraser::erase`].
#[derive(Debug, Clone, Serialize)]
pub struct ErasureReceipt {
    /// Keyed digest of the identifier erased.
    pub identifier: Digest,
    /// Every identifier now suppressed (the one asked for and those linked to it), in
    /// every spelling seen, for tombstones.
    #[serde(skip)]
    pub suppressed: Vec<Identifier>,
    /// What each target removed.
    pub targets: Vec<TargetErasure>,
    /// Sequence number of the audit entry, if an audit log is set.
    pub audit_seq: Option<u64>,
}

impl ErasureReceipt {
    /// The suppressed identifiers of `kind` (to build [`tombstones`] keyed by them).
    pub fn identifiers_of(&self, kind: &str) -> Vec<&str> {
        self.suppressed
            .iter()
            .filter(|i| i.kind == kind)
            .map(|i| i.value.as_str())
            .collect()
    }
}

/// Carries out erasures: suppress first (so nothing slips back in meanwhile), then every
/// target, then suppress what the targets linked, then record it.
#[derive(Debug, Clone)]
pub struct Eraser {
    suppression: Arc<SuppressionList>,
    targets: Vec<Arc<dyn ErasureTarget>>,
    audit: Option<Arc<dyn AuditLog>>,
}

impl Eraser {
    /// An eraser adding to `suppression`.
    pub fn new(suppression: Arc<SuppressionList>) -> Self {
        Eraser {
            suppression,
            targets: Vec::new(),
            audit: None,
        }
    }

    /// Adds a target.
    pub fn target(mut self, target: Arc<dyn ErasureTarget>) -> Self {
        self.targets.push(target);
        self
    }

    /// Records erasures in `log`.
    pub fn audit(mut self, log: Arc<dyn AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// The suppression list.
    pub fn suppression(&self) -> &Arc<SuppressionList> {
        &self.suppression
    }

    /// Erases the person `identifier` belongs to, on behalf of `requested_by`.
    ///
    /// When a target fails, what was done so far (suppression included) stays done and is
    /// recorded, and the error is returned: erasure is idempotent, so call it again.
    pub async fn erase(
        &self,
        identifier: &Identifier,
        requested_by: &str,
    ) -> Result<ErasureReceipt> {
        let digest = self.suppression.suppress(identifier)?;
        let mut suppressed = vec![identifier.clone()];
        let mut digests = vec![digest];
        let mut targets = Vec::new();
        let mut failure = None;
        for target in &self.targets {
            match target.erase(identifier).await {
                Ok(outcome) => {
                    for linked in &outcome.linked {
                        // `Ada@X.io` and `ada@x.io` are one identifier (one digest), but
                        // both spellings are kept for tombstones: stores match them exactly.
                        let digest = self.suppression.suppress(linked)?;
                        if !digests.contains(&digest) {
                            digests.push(digest);
                        }
                        if !suppressed.contains(linked) {
                            suppressed.push(linked.clone());
                        }
                    }
                    targets.push(outcome);
                }
                Err(error) => {
                    failure = Some((target.name().to_string(), error));
                    break;
                }
            }
        }
        let mut receipt = ErasureReceipt {
            identifier: digest,
            suppressed,
            targets,
            audit_seq: None,
        };
        if let Some(log) = &self.audit {
            let entry = log.append(AuditEvent::new(
                AuditKind::Erasure,
                requested_by,
                digest.to_string(),
                serde_json::json!({
                    "kind": identifier.kind,
                    "suppressed": digests.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "targets": receipt.targets.iter().map(|t| serde_json::json!({
                        "target": t.target,
                        "records_removed": t.records_removed,
                        "linked": t.linked.len(),
                    })).collect::<Vec<_>>(),
                    "failed": failure.as_ref().map(|(name, e)| format!("{name}: {e}")),
                }),
            ))?;
            receipt.audit_seq = Some(entry.seq);
        }
        match failure {
            None => Ok(receipt),
            Some((
                target,
                Error::Erasure {
                    source, retryable, ..
                },
            )) => Err(Error::Erasure {
                target,
                source,
                retryable,
            }),
            Some((target, other)) => {
                let retryable = other.is_retryable();
                Err(Error::Erasure {
                    target,
                    source: Box::new(other),
                    retryable,
                })
            }
        }
    }
}

/// Tombstone rows for `keys`: the stream's `schema` with every column null except
/// `key_column`, plus `_cdp_op` = delete. Feed them through the same pipeline (with the same
/// per-destination transforms, so a hashed key is hashed alike) and each destination deletes
/// the rows it holds under those keys.
///
/// Columns other than the key become nullable, since a tombstone carries nothing else. The
/// key may be inside a struct (`traits.email`, a [`FieldPath`]): the struct is then set in
/// every tombstone, holding the key and nothing else.
pub fn tombstones(schema: &Schema, key_column: &str, keys: &[&str]) -> Result<RecordBatch> {
    tombstones_by(schema, &[(key_column, keys.to_vec())])
}

/// Tombstones keyed by several columns: for each `(column, values)`, one row per value with
/// only that column set. A person known by a user id in some rows and only by a device id in
/// others (before they logged in) needs both.
pub fn tombstones_by(schema: &Schema, keys: &[(&str, Vec<&str>)]) -> Result<RecordBatch> {
    let rows: usize = keys.iter().map(|(_, v)| v.len()).sum();
    // Each key column resolved to its top-level column and the child indices below it, so a
    // key nested in a struct (`traits.email`) is set inside an otherwise empty struct.
    let mut resolved = Vec::with_capacity(keys.len());
    for (column, _) in keys {
        let path = FieldPath::parse(column).unwrap_or_else(|_| FieldPath::field(column));
        let at = path
            .resolve(schema.fields())
            .map_err(|e| Error::column(*column, format!("not in the stream's schema: {e}")))?;
        resolved.push(at.indices);
    }
    let mut fields = Vec::with_capacity(schema.fields().len() + 1);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len() + 1);
    for (index, field) in schema.fields().iter().enumerate() {
        if cdp_core::record::is_system_column(field.name()) {
            continue;
        }
        // The keys set in this column, each with its rows: `(child path, values)`.
        let mut keyed: Vec<(&[usize], Vec<Option<&str>>)> = Vec::new();
        let mut offset = 0;
        for ((_, values), indices) in keys.iter().zip(&resolved) {
            if indices[0] == index {
                let mut column = vec![None; rows];
                for (i, v) in values.iter().enumerate() {
                    column[offset + i] = Some(*v);
                }
                keyed.push((&indices[1..], column));
            }
            offset += values.len();
        }
        let only_key = keyed.len() == 1 && keys.len() == 1 && keyed[0].0.is_empty();
        let out = if keyed.is_empty() {
            new_null_array(field.data_type(), rows)
        } else {
            keyed_column(field, &keyed, rows)?
        };
        fields.push(
            Field::new(
                field.name(),
                out.data_type().clone(),
                field.is_nullable() || !only_key,
            )
            .with_metadata(field.metadata().clone()),
        );
        columns.push(out);
    }
    fields.push(Field::new(OP_COLUMN, DataType::UInt8, false));
    columns.push(Arc::new(UInt8Array::from(vec![Op::Delete as u8; rows])));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )?)
}

/// The column of `field` with only the keyed values set: at the end of each child path the
/// key (cast to the field's type), every struct on the way valid in the key's rows, and
/// everything else null (so every field below becomes nullable).
fn keyed_column(
    field: &Field,
    keyed: &[(&[usize], Vec<Option<&str>>)],
    rows: usize,
) -> Result<ArrayRef> {
    if let Some((_, values)) = keyed.iter().find(|(rest, _)| rest.is_empty()) {
        let text: ArrayRef = Arc::new(StringArray::from(values.clone()));
        return Ok(cast(&text, field.data_type())?);
    }
    let DataType::Struct(children) = field.data_type() else {
        return Ok(new_null_array(field.data_type(), rows));
    };
    let mut out_fields = Vec::with_capacity(children.len());
    let mut out_columns = Vec::with_capacity(children.len());
    for (i, child) in children.iter().enumerate() {
        let below: Vec<(&[usize], Vec<Option<&str>>)> = keyed
            .iter()
            .filter(|(rest, _)| rest[0] == i)
            .map(|(rest, values)| (&rest[1..], values.clone()))
            .collect();
        let column = if below.is_empty() {
            new_null_array(child.data_type(), rows)
        } else {
            keyed_column(child, &below, rows)?
        };
        out_fields.push(
            Field::new(child.name(), column.data_type().clone(), true)
                .with_metadata(child.metadata().clone()),
        );
        out_columns.push(column);
    }
    let valid: Vec<bool> = (0..rows)
        .map(|row| keyed.iter().any(|(_, values)| values[row].is_some()))
        .collect();
    Ok(Arc::new(StructArray::try_new(
        out_fields.into(),
        out_columns,
        Some(valid.into()),
    )?))
}

impl ErasureReceipt {
    /// Tombstones for every suppressed identifier, keyed by the columns that hold each
    /// kind: `(column, kind)` pairs as given to [`Suppress::column`].
    pub fn tombstones(&self, schema: &Schema, columns: &[(&str, &str)]) -> Result<RecordBatch> {
        let keys: Vec<(&str, Vec<&str>)> = columns
            .iter()
            .map(|(column, kind)| (*column, self.identifiers_of(kind)))
            .collect();
        tombstones_by(schema, &keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Arc<SuppressionList> {
        Arc::new(SuppressionList::new(HashKey::new(&[9; 32]).unwrap()))
    }

    #[test]
    fn emails_match_case_insensitively_and_kinds_do_not_mix() {
        let list = list();
        list.suppress(&Identifier::new("email", "Ada@Example.com "))
            .unwrap();
        assert!(
            list.contains(&Identifier::new("email", "ada@example.com"))
                .unwrap()
        );
        assert!(
            !list
                .contains(&Identifier::new("user_id", "ada@example.com"))
                .unwrap()
        );
    }

    #[test]
    fn suppress_drops_rows_but_keeps_tombstones() {
        let list = list();
        list.suppress(&Identifier::new("email", "a@x.io")).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("email", DataType::Utf8, true),
            Field::new(OP_COLUMN, DataType::UInt8, false),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a@x.io"),
                    Some("b@x.io"),
                    None,
                    Some("A@x.io"),
                ])),
                Arc::new(UInt8Array::from(vec![0, 0, 0, 1])),
            ],
        )
        .unwrap();
        let suppress = Suppress::new(list).column("email", "email");
        let kept = suppress.filter(&data).unwrap();
        assert_eq!(kept.num_rows(), 3);
        assert_eq!(suppress.dropped(), 1);
    }

    #[test]
    fn tombstones_keep_the_key_and_null_the_rest() {
        let schema = Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, false),
        ]);
        let t = tombstones(&schema, "user_id", &["7", "8"]).unwrap();
        assert_eq!(t.num_rows(), 2);
        assert_eq!(t.column(1).null_count(), 2);
        let batch = Batch::new("users", t, "erasure");
        assert_eq!(batch.ops().unwrap(), vec![Op::Delete, Op::Delete]);
    }
    #[test]
    fn tombstones_set_a_key_nested_in_a_struct_and_nothing_else() {
        let traits = DataType::Struct(
            vec![
                Field::new("email", DataType::Utf8, false),
                Field::new("plan", DataType::Utf8, false),
            ]
            .into(),
        );
        let schema = Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("traits", traits, false),
        ]);
        let t = tombstones_by(
            &schema,
            &[
                ("user_id", vec!["u1"]),
                ("traits.email", vec!["a@x.io", "b@x.io"]),
            ],
        )
        .unwrap();
        assert_eq!(t.num_rows(), 3);
        let traits = t.column(1).as_any().downcast_ref::<StructArray>().unwrap();
        assert!(traits.is_null(0) && traits.is_valid(1) && traits.is_valid(2));
        let email = traits
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!((email.value(1), email.value(2)), ("a@x.io", "b@x.io"));
        assert_eq!(traits.column(1).null_count(), 3, "plan is not set");
        let user_id = t.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(user_id.value(0), "u1");
        assert!(tombstones(&schema, "traits.phone", &["x"]).is_err());
    }
}
