//! Syncs a JSONL file or folder into a JSONL or Parquet landing zone, resuming from the
//! checkpoint in a SQLite state file. The crash-and-resume tests kill this process with
//! SIGKILL at random points and run it again; the overlap tests start two at once.
//!
//! ```text
//! cdp-file-sync --input events.jsonl --out landing --state state.db [--format parquet]
//!               [--lease-wait 60]
//! ```
//!
//! Only one run of the pipeline works on a state file at a time (its lease): a second one
//! started meanwhile waits up to `--lease-wait` seconds for the first to end, then does
//! what is left, or exits with status 3 and says who holds the lease.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cdp::connectors::{JsonlDestination, JsonlSource, ParquetDestination};
use cdp::{Pipeline, RunMode, SqliteStateStore};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Jsonl,
    Parquet,
}

/// File-to-landing-zone sync with checkpoints.
#[derive(Debug, Parser)]
struct Args {
    /// JSONL file or folder of JSONL files.
    #[arg(long)]
    input: PathBuf,
    /// Landing zone root.
    #[arg(long)]
    out: PathBuf,
    /// SQLite state file.
    #[arg(long)]
    state: PathBuf,
    /// Landing zone format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Rows per batch read from the source.
    #[arg(long, default_value_t = 8_192)]
    batch_size: usize,
    /// Rows between commits.
    #[arg(long, default_value_t = 100_000)]
    commit_rows: usize,
    /// Stream name.
    #[arg(long, default_value = "events")]
    stream: String,
    /// Seconds to wait for another run of the same pipeline (same state file) to end.
    #[arg(long, default_value_t = 0)]
    lease_wait: u64,
}

/// Exit status when another run holds the pipeline's lease.
const ALREADY_RUNNING: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    match sync().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cdp-file-sync: {error}");
            let leased = matches!(
                error.downcast_ref::<cdp::Error>(),
                Some(cdp::Error::Pipeline { source, .. }) if matches!(**source, cdp::Error::Leased { .. })
            );
            ExitCode::from(if leased { ALREADY_RUNNING } else { 1 })
        }
    }
}

async fn sync() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let source = JsonlSource::new(&args.input)
        .with_stream(args.stream.clone())
        .with_batch_size(args.batch_size);
    let builder = Pipeline::builder(format!("file-sync-{}", args.stream))
        .source(source)
        .state_store(Arc::new(SqliteStateStore::open(&args.state)?))
        .mode(RunMode::Batch)
        .commit_every_rows(args.commit_rows)
        .lease_wait(Duration::from_secs(args.lease_wait))
        .dead_letter(
            JsonlDestination::new(args.out.join("_dead_letters")).with_name("dead_letters"),
        );
    let builder = match args.format {
        Format::Jsonl => builder.destination(JsonlDestination::new(&args.out)),
        Format::Parquet => builder.destination(ParquetDestination::new(&args.out)),
    };
    let report = builder.build()?.run().await?;
    eprintln!("{report}");
    Ok(())
}
