//! The webhook destination: records and events POSTed as JSON to the tools that act on
//! them (feature `http`).

mod config;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use cdp_core::record::{RECORD_HASH_COLUMN, is_system_column, string_column};
use cdp_core::{
    Batch, Destination, Error, Op, OpenContext, RefusedRow, Result, StreamSpec, WriteOutcome,
    async_trait,
};
use reqwest::{Method, Url};

pub use crate::http::signature::{SignatureError, sign, verify};
pub use config::{SigningConfig, WebhookDestinationConfig, WebhookFormat, WebhookOptions};

use crate::http::request::{HttpClient, Request, Sent};
use crate::http::{Secret, StatusAction};

const CONNECTOR: &str = "webhook";

/// POSTs records as JSON, one per request or `batch_size` per request (a JSON array or
/// NDJSON), each request signed with HMAC-SHA-256 over its timestamp and body (see
/// [`sign`] and, for receivers, [`verify`]) and carrying an idempotency key: a record's is
/// derived from its `_cdp_record_hash` (and stream and operation), a request's from the
/// keys of its records, so a receiver that remembers keys takes each record once however
/// often it is sent.
///
/// Records are held until the pipeline's barrier ([`flush`](Destination::flush)), or until
/// `buffer_rows` are waiting, then delivered; a delivery is done once the receiver
/// answers 2xx. Timeouts, dropped connections, 429 and 5xx are retried with backoff
/// (honouring `Retry-After`), within the request budget; 400 and 422 (unless configured
/// otherwise) refuse the request's records, and the records a receiver lists under
/// `rejected` in a 2xx response are refused alone: refused records go to the dead
/// letters in the same epoch ([`take_refused`](Destination::take_refused)). A receiver that
/// stays down fails the flush, which stops the run with the last commit intact; the
/// records are sent again on resume (at least once; exactly once to a receiver that
/// dedupes by key).
#[derive(Debug)]
pub struct WebhookDestination {
    config: WebhookDestinationConfig,
    name: String,
    client: HttpClient,
    pending: Vec<Pending>,
    refused: Vec<RefusedRow>,
}

/// A record waiting to be delivered.
#[derive(Debug, Clone)]
struct Pending {
    stream: Arc<str>,
    key: String,
    /// The record's columns as a JSON object (what a dead letter shows).
    record: String,
    /// What goes in the body: the envelope, or the record.
    item: String,
}

