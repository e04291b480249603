//! Consent kept per profile and purpose, enforced per destination in a real pipeline; and
//! governed reads applying the caller's masking.

use std::sync::Arc;

use cdp_core::arrow::array::{AsArray, RecordBatch, StringArray, TimestampSecondArray};
use cdp_core::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use cdp_core::memory::{MemoryDestination, MemorySource};
use cdp_core::{Pipeline, Transform};
use cdp_governance::{
    Access, AccessOutcome, AccessRequest, AuditKind, AuditLog, ConsentCapture, ConsentStore,
    DataClass, Keys, MemoryAuditLog, Method, Policy,
};

use crate::common::{HASH_KEY, received, runtime};

const POLICY: &str = r#"
default_class = "internal"
[[classify]]
pattern = "email"
class = "sensitive"
[[classify]]
pattern = "ssn"
class = "restricted"
[destinations.warehouse]
max_class = "sensitive"
purposes = ["analytics"]
[destinations.ads]
max_class = "internal"
purposes = ["marketing"]
require = { sensitive = "hash" }
"#;

fn policy() -> Policy {
    Policy::from_toml(POLICY)
        .unwrap()
        .with_keys(Keys::new().with_hash_key(HASH_KEY).unwrap())
}

/// Events at consecutive seconds from `start`.
fn events(start: i64, rows: &[(&str, Option<&str>, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("consent", DataType::Utf8, true),
        Field::new("event", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Second, None),
            false,
        ),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampSecondArray::from_iter_values(
                (0..rows.len() as i64).map(|i| 1_700_000_000 + start + i),
            )),
        ],
    )
    .unwrap()
}

#[test]
fn destinations_receive_only_rows_whose_profile_consented_to_their_purposes() {
    let policy = policy();
    let store = Arc::new(ConsentStore::new());
    let first = events(
        0,
        &[
            (
                "ann",
                Some(r#"{"Advertising": true, "Analytics": true}"#),
                "Signed Up",
            ),
            (
                "ben",
                Some(r#"{"Advertising": false, "Analytics": true}"#),
                "Signed Up",
            ),
            ("cat", None, "Page Viewed"),
        ],
    );
    // Ann withdraws marketing consent; her later events stay out of ads.
    let second = events(
        10,
        &[
            ("ann", Some(r#"{"Advertising": false}"#), "Consent Changed"),
            ("ann", None, "Order Completed"),
            ("ben", None, "Order Completed"),
        ],
    );
    let schema = first.schema();
    let warehouse = MemoryDestination::new("warehouse");
    let ads = MemoryDestination::new("ads");
    let (w, a) = (warehouse.handle(), ads.handle());
    let with_consent = |dest: &str| -> Vec<Box<dyn Transform>> {
        let mut t: Vec<Box<dyn Transform>> = vec![Box::new(
            policy
                .consent_filter(dest, store.clone(), "user_id")
                .time_column("timestamp"),
        )];
        t.extend(policy.transforms_for(dest, &schema).unwrap());
        t
    };
    let pipeline = Pipeline::builder("consent")
        .source(MemorySource::new("events", vec![first, second]))
        .transform(
            ConsentCapture::new(store.clone(), "user_id", "consent")
                .category("Advertising", "marketing")
                .category("Analytics", "analytics")
                .time_column("timestamp"),
        )
        .destination_with(warehouse, with_consent("warehouse"))
        .destination_with(ads, with_consent("ads"))
        .check(policy.enforcer())
        .build()
        .unwrap();
    runtime().block_on(pipeline.run()).unwrap();

    let pairs = |h| {
        let users = received(h, "user_id").unwrap();
        let events = received(h, "event").unwrap();
        users
            .as_string::<i32>()
            .iter()
            .zip(events.as_string::<i32>().iter())
            .map(|(u, e)| format!("{}:{}", u.unwrap(), e.unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pairs(&a),
        ["ann:Signed Up"],
        "cat never consented, ben refused, ann withdrew"
    );
    assert_eq!(
        pairs(&w),
        [
            "ann:Signed Up",
            "ben:Signed Up",
            "ann:Consent Changed",
            "ann:Order Completed",
            "ben:Order Completed"
        ]
    );
}

#[test]
fn governed_reads_apply_the_callers_masking_and_are_audited() {
    let audit = Arc::new(MemoryAuditLog::new());
    let policy = policy().with_audit(audit.clone()).unwrap();
    let access = Access::from_toml(
        r#"
        [roles.analyst]
        grants = [{ max_class = "internal", purposes = ["analytics"], masked = { sensitive = "hash" } }]
        [roles.support]
        grants = [{ streams = ["profiles"], max_class = "sensitive", purposes = ["support"] }]
        [principals]
        alice = { roles = ["analyst"] }
        sam = { roles = ["support"] }
        "#,
        policy.clone(),
    )
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("ssn", DataType::Utf8, true),
    ]));
    let profile = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["u1"])),
            Arc::new(StringArray::from(vec!["ada@example.com"])),
            Arc::new(StringArray::from(vec!["123-45-6789"])),
        ],
    )
    .unwrap();

    let analyst = access
        .read("alice", "analytics", "profiles", &profile)
        .unwrap();
    let names: Vec<_> = analyst
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["user_id", "email"], "restricted ssn removed");
    let email = analyst.column(1).as_string::<i32>().value(0).to_string();
    assert_eq!(
        email,
        policy
            .keys()
            .hash_key()
            .unwrap()
            .hash_hex(b"ada@example.com")
    );

    let support = access.read("sam", "support", "profiles", &profile).unwrap();
    assert_eq!(
        support.column(1).as_string::<i32>().value(0),
        "ada@example.com"
    );
    assert!(support.column_by_name("ssn").is_none());

    let wrong_purpose = access
        .read("sam", "marketing", "profiles", &profile)
        .unwrap();
    assert_eq!(wrong_purpose.num_columns(), 0);

    let d = access.authorize(&AccessRequest {
        principal: "alice",
        purpose: "analytics",
        stream: "profiles",
        field: "email",
        class: DataClass::Sensitive,
    });
    assert_eq!(d.outcome, AccessOutcome::Masked(Method::Hash));
    assert!(
        d.to_string()
            .starts_with("allow masked (hash): role `analyst`"),
        "{d}"
    );

    let reads: Vec<_> = audit
        .entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == AuditKind::GovernedRead)
        .collect();
    assert_eq!(reads.len(), 3);
    assert_eq!(reads[0].actor, "alice");
    assert!(audit.verify().unwrap().is_intact());
}
