//! Policy as code: what each destination may receive, in what form, for which purposes,
//! and how long data may be kept.
//!
//! ```toml
//! default_class = "internal"          # explicit: what nobody classified is
//!
//! [[classify]]                         # first matching rule wins
//! pattern = "*email*"
//! class = "sensitive"
//!
//! [tracking_plan."Order Completed"]    # per stream (event) properties
//! card_number = "restricted"
//!
//! [destinations.warehouse]
//! max_class = "sensitive"              # highest class it may receive in the clear
//! purposes = ["analytics"]
//!
//! [destinations.ads]
//! max_class = "internal"
//! purposes = ["marketing"]
//! require = { sensitive = "hash", restricted = "drop" }
//! fields = { ip = { ip_prefix = { v4 = 24, v6 = 48 } } }
//!
//! [retention]
//! classes = { restricted = "30d" }
//! streams = { pages = "90d" }
//! ```
//!
//! Every field counts, at every depth: `traits.email`, `contacts[].email` and
//! `context.traits.phone` are classified, decided and masked like top-level columns (see
//! [`path`](crate::path) for how patterns name them).
//!
//! For a field of class `c` going to destination `d` the rule is, in order: `d.fields`
//! names the field (or a struct, list or map it is in) → that method; `d.require` names
//! `c` → that method; `c <= d.max_class` → in the clear; otherwise the field must not reach
//! `d` at all.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use cdp_core::Transform;
use cdp_core::arrow::datatypes::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditKind, AuditLog, Digest};
use crate::class::{ClassRule, Classification, Classifier, DataClass};
use crate::enforce::Enforcer;
use crate::error::{Error, Result};
use crate::mask::{Action, Keys, Masking, Method, Plan};
use crate::path::{Leaf, NestedPath, PathPattern};
use crate::retention::RetentionConfig;

/// A policy file: the serde form of a [`Policy`]. Field docs are the file's reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Class of every field that no metadata, tracking plan or rule classifies. Required,
    /// so that "unclassified" is always a decision someone made.
    pub default_class: DataClass,
    /// Class of fields whose content the schema cannot see into (JSON text, map keys,
    /// open-keyed map values) unless their own metadata says otherwise; default
    /// `restricted`, so such a field cannot carry data past the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opaque_class: Option<DataClass>,
    /// Name and path rules, first match wins.
    #[serde(default)]
    pub classify: Vec<ClassRule>,
    /// Classes of tracking-plan properties, per stream (event) name.
    #[serde(default)]
    pub tracking_plan: BTreeMap<String, BTreeMap<String, DataClass>>,
    /// Per destination (by the destination's name in the pipeline).
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationPolicy>,
    /// Applies to destinations not listed; without it they receive nothing.
    #[serde(default)]
    pub default_destination: Option<DestinationPolicy>,
    /// How long data may be kept.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// What one destination may receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationPolicy {
    /// The highest class it may receive in the clear.
    pub max_class: DataClass,
    /// What the destination uses data for (`analytics`, `personalisation`, `marketing`,
    /// `support`, ...); consent is checked against these.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// The method each class must go through first. A class listed here may reach the
    /// destination in that form even above `max_class`.
    #[serde(default)]
    pub require: BTreeMap<DataClass, Method>,
    /// Per-field methods, overriding the class requirement (e.g. `year` for a birth date
    /// where its class would demand `hash`). Keys are names (any depth) or paths, as in
    /// [`ClassRule`]; on a struct, list or map only `null` and `drop` apply, to all of it.
    #[serde(default)]
    pub fields: BTreeMap<String, Method>,
}