impl WebhookDestination {
    /// A destination for `config` (validate it first, or use
    /// [`WebhookDestinationConfig::build_destination`]).
    pub fn from_config(mut config: WebhookDestinationConfig) -> Self {
        // A receiver's 400 or 422 is about what was sent: those records are refused, the
        // run goes on. Configured actions win.
        for code in ["400", "422"] {
            config
                .http
                .on_status
                .entry(code.to_string())
                .or_insert(StatusAction::DeadLetter);
        }
        let name = config
            .webhook
            .name
            .clone()
            .unwrap_or_else(|| CONNECTOR.into());
        let client = HttpClient::new(&name, config.http.clone(), None);
        WebhookDestination {
            config,
            name,
            client,
            pending: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// Posts to `url` with the defaults (JSON arrays of 100 records, enveloped, unsigned).
    pub fn new(url: impl Into<String>) -> Result<Self> {
        WebhookDestinationConfig::new(url).build_destination()
    }

    fn secret(&self) -> Result<Option<(String, Secret)>> {
        match &self.config.webhook.signing {
            Some(signing) => Ok(Some((
                signing.header.clone(),
                signing.secret.resolve(&self.name, "signing.secret")?,
            ))),
            None => Ok(None),
        }
    }

    /// Turns a stamped batch into pending records.
    fn encode(&mut self, batch: &Batch) -> Result<()> {
        let stamped;
        let batch = if batch.is_stamped() {
            batch
        } else {
            stamped = batch.clone().stamp()?;
            &stamped
        };
        let hashes =
            string_column(&batch.data, RECORD_HASH_COLUMN).ok_or_else(|| Error::Schema {
                stream: batch.stream.to_string(),
                message: format!("{RECORD_HASH_COLUMN} is not text"),
            })?;
        let ops = batch.ops()?;
        let records = user_rows(&batch.data)?;
        let stream = batch.stream.clone();
        let header_safe = stream.bytes().all(|b| b.is_ascii_graphic());
        for (row, record) in records.into_iter().enumerate() {
            let op = ops.get(row).copied().unwrap_or(Op::Upsert);
            let hash = hashes.value(row);
            let op_name = match op {
                Op::Upsert => "upsert",
                Op::Delete => "delete",
            };
            let key = if header_safe {
                format!("{stream}:{hash}:{op_name}")
            } else {
                let joined = format!("{stream}\0{hash}\0{op_name}");
                format!("{:032x}", xxhash_rust::xxh3::xxh3_128(joined.as_bytes()))
            };
            let item = if self.config.webhook.envelope {
                format!(
                    "{{\"id\":{},\"stream\":{},\"op\":\"{op_name}\",\"data\":{record}}}",
                    json_string(&key),
                    json_string(&stream)
                )
            } else {
                record.clone()
            };
            self.pending.push(Pending {
                stream: stream.clone(),
                key,
                record,
                item,
            });
        }
        Ok(())
    }

    /// The requests for the pending records: (request, indexes into `pending`).
    fn requests(
        &self,
        url: &Url,
        signature: &Option<(String, Secret)>,
    ) -> Vec<(Request, Vec<usize>)> {
        let webhook = &self.config.webhook;
        let per_request = match webhook.format {
            WebhookFormat::Json => 1,
            _ => webhook.batch_size,
        };
        let mut requests = Vec::new();
        let mut start = 0;
        while start < self.pending.len() {
            // One stream per request, so a bare record's stream is never in doubt.
            let stream = &self.pending[start].stream;
            let mut end = start + 1;
            while end < self.pending.len()
                && end - start < per_request
                && self.pending[end].stream == *stream
            {
                end += 1;
            }
            let chunk = &self.pending[start..end];
            let (body, content_type) = match webhook.format {
                WebhookFormat::Json => (chunk[0].item.clone(), "application/json"),
                WebhookFormat::JsonArray => {
                    let items: Vec<&str> = chunk.iter().map(|p| p.item.as_str()).collect();
                    (format!("[{}]", items.join(",")), "application/json")
                }
                WebhookFormat::Ndjson => {
                    let mut body = String::new();
                    for p in chunk {
                        body.push_str(&p.item);
                        body.push('\n');
                    }
                    (body, "application/x-ndjson")
                }
            };
            let key = if chunk.len() == 1 {
                chunk[0].key.clone()
            } else {
                let keys: Vec<&str> = chunk.iter().map(|p| p.key.as_str()).collect();
                format!(
                    "{:032x}",
                    xxhash_rust::xxh3::xxh3_128(keys.join("\n").as_bytes())
                )
            };
            let request = Request {
                method: Method::POST,
                url: url.clone(),
                headers: vec![(webhook.idempotency_header.clone(), key)],
                body: Some((body.into_bytes(), content_type)),
                signature: signature.clone(),
            };
            requests.push((request, (start..end).collect()));
            start = end;
        }
        requests
    }

    /// Sends every pending record; refused ones are kept for `take_refused`. On a failure
    /// the records not delivered stay pending and the error is returned.
    async fn deliver(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let signature = self.secret()?;
        let url = Url::parse(&self.config.webhook.url).map_err(|e| {
            Error::Config(format!(
                "{}: `url` {}: {e}",
                self.name, self.config.webhook.url
            ))
        })?;
        let requests = self.requests(&url, &signature);
        let concurrency = self.config.webhook.concurrency.max(1);
        let client = &self.client;
        let results: Vec<Result<Sent>> = {
            use futures::StreamExt;
            // Boxed and collected first: a lazily mapped iterator of borrowing futures trips
            // the compiler's lifetime inference inside `async_trait` methods.
            type Sending<'a> =
                std::pin::Pin<Box<dyn std::future::Future<Output = Result<Sent>> + Send + 'a>>;
            let sending: Vec<Sending<'_>> = requests
                .iter()
                .map(|(request, _)| Box::pin(client.send(request)) as Sending<'_>)
                .collect();
            futures::stream::iter(sending)
                .buffered(concurrency)
                .collect()
                .await
        };
        let mut delivered = vec![false; self.pending.len()];
        let mut failure = None;
        for ((request, indexes), result) in requests.iter().zip(results) {
            let position = format!("POST {}", self.client.redact(&request.url));
            match result {
                Ok(Sent::Reply { reply, ignored }) => {
                    let refused = if ignored {
                        HashMap::new()
                    } else {
                        self.listed_refusals(&reply.body, indexes)
                    };
                    for &i in indexes {
                        delivered[i] = true;
                        if let Some(reason) = refused.get(&i) {
                            self.refuse(i, reason.clone(), &position);
                        }
                    }
                }
                Ok(Sent::DeadLetter { reason, .. }) => {
                    for &i in indexes {
                        delivered[i] = true;
                        self.refuse(i, reason.clone(), &position);
                    }
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        let mut keep = delivered.iter().map(|d| !d);
        self.pending.retain(|_| keep.next().unwrap_or(true));
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn refuse(&mut self, index: usize, reason: String, position: &str) {
        let pending = &self.pending[index];
        self.refused.push(RefusedRow {
            stream: pending.stream.to_string(),
            row: pending.record.clone(),
            reason,
            position: Some(format!("{position} ({})", pending.key)),
        });
    }

    /// The records of a request the receiver's answer lists as refused, with reasons.
    fn listed_refusals(&self, body: &[u8], indexes: &[usize]) -> HashMap<usize, String> {
        let mut refused = HashMap::new();
        let Some(pointer) = &self.config.webhook.rejected else {
            return refused;
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return refused;
        };
        let Some(list) = value.pointer(pointer).and_then(|v| v.as_array()) else {
            return refused;
        };
        for entry in list {
            let reason = ["reason", "error", "message"]
                .iter()
                .find_map(|k| entry.get(*k).and_then(|r| r.as_str()))
                .unwrap_or("refused by the receiver")
                .to_string();
            let at = match (entry.get("id").and_then(|i| i.as_str()), entry.get("index")) {
                (Some(id), _) => indexes.iter().copied().find(|&i| self.pending[i].key == id),
                (None, Some(index)) => index
                    .as_u64()
                    .and_then(|n| indexes.get(usize::try_from(n).ok()?).copied()),
                _ => None,
            };
            if let Some(at) = at {
                refused.insert(at, format!("the receiver refused the record: {reason}"));
            }
        }
        refused
    }
}

/// A string as a JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// Each row's user columns (no `_cdp_` column) as one JSON object.
fn user_rows(batch: &RecordBatch) -> Result<Vec<String>> {
    let schema = batch.schema();
    let keep: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !is_system_column(f.name()))
        .map(|(i, _)| i)
        .collect();
    let user = batch.project(&keep)?;
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(&user)?;
    writer.finish()?;
    let text = String::from_utf8(writer.into_inner())
        .map_err(|e| Error::external(CONNECTOR, format!("rows rendered as invalid UTF-8: {e}")))?;
    let rows: Vec<String> = text.lines().map(str::to_string).collect();
    if rows.len() != batch.num_rows() {
        return Err(Error::external(
            CONNECTOR,
            format!(
                "{} rows rendered as {} JSON lines",
                batch.num_rows(),
                rows.len()
            ),
        ));
    }
    Ok(rows)
}

#[async_trait]
impl Destination for WebhookDestination {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&mut self) -> Result<()> {
        self.secret().map(|_| ())
    }

    async fn open(&mut self, _ctx: &OpenContext) -> Result<()> {
        self.pending.clear();
        Ok(())
    }

    async fn prepare(&mut self, _stream: &StreamSpec) -> Result<()> {
        Ok(())
    }

    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        self.encode(batch)?;
        if self.pending.len() >= self.config.webhook.buffer_rows {
            self.deliver().await?;
        }
        Ok(WriteOutcome::default())
    }

    async fn flush(&mut self, _epoch: u64) -> Result<()> {
        self.deliver().await
    }

    fn take_refused(&mut self) -> Vec<RefusedRow> {
        std::mem::take(&mut self.refused)
    }
}
