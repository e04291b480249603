//! The identifier vocabulary: what identifies a person ([`Identifier`]: a kind and a value),
//! how raw values of each kind are cleaned before they are compared ([`Normaliser`]), and
//! which normaliser each kind uses ([`Vocabulary`]).
//!
//! Every part of a pipeline that compares identifiers uses this one vocabulary — the
//! `normalize` transform, identity rules and the resolver, erasure and suppression, schema
//! contracts — so `+1 (519) 555-0166` typed into a CRM, `+15195550166` from an app and
//! `519.555.0166` with a default region of `US` are one phone number everywhere.
//!
//! ```
//! use cdp_core::identifier::{Normaliser, Vocabulary};
//!
//! let phone = Normaliser::phone(Some("US"));
//! assert_eq!(phone.normalise("(519) 555-0166").as_deref(), Some("+15195550166"));
//! assert_eq!(phone.normalise("+1 519 555 0166").as_deref(), Some("+15195550166"));
//! assert_eq!(phone.normalise("call me"), None);
//!
//! let vocabulary = Vocabulary::standard();
//! assert_eq!(vocabulary.normalise("email", " Ada@Example.COM").as_deref(), Some("ada@example.com"));
//! assert_eq!(vocabulary.normalise("user_id", " u-1 ").as_deref(), Some("u-1"));
//! ```

mod custom;
mod phone;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use custom::{CustomNormaliser, register_normaliser, registered_normalisers};
pub use phone::Region;

/// One identifier: its kind (`email`, `phone`, `user_id`, `device_id`, ...) and its value.
/// Displayed as `kind:value`.
///
/// Whether `value` is raw or normalised depends on where it comes from: the identity graph
/// holds normalised values; an erasure request holds what a person typed. Compare
/// identifiers through [`Vocabulary::normalise`], never as raw strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identifier {
    /// The identifier kind.
    pub kind: String,
    /// The value.
    pub value: String,
}

impl Identifier {
    /// An identifier of `kind`.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Identifier {
            kind: kind.into(),
            value: value.into(),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// What a normaliser made of one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalised<'a> {
    /// The cleaned value (it may be empty for the plain string steps: `trim` of blanks).
    Value(&'a str),
    /// No value: blank input to a normaliser that validates (`email`, `phone`), or the
    /// empty string to `empty_as_null`.
    Null,
    /// A value that is not of this kind; the text says what it should have been
    /// (`"a phone number"`).
    Invalid(&'static str),
}

/// How raw values are cleaned before they are compared.
///
/// In configuration files a normaliser is a name (`"trim"`, `"lowercase"`, `"email"`,
/// `"phone"`, `"e164"` — the same as `"phone"`), or a table for the ones with options:
/// `{ phone = { default_region = "US" } }`, `{ custom = "sku" }` (a normaliser the host
/// application registered with [`register_normaliser`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Normaliser {
    /// Keep the value as it is.
    None,
    /// Trim surrounding whitespace.
    #[default]
    Trim,
    /// Trim and lowercase (Unicode-aware).
    Lowercase,
    /// Trim and uppercase (Unicode-aware).
    Uppercase,
    /// The empty string becomes null; anything else is kept.
    EmptyAsNull,
    /// Trim and lowercase; a value that is not `local@domain` (one `@`, no whitespace, both
    /// parts present) is invalid.
    Email,
    /// A phone number in E.164 form (`+15195550166`), parsed on libphonenumber's metadata:
    /// separators and an extension are dropped, a national number (`(519) 555-0166`,
    /// `0161 496 0000`) takes the country of `default_region`, a leading `00` is read as
    /// `+`. A number whose country calling code does not exist, or whose length no number
    /// of that country has, is invalid; so is a national number without a default region.
    /// Numbering-plan ranges are deliberately not checked (metadata ages, and fictional
    /// ranges such as `555-01xx` are common in test data): the E.164 form is what is
    /// compared.
    Phone {
        /// Country of numbers written without a country code (ISO 3166 alpha-2: `US`,
        /// `GB`).
        default_region: Option<Region>,
    },
    /// A normaliser registered by the host application.
    Custom(CustomNormaliser),
}

impl Normaliser {
    /// The phone normaliser with an optional default region (`"US"`); an unknown region is
    /// reported by [`Normaliser::validate`] (and by deserialisation).
    pub fn phone(default_region: Option<&str>) -> Self {
        Normaliser::Phone {
            default_region: default_region.map(Region::unchecked),
        }
    }

