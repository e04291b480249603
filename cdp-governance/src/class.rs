//! Data classes and how fields get one: Arrow field metadata, tracking-plan properties,
//! field-name rules, and an explicit default.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cdp_core::arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Field metadata key holding a field's class (`public`, `internal`, `sensitive`,
/// `restricted`).
pub const CLASS_METADATA_KEY: &str = "cdp.class";

/// How sensitive a field is. Ordered: `Public < Internal < Sensitive < Restricted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DataClass {
    /// May be published.
    Public,
    /// For the organisation's own use.
    Internal,
    /// Personal data: identifies or describes a person (email, phone, address).
    Sensitive,
    /// Special-category or high-risk data (government ids, card numbers, health).
    Restricted,
}

impl DataClass {
    /// All classes, lowest first.
    pub const ALL: [DataClass; 4] = [
        DataClass::Public,
        DataClass::Internal,
        DataClass::Sensitive,
        DataClass::Restricted,
    ];

    /// The lower-case name used in policies and metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Public => "public",
            DataClass::Internal => "internal",
            DataClass::Sensitive => "sensitive",
            DataClass::Restricted => "restricted",
        }
    }
}

impl fmt::Display for DataClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataClass {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(DataClass::Public),
            "internal" => Ok(DataClass::Internal),
            "sensitive" => Ok(DataClass::Sensitive),
            "restricted" => Ok(DataClass::Restricted),
            other => Err(Error::InvalidPolicy(format!(
                "unknown data class `{other}`; expected public, internal, sensitive or restricted"
            ))),
        }
    }
}

impl TryFrom<String> for DataClass {
    type Error = Error;

    fn try_from(value: String) -> Result<Self> {
        value.parse()
    }
}

impl From<DataClass> for String {
    fn from(class: DataClass) -> Self {
        class.as_str().to_string()
    }
}

/// The class declared in a field's metadata, if any.
///
/// An unparseable value is an error rather than "unclassified": a typo must not downgrade
/// a field to the default class.
pub fn field_class(field: &Field) -> Result<Option<DataClass>> {
    match field.metadata().get(CLASS_METADATA_KEY) {
        None => Ok(None),
        Some(value) => value.parse().map(Some).map_err(|_| {
            Error::InvalidPolicy(format!(
                "field `{}` has metadata {CLASS_METADATA_KEY}=`{value}`, which is not a data class",
                field.name()
            ))
        }),
    }
}

/// `field` with its class recorded in its metadata.
pub fn with_class(field: Field, class: DataClass) -> Field {
    let mut metadata = field.metadata().clone();
    metadata.insert(CLASS_METADATA_KEY.to_string(), class.as_str().to_string());
    field.with_metadata(metadata)
}

/// A rule assigning a class to every field whose name matches a pattern.
///
/// Patterns are case-insensitive globs: `*` matches any run of characters, `?` one
/// character (`*email*`, `phone?`, `ip_address`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassRule {
    /// Glob on the field name.
    pub pattern: String,
    /// The class given to matching fields.
    pub class: DataClass,
}

/// Where a field's class came from, for explanations and audit entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum ClassSource {
    /// The field's own `cdp.class` metadata.
    Metadata,
    /// A tracking-plan property of this stream (or, when the stream is unknown, of any).
    TrackingPlan {
        /// The stream (event) whose plan named the property.
        stream: String,
    },
    /// A name rule.
    Rule {
        /// Position of the rule in the policy, from 1.
        index: usize,
        /// Its pattern.
        pattern: String,
    },
    /// No metadata, plan entry or rule: the policy's `default_class`.
    Default,
}

impl fmt::Display for ClassSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassSource::Metadata => f.write_str("field metadata"),
            ClassSource::TrackingPlan { stream } => write!(f, "tracking plan of `{stream}`"),
            ClassSource::Rule { index, pattern } => write!(f, "rule #{index} `{pattern}`"),
            ClassSource::Default => f.write_str("default_class"),
        }
    }
}

/// A field's class and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// The class.
    pub class: DataClass,
    /// Why.
    pub source: ClassSource,
}

/// Assigns classes to fields: metadata first, then the stream's tracking plan, then the
/// first matching name rule, then the default.
///
/// Metadata wins because it is the most specific statement about a field (a schema
/// contract or the source that produced it); rules are for everything nobody annotated.
#[derive(Debug, Clone)]
pub struct Classifier {
    rules: Vec<(ClassRule, Glob)>,
    tracking_plan: BTreeMap<String, BTreeMap<String, DataClass>>,
    /// For flows whose stream is unknown: the highest class any plan gives a property.
    plan_any: HashMap<String, (DataClass, String)>,
    default: DataClass,
}

impl Classifier {
    /// A classifier from rules (first match wins), tracking-plan properties per stream, and
    /// the class of everything else.
    pub fn new(
        rules: Vec<ClassRule>,
        tracking_plan: BTreeMap<String, BTreeMap<String, DataClass>>,
        default: DataClass,
    ) -> Self {
        let mut plan_any: HashMap<String, (DataClass, String)> = HashMap::new();
        for (stream, properties) in &tracking_plan {
            for (property, class) in properties {
                let entry = plan_any
                    .entry(property.clone())
                    .or_insert((*class, stream.clone()));
                if *class > entry.0 {
                    *entry = (*class, stream.clone());
                }
            }
        }
        Classifier {
            rules: rules
                .into_iter()
                .map(|r| {
                    let glob = Glob::new(&r.pattern);
                    (r, glob)
                })
                .collect(),
            tracking_plan,
            plan_any,
            default,
        }
    }

