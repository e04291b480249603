//! Compatibility modes with the semantics of Confluent Schema Registry, on Arrow schemas.
//!
//! - `BACKWARD`: consumers using the new schema can read data written with the previous
//!   one (the new schema is the *reader*). Fields may be deleted; a field may be added only
//!   if it is nullable or has a default ([`DEFAULT_KEY`](crate::types::DEFAULT_KEY)).
//! - `FORWARD`: consumers using the previous schema can read data written with the new one.
//!   Fields may be added; only nullable (or defaulted) fields may be deleted.
//! - `FULL`: both.
//! - `*_TRANSITIVE`: checked against every earlier version, not just the latest.
//! - `NONE`: anything goes.
//!
//! A reader field matches a writer field by name or by one of its declared aliases. Types
//! must be the same or a promotion from the writer's type to the reader's under the chosen
//! [`Promotions`]; a nullable writer field cannot feed a required reader field.

use std::str::FromStr;

use arrow::datatypes::{DataType, Field, Fields, Schema};
use serde::{Deserialize, Serialize};

use crate::diff::join;
use crate::types::{self, DEFAULT_KEY, Promotions, type_name};

/// A subject's compatibility mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityMode {
    /// No check.
    None,
    /// The new schema reads data of the latest version. The default, as in Confluent.
    #[default]
    Backward,
    /// The new schema reads data of every earlier version.
    BackwardTransitive,
    /// The latest version reads data of the new schema.
    Forward,
    /// Every earlier version reads data of the new schema.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every earlier version.
    FullTransitive,
}

impl CompatibilityMode {
    /// Every mode, for tables and listings.
    pub const ALL: [CompatibilityMode; 7] = [
        CompatibilityMode::None,
        CompatibilityMode::Backward,
        CompatibilityMode::BackwardTransitive,
        CompatibilityMode::Forward,
        CompatibilityMode::ForwardTransitive,
        CompatibilityMode::Full,
        CompatibilityMode::FullTransitive,
    ];

    /// The Confluent name (`BACKWARD_TRANSITIVE`).
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityMode::None => "NONE",
            CompatibilityMode::Backward => "BACKWARD",
            CompatibilityMode::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityMode::Forward => "FORWARD",
            CompatibilityMode::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityMode::Full => "FULL",
            CompatibilityMode::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether every earlier version is checked, not just the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityMode::BackwardTransitive
                | CompatibilityMode::ForwardTransitive
                | CompatibilityMode::FullTransitive
        )
    }

    fn checks_backward(self) -> bool {
        matches!(
            self,
            CompatibilityMode::Backward
                | CompatibilityMode::BackwardTransitive
                | CompatibilityMode::Full
                | CompatibilityMode::FullTransitive
        )
    }

    fn checks_forward(self) -> bool {
        matches!(
            self,
            CompatibilityMode::Forward
                | CompatibilityMode::ForwardTransitive
                | CompatibilityMode::Full
                | CompatibilityMode::FullTransitive
        )
    }
}

impl std::fmt::Display for CompatibilityMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityMode {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase().replace('-', "_");
        CompatibilityMode::ALL
            .into_iter()
            .find(|m| m.as_str() == upper)
            .ok_or_else(|| {
                crate::Error::Config(format!(
                    "unknown compatibility mode `{s}` (expected one of NONE, BACKWARD, \
                     BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE)"
                ))
            })
    }
}

/// Which way a check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The new schema reading old data.
    Backward,
    /// An old schema reading new data.
    Forward,
}

/// Why a reader schema cannot read a writer's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incompatibility {
    /// The field's path in the reader schema.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// An incompatibility with one earlier version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatViolation {
    /// The earlier version it concerns.
    pub version: u32,
    /// Which way the read fails.
    pub direction: Direction,
    /// The field and reason.
    pub incompatibility: Incompatibility,
}

impl std::fmt::Display for CompatViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let way = match self.direction {
            Direction::Backward => "new schema reading",
            Direction::Forward => "reading new data with",
        };
        write!(
            f,
            "{way} version {}: `{}` {}",
            self.version, self.incompatibility.path, self.incompatibility.message
        )
    }
}

/// The outcome of a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatibilityReport {
    /// The mode checked.
    pub mode: CompatibilityMode,
    /// The versions checked against.
    pub checked_versions: Vec<u32>,
    /// Every violation; empty when compatible.
    pub violations: Vec<CompatViolation>,
}

