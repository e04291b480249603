//! The webhook destination: records and events POSTed as JSON to the tools that act on
//! them (feature `http`).

mod config;

use std::collections::HashMap;
use std::ops::Range;
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
    /// Batches written and not encoded yet: each is encoded while the request before it
    /// is on the wire.
    queued: Vec<Batch>,
    queued_rows: usize,
    pending: Vec<Pending>,
    refused: Vec<RefusedRow>,
}

/// A record waiting to be delivered.
#[derive(Debug, Clone)]
struct Pending {
    stream: Arc<str>,
    /// The idempotency key (written as 32 hex digits).
    key: u128,
    /// The encoded records of the batch this one came in (one allocation per batch).
    text: Arc<str>,
    /// What goes in the body (the envelope, or the record), in `text`.
    item: Range<usize>,
    /// The record's columns (a JSON object, what a dead letter shows), in `text`.
    record: Range<usize>,
}

impl Pending {
    fn item(&self) -> &str {
        &self.text[self.item.clone()]
    }
}

/// `key` as 32 lower-case hex digits, appended to `out`.
fn push_hex(key: u128, out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..32).rev() {
        out.push(DIGITS[((key >> (shift * 4)) & 0xf) as usize] as char);
    }
}

fn hex(key: u128) -> String {
    let mut out = String::with_capacity(32);
    push_hex(key, &mut out);
    out
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
            queued: Vec::new(),
            queued_rows: 0,
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
}

/// Turns a stamped batch into records waiting to be delivered.
fn encode(options: &WebhookOptions, pending: &mut Vec<Pending>, batch: &Batch) -> Result<()> {
    let stamped;
    let batch = if batch.is_stamped() {
        batch
    } else {
        stamped = batch.clone().stamp()?;
        &stamped
    };
    let hashes = string_column(&batch.data, RECORD_HASH_COLUMN).ok_or_else(|| Error::Schema {
        stream: batch.stream.to_string(),
        message: format!("{RECORD_HASH_COLUMN} is not text"),
    })?;
    let ops = batch.ops()?;
    let text = user_rows(&batch.data)?;
    let stream = batch.stream.clone();
    let envelope = options.envelope;
    let stream_json = json_string(&stream);
    let lines = text.lines().count();
    if lines != batch.num_rows() {
        return Err(Error::external(
            CONNECTOR,
            format!("{} rows rendered as {lines} JSON lines", batch.num_rows()),
        ));
    }
    pending.reserve(lines);
    let extra = if envelope { stream_json.len() + 80 } else { 0 };
    let mut items = String::with_capacity(text.len() + lines * extra);
    let mut spans = Vec::with_capacity(lines);
    for (row, record) in text.lines().enumerate() {
        let op = ops.get(row).copied().unwrap_or(Op::Upsert);
        let op_name = match op {
            Op::Upsert => "upsert",
            Op::Delete => "delete",
        };
        // Stream, content and operation: the same record gets the same key in every
        // run, and the key needs no escaping in a header or in JSON.
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(stream.as_bytes());
        hasher.update(&[0]);
        hasher.update(hashes.value(row).as_bytes());
        hasher.update(&[0]);
        hasher.update(op_name.as_bytes());
        let key = hasher.digest128();
        let start = items.len();
        let record_at = if envelope {
            items.push_str("{\"id\":\"");
            push_hex(key, &mut items);
            items.push_str("\",\"stream\":");
            items.push_str(&stream_json);
            items.push_str(",\"op\":\"");
            items.push_str(op_name);
            items.push_str("\",\"data\":");
            let at = items.len();
            items.push_str(record);
            items.push('}');
            at..at + record.len()
        } else {
            items.push_str(record);
            start..items.len()
        };
        spans.push((key, start..items.len(), record_at));
    }
    let text: Arc<str> = Arc::from(items);
    for (key, item, record) in spans {
        pending.push(Pending {
            stream: stream.clone(),
            key,
            text: text.clone(),
            item,
            record,
        });
    }
    Ok(())
}

impl WebhookDestination {
    /// The request for the pending records from `start` on: as many as one request takes
    /// (`batch_size`, of one stream). `None` when none is pending, or when the records
    /// would not fill a request and `more` may still come.
    fn request_at(
        &self,
        start: usize,
        more: bool,
        url: &Url,
        signature: &Option<(String, Secret)>,
    ) -> Option<(Request, Range<usize>)> {
        let webhook = &self.config.webhook;
        let per_request = match webhook.format {
            WebhookFormat::Json => 1,
            _ => webhook.batch_size,
        };
        let first = self.pending.get(start)?;
        // One stream per request, so a bare record's stream is never in doubt.
        let mut end = start + 1;
        while end < self.pending.len()
            && end - start < per_request
            && self.pending[end].stream == first.stream
        {
            end += 1;
        }
        if more && end == self.pending.len() && end - start < per_request {
            return None;
        }
        let chunk = &self.pending[start..end];
        let (body, content_type) = match webhook.format {
            WebhookFormat::Json => (chunk[0].item().to_string(), "application/json"),
            WebhookFormat::JsonArray => {
                let mut body = String::with_capacity(
                    chunk.iter().map(|p| p.item.len() + 1).sum::<usize>() + 2,
                );
                body.push('[');
                for (i, p) in chunk.iter().enumerate() {
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(p.item());
                }
                body.push(']');
                (body, "application/json")
            }
            WebhookFormat::Ndjson => {
                let mut body = String::new();
                for p in chunk {
                    body.push_str(p.item());
                    body.push('\n');
                }
                (body, "application/x-ndjson")
            }
        };
        let key = if chunk.len() == 1 {
            hex(chunk[0].key)
        } else {
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            for p in chunk {
                hasher.update(&p.key.to_le_bytes());
            }
            hex(hasher.digest128())
        };
        let request = Request {
            method: Method::POST,
            url: url.clone(),
            headers: vec![(webhook.idempotency_header.clone(), key)],
            body: Some((bytes::Bytes::from(body.into_bytes()), content_type)),
            signature: signature.clone(),
        };
        Some((request, start..end))
    }

