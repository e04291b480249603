//! Identity rules, declared in config: identifier types with priority, per-profile limit,
//! TTL and normaliser; blocked values; the merge policy; consent scopes.
//!
//! ```
//! let rules: cdp_identity::RulesConfig = serde_json::from_str(r#"{
//!     "identifiers": [
//!         {"name": "user_id", "priority": 1, "limit": 1},
//!         {"name": "email", "priority": 2, "limit": 1, "normaliser": "email"},
//!         {"name": "phone", "priority": 3, "limit": 2,
//!          "normaliser": {"phone": {"default_region": "US"}}},
//!         {"name": "anonymous_id", "priority": 5, "ttl": "90d", "anonymous": true}
//!     ],
//!     "blocked_values": ["unknown", "null", "test@example.com"],
//!     "merge_policy": "oldest_profile"
//! }"#).unwrap();
//! let rules = cdp_identity::Rules::new(rules).unwrap();
//! assert_eq!(rules.normalise("email", " Ada@Example.com "), Some("ada@example.com".into()));
//! assert_eq!(rules.normalise("phone", "(519) 555-0166"), Some("+15195550166".into()));
//! // Erasure and suppression built from the rules compare exactly as the graph does.
//! assert_eq!(rules.vocabulary().normalise("phone", "+1 519 555 0166"), Some("+15195550166".into()));
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::identifier::Normaliser;

/// The identity rules, as written in config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// The identifier types. At most 255.
    pub identifiers: Vec<IdentifierTypeConfig>,
    /// Values that never link anything, for every type (compared after each type's
    /// normaliser ran): `unknown`, `null`, a support team's shared address, ...
    #[serde(default)]
    pub blocked_values: Vec<String>,
    /// Which profile id survives when two profiles merge.
    #[serde(default)]
    pub merge_policy: MergePolicy,
    /// Consent scopes identifiers can carry, and which of them must never share a profile.
    #[serde(default)]
    pub scopes: Vec<ScopeConfig>,
    /// Seed mixed into the profile ids the graph derives, so two deployments fed the same
    /// data can keep distinct ids. Ids are otherwise a pure function of the data.
    #[serde(default)]
    pub id_seed: u64,
}

/// One identifier type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierTypeConfig {
    /// The name columns map to (`email`, `device_id`, ...).
    pub name: String,
    /// 1 is the highest. When a link would break a limit, the link to the lower-priority
    /// identifier is the one refused. Equal priorities are ordered by declaration.
    pub priority: u8,
    /// The most identifiers of this type one profile may hold. None: no limit.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Identifiers of this type not seen for this long expire (`"90d"`, `"12h"`, `"30m"`,
    /// `"45s"`, `"2w"`), splitting profiles where they were the only bridge.
    #[serde(default)]
    pub ttl: Option<Ttl>,
    /// How raw values are cleaned before comparison.
    #[serde(default)]
    pub normaliser: Normaliser,
    /// Whether this type names a device or a session rather than a person; profiles made of
    /// anonymous identifiers only count as orphans in the health report.
    #[serde(default)]
    pub anonymous: bool,
    /// Values of this type that never link anything, in addition to the global list.
    #[serde(default)]
    pub blocked_values: Vec<String>,
    /// The consent scope identifiers of this type carry unless the row says otherwise.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Which profile id survives a merge; the other one is recorded as merged into it and keeps
/// resolving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergePolicy {
    /// The profile created first.
    #[default]
    OldestProfile,
    /// The profile holding the highest-priority identifier; the oldest on a tie.
    HighestPriorityIdentifier,
}

/// A consent scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// The scope name identifiers carry.
    pub name: String,
    /// Scopes whose identifiers may never share a profile with this one (the relation is
    /// symmetric). `"unscoped"` names identifiers that carry no scope.
    #[serde(default)]
    pub forbid_with: Vec<String>,
    /// Shorthand for forbidding every other scope, unscoped identifiers included.
    #[serde(default)]
    pub isolated: bool,
}

