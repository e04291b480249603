//! Data classes and how fields get one, at every depth: Arrow field metadata, tracking-plan
//! properties, name and path rules, the class of opaque content, and an explicit default.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use cdp_core::arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mask::{Keys, Masking};
pub use crate::path::Glob;
use crate::path::{Leaf, NestedPath, PathPattern, leaves};

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

/// A rule assigning a class to every field whose name or path matches a pattern.
///
/// Patterns are case-insensitive: without a dot they match a field's name at any depth
/// (`*email*`, `phone?`, `ip_address`), with dots its path (`traits.email`, `*.email`,
/// `context.**`); see [`path`](crate::path). A rule matching a struct, list or map
/// classifies everything inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassRule {
    /// Name or path pattern.
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
    /// A name or path rule.
    Rule {
        /// Position of the rule in the policy, from 1.
        index: usize,
        /// Its pattern.
        pattern: String,
    },
    /// The struct, list or map the field is inside was classified, and everything inside
    /// it takes (at least) that class.
    Container {
        /// The container's path.
        path: String,
        /// How the container got its class.
        source: Box<ClassSource>,
    },
    /// The field's content is opaque to the schema (JSON text, map keys, open-keyed map
    /// values): the policy's `opaque_class`.
    Opaque,
    /// No metadata, plan entry or rule: the policy's `default_class`.
    Default,
}

impl fmt::Display for ClassSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassSource::Metadata => f.write_str("field metadata"),
            ClassSource::TrackingPlan { stream } => write!(f, "tracking plan of `{stream}`"),
            ClassSource::Rule { index, pattern } => write!(f, "rule #{index} `{pattern}`"),
            ClassSource::Container { path, source } => write!(f, "inside `{path}`: {source}"),
            ClassSource::Opaque => f.write_str("opaque content: opaque_class"),
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

/// Assigns classes to fields at every depth: metadata first, then the stream's tracking
/// plan, then the first matching rule, then the default.
///
/// Metadata wins because it is the most specific statement about a field (a schema
/// contract or the source that produced it); rules are for everything nobody annotated. A
/// field inside a classified struct, list or map takes the higher of its own class and the
/// container's, so `context.**` or metadata on `context` cover what arrives inside it later.
/// Opaque content (see [`path`](crate::path)) takes at least the opaque class unless its
/// own metadata says otherwise. A container's class is the highest class inside it.
#[derive(Debug, Clone)]
pub struct Classifier {
    rules: Vec<(ClassRule, PathPattern)>,
    tracking_plan: BTreeMap<String, Vec<(PathPattern, DataClass)>>,
    default: DataClass,
    opaque: DataClass,
}

impl Classifier {
    /// A classifier from rules (first match wins), tracking-plan properties per stream
    /// (names or paths), and the class of everything else. Opaque content is `restricted`
    /// unless [`with_opaque_class`](Classifier::with_opaque_class) says otherwise.
    pub fn new(
        rules: Vec<ClassRule>,
        tracking_plan: BTreeMap<String, BTreeMap<String, DataClass>>,
        default: DataClass,
    ) -> Self {
        Classifier {
            rules: rules
                .into_iter()
                .map(|r| {
                    let pattern = PathPattern::new(&r.pattern);
                    (r, pattern)
                })
                .collect(),
            tracking_plan: tracking_plan
                .into_iter()
                .map(|(stream, properties)| {
                    let properties = properties
                        .into_iter()
                        .map(|(property, class)| (PathPattern::new(&property), class))
                        .collect();
                    (stream, properties)
                })
                .collect(),
            default,
            opaque: DataClass::Restricted,
        }
    }

    /// Sets the class of opaque content.
    pub fn with_opaque_class(mut self, class: DataClass) -> Self {
        self.opaque = class;
        self
    }

    /// The class of unclassified fields.
    pub fn default_class(&self) -> DataClass {
        self.default
    }

    /// The class of opaque content nobody classified.
    pub fn opaque_class(&self) -> DataClass {
        self.opaque
    }

    /// What metadata, the plan or a rule say about the field at `path`, without defaults.
    fn explicit(
        &self,
        stream: Option<&str>,
        path: &NestedPath,
        field: &Field,
    ) -> Result<Option<Classification>> {
        if let Some(class) = field_class(field)? {
            return Ok(Some(Classification {
                class,
                source: ClassSource::Metadata,
            }));
        }
        // With the stream unknown (a transform shared by every stream), a property takes the
        // highest class any stream's plan gives it, so a shared transform never
        // under-protects.
        let planned = self
            .tracking_plan
            .iter()
            .filter(|(s, _)| stream.is_none_or(|stream| stream == s.as_str()))
            .flat_map(|(s, properties)| {
                properties
                    .iter()
                    .filter(|(pattern, _)| pattern.matches(path))
                    .map(move |(_, class)| (*class, s))
            })
            .max_by_key(|(class, _)| *class);
        if let Some((class, stream)) = planned {
            return Ok(Some(Classification {
                class,
                source: ClassSource::TrackingPlan {
                    stream: stream.clone(),
                },
            }));
        }
        Ok(self
            .rules
            .iter()
            .enumerate()
            .find(|(_, (_, pattern))| pattern.matches(path))
            .map(|(index, (rule, _))| Classification {
                class: rule.class,
                source: ClassSource::Rule {
                    index: index + 1,
                    pattern: rule.pattern.clone(),
                },
            }))
    }

