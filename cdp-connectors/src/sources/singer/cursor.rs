//! The Singer source's cursors.
//!
//! A tap's state is one JSON value for the whole tap, while a pipeline commits a cursor per
//! stream. Each `STATE` the tap writes becomes a checkpoint of *every* stream the source
//! knows (those it read in this run and those with a committed cursor), each carrying the
//! same cursor: the tap's state, a sequence number that grows by one per state, and the
//! fields this source added to each stream's schema for keys the tap did not declare (so
//! that a resumed read decodes as the interrupted one did):
//!
//! ```json
//! {"state": {"bookmarks": {"users": {"updated_at": "2024-05-01T00:00:00Z"}}}, "seq": 12,
//!  "schemas": {"users": [{"path": ["plan"], "type": "utf8"}]}}
//! ```
//!
//! On resume the cursor with the highest `seq` among the committed ones is used whole: a
//! pipeline may commit between the checkpoints of one state, so the streams' cursors can
//! differ by one state, and only the newest describes every stream at that state.

use std::collections::HashMap;

use cdp_core::{Error, ReadRequest, Result};
use serde_json::{Value, json};

/// Where a read starts: the tap state to hand over, its sequence number, and each
/// stream's schema changes.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Resume {
    pub(crate) state: Option<Value>,
    pub(crate) seq: u64,
    pub(crate) schemas: HashMap<String, Value>,
    /// Streams with a committed cursor.
    pub(crate) streams: Vec<String>,
}

impl Resume {
    /// Reads the committed cursors of `request`.
    pub(crate) fn from_request(request: &ReadRequest) -> Result<Resume> {
        let mut resume = Resume::default();
        let mut best: Option<(u64, &Value)> = None;
        for (stream, cursor) in &request.state.streams {
            let refuse = |message: &str| Error::Cursor {
                stream: stream.clone(),
                message: format!(
                    "{message}; a Singer source's cursor is {{\"state\": …, \"seq\": n}} \
                     (was the pipeline's source changed?)"
                ),
            };
            let Some(object) = cursor.as_object() else {
                return Err(refuse("not a JSON object"));
            };
            let Some(seq) = object.get("seq").and_then(Value::as_u64) else {
                return Err(refuse("no `seq` number"));
            };
            if !object.contains_key("state") {
                return Err(refuse("no `state`"));
            }
            if best.is_none_or(|(at, _)| seq > at) {
                best = Some((seq, cursor));
            }
            resume.streams.push(stream.clone());
        }
        if let Some((seq, cursor)) = best {
            resume.seq = seq;
            resume.state = cursor.get("state").filter(|s| !s.is_null()).cloned();
            if let Some(schemas) = cursor.get("schemas").and_then(Value::as_object) {
                resume.schemas = schemas
                    .iter()
                    .map(|(stream, changes)| (stream.clone(), changes.clone()))
                    .collect();
            }
        }
        Ok(resume)
    }
}

/// The cursor every stream gets at a state: the tap's `state`, its `seq`, and the schema
/// changes of each stream that has some.
pub(crate) fn cursor<'a>(
    state: Option<&Value>,
    seq: u64,
    schemas: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> Value {
    let mut cursor = json!({"state": state.cloned().unwrap_or(Value::Null), "seq": seq});
    let schemas: serde_json::Map<String, Value> = schemas
        .into_iter()
        .map(|(stream, changes)| (stream.clone(), changes.clone()))
        .collect();
    if !schemas.is_empty() {
        cursor["schemas"] = Value::Object(schemas);
    }
    cursor
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cdp_core::PipelineState;

    use super::*;

    fn request(streams: &[(&str, Value)]) -> ReadRequest {
        let mut state = PipelineState::default();
        for (name, cursor) in streams {
            state.streams.insert(name.to_string(), cursor.clone());
        }
        ReadRequest {
            state,
            ..ReadRequest::default()
        }
    }

    #[test]
    fn the_latest_cursor_wins_whole() {
        let (a, changes) = ("a".to_string(), json!([{"path": ["x"], "type": "utf8"}]));
        let resume = Resume::from_request(&request(&[
            ("a", cursor(Some(&json!({"n": 1})), 1, [(&a, &changes)])),
            ("b", cursor(Some(&json!({"n": 2})), 2, [])),
        ]))
        .unwrap();
        assert_eq!(resume.state, Some(json!({"n": 2})));
        assert_eq!(resume.seq, 2);
        // The older cursor's schema changes are not those of the state resumed from.
        assert!(resume.schemas.is_empty());
        assert_eq!(resume.streams, ["a", "b"]);
        assert_eq!(
            Resume::from_request(&request(&[])).unwrap(),
            Resume::default()
        );
    }

    #[test]
    fn another_sources_cursor_is_refused() {
        let error = Resume::from_request(&request(&[("events", json!({"files": {}}))]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("cursor of stream `events`"), "{error}");
        assert!(error.contains("no `seq`"), "{error}");
    }
}
