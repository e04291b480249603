//! Roles and purposes: who may read which streams, fields and classes, for what, and in
//! what form. [`Access::authorize`] decides one field with a reason; [`Access::read`] is a
//! governed view over a batch (a profile lookup, a table read) that applies the caller's
//! masking and records the read.
//!
//! ```toml
//! [roles.analyst]
//! grants = [{ streams = ["*"], max_class = "internal", purposes = ["analytics"],
//!             masked = { sensitive = "hash" } }]
//!
//! [roles.support]
//! grants = [{ streams = ["profiles"], max_class = "sensitive", purposes = ["support"] }]
//!
//! [principals]
//! alice = { roles = ["analyst"] }
//! bob = { roles = ["support", "analyst"] }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use cdp_core::arrow::array::{Array, RecordBatch};
use cdp_core::arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditKind, AuditLog};
use crate::class::{DataClass, Glob};
use crate::error::{Error, Result};
use crate::mask::{Masking, Method};
use crate::path::{NestedPath, PathPattern};
use crate::policy::Policy;

/// The `[roles]` and `[principals]` of an access policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Roles by name.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    /// Principals (people, services) by name.
    #[serde(default)]
    pub principals: BTreeMap<String, PrincipalConfig>,
}

/// A role: a set of grants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// What the role may read.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// A principal: the roles it holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Permission to read fields of some streams for some purposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Stream globs; empty means every stream.
    #[serde(default)]
    pub streams: Vec<String>,
    /// Field name or path patterns, as in the policy's rules; empty means every field.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Highest class readable in the clear.
    pub max_class: DataClass,
    /// Purposes the grant is for.
    pub purposes: Vec<String>,
    /// Classes above `max_class` readable only masked, and how.
    #[serde(default)]
    pub masked: BTreeMap<DataClass, Method>,
}

/// One field someone wants to read.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// Who.
    pub principal: &'a str,
    /// What for.
    pub purpose: &'a str,
    /// The stream (or `profiles` for profile lookups).
    pub stream: &'a str,
    /// The field.
    pub field: &'a str,
    /// The field's class.
    pub class: DataClass,
}

/// Whether and how a field may be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "method")]
pub enum AccessOutcome {
    /// In the clear.
    Allow,
    /// Only masked this way.
    Masked(Method),
    /// Not at all.
    Deny,
}

/// The answer to an [`AccessRequest`], with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessDecision {
    /// The outcome.
    pub outcome: AccessOutcome,
    /// Why, naming the role and grant (or what is missing).
    pub reason: String,
}

impl AccessDecision {
    /// Whether anything of the field may be read.
    pub fn is_allowed(&self) -> bool {
        self.outcome != AccessOutcome::Deny
    }
}

impl fmt::Display for AccessDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            AccessOutcome::Allow => write!(f, "allow: {}", self.reason),
            AccessOutcome::Masked(m) => write!(f, "allow masked ({m}): {}", self.reason),
            AccessOutcome::Deny => write!(f, "deny: {}", self.reason),
        }
    }
}

/// Compiled roles and principals, classifying fields with a [`Policy`].
#[derive(Debug, Clone)]
pub struct Access {
    config: Arc<AccessConfig>,
    policy: Policy,
    audit: Option<Arc<dyn AuditLog>>,
}

impl Access {
    /// Checks every principal's roles exist and compiles the config.
    pub fn new(config: AccessConfig, policy: Policy) -> Result<Self> {
        for (principal, p) in &config.principals {
            if let Some(role) = p.roles.iter().find(|r| !config.roles.contains_key(*r)) {
                return Err(Error::InvalidPolicy(format!(
                    "principal `{principal}` has role `{role}`, which is not defined under [roles]"
                )));
            }
        }
        let audit = policy.audit_log().cloned();
        Ok(Access {
            config: Arc::new(config),
            policy,
            audit,
        })
    }

