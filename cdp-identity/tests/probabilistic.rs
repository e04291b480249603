//! Integration tests of probabilistic matching: hand-checked comparison levels, blocking,
//! EM on data with known m and u, explanations, and decisions into the identity graph.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use cdp_identity::probabilistic::*;
use cdp_identity::{Evidence, IdentityGraph, Proposal, RefusalReason, ReviewStatus};

fn table(columns: &[(&str, Vec<Option<&str>>)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, _)| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let arrays = columns
        .iter()
        .map(|(_, v)| Arc::new(StringArray::from(v.clone())) as _)
        .collect();
    RecordBatch::try_new(schema, arrays).unwrap()
}

fn level(kind: ComparisonKind, a: &str, b: &str) -> u8 {
    Comparison::new("x", kind).level(Some(a), Some(b))
}

mod levels {
    use super::*;

    #[test]
    fn exact() {
        let c = Comparison::new("x", ComparisonKind::Exact);
        assert_eq!(c.num_levels(), 2);
        assert_eq!(c.level(Some("ada"), Some("ada")), 1);
        assert_eq!(c.level(Some("ada"), Some("bob")), 0);
        assert_eq!(c.level(Some("ada"), None), NULL_LEVEL);
        assert_eq!(c.level(Some(""), Some("ada")), NULL_LEVEL);
    }

    #[test]
    fn jaro_winkler_bands() {
        let kind = || ComparisonKind::JaroWinkler {
            thresholds: vec![0.92, 0.8],
        };
        // martha/marhta = 0.961, dwayne/duane = 0.84 (the textbook values).
        assert_eq!(level(kind(), "martha", "martha"), 3);
        assert_eq!(level(kind(), "martha", "marhta"), 2);
        assert_eq!(level(kind(), "dwayne", "duane"), 1);
        assert_eq!(level(kind(), "abc", "xyz"), 0);
        let c = Comparison::new("x", kind());
        assert_eq!(c.level(None, Some("a")), NULL_LEVEL);
        assert_eq!(c.level_label(2), "jaro-winkler >= 0.92");
        assert_eq!(c.level_label(1), "jaro-winkler >= 0.8");
    }

    #[test]
    fn levenshtein_bands() {
        let kind = || ComparisonKind::Levenshtein {
            max_distances: vec![1, 2],
        };
        assert_eq!(level(kind(), "kitten", "kitten"), 3);
        assert_eq!(level(kind(), "kitten", "sitten"), 2);
        assert_eq!(level(kind(), "kitten", "sittin"), 1);
        assert_eq!(level(kind(), "kitten", "sitting"), 0);
        // A transposition is two Levenshtein edits ...
        assert_eq!(level(kind(), "abcd", "abdc"), 1);
        // ... and one Damerau edit.
        let damerau = ComparisonKind::DamerauLevenshtein {
            max_distances: vec![1],
        };
        assert_eq!(level(damerau.clone(), "abcd", "abdc"), 1);
        assert_eq!(level(damerau.clone(), "abcd", "abcd"), 2);
        assert_eq!(level(damerau, "abcd", "badc"), 0);
    }

    #[test]
    fn dates() {
        let kind = || ComparisonKind::Date { tolerance_days: 30 };
        assert_eq!(level(kind(), "1980-02-01", "1980-02-01"), 3);
        assert_eq!(level(kind(), "19800201", "1980-02-01"), 3);
        assert_eq!(level(kind(), "01/02/1980", "1980-02-01"), 3);
        assert_eq!(level(kind(), "1980-02-01", "1980-01-02"), 2);
        assert_eq!(level(kind(), "1980-02-01", "1980-02-25"), 1);
        assert_eq!(level(kind(), "1980-02-01", "1981-02-01"), 0);
        assert_eq!(level(kind(), "not a date", "1980-02-01"), NULL_LEVEL);
        assert_eq!(level(kind(), "??", "??"), 3);
        let c = Comparison::new("dob", kind());
        assert_eq!(c.level_label(2), "day and month swapped");
        assert_eq!(c.level_label(1), "within 30 days");
    }

    #[test]
    fn numbers() {
        let kind = || ComparisonKind::Numeric { tolerance: 2.0 };
        assert_eq!(level(kind(), "10", "10"), 2);
        assert_eq!(level(kind(), "10", "10.0"), 2);
        assert_eq!(level(kind(), "10", "11.5"), 1);
        assert_eq!(level(kind(), "10", "13"), 0);
        assert_eq!(level(kind(), "ten", "10"), NULL_LEVEL);
    }

