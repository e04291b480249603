//! Must-show 3: erase an identifier, re-ingest events carrying it through a pipeline, and
//! show nothing of that person is in the profile store or the destinations afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cdp_core::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use cdp_core::arrow::compute::cast;
use cdp_core::arrow::datatypes::{DataType, Field, Schema};
use cdp_core::memory::{MemoryDestination, MemoryHandle, MemorySource};
use cdp_core::{Batch, Destination, Op, Pipeline, StreamSpec, WriteOutcome, async_trait};
use cdp_governance::{
    AuditKind, AuditLog, Eraser, ErasureTarget, HashKey, Identifier, Keys, MemoryAuditLog, Policy,
    Suppress, SuppressionList, TargetErasure,
};

use crate::common::{HASH_KEY, runtime};

const SUPPRESSION_KEY: &[u8] = b"suppression-list-key-32-bytes!!!";

#[derive(Debug, Clone, Default)]
struct Profile {
    email: Option<String>,
    anonymous_ids: BTreeSet<String>,
    events: u64,
}

/// A profile store: a destination that upserts profiles by `user_id` (and deletes them on
/// tombstones), and an erasure target. The in-memory stand-in for `cdp-identity`'s store.
#[derive(Debug, Clone, Default)]
struct Profiles {
    inner: Arc<Mutex<BTreeMap<String, Profile>>>,
}

impl Profiles {
    fn snapshot(&self) -> BTreeMap<String, Profile> {
        self.inner.lock().unwrap().clone()
    }
}

#[async_trait]
impl Destination for Profiles {
    fn name(&self) -> &str {
        "profiles"
    }

    async fn prepare(&mut self, _stream: &StreamSpec) -> cdp_core::Result<()> {
        Ok(())
    }

    async fn write(&mut self, batch: &Batch) -> cdp_core::Result<WriteOutcome> {
        let ops = batch.ops()?;
        let text = |name: &str| {
            batch
                .data
                .column_by_name(name)
                .map(|c| cast(c, &DataType::Utf8).unwrap().as_string::<i32>().clone())
        };
        let (users, emails, anons) = (text("user_id"), text("email"), text("anonymous_id"));
        let mut profiles = self.inner.lock().unwrap();
        for (row, op) in ops.iter().enumerate() {
            let Some(user) = users
                .as_ref()
                .filter(|u| u.is_valid(row))
                .map(|u| u.value(row))
            else {
                continue;
            };
            match op {
                Op::Delete => {
                    profiles.remove(user);
                }
                Op::Upsert => {
                    let profile = profiles.entry(user.to_string()).or_default();
                    profile.events += 1;
                    if let Some(e) = emails.as_ref().filter(|e| e.is_valid(row)) {
                        profile.email = Some(e.value(row).to_string());
                    }
                    if let Some(a) = anons.as_ref().filter(|a| a.is_valid(row)) {
                        profile.anonymous_ids.insert(a.value(row).to_string());
                    }
                }
            }
        }
        Ok(WriteOutcome::default())
    }

    async fn flush(&mut self, _epoch: u64) -> cdp_core::Result<()> {
        Ok(())
    }
}

#[async_trait]
impl ErasureTarget for Profiles {
    fn name(&self) -> &str {
        "profiles"
    }

    async fn erase(&self, identifier: &Identifier) -> cdp_governance::Result<TargetErasure> {
        let mut profiles = self.inner.lock().unwrap();
        let wanted = cdp_core::Vocabulary::standard()
            .normalise(&identifier.kind, &identifier.value)
            .unwrap_or_default();
        let found = profiles
            .iter()
            .find(|(user, p)| match identifier.kind.as_str() {
                "user_id" => **user == wanted,
                "email" => p.email.as_deref().map(str::to_lowercase) == Some(wanted.clone()),
                "anonymous_id" => p.anonymous_ids.contains(&wanted),
                _ => false,
            })
            .map(|(user, _)| user.clone());
        let mut linked = Vec::new();
        if let Some(user) = &found
            && let Some(profile) = profiles.remove(user)
        {
            linked.push(Identifier::new("user_id", user.clone()));
            linked.extend(profile.email.map(|e| Identifier::new("email", e)));
            linked.extend(
                profile
                    .anonymous_ids
                    .into_iter()
                    .map(|a| Identifier::new("anonymous_id", a)),
            );
        }
        Ok(TargetErasure {
            target: "profiles".into(),
            records_removed: u64::from(found.is_some()),
            linked,
        })
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("anonymous_id", DataType::Utf8, true),
        Field::new("email", DataType::Utf8, true),
        Field::new("event", DataType::Utf8, false),
    ]))
}

