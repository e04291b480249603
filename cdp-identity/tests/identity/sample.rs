//! The quickstart's sample company (web and mobile events, CRM and billing exports) through
//! the resolver, checked against the ground truth: no profile may hold two people.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use cdp_core::Batch;
use cdp_identity::{ColumnMapping, Identifier, IdentifierColumn, IdentityGraph, Resolver};
use cdp_testkit::sample::{self, SampleConfig};

fn rules() -> cdp_identity::RulesConfig {
    serde_json::from_value(serde_json::json!({
        "identifiers": [
            {"name": "user_id", "priority": 1, "limit": 1},
            {"name": "crm_id", "priority": 2, "limit": 2},
            {"name": "email", "priority": 3, "limit": 2, "normaliser": "email"},
            {"name": "phone", "priority": 4, "limit": 2,
             "normaliser": {"phone": {"default_region": "US"}}},
            {"name": "device_id", "priority": 5, "limit": 4},
            {"name": "anonymous_id", "priority": 6, "limit": 4, "ttl": "90d", "anonymous": true}
        ],
        "blocked_values": [sample::TEST_EMAIL]
    }))
    .unwrap()
}

fn json_batches(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap();
    let (schema, _) =
        arrow_json::reader::infer_json_schema_from_seekable(BufReader::new(&file), None).unwrap();
    let file = File::open(path).unwrap();
    arrow_json::ReaderBuilder::new(Arc::new(schema))
        .with_batch_size(4096)
        .build(BufReader::new(file))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn csv_batches(path: &Path) -> Vec<RecordBatch> {
    let format = arrow_csv::reader::Format::default().with_header(true);
    let (schema, _) = format
        .infer_schema(BufReader::new(File::open(path).unwrap()), None)
        .unwrap();
    // Identifiers are text, whatever they look like.
    let schema = arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| arrow::datatypes::Field::new(f.name(), arrow::datatypes::DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    arrow_csv::ReaderBuilder::new(Arc::new(schema))
        .with_format(format)
        .with_batch_size(4096)
        .build(File::open(path).unwrap())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

const EVENT_COLUMNS: [(&str, &str); 4] = [
    ("anonymousId", "anonymous_id"),
    ("userId", "user_id"),
    ("context.device.id", "device_id"),
    ("context.traits.email", "email"),
];
const CRM_COLUMNS: [(&str, &str); 3] =
    [("crm_id", "crm_id"), ("email", "email"), ("phone", "phone")];
const BILLING_COLUMNS: [(&str, &str); 2] = [("crm_id", "crm_id"), ("customer_email", "email")];

/// A text column by dotted path.
fn text(data: &RecordBatch, path: &str) -> Option<StringArray> {
    let mut parts = path.split('.');
    let mut current = data.column_by_name(parts.next()?)?.clone();
    for part in parts {
        current = current.as_struct_opt()?.column_by_name(part)?.clone();
    }
    Some(current.as_string_opt::<i32>()?.clone())
}

/// Plain union–find over identifiers.
#[derive(Default)]
struct Ideal {
    ids: HashMap<Identifier, usize>,
    parent: Vec<usize>,
}

impl Ideal {
    fn id(&mut self, id: &Identifier) -> usize {
        if let Some(&i) = self.ids.get(id) {
            return i;
        }
        let i = self.parent.len();
        self.ids.insert(id.clone(), i);
        self.parent.push(i);
        i
    }

    fn find(&self, mut i: usize) -> usize {
        while self.parent[i] != i {
            i = self.parent[i];
        }
        i
    }

    fn link(&mut self, row: &[Identifier]) {
        let Some(first) = row.first() else { return };
        let a = self.id(first);
        for other in &row[1..] {
            let b = self.id(other);
            let (ra, rb) = (self.find(a), self.find(b));
            self.parent[rb] = ra;
        }
    }

    fn root(&mut self, id: &Identifier) -> usize {
        let i = self.id(id);
        self.find(i)
    }
}

#[test]
fn sample_company_stitches_without_over_merging() {
    let dir = tempfile::tempdir().unwrap();
    let config = SampleConfig {
        persons: 1_000,
        events: 20_000,
        ..SampleConfig::default()
    };
    let manifest = sample::generate(dir.path(), &config).unwrap();

    let events = ColumnMapping::new(vec![
        IdentifierColumn::new("anonymousId", "anonymous_id"),
        IdentifierColumn::new("userId", "user_id"),
        IdentifierColumn::new("context.device.id", "device_id"),
        IdentifierColumn::new("context.traits.email", "email"),
    ])
    .timestamp("timestamp");
    let web = Resolver::new(IdentityGraph::from_config(rules()).unwrap(), events).unwrap();
    let crm = web
        .with_mapping(
            ColumnMapping::new(vec![
                IdentifierColumn::new("crm_id", "crm_id"),
                IdentifierColumn::new("email", "email"),
                IdentifierColumn::new("phone", "phone"),
            ])
            .timestamp("updated_at"),
        )
        .unwrap();
    let billing = web
        .with_mapping(
            ColumnMapping::new(vec![
                IdentifierColumn::new("crm_id", "crm_id"),
                IdentifierColumn::new("customer_email", "email"),
            ])
            .timestamp("issued_at"),
        )
        .unwrap();
    let inputs = [
        (
            &web,
            "web",
            json_batches(&manifest.web.path),
            EVENT_COLUMNS.as_slice(),
        ),
        (
            &web,
            "mobile",
            json_batches(&manifest.mobile.path),
            EVENT_COLUMNS.as_slice(),
        ),
        (
            &crm,
            "crm",
            csv_batches(&manifest.crm.path),
            CRM_COLUMNS.as_slice(),
        ),
        (
            &billing,
            "billing",
            csv_batches(&manifest.billing.path),
            BILLING_COLUMNS.as_slice(),
        ),
    ];
    for (resolver, source, batches, _) in &inputs {
        for data in batches {
            resolver
                .resolve_batch(Batch::new(*source, data.clone(), *source))
                .unwrap();
        }
    }

    // Ground truth: who owns each identifier; shared ones (kiosks, the QA email) prove
    // nothing about who is who.
    let mut owners: HashMap<Identifier, BTreeSet<String>> = HashMap::new();
    let truth = std::fs::read_to_string(&manifest.truth.path).unwrap();
    for line in truth.lines().skip(1) {
        let mut f = line.splitn(3, ',');
        let (person, kind, value) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        owners
            .entry(Identifier::new(kind, value.trim_matches('"')))
            .or_default()
            .insert(person.to_string());
    }
    let graph = web.graph();
    let mut over_merged = Vec::new();
    let mut profiles_of: BTreeMap<String, BTreeSet<cdp_identity::ProfileId>> = BTreeMap::new();
    let mut unknown = 0;
    for (profile, members) in graph.partition() {
        let mut persons = BTreeSet::new();
        for id in &members {
            match owners.get(id) {
                Some(o) if o.len() == 1 => {
                    let person = o.iter().next().unwrap().clone();
                    profiles_of
                        .entry(person.clone())
                        .or_default()
                        .insert(profile);
                    persons.insert(person);
                }
                Some(_) => {}
                None => unknown += 1,
            }
        }
        if persons.len() > 1 {
            over_merged.push((profile, persons));
        }
    }
    assert!(
        over_merged.is_empty(),
        "over-merged profiles: {over_merged:?}"
    );
    assert_eq!(unknown, 0, "identifiers missing from the ground truth");
    let stitched = profiles_of.values().filter(|p| p.len() == 1).count();

    // The most any deterministic resolver can stitch without over-merging: every row's
    // identifiers joined, shared and blocked ones left out, no limits.
    let mut ideal = Ideal::default();
    for (_, _, batches, columns) in &inputs {
        for data in batches {
            let arrays: Vec<_> = columns
                .iter()
                .filter_map(|(path, kind)| Some((text(data, path)?, *kind)))
                .collect();
            for r in 0..data.num_rows() {
                let row: Vec<Identifier> = arrays
                    .iter()
                    .filter(|(a, _)| a.is_valid(r))
                    .filter_map(|(a, kind)| {
                        let value = graph.rules().normalise(kind, a.value(r))?;
                        (!graph.rules().is_blocked(kind, &value))
                            .then(|| Identifier::new(*kind, value))
                    })
                    .filter(|id| owners.get(id).is_some_and(|o| o.len() == 1))
                    .collect();
                ideal.link(&row);
            }
        }
    }
    let mut ideal_components: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (id, o) in &owners {
        if o.len() == 1 && graph.profile_of(&id.kind, &id.value).is_some() {
            let root = ideal.root(id);
            ideal_components
                .entry(o.iter().next().unwrap().clone())
                .or_default()
                .insert(root);
        }
    }
    let ideal_stitched = ideal_components.values().filter(|c| c.len() == 1).count();
    let health = graph.health(i64::MAX / 4);
    println!(
        "{stitched} of {} persons stitched into one profile ({ideal_stitched} possible)\n{health}",
        profiles_of.len()
    );
    // Limits may refuse a few legitimate links (a person with more emails than allowed);
    // everything the data supports should otherwise be stitched.
    assert!(
        stitched as f64 >= ideal_stitched as f64 * 0.98,
        "{stitched} persons stitched into one profile, {ideal_stitched} possible\n{health}"
    );
    assert!(health.refused > 0, "the kiosks should have been refused");
}