    #[test]
    fn invalid_thresholds_are_refused() {
        let c = Comparison::new(
            "x",
            ComparisonKind::JaroWinkler {
                thresholds: vec![0.8, 0.9],
            },
        );
        assert!(c.validate().is_err());
        assert!(FellegiSunter::new(vec![c]).is_err());
    }

    #[test]
    fn columnar_dates_and_numbers_equal_pairwise_levels() {
        let dates = StringArray::from(vec![
            Some("1980-02-01"),
            Some(" 19800201"),
            Some("1980-01-02"),
            Some("1980-02-20"),
            Some("junk"),
            Some("junk"),
            Some(""),
            None,
            Some("1999-12-31"),
        ]);
        let numbers = StringArray::from(vec![
            Some("10"),
            Some("10.0"),
            Some("11"),
            Some("x"),
            Some("x"),
            None,
            Some(" "),
            Some("50"),
            Some("9"),
        ]);
        let n = dates.len() as u32;
        let (left, right): (Vec<u32>, Vec<u32>) =
            (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).unzip();
        for (c, column) in [
            (
                Comparison::new("d", ComparisonKind::Date { tolerance_days: 30 }),
                &dates,
            ),
            (
                Comparison::new("n", ComparisonKind::Numeric { tolerance: 1.0 }),
                &numbers,
            ),
        ] {
            let columnar = c.compare(column, column, &left, &right).unwrap();
            for (k, (&i, &j)) in left.iter().zip(&right).enumerate() {
                let value = |r: u32| {
                    column
                        .is_valid(r as usize)
                        .then(|| column.value(r as usize))
                };
                assert_eq!(columnar[k], c.level(value(i), value(j)), "{i} {j}");
            }
        }
    }

    #[test]
    fn parallel_levels_equal_sequential() {
        let values: Vec<String> = (0..500).map(|i| format!("name{}", i % 37)).collect();
        let column = StringArray::from(values.iter().map(String::as_str).collect::<Vec<_>>());
        let (left, right): (Vec<u32>, Vec<u32>) = (0..120_000u32)
            .map(|i| (i % 500, (i * 7 + 3) % 500))
            .unzip();
        let comparisons = vec![
            Comparison::new(
                "n",
                ComparisonKind::JaroWinkler {
                    thresholds: vec![0.9],
                },
            ),
            Comparison::new("n", ComparisonKind::Exact),
        ];
        let all = compare_all(
            &comparisons,
            &[(&column, &column), (&column, &column)],
            &left,
            &right,
        )
        .unwrap();
        for (c, levels) in comparisons.iter().zip(&all) {
            assert_eq!(levels, &c.compare(&column, &column, &left, &right).unwrap());
        }
    }

    #[test]
    fn columnar_levels_for_pairs() {
        let t = table(&[("name", vec![Some("ann"), Some("anne"), None, Some("bob")])]);
        let name = string_column(&t, "name").unwrap();
        let comparisons = vec![
            Comparison::new("name", ComparisonKind::Exact),
            Comparison::new(
                "name",
                ComparisonKind::Levenshtein {
                    max_distances: vec![1],
                },
            ),
        ];
        let levels = compare_all(
            &comparisons,
            &[(&name, &name), (&name, &name)],
            &[0, 0, 1],
            &[1, 2, 3],
        )
        .unwrap();
        assert_eq!(levels, vec![vec![0, NULL_LEVEL, 0], vec![1, NULL_LEVEL, 0]]);
    }
}

mod blocking {
    use super::*;

    fn people() -> RecordBatch {
        table(&[
            (
                "surname",
                vec![
                    Some("Smith"),
                    Some("Smyth"),
                    Some("Jones"),
                    Some("Johns"),
                    None,
                ],
            ),
            (
                "postcode",
                vec![
                    Some("AB1"),
                    Some("AB1"),
                    Some("CD2"),
                    Some("AB1"),
                    Some("CD2"),
                ],
            ),
        ])
    }

