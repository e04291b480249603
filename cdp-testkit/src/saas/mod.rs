//! A fake SaaS API and a webhook receiver, on axum, for the HTTP connectors' tests,
//! examples and benches (feature `saas`). Both listen on `127.0.0.1` at a free port.
//!
//! [`FakeSaas`] serves one dataset of customers, sorted by `(updated, id)` with runs of
//! records sharing one `updated` value (so equal cursors straddle page boundaries), in
//! every paging style the HTTP source supports:
//!
//! | endpoint | shape | paging | auth |
//! |---|---|---|---|
//! | `GET /v1/customers` | Stripe: `{"data": [...], "has_more": b}`, by `created` | `starting_after` (last id), `limit`; `created[gte]` | bearer API key |
//! | `GET /v1/customers/{id}/invoices` | Stripe | `starting_after`, `limit`; `updated_since` | bearer API key |
//! | `GET /crm/v3/objects/contacts` | HubSpot: `{"results": [...], "paging": {"next": {"after": …}}}` | `after`, `limit`; `updated_since` | OAuth access token |
//! | `GET /items/next` | `{"items": [...], "next": "/items/next?…"}` | next URL in the body | bearer API key |
//! | `GET /items/link` | a bare list, `Link: <…>; rel="next"` | `page`, `per_page` | bearer API key |
//! | `GET /items/offset` | `{"items": [...], "total": n}` | `offset`, `limit` | bearer API key |
//! | `GET /items/pages` | `{"items": [...], "total": n}`; not JSON for page `broken_page` | `page` (from 1), `per_page` | bearer API key |
//! | `GET /accounts/{account}/events` | `{"items": [...]}` per account (`eu`, `us`) | `offset`, `limit` | bearer API key |
//! | `POST /oauth/token` | OAuth2 token endpoint: `refresh_token` (rotated at every use, the old one revoked) and `client_credentials` grants | | client secret |
//!
//! Every list endpoint takes `updated_since` (inclusive) and `updated_before` (exclusive)
//! as RFC 3339. Faults ([`Faults`]) strike every n-th API request: a 429 with
//! `Retry-After`, a 500, or a response whose body is cut off by a dropped connection;
//! access tokens expire after a lifetime and are revoked after a number of uses, so a
//! client meets 401s.
//!
//! [`Receiver`] takes webhook deliveries at `POST /hooks`, checks their signature and
//! timestamp, and counts deliveries per idempotency key.

mod receiver;

pub use receiver::{Delivery, Receiver, ReceiverStats};

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeZone, Utc};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// The API key the endpoints other than the OAuth ones take as a bearer token.
pub const API_KEY: &str = "sk_test_fake_key";
/// The OAuth client id and secret the token endpoint takes.
pub const CLIENT_ID: &str = "cdp-test-client";
/// See [`CLIENT_ID`].
pub const CLIENT_SECRET: &str = "cdp-test-secret";
/// The refresh token the server starts with.
pub const FIRST_REFRESH_TOKEN: &str = "refresh-0";

/// The `updated` value of the first customer.
const EPOCH: i64 = 1_714_557_600; // 2024-05-01T10:00:00Z

/// Faults the server injects into API requests (not into token requests); `0` turns one
/// off. When several would strike the same request, the first listed wins.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every n-th request is answered 429 with `Retry-After: retry_after_secs`.
    pub rate_limit_every: u64,
    /// The `Retry-After` of those 429s, in seconds.
    pub retry_after_secs: u64,
    /// Every n-th request is answered 500.
    pub error_every: u64,
    /// Every n-th request has its response body cut off by a dropped connection.
    pub drop_every: u64,
}

/// How the server starts.
#[derive(Debug, Clone)]
pub struct SaasConfig {
    /// Customers in the dataset.
    pub customers: usize,
    /// Consecutive customers that share one `updated` value.
    pub same_updated: usize,
    /// Invoices per customer (customer `i` has `i % (invoices + 1)` of them).
    pub invoices: usize,
    /// Faults injected.
    pub faults: Faults,
    /// The lifetime the token endpoint gives access tokens (`expires_in`).
    pub token_lifetime: Duration,
    /// Uses after which an access token is revoked (401) before its lifetime ends; `0`:
    /// never.
    pub token_uses: u64,
}