    /// Parses `[roles]` and `[principals]` from TOML.
    pub fn from_toml(text: &str, policy: Policy) -> Result<Self> {
        let config: AccessConfig =
            toml::from_str(text).map_err(|e| Error::InvalidPolicy(e.to_string()))?;
        Self::new(config, policy)
    }

    /// Decides one request. The most permissive matching grant wins (clear over masked);
    /// with none, the reason says what is missing.
    pub fn authorize(&self, request: &AccessRequest<'_>) -> AccessDecision {
        let deny = |reason: String| AccessDecision {
            outcome: AccessOutcome::Deny,
            reason,
        };
        let Some(principal) = self.config.principals.get(request.principal) else {
            return deny(format!("unknown principal `{}`", request.principal));
        };
        let matches = |globs: &[String], name: &str| {
            globs.is_empty() || globs.iter().any(|g| Glob::new(g).matches(name))
        };
        // Field patterns are names or paths, as in the policy's rules.
        let field = NestedPath::parse(request.field);
        let field_matches = |patterns: &[String]| {
            patterns.is_empty() || patterns.iter().any(|p| PathPattern::new(p).matches(&field))
        };
        let mut best: Option<AccessDecision> = None;
        let mut nearest: Option<String> = None;
        for role_name in &principal.roles {
            let Some(role) = self.config.roles.get(role_name) else {
                continue;
            };
            for grant in &role.grants {
                if !matches(&grant.streams, request.stream) || !field_matches(&grant.fields) {
                    continue;
                }
                if !grant.purposes.iter().any(|p| p == request.purpose) {
                    nearest.get_or_insert_with(|| {
                        format!(
                            "role `{role_name}` covers `{}`.`{}` only for {}",
                            request.stream,
                            request.field,
                            grant.purposes.join(", ")
                        )
                    });
                    continue;
                }
                let decision = if request.class <= grant.max_class {
                    AccessDecision {
                        outcome: AccessOutcome::Allow,
                        reason: format!(
                            "role `{role_name}` grants {} up to {} on `{}` for {}",
                            request.field, grant.max_class, request.stream, request.purpose
                        ),
                    }
                } else if let Some(method) = grant.masked.get(&request.class) {
                    AccessDecision {
                        outcome: AccessOutcome::Masked(method.clone()),
                        reason: format!(
                            "role `{role_name}` grants {} data on `{}` for {} only as {method}",
                            request.class, request.stream, request.purpose
                        ),
                    }
                } else {
                    nearest = Some(format!(
                        "role `{role_name}` grants up to {} for {}, and `{}` is {}",
                        grant.max_class, request.purpose, request.field, request.class
                    ));
                    continue;
                };
                let better = match (&best, &decision.outcome) {
                    (None, _) => true,
                    (Some(b), AccessOutcome::Allow) => b.outcome != AccessOutcome::Allow,
                    _ => false,
                };
                if better {
                    best = Some(decision);
                }
            }
        }
        best.unwrap_or_else(|| {
            deny(nearest.unwrap_or_else(|| {
                format!(
                    "no role of `{}` grants `{}`.`{}`",
                    request.principal, request.stream, request.field
                )
            }))
        })
    }

    /// The decision for every user field of `schema`, at every depth, by path.
    pub fn authorize_schema(
        &self,
        principal: &str,
        purpose: &str,
        stream: &str,
        schema: &Schema,
    ) -> Result<Vec<(String, AccessDecision)>> {
        self.policy
            .classifier()
            .classify_schema(Some(stream), schema)?
            .into_iter()
            .map(|(field, c)| {
                let decision = self.authorize(&AccessRequest {
                    principal,
                    purpose,
                    stream,
                    field: &field,
                    class: c.class,
                });
                Ok((field, decision))
            })
            .collect()
    }