    #[test]
    fn dedupe_union_is_deduplicated() {
        let blocking = Blocking::new(vec![
            BlockingRule::single(BlockingKey::Soundex {
                column: "surname".into(),
            }),
            BlockingRule::single(BlockingKey::Exact {
                column: "postcode".into(),
            }),
        ]);
        let pairs = blocking.dedupe(&people()).unwrap();
        let mut got: Vec<(u32, u32)> = pairs
            .left
            .iter()
            .copied()
            .zip(pairs.right.clone())
            .collect();
        got.sort_unstable();
        // Soundex: Smith/Smyth (S530), Jones/Johns (J520). Postcode AB1: 0,1,3; CD2: 2,4.
        assert_eq!(got, vec![(0, 1), (0, 3), (1, 3), (2, 3), (2, 4)]);
        assert_eq!(pairs.per_rule, vec![2, 3]); // (0,1) is not counted twice
        assert_eq!(pairs.len(), 5); // out of 10 in the cross product
    }

    #[test]
    fn link_two_tables_and_block_limit() {
        let right = table(&[
            ("surname", vec![Some("smith"), Some("Brown")]),
            ("postcode", vec![Some("AB1"), Some("XY9")]),
        ]);
        let mut blocking = Blocking::new(vec![BlockingRule {
            keys: vec![
                BlockingKey::Prefix {
                    column: "surname".into(),
                    len: 2,
                },
                BlockingKey::Exact {
                    column: "postcode".into(),
                },
            ],
        }]);
        let pairs = blocking.link(&people(), &right).unwrap();
        assert_eq!(
            (pairs.left.clone(), pairs.right.clone()),
            (vec![0, 1], vec![0, 0])
        );
        blocking.max_block_size = Some(1);
        let pairs = blocking.link(&people(), &right).unwrap();
        assert!(pairs.is_empty());
        assert_eq!(pairs.skipped_blocks, vec![3]);
    }

    #[test]
    fn missing_column_is_an_error() {
        let blocking = Blocking::new(vec![BlockingRule::single(BlockingKey::Exact {
            column: "nope".into(),
        })]);
        assert!(blocking.dedupe(&people()).is_err());
    }
}

