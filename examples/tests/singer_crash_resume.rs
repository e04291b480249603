//! Kills a real `cdp-singer-sync` process running the PyPI tap `tap-jsonl` with SIGKILL
//! after it committed the tap's first state, runs it again, and checks the resume.
//!
//! `tap-jsonl` writes its first `STATE` after 10,000 records, and (reading its source) that
//! state does not let it skip anything on a resume: it marks its progress "not resumable"
//! and its bookmark check reads a key its state never holds, and the Singer SDK calls it
//! once per partition of the state it is given, each time for every file. So what a resume
//! must give is exactly: the rows committed before the kill, once, plus exactly what the
//! tap writes when handed the committed state, once; nothing of the killed run's
//! uncommitted rows. The test checks that the tap was handed the committed state, and
//! compares the landing zone with what the tap writes by itself with that state.
//!
//! Needs `python3`; the tap is installed into a cached virtualenv (`cdp_testkit::singer`).

#![cfg(feature = "singer-integration")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES: u64 = 3;
const PER_FILE: u64 = 4_000;

/// Runs the real tap, writes down the state file it is handed, and, with `SLOW` set,
/// pauses that many seconds after each `STATE` line (so a kill can land after a commit).
const WRAPPER: &str = r#"#!/bin/sh
state=""
prev=""
for arg in "$@"; do
  if [ "$prev" = "--state" ]; then state=$arg; fi
  prev=$arg
done
if [ -n "$state" ]; then cp "$state" "$LOG_DIR/state-$$.json"; fi
"$REAL_TAP" "$@" | awk -v slow="${SLOW:-0}" '{ print; fflush() } /"type": *"STATE"/ && slow > 0 { system("sleep " slow) }'
"#;

fn write_input(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..FILES {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("part-{f}.jsonl"))).unwrap(),
        );
        for i in f * PER_FILE..(f + 1) * PER_FILE {
            writeln!(
                out,
                r#"{{"id":{i},"user":"user-{}","event":"Order Completed","revenue":{}.5}}"#,
                i % 997,
                i % 300
            )
            .unwrap();
        }
    }
}

fn files_under(root: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// How many times each `id` is in the landing zone's published files.
fn landed(out: &Path) -> BTreeMap<i64, u32> {
    let mut counts = BTreeMap::new();
    for path in files_under(&out.join("events"), "parquet") {
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch.column_by_name("id").unwrap();
            let ids = ids
                .as_any()
                .downcast_ref::<cdp::arrow::array::Int64Array>()
                .unwrap();
            for id in ids.values() {
                *counts.entry(*id).or_default() += 1;
            }
        }
    }
    counts
}

/// How many times each `id` the tap writes by itself when handed `state`.
fn tap_output(tap: &Path, config: &Path, state: &Path) -> BTreeMap<i64, u32> {
    let output = Command::new(tap)
        .arg("--config")
        .arg(config)
        .arg("--state")
        .arg(state)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success());
    let mut counts = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let message: serde_json::Value = serde_json::from_str(line).unwrap();
        if message["type"] == "RECORD" {
            *counts
                .entry(message["record"]["id"].as_i64().unwrap())
                .or_default() += 1;
        }
    }
    counts
}

fn sync(wrapper: &Path, config: &Path, out: &Path, state: &Path, slow: u32) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cdp-singer-sync"));
    command
        .arg("--tap")
        .arg(wrapper)
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--state")
        .arg(state)
        .args(["--batch-size", "1000", "--commit-rows", "1000"])
        .env("SLOW", slow.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

#[test]
fn sigkill_after_a_commit_then_resume_from_the_committed_tap_state() {
    let tap = cdp_testkit::singer::program("tap-jsonl");
    let dir = tempfile::tempdir().unwrap();
    let (input, out, logs) = (
        dir.path().join("input"),
        dir.path().join("landing"),
        dir.path().join("logs"),
    );
    let state = dir.path().join("state.db");
    write_input(&input);
    std::fs::create_dir_all(&logs).unwrap();
    let config = dir.path().join("tap-config.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "path": format!("{}/*.jsonl", input.display()),
            "stream_name": "events",
            "primary_keys": ["id"],
        })
        .to_string(),
    )
    .unwrap();
    let wrapper = dir.path().join("tap-wrapper");
    std::fs::write(&wrapper, WRAPPER).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // A run from scratch, killed once its first commit is published.
    let mut child = sync(&wrapper, &config, &out, &state, 20)
        .env("REAL_TAP", &tap)
        .env("LOG_DIR", &logs)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the sync ended ({status}) before it could be killed after a commit");
        }
        if !files_under(&out.join("events"), "parquet").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no commit within 180 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let after_kill = landed(&out);
    // The first state came after 10,000 records: those, once each, and nothing else.
    assert_eq!(after_kill.len(), 10_000);
    assert!(after_kill.values().all(|n| *n == 1));
    assert_eq!(after_kill.keys().next_back(), Some(&9_999));

    let printed = Command::new(env!("CARGO_BIN_EXE_cdp-singer-sync"))
        .arg("--state")
        .arg(&state)
        .arg("--print-state")
        .output()
        .unwrap();
    assert!(printed.status.success());
    let committed: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    let committed_state = committed["streams"]["events"]["state"].clone();
    assert!(
        committed_state["bookmarks"]["events"].is_object(),
        "{committed}"
    );

    // The resume, to the end.
    let status = sync(&wrapper, &config, &out, &state, 0)
        .env("REAL_TAP", &tap)
        .env("LOG_DIR", &logs)
        .status()
        .unwrap();
    assert!(status.success(), "the resumed sync failed: {status}");

    // The tap was handed the committed state (the only state file it ever got).
    let handed: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(handed.len(), 1, "{handed:?}");
    let given: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&handed[0]).unwrap()).unwrap();
    assert_eq!(given, committed_state);

    // The landing zone: what was committed before the kill, plus exactly what the tap
    // writes with that state, each once.
    let mut expected = after_kill.clone();
    for (id, n) in tap_output(&tap, &config, &handed[0]) {
        *expected.entry(id).or_default() += n;
    }
    let landed = landed(&out);
    assert_eq!(landed.len() as u64, FILES * PER_FILE, "every record landed");
    if landed != expected {
        let differ: Vec<_> = expected
            .iter()
            .filter(|(id, n)| landed.get(id) != Some(n))
            .take(5)
            .collect();
        panic!(
            "the landing zone differs from what was committed plus the tap's replay: {differ:?}"
        );
    }
}
