//! Kills a real `cdp-file-sync` process with SIGKILL at random points, resumes it each
//! time, and checks that the landing zone ends up with every input record exactly once.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};

const RECORDS: u64 = 300_000;
const FILES: u64 = 3;
/// Lines that are not JSON, at fixed positions; they must be dead-lettered exactly once.
const MALFORMED_EVERY: u64 = 50_000;

fn write_input(dir: &Path) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let per_file = RECORDS / FILES;
    let mut malformed = 0;
    for f in 0..FILES {
        let file = std::fs::File::create(dir.join(format!("part-{f}.jsonl"))).unwrap();
        let mut out = std::io::BufWriter::new(file);
        for i in f * per_file..(f + 1) * per_file {
            if i % MALFORMED_EVERY == 7 {
                writeln!(out, "{{\"id\": {i}, \"user\": broken").unwrap();
                malformed += 1;
                continue;
            }
            writeln!(
                out,
                r#"{{"id":{i},"user":"user-{}","event":"Order Completed","revenue":{}.5,"context":{{"ip":"10.0.{}.{}"}}}}"#,
                i % 997,
                i % 300,
                i % 250,
                i % 200
            )
            .unwrap();
        }
    }
    malformed
}

fn sync(input: &Path, out: &Path, state: &Path, format: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cdp-file-sync"));
    command
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--state")
        .arg(state)
        .args([
            "--format",
            format,
            "--batch-size",
            "2000",
            "--commit-rows",
            "10000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
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

/// Counts each `id` in the landing zone's data files (not staging, not dead letters).
fn landed_ids(out: &Path, format: &str) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for path in files_under(&out.join("events"), format) {
        assert!(
            !path.to_string_lossy().contains("_staging"),
            "staged file visible: {path:?}"
        );
        if format == "jsonl" {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                *counts.entry(value["id"].as_u64().unwrap()).or_default() += 1;
            }
        } else {
            let file = std::fs::File::open(&path).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
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
                    *counts.entry(*id as u64).or_default() += 1;
                }
            }
        }
    }
    counts
}

fn dead_lettered(out: &Path) -> usize {
    files_under(&out.join("_dead_letters"), "jsonl")
        .iter()
        .filter(|p| !p.to_string_lossy().contains("_staging"))
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum()
}

fn crash_and_resume(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let out = dir.path().join("landing");
    let state = dir.path().join("state.db");
    let malformed = write_input(&input);

    let seed: u64 = std::env::var("CDP_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills = Vec::new();
    for _ in 0..6 {
        let mut child = sync(&input, &out, &state, format).spawn().unwrap();
        let after = Duration::from_millis(rng.random_range(150..900));
        std::thread::sleep(after);
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "sync failed on its own: {status}");
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills.push(after);
            }
        }
    }
    let status = sync(&input, &out, &state, format).status().unwrap();
    assert!(status.success(), "final resume failed: {status}");

    assert!(
        kills.len() >= 3,
        "only {} kills landed mid-run (seed {seed}); the run finished too fast to test",
        kills.len()
    );
    let counts = landed_ids(&out, format);
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        duplicates.is_empty(),
        "duplicated ids after {kills:?}: {duplicates:?}"
    );
    let expected = RECORDS - malformed;
    assert_eq!(
        counts.len() as u64,
        expected,
        "lost records after kills at {kills:?}"
    );
    assert!(
        (0..RECORDS)
            .filter(|i| i % MALFORMED_EVERY != 7)
            .all(|i| counts.contains_key(&i))
    );
    assert_eq!(dead_lettered(&out) as u64, malformed);
}

#[test]
fn sigkill_and_resume_into_jsonl_lands_every_record_once() {
    crash_and_resume("jsonl");
}

#[test]
fn sigkill_and_resume_into_parquet_lands_every_record_once() {
    crash_and_resume("parquet");
}