    /// The name of this normaliser as written in configuration files.
    pub fn name(&self) -> &str {
        match self {
            Normaliser::None => "none",
            Normaliser::Trim => "trim",
            Normaliser::Lowercase => "lowercase",
            Normaliser::Uppercase => "uppercase",
            Normaliser::EmptyAsNull => "empty_as_null",
            Normaliser::Email => "email",
            Normaliser::Phone { .. } => "phone",
            Normaliser::Custom(c) => c.name(),
        }
    }

    /// Checks the options (the phone normaliser's region).
    pub fn validate(&self) -> Result<()> {
        match self {
            Normaliser::Phone {
                default_region: Some(region),
            } => region.validate(),
            _ => Ok(()),
        }
    }

    /// Cleans `raw`, borrowing it when nothing changes and writing into `buf` otherwise.
    pub fn outcome<'a>(&self, raw: &'a str, buf: &'a mut String) -> Normalised<'a> {
        match self {
            Normaliser::None => Normalised::Value(raw),
            Normaliser::Trim => Normalised::Value(raw.trim()),
            Normaliser::Lowercase => Normalised::Value(lowercase(raw.trim(), buf)),
            Normaliser::Uppercase => Normalised::Value(uppercase(raw.trim(), buf)),
            Normaliser::EmptyAsNull if raw.is_empty() => Normalised::Null,
            Normaliser::EmptyAsNull => Normalised::Value(raw),
            Normaliser::Email => email(raw, buf),
            Normaliser::Phone { default_region } => phone::normalise(raw, *default_region, buf),
            Normaliser::Custom(custom) => custom.apply(raw, buf),
        }
    }

    /// Cleans `raw` for use as an identifier: `None` when the value is empty, null or
    /// invalid for this normaliser (such values never identify anyone).
    pub fn apply<'a>(&self, raw: &'a str, buf: &'a mut String) -> Option<&'a str> {
        match self.outcome(raw, buf) {
            Normalised::Value(v) if !v.is_empty() => Some(v),
            _ => None,
        }
    }

    /// Owned variant of [`Normaliser::apply`].
    pub fn normalise(&self, raw: &str) -> Option<String> {
        let mut buf = String::new();
        self.apply(raw, &mut buf).map(str::to_string)
    }
}

impl fmt::Display for Normaliser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Normaliser::Phone {
                default_region: Some(region),
            } => write!(f, "phone (default region {region})"),
            other => f.write_str(other.name()),
        }
    }
}

fn lowercase<'a>(v: &'a str, buf: &'a mut String) -> &'a str {
    if v.is_ascii() && !v.bytes().any(|b| b.is_ascii_uppercase()) {
        return v;
    }
    buf.clear();
    if v.is_ascii() {
        buf.push_str(v);
        buf.make_ascii_lowercase();
    } else {
        buf.push_str(&v.to_lowercase());
    }
    buf.as_str()
}

fn uppercase<'a>(v: &'a str, buf: &'a mut String) -> &'a str {
    if v.is_ascii() && !v.bytes().any(|b| b.is_ascii_lowercase()) {
        return v;
    }
    buf.clear();
    if v.is_ascii() {
        buf.push_str(v);
        buf.make_ascii_uppercase();
    } else {
        buf.push_str(&v.to_uppercase());
    }
    buf.as_str()
}

fn email<'a>(raw: &'a str, buf: &'a mut String) -> Normalised<'a> {
    let v = lowercase(raw.trim(), buf);
    if v.is_empty() {
        return Normalised::Null;
    }
    let valid = v.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !v.contains(char::is_whitespace);
    if valid {
        Normalised::Value(v)
    } else {
        Normalised::Invalid("an email address")
    }
}

/// The serde form of a normaliser: a name, or a one-key table.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Name(String),
    Phone { phone: PhoneOptions },
    Custom { custom: String },
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_region: Option<String>,
}

