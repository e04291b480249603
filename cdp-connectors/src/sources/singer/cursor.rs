//! The Singer source's cursors.
//!
//! A tap's state is one JSON value for the whole tap, while a pipeline commits a cursor per
//! stream. Each `STATE` the tap writes becomes a checkpoint of *every* stream the source
//! knows (those it read in this run and those with a committed cursor), each carrying the
//! same tap state with a sequence number that grows by one per state:
//!
//! ```json
//! {"state": {"bookmarks": {"users": {"updated_at": "2024-05-01T00:00:00Z"}}}, "seq": 12, "schema": [...]}
//! ```
//!
//! `schema` is the stream's own part: the fields this source added to the tap's schema for
//! keys the tap did not declare, so that a resumed read decodes as the interrupted one did.
//! On resume, the state with the highest `seq` among the committed cursors is handed to
//! the tap (`--state`): all of them are equal unless a stream was left out of a run.

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
            let Some(state) = object.get("state") else {
                return Err(refuse("no `state`"));
            };
            if best.is_none_or(|(at, _)| seq > at) {
                best = Some((seq, state));
            }
            if let Some(schema) = object.get("schema") {
                resume.schemas.insert(stream.clone(), schema.clone());
            }
            resume.streams.push(stream.clone());
        }
        if let Some((seq, state)) = best {
            resume.seq = seq;
            resume.state = (!state.is_null()).then(|| state.clone());
        }
        Ok(resume)
    }
}

/// The cursor of one stream.
pub(crate) fn cursor(state: Option<&Value>, seq: u64, schema: Option<&Value>) -> Value {
    let mut cursor = json!({"state": state.cloned().unwrap_or(Value::Null), "seq": seq});
    if let Some(schema) = schema {
        cursor["schema"] = schema.clone();
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
    fn the_latest_state_wins_and_schemas_stay_per_stream() {
        let resume = Resume::from_request(&request(&[
            ("a", cursor(Some(&json!({"n": 1})), 1, None)),
            ("b", cursor(Some(&json!({"n": 2})), 2, Some(&json!([])))),
        ]))
        .unwrap();
        assert_eq!(resume.state, Some(json!({"n": 2})));
        assert_eq!(resume.seq, 2);
        assert_eq!(resume.schemas.len(), 1);
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