mod em {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn pick(&mut self, p: &[f64]) -> u8 {
            let x = self.next();
            let mut acc = 0.0;
            for (i, q) in p.iter().enumerate() {
                acc += q;
                if x < acc {
                    return i as u8;
                }
            }
            (p.len() - 1) as u8
        }
    }

    fn comparisons() -> Vec<Comparison> {
        vec![
            Comparison::new(
                "first",
                ComparisonKind::JaroWinkler {
                    thresholds: vec![0.9],
                },
            ),
            Comparison::new("surname", ComparisonKind::Exact),
            Comparison::new("dob", ComparisonKind::Date { tolerance_days: 30 }),
            Comparison::new("postcode", ComparisonKind::Exact),
        ]
    }

    /// Known parameters; levels generated from them, 5% nulls.
    /// Per comparison, per level.
    type Table = Vec<Vec<f64>>;

    fn generated(n: usize) -> (f64, Table, Table, Vec<Vec<u8>>) {
        let lambda = 0.2;
        let m = vec![
            vec![0.05, 0.15, 0.8],
            vec![0.1, 0.9],
            vec![0.05, 0.05, 0.1, 0.8],
            vec![0.15, 0.85],
        ];
        let u = vec![
            vec![0.9, 0.08, 0.02],
            vec![0.95, 0.05],
            vec![0.97, 0.005, 0.02, 0.005],
            vec![0.7, 0.3],
        ];
        let mut rng = Rng(11);
        let mut levels = vec![Vec::with_capacity(n); m.len()];
        for _ in 0..n {
            let is_match = rng.next() < lambda;
            for k in 0..m.len() {
                let l = if rng.next() < 0.05 {
                    NULL_LEVEL
                } else if is_match {
                    rng.pick(&m[k])
                } else {
                    rng.pick(&u[k])
                };
                levels[k].push(l);
            }
        }
        (lambda, m, u, levels)
    }

    #[test]
    fn recovers_known_m_and_lambda_with_u_fixed() {
        let (lambda, m, u, levels) = generated(50_000);
        let mut model = FellegiSunter::new(comparisons()).unwrap();
        model.u = u;
        let report = model.estimate_m(&levels, EmOptions::default()).unwrap();
        assert!(report.converged, "{report:?}");
        assert!(
            (model.lambda - lambda).abs() < 0.02,
            "lambda {}",
            model.lambda
        );
        for (got, want) in model.m.iter().zip(&m) {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 0.03, "m {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn recovers_known_m_and_u_together() {
        let (lambda, m, u, levels) = generated(50_000);
        let mut model = FellegiSunter::new(comparisons()).unwrap();
        let options = EmOptions {
            fix_u: false,
            max_iterations: 500,
            ..EmOptions::default()
        };
        let report = model.estimate_m(&levels, options).unwrap();
        assert!(report.converged, "{report:?}");
        assert!(
            (model.lambda - lambda).abs() < 0.03,
            "lambda {}",
            model.lambda
        );
        for (got, want) in model.m.iter().zip(&m).chain(model.u.iter().zip(&u)) {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 0.04, "{got:?} vs {want:?}");
            }
        }
    }

    /// Candidate pairs as two blocking rules would produce them: rule 0 keeps the pairs
    /// that agree exactly on surname (comparison 1), rule 1 those that agree on postcode
    /// (comparison 3); non-matching pairs agreeing on neither are never candidates.
    fn blocked(n: usize) -> (Table, Table, Vec<Vec<u8>>, Vec<Vec<bool>>) {
        let (_, m, u, all) = generated(n);
        let keep: Vec<usize> = (0..n)
            .filter(|&i| all[1][i] == 1 || all[3][i] == 1)
            .collect();
        let levels: Vec<Vec<u8>> = all
            .iter()
            .map(|lv| keep.iter().map(|&i| lv[i]).collect())
            .collect();
        let members = vec![
            levels[1].iter().map(|&l| l == 1).collect(),
            levels[3].iter().map(|&l| l == 1).collect(),
        ];
        (m, u, levels, members)
    }

    #[test]
    fn per_rule_sessions_undo_the_blocking_bias() {
        let (m, u, levels, members) = blocked(200_000);
        let excluded = vec![
            vec![false, true, false, false],
            vec![false, false, false, true],
        ];
        let mut by_rule = FellegiSunter::new(comparisons()).unwrap();
        by_rule.u = u.clone();
        let report = by_rule
            .estimate_m_by_rule(&levels, &members, &excluded, 100, EmOptions::default())
            .unwrap();
        assert!(report.converged, "{report:?}");
        assert_eq!(report.sessions, 2);
        // Each comparison's m is recovered, including the blocked ones (each estimated by
        // the session of the other rule)...
        let error = |model: &FellegiSunter| {
            model
                .m
                .iter()
                .zip(&m)
                .flat_map(|(got, want)| got.iter().zip(want).map(|(g, w)| (g - w).abs()))
                .fold(0.0f64, f64::max)
        };
        assert!(error(&by_rule) < 0.05, "by rule: m {:?}", by_rule.m);
        // ...which a single session on all pairs gets further from.
        let mut all_pairs = FellegiSunter::new(comparisons()).unwrap();
        all_pairs.u = u;
        all_pairs.estimate_m(&levels, EmOptions::default()).unwrap();
        assert!(
            error(&by_rule) < error(&all_pairs),
            "by rule {} vs all pairs {}",
            error(&by_rule),
            error(&all_pairs)
        );
        // Mismatched masks are an error, not a panic.
        assert!(
            by_rule
                .estimate_m_by_rule(&levels, &members[..1], &excluded, 100, EmOptions::default())
                .is_err()
        );
    }

    #[test]
    fn u_from_random_pairs() {
        // 1000 rows, 10 equally common values: a random pair agrees with probability 0.1.
        let values: Vec<String> = (0..1000).map(|i| format!("v{}", i % 10)).collect();
        let column = StringArray::from(values.iter().map(String::as_str).collect::<Vec<_>>());
        let mut model =
            FellegiSunter::new(vec![Comparison::new("v", ComparisonKind::Exact)]).unwrap();
        model
            .estimate_u(&[(&column, &column)], 1000, None, 20_000, 1)
            .unwrap();
        assert!((model.u[0][1] - 0.1).abs() < 0.01, "{:?}", model.u[0]);
    }
}

mod explain {
    use super::*;

    fn fitted() -> (FellegiSunter, Vec<Vec<u8>>, StringArray, Vec<u32>) {
        let surname = StringArray::from(vec!["smith", "smith", "smith", "kowalczyk", "kowalczyk"]);
        let mut model = FellegiSunter::new(vec![
            Comparison::new("surname", ComparisonKind::Exact).with_term_frequency(),
            Comparison::new("dob", ComparisonKind::Date { tolerance_days: 10 }),
        ])
        .unwrap();
        model.lambda = 0.1;
        model.m = vec![vec![0.1, 0.9], vec![0.05, 0.05, 0.1, 0.8]];
        model.u = vec![vec![0.8, 0.2], vec![0.9, 0.01, 0.04, 0.05]];
        model
            .set_term_frequencies(0, TermFrequencies::from_columns(&[&surname]))
            .unwrap();
        // Pairs: (0,1) smith/smith, (3,4) kowalczyk/kowalczyk, (0,3) differ; dob varies.
        let levels = vec![vec![1, 1, 0], vec![3, 3, NULL_LEVEL]];
        (model, levels, surname, vec![0, 3, 0])
    }

