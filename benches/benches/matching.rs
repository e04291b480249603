//! Probabilistic matching throughput: candidate pairs per second through comparison
//! (four comparisons: Jaro-Winkler, Levenshtein, date, exact) and Fellegi–Sunter scoring,
//! on generated people with typos, blocked by surname soundex and postcode. The baseline in
//! the same run is scoring alone (the weight-table lookups on precomputed levels), which
//! bounds how much of the time is string comparison.
//!
//! `cargo bench -p cdp-benches --bench matching`.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use cdp_identity::probabilistic::{
    Blocking, BlockingKey, BlockingRule, Comparison, ComparisonKind, EmOptions, FellegiSunter,
    compare_all, string_column,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const PEOPLE: usize = 8_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const FIRST: &[&str] = &[
    "james",
    "mary",
    "robert",
    "patricia",
    "john",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "william",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
];
const SURNAME: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
];

fn typo(s: &str, rng: &mut Rng) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() > 2 {
        let i = rng.below(c.len() - 1);
        c.swap(i, i + 1);
    }
    c.into_iter().collect()
}

/// Each person appears once, a third of them a second time with a typo or a swapped date.
fn people() -> RecordBatch {
    let mut rng = Rng(42);
    let (mut first, mut last, mut dob, mut post) = (vec![], vec![], vec![], vec![]);
    for _ in 0..PEOPLE {
        let f = FIRST[rng.below(FIRST.len())].to_string();
        let l = format!("{}{}", SURNAME[rng.below(SURNAME.len())], rng.below(40));
        let d = format!(
            "19{:02}-{:02}-{:02}",
            40 + rng.below(60),
            1 + rng.below(12),
            1 + rng.below(28)
        );
        let p = format!("P{:04}", rng.below(2_000));
        if rng.below(3) == 0 {
            first.push(typo(&f, &mut rng));
            last.push(l.clone());
            dob.push(d.clone());
            post.push(p.clone());
        }
        first.push(f);
        last.push(l);
        dob.push(d);
        post.push(p);
    }
    let schema = Arc::new(Schema::new(
        ["first", "surname", "dob", "postcode"]
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(first)),
            Arc::new(StringArray::from(last)),
            Arc::new(StringArray::from(dob)),
            Arc::new(StringArray::from(post)),
        ],
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let table = people();
    let blocking = Blocking::new(vec![
        BlockingRule::single(BlockingKey::Soundex {
            column: "surname".into(),
        }),
        BlockingRule::single(BlockingKey::Exact {
            column: "postcode".into(),
        }),
    ]);
    let pairs = blocking.dedupe(&table).unwrap();
    let comparisons = vec![
        Comparison::new(
            "first",
            ComparisonKind::JaroWinkler {
                thresholds: vec![0.92, 0.8],
            },
        ),
        Comparison::new(
            "surname",
            ComparisonKind::Levenshtein {
                max_distances: vec![1, 2],
            },
        ),
        Comparison::new("dob", ComparisonKind::Date { tolerance_days: 30 }),
        Comparison::new("postcode", ComparisonKind::Exact),
    ];
    let columns: Vec<StringArray> = comparisons
        .iter()
        .map(|c| string_column(&table, &c.column).unwrap())
        .collect();
    let cols: Vec<_> = columns.iter().map(|c| (c, c)).collect();
    let mut model = FellegiSunter::new(comparisons.clone()).unwrap();
    model
        .estimate_u(&cols, table.num_rows(), None, 200_000, 7)
        .unwrap();
    let levels = compare_all(&comparisons, &cols, &pairs.left, &pairs.right).unwrap();
    model.estimate_m(&levels, EmOptions::default()).unwrap();

    let mut group = c.benchmark_group("matching");
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.sample_size(10);
    group.bench_function("compare_and_score", |b| {
        b.iter(|| {
            let levels = compare_all(&comparisons, &cols, &pairs.left, &pairs.right).unwrap();
            black_box(model.score(&levels, &[], &pairs.left).unwrap())
        })
    });
    group.bench_function("score_only_baseline", |b| {
        b.iter(|| black_box(model.score(&levels, &[], &pairs.left).unwrap()))
    });
    group.finish();
    let mut group = c.benchmark_group("matching_em");
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.sample_size(10);
    group.bench_function("estimate_m", |b| {
        b.iter(|| {
            let mut m = model.clone();
            black_box(m.estimate_m(&levels, EmOptions::default()).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
