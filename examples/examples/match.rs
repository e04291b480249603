//! Probabilistic record linkage from the command line: deduplicate one CSV or link two,
//! with comparisons and blocking rules picked from the column names, u from random pairs,
//! m and the prior by EM, and scored pairs written to a CSV.
//!
//! ```text
//! cargo run --release --example match -- --left A.csv [--right B.csv] --id-column COL \
//!     [--truth PAIRS.csv | --cluster-column COL] [--threshold 0.5] --out links.csv
//! ```
//!
//! `--truth` is a CSV of true pairs (two id columns, header optional); `--cluster-column`
//! names a column whose equal values mark the same entity. With either, precision, recall
//! and F1 of the pairs at or above `--threshold` are printed (recall counts true pairs the
//! blocking never proposed as misses). All columns are read as text.
//!
//! Columns are recognised by name: given/first names (Jaro-Winkler), surname/last name
//! (Jaro-Winkler, blocked by soundex), dates of birth (date with swapped day/month,
//! blocked exactly), postcodes/zip (exact with term-frequency adjustment, blocked),
//! addresses, suburbs and cities (Jaro-Winkler), phone, ssn and other ids (Levenshtein),
//! age (numeric). Other columns are compared with Jaro-Winkler. A `--config` file is not
//! supported yet.

#![allow(clippy::print_stdout)]

