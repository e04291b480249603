//! Segment calls as the tracking API receives them: the call types, the limits, and the
//! checks and stamps every event gets before it is logged.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::error::Rejection;

/// A Segment call type; each is one stream of the collector's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallType {
    /// `track`: an action, with `event` and `properties`.
    Track,
    /// `identify`: who the user is, with `traits`.
    Identify,
    /// `page`: a web page view.
    Page,
    /// `screen`: a mobile screen view.
    Screen,
    /// `group`: the user's account or company, with `groupId`.
    Group,
    /// `alias`: two ids of one user, `previousId` and `userId`.
    Alias,
}

impl CallType {
    /// Every call type.
    pub const ALL: [CallType; 6] = [
        CallType::Track,
        CallType::Identify,
        CallType::Page,
        CallType::Screen,
        CallType::Group,
        CallType::Alias,
    ];

    /// The name in `type` and in the endpoint path; also the stream name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallType::Track => "track",
            CallType::Identify => "identify",
            CallType::Page => "page",
            CallType::Screen => "screen",
            CallType::Group => "group",
            CallType::Alias => "alias",
        }
    }

    /// The call type of a `type` value or an endpoint (`track` or the browser library's
    /// short form `t`).
    pub fn parse(name: &str) -> Option<CallType> {
        Some(match name {
            "track" | "t" => CallType::Track,
            "identify" | "i" => CallType::Identify,
            "page" | "p" => CallType::Page,
            "screen" | "s" => CallType::Screen,
            "group" | "g" => CallType::Group,
            "alias" | "a" => CallType::Alias,
            _ => return None,
        })
    }
}

impl fmt::Display for CallType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Segment's limits on what one request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one event (its JSON). Segment: 32 KB.
    pub max_event_bytes: usize,
    /// Bytes of one batch request body, after decompression. Segment: 500 KB.
    pub max_batch_bytes: usize,
    /// Events in one batch request. Segment: 2,500.
    pub max_batch_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 32 * 1024,
            max_batch_bytes: 500 * 1024,
            max_batch_events: 2_500,
        }
    }
}

/// An event checked and stamped, ready for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its call type (its stream).
    pub call: CallType,
    /// Its `messageId`, given by the client or assigned here.
    pub message_id: String,
    /// The line written to the log: the event's JSON.
    pub line: Vec<u8>,
}

/// Fields every logged event has (null when the call did not set them), so each stream's
/// columns start with the Segment common fields.
const COMMON: [&str; 13] = [
    "messageId",
    "type",
    "userId",
    "anonymousId",
    "event",
    "name",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "context",
    "properties",
    "traits",
];