    #[test]
    fn weights_sum_to_total() {
        let (model, levels, surname, left) = fitted();
        let tf = [Some(&surname), None];
        let weights = model.score(&levels, &tf, &left).unwrap();
        for (pair, total) in weights.iter().enumerate() {
            let e = model.explain(&levels, &tf, &left, pair).unwrap();
            let sum = e.prior_weight
                + e.terms
                    .iter()
                    .map(|t| t.weight + t.tf_adjustment)
                    .sum::<f64>();
            assert!((sum - e.total_weight).abs() < 1e-12);
            assert!((e.total_weight - total).abs() < 1e-12);
            assert!((e.probability - probability(*total)).abs() < 1e-12);
        }
        // Hand-checked: prior log2(0.1/0.9), exact surname log2(0.9/0.2) plus the
        // adjustment log2(0.2/0.6) (smith is 3 of 5 records), dob exact log2(0.8/0.05).
        let e = model.explain(&levels, &tf, &left, 0).unwrap();
        let want =
            (0.1f64 / 0.9).log2() + (0.9f64 / 0.2).log2() + (0.2f64 / 0.6).log2() + 16f64.log2();
        assert!((e.total_weight - want).abs() < 1e-9);
        // The rarer surname weighs more.
        assert!(weights[1] > weights[0]);
        // A null comparison contributes nothing and says so.
        let e = model.explain(&levels, &tf, &left, 2).unwrap();
        assert_eq!(e.terms[1].level, None);
        assert_eq!(e.terms[1].weight, 0.0);
        assert_eq!(e.terms[1].label, "null (unknown)");
    }

    #[test]
    fn text_and_serde() {
        let (model, levels, surname, left) = fitted();
        let e = model
            .explain(&levels, &[Some(&surname), None], &left, 0)
            .unwrap();
        let text = e.to_string();
        assert!(text.contains("prior"), "{text}");
        assert!(text.contains("term frequency"), "{text}");
        assert!(text.contains("total"), "{text}");
        let json = serde_json::to_string(&e).unwrap();
        let back: PairExplanation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }
}

mod decide {
    use super::*;

    #[test]
    fn thresholds_split_pairs_and_links_obey_rules() {
        let rules = serde_json::from_str(
            r#"{"identifiers": [{"name": "customer_id", "priority": 1}],
                "blocked_values": ["unknown"]}"#,
        )
        .unwrap();
        let mut graph = IdentityGraph::from_config(rules).unwrap();
        let ids = StringArray::from(vec!["c1", "c2", "c3", "c4", "unknown", "c5"]);
        let thresholds = Thresholds {
            auto_link: 0.9,
            review: 0.5,
        };
        assert_eq!(thresholds.decide(0.95), Decision::Link);
        assert_eq!(thresholds.decide(0.6), Decision::Review);
        assert_eq!(thresholds.decide(0.1), Decision::NoLink);
        let out = apply_to_graph(
            &mut graph,
            &thresholds,
            "customer_id",
            &ids,
            &ids,
            &[0, 2, 0, 4],
            &[1, 3, 3, 5],
            &[0.99, 0.7, 0.1, 0.99],
            1_000,
            "matcher",
        )
        .unwrap();
        assert_eq!(out.linked, 1);
        assert_eq!(out.refused, 1); // "unknown" is a blocked value
        assert_eq!(out.no_link, 1);
        assert_eq!(out.review.len(), 1);
        assert_eq!(
            (
                out.review[0].left_id.as_str(),
                out.review[0].right_id.as_str()
            ),
            ("c3", "c4")
        );
        assert_eq!(
            graph.profile_of("customer_id", "c1"),
            graph.profile_of("customer_id", "c2")
        );
        // The auto-link carries the rule and the probability as confidence.
        let link = graph.digest().links.into_iter().next().unwrap();
        assert_eq!(link.rule, PROBABILISTIC_RULE);
        assert!((f32::from_bits(link.confidence_bits) - 0.99).abs() < 1e-6);

