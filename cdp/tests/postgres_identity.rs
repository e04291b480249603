//! The PostgreSQL identity log and profile store (`cdp::postgres_identity`), against the
//! memory store and the graph's own log.
//!
//! Needs the `postgres-integration` feature and a server at `CDP_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`); every test works in a schema of its
//! own (`cdp_testkit::postgres::TestDb`), dropped when the test ends.

#![cfg(feature = "postgres-integration")]
// Helpers outside `#[test]` functions panic on failure too; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use cdp::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use cdp::arrow::datatypes::{DataType, Field, Schema};
use cdp::identity::error::BackendErrorKind;
use cdp::identity::{
    ColumnMapping, Evidence, Identifier, IdentifierColumn, IdentifierKey, IdentityGraph,
    IdentityLog, MemoryProfileStore, Observation, Profile, ProfileDelta, ProfileId, ProfileStore,
    Resolver, Rules, RulesConfig, StoreConfig,
};
use cdp::postgres_identity::{PostgresIdentityLog, PostgresIdentityOptions, PostgresProfileStore};
use cdp::{Batch, IdentityResolver, PROFILE_ID_COLUMN};
use cdp_testkit::postgres::{TestDb, connect};
use serde_json::json;

const DAY: i64 = 86_400_000;

fn rules() -> RulesConfig {
    serde_json::from_value(json!({
        "identifiers": [
            {"name": "user_id", "priority": 1, "limit": 1},
            {"name": "email", "priority": 2, "limit": 1, "normaliser": "email"},
            {"name": "device_id", "priority": 4, "limit": 3},
            {"name": "anonymous_id", "priority": 5, "ttl": "30d", "anonymous": true}
        ],
        "blocked_values": ["unknown"]
    }))
    .unwrap()
}

fn store_config() -> StoreConfig {
    serde_json::from_value(json!({
        "traits": [
            {"name": "plan", "rule": "latest"},
            {"name": "first_plan", "rule": "first"},
            {"name": "orders", "rule": "sum"},
            {"name": "spent", "rule": "sum"},
            {"name": "ltv", "rule": "max"},
            {"name": "name", "rule": "source_priority"}
        ],
        "source_priority": ["crm", "web"]
    }))
    .unwrap()
}

fn mapping() -> ColumnMapping {
    ColumnMapping::new(vec![
        IdentifierColumn::new("anonymous_id", "anonymous_id"),
        IdentifierColumn::new("email", "email"),
        IdentifierColumn::new("device", "device_id"),
    ])
    .timestamp("ts")
    .with_trait("plan", "plan")
    .with_trait("plan", "first_plan")
    .with_trait("orders", "orders")
    .with_trait("amount", "spent")
    .with_trait("amount", "ltv")
    .with_trait("name", "name")
}

/// One event row: anonymous id, email, device, plan, orders, amount, name, time.
type Row = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<i64>,
    Option<f64>,
    Option<&'static str>,
    i64,
);

fn batch(source: &str, rows: &[Row]) -> Batch {
    let schema = Schema::new(vec![
        Field::new("anonymous_id", DataType::Utf8, true),
        Field::new("email", DataType::Utf8, true),
        Field::new("device", DataType::Utf8, true),
        Field::new("plan", DataType::Utf8, true),
        Field::new("orders", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("ts", DataType::Int64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter(rows.iter().map(|r| Some(r.0)))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.3))),
        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.4))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.5))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.6))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.7))),
    ];
    let data = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
    Batch::new("events", data, source)
}