impl PolicyConfig {
    /// Parses a TOML policy.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::InvalidPolicy(e.to_string()))
    }

    /// Parses a JSON policy.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::InvalidPolicy(e.to_string()))
    }

    /// Reads a policy file: `.json` as JSON, anything else as TOML.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidPolicy(format!("reading {}: {e}", path.display())))?;
        let parsed = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::from_json(&text),
            _ => Self::from_toml(&text),
        };
        parsed.map_err(|e| Error::InvalidPolicy(format!("{}: {e}", path.display())))
    }

    /// Renders the policy as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::InvalidPolicy(e.to_string()))
    }

    /// Validates the policy and compiles it. Keys are added with [`Policy::with_keys`].
    pub fn build(self) -> Result<Policy> {
        let scopes = self
            .destinations
            .iter()
            .map(|(name, d)| (format!("destinations.{name}"), d))
            .chain(
                self.default_destination
                    .iter()
                    .map(|d| ("default_destination".to_string(), d)),
            );
        for (scope, d) in scopes {
            let methods = d
                .require
                .iter()
                .map(|(c, m)| (format!("{scope}.require.{c}"), m))
                .chain(
                    d.fields
                        .iter()
                        .map(|(f, m)| (format!("{scope}.fields.{f}"), m)),
                );
            for (path, method) in methods {
                if let Method::IpPrefix { v4, v6 } = method
                    && (*v4 > 32 || *v6 > 128)
                {
                    return Err(Error::InvalidPolicy(format!(
                        "{path}: ip_prefix lengths must be at most 32 and 128, got {v4} and {v6}"
                    )));
                }
            }
        }
        let canonical = serde_json::to_vec(&self)?;
        let classifier = Classifier::new(
            self.classify.clone(),
            self.tracking_plan.clone(),
            self.default_class,
        )
        .with_opaque_class(self.opaque_class.unwrap_or(DataClass::Restricted));
        Ok(Policy {
            digest: Digest::of(&canonical),
            config: Arc::new(self),
            classifier: Arc::new(classifier),
            keys: Keys::new(),
            audit: None,
        })
    }
}

/// What must happen to a field before it reaches a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "treatment", content = "method")]
pub enum Treatment {
    /// It may arrive as it is.
    Clear,
    /// It may arrive only masked by this method (`drop`: not at all).
    Mask(Method),
    /// It may not arrive: its class is above what the destination may receive.
    Forbidden,
}

impl fmt::Display for Treatment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Treatment::Clear => f.write_str("in the clear"),
            Treatment::Mask(Method::Drop) => f.write_str("dropped"),
            Treatment::Mask(m) => write!(f, "masked: {m}"),
            Treatment::Forbidden => f.write_str("forbidden (dropped)"),
        }
    }
}

/// The policy rule behind a [`Treatment`], named as in the policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Rule {
    /// `<scope>.fields.<field>`.
    Field {
        /// `destinations.<name>` or `default_destination`.
        scope: String,
        /// The field.
        field: String,
    },
    /// `<scope>.require.<class>`.
    Class {
        /// `destinations.<name>` or `default_destination`.
        scope: String,
        /// The class.
        class: DataClass,
    },
    /// `<scope>.max_class`.
    MaxClass {
        /// `destinations.<name>` or `default_destination`.
        scope: String,
        /// Its value.
        max_class: DataClass,
    },
    /// The destination has no policy and there is no `default_destination`.
    NoPolicy {
        /// The destination.
        destination: String,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Field { scope, field } => write!(f, "{scope}.fields.{field}"),
            Rule::Class { scope, class } => write!(f, "{scope}.require.{class}"),
            Rule::MaxClass { scope, max_class } => write!(f, "{scope}.max_class = {max_class}"),
            Rule::NoPolicy { destination } => write!(
                f,
                "no [destinations.{destination}] and no [default_destination]"
            ),
        }
    }
}

