//! One source made of several: their streams side by side in one pipeline.
//!
//! A pipeline reads one [`Source`]; [`MergedSource`] lets that source be several (one JSONL
//! directory per event type, one table per CRM object) without a pipeline each. Each part
//! keeps its own streams and cursors — the committed state is per stream — so the parts
//! resume independently, and their events are interleaved as they come.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch};
//! use cdp_core::memory::MemorySource;
//! use cdp_core::merged::MergedSource;
//! use cdp_core::Source;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> cdp_core::Result<()> {
//! let rows = RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(vec![1])) as _)])?;
//! let both = MergedSource::new("events")
//!     .with(MemorySource::new("track", vec![rows.clone()]))
//!     .with(MemorySource::new("identify", vec![rows]));
//! let catalog = both.discover().await?;
//! assert_eq!(catalog.streams.len(), 2);
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::SelectAll;

use crate::catalog::{Catalog, SyncMode};
use crate::error::{Error, Result};
use crate::source::{ConnectorSpec, ReadRequest, Source, SourceEventStream};

/// Several sources read as one; see the [module docs](self).
#[derive(Debug)]
pub struct MergedSource {
    name: String,
    parts: Vec<Box<dyn Source>>,
    /// Each part's stream names, learnt by `discover` (which the runtime runs first).
    streams: Mutex<Option<Vec<Vec<String>>>>,
}

impl MergedSource {
    /// An empty merged source called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MergedSource {
            name: name.into(),
            parts: Vec::new(),
            streams: Mutex::new(None),
        }
    }

    /// Adds a part; its stream names must differ from every other part's.
    pub fn with(mut self, part: impl Source + 'static) -> Self {
        self.parts.push(Box::new(part));
        self
    }

    /// The parts, in the order they were added.
    pub fn parts(&self) -> &[Box<dyn Source>] {
        &self.parts
    }
}

#[async_trait]
impl Source for MergedSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn spec(&self) -> ConnectorSpec {
        // The modes every part supports.
        let mut modes: Option<Vec<SyncMode>> = None;
        for part in &self.parts {
            let theirs = part.spec().sync_modes;
            modes = Some(match modes {
                None => theirs,
                Some(ours) => ours.into_iter().filter(|m| theirs.contains(m)).collect(),
            });
        }
        ConnectorSpec {
            name: self.name.clone(),
            description: format!("{} sources read as one", self.parts.len()),
            sync_modes: modes.unwrap_or_else(|| vec![SyncMode::FullRefresh]),
        }
    }

    async fn check(&self) -> Result<()> {
        for part in &self.parts {
            part.check().await?;
        }
        Ok(())
    }

    async fn discover(&self) -> Result<Catalog> {
        let mut streams = Vec::new();
        let mut seen = HashSet::new();
        let mut owned = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let theirs = part.discover().await?.streams;
            owned.push(theirs.iter().map(|s| s.name.clone()).collect());
            for stream in theirs {
                if !seen.insert(stream.name.clone()) {
                    return Err(Error::Config(format!(
                        "{}: two parts both have a stream `{}`; stream names must be unique",
                        self.name, stream.name
                    )));
                }
                streams.push(stream);
            }
        }
        if let Ok(mut known) = self.streams.lock() {
            *known = Some(owned);
        }
        Ok(Catalog { streams })
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        let known = self.streams.lock().ok().and_then(|k| k.clone());
        let mut merged = SelectAll::new();
        for (i, part) in self.parts.iter().enumerate() {
            // Each part is asked only for its own streams, and a part with none wanted is not
            // read. Without a catalog yet, a part gets the names as asked.
            let streams = match (&known, request.streams.is_empty()) {
                (_, true) => Vec::new(),
                (Some(known), false) => {
                    let wanted: Vec<String> = request
                        .streams
                        .iter()
                        .filter(|s| known[i].contains(s))
                        .cloned()
                        .collect();
                    if wanted.is_empty() {
                        continue;
                    }
                    wanted
                }
                (None, false) => request.streams.clone(),
            };
            merged.push(part.read(ReadRequest {
                state: request.state.clone(),
                streams,
                sync_mode: request.sync_mode,
            })?);
        }
        Ok(Box::pin(merged))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use futures::StreamExt;

    use super::*;
    use crate::event::SourceEvent;
    use crate::memory::MemorySource;

    fn rows() -> RecordBatch {
        RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(vec![1, 2])) as _)])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn streams_read(source: &MergedSource, wanted: &[&str]) -> Vec<String> {
        let request = ReadRequest {
            state: Default::default(),
            streams: wanted.iter().map(|s| s.to_string()).collect(),
            sync_mode: None,
        };
        let mut seen: Vec<String> = source
            .read(request)
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| async move {
                match e {
                    Ok(SourceEvent::Batch(b)) => Some(b.stream.to_string()),
                    _ => None,
                }
            })
            .collect()
            .await;
        seen.sort();
        seen
    }

    #[tokio::test]
    async fn every_part_is_read_and_each_only_for_its_own_streams() {
        let source = MergedSource::new("both")
            .with(MemorySource::new("track", vec![rows()]))
            .with(MemorySource::new("identify", vec![rows(), rows()]));
        source.discover().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            streams_read(&source, &[]).await,
            ["identify", "identify", "track"]
        );
        assert_eq!(streams_read(&source, &["track"]).await, ["track"]);
    }

    #[tokio::test]
    async fn duplicate_stream_names_are_refused() {
        let source = MergedSource::new("twice")
            .with(MemorySource::new("track", vec![rows()]))
            .with(MemorySource::new("track", vec![rows()]));
        let error = source.discover().await.unwrap_err().to_string();
        assert!(error.contains("`track`"), "{error}");
    }
}