/// Checks one call and stamps it: `type`, `messageId`, `receivedAt`, and `timestamp`
/// corrected for the client's clock skew as the Segment spec defines it
/// (`receivedAt − (sentAt − originalTimestamp)`), the client's own time kept as
/// `originalTimestamp`. `call` is the endpoint's type (`None` for batch items, which carry
/// theirs), `sent_at` the batch's `sentAt`, `defaults` the batch's `context` and
/// `integrations`. `index` names the item in errors.
pub fn prepare(
    mut raw: Map<String, Value>,
    call: Option<CallType>,
    received_at: DateTime<Utc>,
    sent_at: Option<&Value>,
    defaults: &Map<String, Value>,
    limits: &Limits,
    index: Option<usize>,
) -> Result<Event, Rejection> {
    let invalid = |message: String| Rejection::Invalid { index, message };
    let call = match (call, raw.get("type")) {
        (Some(call), _) => call,
        (None, Some(Value::String(t))) => CallType::parse(t)
            .filter(|c| c.as_str() == t)
            .ok_or_else(|| invalid(format!("`type` `{t}` is not a Segment call type")))?,
        (None, Some(_)) => return Err(invalid("`type` must be a string".into())),
        (None, None) => return Err(invalid("`type` is required in a batch".into())),
    };
    // Never log the write key.
    raw.remove("writeKey");
    for (key, value) in defaults {
        if !raw.contains_key(key) {
            raw.insert(key.clone(), value.clone());
        }
    }
    for id in ["userId", "anonymousId", "previousId", "groupId"] {
        // Numbers are ids too; they are logged as text, as Segment does.
        if let Some(Value::Number(n)) = raw.get(id) {
            let text = n.to_string();
            raw.insert(id.to_string(), Value::String(text));
        }
    }
    let present = |raw: &Map<String, Value>, key: &str| matches!(raw.get(key), Some(Value::String(s)) if !s.is_empty());
    if !present(&raw, "userId") && !present(&raw, "anonymousId") {
        return Err(invalid("`userId` or `anonymousId` is required".into()));
    }
    match call {
        CallType::Track if !present(&raw, "event") => {
            return Err(invalid("`event` is required for track".into()));
        }
        CallType::Group if !present(&raw, "groupId") => {
            return Err(invalid("`groupId` is required for group".into()));
        }
        CallType::Alias if !present(&raw, "previousId") || !present(&raw, "userId") => {
            return Err(invalid(
                "`previousId` and `userId` are required for alias".into(),
            ));
        }
        _ => {}
    }
    for object in ["context", "properties", "traits", "integrations"] {
        match raw.get(object) {
            None | Some(Value::Object(_)) | Some(Value::Null) => {}
            Some(_) => return Err(invalid(format!("`{object}` must be an object"))),
        }
    }

    let message_id = match raw.get("messageId") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        None | Some(Value::Null) => format!("cdp-{}", uuid::Uuid::now_v7()),
        Some(_) => return Err(invalid("`messageId` must be a string".into())),
    };
    let time = |raw: &Map<String, Value>, key: &str| -> Result<Option<DateTime<Utc>>, Rejection> {
        match raw.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|e| invalid(format!("`{key}` `{s}` is not an ISO 8601 time: {e}"))),
            Some(_) => Err(invalid(format!("`{key}` must be an ISO 8601 string"))),
        }
    };
    let original = time(&raw, "timestamp")?;
    if !raw.contains_key("sentAt")
        && let Some(sent_at) = sent_at
    {
        raw.insert("sentAt".into(), sent_at.clone());
    }
    let sent = time(&raw, "sentAt")?;
    let timestamp = match (original, sent) {
        (Some(original), Some(sent)) => received_at - (sent - original),
        (Some(original), None) => original,
        (None, _) => received_at,
    };
    let stamp = |t: DateTime<Utc>| Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true));
    raw.insert("type".into(), Value::String(call.as_str().into()));
    raw.insert("messageId".into(), Value::String(message_id.clone()));
    raw.insert("receivedAt".into(), stamp(received_at));
    raw.insert(
        "originalTimestamp".into(),
        original.map_or(Value::Null, stamp),
    );
    raw.insert("timestamp".into(), stamp(timestamp));
    for key in COMMON {
        raw.entry(key).or_insert(Value::Null);
    }
    let line = serde_json::to_vec(&Value::Object(raw))
        .map_err(|e| invalid(format!("the event cannot be written as JSON: {e}")))?;
    if line.len() > limits.max_event_bytes {
        return Err(Rejection::TooLarge {
            what: match index {
                Some(i) => format!("event {i}"),
                None => "the event".into(),
            },
            size: line.len(),
            limit: limits.max_event_bytes,
        });
    }
    Ok(Event {
        call,
        message_id,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prepared(raw: Value, call: Option<CallType>) -> Result<Value, Rejection> {
        let Value::Object(raw) = raw else {
            panic!("an object")
        };
        let received: DateTime<Utc> = "2024-05-01T12:00:10Z".parse().unwrap_or_default();
        prepare(
            raw,
            call,
            received,
            None,
            &Map::new(),
            &Limits::default(),
            None,
        )
        .map(|e| serde_json::from_slice(&e.line).unwrap_or_default())
    }

    #[test]
    fn timestamps_are_corrected_for_clock_skew() {
        // The client's clock is 60 s fast: it stamped the event at 12:01:00 and sent it at
        // 12:01:05; the server received it at 12:00:10, so the event happened at 12:00:05.
        let event = prepared(
            json!({"userId": "u1", "event": "Signed Up", "timestamp": "2024-05-01T12:01:00Z",
                   "sentAt": "2024-05-01T12:01:05Z"}),
            Some(CallType::Track),
        )
        .unwrap_or_default();
        assert_eq!(event["timestamp"], "2024-05-01T12:00:05.000Z");
        assert_eq!(event["originalTimestamp"], "2024-05-01T12:01:00.000Z");
        assert_eq!(event["receivedAt"], "2024-05-01T12:00:10.000Z");
        assert_eq!(event["type"], "track");
        assert!(
            event["messageId"]
                .as_str()
                .is_some_and(|m| m.starts_with("cdp-"))
        );
    }

    #[test]
    fn required_fields_are_named() {
        let message = |raw, call| match prepared(raw, call) {
            Err(Rejection::Invalid { message, .. }) => message,
            other => panic!("{other:?}"),
        };
        assert!(message(json!({"event": "x"}), Some(CallType::Track)).contains("`userId`"));
        assert!(message(json!({"userId": "u"}), Some(CallType::Track)).contains("`event`"));
        assert!(message(json!({"userId": "u"}), Some(CallType::Group)).contains("`groupId`"));
        assert!(message(json!({"userId": "u"}), None).contains("`type`"));
        assert!(message(json!({"userId": "u", "type": "tracks"}), None).contains("not a Segment"));
    }
}