    /// Classifies one leaf of `stream` (see [`leaves`](crate::path::leaves)).
    pub fn classify_leaf(&self, stream: Option<&str>, leaf: &Leaf) -> Result<Classification> {
        let own = self.explicit(stream, &leaf.path, &leaf.field)?;
        // Metadata on the field itself is the one way to say what opaque content holds.
        let declared = matches!(
            own,
            Some(Classification {
                source: ClassSource::Metadata,
                ..
            })
        );
        let mut best = own;
        for (path, container) in &leaf.ancestors {
            if let Some(c) = self.explicit(stream, path, container)?
                && best.as_ref().is_none_or(|b| c.class > b.class)
            {
                best = Some(Classification {
                    class: c.class,
                    source: ClassSource::Container {
                        path: path.to_string(),
                        source: Box::new(c.source),
                    },
                });
            }
        }
        if leaf.opaque && !declared && best.as_ref().is_none_or(|b| self.opaque > b.class) {
            best = Some(Classification {
                class: self.opaque,
                source: ClassSource::Opaque,
            });
        }
        Ok(best.unwrap_or(Classification {
            class: self.default,
            source: ClassSource::Default,
        }))
    }

    /// Classifies one top-level field of `stream`: for a struct, list or map, the highest
    /// class inside it.
    pub fn classify(&self, stream: Option<&str>, field: &Field) -> Result<Classification> {
        let schema = Schema::new(vec![field.clone()]);
        let mut highest: Option<Classification> = None;
        for leaf in leaves(&schema) {
            let c = self.classify_leaf(stream, &leaf)?;
            if highest.as_ref().is_none_or(|h| c.class > h.class) {
                highest = Some(c);
            }
        }
        match highest {
            Some(c) => Ok(c),
            // A system column or an empty struct: what the field itself says.
            None => Ok(self
                .explicit(stream, &NestedPath::column(field.name()), field)?
                .unwrap_or(Classification {
                    class: self.default,
                    source: ClassSource::Default,
                })),
        }
    }

    /// Classifies every leaf of the user columns of `schema` (system `_cdp_` columns are
    /// not governed), in schema order.
    pub fn classify_leaves(
        &self,
        stream: Option<&str>,
        schema: &Schema,
    ) -> Result<Vec<(Leaf, Classification)>> {
        leaves(schema)
            .into_iter()
            .map(|leaf| {
                let c = self.classify_leaf(stream, &leaf)?;
                Ok((leaf, c))
            })
            .collect()
    }

    /// [`classify_leaves`](Classifier::classify_leaves), by printed path.
    pub fn classify_schema(
        &self,
        stream: Option<&str>,
        schema: &Schema,
    ) -> Result<Vec<(String, Classification)>> {
        Ok(self
            .classify_leaves(stream, schema)?
            .into_iter()
            .map(|(leaf, c)| (leaf.path.to_string(), c))
            .collect())
    }

    /// `schema` with every user leaf's class written into its metadata, so later stages
    /// (and other crates) read the class without the rules.
    pub fn annotate(&self, stream: Option<&str>, schema: &Schema) -> Result<SchemaRef> {
        let mut masking = Masking::new("annotate", Keys::new());
        for (leaf, c) in self.classify_leaves(stream, schema)? {
            masking = masking.field(leaf.path.to_string(), c.class, None);
        }
        masking.masked_schema(schema)
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

    #[test]
    fn containers_pass_their_class_down_and_opaque_content_is_restricted() {
        let classifier = Classifier::new(
            vec![
                ClassRule {
                    pattern: "context".into(),
                    class: DataClass::Restricted,
                },
                ClassRule {
                    pattern: "*email*".into(),
                    class: DataClass::Sensitive,
                },
            ],
            BTreeMap::new(),
            DataClass::Public,
        );
        let utf8 = |name: &str| Field::new(name, DataType::Utf8, true);
        let json = crate::path::leaves(&Schema::new(vec![cdp_core::record::json_text_field(
            "_overflow",
        )]));
        let schema = Schema::new(vec![
            Field::new_struct(
                "context",
                vec![Field::new_struct("device", vec![utf8("id")], true)],
                true,
            ),
            Field::new_struct("traits", vec![utf8("email"), utf8("plan")], true),
        ]);
        let got: Vec<(String, DataClass, String)> = classifier
            .classify_leaves(None, &schema)
            .unwrap()
            .into_iter()
            .map(|(leaf, c)| (leaf.path.to_string(), c.class, c.source.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "context.device.id".to_string(),
                    DataClass::Restricted,
                    "inside `context`: rule #1 `context`".to_string()
                ),
                (
                    "traits.email".to_string(),
                    DataClass::Sensitive,
                    "rule #2 `*email*`".to_string()
                ),
                (
                    "traits.plan".to_string(),
                    DataClass::Public,
                    "default_class".to_string()
                ),
            ]
        );
        // A struct's class is the highest inside it.
        let traits = schema.field_with_name("traits").unwrap();
        assert_eq!(
            classifier.classify(None, traits).unwrap().class,
            DataClass::Sensitive
        );
        let overflow = classifier.classify_leaf(None, &json[0]).unwrap();
        assert_eq!(
            (overflow.class, overflow.source),
            (DataClass::Restricted, ClassSource::Opaque)
        );
        let lowered = classifier.with_opaque_class(DataClass::Internal);
        assert_eq!(
            lowered.classify_leaf(None, &json[0]).unwrap().class,
            DataClass::Internal
        );
    }
}