        // The review-band pair waits in the graph's review queue, apart until approved.
        let Proposal::Held { review } = out.review[0].proposal else {
            panic!("not held: {:?}", out.review[0].proposal);
        };
        let queue = graph.review_queue();
        assert_eq!(queue.len(), 1);
        assert_eq!(queue[0].id, review);
        assert_eq!(queue[0].rule, PROBABILISTIC_RULE);
        assert_eq!(queue[0].status, ReviewStatus::Pending);
        let (c3, c4) = (
            graph.profile_of("customer_id", "c3"),
            graph.profile_of("customer_id", "c4"),
        );
        assert!(c3.is_some() && c4.is_some() && c3 != c4);
        // The log replays to the same graph, queue included.
        let replayed = IdentityGraph::replay(graph.rules().clone(), graph.log()).unwrap();
        assert_eq!(replayed.digest(), graph.digest());
        assert_eq!(replayed.review_queue(), graph.review_queue());
        // Approving applies the link.
        graph.approve(review, 2_000).unwrap();
        assert_eq!(
            graph.profile_of("customer_id", "c3"),
            graph.profile_of("customer_id", "c4")
        );
        assert_eq!(graph.review_queue()[0].status, ReviewStatus::Approved);
    }

    #[test]
    fn proposals_respect_the_rules() {
        let rules = serde_json::from_str(
            r#"{"identifiers": [
                    {"name": "email", "priority": 1, "limit": 1, "normaliser": "email"},
                    {"name": "crm_id", "priority": 2}],
                "blocked_values": ["n/a"]}"#,
        )
        .unwrap();
        let mut graph = IdentityGraph::from_config(rules).unwrap();
        let ev = Evidence {
            at: 10,
            source: "crm".into(),
            rule: PROBABILISTIC_RULE.into(),
            confidence: 0.7,
        };
        graph
            .observe(&[("email", "a@x.io"), ("crm_id", "1")], &ev)
            .unwrap();
        graph.observe(&[("email", "b@x.io")], &ev).unwrap();
        // Two emails may not share a profile: refused now, not queued.
        let (p, _) = graph
            .propose(("email", "A@x.io "), ("email", "b@x.io"), &ev)
            .unwrap();
        assert!(
            matches!(p, Proposal::Refused(RefusalReason::Limit { .. })),
            "{p:?}"
        );
        // Already together: nothing to review.
        let (p, _) = graph
            .propose(("crm_id", "1"), ("email", "a@x.io"), &ev)
            .unwrap();
        assert!(matches!(p, Proposal::AlreadyLinked(_)), "{p:?}");
        // A blocked value is refused.
        let (p, _) = graph
            .propose(("crm_id", "n/a"), ("crm_id", "1"), &ev)
            .unwrap();
        assert_eq!(p, Proposal::Refused(RefusalReason::Blocked));
        // A new identifier gets its own profile and the link waits.
        let (p, _) = graph
            .propose(("crm_id", "2"), ("email", "b@x.io"), &ev)
            .unwrap();
        assert_eq!(p, Proposal::Held { review: 0 });
        assert_ne!(
            graph.profile_of("crm_id", "2"),
            graph.profile_of("email", "b@x.io")
        );
        assert!(graph.profile_of("crm_id", "2").is_some());
        assert!(
            graph
                .review_queue()
                .iter()
                .all(|r| r.status == ReviewStatus::Pending)
        );
        let replayed = IdentityGraph::replay(graph.rules().clone(), graph.log()).unwrap();
        assert_eq!(replayed.digest(), graph.digest());
    }

    #[test]
    fn bad_thresholds_are_refused() {
        let t = Thresholds {
            auto_link: 0.4,
            review: 0.5,
        };
        assert!(t.validate().is_err());
    }
}

mod matcher {
    use std::collections::HashSet;

    use super::*;
    use arrow::array::UInt32Array;
    use arrow::compute::take_record_batch;
    use cdp_testkit::people::people;