/// Batches that create profiles, merge two of them (web, then crm, then web again).
fn batches() -> Vec<Batch> {
    vec![
        batch(
            "web",
            &[
                (
                    "a1",
                    None,
                    Some("d1"),
                    Some("free"),
                    Some(1),
                    Some(9.5),
                    Some("ada99"),
                    10,
                ),
                (
                    "a2",
                    Some("ada@x.io"),
                    None,
                    Some("pro"),
                    Some(2),
                    Some(20.25),
                    None,
                    20,
                ),
                ("a3", None, Some("d2"), None, None, Some(1.0), None, 25),
                (
                    "a1",
                    None,
                    None,
                    Some("plus"),
                    Some(3),
                    None,
                    Some("ada"),
                    30,
                ),
                ("a5", None, None, Some("free"), Some(1), None, None, 35),
            ],
        ),
        batch(
            "crm",
            &[
                (
                    "a4",
                    Some("bob@x.io"),
                    None,
                    Some("team"),
                    Some(5),
                    Some(3.5),
                    Some("Bob"),
                    40,
                ),
                (
                    "a2",
                    None,
                    None,
                    None,
                    Some(1),
                    None,
                    Some("Ada Lovelace"),
                    45,
                ),
            ],
        ),
        // a1 meets ada@x.io: the (a1, d1) profile and the (a2, ada) profile merge.
        batch(
            "web",
            &[
                (
                    "a1",
                    Some("ada@x.io"),
                    None,
                    None,
                    Some(1),
                    Some(0.25),
                    None,
                    50,
                ),
                (
                    "a6",
                    None,
                    Some("d1"),
                    Some("pro"),
                    None,
                    None,
                    Some("A."),
                    55,
                ),
            ],
        ),
    ]
}

fn after_unmerge() -> Batch {
    batch(
        "web",
        &[
            ("a1", None, None, Some("max"), Some(2), Some(7.0), None, 70),
            ("a2", None, None, None, Some(4), None, None, 75),
            ("a4", None, Some("d3"), None, None, Some(100.0), None, 80),
        ],
    )
}

fn after_expiry() -> Batch {
    batch(
        "crm",
        &[
            (
                "a7",
                Some("bob@x.io"),
                Some("d2"),
                Some("pro"),
                Some(1),
                None,
                Some("Robert"),
                100 * DAY,
            ),
            ("a8", None, None, None, None, None, None, 100 * DAY + 1),
        ],
    )
}

/// Every identifier the batches above carry.
fn keys() -> Vec<IdentifierKey> {
    let mut ids = Vec::new();
    for a in 1..=8 {
        ids.push(Identifier::new("anonymous_id", format!("a{a}")));
    }
    for e in ["ada@x.io", "bob@x.io", "nobody@x.io"] {
        ids.push(Identifier::new("email", e));
    }
    for d in 1..=3 {
        ids.push(Identifier::new("device_id", format!("d{d}")));
    }
    ids.iter().map(IdentifierKey::of).collect()
}

fn options(db: &TestDb, prefix: &str) -> PostgresIdentityOptions {
    PostgresIdentityOptions {
        schema: db.schema.clone(),
        table_prefix: prefix.into(),
    }
}

fn is_conflict(error: &cdp::identity::Error) -> bool {
    matches!(
        error,
        cdp::identity::Error::Backend {
            kind: BackendErrorKind::Conflict,
            ..
        }
    )
}

/// Applies every delta to the memory store and the PostgreSQL store, so both get exactly
/// the same ones; answers from PostgreSQL.
#[derive(Debug)]
struct Tee {
    memory: Arc<MemoryProfileStore>,
    pg: Arc<PostgresProfileStore>,
}

impl ProfileStore for Tee {
    fn apply(&self, delta: &ProfileDelta) -> cdp::identity::Result<()> {
        self.memory.apply(delta)?;
        self.pg.apply(delta)
    }

    fn get(&self, id: ProfileId) -> Option<Arc<Profile>> {
        self.pg.get(id)
    }

    fn profile_id(&self, key: IdentifierKey) -> Option<ProfileId> {
        self.pg.profile_id(key)
    }

    fn len(&self) -> usize {
        self.pg.len()
    }
}

