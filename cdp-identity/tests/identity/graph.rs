//! Linking, refusing, merging and splitting through the graph API.

use cdp_core::IdentityEventKind;
use cdp_identity::{IdentityGraph, LogEvent, RefusalReason, Rules};

use super::common::{DAY, ev, graph, id, rules};

#[test]
fn row_identifiers_share_a_profile_and_normalise() {
    let mut g = graph();
    let (p, events) = g
        .observe(
            &[("email", " Ada@Example.com"), ("anonymous_id", "a1")],
            &ev(1),
        )
        .unwrap();
    let p = p.unwrap();
    assert_eq!(g.profile_of("email", "ada@example.com"), Some(p));
    assert_eq!(g.profile_of("anonymous_id", "a1"), Some(p));
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.kind == IdentityEventKind::Link));
    assert_eq!(g.profile_count(), 1);
}

#[test]
fn shared_device_does_not_fuse_people() {
    let mut g = graph();
    let mut refused = 0;
    for i in 0..500 {
        let email = format!("person{i}@example.com");
        let (_, events) = g
            .observe(&[("email", &email), ("device_id", "kiosk-1")], &ev(i))
            .unwrap();
        refused += events
            .iter()
            .filter(|e| e.kind == IdentityEventKind::RefusedLink)
            .count();
    }
    assert_eq!(g.profile_count(), 500);
    assert_eq!(refused, 499);
    let refusals: Vec<_> = g
        .log()
        .into_iter()
        .filter_map(|r| match r.event {
            LogEvent::Refused { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(refusals.len(), 499);
    assert!(refusals.iter().all(|r| matches!(
        r,
        RefusalReason::Limit { kind, limit: 1, would_hold: 2 } if kind == "email"
    )));
}

#[test]
fn blocked_values_never_link() {
    let mut g = graph();
    g.observe(
        &[("email", "test@example.com"), ("anonymous_id", "a1")],
        &ev(1),
    )
    .unwrap();
    g.observe(
        &[("email", "TEST@example.com"), ("anonymous_id", "a2")],
        &ev(2),
    )
    .unwrap();
    let (p, _) = g.observe(&[("user_id", "unknown")], &ev(3)).unwrap();
    assert_eq!(p, None);
    assert_ne!(
        g.profile_of("anonymous_id", "a1"),
        g.profile_of("anonymous_id", "a2")
    );
    assert_eq!(g.profile_of("email", "test@example.com"), None);
}

#[test]
fn merge_keeps_oldest_id_and_old_id_resolves() {
    let mut g = graph();
    let (p1, _) = g.observe(&[("anonymous_id", "a1")], &ev(1)).unwrap();
    let (p2, _) = g.observe(&[("email", "ada@x.io")], &ev(2)).unwrap();
    let (p, events) = g
        .observe(&[("email", "ada@x.io"), ("anonymous_id", "a1")], &ev(3))
        .unwrap();
    assert_eq!(p, p1);
    assert_eq!(g.resolve(p2.unwrap()), p1);
    let merge = events
        .iter()
        .find(|e| e.kind == IdentityEventKind::Merge)
        .unwrap();
    assert_eq!(merge.profile_id, p1.unwrap().to_string());
    assert_eq!(merge.other_profile_id, Some(p2.unwrap().to_string()));
}

#[test]
fn highest_priority_policy_keeps_the_user_id_profile() {
    let mut config = rules();
    config.merge_policy = cdp_identity::MergePolicy::HighestPriorityIdentifier;
    let mut g = IdentityGraph::from_config(config).unwrap();
    let (anon, _) = g.observe(&[("anonymous_id", "a1")], &ev(1)).unwrap();
    let (user, _) = g.observe(&[("user_id", "u1")], &ev(2)).unwrap();
    let (p, _) = g
        .observe(&[("user_id", "u1"), ("anonymous_id", "a1")], &ev(3))
        .unwrap();
    assert_eq!(p, user);
    assert_eq!(g.resolve(anon.unwrap()), user);
}

#[test]
fn conflicting_user_ids_refuse_the_lower_priority_link() {
    let mut g = graph();
    let (p1, _) = g
        .observe(&[("user_id", "u1"), ("email", "ada@x.io")], &ev(1))
        .unwrap();
    // u2 arrives with ada's email and a fresh anonymous id: the email stays with u1, the
    // anonymous id follows u2.
    let (p2, events) = g
        .observe(
            &[
                ("user_id", "u2"),
                ("email", "ada@x.io"),
                ("anonymous_id", "a9"),
            ],
            &ev(2),
        )
        .unwrap();
    assert_ne!(p1, p2);
    assert_eq!(g.profile_of("email", "ada@x.io"), p1);
    assert_eq!(g.profile_of("anonymous_id", "a9"), p2);
    assert!(
        events
            .iter()
            .any(|e| e.kind == IdentityEventKind::RefusedLink && e.reason.contains("`user_id`"))
    );
}

#[test]
fn unmerge_restores_both_ids() {
    let mut g = graph();
    let (p1, _) = g
        .observe(&[("email", "ada@x.io"), ("anonymous_id", "a1")], &ev(1))
        .unwrap();
    let (p2, _) = g
        .observe(&[("phone", "415 555 0100"), ("anonymous_id", "a2")], &ev(2))
        .unwrap();
    g.observe(&[("email", "ada@x.io"), ("phone", "+14155550100")], &ev(3))
        .unwrap();
    // More evidence after the merge, on each side.
    g.observe(&[("phone", "+14155550100"), ("anonymous_id", "a3")], &ev(4))
        .unwrap();
    assert_eq!(g.profile_count(), 1);
    let merge = g.merges()[0].clone();
    let events = g.unmerge(merge.seq, 5).unwrap();
    assert!(events.iter().any(|e| e.kind == IdentityEventKind::Unmerge));
    assert_eq!(g.profile_of("email", "ada@x.io"), p1);
    assert_eq!(g.profile_of("anonymous_id", "a1"), p1);
    assert_eq!(g.profile_of("phone", "+14155550100"), p2);
    assert_eq!(g.profile_of("anonymous_id", "a2"), p2);
    // a3 joined through the phone: it follows the phone's side.
    assert_eq!(g.profile_of("anonymous_id", "a3"), p2);
    assert!(g.merges()[0].undone);
    assert!(g.unmerge(merge.seq, 6).is_err());
}

#[test]
fn unmerge_by_link() {
    let mut g = graph();
    let (p1, _) = g.observe(&[("email", "ada@x.io")], &ev(1)).unwrap();
    let (p2, _) = g.observe(&[("device_id", "d1")], &ev(2)).unwrap();
    g.observe(&[("email", "ada@x.io"), ("device_id", "d1")], &ev(3))
        .unwrap();
    g.unmerge_link(&id("device_id", "d1"), &id("email", "ada@x.io"), 4)
        .unwrap();
    assert_eq!(g.profile_of("email", "ada@x.io"), p1);
    assert_eq!(g.profile_of("device_id", "d1"), p2);
}

#[test]
fn unlink_splits_only_when_it_was_the_bridge() {
    let mut g = graph();
    let (p, _) = g
        .observe(&[("email", "ada@x.io"), ("anonymous_id", "a1")], &ev(1))
        .unwrap();
    g.observe(&[("email", "ada@x.io"), ("device_id", "d1")], &ev(2))
        .unwrap();
    g.observe(&[("device_id", "d1"), ("anonymous_id", "a1")], &ev(3))
        .unwrap();
    g.unlink(&id("email", "ada@x.io"), &id("anonymous_id", "a1"), 4)
        .unwrap();
    assert_eq!(g.profile_count(), 1);
    g.unlink(&id("device_id", "d1"), &id("anonymous_id", "a1"), 5)
        .unwrap();
    assert_eq!(g.profile_count(), 2);
    assert_eq!(g.profile_of("email", "ada@x.io"), p);
    assert_ne!(g.profile_of("anonymous_id", "a1"), p);
}

#[test]
fn ttl_expiry_splits_where_the_anonymous_id_was_the_bridge() {
    let mut g = graph();
    let (p, _) = g
        .observe(&[("email", "ada@x.io"), ("anonymous_id", "a1")], &ev(0))
        .unwrap();
    g.observe(&[("device_id", "d1"), ("anonymous_id", "a1")], &ev(DAY))
        .unwrap();
    g.observe(&[("email", "ada@x.io")], &ev(40 * DAY)).unwrap();
    g.observe(&[("device_id", "d1")], &ev(40 * DAY)).unwrap();
    assert_eq!(g.profile_count(), 1);
    let (expired, _) = g.expire(40 * DAY).unwrap();
    assert_eq!(expired, 1);
    assert_eq!(g.profile_count(), 2);
    assert_eq!(g.profile_of("email", "ada@x.io"), p);
    assert_eq!(g.profile_of("anonymous_id", "a1"), None);
    let d1 = g.profile_of("device_id", "d1").unwrap();
    assert_ne!(Some(d1), p);
    // Seen again, the anonymous id starts over.
    let (again, _) = g.observe(&[("anonymous_id", "a1")], &ev(41 * DAY)).unwrap();
    assert!(again.is_some() && again != p && again != Some(d1));
}

#[test]
fn freeze_holds_merges_for_review() {
    let mut g = graph();
    let (p1, _) = g.observe(&[("email", "ada@x.io")], &ev(1)).unwrap();
    let (p2, _) = g.observe(&[("device_id", "d1")], &ev(2)).unwrap();
    g.set_frozen(true, 3);
    let (p, events) = g
        .observe(
            &[
                ("email", "ada@x.io"),
                ("device_id", "d1"),
                ("anonymous_id", "a1"),
            ],
            &ev(4),
        )
        .unwrap();
    assert_eq!(p, p1);
    assert!(
        events
            .iter()
            .any(|e| e.kind == IdentityEventKind::HeldForReview)
    );
    // New identifiers still join.
    assert_eq!(g.profile_of("anonymous_id", "a1"), p1);
    assert_eq!(g.profile_of("device_id", "d1"), p2);
    let queue = g.review_queue();
    assert_eq!(queue.len(), 1);
    g.approve(queue[0].id, 5).unwrap();
    assert_eq!(g.profile_of("device_id", "d1"), p1);
    assert!(g.approve(queue[0].id, 6).is_err());
}

#[test]
fn consent_scopes_keep_profiles_apart() {
    let mut config = rules();
    config.scopes = serde_json::from_value(serde_json::json!([
        {"name": "health", "isolated": true}
    ]))
    .unwrap();
    let mut g = IdentityGraph::from_config(config).unwrap();
    let (plain, _) = g.observe(&[("email", "ada@x.io")], &ev(1)).unwrap();
    let (scoped, events) = g
        .observe_scoped(
            &[("device_id", "d1"), ("email", "ada@x.io")],
            &ev(2),
            Some("health"),
        )
        .unwrap();
    // The email already exists unscoped; the health-scoped device may not join it.
    assert_eq!(scoped, plain);
    assert_ne!(g.profile_of("device_id", "d1"), plain);
    assert!(
        events
            .iter()
            .any(|e| e.kind == IdentityEventKind::RefusedLink && e.reason.contains("consent"))
    );
}

#[test]
fn replay_rebuilds_an_identical_graph() {
    let mut g = graph();
    for i in 0..60 {
        let email = format!("p{}@x.io", i % 7);
        let anon = format!("a{}", i % 11);
        let device = format!("d{}", i % 13);
        let row: Vec<(&str, &str)> = match i % 3 {
            0 => vec![("email", &email), ("anonymous_id", &anon)],
            1 => vec![("anonymous_id", &anon), ("device_id", &device)],
            _ => vec![("device_id", &device)],
        };
        g.observe(&row, &ev(i * 1000)).unwrap();
    }
    let first = g.merges().into_iter().find(|m| !m.undone).unwrap();
    g.unmerge(first.seq, 60_000).unwrap();
    g.expire(60 * DAY).unwrap();
    let log = g.log();
    let rebuilt = IdentityGraph::replay(Rules::new(rules()).unwrap(), log.clone()).unwrap();
    assert_eq!(rebuilt.digest(), g.digest());
    assert_eq!(rebuilt.log(), log);
}

#[test]
fn replay_detects_a_tampered_log() {
    let mut g = graph();
    g.observe(&[("email", "a@x.io")], &ev(1)).unwrap();
    g.observe(&[("device_id", "d1")], &ev(2)).unwrap();
    g.observe(&[("email", "a@x.io"), ("device_id", "d1")], &ev(3))
        .unwrap();
    let mut log = g.log();
    if let LogEvent::Merge {
        survivor, absorbed, ..
    } = &mut log[3].event
    {
        std::mem::swap(survivor, absorbed);
    } else {
        panic!("expected a merge, got {:?}", log[3]);
    }
    let err = IdentityGraph::replay(Rules::new(rules()).unwrap(), log).unwrap_err();
    assert!(
        matches!(err, cdp_identity::Error::ReplayDiverged { seq: 3, .. }),
        "{err}"
    );
}

#[test]
fn profile_ids_are_deterministic() {
    let run = || {
        let mut g = graph();
        g.observe(
            &[("email", "a@x.io"), ("anonymous_id", "z")],
            &ev(1_700_000_000_000),
        )
        .unwrap()
        .0
    };
    let a = run().unwrap();
    assert_eq!(Some(a), run());
    assert_eq!(a.0.get_version_num(), 7);
}
