//! Laws, for random event sequences: replay reproduces the graph; merge then unmerge
//! restores the previous ids; limits hold; blocked values link nothing.

use std::collections::{BTreeMap, HashMap};

use cdp_identity::{Identifier, IdentityGraph, LogEvent, ProfileId, Rules};
use proptest::prelude::*;

use super::common::{DAY, ev, graph, rules};

const KINDS: [&str; 5] = ["user_id", "email", "phone", "device_id", "anonymous_id"];

fn value(kind: usize, n: u8) -> String {
    match (kind, n) {
        (1, 0) => "test@example.com".into(),
        (_, 0) => "unknown".into(),
        (1, n) => format!("v{n}@x.io"),
        (2, n) => format!("+1415555{n:04}"),
        (_, n) => format!("v{n}"),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Observe(Vec<(usize, u8)>),
    Unmerge(usize),
    Unlink(usize),
    Expire(i64),
    Freeze(bool),
    Approve(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => prop::collection::vec((0..5usize, 0..8u8), 1..5).prop_map(Op::Observe),
        2 => any::<usize>().prop_map(Op::Unmerge),
        2 => any::<usize>().prop_map(Op::Unlink),
        1 => (0..60i64).prop_map(Op::Expire),
        1 => any::<bool>().prop_map(Op::Freeze),
        1 => any::<usize>().prop_map(Op::Approve),
    ]
}

/// Applies `ops`; operations that do not apply in the current state (no merge to undo, ...)
/// are skipped, as a caller would see an error.
fn run(ops: &[Op]) -> IdentityGraph {
    let mut g = graph();
    let mut t = 0;
    for op in ops {
        t += 1_000;
        match op {
            Op::Observe(row) => {
                let values: Vec<(&str, String)> =
                    row.iter().map(|&(k, n)| (KINDS[k], value(k, n))).collect();
                let row: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
                g.observe(&row, &ev(t)).unwrap();
            }
            Op::Unmerge(i) => {
                let live: Vec<u64> = g
                    .merges()
                    .iter()
                    .filter(|m| !m.undone)
                    .map(|m| m.seq)
                    .collect();
                if !live.is_empty() {
                    let _ = g.unmerge(live[i % live.len()], t);
                }
            }
            Op::Unlink(i) => {
                let links: Vec<_> = g.digest().links.into_iter().collect();
                if !links.is_empty() {
                    let l = &links[i % links.len()];
                    g.unlink(&l.a, &l.b, t).unwrap();
                }
            }
            Op::Expire(days) => {
                t += days * DAY;
                g.expire(t).unwrap();
            }
            Op::Freeze(on) => g.set_frozen(*on, t),
            Op::Approve(i) => {
                let pending: Vec<u32> = g
                    .review_queue()
                    .iter()
                    .filter(|r| r.status == cdp_identity::ReviewStatus::Pending)
                    .map(|r| r.id)
                    .collect();
                if !pending.is_empty() {
                    g.approve(pending[i % pending.len()], t).unwrap();
                }
            }
        }
        check_invariants(&g);
    }
    g
}

fn check_invariants(g: &IdentityGraph) {
    let rules = g.rules();
    for (profile, members) in g.partition() {
        let mut per_kind: HashMap<&str, u32> = HashMap::new();
        for m in &members {
            *per_kind.entry(m.kind.as_str()).or_default() += 1;
            assert!(
                !rules.is_blocked(&m.kind, &m.value),
                "blocked {m} in {profile}"
            );
        }
        for t in &rules.config().identifiers {
            if let Some(limit) = t.limit {
                let n = per_kind.get(t.name.as_str()).copied().unwrap_or(0);
                assert!(n <= limit, "{profile} holds {n} {} (limit {limit})", t.name);
            }
        }
    }
    for l in g.digest().links {
        assert!(
            !rules.is_blocked(&l.a.kind, &l.a.value),
            "link from blocked {}",
            l.a
        );
        assert!(
            !rules.is_blocked(&l.b.kind, &l.b.value),
            "link to blocked {}",
            l.b
        );
    }
}

fn profile_map(g: &IdentityGraph) -> BTreeMap<Identifier, ProfileId> {
    g.partition()
        .into_iter()
        .flat_map(|(p, ids)| ids.into_iter().map(move |i| (i, p)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_global_rejects: 1_000_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn replaying_the_log_rebuilds_the_same_graph(ops in prop::collection::vec(op(), 1..60)) {
        let g = run(&ops);
        let log = g.log();
        let rebuilt = IdentityGraph::replay(Rules::new(rules()).unwrap(), log.clone()).unwrap();
        prop_assert_eq!(rebuilt.partition(), g.partition());
        prop_assert_eq!(rebuilt.digest(), g.digest());
        prop_assert_eq!(rebuilt.log(), log);
    }

    #[test]
    fn merge_then_unmerge_restores_previous_ids(
        ops in prop::collection::vec(op(), 1..60),
        pick in any::<(usize, usize)>(),
    ) {
        merge_then_unmerge(&ops, pick)?;
    }
}

/// Links two identifiers of different profiles; when that merges them, undoes the merge and
/// checks every identifier has its previous profile id again.
fn merge_then_unmerge(ops: &[Op], pick: (usize, usize)) -> Result<(), TestCaseError> {
    let mut g = run(ops);
    g.set_frozen(false, 10_000_000);
    let before = profile_map(&g);
    let ids: Vec<&Identifier> = before.keys().collect();
    prop_assume!(ids.len() >= 2);
    let (a, b) = (
        ids[pick.0 % ids.len()].clone(),
        ids[pick.1 % ids.len()].clone(),
    );
    prop_assume!(before[&a] != before[&b]);
    let len = g.log_len();
    g.observe(&[(&a.kind, &a.value), (&b.kind, &b.value)], &ev(10_000_001))
        .unwrap();
    let merge = g.log_since(len).into_iter().find_map(|r| match r.event {
        LogEvent::Merge { .. } => Some(r.seq),
        _ => None,
    });
    // Refused by a limit or a scope: nothing to undo.
    prop_assume!(merge.is_some());
    g.unmerge(merge.unwrap(), 10_000_002).unwrap();
    prop_assert_eq!(profile_map(&g), before);
    check_invariants(&g);
    Ok(())
}

/// Regression: a node whose origin profile was revived by an unlink kept pointing at it,
/// and a later unmerge of that profile cut the node off.
#[test]
fn regression_origin_follows_revival_after_unlink() {
    use Op::Observe as O;
    let ops = vec![
        O(vec![(2, 4)]),
        O(vec![(2, 1), (2, 2)]),
        O(vec![(0, 1)]),
        O(vec![(2, 3), (4, 5)]),
        O(vec![(4, 7), (0, 1)]),
        O(vec![(0, 6)]),
        O(vec![(0, 1), (4, 5)]),
        O(vec![(1, 1), (0, 3), (2, 1)]),
        O(vec![(1, 7), (2, 5), (1, 6)]),
        O(vec![(1, 4), (0, 1), (1, 5)]),
        O(vec![(4, 6), (0, 1)]),
        O(vec![(0, 1), (4, 2), (4, 4)]),
        O(vec![(3, 2), (1, 2)]),
        O(vec![(4, 3), (2, 7), (0, 1), (2, 6)]),
        Op::Unlink(10847261871005601317),
        O(vec![(3, 3), (3, 1)]),
        O(vec![(4, 1), (0, 4)]),
        O(vec![(1, 3), (0, 2)]),
    ];
    merge_then_unmerge(&ops, (3460256179592204490, 10544814261145384138)).unwrap();
}

/// Regression: an identifier that expired and came back founded a new profile, but an
/// unmerge restored the profile it had founded before expiring.
#[test]
fn regression_returning_identifier_restores_its_new_profile() {
    use Op::Observe as O;
    let ops = vec![
        O(vec![(3, 1)]),
        O(vec![(1, 3), (0, 3)]),
        O(vec![(3, 2), (1, 6)]),
        O(vec![(2, 1), (2, 7)]),
        O(vec![(4, 4), (4, 7)]),
        O(vec![(0, 2)]),
        O(vec![(0, 5), (2, 1), (4, 7)]),
        Op::Expire(30),
        O(vec![(3, 3)]),
        O(vec![(3, 5), (0, 7)]),
        O(vec![(4, 4)]),
        O(vec![(4, 1), (2, 2)]),
        O(vec![(2, 3)]),
        O(vec![(0, 0)]),
        O(vec![(3, 4), (2, 4), (1, 5)]),
        O(vec![(2, 5), (1, 7), (0, 4)]),
        O(vec![(2, 6), (4, 5)]),
        O(vec![(4, 6), (0, 1), (0, 6)]),
        O(vec![(1, 4)]),
        O(vec![(1, 1), (3, 6)]),
        O(vec![(4, 2), (1, 2)]),
    ];
    merge_then_unmerge(&ops, (7025684761237018754, 4344260412345909149)).unwrap();
}
