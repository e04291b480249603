//! The declarative HTTP source: SaaS REST APIs read as streams from configuration alone
//! (feature `http`).

mod config;
mod cursor;
mod decode;
mod page;
mod records;
mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use cdp_core::{
    Batch, Catalog, Checkpoint, ConnectorSpec, DeadLetter, Error, ReadRequest, Result, SchemaDrift,
    Source, SourceEvent, SourceEventStream, StateStore, StreamSpec, SyncMode, async_trait,
};
use reqwest::Url;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

pub use config::{
    HttpSourceConfig, HttpSourceOptions, HttpStreamConfig, IncrementalConfig, Nested, PageSize,
    Pagination, ParentConfig,
};
pub use cursor::{CursorFormat, CursorKind};
pub use records::RecordFilter;

use self::cursor::Position;
use self::decode::{Decoded, PageDecoder, infer, schema_from_json, schema_to_json};
use self::page::{PageSeen, fill, link_url, next_page, stream_url};
use self::records::{compact, flatten, pointer, pointer_text, select};
use self::state::{Page, PartitionState, StreamState, SyncState};
use crate::http::request::{HttpClient, Request, Sent, truncate};
use crate::sources::ColumnConfig;

const CONNECTOR: &str = "http";

/// Events buffered between the reading task and the pipeline: a few pages' worth, so a
/// slow destination slows the requests.
const CHANNEL: usize = 16;

/// Bytes of a page that could not be parsed kept in its dead letter.
const DEAD_PAGE_BYTES: usize = 64 * 1024;

/// Reads SaaS REST APIs as streams, described by an [`HttpSourceConfig`]: one endpoint
/// per stream, with its authentication, pagination, record selector, incremental cursor,
/// partitions and substreams (see the config for the keys).
///
/// Each page becomes a batch followed by a checkpoint of its stream, so a resume asks for
/// the page after the last one committed. Records are schemaless JSON decoded by the
/// JSONL source's path ([`NewFields`](crate::sources::NewFields),
/// [`TypeConflicts`](crate::sources::TypeConflicts)): a key the schema has not seen
/// evolves it or goes to the overflow column, by the source's policy; the inferred schema
/// and its changes are kept in the checkpoint, so a resumed read decodes as the
/// interrupted one did. A page that cannot be parsed is a dead letter naming its URL, and
/// the stream goes on.
///
/// Incremental streams send their checkpoint's cursor as a parameter (inclusive), skip
/// the records at that cursor they emitted already (compared by content), and keep no
/// record from the boundary back: nothing is emitted twice, nothing sharing the cursor
/// value is lost. Partitions and substreams keep a state each; a run is resumed where it
/// stopped and the partitions it completed are not read again until the next run.
///
/// Building connects to nothing and reads no secret: [`check`](Source::check) makes one
/// authenticated request, [`discover`](Source::discover) lists the configured streams
/// (sampling a first page for a schema not given).
#[derive(Debug, Clone)]
pub struct HttpSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: HttpSourceConfig,
    name: String,
    client: HttpClient,
    /// Schemas inferred by `discover`, reused as a first read's base.
    samples: Mutex<HashMap<String, SchemaRef>>,
}

impl HttpSource {
    /// A source for `config` (validate it first, or use
    /// [`HttpSourceConfig::build_source`]).
    pub fn from_config(config: HttpSourceConfig) -> Self {
        Self::with_store(config, None)
    }

