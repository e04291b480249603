//! Typed connector configurations and the registry that reads them.
//!
//! A configuration file names its connectors in tables tagged by `type`:
//!
//! ```toml
//! [sources.events]
//! type = "jsonl"
//! path = "data/events/"
//!
//! [destinations.lake]
//! type = "parquet"
//! root = "lake/"
//! ```
//!
//! - [`SourceConfig`] and [`DestinationConfig`] hold one table each: an enum with a variant
//!   per built-in connector (behind its cargo feature) holding that connector's config, and
//!   a `Custom` variant for types the host registers.
//! - [`ConnectorRegistry`] knows the types by name. [`ConnectorRegistry::parse_connectors`]
//!   reads the `sources` and `destinations` tables of a file and reports every problem at
//!   once, each with its key path; a host adds its own types with
//!   [`register_source`](ConnectorRegistry::register_source) and
//!   [`register_destination`](ConnectorRegistry::register_destination).
//! - [`validate`](SourceConfig::validate) checks values with no side effect (no file
//!   opened, no connection made, no environment variable read);
//!   [`build`](SourceConfig::build) validates and returns the boxed component.
//!
//! Unknown keys are refused, typos get a suggestion, and every error names where it is:
//!
//! ```text
//! sources.events.batch_sise: unknown field `batch_sise` (did you mean `batch_size`?), expected one of `path`, `name`, …
//! sources.events.schema[1].name: column `id` appears twice in the schema (also schema[0])
//! sources.crm.type: source type `postgres` needs the `postgres` feature of cdp-connectors, which this build does not have
//! ```
//!
//! How: the `type` key is read first, then the rest of the table is deserialized into the
//! variant's struct under `serde_path_to_error`. Serde's internally tagged enums and
//! `#[serde(flatten)]` would buffer the table and lose the path of anything inside it. The
//! options several connectors share ([`FileSourceOptions`](crate::sources::FileSourceOptions),
//! [`LandingOptions`](crate::destinations::LandingOptions)) are structs of their own that
//! each connector config composes; their keys sit in the same flat table and are routed to
//! the part that declares them, so unknown keys are still refused.
//!
//! # Example
//!
#![cfg_attr(feature = "jsonl", doc = "```")]
#![cfg_attr(not(feature = "jsonl"), doc = "```ignore")]
//! use cdp_connectors::config::{ConnectorRegistry, SourceConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file: serde_json::Value = toml::from_str(
//!     r#"
//!     [sources.events]
//!     type = "jsonl"
//!     path = "data/events.jsonl"
//!     batch_size = 4096
//!
//!     [destinations.landing]
//!     type = "jsonl"
//!     root = "landing/"
//!     "#,
//! )?;
//! let registry = ConnectorRegistry::new();
//! let connectors = registry.parse_connectors(&file)?;
//! let source = connectors.sources["events"].build()?; // opens nothing yet
//! assert_eq!(source.name(), "jsonl");
//! assert_eq!(connectors.destinations["landing"].type_name(), "jsonl");
//!
//! // Every problem at once, each with its key path.
//! let file: serde_json::Value = toml::from_str(
//!     r#"
//!     [sources.events]
//!     type = "jsonl"
//!     path = "data/events.jsonl"
//!     batch_sise = 4096
//!
//!     [sources.orders]
//!     type = "jsonl"
//!     path = ""
//!     "#,
//! )?;
//! let errors = registry.parse_connectors(&file).unwrap_err();
//! let paths: Vec<&str> = errors.iter().map(|e| e.path()).collect();
//! assert_eq!(paths, ["sources.events.batch_sise", "sources.orders.path"]);
//!
//! // One table on its own, with serde: paths relative to it.
//! let error = toml::from_str::<SourceConfig>("type = \"jsonl\"\npath = \"x\"\nbatch_size = 0\n")
//!     .map_err(|e| e.to_string())
//!     .and_then(|config| config.validate().map_err(|e| e.to_string()))
//!     .unwrap_err();
//! assert_eq!(error, "batch_size: must be at least 1");
//! # Ok(()) }
//! ```

mod custom;
mod destination;
mod error;
mod registry;
mod source;
mod table;

pub use custom::CustomConfig;
pub use destination::{BuildDestination, CustomDestinationConfig, DestinationConfig};
pub use error::{ConfigError, ConfigErrors};
pub use registry::{ConnectorConfigs, ConnectorRegistry};
pub use source::{BuildSource, CustomSourceConfig, SourceConfig};
pub use table::from_table;

#[cfg(feature = "postgres")]
pub(crate) use error::key_segment;
#[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
pub(crate) use table::from_table_parts;
