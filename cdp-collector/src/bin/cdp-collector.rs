//! `cdp-collector`: a Segment-compatible collector with a durable log, and optionally the
//! pipeline from that log into a Parquet landing zone.
//!
//! ```text
//! cdp-collector --listen 127.0.0.1:8088 --write-key KEY --data-dir DIR
//!               [--landing DIR] [--land-every 2]
//!               [--jetstream nats://127.0.0.1:4222 [--jetstream-stream CDP_EVENTS]
//!                [--jetstream-prefix segment]]          (feature `jetstream`)
//! ```
//!
//! The write key may come from `CDP_WRITE_KEY` instead (several keys comma-separated), so
//! it does not show in the process list. With `--landing`, every `--land-every` seconds a
//! pipeline reads what the log gained since its last commit into `DIR/<call type>/…`
//! (state in `DATA_DIR/state.db`, records it cannot read in `DATA_DIR/dead_letters`); on
//! SIGTERM or Ctrl-C the server stops taking requests, and a last run lands the rest.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cdp_collector::{Collector, EventLog, LogConfig, log_source};
use cdp_connectors::{JsonlDestination, ParquetDestination};
use cdp_core::{Pipeline, RunMode, SqliteStateStore, StateStore};
use clap::Parser;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
#[command(about = "A Segment-compatible event collector with a durable log")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// A write key clients must send (repeatable); or `CDP_WRITE_KEY`, comma-separated.
    #[arg(long = "write-key")]
    write_keys: Vec<String>,
    /// Where the log (and, with `--landing`, the pipeline's state) lives.
    #[arg(long)]
    data_dir: PathBuf,
    /// Land the log into this Parquet landing zone.
    #[arg(long)]
    landing: Option<PathBuf>,
    /// Seconds between landing runs.
    #[arg(long, default_value_t = 2)]
    land_every: u64,
    /// Keep the log in NATS JetStream at this URL instead of on disk (read it with a
    /// JetStream source; `--landing` needs the disk log).
    #[cfg(feature = "jetstream")]
    #[arg(long)]
    jetstream: Option<String>,
    /// The JetStream stream (created if missing).
    #[cfg(feature = "jetstream")]
    #[arg(long, default_value = "CDP_EVENTS")]
    jetstream_stream: String,
    /// Subject prefix: events go to `<prefix>.<call type>`.
    #[cfg(feature = "jetstream")]
    #[arg(long, default_value = "segment")]
    jetstream_prefix: String,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut keys = args.write_keys.clone();
    if let Ok(from_env) = std::env::var("CDP_WRITE_KEY") {
        keys.extend(
            from_env
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string),
        );
    }
    if keys.is_empty() {
        return Err("no write key: pass --write-key or set CDP_WRITE_KEY".into());
    }
    let log_dir = args.data_dir.join("log");
    let collector = open_collector(&args, keys, &log_dir).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "collector listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let lander = match &args.landing {
        Some(landing) => {
            let store: Arc<dyn StateStore> =
                Arc::new(SqliteStateStore::open(args.data_dir.join("state.db"))?);
            Some(tokio::spawn(land_loop(
                log_dir.clone(),
                landing.clone(),
                args.data_dir.join("dead_letters"),
                store,
                Duration::from_secs(args.land_every.max(1)),
                stop_rx,
            )))
        }
        None => None,
    };

    axum::serve(listener, collector.router())
        .with_graceful_shutdown(shutdown())
        .await?;
    tracing::info!("collector stopped taking requests");
    let _ = stop_tx.send(true);
    if let Some(lander) = lander {
        lander.await??;
    }
    Ok(())
}

#[cfg(feature = "jetstream")]
async fn open_collector(
    args: &Args,
    keys: Vec<String>,
    log_dir: &Path,
) -> Result<Collector, BoxError> {
    if let Some(url) = &args.jetstream {
        if args.landing.is_some() {
            return Err(
                "--landing reads the disk log; with --jetstream, land the stream with \
                        a JetStream source"
                    .into(),
            );
        }
        let log = cdp_collector::JetStreamLog::connect(
            url,
            &args.jetstream_stream,
            &args.jetstream_prefix,
            Duration::from_secs(24 * 3600),
        )
        .await?;
        return Ok(Collector::new(keys, log));
    }
    Ok(Collector::new(
        keys,
        EventLog::open(LogConfig::new(log_dir))?,
    ))
}

#[cfg(not(feature = "jetstream"))]
async fn open_collector(
    _args: &Args,
    keys: Vec<String>,
    log_dir: &Path,
) -> Result<Collector, BoxError> {
    Ok(Collector::new(
        keys,
        EventLog::open(LogConfig::new(log_dir))?,
    ))
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Lands the log every `every`, and once more after the stop signal.
async fn land_loop(
    log_dir: PathBuf,
    landing: PathBuf,
    dead_letters: PathBuf,
    store: Arc<dyn StateStore>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), BoxError> {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = stop.changed() => true,
        };
        if let Err(e) = land(&log_dir, &landing, &dead_letters, store.clone()).await {
            tracing::error!(error = %e, "landing run failed; the next run resumes from the last commit");
            if stopping {
                return Err(e);
            }
        }
        if stopping || *stop.borrow() {
            return Ok(());
        }
    }
}

async fn land(
    log_dir: &Path,
    landing: &Path,
    dead_letters: &Path,
    store: Arc<dyn StateStore>,
) -> Result<(), BoxError> {
    let source = log_source(log_dir);
    if source.parts().is_empty() {
        return Ok(());
    }
    let report = Pipeline::builder("cdp-collector")
        .source(source)
        .destination(ParquetDestination::new(landing).with_name("landing"))
        .dead_letter(JsonlDestination::new(dead_letters).with_name("dead_letters"))
        .state_store(store)
        .mode(RunMode::Batch)
        .build()?
        .run()
        .await?;
    let rows: u64 = report.streams.iter().map(|s| s.rows_in).sum();
    if rows > 0 {
        tracing::info!(rows, dead_letters = report.dead_letters, "landed");
    }
    Ok(())
}