    fn with_store(config: HttpSourceConfig, store: Option<(Arc<dyn StateStore>, String)>) -> Self {
        let name = config
            .source
            .name
            .clone()
            .unwrap_or_else(|| CONNECTOR.into());
        let client = HttpClient::new(&name, config.http.clone(), store);
        HttpSource {
            inner: Arc::new(Inner {
                config,
                name,
                client,
                samples: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Keeps a refresh token the OAuth server rotates in `store`, under the id
    /// `{pipeline_id}/{source name}/oauth`, committed before the new token is used: a
    /// restart then starts from the newest token instead of one the server revoked. Pass
    /// the pipeline's own state store.
    pub fn with_state_store(self, store: Arc<dyn StateStore>, pipeline_id: &str) -> Self {
        let id = format!("{pipeline_id}/{}/oauth", self.inner.name);
        Self::with_store(self.inner.config.clone(), Some((store, id)))
    }

    /// The configuration.
    pub fn config(&self) -> &HttpSourceConfig {
        &self.inner.config
    }
}

#[async_trait]
impl Source for HttpSource {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: CONNECTOR.into(),
            description: "REST APIs, paged and read incrementally from configuration".into(),
            sync_modes: vec![SyncMode::FullRefresh, SyncMode::IncrementalAppend],
        }
    }

    /// One authenticated request: the first page of the first stream (or of its parent).
    async fn check(&self) -> Result<()> {
        let inner = &self.inner;
        let Some(first) = inner.config.source.streams.first() else {
            return Err(Error::Config("http: no stream is configured".into()));
        };
        let stream = match &first.parent {
            Some(parent) => inner.stream(&parent.stream)?,
            None => first,
        };
        let vars = stream.partitions.first().cloned().unwrap_or_default();
        let url = inner.url(stream, &vars)?;
        let request = inner.request(stream, &vars, url, &Page::First, None);
        inner.client.send(&request).await.map(|_| ())
    }

    async fn discover(&self) -> Result<Catalog> {
        let inner = &self.inner;
        let mut streams = Vec::new();
        for stream in &inner.config.source.streams {
            let schema = match inner.explicit_schema(stream)? {
                Some(schema) => schema,
                None => {
                    let sample = inner.sample(stream).await?;
                    let policy = inner.config.drift();
                    policy.with_overflow(CONNECTOR, sample)?
                }
            };
            let mut spec = StreamSpec::new(&stream.name, schema)
                .with_primary_key(stream.primary_key.iter().cloned());
            if let Some(incremental) = &stream.incremental {
                spec = spec
                    .with_cursor_field(field_name(&incremental.cursor_field))
                    .with_sync_modes([SyncMode::IncrementalAppend, SyncMode::FullRefresh]);
                if !stream.primary_key.is_empty() {
                    spec.sync_modes.push(SyncMode::IncrementalDedup);
                }
            }
            streams.push(spec);
        }
        Ok(Catalog::new(streams))
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        let inner = self.inner.clone();
        let (tx, rx) = mpsc::channel::<Result<SourceEvent>>(CHANNEL);
        tokio::spawn(async move {
            let out = Out { tx };
            for stream in &inner.config.source.streams {
                if !request.wants(&stream.name) {
                    continue;
                }
                let committed = request.state.cursor(&stream.name);
                match StreamRead::start(&inner, stream, committed) {
                    Ok(mut read) => {
                        if let Err(error) = read.run(&out).await {
                            let _ = out.tx.send(Err(error)).await;
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = out.tx.send(Err(error)).await;
                        return;
                    }
                }
                if out.tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        })))
    }
}

/// A JSON pointer as a column name: `/updated_at` → `updated_at`, `/a/b` → `a.b`.
fn field_name(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// The events of a read, on their way to the pipeline.
struct Out {
    tx: mpsc::Sender<Result<SourceEvent>>,
}

impl Out {
    async fn send(&self, event: SourceEvent) -> Result<()> {
        self.tx.send(Ok(event)).await.map_err(|_| Error::Cancelled)
    }
}

impl Inner {
    fn stream(&self, name: &str) -> Result<&HttpStreamConfig> {
        self.config
            .source
            .streams
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::Config(format!("{}: no stream `{name}`", self.name)))
    }

    fn explicit_schema(&self, stream: &HttpStreamConfig) -> Result<Option<SchemaRef>> {
        match &stream.schema {
            Some(columns) => {
                let schema = ColumnConfig::to_schema(columns)?;
                Ok(Some(self.config.drift().with_overflow(CONNECTOR, schema)?))
            }
            None => Ok(None),
        }
    }

    fn url(&self, stream: &HttpStreamConfig, vars: &BTreeMap<String, String>) -> Result<Url> {
        stream_url(&self.config.source.base_url, stream, vars)
            .map_err(|e| Error::Config(format!("{}: stream `{}`: {e}", self.name, stream.name)))
    }

    /// The request for `page` of `stream`: a next-page URL as given, otherwise the
    /// stream's URL with its parameters, the page size, the incremental bounds and the
    /// page position.
    fn request(
        &self,
        stream: &HttpStreamConfig,
        vars: &BTreeMap<String, String>,
        mut url: Url,
        page: &Page,
        sync: Option<&SyncState>,
    ) -> Request {
        if let Page::Url(next) = page
            && let Ok(next) = link_url(&url, next)
        {
            return Request::get(next);
        }
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in self.config.source.params.iter().chain(&stream.params) {
                let value = fill(value, vars, false).unwrap_or_else(|_| value.clone());
                query.append_pair(name, &value);
            }
            if let Some(size) = &stream.page_size {
                query.append_pair(&size.param, &size.size.to_string());
            }
            if let (Some(incremental), Some(sync)) = (&stream.incremental, sync) {
                let kind = incremental.kind;
                if let (Some(param), Some(from)) = (
                    &incremental.param,
                    sync.from.as_ref().and_then(|f| kind.read(f)),
                ) {
                    query.append_pair(param, &kind.param(from, incremental.format));
                }
                if let (Some(param), Some(end)) = (
                    &incremental.end_param,
                    sync.window_end.as_ref().and_then(|e| kind.read(e)),
                ) {
                    query.append_pair(param, &kind.param(end, incremental.format));
                }
            }
            match (&stream.paginate, page) {
                (Pagination::Cursor { param, .. }, Page::Cursor(cursor)) => {
                    query.append_pair(param, cursor);
                }
                (Pagination::Offset { param }, page) => {
                    let at = match page {
                        Page::Offset(at) => *at,
                        _ => 0,
                    };
                    query.append_pair(param, &at.to_string());
                }
                (Pagination::PageNumber { param, start }, page) => {
                    let at = match page {
                        Page::Number(at) => *at,
                        _ => *start,
                    };
                    query.append_pair(param, &at.to_string());
                }
                _ => {}
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Request::get(url)
    }

    /// The records of `stream`'s first page (of its first partition, or first parent), as
    /// compact JSON objects, for a schema sample.
    async fn first_records(&self, stream: &HttpStreamConfig) -> Result<Vec<String>> {
        let vars = match &stream.parent {
            Some(parent) => {
                let parents = self.parents(stream, parent, Some(1)).await?;
                match parents.into_iter().next() {
                    Some((_, vars)) => vars,
                    None => return Ok(Vec::new()),
                }
            }
            None => stream.partitions.first().cloned().unwrap_or_default(),
        };
        let url = self.url(stream, &vars)?;
        let request = self.request(stream, &vars, url, &Page::First, None);
        let Sent::Reply { reply, .. } = self.client.send(&request).await? else {
            return Ok(Vec::new());
        };
        let Ok(body) = serde_json::from_slice::<&RawValue>(&reply.body) else {
            return Ok(Vec::new());
        };
        let records = select(body, &stream.records).unwrap_or_default();
        Ok(records
            .into_iter()
            .filter(|r| stream.filter.as_ref().is_none_or(|f| f.keeps(r)))
            .map(|r| render(stream, r))
            .collect())
    }

    /// The inferred schema of `stream` (from its first page; kept for the source's life).
    async fn sample(&self, stream: &HttpStreamConfig) -> Result<SchemaRef> {
        if let Some(schema) = self
            .samples
            .lock()
            .ok()
            .and_then(|s| s.get(&stream.name).cloned())
        {
            return Ok(schema);
        }
        let records = self.first_records(stream).await?;
        let schema = infer(&records, self.config.drift().widen());
        if let Ok(mut samples) = self.samples.lock() {
            samples.insert(stream.name.clone(), schema.clone());
        }
        Ok(schema)
    }

    /// The partitions of substream `child`: one per record of its parent (of every
    /// partition of the parent), at most `limit`.
    async fn parents(
        &self,
        child: &HttpStreamConfig,
        parent: &ParentConfig,
        limit: Option<usize>,
    ) -> Result<Vec<(String, BTreeMap<String, String>)>> {
        let stream = self.stream(&parent.stream)?;
        let mut found = Vec::new();
        let mut keys = HashSet::new();
        let partitions = if stream.partitions.is_empty() {
            vec![BTreeMap::new()]
        } else {
            stream.partitions.clone()
        };
        for base in partitions {
            let first = self.url(stream, &base)?;
            let mut page = Page::First;
            let mut read = 0u64;
            loop {
                let request = self.request(stream, &base, first.clone(), &page, None);
                let reply = match self.client.send(&request).await? {
                    Sent::Reply { reply, .. } => reply,
                    Sent::DeadLetter { .. } => break,
                };
                let body: &RawValue = serde_json::from_slice(&reply.body).map_err(|e| {
                    Error::external(
                        self.name.as_str(),
                        format!(
                            "substream `{}`: a page of parent stream `{}` ({}) is not JSON: {e}",
                            child.name,
                            stream.name,
                            self.client.redact(&request.url)
                        ),
                    )
                })?;
                let records = select(body, &stream.records).map_err(|e| {
                    Error::external(
                        self.name.as_str(),
                        format!("parent stream `{}`: {e}", stream.name),
                    )
                })?;
                read += records.len() as u64;
                for record in &records {
                    if stream.filter.as_ref().is_some_and(|f| !f.keeps(record)) {
                        continue;
                    }
                    let mut vars = base.clone();
                    let mut complete = true;
                    for (name, at) in &parent.fields {
                        match pointer_text(record, at) {
                            Some(value) => {
                                vars.insert(format!("parent.{name}"), value);
                            }
                            None => complete = false,
                        }
                    }
                    if !complete {
                        tracing::warn!(stream = %child.name, parent = %stream.name,
                            "a parent record lacks a field the substream needs; its children are not read");
                        continue;
                    }
                    let key = partition_key(&vars);
                    if keys.insert(key.clone()) {
                        found.push((key, vars));
                        if limit.is_some_and(|l| found.len() >= l) {
                            return Ok(found);
                        }
                    }
                }
                let seen = PageSeen {
                    body,
                    headers: &reply.headers,
                    url: &request.url,
                    records: &records,
                    read,
                };
                match next_page(stream, &page, &seen) {
                    Some(next) => page = next,
                    None => break,
                }
            }
        }
        Ok(found)
    }
}

/// A partition's key in the checkpoint: its values, `name=value` joined by `,`.
fn partition_key(vars: &BTreeMap<String, String>) -> String {
    vars.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A record as the decoder takes it: compact, and flattened if the stream says so.
fn render(stream: &HttpStreamConfig, record: &RawValue) -> String {
    let mut out = String::with_capacity(record.get().len());
    match stream.nested {
        Nested::Struct => compact(record.get(), &mut out),
        Nested::Flatten => flatten(record, &stream.flatten_separator, &mut out),
    }
    out
}

/// The content hash a record is recognised by at the checkpoint's cursor.
fn content_hash(record: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(record.as_bytes()))
}

/// One stream's read: its state, decoder and where it is.
struct StreamRead<'a> {
    inner: &'a Inner,
    stream: &'a HttpStreamConfig,
    state: StreamState,
    decoder: Option<PageDecoder>,
    explicit: Option<SchemaRef>,
}

impl<'a> StreamRead<'a> {
    fn start(
        inner: &'a Inner,
        stream: &'a HttpStreamConfig,
        committed: Option<&Value>,
    ) -> Result<Self> {
        let state: StreamState = match committed {
            Some(cursor) => serde_json::from_value(cursor.clone()).map_err(|e| Error::Cursor {
                stream: stream.name.clone(),
                message: format!("not an http source checkpoint: {e}"),
            })?,
            None => StreamState::default(),
        };
        let explicit = inner.explicit_schema(stream)?;
        let mut read = StreamRead {
            inner,
            stream,
            state,
            decoder: None,
            explicit,
        };
        read.decoder = read.restored_decoder()?;
        Ok(read)
    }

    /// The decoder, when the base schema is known without a page: given, or in the
    /// checkpoint, or sampled by `discover`.
    fn restored_decoder(&mut self) -> Result<Option<PageDecoder>> {
        let policy = self.inner.config.drift();
        if let Some(schema) = &self.explicit {
            return Ok(Some(PageDecoder::new(
                policy,
                schema.clone(),
                true,
                self.state.schema.as_ref(),
            )));
        }
        let base = match &self.state.base {
            Some(base) => schema_from_json(base),
            None => {
                let sample = self
                    .inner
                    .samples
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&self.stream.name).cloned());
                let Some(sample) = sample else {
                    return Ok(None);
                };
                self.state.base = Some(schema_to_json(&sample));
                sample
            }
        };
        let base = policy.with_overflow(CONNECTOR, base)?;
        Ok(Some(PageDecoder::new(
            policy,
            base,
            false,
            self.state.schema.as_ref(),
        )))
    }