/// A duration written as a number and a unit: `s`, `m`, `h`, `d` or `w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(pub Duration);

impl Ttl {
    fn parse(text: &str) -> Option<Ttl> {
        let text = text.trim();
        let split = text.len().checked_sub(1)?;
        let (number, unit) = text.split_at(split);
        let n: u64 = number.trim().parse().ok()?;
        let secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return None,
        };
        Some(Ttl(Duration::from_secs(n.checked_mul(secs)?)))
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
            if s > 0 && s.is_multiple_of(size) {
                return write!(f, "{}{unit}", s / size);
            }
        }
        write!(f, "{s}s")
    }
}

impl Serialize for Ttl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ttl::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid ttl `{text}`: expected a number and a unit among s, m, h, d, w (\"90d\")"
            ))
        })
    }
}

/// A compiled identifier type.
#[derive(Debug, Clone)]
pub(crate) struct TypeRule {
    pub(crate) name: String,
    pub(crate) priority: u8,
    pub(crate) limit: Option<u32>,
    /// Index into a profile's per-type counters, for types with a limit.
    pub(crate) limit_slot: Option<usize>,
    pub(crate) ttl_ms: Option<i64>,
    pub(crate) normaliser: Normaliser,
    pub(crate) anonymous: bool,
    pub(crate) scope: u8,
    blocked: HashSet<String>,
}

/// Validated, compiled rules.
#[derive(Debug, Clone)]
pub struct Rules {
    config: RulesConfig,
    pub(crate) types: Vec<TypeRule>,
    by_name: HashMap<String, u8>,
    /// Type index of each limited counter.
    pub(crate) limited: Vec<u8>,
    /// Scope names by index; index 0 is "unscoped".
    pub(crate) scope_names: Vec<String>,
    /// For each scope index, the mask of scope indexes it may not share a profile with.
    forbid: Vec<u32>,
}

/// The name of the implicit scope of identifiers that carry none.
pub const UNSCOPED: &str = "unscoped";

impl Rules {
    /// Validates and compiles `config`.
    pub fn new(config: RulesConfig) -> Result<Rules> {
        if config.identifiers.is_empty() {
            return Err(Error::config(
                "`identifiers` must declare at least one type",
            ));
        }
        if config.identifiers.len() > 255 {
            return Err(Error::config("at most 255 identifier types"));
        }
        if config.scopes.len() > 31 {
            return Err(Error::config("at most 31 consent scopes"));
        }
        let mut scope_names = vec![UNSCOPED.to_string()];
        for s in &config.scopes {
            if scope_names.contains(&s.name) {
                return Err(Error::config(format!("scope `{}` declared twice", s.name)));
            }
            scope_names.push(s.name.clone());
        }
        let scope_index = |name: &str| -> Result<u8> {
            scope_names
                .iter()
                .position(|n| n == name)
                .map(|i| i as u8)
                .ok_or_else(|| Error::config(format!("unknown scope `{name}`")))
        };
        let mut forbid = vec![0u32; scope_names.len()];
        for s in &config.scopes {
            let i = scope_index(&s.name)? as usize;
            if s.isolated {
                let all = if scope_names.len() == 32 {
                    u32::MAX
                } else {
                    (1u32 << scope_names.len()) - 1
                };
                forbid[i] |= all & !(1 << i);
            }
            for other in &s.forbid_with {
                let j = scope_index(other)? as usize;
                forbid[i] |= 1 << j;
            }
        }
        // Symmetric closure: if a forbids b then b forbids a.
        for i in 0..forbid.len() {
            for j in 0..forbid.len() {
                if forbid[i] & (1 << j) != 0 {
                    forbid[j] |= 1 << i;
                }
            }
        }

        let mut types = Vec::with_capacity(config.identifiers.len());
        let mut by_name = HashMap::new();
        let mut limited = Vec::new();
        for (i, t) in config.identifiers.iter().enumerate() {
            if t.name.is_empty() {
                return Err(Error::config("identifier type with an empty name"));
            }
            if by_name.insert(t.name.clone(), i as u8).is_some() {
                return Err(Error::config(format!(
                    "identifier type `{}` declared twice",
                    t.name
                )));
            }
            if t.priority == 0 {
                return Err(Error::config(format!(
                    "identifier type `{}`: priority starts at 1 (the highest)",
                    t.name
                )));
            }
            if let Some(limit) = t.limit
                && !(1..=u32::from(u16::MAX)).contains(&limit)
            {
                return Err(Error::config(format!(
                    "identifier type `{}`: limit must be between 1 and 65535, got {limit}",
                    t.name
                )));
            }
            t.normaliser
                .validate()
                .map_err(|e| Error::config(format!("identifier type `{}`: {e}", t.name)))?;
            let limit_slot = t.limit.map(|_| {
                limited.push(i as u8);
                limited.len() - 1
            });
            let ttl_ms = match t.ttl {
                Some(Ttl(d)) if d.is_zero() => {
                    return Err(Error::config(format!(
                        "identifier type `{}`: ttl must be positive",
                        t.name
                    )));
                }
                Some(Ttl(d)) => Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                None => None,
            };
            let scope = match &t.scope {
                Some(s) => scope_index(s)?,
                None => 0,
            };
            let mut blocked = HashSet::new();
            for v in config.blocked_values.iter().chain(&t.blocked_values) {
                // A blocked value is compared in the form the identifier takes after its
                // normaliser; raw forms the normaliser rejects cannot link anyway.
                if let Some(n) = t.normaliser.normalise(v) {
                    blocked.insert(n);
                }
                blocked.insert(v.clone());
            }
            types.push(TypeRule {
                name: t.name.clone(),
                priority: t.priority,
                limit: t.limit,
                limit_slot,
                ttl_ms,
                normaliser: t.normaliser.clone(),
                anonymous: t.anonymous,
                scope,
                blocked,
            });
        }
        Ok(Rules {
            config,
            types,
            by_name,
            limited,
            scope_names,
            forbid,
        })
    }

