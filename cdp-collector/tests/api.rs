//! The tracking API in-process: every call type and its short form, both ways of sending
//! the write key, gzip, CORS, the log read back as one stream per call type — and every
//! kind of bad input answered with its 4xx while the log stays exactly as it was.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use base64::Engine;
use cdp_collector::{Collector, EventLog, LogConfig, Rejection, log_source};
use cdp_core::Pipeline;
use cdp_core::arrow::array::AsArray;
use cdp_core::memory::MemoryDestination;
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "test-write-key";

fn collector(dir: &Path) -> Collector {
    let log = EventLog::open(LogConfig::new(dir.join("log"))).unwrap();
    Collector::new(vec![KEY.into()], log)
}

fn log_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("log")
}

fn basic() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
    );
    headers
}

/// Bytes in the log: what "changes nothing" is measured by.
fn log_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| {
                        let path = e.path();
                        if path.is_dir() {
                            walk(&path)
                        } else {
                            e.metadata().map(|m| m.len()).unwrap_or(0)
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&dir.join("log"))
}

async fn post(c: &Collector, path: &str, headers: HeaderMap, body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = Request::post(path);
    for (k, v) in &headers {
        request = request.header(k, v);
    }
    let response = c
        .router()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_call_type_lands_in_its_stream_with_the_common_fields() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path());
    let calls = [
        (
            "/v1/track",
            json!({"userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}}),
        ),
        ("/v1/t", json!({"anonymousId": "a1", "event": "Viewed"})),
        (
            "/v1/identify",
            json!({"userId": "u1", "traits": {"email": "ada@example.com"}}),
        ),
        ("/v1/page", json!({"userId": "u1", "name": "Pricing"})),
        ("/v1/s", json!({"userId": "u1", "name": "Home"})),
        ("/v1/group", json!({"userId": "u1", "groupId": "acme"})),
        ("/v1/alias", json!({"userId": "u1", "previousId": "a1"})),
    ];
    for (path, body) in calls {
        let (status, answer) = post(&c, path, basic(), body.to_string().into_bytes()).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        assert_eq!(answer, json!({"success": true}));
    }
    // The write key in the body, a batch, gzip.
    let batch = json!({
        "writeKey": KEY,
        "sentAt": "2024-05-01T12:00:00Z",
        "context": {"library": {"name": "analytics-node"}},
        "batch": [
            {"type": "track", "userId": "u2", "event": "Order Completed", "timestamp": "2024-05-01T11:59:00Z"},
            {"type": "identify", "userId": "u2", "traits": {"email": "bob@example.com"}},
        ],
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(batch.to_string().as_bytes()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let (status, answer) = post(&c, "/v1/batch", headers, gz.finish().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let memory = MemoryDestination::new("memory");
    let handle = memory.handle();
    Pipeline::builder("collector")
        .source(log_source(&log_dir(dir.path())))
        .destination(memory)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let mut rows: Vec<(String, usize)> = ["track", "identify", "page", "screen", "group", "alias"]
        .iter()
        .map(|s| {
            let n: usize = handle
                .batches()
                .iter()
                .filter(|b| &*b.stream == *s)
                .map(|b| b.data.num_rows())
                .sum();
            (s.to_string(), n)
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("alias".to_string(), 1),
            ("group".to_string(), 1),
            ("identify".to_string(), 2),
            ("page".to_string(), 1),
            ("screen".to_string(), 1),
            ("track".to_string(), 3),
        ]
    );
    let track = handle
        .batches()
        .into_iter()
        .find(|b| &*b.stream == "track")
        .unwrap();
    for column in [
        "messageId",
        "type",
        "userId",
        "anonymousId",
        "event",
        "timestamp",
        "receivedAt",
    ] {
        assert!(
            track.data.column_by_name(column).is_some(),
            "track lacks {column}"
        );
    }
    let identify = handle
        .batches()
        .into_iter()
        .find(|b| &*b.stream == "identify")
        .unwrap();
    let traits = identify.data.column_by_name("traits").unwrap().as_struct();
    assert!(
        traits.column_by_name("email").is_some(),
        "traits are a struct with their keys"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path());
    let (status, _) = post(
        &c,
        "/v1/track",
        basic(),
        br#"{"userId":"u","event":"e"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let before = log_bytes(dir.path());

    let big = "x".repeat(33 * 1024);
    let many: Vec<Value> = (0..2501)
        .map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "e"}))
        .collect();
    let huge: Vec<Value> = (0..40)
        .map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "e", "properties": {"p": "y".repeat(15_000)}}))
        .collect();
    let wrong_key = {
        let mut h = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode("nope:");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        h
    };
    let cases: Vec<(&str, HeaderMap, Vec<u8>, StatusCode, &str)> = vec![
        ("/v1/track", basic(), b"{\"userId\": \"u\",".to_vec(), StatusCode::BAD_REQUEST, "malformed JSON"),
        ("/v1/track", basic(), b"[1,2]".to_vec(), StatusCode::BAD_REQUEST, "JSON object"),
        ("/v1/track", wrong_key, br#"{"userId":"u","event":"e"}"#.to_vec(), StatusCode::UNAUTHORIZED, "not valid"),
        ("/v1/track", HeaderMap::new(), br#"{"userId":"u","event":"e"}"#.to_vec(), StatusCode::UNAUTHORIZED, "no write key"),
        ("/v1/track", basic(), json!({"userId": "u", "event": "e", "properties": {"p": big}}).to_string().into_bytes(), StatusCode::BAD_REQUEST, "the limit is 32768"),
        ("/v1/batch", basic(), json!({"batch": many}).to_string().into_bytes(), StatusCode::BAD_REQUEST, "2501 events; the limit is 2500"),
        ("/v1/batch", basic(), json!({"batch": huge}).to_string().into_bytes(), StatusCode::BAD_REQUEST, "the limit is 512000"),
        ("/v1/identify", basic(), br#"{"traits":{"email":"a@b.c"}}"#.to_vec(), StatusCode::BAD_REQUEST, "`userId` or `anonymousId` is required"),
        ("/v1/track", basic(), br#"{"userId":"u"}"#.to_vec(), StatusCode::BAD_REQUEST, "`event` is required for track"),
        ("/v1/batch", basic(), br#"{"batch":[{"type":"track","userId":"u","event":"e"},{"type":"track","userId":"u"}]}"#.to_vec(), StatusCode::BAD_REQUEST, "event 1: `event` is required"),
        ("/v1/track", basic(), br#"{"userId":"u","event":"e","timestamp":"yesterday"}"#.to_vec(), StatusCode::BAD_REQUEST, "not an ISO 8601 time"),
        ("/v1/tracks", basic(), br#"{"userId":"u","event":"e"}"#.to_vec(), StatusCode::NOT_FOUND, "no endpoint"),
    ];
    for (path, headers, body, expected, says) in cases {
        let (status, answer) = post(&c, path, headers, body).await;
        assert_eq!(status, expected, "{path}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{path}: `{message}` does not say `{says}`"
        );
        assert_eq!(answer["success"], false);
        assert_eq!(log_bytes(dir.path()), before, "{path} changed the log");
    }
}

#[tokio::test]
async fn a_message_id_is_logged_once_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let body = br#"{"userId":"u","event":"e","messageId":"m-1"}"#;
    {
        let c = collector(dir.path());
        let first = c.handle("track", &basic(), body).await.unwrap();
        let again = c.handle("track", &basic(), body).await.unwrap();
        assert_eq!((first.written, again.duplicates), (1, 1));
    }
    // Reopened, the window is rebuilt from the log.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let c = collector(dir.path());
    let after = c.handle("track", &basic(), body).await.unwrap();
    assert_eq!((after.written, after.duplicates), (0, 1));
}

#[tokio::test]
async fn browsers_get_cors_and_a_full_queue_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path());
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri("/v1/t")
        .header(header::ORIGIN, "https://shop.example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .body(Body::empty())
        .unwrap();
    let response = c.router().oneshot(preflight).await.unwrap();
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://shop.example.com"
    );
    let busy = axum::response::IntoResponse::into_response(Rejection::Busy(
        std::time::Duration::from_secs(2),
    ));
    assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(busy.headers()[header::RETRY_AFTER], "2");
}