impl Default for SaasConfig {
    fn default() -> Self {
        SaasConfig {
            customers: 100,
            same_updated: 3,
            invoices: 3,
            faults: Faults::default(),
            token_lifetime: Duration::from_secs(3600),
            token_uses: 0,
        }
    }
}

/// What the server saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaasStats {
    /// API requests, faults included.
    pub requests: u64,
    /// 429s sent.
    pub rate_limited: u64,
    /// 500s sent.
    pub errors: u64,
    /// Responses cut off.
    pub dropped: u64,
    /// 401s sent.
    pub unauthorized: u64,
    /// Access tokens granted.
    pub tokens_granted: u64,
    /// Refresh tokens refused (revoked or unknown).
    pub refresh_refused: u64,
}

#[derive(Debug)]
struct Token {
    expires: Instant,
    uses: u64,
}

#[derive(Debug)]
struct Data {
    config: SaasConfig,
    /// Customers sorted by `(updated, id)`.
    customers: Vec<Value>,
    /// `(updated, id)` of each customer, in the same order: what ranges and cursors
    /// compare, without looking into the JSON.
    keys: Vec<(String, String)>,
    next_id: usize,
    /// The refresh token currently valid.
    refresh_token: String,
    rotations: u64,
    access_tokens: HashMap<String, Token>,
    stats: SaasStats,
}

#[derive(Debug, Clone)]
struct Shared {
    data: Arc<Mutex<Data>>,
    counter: Arc<AtomicU64>,
}

/// A running fake SaaS API; see the [module docs](self). Stops when dropped (the task it
/// runs on is aborted).
#[derive(Debug)]
pub struct FakeSaas {
    addr: SocketAddr,
    shared: Shared,
    task: Option<tokio::task::JoinHandle<()>>,
    thread: Option<(
        std::thread::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    )>,
}

