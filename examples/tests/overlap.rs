//! Two real `cdp-file-sync` processes of the same pipeline (same input, state file and
//! landing zone) started together, ten times in a row, for JSONL and Parquet landing zones
//! (issue 14): each time every input row is in the landing zone exactly once, every
//! published file reads back whole, and a process that did not get the pipeline's lease
//! either waited for it (`--lease-wait`) or said so and exited with status 3.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROUNDS: u64 = 10;
const ROWS_PER_ROUND: u64 = 20_000;

/// Appends a file of rows `round * ROWS_PER_ROUND..` to the input folder.
fn add_input(dir: &Path, round: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let file = std::fs::File::create(dir.join(format!("part-{round:02}.jsonl"))).unwrap();
    let mut out = std::io::BufWriter::new(file);
    for i in round * ROWS_PER_ROUND..(round + 1) * ROWS_PER_ROUND {
        writeln!(
            out,
            r#"{{"id":{i},"user":"user-{}","event":"Order Completed","revenue":{}.5}}"#,
            i % 997,
            i % 300
        )
        .unwrap();
    }
}

fn sync(input: &Path, out: &Path, state: &Path, format: &str, lease_wait: u64) -> Command {
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
            "5000",
        ])
        .args(["--lease-wait", &lease_wait.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
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

/// Counts each `id` in the published files, reading every one of them whole: a line that
/// is not JSON or a Parquet file that does not read back fails the test.
fn landed_ids(out: &Path, format: &str) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for path in files_under(&out.join("events"), format) {
        assert!(
            !path.to_string_lossy().contains("_staging"),
            "staged file visible: {path:?}"
        );
        if format == "jsonl" {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.ends_with('\n'), "{path:?} ends mid-line");
            for line in text.lines() {
                let value: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{path:?}: broken line {line:?}: {e}"));
                *counts.entry(value["id"].as_u64().unwrap()).or_default() += 1;
            }
        } else {
            let file = std::fs::File::open(&path).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap_or_else(|e| panic!("{path:?} does not read back: {e}"))
                    .build()
                    .unwrap();
            for batch in reader {
                let batch = batch.unwrap_or_else(|e| panic!("{path:?} does not read back: {e}"));
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

/// The rows a run sent on, from the report it prints (`  events  <in>  <out> …`); none
/// when the stream had nothing new.
fn report_rows_out(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("events")).then(|| words.nth(1)?.parse().ok())?
        })
        .unwrap_or(0)
}

fn overlapping_runs(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let out = dir.path().join("landing");
    let state = dir.path().join("state.db");
    let mut refused = 0;
    for round in 0..ROUNDS {
        add_input(&input, round);
        // Even rounds: the second process waits for the lease; odd rounds: it is refused.
        let wait = if round % 2 == 0 { 120 } else { 0 };
        let children: Vec<_> = (0..2)
            .map(|_| sync(&input, &out, &state, format, wait).spawn().unwrap())
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let mut succeeded = 0;
        let mut rows_out = 0;
        for output in &outputs {
            let stderr = String::from_utf8_lossy(&output.stderr);
            match output.status.code() {
                Some(0) => {
                    succeeded += 1;
                    rows_out += report_rows_out(&stderr);
                }
                Some(3) if wait == 0 => {
                    assert!(
                        stderr.contains("already running"),
                        "round {round}: {stderr}"
                    );
                    assert!(stderr.contains("pid "), "the holder is named: {stderr}");
                    refused += 1;
                }
                _ => panic!("round {round}: {:?}: {stderr}", output.status),
            }
        }
        assert!(succeeded >= 1, "round {round}: no run succeeded");
        // Not only landed once: read and written once, by one of the two.
        assert_eq!(
            rows_out, ROWS_PER_ROUND,
            "round {round}: rows sent by both runs"
        );
        if wait > 0 {
            assert_eq!(succeeded, 2, "round {round}: the waiting run failed");
        }

        let counts = landed_ids(&out, format);
        let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(
            duplicates.is_empty(),
            "round {round}: duplicated ids {duplicates:?}"
        );
        let expected = (round + 1) * ROWS_PER_ROUND;
        assert_eq!(counts.len() as u64, expected, "round {round}: lost rows");
        assert_eq!(counts.keys().next_back(), Some(&(expected - 1)));
    }
    // The refusals really happened (the processes overlapped), at least once.
    assert!(
        refused > 0,
        "no run was ever refused: the processes never overlapped"
    );
}

#[test]
fn two_runs_started_together_into_jsonl_land_every_row_once() {
    overlapping_runs("jsonl");
}

#[test]
fn two_runs_started_together_into_parquet_land_every_row_once() {
    overlapping_runs("parquet");
}