    /// The decoder, inferring the base schema from `records` when it is not known yet.
    fn decoder(&mut self, records: &[String]) -> Result<&mut PageDecoder> {
        if self.decoder.is_none() {
            let policy = self.inner.config.drift();
            let sample = infer(records, policy.widen());
            self.state.base = Some(schema_to_json(&sample));
            let base = policy.with_overflow(CONNECTOR, sample)?;
            self.decoder = Some(PageDecoder::new(policy, base, false, None));
        }
        self.decoder
            .as_mut()
            .ok_or_else(|| Error::Config("http: no decoder".into()))
    }

    async fn run(&mut self, out: &Out) -> Result<()> {
        let run = if self.state.run == 0 || self.state.done {
            self.state.run + 1
        } else {
            self.state.run
        };
        self.state.run = run;
        self.state.done = false;
        let partitions: Vec<(String, BTreeMap<String, String>)> = match &self.stream.parent {
            Some(parent) => self.inner.parents(self.stream, parent, None).await?,
            None if self.stream.partitions.is_empty() => vec![(String::new(), BTreeMap::new())],
            None => self
                .stream
                .partitions
                .iter()
                .map(|vars| (partition_key(vars), vars.clone()))
                .collect(),
        };
        for (key, vars) in partitions {
            if self
                .state
                .partitions
                .get(&key)
                .is_some_and(|p| p.run == run)
            {
                continue;
            }
            self.sync_partition(&key, &vars, run, out).await?;
        }
        self.state.done = true;
        self.checkpoint(out).await
    }

