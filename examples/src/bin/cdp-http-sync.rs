//! Syncs two streams of a SaaS-style REST API (customers paged by next-page URL and read
//! incrementally; events per account, paged by offset) into a JSONL landing zone,
//! resuming from the checkpoint in a SQLite state file. The crash-and-resume test kills
//! this process with SIGKILL at random points and runs it again.
//!
//! ```text
//! cdp-http-sync --base-url http://127.0.0.1:8080 --key-file key.txt --out landing --state state.db
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use cdp::connectors::{HttpSourceConfig, JsonlDestination};
use cdp::{Pipeline, RunMode, SqliteStateStore};
use clap::Parser;

/// REST API to landing-zone sync with checkpoints.
#[derive(Debug, Parser)]
struct Args {
    /// The API's root URL.
    #[arg(long)]
    base_url: String,
    /// A file holding the API key (sent as a bearer token).
    #[arg(long)]
    key_file: PathBuf,
    /// Landing zone root.
    #[arg(long)]
    out: PathBuf,
    /// SQLite state file.
    #[arg(long)]
    state: PathBuf,
    /// Records per page.
    #[arg(long, default_value_t = 20)]
    page_size: u64,
    /// Requests per second at most.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Rows between commits.
    #[arg(long, default_value_t = 200)]
    commit_rows: usize,
}

fn config(args: &Args) -> Result<HttpSourceConfig, Box<dyn std::error::Error>> {
    let text = format!(
        r#"
name = "saas"
base_url = "{base_url}"
auth = {{ type = "bearer", token = {{ file = "{key}" }} }}
rate_limit = {{ per_second = {rate}, burst = 1 }}
retry = {{ max_attempts = 10, initial_delay = 10, max_delay = 200 }}

[[streams]]
name = "customers"
path = "/items/next"
records = "/items"
primary_key = ["id"]
page_size = {{ param = "limit", size = {size} }}
paginate = {{ type = "next_url", pointer = "/next" }}
incremental = {{ cursor_field = "/updated", param = "updated_since" }}

[[streams]]
name = "events"
path = "/accounts/{{account}}/events"
records = "/items"
partitions = [{{ account = "eu" }}, {{ account = "us" }}]
page_size = {{ param = "limit", size = {size} }}
paginate = {{ type = "offset" }}
incremental = {{ cursor_field = "/updated", param = "updated_since" }}
"#,
        base_url = args.base_url,
        key = args.key_file.display(),
        rate = args.rate,
        size = args.page_size,
    );
    let table: serde_json::Value = toml::from_str(&text)?;
    Ok(HttpSourceConfig::from_table(&table)?)
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
    let store = Arc::new(SqliteStateStore::open(&args.state)?);
    let source = config(&args)?
        .build_source()?
        // A rotated OAuth refresh token would be kept beside the checkpoints.
        .with_state_store(store.clone(), "http-sync");
    let report = Pipeline::builder("http-sync")
        .source(source)
        .destination(JsonlDestination::new(&args.out))
        .dead_letter(
            JsonlDestination::new(args.out.join("_dead_letters")).with_name("dead_letters"),
        )
        .state_store(store)
        .mode(RunMode::Batch)
        .commit_every_rows(args.commit_rows)
        .build()?
        .run()
        .await?;
    eprintln!("{report}");
    Ok(())
}
