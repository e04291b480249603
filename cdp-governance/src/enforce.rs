//! The [`Enforcer`]: a [`FlowCheck`] that refuses any flow sending a field to a destination
//! in a form the policy forbids, before data moves and on every schema change.

use cdp_core::{Flow, FlowCheck};
use serde::Serialize;

use crate::audit::{AuditEvent, AuditKind};
use crate::class::Classification;
use crate::error::{Error, Result};
use crate::mask::Method;
use crate::policy::{Policy, Rule, Treatment};

/// One field that may not flow as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The field's path (`traits.email`, `contacts[].email`).
    pub field: String,
    /// Its class and where that came from.
    pub classification: Classification,
    /// What the policy demands.
    pub treatment: Treatment,
    /// The rule demanding it.
    pub rule: Rule,
    /// The masking the field arrives with, if any.
    pub applied: Option<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let arrives = match &self.applied {
            None => "in the clear".to_string(),
            Some(m) => format!("masked as `{m}`"),
        };
        let demand = match &self.treatment {
            Treatment::Forbidden | Treatment::Mask(Method::Drop) => "must not reach it".to_string(),
            Treatment::Mask(m) => format!("may reach it only as {m}"),
            Treatment::Clear => "may reach it".to_string(),
        };
        write!(
            f,
            "field `{}` (class {}, from {}) {demand} (rule {}), but arrives {arrives}",
            self.field, self.classification.class, self.classification.source, self.rule
        )
    }
}

/// Checks flows against a [`Policy`]; add it with
/// [`PipelineBuilder::check`](cdp_core::PipelineBuilder::check).
///
/// Every field counts, at every depth. A field passes when the policy lets it through in the
/// clear, or when its metadata (or that of a struct, list or map around it) says it was
/// masked with the required method (or one that reveals less); a field that must be dropped
/// passes only by being absent. Every check is recorded in the policy's audit log,
/// if it has one; a failure to record refuses the flow (governance fails closed).
#[derive(Debug, Clone)]
pub struct Enforcer {
    policy: Policy,
}

impl Enforcer {
    /// An enforcer of `policy`.
    pub fn new(policy: Policy) -> Self {
        Enforcer { policy }
    }

    /// The violations of a flow of `schema` for `stream` to `destination`; empty when it is
    /// allowed.
    pub fn violations(
        &self,
        stream: &str,
        destination: &str,
        schema: &cdp_core::arrow::datatypes::Schema,
    ) -> Result<Vec<Violation>> {
        let mut violations = Vec::new();
        for (leaf, classification) in self
            .policy
            .classifier()
            .classify_leaves(Some(stream), schema)?
        {
            let containers: Vec<_> = leaf.ancestors.iter().map(|(p, _)| p.clone()).collect();
            let (treatment, rule, _) = self.policy.treatment_at(
                destination,
                &leaf.path,
                &containers,
                classification.class,
            );
            // The leaf's own marker, or that of a masked container around it.
            let applied = leaf.marker.as_deref().and_then(Method::from_marker);
            let ok = match &treatment {
                Treatment::Clear => true,
                Treatment::Forbidden => false,
                Treatment::Mask(required) => {
                    applied.as_ref().is_some_and(|a| a.satisfies(required))
                }
            };
            if !ok {
                violations.push(Violation {
                    field: leaf.path.to_string(),
                    classification,
                    treatment,
                    rule,
                    applied: leaf.marker,
                });
            }
        }
        Ok(violations)
    }

    fn evaluate(&self, flow: &Flow<'_>) -> Result<()> {
        let violations = self.violations(flow.stream, flow.destination, flow.schema)?;
        if let Some(log) = self.policy.audit_log() {
            let fields: Vec<String> = crate::path::leaves(flow.schema)
                .into_iter()
                .map(|leaf| leaf.path.to_string())
                .collect();
            log.append(AuditEvent::new(
                AuditKind::PolicyDecision,
                format!("pipeline {}", flow.pipeline_id),
                format!("{} -> {}", flow.stream, flow.destination),
                serde_json::json!({
                    "allowed": violations.is_empty(),
                    "policy": self.policy.digest().to_string(),
                    "fields": fields,
                    "violations": violations.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
            ))?;
        }
        if violations.is_empty() {
            return Ok(());
        }
        let message = violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::Refused {
            stream: flow.stream.to_string(),
            destination: flow.destination.to_string(),
            message,
        })
    }
}

impl FlowCheck for Enforcer {
    fn check(&self, flow: &Flow<'_>) -> cdp_core::Result<()> {
        Ok(self.evaluate(flow)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mask::Keys;
    use cdp_core::arrow::datatypes::{DataType, Field, Schema};

    fn policy() -> Policy {
        Policy::from_toml(
            r#"
            default_class = "public"
            [[classify]]
            pattern = "email"
            class = "sensitive"
            [[classify]]
            pattern = "ssn"
            class = "restricted"
            [destinations.ads]
            max_class = "internal"
            require = { sensitive = "hash" }
            "#,
        )
        .unwrap()
        .with_keys(Keys::new().with_hash_key(&[3; 32]).unwrap())
    }

    fn flow_error(schema: &Schema) -> Option<String> {
        let schema = Arc::new(schema.clone());
        let flow = Flow {
            pipeline_id: "p",
            stream: "users",
            destination: "ads",
            schema: &schema,
        };
        policy()
            .enforcer()
            .check(&flow)
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn clear_sensitive_field_is_refused_naming_field_class_destination_and_rule() {
        let schema = Schema::new(vec![Field::new("email", DataType::Utf8, true)]);
        let err = flow_error(&schema).unwrap();
        for part in [
            "`email`",
            "sensitive",
            "`ads`",
            "destinations.ads.require.sensitive",
        ] {
            assert!(err.contains(part), "{err} lacks {part}");
        }
    }

    #[test]
    fn masked_schema_passes_and_forbidden_fields_must_be_absent() {
        let schema = Schema::new(vec![
            Field::new("email", DataType::Utf8, true),
            Field::new("ssn", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]);
        let masked = policy()
            .masking_for("ads", &schema)
            .unwrap()
            .masked_schema(&schema)
            .unwrap();
        assert_eq!(flow_error(&masked), None);
        assert!(masked.field_with_name("ssn").is_err());
        let with_ssn = Schema::new(vec![Field::new("ssn", DataType::Utf8, true)]);
        let err = flow_error(&with_ssn).unwrap();
        assert!(
            err.contains("must not reach it") && err.contains("max_class = internal"),
            "{err}"
        );
    }
}
