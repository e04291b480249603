//! Identity resolution at scale: 1,000,000 generated Segment-like events carrying about
//! 3,000,000 links over about 2,000,000 identifiers, through the `cdp-identity` resolver,
//! against a bare union–find over the same links in the same run.
//!
//! Besides the criterion throughput comparison, the binary prints (once, before criterion
//! runs):
//! - resident memory per identifier of the resolver's state, from `/proc/self/statm` before
//!   and after building it (and separately for the profile store);
//! - profile lookup latency percentiles from a histogram of individually timed lookups,
//!   single-threaded and with a writer thread ingesting into the same store.
//!
//! `cargo bench -p cdp-benches --bench identity`. Without `--bench` (as under
//! `cargo test --benches`) it runs on 20,000 events as a smoke test. With
//! `IDENTITY_BENCH_QUICK` set it times one pass of each contender and stops.

// A benchmark binary reports on stdout.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cdp_core::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, StructArray,
};
use cdp_core::arrow::datatypes::{DataType, Field, Schema};
use cdp_core::{Batch, BatchMeta};
use cdp_identity::{
    ColumnMapping, EventDetail, IdentifierColumn, IdentifierKey, IdentityGraph, MemoryProfileStore,
    ProfileStore, Resolver, RulesConfig, StoreConfig,
};
use criterion::{BatchSize, Criterion, Throughput};

const ROWS_PER_BATCH: usize = 10_000;

/// Deterministic generator (splitmix64): the bench needs reproducible data, not quality
/// randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Events of `persons` people (ids offset by `first_person`): each event has an anonymous
/// id (one of 12 sessions per person) and a device (one of 2, or one of 100 shared kiosks in
/// 0.5% of events); 90% carry the user id, 90% the email, 20% a phone.
fn dataset(events: usize, persons: u64, first_person: u64, seed: u64) -> Vec<Batch> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(events.div_ceil(ROWS_PER_BATCH));
    let mut t = 1_700_000_000_000i64;
    let mut left = events;
    while left > 0 {
        let n = left.min(ROWS_PER_BATCH);
        left -= n;
        let (mut anon, mut user, mut device, mut email, mut phone, mut ts) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for _ in 0..n {
            let p = first_person + rng.below(persons);
            t += 1 + rng.below(50) as i64;
            anon.push(format!("anon-{p:07}-{}", rng.below(12)));
            device.push(if rng.chance(1) && rng.chance(50) {
                format!("kiosk-{}", rng.below(100))
            } else {
                format!("dev-{p:07}-{}", rng.below(2))
            });
            user.push(rng.chance(90).then(|| format!("user-{p:07}")));
            email.push(rng.chance(90).then(|| format!("person{p}@example.com")));
            phone.push(rng.chance(20).then(|| format!("+1415{p:07}")));
            ts.push(t);
        }
        out.push(batch(anon, user, device, email, phone, ts));
    }
    out
}

fn batch(
    anon: Vec<String>,
    user: Vec<Option<String>>,
    device: Vec<String>,
    email: Vec<Option<String>>,
    phone: Vec<Option<String>>,
    ts: Vec<i64>,
) -> Batch {
    let field = |name: &str, dt: DataType| Arc::new(Field::new(name, dt, true));
    let device = StructArray::from(vec![(
        field("id", DataType::Utf8),
        Arc::new(StringArray::from(device)) as ArrayRef,
    )]);
    let traits = StructArray::from(vec![
        (
            field("email", DataType::Utf8),
            Arc::new(StringArray::from(email)) as ArrayRef,
        ),
        (
            field("phone", DataType::Utf8),
            Arc::new(StringArray::from(phone)) as ArrayRef,
        ),
    ]);
    let context = StructArray::from(vec![
        (
            field("device", device.data_type().clone()),
            Arc::new(device) as ArrayRef,
        ),
        (
            field("traits", traits.data_type().clone()),
            Arc::new(traits) as ArrayRef,
        ),
    ]);
    let schema = Schema::new(vec![
        Field::new("anonymousId", DataType::Utf8, true),
        Field::new("userId", DataType::Utf8, true),
        Field::new("context", context.data_type().clone(), true),
        Field::new("timestamp", DataType::Int64, false),
    ]);
    let data = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(anon)),
            Arc::new(StringArray::from(user)),
            Arc::new(context),
            Arc::new(Int64Array::from(ts)),
        ],
    )
    .unwrap();
    Batch {
        stream: "track".into(),
        data,
        meta: BatchMeta::now("web"),
    }
}

fn rules() -> RulesConfig {
    serde_json::from_value(serde_json::json!({
        "identifiers": [
            {"name": "user_id", "priority": 1, "limit": 1},
            {"name": "email", "priority": 2, "limit": 1, "normaliser": "email"},
            {"name": "phone", "priority": 3, "limit": 2,
             "normaliser": {"phone": {"default_region": "US"}}},
            {"name": "device_id", "priority": 4, "limit": 3},
            {"name": "anonymous_id", "priority": 5, "ttl": "90d", "anonymous": true}
        ],
        "blocked_values": ["unknown", "null", "test@example.com"]
    }))
    .unwrap()
}

