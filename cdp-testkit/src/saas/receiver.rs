//! A webhook receiver that checks every request's signature and timestamp (the scheme of
//! `cdp_connectors::destinations::webhook`, recomputed here independently), counts
//! deliveries per idempotency key and keeps the first of each.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;

/// One request the receiver took, as it arrived.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The request's headers, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The raw body.
    pub body: Vec<u8>,
}

/// What the receiver saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Requests received.
    pub requests: u64,
    /// Requests refused for a bad or missing signature (401).
    pub bad_signatures: u64,
    /// Requests refused for a timestamp outside the tolerance (401).
    pub stale: u64,
    /// Requests answered 503 while down, or 500 as a fault.
    pub failed: u64,
    /// Records received, duplicates included.
    pub records: u64,
}

#[derive(Debug)]
struct Inbox {
    secret: Vec<u8>,
    tolerance: Duration,
    down: bool,
    /// Goes down after this many requests taken.
    down_after: Option<u64>,
    fail_every: u64,
    refuse_containing: Option<String>,
    stats: ReceiverStats,
    /// Deliveries per idempotency key (the envelope's `id`).
    counts: BTreeMap<String, u64>,
    /// The first envelope of each key.
    first: BTreeMap<String, Value>,
    requests: Vec<Delivery>,
}

/// A running webhook receiver at `POST /hooks`; stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    inbox: Arc<Mutex<Inbox>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts a receiver on the current runtime checking signatures made with `secret`,
    /// accepting timestamps within `tolerance` of now.
    pub async fn start(secret: &str, tolerance: Duration) -> Receiver {
        let inbox = Arc::new(Mutex::new(Inbox {
            secret: secret.as_bytes().to_vec(),
            tolerance,
            down: false,
            down_after: None,
            fail_every: 0,
            refuse_containing: None,
            stats: ReceiverStats::default(),
            counts: BTreeMap::new(),
            first: BTreeMap::new(),
            requests: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on 127.0.0.1");
        let addr = listener.local_addr().expect("a bound address");
        let app = Router::new()
            .route("/hooks", post(receive))
            .with_state(inbox.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, inbox, task }
    }

    /// `http://127.0.0.1:<port>/hooks`.
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        let mut inbox = self.inbox.lock();
        inbox.down = down;
        if !down {
            inbox.down_after = None;
        }
    }

    /// Goes down (503 to everything) once it has taken `requests` more requests.
    pub fn down_after(&self, requests: u64) {
        let mut inbox = self.inbox.lock();
        inbox.down_after = Some(inbox.requests.len() as u64 + requests);
    }

    /// Every n-th request is answered 500 (`0`: never).
    pub fn fail_every(&self, every: u64) {
        self.inbox.lock().fail_every = every;
    }

    /// Records whose data's `name` contains `text` are refused, listed in the answer's
    /// `rejected`.
    pub fn refuse_names_containing(&self, text: &str) {
        self.inbox.lock().refuse_containing = Some(text.to_string());
    }

    /// Deliveries per idempotency key.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.inbox.lock().counts.clone()
    }

    /// The first envelope taken for each key: what a receiver that dedupes keeps.
    pub fn deduped(&self) -> Vec<Value> {
        self.inbox.lock().first.values().cloned().collect()
    }

    /// Every request taken with a valid signature, in order.
    pub fn requests(&self) -> Vec<Delivery> {
        self.inbox.lock().requests.clone()
    }

    /// What the receiver saw.
    pub fn stats(&self) -> ReceiverStats {
        self.inbox.lock().stats.clone()
    }
}

/// The receiver's check of a signature header: `t=<unix>,v1=<hex hmac>`.
fn check(inbox: &Inbox, signature: &str, body: &[u8]) -> Result<(), (&'static str, bool)> {
    let mut timestamp = None;
    let mut given = Vec::new();
    for part in signature.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => given.push(v.to_string()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return Err(("malformed signature", false));
    };
    let now = chrono::Utc::now().timestamp();
    if (now - timestamp).unsigned_abs() > inbox.tolerance.as_secs() {
        return Err(("timestamp outside the tolerance (a replay?)", true));
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&inbox.secret) else {
        return Err(("no key", false));
    };
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if given.contains(&expected) {
        Ok(())
    } else {
        Err(("signature does not match", false))
    }
}

async fn receive(
    State(inbox): State<Arc<Mutex<Inbox>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inbox = inbox.lock();
    inbox.stats.requests += 1;
    let signature = headers
        .get("cdp-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Err((why, stale)) = check(&inbox, &signature, &body) {
        if stale {
            inbox.stats.stale += 1;
        } else {
            inbox.stats.bad_signatures += 1;
        }
        return (StatusCode::UNAUTHORIZED, json!({"error": why}).to_string()).into_response();
    }
    let n = inbox.stats.requests;
    if inbox
        .down_after
        .is_some_and(|after| inbox.requests.len() as u64 >= after)
    {
        inbox.down = true;
    }
    if inbox.down || (inbox.fail_every > 0 && n % inbox.fail_every == 0) {
        inbox.stats.failed += 1;
        let status = if inbox.down {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        return (status, "{\"error\":\"unavailable\"}").into_response();
    }
    let is_ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("ndjson"));
    let envelopes: Vec<Value> = if is_ndjson {
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(items)) => items,
            Ok(one) => vec![one],
            Err(_) => {
                return (StatusCode::BAD_REQUEST, "{\"error\":\"not JSON\"}").into_response();
            }
        }
    };
    inbox.requests.push(Delivery {
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    let mut rejected = Vec::new();
    for envelope in envelopes {
        inbox.stats.records += 1;
        let id = envelope["id"].as_str().unwrap_or_default().to_string();
        let refuse = inbox.refuse_containing.as_ref().is_some_and(|text| {
            envelope["data"]["name"]
                .as_str()
                .is_some_and(|name| name.contains(text.as_str()))
        });
        if refuse {
            rejected.push(json!({"id": id, "reason": "name refused by the receiver"}));
            continue;
        }
        *inbox.counts.entry(id.clone()).or_default() += 1;
        inbox.first.entry(id).or_insert(envelope);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"rejected": rejected}).to_string(),
    )
        .into_response()
}
