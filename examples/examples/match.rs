//! Probabilistic record linkage from the command line: deduplicate one CSV or link two,
//! with a Fellegi–Sunter model (u from random pairs, m and the prior by EM), and scored
//! pairs written to a CSV.
//!
//! ```text
//! cargo run --release --example match -- --left A.csv [--right B.csv] --id-column COL \
//!     [--config match.toml] [--truth PAIRS.csv | --cluster-column COL] \
//!     [--threshold 0.5] --out links.csv
//! ```
//!
//! Without `--config`, comparisons and blocking rules are picked from the column names
//! (see `MatchSettings::infer`); `--print-config` prints what was picked as TOML, a
//! starting point for a config of your own (`examples/match/people.toml` is a commented
//! one). `--truth` is a CSV of true pairs (two id
//! columns, header optional); `--cluster-column` names a column whose equal values mark the
//! same entity. With either, precision, recall and F1 of the pairs at or above
//! `--threshold` are printed (recall counts true pairs the blocking never proposed as
//! misses). All columns are read as text; empty values are null.

#![allow(clippy::print_stdout)]

use std::collections::HashSet;
use std::error::Error;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cdp::arrow::array::{Array, RecordBatch, StringArray};
use cdp::arrow::datatypes::{DataType, Field, Schema};
use cdp::identity::probabilistic::{MatchSettings, string_column};
use clap::Parser;

/// Deduplicates or links CSV files with a Fellegi–Sunter model.
#[derive(Debug, Parser)]
struct Args {
    /// The (left) CSV file.
    #[arg(long)]
    left: PathBuf,
    /// A second CSV file to link against; without it the left file is deduplicated.
    #[arg(long)]
    right: Option<PathBuf>,
    /// The record id column (not compared).
    #[arg(long)]
    id_column: String,
    /// Match settings (comparisons, blocking rules, thresholds) in TOML; without it they
    /// are picked from the column names.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the settings used, as TOML.
    #[arg(long)]
    print_config: bool,
    /// CSV of true pairs of ids.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// A column whose equal values mark the same entity (not compared).
    #[arg(long)]
    cluster_column: Option<String>,
    /// Pairs at or above this match probability are links (default: the settings'
    /// review threshold, 0.5 unless configured).
    #[arg(long)]
    threshold: Option<f64>,
    /// Random pairs sampled to estimate u (overrides the settings).
    #[arg(long)]
    u_samples: Option<usize>,
    /// Where to write the links (left_id,right_id,match_weight,match_probability).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let start = Instant::now();
    let left = read_csv(&args.left)?;
    let right = args.right.as_ref().map(read_csv).transpose()?;
    let read = start.elapsed();

    let mut settings = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str::<MatchSettings>(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => {
            let schema = left.schema();
            let mut skip = vec![args.id_column.as_str()];
            skip.extend(args.cluster_column.as_deref());
            // Linking compares only the columns both files have.
            if let Some(r) = &right {
                for field in schema.fields() {
                    if r.schema().column_with_name(field.name()).is_none() {
                        skip.push(field.name());
                    }
                }
            }
            MatchSettings::infer(&schema, &skip)?
        }
    };
    if let Some(n) = args.u_samples {
        settings.u_samples = n;
    }
    if args.print_config {
        println!("{}", toml::to_string_pretty(&settings)?);
    }
    for c in &settings.comparisons {
        println!("compare {:<16} {:?}", c.column, c.kind);
    }

    let run = match &right {
        Some(r) => settings.link(&left, r)?,
        None => settings.dedupe(&left)?,
    };
    let rows_r = right
        .as_ref()
        .map_or(left.num_rows(), RecordBatch::num_rows);
    let cross = match &right {
        Some(_) => left.num_rows() as f64 * rows_r as f64,
        None => left.num_rows() as f64 * (left.num_rows() as f64 - 1.0) / 2.0,
    };
    println!(
        "candidate pairs: {} ({:.4}% of {cross}), new per rule {:?}",
        run.len(),
        100.0 * run.len() as f64 / cross.max(1.0),
        run.pairs.per_rule
    );
    println!(
        "EM: {} iterations, converged {}, {} patterns, prior λ = {:.5}",
        run.em.iterations, run.em.converged, run.em.patterns, run.model.lambda
    );

