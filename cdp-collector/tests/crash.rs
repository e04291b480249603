//! A real `cdp-collector` process, landing its log into Parquet, SIGKILLed at random points
//! while a client streams batches at it, restarted on the same data directory each time. The
//! client resends the batch that was in flight at the kill (as Segment's libraries retry).
//! At the end every acknowledged event is in the landing zone exactly once.

#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use cdp_core::arrow::array::AsArray;
use cdp_core::arrow::compute::cast;
use cdp_core::arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const KEY: &str = "crash-test-key";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data: &Path, landing: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_cdp-collector"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--land-every",
            "1",
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--landing")
        .arg(landing)
        .env("CDP_WRITE_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the collector did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// POSTs `body` to `/v1/batch`; the status, or `None` if the connection failed.
fn post(port: u16, body: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
    let head = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Authorization: Basic {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

fn batch(n: usize) -> (Vec<String>, String) {
    let ids: Vec<String> = (0..25).map(|i| format!("b{n}-e{i}")).collect();
    let events: Vec<serde_json::Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if i % 5 == 0 {
                serde_json::json!({"type": "identify", "messageId": id, "userId": format!("u{n}"),
                                   "traits": {"email": format!("u{n}@example.com")}})
            } else {
                serde_json::json!({"type": "track", "messageId": id, "userId": format!("u{n}"),
                                   "event": "Item Viewed", "properties": {"item": i}})
            }
        })
        .collect();
    (ids, serde_json::json!({"batch": events}).to_string())
}

fn landed_ids(landing: &Path) -> HashMap<String, usize> {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    let mut found = Vec::new();
    files(landing, &mut found);
    let mut ids = HashMap::new();
    for file in found {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let column = cast(batch.column_by_name("messageId").unwrap(), &DataType::Utf8).unwrap();
            for id in column.as_string::<i32>().iter().flatten() {
                *ids.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    ids
}

#[test]
fn every_acknowledged_event_lands_exactly_once_across_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let (data, landing) = (dir.path().join("data"), dir.path().join("landing"));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut next = 0usize;
    let mut seed = 0x9e37_79b9_u64;
    for round in 0..4 {
        let port = free_port();
        let mut child = start(&data, &landing, port);
        // Resend whatever was in flight when the last process died.
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (acked, stop) = (acked.clone(), stop.clone());
            let first = next;
            std::thread::spawn(move || {
                let mut n = first;
                while !stop.load(Ordering::Relaxed) {
                    let (ids, body) = batch(n);
                    match post(port, &body) {
                        Some(200) => {
                            acked.lock().unwrap().extend(ids);
                            n += 1;
                        }
                        // Killed mid-request: the batch is resent to the next process.
                        _ => break,
                    }
                }
                n
            })
        };
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis(300 + (seed >> 33) % 1200));
        if round < 3 {
            child.kill().unwrap();
        } else {
            stop.store(true, Ordering::Relaxed);
        }
        next = sender.join().unwrap();
        if round == 3 {
            // A clean stop: the last landing run takes what is left.
            sigterm(&child);
        }
        child.wait().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the client got through: {} events",
        acked.len()
    );
    let landed = landed_ids(&landing);
    for id in &acked {
        assert_eq!(
            landed.get(id),
            Some(&1),
            "acknowledged `{id}` landed {:?} times",
            landed.get(id)
        );
    }
    let twice: Vec<_> = landed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "landed more than once: {twice:?}");
}

/// Sends SIGTERM with the `kill` command (no libc binding needed).
fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
