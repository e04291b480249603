//! Normalisers a host application registers by name, so configuration files can use them
//! (`{ custom = "sku" }`) like the built-in ones.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock, RwLock};

use super::Normalised;

type NormaliseFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// A registered normaliser: a name and a function from a raw value to its normalised form
/// (`None` for a value that is not valid for it). Compared and hashed by name.
#[derive(Clone)]
pub struct CustomNormaliser {
    name: Arc<str>,
    f: Arc<NormaliseFn>,
}

fn registry() -> &'static RwLock<BTreeMap<String, CustomNormaliser>> {
    static REGISTRY: OnceLock<RwLock<BTreeMap<String, CustomNormaliser>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Registers `f` as the normaliser `name`, replacing one registered before under that name.
/// Register before parsing the configuration that names it.
///
/// ```
/// use cdp_core::identifier::{Normaliser, register_normaliser};
///
/// // CRM ids are written `crm-00042`, `CRM 42`, `42`: compare the number.
/// register_normaliser("crm_id", |raw| {
///     let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
///     let n: u64 = digits.parse().ok()?;
///     Some(format!("crm-{n}"))
/// });
/// let n: Normaliser = serde_json::from_str(r#"{"custom": "crm_id"}"#).unwrap();
/// assert_eq!(n.normalise("CRM 0042").as_deref(), Some("crm-42"));
/// ```
pub fn register_normaliser(
    name: impl Into<String>,
    f: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> CustomNormaliser {
    let name = name.into();
    let custom = CustomNormaliser {
        name: Arc::from(name.as_str()),
        f: Arc::new(f),
    };
    registry()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(name, custom.clone());
    custom
}

/// The names registered so far, in order.
pub fn registered_normalisers() -> Vec<String> {
    registry()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .keys()
        .cloned()
        .collect()
}

impl CustomNormaliser {
    /// The registered normaliser `name`.
    pub(crate) fn lookup(name: &str) -> Result<Self, String> {
        let map = registry()
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = map.keys().map(String::as_str).collect();
            format!(
                "no custom normaliser `{name}` is registered (registered: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    }

    /// The name it was registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn apply<'a>(&self, raw: &'a str, buf: &'a mut String) -> Normalised<'a> {
        match (self.f)(raw) {
            Some(value) => {
                *buf = value;
                Normalised::Value(buf.as_str())
            }
            None if raw.trim().is_empty() => Normalised::Null,
            None => Normalised::Invalid("a value this custom normaliser accepts"),
        }
    }
}

impl fmt::Debug for CustomNormaliser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomNormaliser({:?})", self.name)
    }
}

impl PartialEq for CustomNormaliser {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for CustomNormaliser {}

impl Hash for CustomNormaliser {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifier::Normaliser;

    #[test]
    fn unknown_custom_names_are_refused_with_the_registered_ones() {
        register_normaliser("test_upper_sku", |raw| Some(raw.trim().to_uppercase()));
        let err = serde_json::from_str::<Normaliser>(r#"{"custom": "nope"}"#).unwrap_err();
        assert!(
            err.to_string().contains("no custom normaliser `nope`"),
            "{err}"
        );
        assert!(err.to_string().contains("test_upper_sku"), "{err}");
        let n: Normaliser = serde_json::from_str(r#"{"custom": "test_upper_sku"}"#).unwrap();
        assert_eq!(n.normalise(" ab-1 ").as_deref(), Some("AB-1"));
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"custom":"test_upper_sku"}"#
        );
    }
}