    let left_ids = string_column(&left, &args.id_column)?;
    let right_ids = match &right {
        Some(r) => string_column(r, &args.id_column)?,
        None => left_ids.clone(),
    };
    let threshold = args.threshold.unwrap_or(settings.thresholds.review);
    let links = run.to_record_batch(&left_ids, &right_ids, threshold)?;
    let mut writer = arrow_csv::WriterBuilder::new()
        .with_header(true)
        .build(File::create(&args.out)?);
    writer.write(&links)?;
    drop(writer);
    let unordered = right.is_none();
    let predicted: HashSet<(String, String)> = run
        .above(threshold)
        .map(|i| {
            key(
                left_ids.value(run.pairs.left[i] as usize),
                right_ids.value(run.pairs.right[i] as usize),
                unordered,
            )
        })
        .collect();
    println!(
        "links at p >= {threshold}: {} written to {}",
        links.num_rows(),
        args.out.display()
    );
    let t = run.timings;
    println!(
        "time: read {read:.2?}, blocking {:.2?}, u {:.2?}, compare {:.2?}, EM {:.2?}, \
         score {:.2?}, total {:.2?}",
        t.blocking,
        t.u,
        t.compare,
        t.em,
        t.score,
        start.elapsed()
    );
    let best = run
        .above(threshold)
        .max_by(|&a, &b| run.weights[a].total_cmp(&run.weights[b]));
    if let Some(i) = best {
        println!("\nstrongest link explained:");
        println!("{}", run.explain(i)?);
    }

    let truth = match (&args.truth, &args.cluster_column) {
        (Some(path), _) => Some(truth_pairs(path, unordered, &left_ids, &right_ids)?),
        (None, Some(column)) => Some(cluster_pairs(
            &left,
            right.as_ref(),
            &left_ids,
            &right_ids,
            column,
        )?),
        (None, None) => None,
    };
    if let Some(truth) = truth {
        let tp = predicted.intersection(&truth).count() as f64;
        let precision = tp / (predicted.len() as f64).max(1.0);
        let recall = tp / (truth.len() as f64).max(1.0);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        println!(
            "\ntrue pairs {}, predicted {}, correct {tp}\nprecision {precision:.4}  recall {recall:.4}  F1 {f1:.4}",
            truth.len(),
            predicted.len()
        );
    }
    Ok(())
}

fn key(a: &str, b: &str, unordered: bool) -> (String, String) {
    if unordered && b < a {
        (b.to_string(), a.to_string())
    } else {
        (a.to_string(), b.to_string())
    }
}

/// True pairs from a CSV of two id columns. Rows naming an id that is in neither file
/// (a header line, for one) are skipped.
fn truth_pairs(
    path: &PathBuf,
    unordered: bool,
    left_ids: &StringArray,
    right_ids: &StringArray,
) -> Result<HashSet<(String, String)>, Box<dyn Error>> {
    let known: HashSet<&str> = left_ids.iter().chain(right_ids.iter()).flatten().collect();
    let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Utf8, true),
    ]));
    let reader = arrow_csv::ReaderBuilder::new(schema)
        .with_header(false)
        .with_truncated_rows(true)
        .build(file)?;
    let mut out = HashSet::new();
    for batch in reader {
        let batch = batch?;
        let (a, b) = (string_column(&batch, "a")?, string_column(&batch, "b")?);
        for (a, b) in a.iter().zip(b.iter()) {
            if let (Some(a), Some(b)) = (a.map(str::trim), b.map(str::trim))
                && known.contains(a)
                && known.contains(b)
            {
                out.insert(key(a, b, unordered));
            }
        }
    }
    Ok(out)
}

/// All pairs of records that share a cluster id.
fn cluster_pairs(
    left: &RecordBatch,
    right: Option<&RecordBatch>,
    left_ids: &StringArray,
    right_ids: &StringArray,
    column: &str,
) -> Result<HashSet<(String, String)>, Box<dyn Error>> {
    use std::collections::HashMap;
    let lc = string_column(left, column)?;
    let mut clusters: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
    for i in 0..lc.len() {
        if lc.is_valid(i) {
            let entry = clusters.entry(lc.value(i).to_string()).or_default();
            entry.0.push(left_ids.value(i).to_string());
        }
    }
    if let Some(r) = right {
        let rc = string_column(r, column)?;
        for i in 0..rc.len() {
            if rc.is_valid(i) {
                let entry = clusters.entry(rc.value(i).to_string()).or_default();
                entry.1.push(right_ids.value(i).to_string());
            }
        }
    }
    let mut out = HashSet::new();
    for (ls, rs) in clusters.values() {
        if right.is_some() {
            for a in ls {
                for b in rs {
                    out.insert(key(a, b, false));
                }
            }
        } else {
            for (i, a) in ls.iter().enumerate() {
                for b in &ls[i + 1..] {
                    out.insert(key(a, b, true));
                }
            }
        }
    }
    Ok(out)
}

/// Reads a CSV with a header into a batch of nullable UTF-8 columns (empty = null), so
/// that postcodes keep their leading zeros and ids stay text.
fn read_csv(path: &PathBuf) -> Result<RecordBatch, Box<dyn Error>> {
    let open = || File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let format = arrow_csv::reader::Format::default().with_header(true);
    let (header, _) = format.infer_schema(open()?, Some(0))?;
    let schema = Arc::new(Schema::new(
        header
            .fields()
            .iter()
            .map(|f| Field::new(f.name().trim(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow_csv::ReaderBuilder::new(schema.clone())
        .with_format(format)
        .with_batch_size(64 * 1024)
        .build(open()?)?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(cdp::arrow::compute::concat_batches(&schema, &batches)?)
}