/// One decision of the policy: a field of a stream, its class, a destination, and what must
/// happen to the field on its way there. Printable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The stream, when the decision was made for one.
    pub stream: Option<String>,
    /// The destination.
    pub destination: String,
    /// The field.
    pub field: String,
    /// Its class and where that came from.
    pub classification: Classification,
    /// What must happen.
    pub treatment: Treatment,
    /// Why.
    pub rule: Rule,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stream = self.stream.as_deref().unwrap_or("*");
        write!(
            f,
            "{stream} -> {}: `{}` is {} ({}) -> {} [{}]",
            self.destination,
            self.field,
            self.classification.class,
            self.classification.source,
            self.treatment,
            self.rule
        )
    }
}

/// A compiled policy: classifier, per-destination rules, keys and (optionally) the audit
/// log its decisions go to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Policy {
    config: Arc<PolicyConfig>,
    classifier: Arc<Classifier>,
    keys: Keys,
    audit: Option<Arc<dyn AuditLog>>,
    digest: Digest,
}

impl Policy {
    /// Parses and builds a TOML policy.
    pub fn from_toml(text: &str) -> Result<Self> {
        PolicyConfig::from_toml(text)?.build()
    }

    /// Sets the keys hashing and tokenisation use.
    pub fn with_keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }

    /// Records this policy's adoption (with its digest) in `log`, and every later
    /// enforcement decision there too.
    pub fn with_audit(mut self, log: Arc<dyn AuditLog>) -> Result<Self> {
        log.append(AuditEvent::new(
            AuditKind::PolicyChange,
            "governance",
            format!("policy {}", self.digest),
            serde_json::json!({ "digest": self.digest.to_string(), "policy": &*self.config }),
        ))?;
        self.audit = Some(log);
        Ok(self)
    }

    /// The policy as written.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// SHA-256 of the policy's canonical JSON, to tell versions apart in the audit log.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The audit log, if one was set.
    pub fn audit_log(&self) -> Option<&Arc<dyn AuditLog>> {
        self.audit.as_ref()
    }

    /// The policy for `destination` and the scope it is written under.
    pub fn destination(&self, destination: &str) -> Option<(String, &DestinationPolicy)> {
        match self.config.destinations.get(destination) {
            Some(d) => Some((format!("destinations.{destination}"), d)),
            None => self
                .config
                .default_destination
                .as_ref()
                .map(|d| ("default_destination".to_string(), d)),
        }
    }

    /// The purposes `destination` uses data for.
    pub fn purposes(&self, destination: &str) -> Vec<String> {
        self.destination(destination)
            .map(|(_, d)| d.purposes.clone())
            .unwrap_or_default()
    }

    /// What must happen to the top-level `field` of class `class` on its way to
    /// `destination`, and why.
    pub fn treatment(&self, destination: &str, field: &str, class: DataClass) -> (Treatment, Rule) {
        let path = NestedPath::column(field);
        let (treatment, rule, _) = self.treatment_at(destination, &path, &[], class);
        (treatment, rule)
    }

    /// What must happen to the field at `path` (inside `containers`, outermost first) of
    /// class `class` on its way to `destination`, why, and the path the treatment applies
    /// to: the field itself, or a container a `fields` entry names as a whole.
    pub fn treatment_at(
        &self,
        destination: &str,
        path: &NestedPath,
        containers: &[NestedPath],
        class: DataClass,
    ) -> (Treatment, Rule, NestedPath) {
        let Some((scope, d)) = self.destination(destination) else {
            return (
                Treatment::Forbidden,
                Rule::NoPolicy {
                    destination: destination.to_string(),
                },
                path.clone(),
            );
        };
        // A container named in `fields` covers everything inside it; the outermost wins.
        for at in containers.iter().chain([path]) {
            if let Some((key, method)) = d
                .fields
                .iter()
                .find(|(key, _)| PathPattern::new(key).matches(at))
            {
                let rule = Rule::Field {
                    scope,
                    field: key.clone(),
                };
                return (Treatment::Mask(method.clone()), rule, at.clone());
            }
        }
        if let Some(method) = d.require.get(&class) {
            return (
                Treatment::Mask(method.clone()),
                Rule::Class { scope, class },
                path.clone(),
            );
        }
        let rule = Rule::MaxClass {
            scope,
            max_class: d.max_class,
        };
        if class <= d.max_class {
            (Treatment::Clear, rule, path.clone())
        } else {
            (Treatment::Forbidden, rule, path.clone())
        }
    }

    /// The decision for one leaf, and the path its treatment applies to.
    fn decide_leaf(
        &self,
        stream: Option<&str>,
        destination: &str,
        leaf: &Leaf,
        classification: Classification,
    ) -> (Decision, NestedPath) {
        let containers: Vec<NestedPath> = leaf.ancestors.iter().map(|(p, _)| p.clone()).collect();
        let (treatment, rule, at) =
            self.treatment_at(destination, &leaf.path, &containers, classification.class);
        let decision = Decision {
            stream: stream.map(str::to_string),
            destination: destination.to_string(),
            field: leaf.path.to_string(),
            classification,
            treatment,
            rule,
        };
        (decision, at)
    }

    /// The decisions for every user field of `schema`, at every depth, going to
    /// `destination`.
    pub fn decide(
        &self,
        stream: Option<&str>,
        destination: &str,
        schema: &Schema,
    ) -> Result<Vec<Decision>> {
        Ok(self
            .classifier
            .classify_leaves(stream, schema)?
            .into_iter()
            .map(|(leaf, c)| self.decide_leaf(stream, destination, &leaf, c).0)
            .collect())
    }

    /// Every decision for `streams` (name and user schema) and every destination the
    /// policy names, in a stable order: what a run under this policy will do.
    pub fn decisions(&self, streams: &[(&str, SchemaRef)]) -> Result<Vec<Decision>> {
        let mut out = Vec::new();
        for (stream, schema) in streams {
            for destination in self.config.destinations.keys() {
                out.extend(self.decide(Some(stream), destination, schema)?);
            }
        }
        Ok(out)
    }

    /// The masking plan for batches of `schema` to `destination`.
    pub(crate) fn plan_for(&self, destination: &str, schema: &Schema) -> Result<Plan> {
        let mut plan = Plan::default();
        for (leaf, classification) in self.classifier.classify_leaves(None, schema)? {
            let (decision, at) = self.decide_leaf(None, destination, &leaf, classification);
            let method = match decision.treatment {
                Treatment::Clear => None,
                Treatment::Forbidden => Some(Method::Drop),
                Treatment::Mask(method) => Some(method),
            };
            let class = decision.classification.class;
            plan.insert(
                at,
                Action {
                    class,
                    method,
                    rule: Some(decision.rule.to_string()),
                },
            );
        }
        Ok(plan)
    }

    /// The masking transform `destination` needs for batches of `schema`, for
    /// [`PipelineBuilder::destination_with`](cdp_core::PipelineBuilder::destination_with).
    ///
    /// Shared by all streams to that destination, so classes come from metadata and rules,
    /// with tracking-plan properties at the highest class any stream's plan gives them. It
    /// asks the policy about every schema it sees, so fields added by a later schema change
    /// (at any depth) are masked as the policy says. Fails, naming the field and the rule,
    /// when a required method does not fit `schema`'s field or lacks its key.
    pub fn masking_for(&self, destination: &str, schema: &Schema) -> Result<Masking> {
        if self.destination(destination).is_none() {
            return Err(Error::InvalidPolicy(format!(
                "destination `{destination}` has no policy ([destinations.{destination}]) and there \
                 is no [default_destination]"
            )));
        }
        let masking = Masking::derived(
            format!("governance:{destination}"),
            self.clone(),
            destination,
        );
        // Planned now, so a method that does not fit a field fails before the run starts.
        masking.masked_schema(schema)?;
        Ok(masking)
    }

    /// [`masking_for`](Policy::masking_for), boxed for
    /// [`PipelineBuilder::destination_with`](cdp_core::PipelineBuilder::destination_with).
    pub fn transforms_for(
        &self,
        destination: &str,
        schema: &Schema,
    ) -> Result<Vec<Box<dyn Transform>>> {
        Ok(vec![Box::new(self.masking_for(destination, schema)?)])
    }

    /// The flow check for [`PipelineBuilder::check`](cdp_core::PipelineBuilder::check).
    pub fn enforcer(&self) -> Enforcer {
        Enforcer::new(self.clone())
    }
}