    async fn checkpoint(&self, out: &Out) -> Result<()> {
        let cursor = serde_json::to_value(&self.state)?;
        out.send(SourceEvent::Checkpoint(Checkpoint::new(
            self.stream.name.clone(),
            cursor,
        )))
        .await
    }

    /// Reads one partition's pages (window by window) from where its state says.
    async fn sync_partition(
        &mut self,
        key: &str,
        vars: &BTreeMap<String, String>,
        run: u64,
        out: &Out,
    ) -> Result<()> {
        let partition = self.state.partitions.get(key).cloned().unwrap_or_default();
        let mut sync = match partition.sync.clone() {
            Some(sync) => sync,
            None => self.new_sync(&partition),
        };
        let first = self.inner.url(self.stream, vars)?;
        // The committed boundary: records at `cursor` already emitted are skipped.
        let kind = self.stream.incremental.as_ref().map(|i| i.kind);
        let boundary: Option<Position> =
            kind.and_then(|k| partition.cursor.as_ref().and_then(|c| k.read(c)));
        let seen_at_boundary: HashSet<&str> = partition.seen.iter().map(String::as_str).collect();
        let inner = self.inner;
        // The response to `sync.page`, when it was fetched while the page before it was
        // decoded.
        let mut ahead: Option<Result<Sent>> = None;
        loop {
            let request =
                self.inner
                    .request(self.stream, vars, first.clone(), &sync.page, Some(&sync));
            let shown = self.inner.client.redact(&request.url);
            let sent = match ahead.take() {
                Some(sent) => sent?,
                None => inner.client.send(&request).await?,
            };
            let next = match sent {
                Sent::Reply { ignored: true, .. } => None,
                Sent::DeadLetter { reply, reason } => {
                    self.dead_page(&shown, &reply.body, reason, out).await?;
                    self.skip_page(&sync.page)
                }
                Sent::Reply { reply, .. } => {
                    match serde_json::from_slice::<&RawValue>(&reply.body)
                        .map_err(|e| format!("the response is not JSON: {e}"))
                        .and_then(|body| Ok((body, select(body, &self.stream.records)?)))
                    {
                        Err(reason) => {
                            self.dead_page(&shown, &reply.body, reason, out).await?;
                            self.skip_page(&sync.page)
                        }
                        Ok((body, records)) => {
                            sync.read += records.len() as u64;
                            let kept =
                                self.select_new(&records, &mut sync, boundary, &seen_at_boundary);
                            let seen = PageSeen {
                                body,
                                headers: &reply.headers,
                                url: &request.url,
                                records: &records,
                                read: sync.read,
                            };
                            let next = next_page(self.stream, &sync.page, &seen);
                            match &next {
                                // The next page is asked for while this one is decoded, so
                                // the network and the decoding overlap.
                                Some(page) => {
                                    let request = inner.request(
                                        self.stream,
                                        vars,
                                        first.clone(),
                                        page,
                                        Some(&sync),
                                    );
                                    let (sent, emitted) = futures::join!(
                                        inner.client.send(&request),
                                        self.emit(&kept, &shown, out)
                                    );
                                    emitted?;
                                    ahead = Some(sent);
                                }
                                None => self.emit(&kept, &shown, out).await?,
                            }
                            next
                        }
                    }
                }
            };
            match next {
                Some(page) => sync.page = page,
                None => match self.next_window(&sync) {
                    Some(window) => sync = window,
                    None => break,
                },
            }
            self.state
                .partitions
                .entry(key.to_string())
                .or_default()
                .sync = Some(sync.clone());
            self.checkpoint(out).await?;
        }
        let partition = self.state.partitions.entry(key.to_string()).or_default();
        if sync.high.is_some() {
            partition.cursor = sync.high;
            partition.seen = sync.high_seen;
        }
        partition.sync = None;
        partition.run = run;
        self.checkpoint(out).await
    }

