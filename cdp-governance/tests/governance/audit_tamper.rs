//! Must-show 2: an audit log file edited, truncated in the middle and reordered; each
//! tampering is detected and located by `verify()`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cdp_core::Pipeline;
use cdp_core::arrow::array::{Int64Array, StringArray};
use cdp_core::arrow::datatypes::{DataType, Field, Schema};
use cdp_core::memory::{MemoryDestination, MemorySource};
use cdp_governance::{
    AuditEvent, AuditKind, AuditLog, Keys, Policy, SqliteAuditLog, Tampering, verify_with_anchor,
};
use rusqlite::Connection;

use crate::common::{HASH_KEY, batch, runtime};

/// A real log: a policy adopted, a governed pipeline run (its decisions), an erasure and a
/// merge recorded — twelve entries.
fn written_log(dir: &Path) -> PathBuf {
    let path = dir.join("audit.db");
    let log = Arc::new(SqliteAuditLog::open(&path).unwrap());
    let policy = Policy::from_toml(
        r#"
        default_class = "internal"
        [[classify]]
        pattern = "email"
        class = "sensitive"
        [destinations.ads]
        max_class = "internal"
        require = { sensitive = "hash" }
        [destinations.warehouse]
        max_class = "sensitive"
        "#,
    )
    .unwrap()
    .with_keys(Keys::new().with_hash_key(HASH_KEY).unwrap())
    .with_audit(log.clone())
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
    ]));
    let data = batch(
        &schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["a@x.io", "b@x.io"])),
        ],
    );
    runtime().block_on(async {
        Pipeline::builder("audited")
            .source(MemorySource::new("users", vec![data]))
            .destination_with(
                MemoryDestination::new("ads"),
                policy.transforms_for("ads", &schema).unwrap(),
            )
            .destination(MemoryDestination::new("warehouse"))
            .check(policy.enforcer())
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
    });
    for i in 0..7 {
        let kind = if i % 2 == 0 {
            AuditKind::Erasure
        } else {
            AuditKind::Merge
        };
        log.append(AuditEvent::new(
            kind,
            "test",
            format!("subject {i}"),
            serde_json::json!({ "i": i }),
        ))
        .unwrap();
    }
    let v = log.verify().unwrap();
    assert!(v.is_intact(), "{v}");
    // Flows are checked when the run starts and again when the first batch fixes the schema.
    assert_eq!(v.entries, 12, "policy change + 4 decisions + 7 events");
    path
}

/// A copy of the log file with the append-only triggers dropped, as an attacker with the
/// file would do.
fn tamper(original: &Path, name: &str, sql: &str) -> PathBuf {
    let copy = original.with_file_name(name);
    std::fs::copy(original, &copy).unwrap();
    let conn = Connection::open(&copy).unwrap();
    conn.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .unwrap();
    conn.execute_batch(sql).unwrap();
    copy
}

fn problems(path: &Path) -> Vec<Tampering> {
    let v = SqliteAuditLog::open(path).unwrap().verify().unwrap();
    assert!(!v.is_intact());
    // The report says what is wrong in words, with the entry's number.
    assert!(v.to_string().contains("entr"), "{v}");
    v.problems
}

#[test]
fn edit_is_detected_and_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_log(dir.path());
    let edited = tamper(
        &path,
        "edited.db",
        "UPDATE audit_log SET detail = '{\"allowed\":true}' WHERE seq = 3;",
    );
    assert_eq!(
        problems(&edited),
        [Tampering::Edited {
            seq: 3,
            position: 2
        }]
    );
}

#[test]
fn edit_with_recomputed_hash_is_detected_at_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_log(dir.path());
    // Rewrite entry 5 and give it a hash matching its new content.
    let copy = tamper(&path, "rehashed.db", "SELECT 1;");
    let log = SqliteAuditLog::open(&copy).unwrap();
    let mut entry = log.entries().unwrap().remove(4);
    drop(log);
    entry.subject = "nobody".into();
    let rehashed = entry.compute_hash();
    let conn = Connection::open(&copy).unwrap();
    conn.execute_batch("DROP TRIGGER audit_log_no_update;")
        .unwrap();
    conn.execute(
        "UPDATE audit_log SET subject = 'nobody', hash = ?1 WHERE seq = 5",
        [rehashed.to_string()],
    )
    .unwrap();
    drop(conn);
    assert_eq!(
        problems(&copy),
        [Tampering::BrokenLink {
            seq: 6,
            previous: 5
        }]
    );
}

#[test]
fn truncation_in_the_middle_is_detected_and_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_log(dir.path());
    let truncated = tamper(
        &path,
        "truncated.db",
        "DELETE FROM audit_log WHERE seq IN (4, 5, 6);",
    );
    assert_eq!(
        problems(&truncated),
        [Tampering::Deleted { first: 4, last: 6 }]
    );
}

#[test]
fn reordering_is_detected_and_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_log(dir.path());
    // Swap the contents of the rows holding entries 2 and 7 (storage positions 1 and 6).
    let swap = "
        CREATE TEMP TABLE a AS SELECT * FROM audit_log WHERE seq = 2;
        CREATE TEMP TABLE b AS SELECT * FROM audit_log WHERE seq = 7;
        UPDATE audit_log SET (seq, at_micros, kind, actor, subject, detail, prev_hash, hash) =
            (SELECT seq, at_micros, kind, actor, subject, detail, prev_hash, hash FROM b)
            WHERE position = (SELECT position FROM a);
        UPDATE audit_log SET (seq, at_micros, kind, actor, subject, detail, prev_hash, hash) =
            (SELECT seq, at_micros, kind, actor, subject, detail, prev_hash, hash FROM a)
            WHERE position = (SELECT position FROM b);
    ";
    let reordered = tamper(&path, "reordered.db", swap);
    assert_eq!(
        problems(&reordered),
        [
            Tampering::Reordered {
                seq: 7,
                position: 1
            },
            Tampering::Reordered {
                seq: 2,
                position: 6
            },
        ]
    );
}

#[test]
fn tail_truncation_is_caught_by_an_anchor_kept_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_log(dir.path());
    let anchor = SqliteAuditLog::open(&path)
        .unwrap()
        .anchor()
        .unwrap()
        .unwrap();
    let cut = tamper(&path, "cut.db", "DELETE FROM audit_log WHERE seq >= 9;");
    let entries = SqliteAuditLog::open(&cut).unwrap().entries().unwrap();
    let v = verify_with_anchor(&entries, &anchor);
    assert!(
        matches!(v.problems[..], [Tampering::AnchorMismatch { seq: 12, .. }]),
        "{v}"
    );
}

#[test]
fn decisions_and_policy_changes_are_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_log(dir.path());
    let entries = SqliteAuditLog::open(&path).unwrap().entries().unwrap();
    assert_eq!(entries[0].kind, AuditKind::PolicyChange);
    assert_eq!(entries[1].kind, AuditKind::PolicyDecision);
    let decision = entries[1].detail_json().unwrap();
    assert_eq!(decision["allowed"], serde_json::json!(true));
}
