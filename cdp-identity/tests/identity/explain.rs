//! Explanations and health, as text (snapshots) and serde.

use cdp_identity::IdentityGraph;

use super::common::{DAY, ev, graph, id};

const T0: i64 = 1_700_000_000_000;

fn story() -> IdentityGraph {
    let mut g = graph();
    g.observe(&[("anonymous_id", "a1"), ("device_id", "ipad-7")], &ev(T0))
        .unwrap();
    g.observe(
        &[("email", "ada@x.io"), ("anonymous_id", "a1")],
        &ev(T0 + 60_000),
    )
    .unwrap();
    g.observe(&[("user_id", "u42"), ("email", "Ada@X.io")], &ev(T0 + DAY))
        .unwrap();
    g.observe(
        &[("email", "bob@x.io"), ("device_id", "ipad-7")],
        &ev(T0 + 2 * DAY),
    )
    .unwrap();
    g
}

#[test]
fn explains_a_path_between_two_identifiers() {
    let g = story();
    let e = g
        .explain(&id("user_id", "u42"), &id("device_id", "ipad-7"))
        .unwrap();
    assert!(e.same_profile);
    assert_eq!(e.path.len(), 3);
    assert_eq!(e.path[0].from, id("user_id", "u42"));
    assert_eq!(e.path[2].to, id("device_id", "ipad-7"));
    insta::assert_snapshot!("explain_path", e.to_string());
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["same_profile"], true);
    assert_eq!(json["path"][0]["rule"], "same_event");
}

#[test]
fn explains_why_two_identifiers_are_apart() {
    let g = story();
    let e = g
        .explain(&id("email", "bob@x.io"), &id("device_id", "ipad-7"))
        .unwrap();
    assert!(!e.same_profile);
    assert_eq!(e.refusal_count, 1);
    insta::assert_snapshot!("explain_apart", e.to_string());
}

#[test]
fn explains_a_profile_and_resolves_merged_ids() {
    let g = story();
    let merged = g.merges()[0].absorbed;
    let p = g.explain_profile(merged).unwrap();
    assert_ne!(p.profile, merged);
    assert_eq!(p.identifiers.len(), 4);
    assert_eq!(p.merges.len(), 2);
    insta::assert_snapshot!("explain_profile", p.to_string());
    assert!(serde_json::to_string(&p).unwrap().contains("\"merges\""));
}

#[test]
fn health_reports_sizes_orphans_and_rates() {
    let mut g = story();
    g.observe(&[("anonymous_id", "lonely")], &ev(T0 + 3 * DAY))
        .unwrap();
    let h = g.health(T0 + 10 * DAY);
    assert_eq!(h.profiles, 3);
    assert_eq!(h.identifiers, 6);
    assert_eq!(h.size_histogram["1"], 2);
    assert_eq!(h.size_histogram["3-5"], 1);
    assert_eq!(h.largest.unwrap().1, 4);
    assert!((h.orphan_rate - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(h.merges, 2);
    assert_eq!(h.refused, 1);
    assert_eq!(h.stale_link_age_ms.unwrap().2, 10 * DAY);
    insta::assert_snapshot!("health", h.to_string());
}
