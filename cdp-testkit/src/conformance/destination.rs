//! A conformance harness every destination must pass: the contract of
//! [`Destination`](cdp_core::Destination) the runtime relies on for exactly-once delivery,
//! checked from the outside.
//!
//! The runtime drives a destination as `open(committed_epoch)`, `prepare`, `write`s, then at
//! each barrier `flush(epoch)`, the pipeline state's commit, and `commit(epoch)`. A crash can
//! strike between any two of these; after it, a new instance is opened with the epoch the
//! state store last committed and every batch after that epoch is read and written again
//! (re-stamped: new sync time and lineage id, the same record hashes). [`check_destination`]
//! plays that out on one stream, [`STREAM`], and after each step compares what a reader of
//! the destination's storage sees ([`DestinationUnderTest::visible`]) with what the pipeline
//! committed:
//!
//! 1. **write, flush, commit** — epoch 1's rows are visible exactly once after the commit; a
//!    destination that [publishes on commit](Publishes::OnCommit) shows nothing after the
//!    flush alone.
//! 2. **schema evolution** — `prepare` again with an added nullable column (`tier`): rows of
//!    epoch 2 carry it; older rows read as null (a file written before the change may simply
//!    lack the column); nothing is lost.
//! 3. **idempotent replay** — a commit retried after it succeeded, and a crash after
//!    `flush(3)` and the state's commit but before `commit(3)`: a fresh instance opened with
//!    `committed_epoch = 3` shows epoch 3 exactly once, and opening yet another instance
//!    changes nothing.
//! 4. **uncommitted epoch discarded** — a crash after writing epoch 4 without flushing, and
//!    one after `flush(4)` without the state's commit: a fresh instance opened with
//!    `committed_epoch = 3` shows none of epoch 4 (a destination that [publishes on
//!    flush](Publishes::OnFlush) may show it, but only once); replaying epoch 4 then shows it
//!    exactly once.
//! 5. **tombstones** — a batch with a delete (`_cdp_op = 1`) and an upsert of an existing
//!    `id`: an [upserting](DestinationKind::Upsert) destination removes the deleted row and
//!    replaces the updated one; an [append-only](DestinationKind::Append) one keeps both rows
//!    as written, each with its `_cdp_op`.
//! 6. **rejected rows** — rows the destination cannot take
//!    ([`DestinationUnderTest::unacceptable_rows`]), interleaved with good ones, are reported
//!    by index (with a reason) in the [`WriteOutcome`](cdp_core::WriteOutcome), stay
//!    invisible, and the rest of the batch lands. Skipped when the destination takes every
//!    row of the stream's schema.
//! 7. **restart after close** — a clean `close`, then a fresh instance opened with the last
//!    committed epoch: nothing changes.
//!
//! Rows are compared by content over the user columns `id`, `name`, `tier` (and `_cdp_op`
//! for append-only destinations), as multisets: a duplicate is a violation. Values compare
//! as text, so a destination may read them back as JSON or as Arrow of any type that casts
//! to the same text (`Int64` or `int8`, `Utf8` or `text`). The error names the step that
//! failed, what was expected and what was found.
//!
//! # Example
//!
//! The in-memory destination stages per epoch and publishes on commit, keeping every row:
//!
//! ```
//! use cdp_core::Destination;
//! use cdp_core::memory::MemoryDestination;
//! use cdp_testkit::conformance::destination::{
//!     DestinationKind, DestinationUnderTest, VisibleRows, check_destination,
//! };
//!
//! #[derive(Debug)]
//! struct InMemory(MemoryDestination);
//!
//! #[async_trait::async_trait]
//! impl DestinationUnderTest for InMemory {
//!     fn kind(&self) -> DestinationKind {
//!         DestinationKind::Append
//!     }
//!
//!     // A clone shares the storage, as a restarted process shares the disk.
//!     async fn fresh(&mut self) -> Result<Box<dyn Destination>, String> {
//!         Ok(Box::new(self.0.clone()))
//!     }
//!
//!     async fn visible(&self, stream: &str) -> Result<VisibleRows, String> {
//!         let batches = self.0.handle().batches();
//!         Ok(VisibleRows::from_batches(
//!             batches.into_iter().filter(|b| &*b.stream == stream).map(|b| b.data),
//!         ))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let report = check_destination(&mut InMemory(MemoryDestination::new("memory")))
//!     .await
//!     .unwrap();
//! assert_eq!(report.steps.len(), 6); // it takes every row: no rejected-rows step
//! assert_eq!(report.visible_rows, 12);
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, UInt8Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cdp_core::record::{OP_COLUMN, stamped_schema};
use cdp_core::{Batch, Destination, Op, OpenContext, StreamSpec, async_trait};

/// The stream the harness writes (a table, a folder of that name).
pub const STREAM: &str = "conformance";

/// The pipeline id the harness opens destinations with.
pub const PIPELINE_ID: &str = "conformance";

/// The source id of the batches the harness writes.
const SOURCE_ID: &str = "conformance";

/// The user columns the harness compares, in order.
const COLUMNS: [&str; 3] = ["id", "name", "tier"];