/// The RFC 3339 text of Unix seconds.
pub fn rfc3339(seconds: i64) -> String {
    Utc.timestamp_opt(seconds, 0)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn customer(i: usize, updated: i64) -> Value {
    let city = ["Oslo", "Lyon", "Porto"][i % 3];
    json!({
        "id": format!("cus_{i:05}"),
        "object": "customer",
        "created": 1_700_000_000 + i as i64,
        "updated": rfc3339(updated),
        "email": format!("user{i}@example.com"),
        "name": format!("Customer {i}"),
        "balance": (i as i64 * 37) % 1000 - 200,
        "address": {"city": city, "zip": format!("{:05}", i * 7)},
        "account": if i.is_multiple_of(2) { "eu" } else { "us" },
    })
}

impl Data {
    fn new(config: SaasConfig) -> Data {
        let run = config.same_updated.max(1);
        let customers = (0..config.customers)
            .map(|i| customer(i, EPOCH + (i / run) as i64 * 60))
            .collect();
        let mut data = Data {
            next_id: config.customers,
            config,
            customers,
            keys: Vec::new(),
            refresh_token: FIRST_REFRESH_TOKEN.into(),
            rotations: 0,
            access_tokens: HashMap::new(),
            stats: SaasStats::default(),
        };
        data.sort();
        data
    }

    fn sort(&mut self) {
        self.customers.sort_by(|a, b| {
            (a["updated"].as_str(), a["id"].as_str())
                .cmp(&(b["updated"].as_str(), b["id"].as_str()))
        });
        self.keys = self
            .customers
            .iter()
            .map(|c| {
                let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                (text("updated"), text("id"))
            })
            .collect();
    }
}

impl FakeSaas {
    /// Starts the server on the current tokio runtime.
    pub async fn start(config: SaasConfig) -> FakeSaas {
        let shared = Shared {
            data: Arc::new(Mutex::new(Data::new(config))),
            counter: Arc::new(AtomicU64::new(0)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on 127.0.0.1");
        let addr = listener.local_addr().expect("a bound address");
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSaas {
            addr,
            shared,
            task: Some(task),
            thread: None,
        }
    }

    /// Starts the server on a runtime of its own in a thread, for tests that are not async
    /// (a child process talks to it).
    pub fn start_in_thread(config: SaasConfig) -> FakeSaas {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let mut server = FakeSaas::start(config).await;
                let _ = ready_tx.send((server.addr, server.shared.clone()));
                let _ = stop_rx.await;
                if let Some(task) = server.task.take() {
                    task.abort();
                }
            });
        });
        let (addr, shared) = ready_rx.recv().expect("the server thread starts");
        FakeSaas {
            addr,
            shared,
            task: None,
            thread: Some((thread, stop_tx)),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every customer, sorted by `(updated, id)`.
    pub fn customers(&self) -> Vec<Value> {
        self.shared.data.lock().customers.clone()
    }

    /// Every invoice of every customer, by customer then invoice id.
    pub fn invoices(&self) -> Vec<Value> {
        let data = self.shared.data.lock();
        let mut out = Vec::new();
        let mut customers = data.customers.clone();
        customers.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        for c in &customers {
            out.extend(invoices_of(c, data.config.invoices));
        }
        out
    }

    /// Adds a customer whose `updated` is `updated` (Unix seconds); returns it.
    pub fn add_customer(&self, updated: i64) -> Value {
        let mut data = self.shared.data.lock();
        let i = data.next_id;
        data.next_id += 1;
        let record = customer(i, updated);
        data.customers.push(record.clone());
        data.sort();
        record
    }

    /// Adds a customer whose `updated` is `updated` (Unix seconds) with `fields` merged
    /// in (new keys, or other types for existing ones); returns it.
    pub fn add_customer_with(&self, updated: i64, fields: Value) -> Value {
        let mut data = self.shared.data.lock();
        let i = data.next_id;
        data.next_id += 1;
        let mut record = customer(i, updated);
        if let (Some(record), Value::Object(fields)) = (record.as_object_mut(), fields) {
            record.extend(fields);
        }
        data.customers.push(record.clone());
        data.sort();
        record
    }

    /// Sets customer `id`'s `updated` (Unix seconds) and a changed `name`.
    pub fn touch(&self, id: &str, updated: i64) {
        let mut data = self.shared.data.lock();
        if let Some(c) = data.customers.iter_mut().find(|c| c["id"] == id) {
            c["updated"] = json!(rfc3339(updated));
            c["name"] = json!(format!("{} (edited)", c["name"].as_str().unwrap_or("")));
        }
        data.sort();
    }

    /// The highest `updated` of the dataset, as Unix seconds.
    pub fn last_updated(&self) -> i64 {
        let data = self.shared.data.lock();
        data.customers
            .last()
            .and_then(|c| c["updated"].as_str())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp())
            .unwrap_or(EPOCH)
    }

    /// What the server saw so far.
    pub fn stats(&self) -> SaasStats {
        self.shared.data.lock().stats.clone()
    }

    /// The refresh token the server currently honours, and how often it rotated.
    pub fn refresh_token(&self) -> (String, u64) {
        let data = self.shared.data.lock();
        (data.refresh_token.clone(), data.rotations)
    }

    /// Replaces the faults injected from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.data.lock().config.faults = faults;
    }
}

