//! Schema evolution for `cdp` pipelines: a registry of versioned schemas per stream,
//! compatibility modes with Confluent semantics on Arrow types, structural diffs with
//! severities and consumer impact, contracts, and the schema guard transform that handles
//! every schema change before any destination sees it.
//!
//! - [`types`]: Avro and Iceberg type promotion rules on Arrow types, fingerprints.
//! - [`compat`]: `NONE`, `BACKWARD`, `FORWARD`, `FULL` and their `_TRANSITIVE` variants.
//! - [`diff`]: added, removed, renamed (declared or probable), widened, narrowed,
//!   nullability and semantic changes, down to nested paths; rendered as text and JSON.
//! - [`severity`]: a per-subject [`SchemaPolicy`] giving each change a [`Severity`].
//! - [`consumers`]: who reads which fields, and what a diff does to them.
//! - [`registry`]: versions per subject, in memory or SQLite.
//! - [`contract`]: field rules validated per row; violating rows are dead-lettered.
//! - [`tracking_plan`]: Segment-Protocols-style plans per event name.
//! - [`infer`]: Arrow schemas from JSON samples, with explicit unification rules.
//! - [`guard`]: the [`SchemaGuard`] transform: register, block, quarantine or split.
//! - [`lineage`]: a raw → curated mapping transform recording field-level lineage.
//!
//! # Example
//!
//! ```
//! use arrow::datatypes::{DataType, Field, Schema};
//! use cdp_schema::{SchemaDiff, SchemaPolicy, Severity, render_report};
//!
//! let old = Schema::new(vec![
//!     Field::new("id", DataType::Int64, false),
//!     Field::new("email", DataType::Utf8, true),
//!     Field::new("amount", DataType::Int32, true),
//! ]);
//! let new = Schema::new(vec![
//!     Field::new("id", DataType::Int64, false),
//!     Field::new("email_address", DataType::Utf8, true),
//!     Field::new("amount", DataType::Int64, true),
//! ]);
//!
//! let policy = SchemaPolicy::default();
//! let changes = policy.assess(&old, &new);
//! // An undeclared rename blocks by default; a promotion is only monitored.
//! assert_eq!(changes.max_severity(), Severity::Block);
//! let report = render_report(&old, &new, &policy);
//! assert!(report.contains("probable rename"));
//! assert!(report.contains("int32 -> int64"));
//! ```

pub mod compat;
pub mod consumers;
pub mod contract;
pub mod diff;
pub mod error;
pub mod guard;
pub mod infer;
pub mod lineage;
pub mod registry;
pub mod severity;
pub mod tracking_plan;
pub mod types;

pub use compat::{CompatibilityMode, CompatibilityReport};
pub use consumers::{Consumer, ConsumerKind, ConsumerRegistry, Impact, ImpactLevel};
pub use contract::{Contract, ContractCheck, ContractFlowCheck, FieldRule};
pub use diff::render::{DiffReport, render_report, render_report_with_consumers};
pub use diff::{Change, ChangeKind, SchemaDiff};
pub use error::{Error, Result};
pub use guard::{BreakingAction, GuardAction, GuardEvent, GuardHandle, SchemaGuard};
pub use infer::{InferOptions, infer};
pub use lineage::{LineageEdge, LineageGraph, LineageMapping};
pub use registry::{MemoryStore, RegisteredSchema, Registration, RegistryStore, SchemaRegistry};
pub use severity::{ChangeCategory, ClassifiedDiff, SchemaPolicy, Severity};
pub use tracking_plan::{TrackingPlan, TrackingPlanCheck};
pub use types::{Promotions, TypeFamily, TypeRelation};
