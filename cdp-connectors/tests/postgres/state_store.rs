//! The PostgreSQL state store.

use std::sync::Arc;

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
