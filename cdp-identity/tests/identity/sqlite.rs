//! SQLite persistence: profile store snapshots and the durable identity log.

use cdp_core::{Batch, IdentityResolver};
use cdp_identity::{IdentityGraph, MemoryProfileStore, ProfileStore, Resolver, SqliteLog};

use super::common::rules;
use super::store::{key, mapping, resolver, rows, store};

#[tokio::test]
async fn store_snapshot_round_trips_through_sqlite() {
    let s = store();
    let r = resolver(s.clone());
    let batch = rows(
        &["a1", "a2", "a1"],
        &[None, Some("ada@x.io"), Some("ada@x.io")],
        &[Some("free"), None, None],
        &[Some(1), None, Some(2)],
        &[1, 2, 3],
    );
    r.resolve(Batch::new("events", batch, "web")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.db");
    s.save_sqlite(&path).unwrap();
    s.save_sqlite(&path).unwrap();
    let loaded = MemoryProfileStore::load_sqlite(s.config().clone(), &path).unwrap();
    for k in [
        key("anonymous_id", "a1"),
        key("anonymous_id", "a2"),
        key("email", "ada@x.io"),
    ] {
        assert_eq!(loaded.lookup(k), s.lookup(k));
    }
    assert_eq!(loaded.len(), s.len());
}

#[tokio::test]
async fn sqlite_log_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.db");
    let open = || {
        Resolver::new(IdentityGraph::from_config(rules()).unwrap(), mapping())
            .unwrap()
            .with_log(Box::new(SqliteLog::open(&path).unwrap()))
            .unwrap()
    };
    let r = open();
    let batch = rows(
        &["a1", "a2", "a1"],
        &[None, Some("ada@x.io"), Some("ada@x.io")],
        &[None, None, None],
        &[None, None, None],
        &[1, 2, 3],
    );
    r.resolve(Batch::new("events", batch, "web")).await.unwrap();
    r.flush().await.unwrap();
    let seq = r.graph().merges()[0].seq;
    r.unmerge(seq, 4).unwrap();
    r.flush().await.unwrap();
    r.flush().await.unwrap();
    let digest = r.graph().digest();
    let len = r.graph().log_len();
    drop(r);

    let again = open();
    assert_eq!(again.graph().digest(), digest);
    assert_eq!(again.graph().log_len(), len);
    // And it keeps going from there.
    let more = rows(&["a3"], &[Some("ada@x.io")], &[None], &[None], &[5]);
    again
        .resolve(Batch::new("events", more, "web"))
        .await
        .unwrap();
    again.flush().await.unwrap();
    let log = SqliteLog::open(&path).unwrap();
    assert_eq!(
        cdp_identity::IdentityLog::len(&log).unwrap(),
        again.graph().log_len()
    );
}