/// The identifier columns, highest priority first (the order both contenders link in).
const COLUMNS: [(&str, &str); 5] = [
    ("userId", "user_id"),
    ("context.traits.email", "email"),
    ("context.traits.phone", "phone"),
    ("context.device.id", "device_id"),
    ("anonymousId", "anonymous_id"),
];

fn resolver(events: EventDetail) -> Resolver {
    let mapping = ColumnMapping::new(
        COLUMNS
            .iter()
            .map(|(path, kind)| IdentifierColumn::new(*path, *kind))
            .collect(),
    )
    .timestamp("timestamp");
    Resolver::new(IdentityGraph::from_config(rules()).unwrap(), mapping)
        .unwrap()
        .with_events(events)
}

fn resolve_all(r: &Resolver, batches: &[Batch]) -> usize {
    let mut rows = 0;
    for b in batches {
        rows += r.resolve_batch(b.clone()).unwrap().batch.num_rows();
    }
    rows
}

/// The baseline: a union–find over the same links (each row's identifiers linked to its
/// highest-priority one), with identifiers interned in a hash map of owned strings.
#[derive(Default)]
struct UnionFind {
    ids: hashbrown::HashMap<(u8, Box<str>), u32>,
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    fn intern(&mut self, kind: u8, value: &str) -> u32 {
        // `entry` would need an owned key up front; probe first so hits do not allocate.
        if let Some(&id) = self.ids.get(&Probe(kind, value)) {
            return id;
        }
        let id = self.parent.len() as u32;
        self.ids.insert((kind, value.into()), id);
        self.parent.push(id);
        self.size.push(1);
        id
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        let (big, small) = if self.size[ra as usize] >= self.size[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small as usize] = big;
        self.size[big as usize] += self.size[small as usize];
    }
}

/// A borrowed `(u8, &str)` that probes the map of owned keys without allocating.
struct Probe<'a>(u8, &'a str);

impl std::hash::Hash for Probe<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Must hash exactly like `(u8, Box<str>)`.
        (self.0, self.1).hash(state);
    }
}

impl hashbrown::Equivalent<(u8, Box<str>)> for Probe<'_> {
    fn equivalent(&self, key: &(u8, Box<str>)) -> bool {
        self.0 == key.0 && self.1 == &*key.1
    }
}

/// The same columns the resolver reads, found by the same nested paths.
fn columns(data: &RecordBatch) -> Vec<StringArray> {
    COLUMNS
        .iter()
        .map(|(path, _)| {
            let mut parts = path.split('.');
            let mut current: ArrayRef = data.column_by_name(parts.next().unwrap()).unwrap().clone();
            for part in parts {
                current = current.as_struct().column_by_name(part).unwrap().clone();
            }
            current.as_string::<i32>().clone()
        })
        .collect()
}

fn union_find_all(batches: &[Batch]) -> (UnionFind, u64) {
    let mut uf = UnionFind::default();
    let mut links = 0u64;
    let mut row = [0u32; COLUMNS.len()];
    for b in batches {
        let cols = columns(&b.data);
        for r in 0..b.num_rows() {
            let mut n = 0;
            for (kind, col) in cols.iter().enumerate() {
                if col.is_valid(r) {
                    row[n] = uf.intern(kind as u8, col.value(r));
                    n += 1;
                }
            }
            for &other in &row[1..n] {
                uf.union(row[0], other);
                links += 1;
            }
        }
    }
    (uf, links)
}

fn resident_bytes() -> u64 {
    // statm: size resident shared text lib data dt, in pages (4 KiB on the bench machines).
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentiles(mut ns: Vec<u32>) -> String {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize];
    format!(
        "{} lookups: p50 {} ns, p90 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        ns.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        ns[ns.len() - 1]
    )
}

/// Identifiers to look up, as callers have them: type and raw value.
fn lookup_keys(persons: u64, count: usize) -> Vec<(&'static str, String)> {
    let mut rng = Rng(7);
    (0..count)
        .map(|_| {
            let p = rng.below(persons);
            match rng.below(4) {
                0 => ("user_id", format!("user-{p:07}")),
                1 => ("email", format!("person{p}@example.com")),
                2 => ("device_id", format!("dev-{p:07}-{}", rng.below(2))),
                _ => ("anonymous_id", format!("anon-{p:07}-{}", rng.below(12))),
            }
        })
        .collect()
}