    /// The page after one that could not be read, when the position is a count; `None`
    /// (the partition's sync ends, keeping its previous cursor) when it comes from the
    /// unreadable page itself.
    fn skip_page(&self, page: &Page) -> Option<Page> {
        match (&self.stream.paginate, page) {
            (Pagination::Offset { .. }, page) => {
                let at = match page {
                    Page::Offset(at) => *at,
                    _ => 0,
                };
                let size = self.stream.page_size.as_ref().map_or(1, |s| s.size);
                Some(Page::Offset(at + size))
            }
            (Pagination::PageNumber { start, .. }, page) => {
                let at = match page {
                    Page::Number(at) => *at,
                    _ => *start,
                };
                Some(Page::Number(at + 1))
            }
            _ => None,
        }
    }

    fn new_sync(&self, partition: &PartitionState) -> SyncState {
        let Some(incremental) = &self.stream.incremental else {
            return SyncState::default();
        };
        let kind = incremental.kind;
        let committed = partition.cursor.as_ref().and_then(|c| kind.read(c));
        let from = match committed {
            Some(cursor) => Some(cursor.saturating_sub(kind.span(incremental.lookback))),
            None => incremental
                .start
                .as_ref()
                .and_then(|s| kind.read(&Value::String(s.clone()))),
        };
        let mut sync = SyncState {
            from: from.map(|f| kind.to_json(f)),
            high: partition.cursor.clone(),
            high_seen: partition.seen.clone(),
            ..SyncState::default()
        };
        if let (Some(window), Some(from), Some(now)) = (incremental.window, from, kind.now()) {
            sync.until = Some(kind.to_json(now));
            let end = from.saturating_add(kind.span(window)).min(now);
            sync.window_end = Some(kind.to_json(end.max(from)));
        }
        sync
    }