impl Serialize for Normaliser {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let repr = match self {
            Normaliser::Phone {
                default_region: Some(region),
            } => Repr::Phone {
                phone: PhoneOptions {
                    default_region: Some(region.to_string()),
                },
            },
            Normaliser::Custom(c) => Repr::Custom {
                custom: c.name().to_string(),
            },
            other => Repr::Name(other.name().to_string()),
        };
        repr.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Normaliser {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let repr = Repr::deserialize(deserializer).map_err(|_| {
            D::Error::custom(
                "expected a normaliser: one of none, trim, lowercase, uppercase, \
                 empty_as_null, email, phone (or e164), or a table \
                 { phone = { default_region = \"US\" } } or { custom = \"name\" }",
            )
        })?;
        let normaliser = match repr {
            Repr::Name(name) => match name.as_str() {
                "none" => Normaliser::None,
                "trim" => Normaliser::Trim,
                "lowercase" => Normaliser::Lowercase,
                "uppercase" => Normaliser::Uppercase,
                "empty_as_null" => Normaliser::EmptyAsNull,
                "email" => Normaliser::Email,
                "phone" | "e164" => Normaliser::Phone {
                    default_region: None,
                },
                other => {
                    return Err(D::Error::custom(format!(
                        "unknown normaliser `{other}` (expected one of none, trim, lowercase, \
                         uppercase, empty_as_null, email, phone, e164, or {{ custom = \"name\" }})"
                    )));
                }
            },
            Repr::Phone { phone } => Normaliser::Phone {
                default_region: match phone.default_region {
                    Some(code) => Some(Region::new(&code).map_err(D::Error::custom)?),
                    None => None,
                },
            },
            Repr::Custom { custom } => {
                Normaliser::Custom(CustomNormaliser::lookup(&custom).map_err(D::Error::custom)?)
            }
        };
        Ok(normaliser)
    }
}

/// Which normaliser each identifier kind uses; kinds not listed use the default (`trim`).
///
/// [`Vocabulary::standard`] knows `email` (the email normaliser) and `phone` (E.164, no
/// default region). Identity rules derive theirs from the identifier types they declare, so
/// suppression and erasure built from the rules compare exactly as the identity graph does.
///
/// In configuration files, a table from kind to normaliser:
///
/// ```toml
/// [vocabulary]
/// email = "email"
/// phone = { phone = { default_region = "US" } }
/// crm_id = "uppercase"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Vocabulary {
    kinds: BTreeMap<String, Normaliser>,
}

impl Default for Vocabulary {
    fn default() -> Self {
        Vocabulary::standard()
    }
}

impl Vocabulary {
    /// No kinds: every value is trimmed.
    pub fn empty() -> Self {
        Vocabulary {
            kinds: BTreeMap::new(),
        }
    }

    /// `email` and `phone` with their normalisers (no default phone region).
    pub fn standard() -> Self {
        Vocabulary::empty()
            .with("email", Normaliser::Email)
            .with("phone", Normaliser::phone(None))
    }

    /// Sets the normaliser of `kind`.
    pub fn with(mut self, kind: impl Into<String>, normaliser: Normaliser) -> Self {
        self.kinds.insert(kind.into(), normaliser);
        self
    }

    /// The normaliser of `kind`.
    pub fn normaliser(&self, kind: &str) -> &Normaliser {
        const DEFAULT: Normaliser = Normaliser::Trim;
        self.kinds.get(kind).unwrap_or(&DEFAULT)
    }

    /// The kinds with a normaliser of their own, in name order.
    pub fn kinds(&self) -> impl Iterator<Item = (&str, &Normaliser)> {
        self.kinds.iter().map(|(k, n)| (k.as_str(), n))
    }

    /// `raw` as an identifier of `kind`; `None` when it is empty or invalid.
    pub fn normalise(&self, kind: &str, raw: &str) -> Option<String> {
        self.normaliser(kind).normalise(raw)
    }