/// How a destination shows the rows it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationKind {
    /// Keeps the latest row per key: the harness declares `id` the stream's primary key; an
    /// upsert replaces the row with its `id`, a tombstone removes it.
    Upsert,
    /// Keeps every row as it was written, tombstones included, each with its `_cdp_op` (a
    /// landing zone).
    Append,
}

/// When a destination makes an epoch's rows visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publishes {
    /// Staged at `flush`, visible only after `commit` (or after an `open` whose
    /// `committed_epoch` covers it); nothing of an epoch the pipeline did not commit is ever
    /// visible.
    OnCommit,
    /// Visible at `flush`, written idempotently (by key or record hash), so a replay of an
    /// epoch that was flushed but not committed leaves each row once.
    OnFlush,
}

/// A row of [`STREAM`] the destination under test cannot take, and why; see
/// [`DestinationUnderTest::unacceptable_rows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// Its `id` (`None`: null).
    pub id: Option<i64>,
    /// Its `name` (`None`: null).
    pub name: Option<String>,
    /// What is wrong with it, for messages (`"a NUL byte in text"`).
    pub what: String,
}

/// A destination, and a way to start it again and to read back what it made durable.
///
/// Implemented by the test of a connector; see the [module docs](self).
#[async_trait]
pub trait DestinationUnderTest: Send {
    /// How the destination shows rows (it decides the stream's key and the tombstone check).
    fn kind(&self) -> DestinationKind;

    /// When the destination makes rows visible. Defaults to [`Publishes::OnCommit`].
    fn publishes(&self) -> Publishes {
        Publishes::OnCommit
    }

    /// A new instance over the same storage, not yet opened: what a restarted process
    /// builds from the same configuration. Instances the harness drops without `close` are
    /// crashes.
    async fn fresh(&mut self) -> Result<Box<dyn Destination>, String>;

    /// Every row of `stream` a reader of the storage sees now, system columns optional
    /// (except `_cdp_op` for [`DestinationKind::Append`]). Empty before anything was
    /// published.
    async fn visible(&self, stream: &str) -> Result<VisibleRows, String>;

    /// Rows of the stream's schema (`id` Int64, `name` Utf8, `tier` Utf8, all nullable)
    /// that the destination refuses row by row. Defaults to none: the destination takes
    /// every row, and the rejected-rows step is skipped.
    fn unacceptable_rows(&self) -> Vec<BadRow> {
        Vec::new()
    }
}

/// Rows read back from a destination's storage: Arrow batches, JSON objects, or both.
#[derive(Debug, Clone, Default)]
pub struct VisibleRows {
    batches: Vec<RecordBatch>,
    objects: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl VisibleRows {
    /// No rows.
    pub fn new() -> Self {
        VisibleRows::default()
    }

    /// The rows of `batches` (a Parquet file, a table read through a source).
    pub fn from_batches(batches: impl IntoIterator<Item = RecordBatch>) -> Self {
        VisibleRows {
            batches: batches.into_iter().collect(),
            objects: Vec::new(),
        }
    }

    /// Adds the rows of `batch`.
    pub fn push_batch(&mut self, batch: RecordBatch) {
        self.batches.push(batch);
    }

    /// Adds one row given as a JSON object (a JSONL line, a `to_jsonb` of a table row);
    /// a missing key is a null.
    pub fn push_json(&mut self, row: serde_json::Value) -> Result<(), String> {
        match row {
            serde_json::Value::Object(object) => {
                self.objects.push(object);
                Ok(())
            }
            other => Err(format!("a visible row must be a JSON object, got {other}")),
        }
    }

    /// Adds one row given as the text of a JSON object.
    pub fn push_json_text(&mut self, text: &str) -> Result<(), String> {
        let value = serde_json::from_str(text)
            .map_err(|e| format!("a visible row is not JSON ({e}): {text}"))?;
        self.push_json(value)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>()
            + self.objects.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every row as the text of `columns` (a missing column is null), sorted.
    fn fingerprints(&self, columns: &[&str]) -> Result<Vec<Fingerprint>, String> {
        let mut out = Vec::with_capacity(self.len());
        for batch in &self.batches {
            let texts = columns
                .iter()
                .map(|c| match batch.column_by_name(c) {
                    Some(column) => as_text(c, column).map(Some),
                    None => Ok(None),
                })
                .collect::<Result<Vec<Option<ArrayRef>>, String>>()?;
            for row in 0..batch.num_rows() {
                let values = texts
                    .iter()
                    .map(|t| {
                        t.as_ref()
                            .filter(|t| t.is_valid(row))
                            .map(|t| t.as_string::<i32>().value(row).to_string())
                    })
                    .collect();
                out.push(Fingerprint(values));
            }
        }
        for object in &self.objects {
            let values = columns
                .iter()
                .map(|c| match object.get(*c) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                })
                .collect();
            out.push(Fingerprint(values));
        }
        out.sort();
        Ok(out)
    }
}

/// A column cast to `Utf8`, so values compare as text whatever type they were read as.
fn as_text(name: &str, column: &ArrayRef) -> Result<ArrayRef, String> {
    arrow::compute::cast(column, &DataType::Utf8)
        .map_err(|e| format!("visible column `{name}` cannot be read as text: {e}"))
}

/// One row's compared values, as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Fingerprint(Vec<Option<String>>);

/// What [`check_destination`] verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationConformance {
    /// The kind the destination declared.
    pub kind: DestinationKind,
    /// When it declared it publishes.
    pub publishes: Publishes,
    /// The steps checked, in order (the rejected-rows step is left out when the destination
    /// has no row it refuses).
    pub steps: Vec<&'static str>,
    /// Unacceptable rows checked (reported, invisible, the rest of their batch landed).
    pub rejected_rows: usize,
    /// Instances opened over the same storage (restarts, the first one included).
    pub instances: usize,
    /// Rows visible at the end.
    pub visible_rows: usize,
}

