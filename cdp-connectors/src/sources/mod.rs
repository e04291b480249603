//! Sources: JSONL, CSV and Parquet files (feature `files`), PostgreSQL (feature `postgres`).
//!
//! File sources:
//!
//! Each reads one file, or a directory of files (sorted by name) as one stream, and resumes
//! from a cursor of the form `{"files": {"a.jsonl": 123456}}`: the byte offset reached in
//! each JSONL or CSV file, the rows read from each Parquet file. Batches hold at most
//! `batch_size` rows and each is followed by a checkpoint covering exactly what was emitted
//! so far, dead letters included.

#[cfg(feature = "files")]
mod common;
#[cfg(feature = "files")]
pub mod csv;
#[cfg(feature = "files")]
mod engine;
#[cfg(feature = "files")]
pub mod jsonl;
#[cfg(feature = "files")]
pub mod parquet;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "files")]
mod schema;

#[cfg(feature = "files")]
pub use csv::{CsvSource, CsvSourceConfig};
#[cfg(feature = "files")]
pub use jsonl::{JsonlSource, JsonlSourceConfig};
#[cfg(feature = "files")]
pub use parquet::{ParquetSource, ParquetSourceConfig};
#[cfg(feature = "postgres")]
pub use postgres::{
    FullRefreshDeletes, PostgresColumn, PostgresSource, PostgresSourceConfig, PostgresStreamConfig,
    PostgresTable,
};
#[cfg(feature = "files")]
pub use schema::{ColumnConfig, ColumnType};
