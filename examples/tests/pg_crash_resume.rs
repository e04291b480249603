//! Kills a real `cdp-pg-sync` process with SIGKILL at random points of a PostgreSQL to
//! PostgreSQL sync, resumes it each time, and checks that the copy equals the source table
//! exactly. Needs the `postgres-integration` feature and a server at
//! `CDP_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`); `psql`
//! sets up and compares the tables.

#![cfg(feature = "postgres-integration")]
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use cdp_testkit::postgres::url;
use rand::{Rng, SeedableRng};

const ROWS: u64 = 200_000;

fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url())
        .args(["-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Drops the test's schemas when the test ends, however it ends.
struct Schemas(Vec<String>);

impl Drop for Schemas {
    fn drop(&mut self) {
        for schema in &self.0 {
            let _ = Command::new("psql")
                .arg(url())
                .args(["-qtAc", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
                .output();
        }
    }
}

fn sync(source: &str, dest: &str, cursor: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cdp-pg-sync"));
    command
        .args([
            "--url",
            &url(),
            "--source-schema",
            source,
            "--table",
            "orders",
        ])
        .args(["--dest-schema", dest])
        .args([
            "--batch-size",
            "1000",
            "--page-size",
            "7000",
            "--commit-rows",
            "5000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(cursor) = cursor {
        command.args(["--cursor", cursor]);
    }
    command
}

fn crash_and_resume(cursor: Option<&str>, keyed: bool) {
    let tag = format!("{}_{}", std::process::id(), u8::from(keyed));
    let (source, dest) = (
        format!("cdp_crash_src_{tag}"),
        format!("cdp_crash_dst_{tag}"),
    );
    let _cleanup = Schemas(vec![source.clone(), dest.clone()]);
    let key = if keyed { "PRIMARY KEY" } else { "" };
    // Cursor values repeat in runs of 1000 rows, so pages and batches end inside them.
    psql(&format!(
        "DROP SCHEMA IF EXISTS {source} CASCADE; DROP SCHEMA IF EXISTS {dest} CASCADE;
         CREATE SCHEMA {source};
         CREATE TABLE {source}.orders (id bigint {key}, customer text NOT NULL,
             amount numeric(12,2), tags text[], updated_at timestamptz NOT NULL);
         INSERT INTO {source}.orders
         SELECT i, 'customer-' || (i % 997), (i % 10000) / 100.0, ARRAY['t' || (i % 5)],
                timestamptz '2024-01-01' + (i / 1000) * interval '1 minute'
         FROM generate_series(1, {ROWS}) i;"
    ));

    let seed: u64 = std::env::var("CDP_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills = Vec::new();
    for _ in 0..6 {
        let mut child = sync(&source, &dest, cursor).spawn().unwrap();
        let after = Duration::from_millis(rng.random_range(200..1200));
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
    let status = sync(&source, &dest, cursor).status().unwrap();
    assert!(status.success(), "final resume failed: {status}");
    assert!(
        kills.len() >= 3,
        "only {} kills landed mid-run (seed {seed}); the run finished too fast to test",
        kills.len()
    );

    let columns = "id, customer, amount, tags, updated_at";
    let count = psql(&format!("SELECT count(*) FROM {dest}.orders"));
    assert_eq!(
        count,
        ROWS.to_string(),
        "row count after kills at {kills:?}"
    );
    let differ = psql(&format!(
        "SELECT count(*) FROM (
             (SELECT {columns} FROM {source}.orders EXCEPT ALL SELECT {columns} FROM {dest}.orders)
             UNION ALL
             (SELECT {columns} FROM {dest}.orders EXCEPT ALL SELECT {columns} FROM {source}.orders)
         ) d"
    ));
    assert_eq!(
        differ, "0",
        "the copy differs from the source after kills at {kills:?}"
    );
}

#[test]
fn sigkill_and_resume_of_an_incremental_sync_leaves_an_equal_table() {
    crash_and_resume(Some("updated_at"), true);
}

#[test]
fn sigkill_and_resume_of_a_full_refresh_without_a_key_leaves_an_equal_table() {
    crash_and_resume(None, false);
}