    /// A governed read: `data` as `principal` may see it for `purpose` — denied fields
    /// removed, masked ones masked with the policy's keys, at every depth (a denied
    /// `traits.email` leaves the rest of `traits`) — recorded in the audit log.
    pub fn read(
        &self,
        principal: &str,
        purpose: &str,
        stream: &str,
        data: &RecordBatch,
    ) -> Result<RecordBatch> {
        let mut masking = Masking::new(format!("read by {principal}"), self.policy.keys().clone());
        let mut summary = BTreeMap::new();
        for (leaf, c) in self
            .policy
            .classifier()
            .classify_leaves(Some(stream), &data.schema())?
        {
            let field = leaf.path.to_string();
            let decision = self.authorize(&AccessRequest {
                principal,
                purpose,
                stream,
                field: &field,
                class: c.class,
            });
            let method = match &decision.outcome {
                AccessOutcome::Allow => None,
                AccessOutcome::Masked(m) => Some(m.clone()),
                AccessOutcome::Deny => Some(Method::Drop),
            };
            summary.insert(field.clone(), decision.to_string());
            masking = masking.field(field, c.class, method);
        }
        let view = masking.apply_to(data)?;
        if let Some(log) = &self.audit {
            log.append(AuditEvent::new(
                AuditKind::GovernedRead,
                principal,
                stream,
                serde_json::json!({
                    "purpose": purpose,
                    "rows": data.num_rows(),
                    "fields": summary,
                }),
            ))?;
        }
        Ok(view)
    }
}

