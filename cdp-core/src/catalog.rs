//! What a source offers: streams with their schema, keys and sync modes.

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

/// How a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Read everything every time; the destination replaces what it had.
    FullRefresh,
    /// Read only what is new since the cursor; the destination appends.
    IncrementalAppend,
    /// Read only what is new since the cursor; the destination upserts on the primary key.
    IncrementalDedup,
}

/// One stream a source can read.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// Stream name, unique within the source.
    pub name: String,
    /// Arrow schema of the user columns (no `_cdp_` columns).
    pub schema: SchemaRef,
    /// Columns that identify a row; empty when the stream has no key.
    pub primary_key: Vec<String>,
    /// Column whose growth marks new rows, for incremental modes.
    pub cursor_field: Option<String>,
    /// Modes the source supports for this stream.
    pub sync_modes: Vec<SyncMode>,
}

impl StreamSpec {
    /// A stream with no key and no cursor, readable by full refresh only.
    pub fn new(name: impl Into<String>, schema: SchemaRef) -> Self {
        StreamSpec {
            name: name.into(),
            schema,
            primary_key: Vec::new(),
            cursor_field: None,
            sync_modes: vec![SyncMode::FullRefresh],
        }
    }

    /// Sets the primary key.
    pub fn with_primary_key<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.primary_key = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the cursor field.
    pub fn with_cursor_field(mut self, column: impl Into<String>) -> Self {
        self.cursor_field = Some(column.into());
        self
    }

    /// Sets the supported sync modes.
    pub fn with_sync_modes(mut self, modes: impl IntoIterator<Item = SyncMode>) -> Self {
        self.sync_modes = modes.into_iter().collect();
        self
    }

    /// Whether `mode` is supported.
    pub fn supports(&self, mode: SyncMode) -> bool {
        self.sync_modes.contains(&mode)
    }
}

/// All streams of a source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// The streams, in the order the source lists them.
    pub streams: Vec<StreamSpec>,
}

impl Catalog {
    /// A catalog of `streams`.
    pub fn new(streams: Vec<StreamSpec>) -> Self {
        Catalog { streams }
    }

    /// The stream called `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamSpec> {
        self.streams.iter().find(|s| s.name == name)
    }
}
