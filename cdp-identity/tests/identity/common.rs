//! Shared fixtures.

use cdp_identity::{Evidence, Identifier, IdentityGraph, RulesConfig};

/// user_id (1, limit 1), email (2, limit 1), phone (3, limit 2), device_id (4, limit 3),
/// anonymous_id (5, no limit, 30-day TTL).
pub(crate) fn rules() -> RulesConfig {
    serde_json::from_value(serde_json::json!({
        "identifiers": [
            {"name": "user_id", "priority": 1, "limit": 1},
            {"name": "email", "priority": 2, "limit": 1, "normaliser": "email"},
            {"name": "phone", "priority": 3, "limit": 2,
             "normaliser": {"phone": {"default_region": "US"}}},
            {"name": "device_id", "priority": 4, "limit": 3},
            {"name": "anonymous_id", "priority": 5, "ttl": "30d", "anonymous": true}
        ],
        "blocked_values": ["unknown", "null", "test@example.com"]
    }))
    .unwrap()
}

pub(crate) fn graph() -> IdentityGraph {
    IdentityGraph::from_config(rules()).unwrap()
}

pub(crate) fn id(kind: &str, value: &str) -> Identifier {
    Identifier::new(kind, value)
}

pub(crate) fn ev(at: i64) -> Evidence {
    Evidence::new(at, "web")
}

pub(crate) const DAY: i64 = 86_400_000;
