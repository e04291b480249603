//! Survivorship: which value of a trait a profile keeps when observations or profiles meet.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How a trait's value is chosen among the values observed for one profile.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Survivorship {
    /// The most recent observation wins.
    #[default]
    Latest,
    /// The earliest observation wins.
    First,
    /// The observation from the source listed first in
    /// [`StoreConfig::source_priority`] wins; the most recent among equals. Sources not
    /// listed rank last.
    SourcePriority,
    /// Numbers add up (a counter such as `orders`).
    Sum,
    /// The largest number wins (a high-water mark such as `lifetime_value`).
    Max,
}

/// One trait's rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraitRule {
    /// The trait name.
    pub name: String,
    /// How its value survives.
    pub rule: Survivorship,
}

/// Survivorship configuration of a profile store.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Per-trait rules; traits not listed use [`Survivorship::Latest`].
    #[serde(default)]
    pub traits: Vec<TraitRule>,
    /// Sources, most trusted first, for [`Survivorship::SourcePriority`].
    #[serde(default)]
    pub source_priority: Vec<String>,
}

/// A trait's value with where and when it was observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraitValue {
    /// The value.
    pub value: serde_json::Value,
    /// When it was observed, UTC milliseconds.
    pub at: i64,
    /// The source it came from.
    pub source: Arc<str>,
}

impl StoreConfig {
    pub(crate) fn rule(&self, name: &str) -> Survivorship {
        self.traits
            .iter()
            .find(|t| t.name == name)
            .map_or(Survivorship::Latest, |t| t.rule.clone())
    }

    fn rank(&self, source: &str) -> usize {
        self.source_priority
            .iter()
            .position(|s| s == source)
            .unwrap_or(usize::MAX)
    }

    /// The value that survives when `incoming` meets `current` under `name`'s rule.
    pub(crate) fn combine(
        &self,
        name: &str,
        current: Option<&TraitValue>,
        incoming: &TraitValue,
    ) -> TraitValue {
        let Some(current) = current else {
            return incoming.clone();
        };
        let later = |a: &TraitValue, b: &TraitValue| a.at >= b.at;
        let pick = |keep_incoming: bool| {
            if keep_incoming {
                incoming.clone()
            } else {
                current.clone()
            }
        };
        match self.rule(name) {
            Survivorship::Latest => pick(later(incoming, current)),
            Survivorship::First => pick(incoming.at < current.at),
            Survivorship::SourcePriority => {
                let (ri, rc) = (self.rank(&incoming.source), self.rank(&current.source));
                pick(ri < rc || (ri == rc && later(incoming, current)))
            }
            Survivorship::Sum => match add(&current.value, &incoming.value) {
                Some(value) => TraitValue {
                    value,
                    at: current.at.max(incoming.at),
                    source: incoming.source.clone(),
                },
                None => pick(later(incoming, current)),
            },
            Survivorship::Max => match (current.value.as_f64(), incoming.value.as_f64()) {
                (Some(c), Some(i)) => pick(i > c),
                _ => pick(later(incoming, current)),
            },
        }
    }
}

fn add(a: &serde_json::Value, b: &serde_json::Value) -> Option<serde_json::Value> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.checked_add(y).map(serde_json::Value::from);
    }
    let sum = a.as_f64()? + b.as_f64()?;
    serde_json::Number::from_f64(sum).map(serde_json::Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(value: serde_json::Value, at: i64, source: &str) -> TraitValue {
        TraitValue {
            value,
            at,
            source: source.into(),
        }
    }

    fn config() -> StoreConfig {
        serde_json::from_value(json!({
            "traits": [
                {"name": "first_name", "rule": "source_priority"},
                {"name": "signup", "rule": "first"},
                {"name": "orders", "rule": "sum"},
                {"name": "ltv", "rule": "max"}
            ],
            "source_priority": ["crm", "billing"]
        }))
        .unwrap()
    }

    #[test]
    fn each_rule_keeps_the_right_value() {
        let c = config();
        let old = v(json!("a"), 1, "web");
        let new = v(json!("b"), 2, "web");
        assert_eq!(c.combine("plan", Some(&old), &new).value, json!("b"));
        assert_eq!(c.combine("plan", Some(&new), &old).value, json!("b"));
        assert_eq!(c.combine("signup", Some(&new), &old).value, json!("a"));
        let crm = v(json!("Ada"), 1, "crm");
        let web = v(json!("ada99"), 5, "web");
        assert_eq!(
            c.combine("first_name", Some(&crm), &web).value,
            json!("Ada")
        );
        assert_eq!(
            c.combine("first_name", Some(&web), &crm).value,
            json!("Ada")
        );
        let o = c.combine("orders", Some(&v(json!(2), 1, "x")), &v(json!(3), 2, "y"));
        assert_eq!(o.value, json!(5));
        let f = c.combine("orders", Some(&v(json!(1.5), 1, "x")), &v(json!(1), 2, "y"));
        assert_eq!(f.value, json!(2.5));
        let m = c.combine("ltv", Some(&v(json!(10), 5, "x")), &v(json!(3), 9, "y"));
        assert_eq!(m.value, json!(10));
        assert_eq!(c.combine("x", None, &old), old);
    }
}