const STEP_WRITE: &str = "1 (write, flush, commit)";
const STEP_EVOLVE: &str = "2 (schema evolution)";
const STEP_REPLAY: &str = "3 (idempotent replay)";
const STEP_DISCARD: &str = "4 (uncommitted epoch discarded)";
const STEP_TOMBSTONES: &str = "5 (tombstones)";
const STEP_REJECTED: &str = "6 (rejected rows)";
const STEP_RESTART: &str = "7 (restart after close)";

/// One row the harness writes, and expects back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    id: Option<i64>,
    name: Option<String>,
    tier: Option<String>,
    op: Op,
}

impl Row {
    fn new(id: i64, tier: Option<&str>) -> Row {
        Row {
            id: Some(id),
            name: Some(format!("user {id}")),
            tier: tier.map(str::to_string),
            op: Op::Upsert,
        }
    }
}

/// The rows of one epoch, and the schema version they are written with.
#[derive(Debug, Clone)]
struct Epoch {
    epoch: u64,
    evolved: bool,
    rows: Vec<Row>,
}

fn user_schema(evolved: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ];
    if evolved {
        fields.push(Field::new("tier", DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

/// The harness's run: the destination, the rows the pipeline committed, and where it is.
struct Run<'a, D: DestinationUnderTest + ?Sized> {
    under_test: &'a mut D,
    kind: DestinationKind,
    publishes: Publishes,
    /// What a reader should see: every committed row (append) or the latest per id (upsert).
    expected: Vec<Row>,
    instances: usize,
}

/// Checks the destination `under_test` against the contract in the [module docs](self).
/// Returns what was checked, or a message naming the first step that failed and how.
pub async fn check_destination<D>(under_test: &mut D) -> Result<DestinationConformance, String>
where
    D: DestinationUnderTest + ?Sized,
{
    let kind = under_test.kind();
    let publishes = under_test.publishes();
    let bad_rows = under_test.unacceptable_rows();
    let mut run = Run {
        under_test,
        kind,
        publishes,
        expected: Vec::new(),
        instances: 0,
    };
    let mut steps = vec![STEP_WRITE];

    // 1. Write, flush, commit.
    let step = STEP_WRITE;
    let mut dest = run.start(step, 0, false).await?;
    dest.check()
        .await
        .map_err(|e| fail(step, format!("check failed: {e}")))?;
    let first = Epoch {
        epoch: 1,
        evolved: false,
        rows: (1..=4).map(|id| Row::new(id, None)).collect(),
    };
    run.write(step, &mut dest, &first).await?;
    run.flush(step, &mut dest, 1).await?;
    match run.publishes {
        Publishes::OnCommit => {
            run.expect(step, "after flush(1), before commit(1)", &[])
                .await?;
        }
        Publishes::OnFlush => {
            run.expect(step, "after flush(1)", &first.rows).await?;
        }
    }
    run.commit(step, &mut dest, 1).await?;
    run.apply(&first.rows);
    run.expect_committed(step, "after commit(1)").await?;

    // 2. Schema evolution.
    let step = STEP_EVOLVE;
    steps.push(step);
    run.prepare(step, &mut dest, true).await?;
    let second = Epoch {
        epoch: 2,
        evolved: true,
        rows: vec![Row::new(5, Some("gold")), Row::new(6, Some("silver"))],
    };
    run.write(step, &mut dest, &second).await?;
    run.flush(step, &mut dest, 2).await?;
    run.commit(step, &mut dest, 2).await?;
    run.apply(&second.rows);
    run.expect_committed(step, "after commit(2) with the added column `tier`")
        .await?;

    // 3. Idempotent replay.
    let step = STEP_REPLAY;
    steps.push(step);
    run.commit(step, &mut dest, 2).await?;
    run.expect_committed(step, "after commit(2) was retried")
        .await?;
    let third = Epoch {
        epoch: 3,
        evolved: true,
        rows: vec![Row::new(7, Some("gold")), Row::new(8, None)],
    };
    run.write(step, &mut dest, &third).await?;
    run.flush(step, &mut dest, 3).await?;
    drop(dest); // a crash after the state committed epoch 3, before commit(3)
    let dest = run.start(step, 3, true).await?;
    run.apply(&third.rows);
    run.expect_committed(
        step,
        "after a crash between the state's commit of epoch 3 and commit(3), and open with \
         committed_epoch 3",
    )
    .await?;
    drop(dest);
    let dest = run.start(step, 3, true).await?;
    run.expect_committed(
        step,
        "after opening yet another instance with committed_epoch 3",
    )
    .await?;
    drop(dest);

    // 4. Uncommitted epoch discarded.
    let step = STEP_DISCARD;
    steps.push(step);
    let fourth = Epoch {
        epoch: 4,
        evolved: true,
        rows: vec![Row::new(9, Some("bronze")), Row::new(10, Some("gold"))],
    };
    let mut dest = run.start(step, 3, true).await?;
    run.write(step, &mut dest, &fourth).await?;
    drop(dest); // a crash before flush(4)
    let mut dest = run.start(step, 3, true).await?;
    run.expect_committed(
        step,
        "after a crash before flush(4), and open with committed_epoch 3",
    )
    .await?;
    run.write(step, &mut dest, &fourth).await?;
    run.flush(step, &mut dest, 4).await?;
    drop(dest); // a crash before the state committed epoch 4
    let mut dest = run.start(step, 3, true).await?;
    let when = "after a crash between flush(4) and the state's commit of epoch 4, and open \
                with committed_epoch 3";
    match run.publishes {
        Publishes::OnCommit => run.expect_committed(step, when).await?,
        Publishes::OnFlush => {
            let without = run.expected.clone();
            let mut with = without.clone();
            apply(run.kind, &mut with, &fourth.rows);
            run.expect_one_of(step, when, &[without.as_slice(), with.as_slice()])
                .await?;
        }
    }
    run.write(step, &mut dest, &fourth).await?;
    run.flush(step, &mut dest, 4).await?;
    run.commit(step, &mut dest, 4).await?;
    run.apply(&fourth.rows);
    run.expect_committed(step, "after epoch 4 was replayed and committed")
        .await?;

    // 5. Tombstones.
    let step = STEP_TOMBSTONES;
    steps.push(step);
    let tombstone = Row {
        id: Some(2),
        name: None,
        tier: None,
        op: Op::Delete,
    };
    let update = Row {
        name: Some("user 3, renamed".into()),
        tier: Some("platinum".into()),
        ..Row::new(3, None)
    };
    let fifth = Epoch {
        epoch: 5,
        evolved: true,
        rows: vec![tombstone, update],
    };
    run.write(step, &mut dest, &fifth).await?;
    run.flush(step, &mut dest, 5).await?;
    run.commit(step, &mut dest, 5).await?;
    run.apply(&fifth.rows);
    let when = match run.kind {
        DestinationKind::Upsert => "after committing a delete of id 2 and an update of id 3",
        DestinationKind::Append => {
            "after committing a tombstone of id 2 and an update of id 3 (both kept, with their \
             `_cdp_op`)"
        }
    };
    run.expect_committed(step, when).await?;

    // 6. Rejected rows.
    let mut committed = 5;
    let mut rejected_rows = 0;
    if !bad_rows.is_empty() {
        let step = STEP_REJECTED;
        steps.push(step);
        committed = 6;
        rejected_rows = run.check_rejected(step, &mut dest, &bad_rows).await?;
    }

    // 7. Restart after close.
    let step = STEP_RESTART;
    steps.push(step);
    dest.close()
        .await
        .map_err(|e| fail(step, format!("close failed: {e}")))?;
    drop(dest);
    let mut dest = run.start(step, committed, true).await?;
    run.expect_committed(
        step,
        &format!("after close and open with committed_epoch {committed}"),
    )
    .await?;
    dest.close()
        .await
        .map_err(|e| fail(step, format!("close failed: {e}")))?;

    Ok(DestinationConformance {
        kind,
        publishes,
        steps,
        rejected_rows,
        instances: run.instances,
        visible_rows: run.expected.len(),
    })
}

fn fail(step: &str, detail: impl fmt::Display) -> String {
    format!("step {step}: {detail}")
}

/// Applies committed `rows` to what a reader should see.
fn apply(kind: DestinationKind, expected: &mut Vec<Row>, rows: &[Row]) {
    for row in rows {
        match kind {
            DestinationKind::Append => expected.push(row.clone()),
            DestinationKind::Upsert => {
                expected.retain(|r| r.id != row.id);
                if row.op == Op::Upsert {
                    expected.push(row.clone());
                }
            }
        }
    }
}

impl<D: DestinationUnderTest + ?Sized> Run<'_, D> {
    fn columns(&self) -> Vec<&'static str> {
        let mut columns = COLUMNS.to_vec();
        if self.kind == DestinationKind::Append {
            columns.push(OP_COLUMN);
        }
        columns
    }

    fn fingerprint(&self, row: &Row) -> Fingerprint {
        let mut values = vec![
            row.id.map(|id| id.to_string()),
            row.name.clone(),
            row.tier.clone(),
        ];
        if self.kind == DestinationKind::Append {
            values.push(Some((row.op as u8).to_string()));
        }
        Fingerprint(values)
    }

    fn spec(&self, evolved: bool) -> Result<StreamSpec, String> {
        let schema = stamped_schema(&user_schema(evolved)).map_err(|e| e.to_string())?;
        let spec = StreamSpec::new(STREAM, schema);
        Ok(match self.kind {
            DestinationKind::Upsert => spec.with_primary_key(["id"]),
            DestinationKind::Append => spec,
        })
    }

    fn apply(&mut self, rows: &[Row]) {
        apply(self.kind, &mut self.expected, rows);
    }

    /// A fresh instance, opened with `committed_epoch` and prepared for the stream.
    async fn start(
        &mut self,
        step: &str,
        committed_epoch: u64,
        evolved: bool,
    ) -> Result<Box<dyn Destination>, String> {
        let mut dest = self
            .under_test
            .fresh()
            .await
            .map_err(|e| fail(step, format!("a fresh instance could not be built: {e}")))?;
        self.instances += 1;
        let ctx = OpenContext {
            pipeline_id: PIPELINE_ID.into(),
            committed_epoch,
        };
        dest.open(&ctx).await.map_err(|e| {
            fail(
                step,
                format!("open with committed_epoch {committed_epoch} failed: {e}"),
            )
        })?;
        self.prepare(step, &mut dest, evolved).await?;
        Ok(dest)
    }

    async fn prepare(
        &self,
        step: &str,
        dest: &mut Box<dyn Destination>,
        evolved: bool,
    ) -> Result<(), String> {
        let spec = self.spec(evolved).map_err(|e| fail(step, e))?;
        dest.prepare(&spec).await.map_err(|e| {
            let columns = if evolved {
                "id, name, tier"
            } else {
                "id, name"
            };
            fail(
                step,
                format!("prepare of `{STREAM}` with columns {columns} failed: {e}"),
            )
        })
    }

    /// Writes `epoch`'s rows as one freshly stamped batch (a replay is stamped anew, as
    /// when the source is read again) and checks none was refused.
    async fn write(
        &self,
        step: &str,
        dest: &mut Box<dyn Destination>,
        epoch: &Epoch,
    ) -> Result<(), String> {
        let batch = batch(&epoch.rows, epoch.evolved).map_err(|e| fail(step, e))?;
        let outcome = dest
            .write(&batch)
            .await
            .map_err(|e| fail(step, format!("write of epoch {} failed: {e}", epoch.epoch)))?;
        if let Some(r) = outcome.rejected.first() {
            return Err(fail(
                step,
                format!(
                    "write of epoch {} refused row {} ({:?}): {}",
                    epoch.epoch,
                    r.row,
                    epoch.rows.get(r.row),
                    r.reason
                ),
            ));
        }
        Ok(())
    }

    async fn flush(
        &self,
        step: &str,
        dest: &mut Box<dyn Destination>,
        epoch: u64,
    ) -> Result<(), String> {
        dest.flush(epoch)
            .await
            .map_err(|e| fail(step, format!("flush({epoch}) failed: {e}")))
    }

    async fn commit(
        &self,
        step: &str,
        dest: &mut Box<dyn Destination>,
        epoch: u64,
    ) -> Result<(), String> {
        dest.commit(epoch)
            .await
            .map_err(|e| fail(step, format!("commit({epoch}) failed: {e}")))
    }

    async fn visible(&self, step: &str, when: &str) -> Result<Vec<Fingerprint>, String> {
        let rows = self
            .under_test
            .visible(STREAM)
            .await
            .map_err(|e| fail(step, format!("{when}, reading back failed: {e}")))?;
        rows.fingerprints(&self.columns())
            .map_err(|e| fail(step, format!("{when}: {e}")))
    }

    fn sorted(&self, rows: &[Row]) -> Vec<Fingerprint> {
        let mut out: Vec<Fingerprint> = rows.iter().map(|r| self.fingerprint(r)).collect();
        out.sort();
        out
    }

    async fn expect_committed(&self, step: &str, when: &str) -> Result<(), String> {
        self.expect(step, when, &self.expected).await
    }

    /// Checks the visible rows are exactly `rows`.
    async fn expect(&self, step: &str, when: &str, rows: &[Row]) -> Result<(), String> {
        let visible = self.visible(step, when).await?;
        let expected = self.sorted(rows);
        if visible == expected {
            return Ok(());
        }
        Err(fail(
            step,
            format!("{when}, {}", self.difference(&visible, &expected)),
        ))
    }

    /// Checks the visible rows are exactly one of `options`.
    async fn expect_one_of(
        &self,
        step: &str,
        when: &str,
        options: &[&[Row]],
    ) -> Result<(), String> {
        let visible = self.visible(step, when).await?;
        let mut differences = Vec::new();
        for rows in options {
            let expected = self.sorted(rows);
            if visible == expected {
                return Ok(());
            }
            differences.push(self.difference(&visible, &expected));
        }
        Err(fail(
            step,
            format!(
                "{when}, the visible rows match none of the acceptable states: {}",
                differences.join("; or ")
            ),
        ))
    }

    /// How `visible` differs from `expected`, both sorted: what is missing, what is extra.
    fn difference(&self, visible: &[Fingerprint], expected: &[Fingerprint]) -> String {
        let (mut missing, mut extra) = (Vec::new(), Vec::new());
        let (mut v, mut e) = (0, 0);
        while v < visible.len() || e < expected.len() {
            match (visible.get(v), expected.get(e)) {
                (Some(a), Some(b)) if a == b => {
                    v += 1;
                    e += 1;
                }
                (Some(a), Some(b)) if a < b => {
                    extra.push(a);
                    v += 1;
                }
                (Some(a), None) => {
                    extra.push(a);
                    v += 1;
                }
                (_, Some(b)) => {
                    missing.push(b);
                    e += 1;
                }
                (None, None) => break,
            }
        }
        let columns = self.columns();
        let show = |rows: &[&Fingerprint]| -> String {
            const SHOWN: usize = 5;
            let mut text: Vec<String> = rows
                .iter()
                .take(SHOWN)
                .map(|f| render(&columns, f))
                .collect();
            if rows.len() > SHOWN {
                text.push(format!("… {} more", rows.len() - SHOWN));
            }
            text.join(", ")
        };
        let mut parts = vec![format!(
            "{} rows are visible where {} were expected",
            visible.len(),
            expected.len()
        )];
        if !missing.is_empty() {
            parts.push(format!("missing: {}", show(&missing)));
        }
        if !extra.is_empty() {
            let duplicates = extra
                .iter()
                .filter(|f| expected.binary_search(f).is_ok())
                .count();
            let label = match duplicates {
                0 => "unexpected".to_string(),
                n => format!("unexpected ({n} duplicated)"),
            };
            parts.push(format!("{label}: {}", show(&extra)));
        }
        parts.join("; ")
    }

    /// Step 6: one batch of good rows with the bad ones between them.
    async fn check_rejected(
        &mut self,
        step: &str,
        dest: &mut Box<dyn Destination>,
        bad_rows: &[BadRow],
    ) -> Result<usize, String> {
        let mut rows = vec![Row::new(100, Some("gold"))];
        let mut bad_at = Vec::with_capacity(bad_rows.len());
        for (i, bad) in bad_rows.iter().enumerate() {
            bad_at.push(rows.len());
            rows.push(Row {
                id: bad.id,
                name: bad.name.clone(),
                tier: None,
                op: Op::Upsert,
            });
            rows.push(Row::new(101 + i as i64, None));
        }
        let describe = |row: usize| -> String {
            match bad_at.iter().position(|&at| at == row) {
                Some(i) => format!("row {row} ({})", bad_rows[i].what),
                None => format!("row {row} (a good row, {:?})", rows[row]),
            }
        };
        let batch = batch(&rows, true).map_err(|e| fail(step, e))?;
        let outcome = dest.write(&batch).await.map_err(|e| {
            fail(
                step,
                format!(
                    "write of a batch with {} unacceptable row(s) failed as a whole instead \
                     of reporting them in its outcome: {e}",
                    bad_rows.len()
                ),
            )
        })?;
        let mut reported: Vec<usize> = outcome.rejected.iter().map(|r| r.row).collect();
        reported.sort_unstable();
        reported.dedup();
        if reported != bad_at {
            let missed: Vec<String> = bad_at
                .iter()
                .filter(|at| !reported.contains(at))
                .map(|&at| describe(at))
                .collect();
            let wrong: Vec<String> = reported
                .iter()
                .filter(|at| !bad_at.contains(at))
                .map(|&at| describe(at))
                .collect();
            return Err(fail(
                step,
                format!(
                    "the write outcome reports rows {reported:?}, expected {bad_at:?}; not \
                     reported: [{}]; reported but acceptable: [{}]",
                    missed.join(", "),
                    wrong.join(", ")
                ),
            ));
        }
        if let Some(r) = outcome.rejected.iter().find(|r| r.reason.trim().is_empty()) {
            return Err(fail(
                step,
                format!("{} was reported without a reason", describe(r.row)),
            ));
        }
        dest.flush(6).await.map_err(|e| {
            fail(
                step,
                format!(
                    "flush(6) failed after the write reported the unacceptable rows (they \
                     must be kept out of what is flushed): {e}"
                ),
            )
        })?;
        self.commit(step, dest, 6).await?;
        let good: Vec<Row> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| !bad_at.contains(i))
            .map(|(_, r)| r.clone())
            .collect();
        self.apply(&good);
        let what: Vec<&str> = bad_rows.iter().map(|b| b.what.as_str()).collect();
        self.expect_committed(
            step,
            &format!(
                "after committing a batch with rows refused for {}",
                what.join(", ")
            ),
        )
        .await?;
        Ok(bad_rows.len())
    }
}

