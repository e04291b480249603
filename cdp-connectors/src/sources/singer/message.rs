//! One line of a tap's output, as a Singer message.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// A message a tap wrote. Keys the source does not use (`key_properties`, `time_extracted`,
/// `version`, `bookmark_properties`) are ignored: keys come from the catalog.
#[derive(Debug)]
pub(crate) enum Message<'a> {
    /// A stream's JSON Schema; later records of the stream follow it.
    Schema {
        stream: String,
        schema: &'a RawValue,
    },
    /// One record (a JSON object, unparsed).
    Record {
        stream: String,
        record: &'a RawValue,
    },
    /// The tap's state: everything before it is covered by it.
    State { value: Value },
    /// Records in files (Singer SDK batch messages).
    Batch {
        stream: String,
        format: String,
        compression: Option<String>,
        manifest: Vec<String>,
    },
    /// The start of a new version of a stream's full table (ignored: see the source).
    ActivateVersion { stream: String },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default, borrow)]
    record: Option<&'a RawValue>,
    #[serde(default, borrow)]
    schema: Option<&'a RawValue>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    encoding: Option<Encoding>,
    #[serde(default)]
    manifest: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Encoding {
    format: String,
    #[serde(default)]
    compression: Option<String>,
}

impl<'a> Message<'a> {
    /// Parses one line, or says what is wrong with it.
    pub(crate) fn parse(line: &'a [u8]) -> Result<Message<'a>, String> {
        let envelope: Envelope<'a> = serde_json::from_slice(line).map_err(|e| {
            if serde_json::from_slice::<&RawValue>(line).is_ok() {
                format!("not a Singer message: {e}")
            } else {
                format!("invalid JSON: {e}")
            }
        })?;
        let stream = |what: &str| {
            envelope
                .stream
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("{what} message without a `stream`"))
        };
        match envelope.kind.as_str() {
            "RECORD" => {
                let stream = stream("RECORD")?;
                let record = envelope
                    .record
                    .ok_or_else(|| "RECORD message without a `record`".to_string())?;
                if !record.get().starts_with('{') {
                    return Err("the `record` of a RECORD message is not a JSON object".into());
                }
                Ok(Message::Record { stream, record })
            }
            "SCHEMA" => {
                let stream = stream("SCHEMA")?;
                let schema = envelope
                    .schema
                    .filter(|schema| schema.get().starts_with('{'))
                    .ok_or_else(|| "SCHEMA message without a `schema` object".to_string())?;
                Ok(Message::Schema { stream, schema })
            }
            "STATE" => Ok(Message::State {
                value: envelope.value.unwrap_or(Value::Null),
            }),
            "BATCH" => {
                let stream = stream("BATCH")?;
                let encoding = envelope
                    .encoding
                    .ok_or_else(|| "BATCH message without an `encoding`".to_string())?;
                Ok(Message::Batch {
                    stream,
                    format: encoding.format,
                    compression: encoding.compression,
                    manifest: envelope.manifest.unwrap_or_default(),
                })
            }
            "ACTIVATE_VERSION" => Ok(Message::ActivateVersion {
                stream: stream("ACTIVATE_VERSION")?,
            }),
            other => Err(format!("unknown Singer message type `{other}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_or_say_why_not() {
        let record =
            br#"{"type":"RECORD","stream":"users","record":{"id":1},"time_extracted":"x"}"#;
        assert!(matches!(
            Message::parse(record),
            Ok(Message::Record { stream, record }) if stream == "users" && record.get() == r#"{"id":1}"#
        ));
        let state = br#"{"type":"STATE","value":{"bookmarks":{}}}"#;
        assert!(matches!(Message::parse(state), Ok(Message::State { .. })));
        let batch = br#"{"type":"BATCH","stream":"s","encoding":{"format":"jsonl","compression":"gzip"},"manifest":["file:///tmp/a.json.gz"]}"#;
        assert!(matches!(
            Message::parse(batch),
            Ok(Message::Batch { manifest, .. }) if manifest.len() == 1
        ));
        let cases: [(&[u8], &str); 5] = [
            (b"{oops", "invalid JSON"),
            (b"[1,2]", "not a Singer message"),
            (br#"{"type":"RECORD","record":{}}"#, "without a `stream`"),
            (
                br#"{"type":"RECORD","stream":"s","record":[1]}"#,
                "not a JSON object",
            ),
            (
                br#"{"type":"LOG","stream":"s"}"#,
                "unknown Singer message type `LOG`",
            ),
        ];
        for (line, expected) in cases {
            let reason = Message::parse(line).unwrap_err();
            assert!(reason.contains(expected), "{reason}");
        }
    }
}