/// Every profile id a resolver has handed out or merged, merged-away ones included.
fn profile_ids(resolver: &Resolver, seen: &mut BTreeSet<ProfileId>) -> Vec<ProfileId> {
    let graph = resolver.graph();
    seen.extend(graph.profile_ids());
    for m in graph.merges() {
        seen.extend([m.survivor, m.absorbed]);
    }
    seen.iter().copied().collect()
}

fn resolved_ids(resolved: &cdp::ResolvedBatch, seen: &mut BTreeSet<ProfileId>) {
    let column = resolved
        .batch
        .data
        .column_by_name(PROFILE_ID_COLUMN)
        .unwrap();
    let column = column.as_any().downcast_ref::<StringArray>().unwrap();
    seen.extend(
        column
            .iter()
            .flatten()
            .map(|id| id.parse::<ProfileId>().unwrap()),
    );
}

/// The PostgreSQL store answers exactly what the memory store answers, for every
/// identifier and every profile id.
fn assert_same(what: &str, memory: &MemoryProfileStore, pg: &dyn ProfileStore, ids: &[ProfileId]) {
    for key in keys() {
        assert_eq!(
            pg.profile_id(key),
            memory.profile_id(key),
            "{what}: {key:?}"
        );
        assert_eq!(pg.lookup(key), memory.lookup(key), "{what}: {key:?}");
    }
    for id in ids {
        assert_eq!(pg.get(*id), memory.get(*id), "{what}: profile {id}");
    }
    assert_eq!(pg.len(), memory.len(), "{what}: live profiles");
}

#[tokio::test]
async fn replaying_the_postgres_log_rebuilds_the_resolvers_graph() {
    let db = TestDb::new().await;
    let connection = db.connection("cdp-test-identity-log");
    let opts = options(&db, "g_");
    let open = || {
        Resolver::new(IdentityGraph::from_config(rules()).unwrap(), mapping())
            .unwrap()
            .with_log(Box::new(
                PostgresIdentityLog::open(&connection, &opts).unwrap(),
            ))
            .unwrap()
    };
    let resolver = open();
    for b in batches() {
        resolver.resolve(b).await.unwrap();
        resolver.flush().await.unwrap();
    }
    let merge = resolver.graph().merges()[0].seq;
    resolver.unmerge(merge, 60).unwrap();
    resolver.resolve(after_unmerge()).await.unwrap();
    resolver.expire(90 * DAY).unwrap();
    resolver.resolve(after_expiry()).await.unwrap();
    resolver.flush().await.unwrap();
    resolver.flush().await.unwrap();
    let digest = resolver.graph().digest();
    let records = resolver.graph().log();
    assert!(records.iter().any(|r| r.event.kind_name() == "unmerge"));
    assert!(records.iter().any(|r| r.event.kind_name() == "expire"));

    let log = PostgresIdentityLog::open(&connection, &opts).unwrap();
    assert_eq!(log.len().unwrap(), records.len() as u64);
    let loaded = log.load().unwrap();
    assert_eq!(loaded, records);
    let replayed = IdentityGraph::replay(Rules::new(rules()).unwrap(), loaded).unwrap();
    assert_eq!(replayed.digest(), digest);

    // The query columns agree with the events.
    let kinds: Vec<(i64, String, i64)> = db
        .client
        .query(
            &format!(
                "SELECT seq, kind, at FROM {}.g_identity_log ORDER BY seq",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected: Vec<(i64, String, i64)> = records
        .iter()
        .map(|r| (r.seq as i64, r.event.kind_name().to_string(), r.event.at()))
        .collect();
    assert_eq!(kinds, expected);

    // A restarted worker rebuilds the same graph from the table and carries on.
    drop(resolver);
    let again = open();
    assert_eq!(again.graph().digest(), digest);
    again
        .resolve(batch(
            "web",
            &[(
                "a9",
                Some("ada@x.io"),
                None,
                None,
                None,
                None,
                None,
                200 * DAY,
            )],
        ))
        .await
        .unwrap();
    again.flush().await.unwrap();
    assert_eq!(log.len().unwrap(), again.graph().log_len());
    let replayed =
        IdentityGraph::replay(Rules::new(rules()).unwrap(), log.load().unwrap()).unwrap();
    assert_eq!(replayed.digest(), again.graph().digest());
}

/// A graph whose log differs from every other `seed`'s from the first record on.
fn history(seed: &str, events: usize) -> IdentityGraph {
    let mut graph = IdentityGraph::from_config(rules()).unwrap();
    for i in 0..events {
        let anon = format!("{seed}-a{}", i % 5);
        let email = format!("{seed}{}@x.io", i % 3);
        graph
            .observe(
                &[("anonymous_id", &anon), ("email", &email)],
                &Evidence::new(i as i64, "web"),
            )
            .unwrap();
    }
    graph
}

#[tokio::test]
async fn concurrent_appends_one_wins_and_the_other_conflicts() {
    let db = TestDb::new().await;
    let connection = db.connection("cdp-test-identity-race");
    for round in 0..8 {
        let opts = options(&db, &format!("race{round}_"));
        let mut left = PostgresIdentityLog::open(&connection, &opts).unwrap();
        let mut right = PostgresIdentityLog::open(&connection, &opts).unwrap();
        let (ours, theirs) = (history("left", 40).log(), history("right", 25).log());
        let barrier = Arc::new(Barrier::new(2));
        let race = |log: &mut PostgresIdentityLog, records: &[cdp::identity::LogRecord]| {
            barrier.wait();
            log.append(records)
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| race(&mut left, &ours));
            let b = s.spawn(|| race(&mut right, &theirs));
            (a.join().unwrap(), b.join().unwrap())
        });
        let winner = match (&a, &b) {
            (Ok(()), Err(e)) if is_conflict(e) => &ours,
            (Err(e), Ok(())) if is_conflict(e) => &theirs,
            other => panic!("round {round}: expected one success and one conflict: {other:?}"),
        };
        // Exactly the winner's records: no gap, no duplicate, nothing of the loser's.
        assert_eq!(left.load().unwrap(), *winner, "round {round}");
        assert_eq!(right.len().unwrap(), winner.len() as u64);
    }
}

