//! The sample match settings (`examples/match/people.toml`) parse and find the duplicates
//! in generated people records, and blocking-aware EM is what makes them work: the file
//! blocks on columns it also compares.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};

use cdp::arrow::array::{Array, RecordBatch, StringArray};
use cdp::identity::probabilistic::{MatchRun, MatchSettings, Training};
use cdp_testkit::people::people;

fn settings() -> MatchSettings {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/match/people.toml");
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Precision and recall of the pairs at or above `threshold`, by cluster id.
fn scores(table: &RecordBatch, run: &MatchRun, threshold: f64) -> (f64, f64) {
    let cluster = table
        .column_by_name("cluster")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let mut rows: HashMap<&str, Vec<u32>> = HashMap::new();
    for i in 0..cluster.len() {
        rows.entry(cluster.value(i)).or_default().push(i as u32);
    }
    let mut truth = HashSet::new();
    for members in rows.values() {
        for (k, &a) in members.iter().enumerate() {
            for &b in &members[k + 1..] {
                truth.insert((a, b));
            }
        }
    }
    let predicted: HashSet<(u32, u32)> = run
        .above(threshold)
        .map(|i| (run.pairs.left[i], run.pairs.right[i]))
        .collect();
    let correct = predicted.intersection(&truth).count() as f64;
    (
        correct / (predicted.len() as f64).max(1.0),
        correct / truth.len() as f64,
    )
}

#[test]
fn sample_config_finds_the_duplicates() {
    let settings = settings();
    settings.validate().unwrap();
    assert_eq!(settings.blocking.rules.len(), 4);
    assert_eq!(settings.training, Training::ByBlockingRule);

    let table = people(3_000, 0.3, 21);
    let run = settings.dedupe(&table).unwrap();
    assert!(run.em.converged);
    assert_eq!(run.em.sessions, 4);
    let (precision, recall) = scores(&table, &run, settings.thresholds.review);
    assert!(precision > 0.97, "precision {precision}");
    assert!(recall > 0.9, "recall {recall}");
    // The comparison named in the file shows up under its name in explanations.
    let i = run.above(0.99).next().unwrap();
    let explained = run.explain(i).unwrap();
    assert!(explained.terms.iter().any(|t| t.comparison == "dob"));
}

#[test]
fn blocking_aware_training_is_not_fooled_by_blocked_columns() {
    let table = people(3_000, 0.3, 21);
    let mut settings = settings();
    let by_rule = settings.dedupe(&table).unwrap();
    settings.training = Training::AllPairs;
    let all_pairs = settings.dedupe(&table).unwrap();
    let f1 = |(p, r): (f64, f64)| {
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        }
    };
    let by_rule_f1 = f1(scores(&table, &by_rule, 0.5));
    let all_pairs_f1 = f1(scores(&table, &all_pairs, 0.5));
    // Most candidates share a surname soundex or a birth date because the blocking made
    // them; trained on all pairs at once, EM reads that agreement as matching.
    assert!(by_rule_f1 > 0.95, "by rule: F1 {by_rule_f1}");
    assert!(
        by_rule_f1 >= all_pairs_f1,
        "by rule {by_rule_f1}, all pairs {all_pairs_f1}"
    );
    // The bias shows in the prior: all-pairs training calls far more candidates matches.
    assert!(all_pairs.model.lambda > by_rule.model.lambda);
}