    /// The class of unclassified fields.
    pub fn default_class(&self) -> DataClass {
        self.default
    }

    /// Classifies one field of `stream`.
    ///
    /// With `stream` unknown (`None`, as for per-destination transforms shared by every
    /// stream), a tracking-plan property takes the highest class any stream's plan gives it,
    /// so a shared transform never under-protects.
    pub fn classify(&self, stream: Option<&str>, field: &Field) -> Result<Classification> {
        if let Some(class) = field_class(field)? {
            return Ok(Classification {
                class,
                source: ClassSource::Metadata,
            });
        }
        let name = field.name();
        let planned = match stream {
            Some(stream) => self
                .tracking_plan
                .get(stream)
                .and_then(|p| p.get(name))
                .map(|c| (*c, stream.to_string())),
            None => self.plan_any.get(name).cloned(),
        };
        if let Some((class, stream)) = planned {
            return Ok(Classification {
                class,
                source: ClassSource::TrackingPlan { stream },
            });
        }
        for (index, (rule, glob)) in self.rules.iter().enumerate() {
            if glob.matches(name) {
                return Ok(Classification {
                    class: rule.class,
                    source: ClassSource::Rule {
                        index: index + 1,
                        pattern: rule.pattern.clone(),
                    },
                });
            }
        }
        Ok(Classification {
            class: self.default,
            source: ClassSource::Default,
        })
    }

    /// Classifies every user field of `schema` (system `_cdp_` columns are not governed).
    pub fn classify_schema(
        &self,
        stream: Option<&str>,
        schema: &Schema,
    ) -> Result<Vec<(String, Classification)>> {
        schema
            .fields()
            .iter()
            .filter(|f| !cdp_core::record::is_system_column(f.name()))
            .map(|f| Ok((f.name().clone(), self.classify(stream, f)?)))
            .collect()
    }

    /// `schema` with every user field's class written into its metadata, so later stages
    /// (and other crates) read the class without the rules.
    pub fn annotate(&self, stream: Option<&str>, schema: &Schema) -> Result<SchemaRef> {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                if cdp_core::record::is_system_column(f.name()) {
                    return Ok(f.as_ref().clone());
                }
                let class = self.classify(stream, f)?.class;
                Ok(with_class(f.as_ref().clone(), class))
            })
            .collect::<Result<_>>()?;
        Ok(Arc::new(Schema::new_with_metadata(
            fields,
            schema.metadata().clone(),
        )))
    }
}

/// A case-insensitive glob with `*` and `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Self {
        Glob {
            pattern: pattern.to_lowercase().chars().collect(),
        }
    }

    /// Whether `text` matches, ignoring case.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.to_lowercase().chars().collect();
        let p = &self.pattern;
        // Iterative matcher with one backtrack point: linear for the patterns people write.
        let (mut ti, mut pi) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < text.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == text[ti]) {
                ti += 1;
                pi += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        while pi < p.len() && p[pi] == '*' {
            pi += 1;
        }
        pi == p.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_core::arrow::datatypes::DataType;

    #[test]
    fn glob_matches_case_insensitively() {
        assert!(Glob::new("*email*").matches("Work_Email_Address"));
        assert!(Glob::new("phone?").matches("phone2"));
        assert!(!Glob::new("phone?").matches("phone"));
        assert!(Glob::new("ip_address").matches("IP_ADDRESS"));
        assert!(Glob::new("*").matches(""));
        assert!(!Glob::new("a*b").matches("acbd"));
        assert!(Glob::new("a*b*").matches("acbd"));
    }

    #[test]
    fn metadata_then_plan_then_rules_then_default() {
        let mut plan = BTreeMap::new();
        plan.insert(
            "orders".to_string(),
            BTreeMap::from([("card".to_string(), DataClass::Restricted)]),
        );
        let classifier = Classifier::new(
            vec![ClassRule {
                pattern: "*email*".into(),
                class: DataClass::Sensitive,
            }],
            plan,
            DataClass::Internal,
        );
        let email = Field::new("email", DataType::Utf8, true);
        let tagged = with_class(email.clone(), DataClass::Public);
        let card = Field::new("card", DataType::Utf8, true);
        let other = Field::new("n", DataType::Int64, true);
        let c = |s, f| classifier.classify(s, f).unwrap();
        assert_eq!(c(None, &tagged).class, DataClass::Public);
        assert_eq!(c(None, &email).class, DataClass::Sensitive);
        assert_eq!(c(Some("orders"), &card).class, DataClass::Restricted);
        assert_eq!(c(Some("users"), &card).class, DataClass::Internal);
        assert_eq!(c(None, &card).class, DataClass::Restricted);
        assert_eq!(c(None, &other).source, ClassSource::Default);
    }

    #[test]
    fn bad_metadata_is_an_error_not_a_downgrade() {
        let mut f = Field::new("x", DataType::Utf8, true);
        f.set_metadata(std::collections::HashMap::from([(
            CLASS_METADATA_KEY.to_string(),
            "secret".to_string(),
        )]));
        assert!(field_class(&f).is_err());
    }
}