    /// The sync of the next window, when the current one was not the last.
    fn next_window(&self, sync: &SyncState) -> Option<SyncState> {
        let incremental = self.stream.incremental.as_ref()?;
        let kind = incremental.kind;
        let window = incremental.window?;
        let end = kind.read(sync.window_end.as_ref()?)?;
        let until = kind.read(sync.until.as_ref()?)?;
        if end >= until {
            return None;
        }
        let next_end = end.saturating_add(kind.span(window)).min(until);
        Some(SyncState {
            page: Page::First,
            from: Some(kind.to_json(end)),
            window_end: Some(kind.to_json(next_end)),
            until: sync.until.clone(),
            high: sync.high.clone(),
            high_seen: sync.high_seen.clone(),
            read: 0,
        })
    }

    /// The page's records to emit, rendered: filtered, inside the sync's range, and not
    /// emitted already at the committed cursor. Advances the sync's high-water mark.
    fn select_new(
        &self,
        records: &[&RawValue],
        sync: &mut SyncState,
        boundary: Option<Position>,
        seen_at_boundary: &HashSet<&str>,
    ) -> Vec<String> {
        let mut kept = Vec::with_capacity(records.len());
        let incremental = self.stream.incremental.as_ref();
        let kind = incremental.map(|i| i.kind);
        let from = kind.and_then(|k| sync.from.as_ref().and_then(|f| k.read(f)));
        let end = kind.and_then(|k| sync.window_end.as_ref().and_then(|e| k.read(e)));
        let mut high = kind.and_then(|k| sync.high.as_ref().and_then(|h| k.read(h)));
        for record in records {
            if self
                .stream
                .filter
                .as_ref()
                .is_some_and(|f| !f.keeps(record))
            {
                continue;
            }
            let text = render(self.stream, record);
            let (Some(incremental), Some(kind)) = (incremental, kind) else {
                kept.push(text);
                continue;
            };
            let position = pointer(record, &incremental.cursor_field)
                .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
                .and_then(|value| kind.read(&value));
            let Some(position) = position else {
                // It cannot be placed against the checkpoint; it is kept, never dropped.
                kept.push(text);
                continue;
            };
            if from.is_some_and(|f| position < f) || end.is_some_and(|e| position >= e) {
                continue;
            }
            let hash = (Some(position) == boundary || high.is_none_or(|h| position >= h))
                .then(|| content_hash(&text));
            if Some(position) == boundary
                && hash
                    .as_deref()
                    .is_some_and(|h| seen_at_boundary.contains(h))
            {
                continue;
            }
            match high {
                Some(h) if position < h => {}
                Some(h) if position == h => {
                    if let Some(hash) = hash
                        && !sync.high_seen.contains(&hash)
                    {
                        sync.high_seen.push(hash);
                    }
                }
                _ => {
                    high = Some(position);
                    sync.high = Some(kind.to_json(position));
                    sync.high_seen = hash.into_iter().collect();
                }
            }
            kept.push(text);
        }
        kept
    }

