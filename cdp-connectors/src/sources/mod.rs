//! Sources: JSONL, CSV and Parquet files (features `jsonl`, `csv`, `parquet`; `files` for
//! all three), PostgreSQL (feature `postgres`).
//!
//! File sources:
//!
//! Each reads one file, or a directory of files (sorted by name) as one stream, and resumes
//! from a cursor of the form `{"files": {"a.jsonl": 123456}, "identity": {"a.jsonl": {…}}}`:
//! the byte offset reached in each JSONL or CSV file, the rows read from each Parquet file,
//! and a fingerprint of each file's version (its first bytes, the bytes before the offset,
//! device and inode), so that a file replaced, truncated or rotated under its name is read
//! from its start and a rotated one is read on under its new name, each version once; the
//! run report says what happened (see `file_identity`). Batches hold at most `batch_size`
//! rows and each is followed by a checkpoint covering exactly what was emitted so far, dead
//! letters included.

#[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
mod common;
#[cfg(feature = "csv")]
pub mod csv;
#[cfg(any(feature = "jsonl", feature = "csv"))]
mod engine;
#[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
mod file_config;
#[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
mod file_identity;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "jsonl")]
pub mod jsonl;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
mod schema;
#[cfg(any(feature = "jsonl", feature = "csv"))]
mod schemaless;
#[cfg(feature = "singer")]
pub mod singer;

#[cfg(feature = "csv")]
pub use csv::{CsvSource, CsvSourceConfig, CsvSourceOptions, DuplicateHeaders};
#[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
pub use file_config::{FileSourceConfig, FileSourceFormat, FileSourceOptions};
#[cfg(feature = "http")]
pub use http::{HttpSource, HttpSourceConfig, HttpSourceOptions, HttpStreamConfig};
#[cfg(feature = "jsonl")]
pub use jsonl::{JsonlSource, JsonlSourceConfig, JsonlSourceOptions};
#[cfg(feature = "parquet")]
pub use parquet::{ParquetSource, ParquetSourceConfig, ParquetSourceOptions};
#[cfg(feature = "postgres")]
pub use postgres::{
    FullRefreshDeletes, PostgresColumn, PostgresSource, PostgresSourceConfig, PostgresStreamConfig,
    PostgresTable,
};
#[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
pub use schema::{ColumnConfig, ColumnType};
#[cfg(any(feature = "jsonl", feature = "csv"))]
pub use schemaless::{DEFAULT_OVERFLOW_COLUMN, NewFields, TypeConflicts};
#[cfg(feature = "singer")]
pub use singer::{CatalogFlag, SingerSource, SingerSourceConfig};