    /// Encodes the queued batches and sends every pending record, one request at a time
    /// (each batch encoded while the request before it is on the wire), or
    /// `concurrency` at a time; refused records are kept for `take_refused`. On a failure
    /// what was not delivered stays pending (or queued) and the error is returned.
    async fn deliver(&mut self) -> Result<()> {
        if self.pending.is_empty() && self.queued.is_empty() {
            return Ok(());
        }
        let signature = self.secret()?;
        let url = Url::parse(&self.config.webhook.url).map_err(|e| {
            Error::Config(format!(
                "{}: `url` {}: {e}",
                self.name, self.config.webhook.url
            ))
        })?;
        let queued = std::mem::take(&mut self.queued);
        self.queued_rows = 0;
        let concurrency = self.config.webhook.concurrency.max(1);
        let mut batches = queued.into_iter();
        if concurrency > 1 {
            for batch in batches.by_ref() {
                encode(&self.config.webhook, &mut self.pending, &batch)?;
            }
            return self
                .deliver_concurrently(&url, &signature, concurrency)
                .await;
        }
        let mut delivered = vec![false; self.pending.len()];
        let mut next = batches.next();
        let mut start = 0;
        let mut failure = None;
        loop {
            // Enough records for a request, or all there will be.
            let request = loop {
                match self.request_at(start, next.is_some(), &url, &signature) {
                    Some(request) => break Some(request),
                    None => match next.take() {
                        Some(batch) => {
                            encode(&self.config.webhook, &mut self.pending, &batch)?;
                            next = batches.next();
                        }
                        None => break None,
                    },
                }
            };
            let Some((request, range)) = request else {
                break;
            };
            start = range.end;
            let client = &self.client;
            let options = &self.config.webhook;
            let pending = &mut self.pending;
            let upcoming = next.take();
            let (result, encoded) = futures::join!(client.send(&request), async {
                match upcoming {
                    Some(batch) => encode(options, pending, &batch).map(|()| true),
                    None => Ok(false),
                }
            });
            if encoded? {
                next = batches.next();
            }
            delivered.resize(self.pending.len(), false);
            match result {
                Ok(sent) => self.settle(&request, range, sent, &mut delivered),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        // What was not encoded yet waits for the next delivery.
        self.queued.extend(next);
        self.queued.extend(batches);
        self.queued_rows = self.queued.iter().map(Batch::num_rows).sum();
        delivered.resize(self.pending.len(), false);
        let mut keep = delivered.iter().map(|d| !d);
        self.pending.retain(|_| keep.next().unwrap_or(true));
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Sends the pending records `concurrency` requests at a time.
    async fn deliver_concurrently(
        &mut self,
        url: &Url,
        signature: &Option<(String, Secret)>,
        concurrency: usize,
    ) -> Result<()> {
        let mut requests = Vec::new();
        let mut start = 0;
        while let Some((request, range)) = self.request_at(start, false, url, signature) {
            start = range.end;
            requests.push((request, range));
        }
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
        for ((request, range), result) in requests.into_iter().zip(results) {
            match result {
                Ok(sent) => self.settle(&request, range, sent, &mut delivered),
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

    /// Marks the records of an answered request delivered, refusing those the answer
    /// refused.
    fn settle(
        &mut self,
        request: &Request,
        range: Range<usize>,
        sent: Sent,
        delivered: &mut [bool],
    ) {
        let position = format!("POST {}", self.client.redact(&request.url));
        let indexes: Vec<usize> = range.collect();
        match sent {
            Sent::Reply { reply, ignored } => {
                let refused = if ignored {
                    HashMap::new()
                } else {
                    self.listed_refusals(&reply.body, &indexes)
                };
                for &i in &indexes {
                    delivered[i] = true;
                    if let Some(reason) = refused.get(&i) {
                        self.refuse(i, reason.clone(), &position);
                    }
                }
            }
            Sent::DeadLetter { reason, .. } => {
                for &i in &indexes {
                    delivered[i] = true;
                    self.refuse(i, reason.clone(), &position);
                }
            }
        }
    }

    fn refuse(&mut self, index: usize, reason: String, position: &str) {
        let pending = &self.pending[index];
        self.refused.push(RefusedRow {
            stream: pending.stream.to_string(),
            row: pending.text[pending.record.clone()].to_string(),
            reason,
            position: Some(format!("{position} ({})", hex(pending.key))),
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
                (Some(id), _) => {
                    let id = u128::from_str_radix(id, 16).ok();
                    indexes
                        .iter()
                        .copied()
                        .find(|&i| Some(self.pending[i].key) == id)
                }
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

/// Each row's user columns (no `_cdp_` column) as one JSON object per line.
fn user_rows(batch: &RecordBatch) -> Result<String> {
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
    String::from_utf8(writer.into_inner())
        .map_err(|e| Error::external(CONNECTOR, format!("rows rendered as invalid UTF-8: {e}")))
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
        self.queued.clear();
        self.queued_rows = 0;
        Ok(())
    }

    async fn prepare(&mut self, _stream: &StreamSpec) -> Result<()> {
        Ok(())
    }

    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        self.queued.push(batch.clone());
        self.queued_rows += batch.num_rows();
        if self.pending.len() + self.queued_rows >= self.config.webhook.buffer_rows {
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