use std::collections::HashSet;
use std::error::Error;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use cdp::arrow::array::{Array, RecordBatch, StringArray};
use cdp::arrow::datatypes::{DataType, Field, Schema};
use cdp::identity::probabilistic::{
    Blocking, BlockingKey, BlockingRule, Comparison, ComparisonKind, EmOptions, FellegiSunter,
    TermFrequencies, compare_all, probability, string_column,
};
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
    /// CSV of true pairs of ids.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// A column whose equal values mark the same entity (not compared).
    #[arg(long)]
    cluster_column: Option<String>,
    /// Pairs at or above this match probability are links.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Random pairs sampled to estimate u.
    #[arg(long, default_value_t = 100_000)]
    u_samples: usize,
    /// Where to write the links (left_id,right_id,match_weight,probability).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let start = Instant::now();
    let left = read_csv(&args.left)?;
    let right = args.right.as_ref().map(read_csv).transpose()?;
    let read = start.elapsed();

    let skip = [
        Some(args.id_column.as_str()),
        args.cluster_column.as_deref(),
    ];
    let mut comparisons = Vec::new();
    let mut rules = Vec::new();
    for field in left.schema().fields() {
        let name = field.name();
        if skip.contains(&Some(name.as_str()))
            || right
                .as_ref()
                .is_some_and(|r| r.schema().column_with_name(name).is_none())
        {
            continue;
        }
        let (comparison, rule) = pick(name);
        comparisons.push(comparison);
        rules.extend(rule);
    }
    if comparisons.is_empty() {
        return Err("no columns to compare".into());
    }
    if rules.is_empty() {
        return Err("no column suitable for blocking (surname, date of birth, postcode)".into());
    }
    for c in &comparisons {
        println!("compare {:<16} {:?}", c.column, c.kind);
    }

    let t = Instant::now();
    let blocking = Blocking::new(rules);
    let pairs = match &right {
        Some(r) => blocking.link(&left, r)?,
        None => blocking.dedupe(&left)?,
    };
    let blocked = t.elapsed();
    let rows_r = right
        .as_ref()
        .map_or(left.num_rows(), RecordBatch::num_rows);
    let cross = match &right {
        Some(_) => left.num_rows() as f64 * rows_r as f64,
        None => left.num_rows() as f64 * (left.num_rows() as f64 - 1.0) / 2.0,
    };
    println!(
        "candidate pairs: {} ({:.4}% of {cross}), per rule {:?}",
        pairs.len(),
        100.0 * pairs.len() as f64 / cross.max(1.0),
        pairs.per_rule
    );

    let t = Instant::now();
    let left_cols = comparisons
        .iter()
        .map(|c| string_column(&left, &c.column))
        .collect::<Result<Vec<_>, _>>()?;
    let right_cols = match &right {
        Some(r) => comparisons
            .iter()
            .map(|c| string_column(r, &c.column))
            .collect::<Result<Vec<_>, _>>()?,
        None => left_cols.clone(),
    };
    let cols: Vec<_> = left_cols.iter().zip(&right_cols).collect();
    let mut model = FellegiSunter::new(comparisons.clone())?;
    for (k, c) in comparisons.iter().enumerate() {
        if c.term_frequency {
            let tf = match &right {
                Some(_) => TermFrequencies::from_columns(&[&left_cols[k], &right_cols[k]]),
                None => TermFrequencies::from_columns(&[&left_cols[k]]),
            };
            model.set_term_frequencies(k, tf)?;
        }
    }
    model.estimate_u(
        &cols,
        left.num_rows(),
        right.as_ref().map(RecordBatch::num_rows),
        args.u_samples,
        1,
    )?;
    let levels = compare_all(&comparisons, &cols, &pairs.left, &pairs.right)?;
    let em = model.estimate_m(&levels, EmOptions::default())?;
    let tf_cols: Vec<Option<&StringArray>> = left_cols.iter().map(Some).collect();
    let weights = model.score(&levels, &tf_cols, &pairs.left)?;
    let scored = t.elapsed();
    println!(
        "EM: {} iterations, converged {}, {} patterns, prior λ = {:.5}",
        em.iterations, em.converged, em.patterns, model.lambda
    );

    let left_ids = string_column(&left, &args.id_column)?;
    let right_ids = match &right {
        Some(r) => string_column(r, &args.id_column)?,
        None => left_ids.clone(),
    };
    let mut out = BufWriter::new(std::fs::File::create(&args.out)?);
    writeln!(out, "left_id,right_id,match_weight,probability")?;
    let mut predicted = HashSet::new();
    let mut best: Option<usize> = None;
    for (i, w) in weights.iter().enumerate() {
        let p = probability(*w);
        if p < args.threshold {
            continue;
        }
        let a = left_ids.value(pairs.left[i] as usize);
        let b = right_ids.value(pairs.right[i] as usize);
        writeln!(out, "{},{},{w:.4},{p:.6}", csv_field(a), csv_field(b))?;
        predicted.insert(key(a, b, right.is_none()));
        if best.is_none_or(|j| weights[j] < *w) {
            best = Some(i);
        }
    }
    out.flush()?;
    println!(
        "links at p >= {}: {} written to {}",
        args.threshold,
        predicted.len(),
        args.out.display()
    );
    println!(
        "time: read {read:.2?}, blocking {blocked:.2?}, u + compare + EM + score {scored:.2?}, total {:.2?}",
        start.elapsed()
    );
    if let Some(i) = best {
        println!("\nstrongest link explained:");
        println!("{}", model.explain(&levels, &tf_cols, &pairs.left, i)?);
    }

    let truth = match (&args.truth, &args.cluster_column) {
        (Some(path), _) => Some(truth_pairs(path, right.is_none())?),
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

/// A comparison (and maybe a blocking rule) for a column, by its name.
fn pick(name: &str) -> (Comparison, Option<BlockingRule>) {
    let n = name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
    let jw = |t: Vec<f64>| ComparisonKind::JaroWinkler { thresholds: t };
    let exact_rule = || {
        Some(BlockingRule::single(BlockingKey::Exact {
            column: name.to_string(),
        }))
    };
    if has(&["surname", "last_name", "lastname", "family"]) {
        let rule = BlockingRule::single(BlockingKey::Soundex {
            column: name.to_string(),
        });
        (Comparison::new(name, jw(vec![0.92, 0.8])), Some(rule))
    } else if has(&["given", "first", "forename"]) {
        // A second name-based block catches pairs whose surname was mistyped.
        let rule = BlockingRule::single(BlockingKey::Soundex {
            column: name.to_string(),
        });
        (Comparison::new(name, jw(vec![0.92, 0.8])), Some(rule))
    } else if has(&["birth", "dob"]) {
        let kind = ComparisonKind::Date {
            tolerance_days: 365,
        };
        (Comparison::new(name, kind), exact_rule())
    } else if has(&["postcode", "zip", "postal"]) {
        let kind = ComparisonKind::Levenshtein {
            max_distances: vec![1],
        };
        (
            Comparison::new(name, kind).with_term_frequency(),
            exact_rule(),
        )
    } else if has(&["phone", "soc_sec", "ssn", "_id", "number", "email"]) {
        let kind = ComparisonKind::Levenshtein {
            max_distances: vec![1, 2],
        };
        // Strong ids also block: a pair with every name and date mistyped still shares one.
        let rule = has(&["soc_sec", "ssn", "email", "phone"])
            .then(exact_rule)
            .flatten();
        (Comparison::new(name, kind), rule)
    } else if has(&["age"]) {
        (
            Comparison::new(name, ComparisonKind::Numeric { tolerance: 2.0 }),
            None,
        )
    } else if has(&["state", "country", "gender", "sex"]) {
        (
            Comparison::new(name, ComparisonKind::Exact).with_term_frequency(),
            None,
        )
    } else {
        (Comparison::new(name, jw(vec![0.92, 0.8])), None)
    }
}

fn key(a: &str, b: &str, unordered: bool) -> (String, String) {
    if unordered && b < a {
        (b.to_string(), a.to_string())
    } else {
        (a.to_string(), b.to_string())
    }
}

fn truth_pairs(
    path: &PathBuf,
    unordered: bool,
) -> Result<HashSet<(String, String)>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = HashSet::new();
    for record in parse_csv(&text) {
        if let [a, b, ..] = record.as_slice() {
            out.insert(key(a, b, unordered));
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

/// Reads a CSV with a header into a batch of nullable UTF-8 columns (empty = null).
fn read_csv(path: &PathBuf) -> Result<RecordBatch, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut records = parse_csv(&text).into_iter();
    let header = records.next().ok_or("empty CSV")?;
    let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); header.len()];
    for record in records {
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        for (k, column) in columns.iter_mut().enumerate() {
            let v = record.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
            column.push(v.map(str::to_string));
        }
    }
    let schema = Arc::new(Schema::new(
        header
            .iter()
            .map(|h| Field::new(h.trim(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let arrays = columns
        .into_iter()
        .map(|c| Arc::new(StringArray::from(c)) as _)
        .collect();
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// RFC 4180 records: commas, double quotes with `""` escapes, CRLF or LF line ends.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
