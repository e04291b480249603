//! What a stream's checkpoint holds: per partition, the incremental cursor and the records
//! emitted at it, and the position of an unfinished sync; plus the stream's schema.
//!
//! ```json
//! {"run": 3, "done": false,
//!  "partitions": {"account=acct_eu": {"run": 2, "cursor": "2024-05-01T10:00:00Z",
//!     "seen": ["9f…"], "sync": {"page": {"cursor": "cus_42"}, "from": …, "high": …}}},
//!  "base": [...], "schema": [...]}
//! ```
//!
//! A read continues the run the checkpoint is in (`done` false), skipping the partitions
//! that run completed, or starts the next one. An incremental partition's new run reads
//! only what is new; a full-refresh partition reads everything again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the next page is, for the kinds of pagination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Page {
    /// The first page.
    #[default]
    First,
    /// A cursor to send.
    Cursor(String),
    /// A URL to fetch.
    Url(String),
    /// An offset to send.
    Offset(u64),
    /// A page number to send.
    Number(u64),
}

/// An unfinished sync of one partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SyncState {
    /// The next page to fetch.
    #[serde(default)]
    pub(crate) page: Page,
    /// The sync's lower bound (inclusive), in checkpoint form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) from: Option<Value>,
    /// The current window's end (exclusive), with windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) window_end: Option<Value>,
    /// Where the windows stop: "now" when the sync started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<Value>,
    /// The highest cursor emitted (or found emitted already) so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) high: Option<Value>,
    /// Content hashes of the records at `high`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) high_seen: Vec<String>,
    /// Records read in this request series, for a `total` stop.
    #[serde(default)]
    pub(crate) read: u64,
}

/// One partition's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartitionState {
    /// The last run that completed this partition.
    #[serde(default)]
    pub(crate) run: u64,
    /// The highest cursor of the last completed sync, in checkpoint form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cursor: Option<Value>,
    /// Content hashes of the records emitted at `cursor`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) seen: Vec<String>,
    /// The sync under way, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sync: Option<SyncState>,
}

/// A stream's checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StreamState {
    /// The run under way, or the last one.
    #[serde(default)]
    pub(crate) run: u64,
    /// Whether that run completed.
    #[serde(default)]
    pub(crate) done: bool,
    /// Per partition, by key (`account=acct_eu`, `parent.id=cus_1`; empty for none).
    #[serde(default)]
    pub(crate) partitions: BTreeMap<String, PartitionState>,
    /// The inferred base schema, as schema changes from an empty one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) base: Option<Value>,
    /// The schema changes a read made to the base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema: Option<Value>,
}