/// A stamped batch of `rows` (with `tier` when `evolved`), as the runtime writes it.
fn batch(rows: &[Row], evolved: bool) -> Result<Batch, String> {
    let schema = user_schema(evolved);
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| (**f).clone()).collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.id))),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.name.as_deref()),
        )),
    ];
    if evolved {
        columns.push(Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.tier.as_deref()),
        )));
    }
    fields.push(Field::new(OP_COLUMN, DataType::UInt8, false));
    columns.push(Arc::new(UInt8Array::from_iter_values(
        rows.iter().map(|r| r.op as u8),
    )));
    let data = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| format!("building a batch: {e}"))?;
    Batch::new(STREAM, data, SOURCE_ID)
        .stamp()
        .map_err(|e| format!("stamping a batch: {e}"))
}

/// `{id: 1, name: "user 1", tier: null}`: the integer columns bare, the text ones quoted.
fn render(columns: &[&str], row: &Fingerprint) -> String {
    let values: Vec<String> = columns
        .iter()
        .zip(&row.0)
        .map(|(c, v)| match v {
            Some(v) if *c == "id" || *c == OP_COLUMN => format!("{c}: {v}"),
            Some(v) => format!("{c}: {v:?}"),
            None => format!("{c}: null"),
        })
        .collect();
    format!("{{{}}}", values.join(", "))
}