fn timed_lookups(store: &MemoryProfileStore, keys: &[(&'static str, String)]) -> (Vec<u32>, usize) {
    let mut ns = Vec::with_capacity(keys.len());
    let mut found = 0;
    for (kind, value) in keys {
        let start = Instant::now();
        let profile = store.lookup(IdentifierKey::new(kind, value));
        let elapsed = start.elapsed();
        found += usize::from(profile.is_some());
        black_box(profile);
        ns.push(elapsed.as_nanos().min(u128::from(u32::MAX)) as u32);
    }
    (ns, found)
}

struct Scale {
    events: usize,
    persons: u64,
    writer_events: usize,
    lookups: usize,
}

/// The one-shot report: dataset shape, memory per identifier, lookup latency.
fn report(scale: &Scale, batches: &[Batch]) {
    let writer_batches = dataset(scale.writer_events, scale.persons, scale.persons / 2, 99);
    let keys = lookup_keys(scale.persons, scale.lookups);

    let before = resident_bytes();
    let r = resolver(EventDetail::All);
    let start = Instant::now();
    resolve_all(&r, batches);
    let elapsed = start.elapsed();
    let after = resident_bytes();
    let (identifiers, profiles, links, health) = {
        let g = r.graph();
        (
            g.interned_count(),
            g.profile_count(),
            g.link_count(),
            g.health(i64::MAX / 2),
        )
    };
    println!("identity: dataset");
    println!(
        "  {} events, {} link observations, {} distinct links, {} identifiers, {} profiles",
        scale.events, health.link_events, links, identifiers, profiles
    );
    println!(
        "  {} merges, {} refused links, largest profile {} identifiers",
        health.merges,
        health.refused,
        health.largest.map_or(0, |l| l.1)
    );
    println!("identity: memory (resident, /proc/self/statm)");
    println!(
        "  resolver (graph + log): {:.1} MiB, {:.1} bytes per identifier; built in {:.2} s ({:.0} events/s)",
        (after - before) as f64 / 1048576.0,
        (after - before) as f64 / identifiers as f64,
        elapsed.as_secs_f64(),
        scale.events as f64 / elapsed.as_secs_f64()
    );

    let store = Arc::new(MemoryProfileStore::with_capacity(
        StoreConfig::default(),
        identifiers + identifiers / 4,
        profiles + profiles / 4,
    ));
    let start = Instant::now();
    let r = r.with_store(store.clone()).unwrap();
    let loaded = start.elapsed();
    let with_store = resident_bytes();
    println!(
        "  profile store (index + profiles): {:.1} MiB, {:.1} bytes per identifier; loaded in {:.2} s",
        (with_store - after) as f64 / 1048576.0,
        (with_store - after) as f64 / identifiers as f64,
        loaded.as_secs_f64()
    );

    println!("identity: profile lookup by identifier (type + raw value), timed one by one");
    // Warm the caches the way a serving process is warm.
    let _ = timed_lookups(&store, &keys[..keys.len().min(100_000)]);
    let (ns, found) = timed_lookups(&store, &keys);
    println!("  single-threaded: {} ({found} found)", percentiles(ns));

    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let (r, running) = (r.clone(), running.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let rows = resolve_all(&r, &writer_batches);
            running.store(false, Ordering::Release);
            (rows, start.elapsed())
        })
    };
    let mut ns = Vec::with_capacity(scale.lookups);
    let mut found = 0;
    'outer: loop {
        for chunk in keys.chunks(10_000) {
            if !running.load(Ordering::Acquire) {
                break 'outer;
            }
            let (mut part, f) = timed_lookups(&store, chunk);
            ns.append(&mut part);
            found += f;
        }
    }
    let (rows, took) = writer.join().unwrap();
    println!(
        "  with a writer ingesting {rows} events into the same resolver and store ({:.0} events/s): {} ({found} found)",
        rows as f64 / took.as_secs_f64(),
        percentiles(ns)
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full {
        Scale {
            events: 1_000_000,
            persons: 330_000,
            writer_events: 300_000,
            lookups: 2_000_000,
        }
    } else {
        Scale {
            events: 20_000,
            persons: 6_600,
            writer_events: 5_000,
            lookups: 20_000,
        }
    };
    let batches = dataset(scale.events, scale.persons, 0, 42);
    if std::env::var_os("IDENTITY_BENCH_QUICK").is_some() {
        // One timed pass of each contender, for quick iterations while optimising.
        let start = Instant::now();
        let (uf, links) = black_box(union_find_all(&batches));
        let base = start.elapsed();
        drop(uf);
        for (name, events) in [("all", EventDetail::All), ("changes", EventDetail::Changes)] {
            let r = resolver(events);
            let start = Instant::now();
            resolve_all(&r, &batches);
            let took = start.elapsed();
            println!(
                "resolver ({name} events) {:.2} s vs union-find {:.2} s ({links} links): {:.2}x",
                took.as_secs_f64(),
                base.as_secs_f64(),
                base.as_secs_f64() / took.as_secs_f64()
            );
        }
        return;
    }
    report(&scale, &batches);

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("identity");
    group.throughput(Throughput::Elements(scale.events as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(if full { 40 } else { 1 }));
    group.bench_function("union_find", |b| {
        b.iter_batched(
            || (),
            |()| union_find_all(&batches),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("resolver", |b| {
        b.iter_batched(
            || resolver(EventDetail::All),
            |r| {
                resolve_all(&r, &batches);
                r
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("resolver_changes_only", |b| {
        b.iter_batched(
            || resolver(EventDetail::Changes),
            |r| {
                resolve_all(&r, &batches);
                r
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    c.final_summary();
}