    /// The configuration these rules were compiled from.
    pub fn config(&self) -> &RulesConfig {
        &self.config
    }

    /// The index of an identifier type.
    pub fn type_index(&self, name: &str) -> Option<u8> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn require_type(&self, name: &str) -> Result<u8> {
        self.type_index(name)
            .ok_or_else(|| Error::UnknownIdentifierType(name.to_string()))
    }

    /// The name of the identifier type at `index`.
    pub fn type_name(&self, index: u8) -> &str {
        self.types
            .get(index as usize)
            .map_or("?", |t| t.name.as_str())
    }

    /// Number of identifier types.
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    /// Normalises a raw value of type `kind`; `None` for unknown types and rejected values.
    pub fn normalise(&self, kind: &str, raw: &str) -> Option<String> {
        let t = self.types.get(self.type_index(kind)? as usize)?;
        t.normaliser.normalise(raw)
    }

    /// The identifier vocabulary of these rules: each declared type with its normaliser
    /// (types not declared are trimmed). Give it to suppression and erasure so they
    /// compare identifiers as the graph does.
    pub fn vocabulary(&self) -> cdp_core::Vocabulary {
        self.types
            .iter()
            .fold(cdp_core::Vocabulary::empty(), |v, t| {
                v.with(t.name.clone(), t.normaliser.clone())
            })
    }

    /// Whether identifiers of type `kind` are anonymous (device or session ids).
    pub fn is_anonymous(&self, kind: &str) -> bool {
        self.type_index(kind)
            .is_some_and(|k| self.types[k as usize].anonymous)
    }

    /// Whether a normalised value of type `kind` is blocked.
    pub fn is_blocked(&self, kind: &str, value: &str) -> bool {
        self.type_index(kind)
            .is_some_and(|k| self.is_blocked_index(k, value))
    }

    pub(crate) fn is_blocked_index(&self, kind: u8, value: &str) -> bool {
        self.types[kind as usize].blocked.contains(value)
    }