impl CompatibilityReport {
    /// Whether the candidate is compatible.
    pub fn is_compatible(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks `candidate` against earlier versions (`(version, schema)`, oldest first) in
/// `mode`: only the latest for non-transitive modes, all of them for transitive ones.
pub fn check(
    mode: CompatibilityMode,
    candidate: &Schema,
    history: &[(u32, &Schema)],
    rules: Promotions,
) -> CompatibilityReport {
    let against: &[(u32, &Schema)] = match (mode, history) {
        (CompatibilityMode::None, _) | (_, []) => &[],
        (m, h) if m.is_transitive() => h,
        (_, h) => &h[h.len() - 1..],
    };
    let mut violations = Vec::new();
    for (version, earlier) in against {
        if mode.checks_backward() {
            violations.extend(can_read(candidate, earlier, rules).into_iter().map(|i| {
                CompatViolation {
                    version: *version,
                    direction: Direction::Backward,
                    incompatibility: i,
                }
            }));
        }
        if mode.checks_forward() {
            violations.extend(can_read(earlier, candidate, rules).into_iter().map(|i| {
                CompatViolation {
                    version: *version,
                    direction: Direction::Forward,
                    incompatibility: i,
                }
            }));
        }
    }
    CompatibilityReport {
        mode,
        checked_versions: against.iter().map(|(v, _)| *v).collect(),
        violations,
    }
}

/// Why `reader` cannot read data written with `writer`; empty when it can.
pub fn can_read(reader: &Schema, writer: &Schema, rules: Promotions) -> Vec<Incompatibility> {
    let mut out = Vec::new();
    read_fields(reader.fields(), writer.fields(), "", rules, &mut out);
    out
}

fn read_fields(
    reader: &Fields,
    writer: &Fields,
    prefix: &str,
    rules: Promotions,
    out: &mut Vec<Incompatibility>,
) {
    for rf in reader {
        let path = join(prefix, rf.name());
        let found = writer.iter().find(|wf| wf.name() == rf.name()).or_else(|| {
            types::aliases(rf)
                .into_iter()
                .find_map(|alias| writer.iter().find(|wf| wf.name() == alias))
        });
        match found {
            Some(wf) => read_field(rf, wf, &path, rules, out),
            None if rf.is_nullable() || rf.metadata().contains_key(DEFAULT_KEY) => {}
            None => out.push(Incompatibility {
                path,
                message: format!(
                    "is required ({}) with no default, and the data has no such field",
                    type_name(rf.data_type())
                ),
            }),
        }
    }
}

fn read_field(
    reader: &Field,
    writer: &Field,
    path: &str,
    rules: Promotions,
    out: &mut Vec<Incompatibility>,
) {
    if writer.is_nullable() && !reader.is_nullable() {
        out.push(Incompatibility {
            path: path.to_string(),
            message: "is required, but the data may hold nulls".into(),
        });
    }
    read_type(reader.data_type(), writer.data_type(), path, rules, out);
}

fn read_type(
    reader: &DataType,
    writer: &DataType,
    path: &str,
    rules: Promotions,
    out: &mut Vec<Incompatibility>,
) {
    let (r, w) = (types::logical(reader), types::logical(writer));
    let refuse = |out: &mut Vec<Incompatibility>| {
        out.push(Incompatibility {
            path: path.to_string(),
            message: format!(
                "has type {}, which cannot read {} ({} promotions)",
                type_name(reader),
                type_name(writer),
                rules
            ),
        })
    };
    match (r, w) {
        (DataType::Struct(rf), DataType::Struct(wf)) => read_fields(rf, wf, path, rules, out),
        (DataType::Map(re, _), DataType::Map(we, _)) => match (re.data_type(), we.data_type()) {
            (DataType::Struct(rkv), DataType::Struct(wkv)) if rkv.len() == 2 && wkv.len() == 2 => {
                read_field(&rkv[0], &wkv[0], &format!("{path}{{key}}"), rules, out);
                read_field(&rkv[1], &wkv[1], &format!("{path}{{value}}"), rules, out);
            }
            _ => refuse(out),
        },
        _ => match (types::list_element(r), types::list_element(w)) {
            (Some(re), Some(we)) => {
                let container_ok = std::mem::discriminant(r) == std::mem::discriminant(w)
                    || types::same_logical(r, w)
                    || types::can_promote(w, r, rules);
                let fixed_len_ok = match (r, w) {
                    (DataType::FixedSizeList(_, a), DataType::FixedSizeList(_, b)) => a == b,
                    (DataType::FixedSizeList(..), _) => false,
                    _ => true,
                };
                if !(container_ok && fixed_len_ok) {
                    refuse(out);
                }
                read_field(re, we, &format!("{path}[]"), rules, out);
            }
            _ if types::is_nested(r) || types::is_nested(w) => {
                if r != w {
                    refuse(out);
                }
            }
            _ => {
                if !(types::same_logical(r, w) || types::can_promote(w, r, rules)) {
                    refuse(out);
                }
            }
        },
    }
}