#[tokio::test]
async fn appends_are_checked_against_what_the_log_holds() {
    let db = TestDb::new().await;
    let connection = db.connection("cdp-test-identity-append");
    let opts = options(&db, "");
    let mut log = PostgresIdentityLog::open(&connection, &opts).unwrap();
    let mut stale = PostgresIdentityLog::open(&connection, &opts).unwrap();
    let ours = history("left", 30).log();
    log.append(&ours[..20]).unwrap();

    // A writer that has not seen these records conflicts, and writes nothing.
    let theirs = history("right", 30).log();
    let error = stale.append(&theirs).unwrap_err();
    assert!(is_conflict(&error), "{error}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("another writer"), "{error}");
    assert_eq!(log.len().unwrap(), 20);

    // Records the log already holds (a retry after a lost commit answer) are skipped.
    log.append(&ours[..20]).unwrap();
    stale.append(&ours[10..25]).unwrap();
    assert_eq!(log.load().unwrap(), ours[..25]);

    // A gap is refused.
    let error = log.append(&ours[27..]).unwrap_err();
    assert!(
        matches!(error, cdp::identity::Error::InvalidOperation(_)),
        "{error}"
    );
    log.append(&ours[25..]).unwrap();
    assert_eq!(log.load().unwrap(), ours);
    log.append(&[]).unwrap();

    // A table altered behind the log's back is reported, not loaded with a hole.
    db.exec(&format!(
        "DELETE FROM {}.identity_log WHERE seq = 5",
        db.schema
    ))
    .await;
    let error = log.load().unwrap_err();
    assert!(error.to_string().contains("seq 5"), "{error}");
}

#[tokio::test]
async fn the_postgres_store_answers_like_the_memory_store() {
    let db = TestDb::new().await;
    let connection = db.connection("cdp-test-identity-store");
    let memory = Arc::new(MemoryProfileStore::new(store_config()));
    let pg = Arc::new(
        PostgresProfileStore::open(&connection, &options(&db, "p_"), store_config()).unwrap(),
    );
    let tee = Arc::new(Tee {
        memory: memory.clone(),
        pg: pg.clone(),
    });
    let resolver = Resolver::new(IdentityGraph::from_config(rules()).unwrap(), mapping())
        .unwrap()
        .with_store(tee)
        .unwrap();
    let mut seen = BTreeSet::new();
    for (i, b) in batches().into_iter().enumerate() {
        let resolved = resolver.resolve(b).await.unwrap();
        resolved_ids(&resolved, &mut seen);
        let ids = profile_ids(&resolver, &mut seen);
        assert_same(&format!("batch {i}"), &memory, pg.as_ref(), &ids);
    }

    // The merge: ada's two profiles are one, traits combined by the rules.
    let ada = pg
        .lookup(IdentifierKey::of(&Identifier::new("email", "ada@x.io")))
        .unwrap();
    assert_eq!(ada.merged_from.len(), 1);
    assert_eq!(ada.traits["orders"].value, json!(8));
    assert_eq!(ada.traits["spent"].value, json!(30.0));
    assert_eq!(ada.traits["ltv"].value, json!(20.25));
    assert_eq!(ada.traits["first_plan"].value, json!("free"));
    assert_eq!(ada.traits["name"].value, json!("Ada Lovelace"));
    assert_eq!(pg.get(ada.merged_from[0]).unwrap().id, ada.id);

    let merge = resolver.graph().merges()[0].clone();
    resolver.unmerge(merge.seq, 60).unwrap();
    let ids = profile_ids(&resolver, &mut seen);
    assert_same("unmerge", &memory, pg.as_ref(), &ids);
    assert_eq!(pg.get(merge.absorbed).unwrap().id, merge.absorbed);
    assert_ne!(
        pg.profile_id(IdentifierKey::of(&Identifier::new("anonymous_id", "a1"))),
        pg.profile_id(IdentifierKey::of(&Identifier::new("email", "ada@x.io")))
    );

    let resolved = resolver.resolve(after_unmerge()).await.unwrap();
    resolved_ids(&resolved, &mut seen);
    let ids = profile_ids(&resolver, &mut seen);
    assert_same("after unmerge", &memory, pg.as_ref(), &ids);

    // Anonymous ids expire; a5's profile had nothing else and retires.
    let (expired, _) = resolver.expire(90 * DAY).unwrap();
    assert!(expired > 0);
    let ids = profile_ids(&resolver, &mut seen);
    assert_same("expiry", &memory, pg.as_ref(), &ids);
    assert_eq!(
        pg.lookup(IdentifierKey::of(&Identifier::new("anonymous_id", "a5"))),
        None
    );

    let resolved = resolver.resolve(after_expiry()).await.unwrap();
    resolved_ids(&resolved, &mut seen);
    let ids = profile_ids(&resolver, &mut seen);
    assert_same("after expiry", &memory, pg.as_ref(), &ids);
    assert!(pg.len() >= 3);

    let states: Vec<String> = db
        .client
        .query(
            &format!(
                "SELECT DISTINCT state FROM {}.p_profiles ORDER BY 1",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(states, ["live", "merged", "retired"]);
}

#[tokio::test]
async fn a_second_handle_sees_the_first_ones_writes_and_writers_take_turns() {
    let db = TestDb::new().await;
    let opts = options(&db, "");
    let memory = Arc::new(MemoryProfileStore::new(store_config()));
    let first = Arc::new(
        PostgresProfileStore::open(&db.connection("cdp-test-store-1"), &opts, store_config())
            .unwrap(),
    );
    let resolver = Resolver::new(IdentityGraph::from_config(rules()).unwrap(), mapping())
        .unwrap()
        .with_store(Arc::new(Tee {
            memory: memory.clone(),
            pg: first.clone(),
        }))
        .unwrap();
    let second =
        PostgresProfileStore::open(&db.connection("cdp-test-store-2"), &opts, store_config())
            .unwrap();
    let mut seen = BTreeSet::new();
    for b in batches() {
        resolved_ids(&resolver.resolve(b).await.unwrap(), &mut seen);
        // What the first handle committed, the second one (another machine) reads.
        let ids = profile_ids(&resolver, &mut seen);
        assert_same("second handle", &memory, &second, &ids);
    }
    assert!(second.len() > 0);

    // While another writer holds the store's lock, an apply waits; then it goes through.
    let bob = second
        .profile_id(IdentifierKey::of(&Identifier::new("email", "bob@x.io")))
        .unwrap();
    let delta = ProfileDelta {
        observations: vec![Observation {
            profile: bob,
            at: 500,
            source: "crm".into(),
            traits: vec![("orders".into(), json!(10))],
        }],
        ..ProfileDelta::default()
    };
    let mut holder = connect().await;
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("\"{}\".\"profiles\"", db.schema)],
    )
    .await
    .unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let result = second.apply(&delta);
        done.send(()).unwrap();
        result.map(|()| second)
    });
    assert!(
        finished.recv_timeout(Duration::from_millis(500)).is_err(),
        "apply did not wait for the lock"
    );
    tx.commit().await.unwrap();
    finished.recv_timeout(Duration::from_secs(30)).unwrap();
    let second = writer.join().unwrap().unwrap();
    let orders = |store: &dyn ProfileStore| {
        store
            .lookup(IdentifierKey::of(&Identifier::new("email", "bob@x.io")))
            .unwrap()
            .traits["orders"]
            .value
            .clone()
    };
    assert_eq!(orders(&second), json!(15));
    assert_eq!(orders(first.as_ref()), json!(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_from_tasks_of_a_multi_thread_runtime() {
    let db = TestDb::new().await;
    let app = format!("cdp-test-identity-mt-{}", db.schema);
    let connection = db.connection(&app);
    let opts = options(&db, "mt_");
    let store = Arc::new(PostgresProfileStore::open(&connection, &opts, store_config()).unwrap());
    let resolver = Resolver::new(IdentityGraph::from_config(rules()).unwrap(), mapping())
        .unwrap()
        .with_log(Box::new(
            PostgresIdentityLog::open(&connection, &opts).unwrap(),
        ))
        .unwrap()
        .with_store(store.clone())
        .unwrap();
    let mut tasks = Vec::new();
    for b in batches() {
        let (resolver, store) = (resolver.clone(), store.clone());
        tasks.push(tokio::spawn(async move {
            resolver.resolve(b).await.unwrap();
            resolver.flush().await.unwrap();
            store.lookup(IdentifierKey::of(&Identifier::new("anonymous_id", "a1")))
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().is_some());
    }

    // The connections die; the next calls open new ones.
    db.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
    ))
    .await;
    while db
        .client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        > 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let key = IdentifierKey::of(&Identifier::new("email", "ada@x.io"));
    assert_eq!(
        store.profile_id(key),
        resolver.profile_of("email", "ada@x.io")
    );
    let more = batch(
        "web",
        &[("a9", Some("bob@x.io"), None, None, None, None, None, 90)],
    );
    // The worker noticed its dead connection while idle: the write goes through.
    resolver.resolve(more).await.unwrap();
    resolver.flush().await.unwrap();

    let log = PostgresIdentityLog::open(&connection, &opts).unwrap();
    let replayed =
        IdentityGraph::replay(Rules::new(rules()).unwrap(), log.load().unwrap()).unwrap();
    assert_eq!(replayed.digest(), resolver.graph().digest());
    for (id, members) in resolver.graph().partition() {
        for member in members {
            assert_eq!(
                store.profile_id(IdentifierKey::of(&member)),
                Some(id),
                "{member}"
            );
        }
    }
}
