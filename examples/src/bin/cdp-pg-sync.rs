//! Syncs one PostgreSQL table into another schema (or database), incrementally by a cursor
//! column or by full refresh, keeping its checkpoints in a PostgreSQL state table. The
//! crash-and-resume test kills this process with SIGKILL at random points and runs it
//! again.
//!
//! ```text
//! cdp-pg-sync --url postgres://postgres@127.0.0.1/test --source-schema crm --table orders \
//!     --dest-schema warehouse [--cursor updated_at] [--batch-size 2000]
//! ```

use std::sync::Arc;

use cdp::connectors::{
    PostgresConnection, PostgresDestination, PostgresSourceConfig, PostgresStateStore,
    PostgresStreamConfig,
};
use cdp::{Pipeline, RunMode, SyncMode};
use clap::Parser;

/// PostgreSQL table to PostgreSQL table, with checkpoints.
#[derive(Debug, Parser)]
struct Args {
    /// Connection URL of the source (and, unless `--dest-url`, of the destination and state).
    #[arg(long)]
    url: String,
    /// Connection URL of the destination and the state table.
    #[arg(long)]
    dest_url: Option<String>,
    /// Schema of the source table.
    #[arg(long, default_value = "public")]
    source_schema: String,
    /// The table to sync.
    #[arg(long)]
    table: String,
    /// Schema the copy is written to (created if missing).
    #[arg(long)]
    dest_schema: String,
    /// Cursor column for incremental sync; without it, full refresh.
    #[arg(long)]
    cursor: Option<String>,
    /// Rows per batch read from the source.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    /// Rows per source query.
    #[arg(long, default_value_t = 100_000)]
    page_size: usize,
    /// Rows between commits.
    #[arg(long, default_value_t = 100_000)]
    commit_rows: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let source_connection = PostgresConnection::url(&args.url).with_application_name("cdp-pg-sync");
    let dest_connection = PostgresConnection::url(args.dest_url.as_deref().unwrap_or(&args.url))
        .with_application_name("cdp-pg-sync");
    let stream = match &args.cursor {
        Some(cursor) => PostgresStreamConfig::cursor(cursor),
        None => PostgresStreamConfig::default().with_sync_mode(SyncMode::FullRefresh),
    };
    let source = PostgresSourceConfig::new(source_connection)
        .with_schema(&args.source_schema)
        .with_tables([args.table.clone()])
        .with_stream(args.table.clone(), stream)
        .with_batch_size(args.batch_size)
        .with_page_size(args.page_size)
        .build_source()?;
    let store = PostgresStateStore::new(dest_connection.clone())
        .with_table(&args.dest_schema, "cdp_pipeline_state");
    let destination = PostgresDestination::new(dest_connection).with_schema(&args.dest_schema);
    let report = Pipeline::builder(format!("pg-sync-{}-{}", args.source_schema, args.table))
        .source(source)
        .destination(destination)
        .state_store(Arc::new(store))
        .mode(RunMode::Batch)
        .commit_every_rows(args.commit_rows)
        .build()?
        .run()
        .await?;
    eprintln!("{report}");
    Ok(())
}
