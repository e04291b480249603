//! Building HTTP sources against the fake API, and reading them.

use std::collections::BTreeMap;

use cdp_connectors::{HttpSource, HttpSourceConfig};
use cdp_core::event::row_to_json;
use cdp_core::{PipelineState, ReadRequest, Source, SourceEvent};
use cdp_testkit::saas::{API_KEY, FakeSaas};
use futures::StreamExt;
use serde_json::Value;

/// Retries quick enough for tests: faults cost milliseconds, not seconds.
pub(crate) const FAST_RETRY: &str =
    "retry = { max_attempts = 10, initial_delay = 2, max_delay = 20, jitter = false }";

/// A source over `server` from the TOML of its streams (`[[streams]]` tables) and extra
/// top-level keys; the API key comes from a file, as a deployment would give it.
pub(crate) fn source(server: &FakeSaas, top: &str, streams: &str) -> HttpSource {
    let key = key_file();
    let text = format!(
        "base_url = \"{}\"\nauth = {{ type = \"bearer\", token = {{ file = \"{}\" }} }}\n{FAST_RETRY}\n{top}\n{streams}",
        server.url(),
        key.display()
    );
    config(&text).build_source().unwrap()
}

/// A config from a source table's TOML.
pub(crate) fn config(text: &str) -> HttpSourceConfig {
    let table: Value = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    HttpSourceConfig::from_table(&table).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A file holding the fake API's key, kept for the test process's life.
pub(crate) fn key_file() -> std::path::PathBuf {
    static FILE: std::sync::OnceLock<tempfile::NamedTempFile> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), format!("{API_KEY}\n")).unwrap();
        file
    })
    .path()
    .to_path_buf()
}

/// What one read produced.
#[derive(Debug, Default)]
pub(crate) struct Read {
    /// Rows per stream, as JSON objects, in order.
    pub(crate) rows: BTreeMap<String, Vec<Value>>,
    /// Dead letters: (stream, reason, position).
    pub(crate) dead: Vec<(String, String, Option<String>)>,
    /// The state after the last checkpoint.
    pub(crate) state: PipelineState,
    /// Checkpoints seen.
    pub(crate) checkpoints: usize,
    /// Schema changes seen, per stream.
    pub(crate) schema_changes: BTreeMap<String, usize>,
    /// Drift events: (stream, path, action).
    pub(crate) drift: Vec<(String, String, String)>,
}

impl Read {
    /// The values of `field` of `stream`'s rows, as text.
    pub(crate) fn values(&self, stream: &str, field: &str) -> Vec<String> {
        self.rows
            .get(stream)
            .map(|rows| {
                rows.iter()
                    .map(|r| match &r[field] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Reads `source` from `state` to its end; panics on an error.
pub(crate) async fn read(source: &dyn Source, state: PipelineState) -> Read {
    try_read(source, state).await.unwrap()
}

/// Reads `source` from `state` to its end.
pub(crate) async fn try_read(
    source: &dyn Source,
    state: PipelineState,
) -> Result<Read, cdp_core::Error> {
    let request = ReadRequest {
        state: state.clone(),
        ..ReadRequest::default()
    };
    let mut events = source.read(request)?;
    let mut out = Read {
        state,
        ..Read::default()
    };
    while let Some(event) = events.next().await {
        match event? {
            SourceEvent::Batch(batch) => {
                let rows = out.rows.entry(batch.stream.to_string()).or_default();
                for row in 0..batch.num_rows() {
                    rows.push(serde_json::from_str(&row_to_json(&batch.data, row)).unwrap());
                }
            }
            SourceEvent::DeadLetter(letter) => {
                out.dead
                    .push((letter.stream, letter.reason, letter.position))
            }
            SourceEvent::Checkpoint(checkpoint) => {
                out.checkpoints += 1;
                out.state
                    .streams
                    .insert(checkpoint.stream, checkpoint.cursor);
            }
            SourceEvent::SchemaChange { stream, .. } => {
                *out.schema_changes.entry(stream.to_string()).or_default() += 1
            }
            SourceEvent::Drift(drift) => {
                out.drift
                    .push((drift.stream, drift.path, format!("{:?}", drift.action)))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The ids of `records`, as text.
pub(crate) fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}
