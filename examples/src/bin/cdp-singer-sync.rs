//! Runs a Singer tap into a Parquet landing zone, resuming from the tap state committed in
//! a SQLite state file. The Singer kill-and-resume test kills this process with SIGKILL
//! mid-run and runs it again.
//!
//! ```text
//! cdp-singer-sync --tap tap-jsonl --config tap-config.json --out landing --state state.db
//!                 [--batch-size 1000] [--commit-rows 1000]
//! cdp-singer-sync --state state.db --print-state     # the committed cursors, as JSON
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cdp::connectors::{ParquetDestination, SingerSource};
use cdp::{Pipeline, RunMode, SqliteStateStore, StateStore};
use clap::Parser;

/// The pipeline id, shared by every run on one state file.
const PIPELINE: &str = "singer-sync";

/// Singer-tap-to-landing-zone sync with checkpoints.
#[derive(Debug, Parser)]
struct Args {
    /// The tap: a path, or a program on PATH.
    #[arg(long, required_unless_present = "print_state")]
    tap: Option<String>,
    /// The tap's config file.
    #[arg(long, required_unless_present = "print_state")]
    config: Option<PathBuf>,
    /// Landing zone root.
    #[arg(long, required_unless_present = "print_state")]
    out: Option<PathBuf>,
    /// SQLite state file.
    #[arg(long)]
    state: PathBuf,
    /// Rows per batch read from the tap, per stream.
    #[arg(long, default_value_t = 1_000)]
    batch_size: usize,
    /// Rows between commits (at the tap's next state).
    #[arg(long, default_value_t = 1_000)]
    commit_rows: usize,
    /// Print the committed cursors as JSON and exit.
    #[arg(long)]
    print_state: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    match sync().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cdp-singer-sync: {error}");
            ExitCode::FAILURE
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
    let store = Arc::new(SqliteStateStore::open(&args.state)?);
    if args.print_state {
        let state = store.load(PIPELINE).await?;
        // The binary's output, for the test that reads it.
        #[allow(clippy::print_stdout)]
        {
            println!("{}", serde_json::to_string(&state)?);
        }
        return Ok(());
    }
    let (Some(tap), Some(config), Some(out)) = (args.tap, args.config, args.out) else {
        return Err("--tap, --config and --out are required".into());
    };
    let source = SingerSource::new(tap)
        .with_config_file(config)
        .with_batch_size(args.batch_size);
    let report = Pipeline::builder(PIPELINE)
        .source(source)
        .destination(ParquetDestination::new(&out))
        .state_store(store)
        .mode(RunMode::Batch)
        .commit_every_rows(args.commit_rows)
        .build()?
        .run()
        .await?;
    eprintln!("{report}");
    Ok(())
}