/// The decisions `policy_file` makes for `streams`, ready to print one per line: what a
/// quickstart shows before it runs.
pub fn decisions_for_file(
    policy_file: impl AsRef<Path>,
    streams: &[(&str, SchemaRef)],
) -> Result<Vec<Decision>> {
    PolicyConfig::from_file(policy_file)?
        .build()?
        .decisions(streams)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_core::arrow::datatypes::{DataType, Field};

    const POLICY: &str = r#"
        default_class = "internal"
        [[classify]]
        pattern = "*email*"
        class = "sensitive"
        [[classify]]
        pattern = "ssn"
        class = "restricted"
        [destinations.warehouse]
        max_class = "sensitive"
        purposes = ["analytics"]
        [destinations.ads]
        max_class = "internal"
        purposes = ["marketing"]
        require = { sensitive = "hash" }
        fields = { ip = { ip_prefix = { v4 = 24, v6 = 48 } } }
    "#;

    #[test]
    fn treatments_follow_fields_then_require_then_max_class() {
        let policy = Policy::from_toml(POLICY).unwrap();
        let t = |d, f, c| policy.treatment(d, f, c).0;
        assert_eq!(
            t("ads", "email", DataClass::Sensitive),
            Treatment::Mask(Method::Hash)
        );
        assert_eq!(t("ads", "ssn", DataClass::Restricted), Treatment::Forbidden);
        assert_eq!(t("ads", "n", DataClass::Internal), Treatment::Clear);
        assert_eq!(
            t("ads", "ip", DataClass::Internal),
            Treatment::Mask(Method::IpPrefix { v4: 24, v6: 48 })
        );
        assert_eq!(
            t("warehouse", "email", DataClass::Sensitive),
            Treatment::Clear
        );
        assert_eq!(t("crm", "n", DataClass::Public), Treatment::Forbidden);
    }

    #[test]
    fn decisions_print_field_class_destination_and_rule() {
        let policy = Policy::from_toml(POLICY).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("email", DataType::Utf8, true)]));
        let decisions = policy.decisions(&[("users", schema)]).unwrap();
        let lines: Vec<String> = decisions.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "users -> ads: `email` is sensitive (rule #1 `*email*`) -> masked: hash \
                 [destinations.ads.require.sensitive]",
                "users -> warehouse: `email` is sensitive (rule #1 `*email*`) -> in the clear \
                 [destinations.warehouse.max_class = sensitive]",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_classes_are_rejected() {
        assert!(PolicyConfig::from_toml("default_class = \"secret\"").is_err());
        assert!(PolicyConfig::from_toml("default_class = \"public\"\nfoo = 1").is_err());
        assert!(PolicyConfig::from_toml("classify = []").is_err());
    }

    #[test]
    fn toml_and_json_agree() {
        let config = PolicyConfig::from_toml(POLICY).unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(PolicyConfig::from_json(&json).unwrap(), config);
        let toml = config.to_toml().unwrap();
        assert_eq!(PolicyConfig::from_toml(&toml).unwrap(), config);
    }

    #[test]
    fn masking_for_refuses_methods_that_do_not_fit() {
        let policy = Policy::from_toml(POLICY).unwrap();
        let schema = Schema::new(vec![Field::new("email", DataType::Utf8, true)]);
        // No hash key configured.
        let err = policy.masking_for("ads", &schema).unwrap_err().to_string();
        assert!(err.contains("email") && err.contains("hash"), "{err}");
    }
}