    /// The identifier with its value normalised; `None` when it is empty or invalid.
    pub fn normalised(&self, identifier: &Identifier) -> Option<Identifier> {
        self.normalise(&identifier.kind, &identifier.value)
            .map(|value| Identifier::new(identifier.kind.clone(), value))
    }

    /// Checks every normaliser's options.
    pub fn validate(&self) -> Result<()> {
        for (kind, normaliser) in &self.kinds {
            normaliser
                .validate()
                .map_err(|e| Error::Config(format!("identifier kind `{kind}`: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(n: &Normaliser, raw: &str) -> Option<String> {
        n.normalise(raw)
    }

    #[test]
    fn email_is_trimmed_lowercased_and_validated() {
        let n = Normaliser::Email;
        assert_eq!(
            norm(&n, "  Ada@Example.COM "),
            Some("ada@example.com".into())
        );
        assert_eq!(
            norm(&n, "ÉMILE@exemple.fr"),
            Some("émile@exemple.fr".into())
        );
        assert_eq!(norm(&n, "not-an-email"), None);
        assert_eq!(norm(&n, "@example.com"), None);
        assert_eq!(norm(&n, "a@b@c"), None);
        assert_eq!(norm(&n, "a b@c.d"), None);
        assert_eq!(norm(&n, "   "), None);
        let mut buf = String::new();
        assert_eq!(n.outcome("  ", &mut buf), Normalised::Null);
        assert_eq!(
            n.outcome("nope", &mut buf),
            Normalised::Invalid("an email address")
        );
    }

    #[test]
    fn string_steps() {
        assert_eq!(norm(&Normaliser::Trim, " a "), Some("a".into()));
        assert_eq!(norm(&Normaliser::None, " a "), Some(" a ".into()));
        assert_eq!(norm(&Normaliser::Lowercase, " AbC "), Some("abc".into()));
        assert_eq!(
            norm(&Normaliser::Uppercase, " straße "),
            Some("STRASSE".into())
        );
        assert_eq!(norm(&Normaliser::Trim, "   "), None);
        let mut buf = String::new();
        assert_eq!(
            Normaliser::Trim.outcome("  ", &mut buf),
            Normalised::Value("")
        );
        assert_eq!(
            Normaliser::EmptyAsNull.outcome("", &mut buf),
            Normalised::Null
        );
    }

    #[test]
    fn config_forms_round_trip() {
        let parsed: Vec<Normaliser> = serde_json::from_str(
            r#"["trim", "e164", "phone", {"phone": {"default_region": "GB"}}, "email",
                "empty_as_null", "uppercase", "none", "lowercase"]"#,
        )
        .unwrap();
        assert_eq!(parsed[1], Normaliser::phone(None));
        assert_eq!(parsed[3], Normaliser::phone(Some("GB")));
        let back = serde_json::to_string(&parsed).unwrap();
        let again: Vec<Normaliser> = serde_json::from_str(&back).unwrap();
        assert_eq!(parsed, again);
        let err = serde_json::from_str::<Normaliser>(r#""soundex""#).unwrap_err();
        assert!(
            err.to_string().contains("unknown normaliser `soundex`"),
            "{err}"
        );
        let err = serde_json::from_str::<Normaliser>(r#"{"phone": {"default_region": "XX"}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("XX"), "{err}");
        let err = serde_json::from_str::<Normaliser>(r#"{"phone": {"region": "US"}}"#).unwrap_err();
        assert!(err.to_string().contains("expected a normaliser"), "{err}");
    }

    #[test]
    fn vocabulary_defaults_and_overrides() {
        let v = Vocabulary::standard().with("phone", Normaliser::phone(Some("US")));
        assert_eq!(
            v.normalise("phone", "(519) 555-0166").as_deref(),
            Some("+15195550166")
        );
        assert_eq!(v.normalise("email", "A@B.C").as_deref(), Some("a@b.c"));
        assert_eq!(v.normalise("anonymous_id", " X ").as_deref(), Some("X"));
        let toml_form: Vocabulary = serde_json::from_str(
            r#"{"email": "email", "phone": {"phone": {"default_region": "US"}}}"#,
        )
        .unwrap();
        assert_eq!(toml_form.normaliser("phone"), v.normaliser("phone"));
    }
}
