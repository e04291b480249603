//! Probabilistic matching throughput: candidate pairs per second through comparison
//! (four comparisons: Jaro-Winkler, Levenshtein, date, exact) and Fellegi–Sunter scoring,
//! on generated people with typos, blocked by surname soundex and postcode. The baseline in
//! the same run is scoring alone (the weight-table lookups on precomputed levels), which
//! bounds how much of the time is string comparison.
//!
//! `cargo bench -p cdp-benches --bench matching`.

#![allow(clippy::unwrap_used)]

use arrow::array::{RecordBatch, StringArray};
use cdp_identity::probabilistic::{
    Blocking, BlockingKey, BlockingRule, Comparison, ComparisonKind, EmOptions, FellegiSunter,
    compare_all, string_column,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const PEOPLE: usize = 8_000;

/// Generated people, a third of them with a noisy second record.
fn people() -> RecordBatch {
    cdp_testkit::people::people(PEOPLE, 0.33, 42)
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
            "given_name",
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
        Comparison::new("date_of_birth", ComparisonKind::Date { tolerance_days: 30 }),
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