    fn column<'a>(t: &'a RecordBatch, name: &str) -> &'a StringArray {
        t.column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
    }

    /// Pairs of row indices (left, right) sharing a cluster.
    fn true_pairs(left: &RecordBatch, right: Option<&RecordBatch>) -> HashSet<(u32, u32)> {
        let l = column(left, "cluster");
        let r = column(right.unwrap_or(left), "cluster");
        let mut out = HashSet::new();
        for i in 0..l.len() {
            for j in 0..r.len() {
                if l.value(i) == r.value(j) && (right.is_some() || i < j) {
                    out.insert((i as u32, j as u32));
                }
            }
        }
        out
    }

    fn scores(run: &MatchRun, truth: &HashSet<(u32, u32)>) -> (f64, f64) {
        let predicted: HashSet<(u32, u32)> = run
            .above(0.5)
            .map(|i| (run.pairs.left[i], run.pairs.right[i]))
            .collect();
        let tp = predicted.intersection(truth).count() as f64;
        (tp / predicted.len() as f64, tp / truth.len() as f64)
    }

    #[test]
    fn inferred_settings_deduplicate_generated_people() {
        let table = people(2_000, 0.3, 11);
        let settings = MatchSettings::infer(&table.schema(), &["rec_id", "cluster"]).unwrap();
        let kinds: Vec<(&str, &ComparisonKind)> = settings
            .comparisons
            .iter()
            .map(|c| (c.column.as_str(), &c.kind))
            .collect();
        assert!(matches!(
            kinds[0],
            ("given_name", ComparisonKind::JaroWinkler { .. })
        ));
        assert!(matches!(
            kinds[2],
            ("date_of_birth", ComparisonKind::Date { .. })
        ));
        assert!(settings.comparisons[3].term_frequency); // postcode
        assert_eq!(settings.blocking.rules.len(), 5); // two names, dob, postcode, phone

        let run = settings.dedupe(&table).unwrap();
        assert!(run.em.converged);
        // Every candidate pair is distinct and ordered, and far fewer than all pairs.
        let all = table.num_rows() * (table.num_rows() - 1) / 2;
        assert!(run.len() < all / 10, "{} of {all}", run.len());
        assert!(
            run.pairs
                .left
                .iter()
                .zip(&run.pairs.right)
                .all(|(l, r)| l < r)
        );
        let (precision, recall) = scores(&run, &true_pairs(&table, None));
        assert!(precision > 0.95, "precision {precision}");
        assert!(recall > 0.9, "recall {recall}");

        // The explanation of every linked pair sums to its weight.
        for i in run.above(0.5).take(50) {
            let e = run.explain(i).unwrap();
            let sum = e.prior_weight
                + e.terms
                    .iter()
                    .map(|t| t.weight + t.tf_adjustment)
                    .sum::<f64>();
            assert!((sum - run.weights[i]).abs() < 1e-9);
        }

        // Links as Arrow, ids from the id column.
        let ids = column(&table, "rec_id");
        let links = run.to_record_batch(ids, ids, 0.5).unwrap();
        assert_eq!(links.num_rows(), run.above(0.5).count());
        assert_eq!(links.schema().field(3).name(), "match_probability");
    }

    #[test]
    fn links_two_tables() {
        // Left: one record per person; right: the second records of the duplicated ones.
        let table = people(1_500, 0.4, 5);
        let clusters = column(&table, "cluster");
        let mut seen = HashSet::new();
        let (mut l, mut r) = (vec![], vec![]);
        for i in 0..table.num_rows() as u32 {
            if seen.insert(clusters.value(i as usize)) {
                l.push(i);
            } else {
                r.push(i);
            }
        }
        let left = take_record_batch(&table, &UInt32Array::from(l)).unwrap();
        let right = take_record_batch(&table, &UInt32Array::from(r)).unwrap();
        let settings = MatchSettings::infer(&table.schema(), &["rec_id", "cluster"]).unwrap();
        let run = settings.link(&left, &right).unwrap();
        let truth = true_pairs(&left, Some(&right));
        assert_eq!(truth.len(), right.num_rows());
        let (precision, recall) = scores(&run, &truth);
        assert!(precision > 0.95, "precision {precision}");
        assert!(recall > 0.9, "recall {recall}");
    }

    #[test]
    fn settings_from_a_file_with_defaults_and_clear_errors() {
        let json = r#"{
            "comparisons": [
                {"column": "surname", "kind": {"type": "jaro_winkler", "thresholds": [0.9]}},
                {"column": "date_of_birth", "kind": {"type": "date", "tolerance_days": 30}},
                {"name": "pc", "column": "postcode", "kind": {"type": "exact"},
                 "term_frequency": true}
            ],
            "blocking": {"rules": [{"keys": [{"type": "exact", "column": "postcode"}]}]},
            "thresholds": {"auto_link": 0.9}
        }"#;
        let settings: MatchSettings = serde_json::from_str(json).unwrap();
        assert_eq!(settings.u_samples, 100_000);
        assert_eq!(settings.thresholds.review, Thresholds::default().review);
        assert_eq!(settings.thresholds.auto_link, 0.9);
        let table = people(300, 0.3, 3);
        let run = settings.dedupe(&table).unwrap();
        let e = run.explain(0).unwrap();
        let names: Vec<&str> = e.terms.iter().map(|t| t.comparison.as_str()).collect();
        assert_eq!(names, ["surname", "date_of_birth", "pc"]);

        // Unknown keys and a missing blocking rule are refused, naming the problem.
        let bad = json.replace("\"tolerance_days\"", "\"tolerance\"");
        assert!(serde_json::from_str::<MatchSettings>(&bad).is_err());
        let mut unblocked = settings.clone();
        unblocked.blocking.rules.clear();
        let err = unblocked.dedupe(&table).unwrap_err().to_string();
        assert!(err.contains("blocking"), "{err}");
        let mut missing = settings;
        missing.comparisons[0].column = "nope".into();
        let err = missing.dedupe(&table).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn a_resolver_applies_a_run_and_its_profile_store_follows() {
        use cdp_identity::{
            ColumnMapping, IdentifierColumn, IdentifierKey, MemoryProfileStore, ProfileStore,
            Resolver, StoreConfig,
        };
        let table = people(400, 0.3, 13);
        let mut settings = MatchSettings::infer(&table.schema(), &["rec_id", "cluster"]).unwrap();
        settings.thresholds = Thresholds {
            auto_link: 0.99,
            review: 0.5,
        };
        let run = settings.dedupe(&table).unwrap();
        let rules = serde_json::from_str(r#"{"identifiers": [{"name": "record", "priority": 1}]}"#)
            .unwrap();
        let graph = IdentityGraph::from_config(rules).unwrap();
        let mapping = ColumnMapping::new(vec![IdentifierColumn::new("rec_id", "record")]);
        let store = std::sync::Arc::new(MemoryProfileStore::new(StoreConfig::default()));
        let resolver = Resolver::new(graph, mapping)
            .unwrap()
            .with_store(store.clone())
            .unwrap();
        let ids = column(&table, "rec_id");
        let (out, events) = resolver
            .apply_match_run(&run, "record", ids, ids, 5, "people")
            .unwrap();
        assert!(out.linked > 0 && !events.is_empty());
        let key = |row: u32| IdentifierKey::new("record", ids.value(row as usize));
        for i in run.above(0.99) {
            let (l, r) = (run.pairs.left[i], run.pairs.right[i]);
            // Linked in the graph means one profile in the store, read lock-free.
            assert_eq!(
                store.profile_id(key(l)),
                resolver.profile_of("record", ids.value(l as usize))
            );
            assert_eq!(store.profile_id(key(l)), store.profile_id(key(r)));
        }
        // Review-band pairs stay apart until approved; approval reaches the store too.
        let held = out
            .review
            .iter()
            .find_map(|p| match p.proposal {
                Proposal::Held { review } => Some((review, p.left, p.right)),
                _ => None,
            })
            .expect("a pair in the review band");
        let (review, l, r) = held;
        assert_ne!(store.profile_id(key(l)), store.profile_id(key(r)));
        resolver.approve(review, 6).unwrap();
        assert_eq!(store.profile_id(key(l)), store.profile_id(key(r)));
    }

    #[test]
    fn run_applies_to_a_graph_with_review_queue() {
        let table = people(500, 0.3, 9);
        let mut settings = MatchSettings::infer(&table.schema(), &["rec_id", "cluster"]).unwrap();
        settings.thresholds = Thresholds {
            auto_link: 0.99,
            review: 0.5,
        };
        let run = settings.dedupe(&table).unwrap();
        let rules = serde_json::from_str(r#"{"identifiers": [{"name": "record", "priority": 1}]}"#)
            .unwrap();
        let mut graph = IdentityGraph::from_config(rules).unwrap();
        let ids = column(&table, "rec_id");
        let out = run
            .apply_to_graph(&mut graph, "record", ids, ids, 0, "people")
            .unwrap();
        let review = run.above(0.5).count() - run.above(0.99).count();
        assert_eq!(out.review.len(), review);
        assert_eq!(out.linked + out.refused, run.above(0.99).count());
        let held = out
            .review
            .iter()
            .filter(|p| matches!(p.proposal, Proposal::Held { .. }))
            .count();
        assert_eq!(
            graph
                .review_queue()
                .iter()
                .filter(|r| r.status == ReviewStatus::Pending)
                .count(),
            held
        );
    }
}
