//! Kills a real `cdp-http-sync` process with SIGKILL at random points while it pages a fake
//! SaaS API (which fails now and then with 500s and dropped connections), resumes it each
//! time, and checks that the landing zone ends up with exactly the server's records: each
//! once, none missing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cdp_testkit::saas::{API_KEY, FakeSaas, Faults, SaasConfig};
use rand::{Rng, SeedableRng};

const CUSTOMERS: usize = 2_000;

fn sync(server: &FakeSaas, key: &Path, out: &Path, state: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cdp-http-sync"));
    command
        .arg("--base-url")
        .arg(server.url())
        .arg("--key-file")
        .arg(key)
        .arg("--out")
        .arg(out)
        .arg("--state")
        .arg(state)
        .args(["--page-size", "20", "--rate", "100", "--commit-rows", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn files_under(root: &Path) -> Vec<PathBuf> {
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
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                found.push(path);
            }
        }
    }
    found
}

/// How often each id landed in `stream`'s published files.
fn landed(out: &Path, stream: &str) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for path in files_under(&out.join(stream)) {
        assert!(
            !path.to_string_lossy().contains("_staging"),
            "staged file visible: {path:?}"
        );
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            *counts
                .entry(value["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    counts
}

#[test]
fn sigkill_and_resume_of_an_http_sync_lands_exactly_the_servers_records() {
    let server = FakeSaas::start_in_thread(SaasConfig {
        customers: CUSTOMERS,
        faults: Faults {
            rate_limit_every: 0,
            retry_after_secs: 0,
            error_every: 17,
            drop_every: 23,
        },
        ..SaasConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, API_KEY).unwrap();
    let out = dir.path().join("landing");
    let state = dir.path().join("state.db");

    let seed: u64 = std::env::var("CDP_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills = Vec::new();
    for _ in 0..8 {
        let mut child = sync(&server, &key, &out, &state).spawn().unwrap();
        let after = Duration::from_millis(rng.random_range(150..700));
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
    let status = sync(&server, &key, &out, &state).status().unwrap();
    assert!(status.success(), "final resume failed: {status}");
    assert!(
        kills.len() >= 3,
        "only {} kills landed mid-run (seed {seed}); the run finished too fast to test",
        kills.len()
    );

    let expected: Vec<String> = server
        .customers()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    for stream in ["customers", "events"] {
        let counts = landed(&out, stream);
        let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(
            duplicates.is_empty(),
            "{stream}: duplicated after kills at {kills:?}: {duplicates:?}"
        );
        let ids: Vec<String> = counts.into_keys().collect();
        let mut sorted = expected.clone();
        sorted.sort();
        assert_eq!(
            ids, sorted,
            "{stream}: lost records after kills at {kills:?}"
        );
    }
    let stats = server.stats();
    assert!(stats.errors > 0 && stats.dropped > 0, "{stats:?}");
    assert!(files_under(&out.join("_dead_letters")).is_empty());

    // The next run reads nothing new.
    let status = sync(&server, &key, &out, &state).status().unwrap();
    assert!(status.success());
    assert_eq!(landed(&out, "customers").len(), CUSTOMERS);
}
