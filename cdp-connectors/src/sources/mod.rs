//! File sources: JSONL, CSV and Parquet.
//!
//! Each reads one file, or a directory of files (sorted by name) as one stream, and resumes
//! from a cursor of the form `{"files": {"a.jsonl": 123456}}`: the byte offset reached in
//! each JSONL or CSV file, the rows read from each Parquet file. Batches hold at most
//! `batch_size` rows and each is followed by a checkpoint covering exactly what was emitted
//! so far, dead letters included.

mod common;
pub mod csv;
mod engine;
pub mod jsonl;
pub mod parquet;
mod schema;

pub use csv::{CsvSource, CsvSourceConfig};
pub use jsonl::{JsonlSource, JsonlSourceConfig};
pub use parquet::{ParquetSource, ParquetSourceConfig};
pub use schema::{ColumnConfig, ColumnType};