    /// Decodes and emits a page's records.
    async fn emit(&mut self, records: &[String], url: &str, out: &Out) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let stream = self.stream.name.clone();
        let source = self.inner.name.clone();
        let decoded = self.decoder(records)?.decode(records)?;
        for item in decoded {
            match item {
                Decoded::Batch(data) if data.num_rows() > 0 => {
                    out.send(SourceEvent::Batch(Batch::new(
                        stream.as_str(),
                        data,
                        source.as_str(),
                    )))
                    .await?;
                }
                Decoded::Batch(_) => {}
                Decoded::DeadLetter { index, reason } => {
                    let payload = records.get(index).cloned().unwrap_or_default();
                    let letter = DeadLetter::new(stream.as_str(), "source", reason, payload)
                        .at(format!("{url} record {index}"));
                    out.send(SourceEvent::DeadLetter(letter)).await?;
                }
                Decoded::Drift(note) => {
                    out.send(SourceEvent::Drift(SchemaDrift {
                        stream: stream.clone(),
                        path: note.path,
                        kind: note.kind,
                        action: note.action,
                        detail: note.detail,
                        position: Some(url.to_string()),
                    }))
                    .await?;
                }
                Decoded::Schema { schema, state } => {
                    self.state.schema = Some(state);
                    out.send(SourceEvent::SchemaChange {
                        stream: Arc::from(stream.as_str()),
                        schema,
                    })
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// A page that could not be read becomes a dead letter naming its URL.
    async fn dead_page(&self, url: &str, body: &[u8], reason: String, out: &Out) -> Result<()> {
        let end = body.len().min(DEAD_PAGE_BYTES);
        let payload = String::from_utf8_lossy(&body[..end]).into_owned();
        tracing::warn!(stream = %self.stream.name, url, reason = %reason, body = %truncate(body),
            "a page could not be read; it goes to the dead letters");
        let letter = DeadLetter::new(self.stream.name.as_str(), "source", reason, payload).at(url);
        out.send(SourceEvent::DeadLetter(letter)).await
    }
}
