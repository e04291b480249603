//! The PostgreSQL state store.

use std::sync::Arc;
use std::time::Duration;

use cdp_connectors::PostgresStateStore;
use cdp_core::{PipelineState, StateStore};

use crate::support::*;

#[tokio::test]
async fn commits_load_back_are_shared_and_reset() {
    let db = TestDb::new().await;
    let store =
        PostgresStateStore::new(db.connection("cdp-test-state")).with_table(&db.schema, "state");
    assert_eq!(store.load("p").await.unwrap(), PipelineState::default());
    let mut state = PipelineState {
        epoch: 7,
        ..Default::default()
    };
    state.streams.insert(
        "orders".into(),
        serde_json::json!({"position": ["2024-01-01", "42"]}),
    );
    store.commit("p", &state).await.unwrap();
    state.epoch = 8;
    store.commit("p", &state).await.unwrap();

    // Another worker (another connection) sees the same state.
    let other: Arc<dyn StateStore> = Arc::new(
        PostgresStateStore::new(db.connection("cdp-test-state-2")).with_table(&db.schema, "state"),
    );
    assert_eq!(other.load("p").await.unwrap(), state);
    assert_eq!(other.load("q").await.unwrap(), PipelineState::default());
    assert_eq!(db.count("state").await, 1);

    other.reset("p").await.unwrap();
    assert_eq!(store.load("p").await.unwrap(), PipelineState::default());
}

#[tokio::test]
async fn a_killed_connection_is_transient_and_the_store_reconnects() {
    let db = TestDb::new().await;
    let app = format!("cdp-test-state-kill-{}", db.schema);
    let store = PostgresStateStore::new(db.connection(&app)).with_table(&db.schema, "state");
    store.commit("p", &PipelineState::default()).await.unwrap();
    db.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
    ))
    .await;
    let state = PipelineState {
        epoch: 2,
        ..Default::default()
    };
    // The store notices the dead connection either before using it (and reconnects) or by
    // failing the call with a transient error; the next call then succeeds.
    if let Err(error) = store.commit("p", &state).await {
        assert!(error.is_retryable(), "{error}");
        store.commit("p", &state).await.unwrap();
    }
    assert_eq!(store.load("p").await.unwrap(), state);
}

#[tokio::test]
async fn a_lease_keeps_a_second_run_out_until_its_connection_ends() {
    let db = TestDb::new().await;
    let app = format!("cdp-test-lease-{}", db.schema);
    let first = PostgresStateStore::new(db.connection(&app)).with_table(&db.schema, "state");
    let second =
        PostgresStateStore::new(db.connection("cdp-test-lease-2")).with_table(&db.schema, "state");
    let lease = first.lease("p", Duration::ZERO).await.unwrap();
    lease.check().unwrap();
    let refused = second.lease("p", Duration::ZERO).await.unwrap_err();
    let message = refused.to_string();
    assert!(message.contains("already running"), "{message}");
    assert!(message.contains(&app), "the holder is named: {message}");
    // Another pipeline, or the same id in another state table, is not held up.
    second.lease("q", Duration::ZERO).await.unwrap();
    PostgresStateStore::new(db.connection("cdp-test-lease-3"))
        .with_table(&db.schema, "other_state")
        .lease("p", Duration::ZERO)
        .await
        .unwrap();

    // A waiting run gets the lease once the holder's session ends, here killed.
    let waiting = tokio::spawn(async move { second.lease("p", Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!waiting.is_finished());
    db.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
    ))
    .await;
    let taken = waiting.await.unwrap().unwrap();
    taken.check().unwrap();
    // The killed holder finds out before it commits.
    for _ in 0..50 {
        if lease.check().is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lease.check().is_err());
}