impl Drop for FakeSaas {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some((thread, stop)) = self.thread.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

fn invoices_of(customer: &Value, per: usize) -> Vec<Value> {
    let id = customer["id"].as_str().unwrap_or_default();
    let i: usize = id.trim_start_matches("cus_").parse().unwrap_or(0);
    (0..i % (per + 1))
        .map(|k| {
            json!({
                "id": format!("in_{i:05}_{k}"),
                "customer": id,
                "updated": rfc3339(EPOCH + (i as i64) * 10 + k as i64),
                "amount": {"value": (i * 100 + k * 7) as i64, "currency": "eur"},
                "paid": k % 2 == 0,
            })
        })
        .collect()
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/customers", get(stripe_customers))
        .route("/v1/customers/{id}/invoices", get(stripe_invoices))
        .route("/crm/v3/objects/contacts", get(hubspot_contacts))
        .route("/items/next", get(next_url))
        .route("/items/link", get(link_header))
        .route("/items/offset", get(offset))
        .route("/items/pages", get(page_number))
        .route("/accounts/{account}/events", get(account_events))
        .route("/oauth/token", post(token))
        .with_state(shared)
}

type Params = Query<BTreeMap<String, String>>;

/// The faults and authentication every API request goes through; `Err` is the answer.
// The refusal is the response itself, as axum handlers return it.
#[allow(clippy::result_large_err)]
fn admit(shared: &Shared, headers: &HeaderMap, oauth: bool) -> Result<(), Box<Response>> {
    let n = shared.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let mut data = shared.data.lock();
    data.stats.requests += 1;
    let faults = data.config.faults.clone();
    if faults.rate_limit_every > 0 && n.is_multiple_of(faults.rate_limit_every) {
        data.stats.rate_limited += 1;
        let mut response = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(faults.retry_after_secs),
        );
        return Err(Box::new(response));
    }
    if faults.error_every > 0 && n.is_multiple_of(faults.error_every) {
        data.stats.errors += 1;
        return Err(Box::new(
            (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"boom\"}").into_response(),
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let authorized = if oauth {
        let uses_limit = data.config.token_uses;
        match data.access_tokens.get_mut(&given) {
            Some(token)
                if token.expires > Instant::now()
                    && (uses_limit == 0 || token.uses < uses_limit) =>
            {
                token.uses += 1;
                true
            }
            _ => false,
        }
    } else {
        given == API_KEY
    };
    if !authorized {
        data.stats.unauthorized += 1;
        return Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                "{\"error\":\"invalid or expired token\"}",
            )
                .into_response(),
        ));
    }
    Ok(())
}

/// Whether this request's body is cut off (counted when it is).
fn dropping(shared: &Shared) -> bool {
    let n = shared.counter.load(Ordering::SeqCst);
    let mut data = shared.data.lock();
    let every = data.config.faults.drop_every;
    let drop = every > 0
        && n % every == every / 2
        && !(data.config.faults.error_every > 0
            && n.is_multiple_of(data.config.faults.error_every));
    if drop {
        data.stats.dropped += 1;
    }
    drop
}

/// A JSON response, or half of it followed by a dropped connection.
fn answer(shared: &Shared, body: Value, headers: Vec<(header::HeaderName, String)>) -> Response {
    let text = body.to_string();
    let mut response = if dropping(shared) {
        let half = Bytes::from(text.as_bytes()[..text.len() / 2].to_vec());
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(half),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "dropped",
            )),
        ];
        Response::new(Body::from_stream(futures::stream::iter(chunks)))
    } else {
        Response::new(Body::from(text))
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn number(params: &BTreeMap<String, String>, name: &str, default: usize) -> usize {
    params
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Customers in `(updated, id)` order within `updated_since` / `updated_before`: a run of
/// the sorted list.
fn in_range<'a>(data: &'a Data, params: &BTreeMap<String, String>) -> Vec<&'a Value> {
    let range = range_of(data, params);
    data.customers[range].iter().collect()
}

/// Where the customers within `updated_since` / `updated_before` are.
fn range_of(data: &Data, params: &BTreeMap<String, String>) -> std::ops::Range<usize> {
    let since = params.get("updated_since").map(|s| normalise(s));
    let before = params.get("updated_before").map(|b| normalise(b));
    let lo = since.map_or(0, |s| data.keys.partition_point(|(u, _)| *u < s));
    let hi = before.map_or(data.keys.len(), |b| {
        data.keys.partition_point(|(u, _)| *u < b)
    });
    lo..hi.max(lo)
}

/// The customers in range after the one with id `after`, at most `limit`, and whether
/// more follow.
fn after_in_range(
    data: &Data,
    params: &BTreeMap<String, String>,
    after: Option<&String>,
    limit: usize,
) -> (Vec<Value>, bool) {
    let range = range_of(data, params);
    let start = match after {
        Some(id) => match data.keys.iter().position(|(_, k)| k == id) {
            Some(at) => (at + 1).max(range.start),
            None => range.end,
        },
        None => range.start,
    };
    let end = (start + limit).min(range.end);
    let page = data.customers[start.min(end)..end].to_vec();
    (page, end < range.end)
}