type Row<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str);

fn events(rows: &[Row<'_>]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
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
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

const POLICY: &str = r#"
default_class = "internal"
[[classify]]
pattern = "email"
class = "sensitive"
[destinations.warehouse]
max_class = "sensitive"
purposes = ["analytics"]
[destinations.ads]
max_class = "internal"
purposes = ["marketing"]
require = { sensitive = "hash" }
[destinations.profiles]
max_class = "sensitive"
purposes = ["personalisation"]
"#;

struct World {
    policy: Policy,
    list: Arc<SuppressionList>,
    warehouse: MemoryDestination,
    ads: MemoryDestination,
    profiles: Profiles,
}

impl World {
    fn run(&self, id: &str, data: RecordBatch) {
        let suppress = Suppress::new(self.list.clone())
            .column("user_id", "user_id")
            .column("anonymous_id", "anonymous_id")
            .column("email", "email");
        let schema = data.schema();
        let pipeline = Pipeline::builder(id)
            .source(MemorySource::new("events", vec![data]))
            .transform(suppress)
            .destination(self.warehouse.clone())
            .destination_with(
                self.ads.clone(),
                self.policy.transforms_for("ads", &schema).unwrap(),
            )
            .destination(self.profiles.clone())
            .check(self.policy.enforcer())
            .build()
            .unwrap();
        runtime().block_on(pipeline.run()).unwrap();
    }
}

/// Rows a destination holds once its upserts and deletes are applied, each rendered as its
/// user cells. A delete row removes every row sharing a value with it in any column it sets
/// (destinations delete by whichever key the tombstone carries).
fn materialise(handle: &MemoryHandle) -> Vec<Vec<String>> {
    let mut rows: Vec<BTreeMap<String, String>> = Vec::new();
    for batch in handle.batches() {
        let ops = batch.ops().unwrap();
        let schema = batch.data.schema();
        let columns: Vec<(String, StringArray)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.name().starts_with("_cdp_"))
            .map(|(i, f)| {
                let text = cast(batch.data.column(i), &DataType::Utf8).unwrap();
                (f.name().clone(), text.as_string::<i32>().clone())
            })
            .collect();
        for (row, op) in ops.iter().enumerate() {
            let cells: BTreeMap<String, String> = columns
                .iter()
                .filter(|(_, c)| c.is_valid(row))
                .map(|(name, c)| (name.clone(), c.value(row).to_string()))
                .collect();
            match op {
                Op::Delete => {
                    rows.retain(|kept| !cells.iter().any(|(k, v)| kept.get(k) == Some(v)))
                }
                Op::Upsert => rows.push(cells),
            }
        }
    }
    rows.into_iter()
        .map(|cells| cells.into_values().collect())
        .collect()
}

#[test]
fn erased_person_is_gone_everywhere_and_stays_gone_after_reingest() {
    let audit = Arc::new(MemoryAuditLog::new());
    let hash = HashKey::new(HASH_KEY).unwrap();
    let world = World {
        policy: Policy::from_toml(POLICY)
            .unwrap()
            .with_keys(Keys::new().with_hash_key(HASH_KEY).unwrap())
            .with_audit(audit.clone())
            .unwrap(),
        list: Arc::new(SuppressionList::new(HashKey::new(SUPPRESSION_KEY).unwrap())),
        warehouse: MemoryDestination::new("warehouse"),
        ads: MemoryDestination::new("ads"),
        profiles: Profiles::default(),
    };

    // 1. Alice and Bob arrive; Alice under two devices.
    world.run(
        "ingest",
        events(&[
            (None, Some("anon-a1"), None, "Page Viewed"),
            (
                Some("u-alice"),
                Some("anon-a1"),
                Some("alice@example.com"),
                "Signed Up",
            ),
            (
                Some("u-alice"),
                Some("anon-a2"),
                Some("alice@example.com"),
                "Order Completed",
            ),
            (
                Some("u-bob"),
                Some("anon-b1"),
                Some("bob@example.com"),
                "Signed Up",
            ),
        ]),
    );
    assert!(world.profiles.snapshot().contains_key("u-alice"));
    let alice_everything = [
        "u-alice".to_string(),
        "anon-a1".to_string(),
        "anon-a2".to_string(),
        "alice@example.com".to_string(),
        hash.hash_hex(b"alice@example.com"),
    ];
    let holds_alice = |cells: &Vec<String>| cells.iter().any(|c| alice_everything.contains(c));
    assert!(materialise(&world.ads.handle()).iter().any(holds_alice));

    // 2. Alice asks to be forgotten, by her email (in another case).
    let eraser = Eraser::new(world.list.clone())
        .target(Arc::new(world.profiles.clone()))
        .audit(audit.clone());
    let receipt = runtime()
        .block_on(eraser.erase(
            &Identifier::new("email", "Alice@Example.com"),
            "dpo@company",
        ))
        .unwrap();
    assert_eq!(receipt.targets[0].records_removed, 1);
    let suppressed: BTreeSet<String> = receipt.suppressed.iter().map(ToString::to_string).collect();
    for id in [
        "user_id:u-alice",
        "anonymous_id:anon-a1",
        "anonymous_id:anon-a2",
        "email:alice@example.com",
    ] {
        assert!(
            suppressed.contains(id),
            "{id} not suppressed: {suppressed:?}"
        );
    }
    assert!(!world.profiles.snapshot().contains_key("u-alice"));

    // 3. Tombstones to every destination, through the same per-destination transforms,
    //    keyed by every identifier column: her pre-login events carry no user id.
    let deletes = receipt
        .tombstones(
            &schema(),
            &[
                ("user_id", "user_id"),
                ("anonymous_id", "anonymous_id"),
                ("email", "email"),
            ],
        )
        .unwrap();
    world.run("tombstones", deletes);

    // 4. Alice's devices and email come back in new events, alongside Bob's.
    world.run(
        "reingest",
        events(&[
            (None, Some("anon-a2"), None, "Page Viewed"),
            (Some("u-alice"), None, None, "Product Viewed"),
            (
                None,
                Some("anon-a9"),
                Some("ALICE@example.com "),
                "Newsletter Signup",
            ),
            (
                Some("u-bob"),
                Some("anon-b1"),
                Some("bob@example.com"),
                "Order Completed",
            ),
        ]),
    );

    // Nothing of Alice in the profile store ...
    let profiles = world.profiles.snapshot();
    assert!(!profiles.contains_key("u-alice"));
    assert!(
        profiles
            .values()
            .all(|p| p.email.as_deref() != Some("alice@example.com"))
    );
    assert_eq!(profiles["u-bob"].events, 2);
    // ... or in any destination, raw or hashed, once deletes are applied ...
    for (name, handle) in [
        ("warehouse", world.warehouse.handle()),
        ("ads", world.ads.handle()),
    ] {
        let rows = materialise(&handle);
        assert!(
            !rows.iter().any(holds_alice),
            "{name} still holds Alice: {rows:?}"
        );
        assert!(
            rows.iter().any(|r| r.contains(&"u-bob".to_string())),
            "{name} lost Bob"
        );
        // ... and the re-ingest run delivered nothing of hers at all.
        let last = handle.batches().last().unwrap().clone();
        let reingested = materialise_one(&last);
        assert_eq!(reingested.len(), 1, "{name}: only Bob's event");
        assert!(!reingested.iter().any(holds_alice));
    }

    // The audit log says who erased what, by digest only, and is intact.
    let entries = audit.entries().unwrap();
    let erasure = entries
        .iter()
        .find(|e| e.kind == AuditKind::Erasure)
        .unwrap();
    assert_eq!(erasure.actor, "dpo@company");
    assert!(
        !erasure.detail.to_lowercase().contains("alice"),
        "{}",
        erasure.detail
    );
    assert!(audit.verify().unwrap().is_intact());

    // After a restart, the suppression list is rebuilt from the audit log.
    let restored = SuppressionList::new(HashKey::new(SUPPRESSION_KEY).unwrap());
    assert_eq!(restored.restore_from_audit(audit.as_ref()).unwrap(), 4);
    assert!(
        restored
            .contains(&Identifier::new("anonymous_id", "anon-a2"))
            .unwrap()
    );
    assert!(
        !restored
            .contains(&Identifier::new("user_id", "u-bob"))
            .unwrap()
    );
}

fn materialise_one(batch: &Batch) -> Vec<Vec<String>> {
    let handle = MemoryDestination::new("one");
    let h = handle.handle();
    let mut d = handle;
    runtime().block_on(async {
        d.write(batch).await.unwrap();
        d.flush(1).await.unwrap();
        d.commit(1).await.unwrap();
    });
    materialise(&h)
}
