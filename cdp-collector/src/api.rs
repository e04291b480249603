//! The tracking API: Segment's endpoints as an axum [`Router`].

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use chrono::Utc;
use serde_json::{Map, Value};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::error::Rejection;
use crate::event::{CallType, Limits, prepare};
#[cfg(doc)]
use crate::log::EventLog;
use crate::log::{Appended, DurableLog};

/// What the API needs: the write keys it accepts, the limits, and the log it appends to.
#[derive(Clone)]
pub struct Collector {
    inner: Arc<Inner>,
}

struct Inner {
    write_keys: Vec<String>,
    limits: Limits,
    log: Arc<dyn DurableLog>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Write keys are credentials: never printed.
        f.debug_struct("Collector")
            .field("write_keys", &self.inner.write_keys.len())
            .field("limits", &self.inner.limits)
            .field("log", &self.inner.log.describe())
            .finish()
    }
}

impl Collector {
    /// A collector accepting `write_keys`, appending to `log` (the [`EventLog`] on disk,
    /// or JetStream), with Segment's limits.
    pub fn new(write_keys: Vec<String>, log: impl DurableLog + 'static) -> Self {
        Collector::with_limits(write_keys, log, Limits::default())
    }

    /// The same with other limits.
    pub fn with_limits(
        write_keys: Vec<String>,
        log: impl DurableLog + 'static,
        limits: Limits,
    ) -> Self {
        Collector {
            inner: Arc::new(Inner {
                write_keys,
                limits,
                log: Arc::new(log),
            }),
        }
    }

    /// The router: `POST /v1/{track,identify,page,screen,group,alias,batch}` and the
    /// browser library's short forms (`/v1/t`, `/v1/i`, `/v1/p`, `/v1/s`, `/v1/g`,
    /// `/v1/a`, `/v1/b`), with CORS for browsers. Mount it in your own server or serve it
    /// with [`axum::serve`].
    pub fn router(&self) -> Router {
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::mirror_request())
            .allow_methods(AllowMethods::mirror_request())
            .allow_headers(AllowHeaders::mirror_request())
            .allow_credentials(true)
            .max_age(std::time::Duration::from_secs(3600));
        Router::new()
            .route("/v1/{call}", post(ingest))
            .layer(cors)
            .with_state(self.clone())
    }

    /// Handles one request body sent to `/v1/{endpoint}`; what the router does, callable
    /// without HTTP.
    pub async fn handle(
        &self,
        endpoint: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Appended, Rejection> {
        let batch = matches!(endpoint, "batch" | "b" | "import");
        let call = if batch {
            None
        } else {
            Some(
                CallType::parse(endpoint)
                    .ok_or_else(|| Rejection::NotFound(format!("/v1/{endpoint}")))?,
            )
        };
        let limits = self.inner.limits;
        let limit = if batch {
            limits.max_batch_bytes
        } else {
            limits.max_event_bytes
        };
        let body = decompress(headers, body, limit)?;
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| Rejection::MalformedJson(e.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(Rejection::MalformedJson(
                "the body must be a JSON object".into(),
            ));
        };
        self.authorize(headers, &object)?;
        let received_at = Utc::now();
        let events = if batch {
            let Some(Value::Array(items)) = object.remove("batch") else {
                return Err(Rejection::Invalid {
                    index: None,
                    message: "a batch request needs a `batch` array".into(),
                });
            };
            if items.len() > limits.max_batch_events {
                return Err(Rejection::TooManyEvents {
                    count: items.len(),
                    limit: limits.max_batch_events,
                });
            }
            let sent_at = object.get("sentAt").cloned();
            let mut defaults = Map::new();
            for key in ["context", "integrations"] {
                if let Some(v) = object.get(key) {
                    defaults.insert(key.to_string(), v.clone());
                }
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(item) => prepare(
                        item,
                        None,
                        received_at,
                        sent_at.as_ref(),
                        &defaults,
                        &limits,
                        Some(i),
                    ),
                    _ => Err(Rejection::Invalid {
                        index: Some(i),
                        message: "a batch item must be a JSON object".into(),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![prepare(
                object,
                call,
                received_at,
                None,
                &Map::new(),
                &limits,
                None,
            )?]
        };
        self.inner.log.append(events).await
    }

    /// The write key from HTTP basic auth (the key as user) or the body's `writeKey`.
    fn authorize(&self, headers: &HeaderMap, body: &Map<String, Value>) -> Result<(), Rejection> {
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            })
            .and_then(|raw| String::from_utf8(raw).ok())
            .map(|user_pass| match user_pass.split_once(':') {
                Some((user, _)) => user.to_string(),
                None => user_pass,
            });
        let key = from_header.or_else(|| {
            body.get("writeKey")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        match key {
            None => Err(Rejection::Unauthorized(
                "no write key: send it as the HTTP basic auth user or as `writeKey`".into(),
            )),
            Some(key) if self.inner.write_keys.iter().any(|k| k == &key) => Ok(()),
            Some(_) => Err(Rejection::Unauthorized("the write key is not valid".into())),
        }
    }
}

/// The body, gunzipped when it says so; over `limit` (before or after) is refused, so a
/// small compressed bomb cannot expand into memory.
fn decompress(headers: &HeaderMap, body: &[u8], limit: usize) -> Result<Vec<u8>, Rejection> {
    let too_large = |size| Rejection::TooLarge {
        what: "the request body".into(),
        size,
        limit,
    };
    if body.len() > limit {
        return Err(too_large(body.len()));
    }
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Rejection::MalformedJson(format!("the gzip body cannot be read: {e}")))?;
    if out.len() > limit {
        return Err(too_large(out.len()));
    }
    Ok(out)
}

async fn ingest(
    State(collector): State<Collector>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Read at most a little over the largest allowed body; anything longer is refused by
    // size without being held in memory.
    let cap = collector.inner.limits.max_batch_bytes + 1;
    let bytes: Bytes = match axum::body::to_bytes(body, cap).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return Rejection::TooLarge {
                what: "the request body".into(),
                size: cap,
                limit: cap - 1,
            }
            .into_response();
        }
    };
    match collector.handle(&call, &headers, &bytes).await {
        Ok(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"success":true}"#,
        )
            .into_response(),
        Err(rejection) => {
            if rejection.status().is_server_error() {
                tracing::warn!(%rejection, "request refused");
            }
            rejection.into_response()
        }
    }
}