/// `take` customers from `skip` on of those in range that `keep` keeps, and how many
/// those are; the lock is released before the answer is written.
fn slice(
    shared: &Shared,
    params: &BTreeMap<String, String>,
    keep: impl Fn(&Value) -> bool,
    skip: usize,
    take: usize,
) -> (Vec<Value>, usize) {
    let data = shared.data.lock();
    let records: Vec<&Value> = in_range(&data, params)
        .into_iter()
        .filter(|c| keep(c))
        .collect();
    let page = records
        .iter()
        .skip(skip)
        .take(take)
        .map(|r| (*r).clone())
        .collect();
    (page, records.len())
}

/// RFC 3339 text in the dataset's spelling, so it compares as text.
fn normalise(text: &str) -> String {
    DateTime::parse_from_rfc3339(text)
        .map(|t| rfc3339(t.timestamp()))
        .unwrap_or_else(|_| text.to_string())
}

/// The records after `after` (an id), at most `limit`, and whether more follow.
fn after_id(records: &[&Value], after: Option<&String>, limit: usize) -> (Vec<Value>, bool) {
    let start = match after {
        Some(id) => records
            .iter()
            .position(|r| r["id"] == **id)
            .map_or(records.len(), |i| i + 1),
        None => 0,
    };
    let rest = &records[start.min(records.len())..];
    let page: Vec<Value> = rest.iter().take(limit).map(|r| (*r).clone()).collect();
    let more = rest.len() > page.len();
    (page, more)
}

async fn stripe_customers(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(response) = admit(&shared, &headers, false) {
        return *response;
    }
    let records = {
        let data = shared.data.lock();
        let gte: Option<i64> = params.get("created[gte]").and_then(|v| v.parse().ok());
        let mut records: Vec<Value> = data
            .customers
            .iter()
            .filter(|c| gte.is_none_or(|g| c["created"].as_i64().unwrap_or(0) >= g))
            .cloned()
            .collect();
        records.sort_by_key(|c| c["created"].as_i64());
        records
    };
    let records: Vec<&Value> = records.iter().collect();
    let (page, more) = after_id(
        &records,
        params.get("starting_after"),
        number(&params, "limit", 10),
    );
    answer(
        &shared,
        json!({"object": "list", "url": "/v1/customers", "data": page, "has_more": more}),
        vec![],
    )
}

async fn stripe_invoices(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(response) = admit(&shared, &headers, false) {
        return *response;
    }
    let records = {
        let data = shared.data.lock();
        let Some(customer) = data.customers.iter().find(|c| c["id"] == id.as_str()) else {
            return (StatusCode::NOT_FOUND, "{\"error\":\"no such customer\"}").into_response();
        };
        let since = params.get("updated_since").map(|s| normalise(s));
        invoices_of(customer, data.config.invoices)
            .into_iter()
            .filter(|i| {
                since
                    .as_deref()
                    .is_none_or(|s| s <= i["updated"].as_str().unwrap_or_default())
            })
            .collect::<Vec<_>>()
    };
    let records: Vec<&Value> = records.iter().collect();
    let (page, more) = after_id(
        &records,
        params.get("starting_after"),
        number(&params, "limit", 10),
    );
    answer(
        &shared,
        json!({"object": "list", "data": page, "has_more": more}),
        vec![],
    )
}

async fn hubspot_contacts(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(response) = admit(&shared, &headers, true) {
        return *response;
    }
    let (page, more) = {
        let data = shared.data.lock();
        after_in_range(
            &data,
            &params,
            params.get("after"),
            number(&params, "limit", 10),
        )
    };
    let results: Vec<Value> = page
        .iter()
        .map(|c| {
            json!({
                "id": c["id"],
                "properties": {"email": c["email"], "firstname": c["name"], "city": c["address"]["city"]},
                "updatedAt": c["updated"],
                "archived": false,
            })
        })
        .collect();
    let mut body = json!({"results": results});
    if more && let Some(last) = page.last() {
        body["paging"] = json!({"next": {"after": last["id"]}});
    }
    answer(&shared, body, vec![])
}