impl Access {
    /// Reverses tokens of `field` for `principal`, if a grant lets them read the field in
    /// the clear for `purpose`; every reveal, granted or not, is recorded. This is the
    /// "authorised caller" of deterministic tokenisation: holding the key is not enough,
    /// the caller must be granted the clear value.
    pub fn reveal(
        &self,
        principal: &str,
        purpose: &str,
        stream: &str,
        field: &str,
        class: DataClass,
        tokens: &cdp_core::arrow::array::StringArray,
    ) -> Result<cdp_core::arrow::array::StringArray> {
        let decision = self.authorize(&AccessRequest {
            principal,
            purpose,
            stream,
            field,
            class,
        });
        if let Some(log) = &self.audit {
            log.append(AuditEvent::new(
                AuditKind::GovernedRead,
                principal,
                format!("{stream}.{field}"),
                serde_json::json!({
                    "purpose": purpose,
                    "reveal": tokens.len(),
                    "decision": decision.to_string(),
                }),
            ))?;
        }
        if decision.outcome != AccessOutcome::Allow {
            return Err(Error::Denied {
                principal: principal.to_string(),
                reason: decision.reason,
            });
        }
        let tokenizer =
            self.policy.keys().tokenizer().ok_or_else(|| {
                Error::Key("no token key configured (Keys::with_token_key)".into())
            })?;
        tokenizer.detokenize_array(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Keys;

    fn access() -> Access {
        let policy = Policy::from_toml("default_class = \"internal\"")
            .unwrap()
            .with_keys(Keys::new().with_hash_key(&[5; 32]).unwrap());
        Access::from_toml(
            r#"
            [roles.analyst]
            grants = [{ max_class = "internal", purposes = ["analytics"], masked = { sensitive = "hash" } }]
            [roles.support]
            grants = [{ streams = ["profiles"], max_class = "sensitive", purposes = ["support"] }]
            [principals]
            alice = { roles = ["analyst"] }
            bob = { roles = ["analyst", "support"] }
            "#,
            policy,
        )
        .unwrap()
    }

    fn ask(who: &str, purpose: &str, stream: &str, class: DataClass) -> AccessDecision {
        access().authorize(&AccessRequest {
            principal: who,
            purpose,
            stream,
            field: "email",
            class,
        })
    }

    #[test]
    fn decisions_carry_reasons() {
        let d = ask("alice", "analytics", "events", DataClass::Sensitive);
        assert_eq!(d.outcome, AccessOutcome::Masked(Method::Hash));
        assert!(d.reason.contains("analyst"), "{d}");
        let d = ask("alice", "marketing", "events", DataClass::Internal);
        assert_eq!(d.outcome, AccessOutcome::Deny);
        assert!(d.reason.contains("only for analytics"), "{d}");
        let d = ask("alice", "analytics", "events", DataClass::Restricted);
        assert!(d.reason.contains("is restricted"), "{d}");
        assert_eq!(
            ask("bob", "support", "profiles", DataClass::Sensitive).outcome,
            AccessOutcome::Allow
        );
        assert_eq!(
            ask("bob", "support", "events", DataClass::Sensitive).outcome,
            AccessOutcome::Deny
        );
        assert!(
            ask("eve", "support", "profiles", DataClass::Public)
                .reason
                .contains("unknown principal")
        );
    }

    #[test]
    fn only_principals_granted_the_clear_value_may_reveal_tokens() {
        let keys = Keys::new().with_token_key(&[1; 64]).unwrap();
        let tokens = keys
            .tokenizer()
            .unwrap()
            .tokenize_array(
                &(std::sync::Arc::new(cdp_core::arrow::array::StringArray::from(vec![
                    "ada@example.com",
                ])) as cdp_core::arrow::array::ArrayRef),
            )
            .unwrap();
        let tokens = tokens
            .as_any()
            .downcast_ref::<cdp_core::arrow::array::StringArray>()
            .unwrap();
        let policy = Policy::from_toml("default_class = \"internal\"")
            .unwrap()
            .with_keys(keys);
        let access = Access::new(access().config.as_ref().clone(), policy).unwrap();
        let revealed = access
            .reveal(
                "bob",
                "support",
                "profiles",
                "email",
                DataClass::Sensitive,
                tokens,
            )
            .unwrap();
        assert_eq!(revealed.value(0), "ada@example.com");
        let denied = access
            .reveal(
                "alice",
                "analytics",
                "profiles",
                "email",
                DataClass::Sensitive,
                tokens,
            )
            .unwrap_err();
        assert!(matches!(denied, Error::Denied { .. }), "{denied}");
    }

    #[test]
    fn undefined_roles_are_rejected() {
        let policy = Policy::from_toml("default_class = \"internal\"").unwrap();
        let err =
            Access::from_toml("[principals]\nx = { roles = [\"ghost\"] }", policy).unwrap_err();
        assert!(err.to_string().contains("ghost"));
    }

    #[test]
    fn governed_reads_mask_nested_fields_in_place() {
        use cdp_core::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray, StructArray};
        use cdp_core::arrow::datatypes::{DataType, Field};

        let policy = Policy::from_toml(
            r#"
            default_class = "internal"
            [[classify]]
            pattern = "traits.email"
            class = "sensitive"
            [[classify]]
            pattern = "ssn"
            class = "restricted"
            "#,
        )
        .unwrap()
        .with_keys(Keys::new().with_hash_key(&[5; 32]).unwrap());
        let access = Access::new(access().config.as_ref().clone(), policy).unwrap();
        let utf8 = |name: &str| std::sync::Arc::new(Field::new(name, DataType::Utf8, true));
        let traits = StructArray::from(vec![
            (
                utf8("email"),
                std::sync::Arc::new(StringArray::from(vec!["ada@example.com"])) as ArrayRef,
            ),
            (
                utf8("ssn"),
                std::sync::Arc::new(StringArray::from(vec!["078-05-1120"])) as ArrayRef,
            ),
            (
                utf8("plan"),
                std::sync::Arc::new(StringArray::from(vec!["pro"])) as ArrayRef,
            ),
        ]);
        let data =
            RecordBatch::try_from_iter([("traits", std::sync::Arc::new(traits) as ArrayRef)])
                .unwrap();
        let view = access.read("alice", "analytics", "users", &data).unwrap();
        let traits = view.column(0).as_struct();
        let names: Vec<&str> = traits.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["email", "plan"],
            "ssn denied, the rest of traits kept"
        );
        let email = traits.column(0).as_string::<i32>().value(0).to_string();
        assert_eq!(
            email,
            Keys::new()
                .with_hash_key(&[5; 32])
                .unwrap()
                .hash_key()
                .unwrap()
                .hash_hex(b"ada@example.com")
        );
        assert_eq!(traits.column(1).as_string::<i32>().value(0), "pro");
    }
}
