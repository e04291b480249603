//! Sources and destinations for `cdp` pipelines.
//!
//! Each connector is behind a cargo feature, so a build carries only the formats it uses:
//!
//! | feature | connectors | dependencies |
//! |---|---|---|
//! | `jsonl` | `JsonlSource`, `JsonlDestination` | arrow-json, memchr |
//! | `csv` | `CsvSource` | arrow-csv |
//! | `parquet` | `ParquetSource`, `ParquetDestination` | parquet |
//! | `files` (default) | all of the above | |
//! | `postgres` | `PostgresSource`, `PostgresDestination`, `PostgresStateStore` | cdp-postgres, tokio-postgres |
//! | `postgres-tls` | TLS for the PostgreSQL connections | rustls |
//! | `http` | `HttpSource`, `WebhookDestination` | reqwest (rustls, `ring`), hmac |
//! | `singer` | `SingerSource`, `SingerDestination` (Singer taps and targets as child processes) | flate2 |
//!
//! - The file sources read a file, or a directory of files as one stream, into Arrow
//!   batches. They resume from a per-file cursor (byte offset, or rows for Parquet),
//!   continue files that grew, and turn records they cannot decode into dead letters
//!   instead of failing the run.
//! - The landing-zone destinations write files laid out as
//!   `{root}/{stream}/dt=YYYY-MM-DD/part-{pipeline}-{epoch}-{seq}.{ext}`, staging each
//!   epoch's files and publishing them with atomic renames once the pipeline commits, so a
//!   crash and a resume leave every row exactly once.
//! - The PostgreSQL connectors: see [`postgres`](crate::postgres) (feature `postgres`).
//! - The HTTP connectors (feature `http`): a declarative source for SaaS REST APIs
//!   ([`sources::http`]) and a signed webhook destination ([`destinations::webhook`]);
//!   what they share is in [`http`].
//!
//! Each connector has a serde `*Config` (for configuration files) with `validate()` and a
//! `build()` that returns the boxed component, and a plain constructor for Rust code. The
//! configs are read from `[sources.<name>]` / `[destinations.<name>]` tables tagged by
//! `type` through a [`ConnectorRegistry`] a host can add its own types to, refusing unknown
//! keys and naming the key path of every problem: see [`config`].
//!
//! # Example
//!
//! Read a JSONL file (feature `jsonl`) and print what arrived:
//!
#![cfg_attr(feature = "jsonl", doc = "```")]
#![cfg_attr(not(feature = "jsonl"), doc = "```ignore")]
//! use cdp_connectors::JsonlSource;
//! use cdp_core::{ReadRequest, Source, SourceEvent};
//! use futures::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> cdp_core::Result<()> {
//! let dir = std::env::temp_dir().join(format!("cdp-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).map_err(|e| cdp_core::Error::io("temp dir", e))?;
//! let path = dir.join("signups.jsonl");
//! std::fs::write(&path, "{\"user\":\"ada\",\"plan\":\"pro\"}\nnot json\n{\"user\":\"bob\"}\n")
//!     .map_err(|e| cdp_core::Error::io("fixture", e))?;
//!
//! let source = JsonlSource::new(&path);
//! let catalog = source.discover().await?;
//! assert_eq!(catalog.streams[0].name, "signups");
//!
//! let mut events = source.read(ReadRequest::default())?;
//! let (mut rows, mut dead) = (0, Vec::new());
//! while let Some(event) = events.next().await {
//!     match event? {
//!         SourceEvent::Batch(batch) => rows += batch.num_rows(),
//!         SourceEvent::DeadLetter(letter) => dead.push(letter.position),
//!         _ => {}
//!     }
//! }
//! assert_eq!(rows, 2);
//! assert_eq!(dead, [Some("signups.jsonl:2".to_string())]);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

pub mod config;
#[cfg(any(feature = "jsonl", feature = "parquet", feature = "postgres"))]
pub mod destinations;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "singer")]
pub mod singer;
#[cfg(any(
    feature = "jsonl",
    feature = "csv",
    feature = "parquet",
    feature = "postgres"
))]
pub mod sources;

pub use config::{ConnectorRegistry, DestinationConfig, SourceConfig};
#[cfg(any(feature = "jsonl", feature = "parquet"))]
pub use destinations::LandingOptions;
#[cfg(feature = "jsonl")]
pub use destinations::{JsonlDestination, JsonlDestinationConfig, JsonlDestinationOptions};
#[cfg(feature = "parquet")]
pub use destinations::{
    ParquetCompression, ParquetDestination, ParquetDestinationConfig, ParquetDestinationOptions,
};
#[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
pub use sources::{ColumnConfig, ColumnType, FileSourceOptions};
#[cfg(feature = "csv")]
pub use sources::{CsvSource, CsvSourceConfig, CsvSourceOptions, DuplicateHeaders};
#[cfg(feature = "jsonl")]
pub use sources::{JsonlSource, JsonlSourceConfig, JsonlSourceOptions};
#[cfg(any(feature = "jsonl", feature = "csv"))]
pub use sources::{NewFields, TypeConflicts};
#[cfg(feature = "parquet")]
pub use sources::{ParquetSource, ParquetSourceConfig, ParquetSourceOptions};

#[cfg(feature = "postgres")]
pub use destinations::{PostgresDestination, PostgresDestinationConfig};
#[cfg(feature = "singer")]
pub use destinations::{SingerDestination, SingerDestinationConfig};
#[cfg(feature = "http")]
pub use destinations::{WebhookDestination, WebhookDestinationConfig};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresConnection, PostgresSslMode, PostgresStateStore};
#[cfg(feature = "postgres")]
pub use sources::{
    FullRefreshDeletes, PostgresSource, PostgresSourceConfig, PostgresStreamConfig, PostgresTable,
};
#[cfg(feature = "http")]
pub use sources::{HttpSource, HttpSourceConfig};
#[cfg(feature = "singer")]
pub use sources::{SingerSource, SingerSourceConfig};
