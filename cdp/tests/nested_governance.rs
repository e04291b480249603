//! Governance reaches nested fields, end to end: raw Segment-style `identify` events from a
//! JSONL source, not flattened, under the quickstart's own policy and wiring (masking from
//! `Policy::transforms_for`, the `Policy::enforcer` flow check). The activation export
//! must hold every nested email and phone hashed (recomputed here with HMAC-SHA-256, not
//! with the library), no `context.ip`, and no raw personal value anywhere in its files;
//! the landing zone keeps everything; the decisions name every nested path and its rule.
//! Then a nested sensitive field that appears mid-run is masked before it reaches the
//! export by the policy's masking, and refused by the flow check past a hand-built one.

#![cfg(all(feature = "governance", feature = "jsonl", feature = "parquet"))]
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cdp::connectors::{JsonlDestination, JsonlSource, ParquetDestination};
use cdp::core::arrow::array::{AsArray, RecordBatch};
use cdp::core::memory::{MemoryDestination, MemorySource};
use cdp::core::{Source, Transform};
use cdp::governance::{Keys, Masking, Policy, Treatment};
use cdp::{Pipeline, RunMode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const POLICY: &str = include_str!("../../examples/examples/quickstart/policy.toml");
const KEY: &[u8] = b"quickstart demo key, not a secret!";
const EVENTS: usize = 200;

fn hmac_hex(value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(value.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The personal values of event `i`, each distinct from every other value in the file.
struct Person {
    email: String,
    traits_email: String,
    traits_phone: String,
    context_phone: String,
    contacts: [String; 2],
    ip: String,
}

fn person(i: usize) -> Person {
    Person {
        email: format!("ada.{i}@example.com"),
        traits_email: format!("Ada.{i}@Example.COM"),
        traits_phone: format!("+1 (519) 555-{i:04}"),
        context_phone: format!("+1519556{i:04}"),
        contacts: [
            format!("spouse.{i}@example.org"),
            format!("work.{i}@example.net"),
        ],
        ip: format!("203.0.{}.{}", i / 250, i % 250 + 1),
    }
}

fn identify(i: usize, with_nested_extra: bool) -> Value {
    let p = person(i);
    let mut traits = json!({
        "email": p.traits_email,
        "phone": p.traits_phone,
        "plan": if i.is_multiple_of(3) { "pro" } else { "free" },
        "logins": i,
    });
    if with_nested_extra {
        traits["backup_email"] = json!(format!("backup.{i}@example.com"));
    }
    json!({
        "type": "identify",
        "messageId": format!("m-{i}"),
        "userId": format!("u-{i}"),
        "email": p.email,
        "traits": traits,
        "contacts": [
            {"email": p.contacts[0], "relation": "spouse"},
            {"email": p.contacts[1], "relation": "work"},
        ],
        "context": {
            "ip": p.ip,
            "traits": {"phone": p.context_phone},
            "device": {"id": format!("device-{i}")},
            "library": {"name": "analytics.js", "version": "2.11.1"},
        },
        "timestamp": "2024-05-01T10:00:00Z",
    })
}

fn write_events(dir: &Path, name: &str, events: impl Iterator<Item = Value>) {
    fs::create_dir_all(dir).unwrap();
    let text: String = events.map(|e| format!("{e}\n")).collect();
    fs::write(dir.join(name), text).unwrap();
}

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path, extension));
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn jsonl_rows(dir: &Path) -> Vec<Value> {
    files(dir, "jsonl")
        .iter()
        .flat_map(|f| {
            fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn all_text(dir: &Path) -> String {
    files(dir, "jsonl")
        .iter()
        .map(|f| fs::read_to_string(f).unwrap())
        .collect()
}

fn policy() -> Policy {
    Policy::from_toml(POLICY)
        .unwrap()
        .with_keys(Keys::new().with_hash_key(KEY).unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `input` → landing (Parquet, everything) and activation (JSONL, masked), wired as the
/// quickstart wires them.
fn run(input: &Path, out: &Path) -> cdp::RunReport {
    let policy = policy();
    runtime().block_on(async {
        let source = JsonlSource::new(input)
            .with_stream("identify")
            .with_batch_size(64);
        let schema = source
            .discover()
            .await
            .unwrap()
            .stream("identify")
            .unwrap()
            .schema
            .clone();
        let landing = ParquetDestination::new(out.join("landing")).with_name("landing");
        let activation = JsonlDestination::new(out.join("activation")).with_name("activation");
        Pipeline::builder("nested-governance")
            .source(source)
            .destination_with(landing, policy.transforms_for("landing", &schema).unwrap())
            .destination_with(
                activation,
                policy.transforms_for("activation", &schema).unwrap(),
            )
            .check(policy.enforcer())
            .dead_letter(JsonlDestination::new(out.join("dead_letters")).with_name("dead_letters"))
            .mode(RunMode::Batch)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap()
    })
}

#[test]
fn nested_personal_data_of_identify_events_never_reaches_activation_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_events(
        &input,
        "identify.jsonl",
        (0..EVENTS).map(|i| identify(i, false)),
    );
    let out = dir.path().join("out");
    let report = run(&input, &out);
    assert_eq!(report.streams[0].rows_in, EVENTS as u64);
    assert_eq!(report.dead_letters, 0);

    // The export: every email and phone hashed where it was, the rest of each struct intact,
    // `context.ip` gone.
    let mut exported = jsonl_rows(&out.join("activation"));
    exported.sort_by_key(|r| {
        r["messageId"].as_str().unwrap()[2..]
            .parse::<usize>()
            .unwrap()
    });
    assert_eq!(exported.len(), EVENTS);
    for (i, row) in exported.iter().enumerate() {
        let p = person(i);
        assert_eq!(row["email"], hmac_hex(&p.email), "row {i}");
        assert_eq!(row["traits"]["email"], hmac_hex(&p.traits_email));
        assert_eq!(row["traits"]["phone"], hmac_hex(&p.traits_phone));
        assert_eq!(
            row["context"]["traits"]["phone"],
            hmac_hex(&p.context_phone)
        );
        for (c, contact) in p.contacts.iter().enumerate() {
            assert_eq!(row["contacts"][c]["email"], hmac_hex(contact));
            assert!(row["contacts"][c]["relation"].is_string());
        }
        let context = row["context"].as_object().unwrap();
        assert!(
            !context.contains_key("ip"),
            "context.ip reached activation: {row}"
        );
        assert_eq!(row["context"]["device"]["id"], format!("device-{i}"));
        assert_eq!(row["traits"]["logins"], i);
        assert_eq!(row["userId"], format!("u-{i}"));
    }
    // And nothing raw anywhere in the files, at any depth.
    let text = all_text(&out.join("activation"));
    for i in 0..EVENTS {
        let p = person(i);
        for raw in [
            &p.email,
            &p.traits_email,
            &p.traits_phone,
            &p.context_phone,
            &p.contacts[0],
            &p.contacts[1],
            &p.ip,
        ] {
            assert!(!text.contains(raw.as_str()), "raw `{raw}` in activation");
        }
    }

    // The landing zone (max_class restricted) keeps everything in the clear.
    let landed = parquet_rows(&out.join("landing"));
    assert_eq!(landed.len(), EVENTS);
    let landed_text = landed.join("\n");
    for i in [0, EVENTS / 2, EVENTS - 1] {
        let p = person(i);
        for raw in [&p.traits_email, &p.contacts[1], &p.ip, &p.context_phone] {
            assert!(
                landed_text.contains(raw.as_str()),
                "`{raw}` missing in landing"
            );
        }
    }
}

#[test]
fn decisions_name_every_nested_path_with_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_events(
        &input,
        "identify.jsonl",
        (0..10).map(|i| identify(i, false)),
    );
    let schema = runtime().block_on(async {
        JsonlSource::new(&input)
            .with_stream("identify")
            .discover()
            .await
            .unwrap()
            .stream("identify")
            .unwrap()
            .schema
            .clone()
    });
    let decisions = policy().decisions(&[("identify", schema)]).unwrap();
    let activation = |path: &str| {
        decisions
            .iter()
            .find(|d| d.destination == "activation" && d.field == path)
            .unwrap_or_else(|| panic!("no decision for `{path}`"))
    };
    for path in [
        "email",
        "traits.email",
        "traits.phone",
        "contacts[].email",
        "context.traits.phone",
    ] {
        let d = activation(path);
        assert_eq!(d.treatment.to_string(), "masked: hash", "{d}");
        assert_eq!(
            d.rule.to_string(),
            "destinations.activation.require.sensitive"
        );
    }
    let ip = activation("context.ip");
    assert_eq!(ip.treatment, Treatment::Mask(cdp::governance::Method::Drop));
    assert_eq!(
        ip.to_string(),
        "identify -> activation: `context.ip` is restricted (rule #4 `ip`) -> dropped \
         [destinations.activation.require.restricted]"
    );
    assert_eq!(activation("context.device.id").treatment, Treatment::Clear);
    assert_eq!(
        activation("contacts[].relation").treatment,
        Treatment::Clear
    );
}

/// `events` decoded into one batch, with the schema they imply.
fn decode(events: &[Value]) -> RecordBatch {
    use cdp::core::arrow::json::ReaderBuilder;
    use cdp::core::arrow::json::reader::infer_json_schema_from_iterator;
    let schema = infer_json_schema_from_iterator(events.iter().map(|e| Ok(e.clone()))).unwrap();
    let mut decoder = ReaderBuilder::new(Arc::new(schema))
        .build_decoder()
        .unwrap();
    decoder.serialize(events).unwrap();
    decoder.flush().unwrap().unwrap()
}

#[test]
fn a_nested_sensitive_field_appearing_mid_run_is_masked_before_activation() {
    // `traits.backup_email` first appears after the masking was built for the first schema:
    // the second batch is a schema change adding a nested field.
    let first: Vec<Value> = (0..50).map(|i| identify(i, false)).collect();
    let second: Vec<Value> = (50..100).map(|i| identify(i, true)).collect();
    let (first, second) = (decode(&first), decode(&second));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let policy = policy();
    let report = runtime().block_on(async {
        let activation = JsonlDestination::new(out.join("activation")).with_name("activation");
        Pipeline::builder("nested-drift")
            .source(MemorySource::new("identify", vec![first.clone(), second]))
            .destination_with(
                activation,
                policy
                    .transforms_for("activation", &first.schema())
                    .unwrap(),
            )
            .check(policy.enforcer())
            .mode(RunMode::Batch)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap()
    });
    assert_eq!(report.streams[0].schema_changes, 1);
    let exported = jsonl_rows(&out.join("activation"));
    assert_eq!(exported.len(), 100);
    let backups: Vec<&Value> = exported
        .iter()
        .filter_map(|r| r["traits"].get("backup_email"))
        .collect();
    assert_eq!(backups.len(), 50, "every backup_email arrives, masked");
    let text = all_text(&out.join("activation"));
    for i in 50..100 {
        let raw = format!("backup.{i}@example.com");
        assert!(!text.contains(&raw), "raw `{raw}` in activation");
        assert!(text.contains(&hmac_hex(&raw)));
    }
}

#[test]
fn a_nested_field_appearing_past_a_hand_built_masking_is_refused() {
    // Masking listed by hand for the first schema does not cover `traits.backup_email`: the
    // flow check stops the run at the schema change, before the export receives it.
    let first: Vec<Value> = (0..50).map(|i| identify(i, false)).collect();
    let second: Vec<Value> = (50..100).map(|i| identify(i, true)).collect();
    let (first, second) = (decode(&first), decode(&second));
    let policy = policy();
    let listed = policy
        .masking_for("activation", &first.schema())
        .unwrap()
        .actions_for(&first.schema())
        .unwrap()
        .into_iter()
        .fold(Masking::new("listed", policy.keys().clone()), |m, a| {
            m.field(a.field, a.class, a.method)
        });
    let export = MemoryDestination::new("activation");
    let handle = export.handle();
    let error = runtime()
        .block_on(
            Pipeline::builder("nested-drift")
                .source(MemorySource::new("identify", vec![first, second]))
                .destination_with(export, vec![Box::new(listed) as Box<dyn Transform>])
                .check(policy.enforcer())
                .build()
                .unwrap()
                .run(),
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("`traits.backup_email`"), "{error}");
    assert!(
        error.contains("destinations.activation.require.sensitive"),
        "{error}"
    );
    let leaked = handle.batches().iter().any(|b| {
        b.data
            .column_by_name("traits")
            .and_then(|t| {
                t.as_struct_opt()
                    .and_then(|t| t.column_by_name("backup_email"))
            })
            .is_some()
    });
    assert!(!leaked, "the export received traits.backup_email");
}

/// Every landed Parquet row as JSON text.
fn parquet_rows(dir: &Path) -> Vec<String> {
    use cdp::core::arrow::json::LineDelimitedWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut rows = Vec::new();
    for file in files(dir, "parquet") {
        let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let mut buf = Vec::new();
            let mut writer = LineDelimitedWriter::new(&mut buf);
            writer.write(&batch).unwrap();
            writer.finish().unwrap();
            rows.extend(String::from_utf8(buf).unwrap().lines().map(str::to_string));
        }
    }
    rows
}

#[test]
fn unknown_keys_in_the_overflow_column_cannot_smuggle_data_to_activation() {
    // Keys first seen after the sample go to the overflow column (JSON text): the policy
    // cannot see what it holds, so it counts as `restricted` and activation does not get it.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let events = (0..60).map(|i| {
        let mut e = identify(i, false);
        if i >= 20 {
            e["secret_contact"] = json!(format!("hidden.{i}@example.com"));
        }
        e
    });
    write_events(&input, "identify.jsonl", events);
    let out = dir.path().join("out");
    let policy = policy();
    runtime().block_on(async {
        let source = JsonlSource::new(&input)
            .with_stream("identify")
            .with_infer_records(10)
            .with_new_fields(cdp::connectors::NewFields::Overflow);
        let schema = source.discover().await.unwrap().streams[0].schema.clone();
        let landing = JsonlDestination::new(out.join("landing")).with_name("landing");
        let activation = JsonlDestination::new(out.join("activation")).with_name("activation");
        Pipeline::builder("overflow-governance")
            .source(source)
            .destination_with(landing, policy.transforms_for("landing", &schema).unwrap())
            .destination_with(
                activation,
                policy.transforms_for("activation", &schema).unwrap(),
            )
            .check(policy.enforcer())
            .mode(RunMode::Batch)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap()
    });
    let landed = all_text(&out.join("landing"));
    let exported = all_text(&out.join("activation"));
    assert_eq!(jsonl_rows(&out.join("activation")).len(), 60);
    for i in 20..60 {
        let raw = format!("hidden.{i}@example.com");
        assert!(landed.contains(&raw), "the landing zone keeps `{raw}`");
        assert!(!exported.contains(&raw), "`{raw}` reached activation");
    }
    assert!(!exported.contains("_overflow"));
}
