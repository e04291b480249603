//! The pipeline side of the log: a [`Source`](cdp_core::Source) with one stream per call
//! type, checkpointed like any other.

use std::path::Path;

use cdp_connectors::JsonlSource;
use cdp_core::MergedSource;

use crate::event::CallType;
use crate::log::stream_dir;

/// The source reading the log in `dir`: one stream per call type that has events (`track`,
/// `identify`, …), each a JSONL source over that type's segments, so every key of the
/// events (`context`, `properties`, `traits` and what is inside them) becomes a column and
/// a key first seen later evolves the schema. Its cursors are byte offsets in the
/// segments: a pipeline resumes exactly after what it committed.
pub fn log_source(dir: &Path) -> MergedSource {
    let mut source = MergedSource::new("collector");
    for call in CallType::ALL {
        let stream = stream_dir(dir, call);
        let has_events = std::fs::read_dir(&stream)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
            })
            .unwrap_or(false);
        if has_events {
            source = source.with(
                JsonlSource::new(stream)
                    .with_name("collector")
                    .with_stream(call.as_str()),
            );
        }
    }
    source
}