fn query_of(params: &BTreeMap<String, String>, replace: (&str, String)) -> String {
    let mut params = params.clone();
    params.insert(replace.0.to_string(), replace.1);
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn next_url(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(response) = admit(&shared, &headers, false) {
        return *response;
    }
    let (page, more) = {
        let data = shared.data.lock();
        after_in_range(
            &data,
            &params,
            params.get("cursor"),
            number(&params, "limit", 10),
        )
    };
    let next = match (more, page.last()) {
        (true, Some(last)) => json!(format!(
            "/items/next?{}",
            query_of(
                &params,
                (
                    "cursor",
                    last["id"].as_str().unwrap_or_default().to_string()
                )
            )
        )),
        _ => Value::Null,
    };
    answer(&shared, json!({"items": page, "next": next}), vec![])
}

async fn link_header(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(response) = admit(&shared, &headers, false) {
        return *response;
    }
    let page_no = number(&params, "page", 1).max(1);
    let per = number(&params, "per_page", 10).max(1);
    let (page, total) = {
        let data = shared.data.lock();
        let records = in_range(&data, &params);
        let page: Vec<Value> = records
            .iter()
            .skip((page_no - 1) * per)
            .take(per)
            .map(|r| (*r).clone())
            .collect();
        (page, records.len())
    };
    let mut links = Vec::new();
    if page_no * per < total {
        links.push((
            header::LINK,
            format!(
                "</items/link?{}>; rel=\"next\"",
                query_of(&params, ("page", (page_no + 1).to_string()))
            ),
        ));
    }
    answer(&shared, Value::Array(page), links)
}

async fn offset(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(response) = admit(&shared, &headers, false) {
        return *response;
    }
    let at = number(&params, "offset", 0);
    let limit = number(&params, "limit", 10);
    let (page, total) = slice(&shared, &params, |_| true, at, limit);
    answer(&shared, json!({"items": page, "total": total}), vec![])
}

async fn page_number(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(response) = admit(&shared, &headers, false) {
        return *response;
    }
    let page_no = number(&params, "page", 1).max(1);
    if params
        .get("broken_page")
        .and_then(|b| b.parse::<usize>().ok())
        == Some(page_no)
    {
        // A gateway's error page, served with a success status.
        return (
            StatusCode::OK,
            "<html><body>upstream timed out</body></html>",
        )
            .into_response();
    }
    let per = number(&params, "per_page", 10).max(1);
    let (page, total) = slice(&shared, &params, |_| true, (page_no - 1) * per, per);
    answer(&shared, json!({"items": page, "total": total}), vec![])
}

async fn account_events(
    State(shared): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    if let Err(response) = admit(&shared, &headers, false) {
        return *response;
    }
    let at = number(&params, "offset", 0);
    let limit = number(&params, "limit", 10);
    let (page, _) = slice(
        &shared,
        &params,
        |c| c["account"] == account.as_str(),
        at,
        limit,
    );
    answer(&shared, json!({"items": page}), vec![])
}

async fn token(
    State(shared): State<Shared>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let mut data = shared.data.lock();
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"invalid_client\"}").into_response();
    }
    let rotated = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => None,
        Some("refresh_token") => {
            if form.get("refresh_token") != Some(&data.refresh_token) {
                data.stats.refresh_refused += 1;
                return (StatusCode::BAD_REQUEST, "{\"error\":\"invalid_grant\"}").into_response();
            }
            data.rotations += 1;
            let next = format!("refresh-{}", data.rotations);
            data.refresh_token = next.clone();
            Some(next)
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "{\"error\":\"unsupported_grant_type\"}",
            )
                .into_response();
        }
    };
    data.stats.tokens_granted += 1;
    let access = format!("access-{}-{}", data.stats.tokens_granted, data.rotations);
    let lifetime = data.config.token_lifetime;
    data.access_tokens.insert(
        access.clone(),
        Token {
            expires: Instant::now() + lifetime,
            uses: 0,
        },
    );
    let mut body =
        json!({"access_token": access, "token_type": "bearer", "expires_in": lifetime.as_secs()});
    if let Some(next) = rotated {
        body["refresh_token"] = json!(next);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