    pub(crate) fn scope_index(&self, name: &str) -> Option<u8> {
        self.scope_names
            .iter()
            .position(|n| n == name)
            .map(|i| i as u8)
    }

    /// Whether components with these scope masks may become one.
    pub(crate) fn scopes_compatible(&self, a: u32, b: u32) -> bool {
        if (a | b) == 1 {
            return true;
        }
        let mut bits = a;
        while bits != 0 {
            let s = bits.trailing_zeros() as usize;
            if self.forbid[s] & b != 0 {
                return false;
            }
            bits &= bits - 1;
        }
        true
    }

    /// A scope mask as names, for refusal reasons.
    pub(crate) fn scope_mask_names(&self, mask: u32) -> Vec<String> {
        (0..self.scope_names.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| self.scope_names[i].clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<Rules> {
        Rules::new(serde_json::from_str(json)?)
    }

    #[test]
    fn ttl_parses_and_prints() {
        assert_eq!(
            Ttl::parse("90d"),
            Some(Ttl(Duration::from_secs(90 * 86_400)))
        );
        assert_eq!(Ttl::parse("12h").map(|t| t.to_string()), Some("12h".into()));
        assert_eq!(Ttl::parse("2w").map(|t| t.to_string()), Some("2w".into()));
        assert_eq!(Ttl::parse("61s").map(|t| t.to_string()), Some("61s".into()));
        assert_eq!(Ttl::parse("5y"), None);
        assert_eq!(Ttl::parse(""), None);
    }

    #[test]
    fn rejects_bad_configs_with_the_field_named() {
        let dup =
            r#"{"identifiers": [{"name": "a", "priority": 1}, {"name": "a", "priority": 2}]}"#;
        assert!(
            config(dup)
                .unwrap_err()
                .to_string()
                .contains("declared twice")
        );
        let zero = r#"{"identifiers": [{"name": "a", "priority": 0}]}"#;
        assert!(config(zero).unwrap_err().to_string().contains("priority"));
        let limit = r#"{"identifiers": [{"name": "a", "priority": 1, "limit": 0}]}"#;
        assert!(config(limit).unwrap_err().to_string().contains("limit"));
        let scope = r#"{"identifiers": [{"name": "a", "priority": 1, "scope": "nope"}]}"#;
        assert!(config(scope).unwrap_err().to_string().contains("nope"));
        let unknown = r#"{"identifiers": [{"name": "a", "priority": 1, "limmit": 2}]}"#;
        assert!(config(unknown).is_err());
        assert!(config(r#"{"identifiers": []}"#).is_err());
    }

    #[test]
    fn blocked_values_compare_normalised() {
        let rules = config(
            r#"{"identifiers": [{"name": "email", "priority": 1, "normaliser": "email",
                                 "blocked_values": ["Support@Shop.com"]}],
                "blocked_values": ["unknown"]}"#,
        )
        .unwrap();
        assert!(rules.is_blocked("email", "support@shop.com"));
        assert!(rules.is_blocked("email", "unknown"));
        assert!(!rules.is_blocked("email", "ada@shop.com"));
    }

    #[test]
    fn scopes_are_symmetric_and_isolation_covers_unscoped() {
        let rules = config(
            r#"{"identifiers": [{"name": "a", "priority": 1}],
                "scopes": [{"name": "health", "isolated": true},
                           {"name": "eu"}, {"name": "us", "forbid_with": ["eu"]}]}"#,
        )
        .unwrap();
        let bit = |n: &str| 1u32 << rules.scope_index(n).unwrap();
        assert!(rules.scopes_compatible(bit(UNSCOPED), bit(UNSCOPED)));
        assert!(!rules.scopes_compatible(bit("health"), bit(UNSCOPED)));
        assert!(!rules.scopes_compatible(bit(UNSCOPED), bit("health")));
        assert!(!rules.scopes_compatible(bit("eu"), bit("us")));
        assert!(rules.scopes_compatible(bit("eu"), bit(UNSCOPED) | bit("eu")));
        assert!(rules.scopes_compatible(bit("health"), bit("health")));
    }
}