#[cfg(test)]
mod tests {
    use cdp_core::memory::MemoryDestination;
    use cdp_core::{RejectedRow, Result, WriteOutcome};

    use super::*;

    /// What is wrong with a [`Flawed`] destination.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Flaw {
        None,
        /// Publishes at flush though it declares it publishes on commit.
        PublishesOnFlush,
        /// Publishes at flush, as it declares, but appends: a replay duplicates.
        AppendsOnFlush,
        /// Publishes everything staged at open, committed or not.
        KeepsUncommitted,
        /// Discards everything staged at open: an epoch the pipeline committed but whose
        /// `commit` was cut short is lost.
        ForgetsCommitted,
        /// Silently drops batches with columns it was not first prepared with.
        IgnoresEvolution,
        /// Silently drops tombstones.
        DropsTombstones,
        /// Fails the whole batch for a row with a null id.
        FailsBatchOnNullId,
        /// Reports rows with a null id as rejected, but writes them anyway.
        WritesRejected,
    }

    /// The memory destination with one flaw; clones share the storage.
    #[derive(Debug, Clone)]
    struct Flawed {
        inner: MemoryDestination,
        flaw: Flaw,
        first_columns: Option<usize>,
    }

    #[async_trait]
    impl Destination for Flawed {
        fn name(&self) -> &str {
            "flawed"
        }

        async fn open(&mut self, ctx: &OpenContext) -> Result<()> {
            let committed_epoch = match self.flaw {
                Flaw::KeepsUncommitted => u64::MAX,
                Flaw::ForgetsCommitted => 0,
                _ => ctx.committed_epoch,
            };
            let ctx = OpenContext {
                committed_epoch,
                ..ctx.clone()
            };
            self.inner.open(&ctx).await
        }

        async fn prepare(&mut self, stream: &StreamSpec) -> Result<()> {
            self.first_columns
                .get_or_insert(stream.schema.fields().len());
            self.inner.prepare(stream).await
        }

        async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
            let null_ids: Vec<usize> = match batch.data.column_by_name("id") {
                Some(ids) => (0..ids.len()).filter(|&i| ids.is_null(i)).collect(),
                None => Vec::new(),
            };
            match self.flaw {
                Flaw::IgnoresEvolution
                    if self
                        .first_columns
                        .is_some_and(|n| batch.data.num_columns() > n) =>
                {
                    Ok(WriteOutcome::default())
                }
                Flaw::DropsTombstones => {
                    let keep: Vec<bool> = batch.ops()?.iter().map(|op| *op == Op::Upsert).collect();
                    let data = arrow::compute::filter_record_batch(&batch.data, &keep.into())?;
                    self.inner
                        .write(&Batch {
                            data,
                            ..batch.clone()
                        })
                        .await
                }
                Flaw::FailsBatchOnNullId if !null_ids.is_empty() => {
                    Err(cdp_core::Error::Config("a null id".into()))
                }
                Flaw::WritesRejected => {
                    self.inner.write(batch).await?;
                    let rejected = null_ids
                        .into_iter()
                        .map(|row| RejectedRow {
                            row,
                            reason: "a null id".into(),
                        })
                        .collect();
                    Ok(WriteOutcome { rejected })
                }
                _ => self.inner.write(batch).await,
            }
        }

        async fn flush(&mut self, epoch: u64) -> Result<()> {
            self.inner.flush(epoch).await?;
            if matches!(self.flaw, Flaw::PublishesOnFlush | Flaw::AppendsOnFlush) {
                self.inner.commit(epoch).await?;
            }
            Ok(())
        }

        async fn commit(&mut self, epoch: u64) -> Result<()> {
            self.inner.commit(epoch).await
        }
    }

    #[derive(Debug)]
    struct UnderTest(Flawed);

    #[async_trait]
    impl DestinationUnderTest for UnderTest {
        fn kind(&self) -> DestinationKind {
            DestinationKind::Append
        }

        fn publishes(&self) -> Publishes {
            match self.0.flaw {
                Flaw::AppendsOnFlush => Publishes::OnFlush,
                _ => Publishes::OnCommit,
            }
        }

        async fn fresh(&mut self) -> Result<Box<dyn Destination>, String> {
            Ok(Box::new(self.0.clone()))
        }

        async fn visible(&self, stream: &str) -> Result<VisibleRows, String> {
            let batches = self.0.inner.handle().batches();
            Ok(VisibleRows::from_batches(
                batches
                    .into_iter()
                    .filter(|b| &*b.stream == stream)
                    .map(|b| b.data),
            ))
        }

        fn unacceptable_rows(&self) -> Vec<BadRow> {
            match self.0.flaw {
                Flaw::FailsBatchOnNullId | Flaw::WritesRejected => vec![BadRow {
                    id: None,
                    name: Some("no id".into()),
                    what: "a null id".into(),
                }],
                _ => Vec::new(),
            }
        }
    }

    async fn check(flaw: Flaw) -> Result<DestinationConformance, String> {
        let mut under_test = UnderTest(Flawed {
            inner: MemoryDestination::new("memory"),
            flaw,
            first_columns: None,
        });
        check_destination(&mut under_test).await
    }

    async fn failure(flaw: Flaw) -> String {
        match check(flaw).await {
            Ok(report) => panic!("{flaw:?} passed: {report:?}"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn the_memory_destination_passes() {
        let report = check(Flaw::None).await.unwrap();
        assert_eq!(report.kind, DestinationKind::Append);
        assert_eq!(report.publishes, Publishes::OnCommit);
        assert_eq!(
            report.steps,
            [
                STEP_WRITE,
                STEP_EVOLVE,
                STEP_REPLAY,
                STEP_DISCARD,
                STEP_TOMBSTONES,
                STEP_RESTART
            ]
        );
        assert_eq!(report.rejected_rows, 0);
        // 4 + 2 + 2 + 2 rows, then a tombstone and an update, all kept.
        assert_eq!(report.visible_rows, 12);
        assert_eq!(report.instances, 7);
    }

    #[tokio::test]
    async fn publishing_on_flush_fails_step_1() {
        let err = failure(Flaw::PublishesOnFlush).await;
        assert_eq!(
            err,
            "step 1 (write, flush, commit): after flush(1), before commit(1), 4 rows are \
             visible where 0 were expected; unexpected: {id: 1, name: \"user 1\", tier: null, \
             _cdp_op: 0}, {id: 2, name: \"user 2\", tier: null, _cdp_op: 0}, {id: 3, name: \
             \"user 3\", tier: null, _cdp_op: 0}, {id: 4, name: \"user 4\", tier: null, \
             _cdp_op: 0}"
        );
    }

    #[tokio::test]
    async fn appending_on_replay_fails_step_4() {
        let err = failure(Flaw::AppendsOnFlush).await;
        assert!(
            err.starts_with(
                "step 4 (uncommitted epoch discarded): after epoch 4 was replayed and \
                 committed, 12 rows are visible where 10 were expected; unexpected (2 \
                 duplicated): {id: 10, name: \"user 10\", tier: \"gold\", _cdp_op: 0}, {id: 9,"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn ignoring_a_schema_change_fails_step_2() {
        let err = failure(Flaw::IgnoresEvolution).await;
        assert!(
            err.starts_with(
                "step 2 (schema evolution): after commit(2) with the added column `tier`, 4 \
                 rows are visible where 6 were expected; missing: {id: 5,"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn losing_a_committed_epoch_on_open_fails_step_3() {
        let err = failure(Flaw::ForgetsCommitted).await;
        assert!(
            err.starts_with(
                "step 3 (idempotent replay): after a crash between the state's commit of \
                 epoch 3 and commit(3), and open with committed_epoch 3, 6 rows are visible \
                 where 8 were expected; missing: {id: 7,"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn publishing_an_uncommitted_epoch_fails_step_4() {
        let err = failure(Flaw::KeepsUncommitted).await;
        assert!(
            err.starts_with(
                "step 4 (uncommitted epoch discarded): after a crash between flush(4) and the \
                 state's commit of epoch 4, and open with committed_epoch 3, 10 rows are \
                 visible where 8 were expected; unexpected: {id: 10,"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn dropping_tombstones_fails_step_5() {
        let err = failure(Flaw::DropsTombstones).await;
        assert!(
            err.starts_with("step 5 (tombstones): after committing a tombstone"),
            "{err}"
        );
        assert!(
            err.ends_with("missing: {id: 2, name: null, tier: null, _cdp_op: 1}"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn failing_the_batch_for_one_bad_row_fails_step_6() {
        let err = failure(Flaw::FailsBatchOnNullId).await;
        assert_eq!(
            err,
            "step 6 (rejected rows): write of a batch with 1 unacceptable row(s) failed as a \
             whole instead of reporting them in its outcome: invalid configuration: a null id"
        );
    }

    #[tokio::test]
    async fn writing_a_rejected_row_fails_step_6() {
        let err = failure(Flaw::WritesRejected).await;
        assert_eq!(
            err,
            "step 6 (rejected rows): after committing a batch with rows refused for a null \
             id, 15 rows are visible where 14 were expected; unexpected: {id: null, name: \
             \"no id\", tier: null, _cdp_op: 0}"
        );
    }
}
