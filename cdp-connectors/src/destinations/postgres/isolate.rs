//! Per-row isolation: when PostgreSQL refuses a flush for its data (a value, a constraint),
//! find the rows it refuses and land the rest, in the same transaction.
//!
//! The flush runs as before, with no extra statement: isolation costs nothing while no row
//! is refused. When the server refuses the flush for what is in it (see
//! [`RowRefusal`]), that transaction is rolled back and a new one applies each stream's
//! rows in halves, each half under a savepoint, splitting only the halves PostgreSQL
//! refuses, until each refused row stands alone: it is refused with PostgreSQL's message
//! and SQLSTATE, everything else is merged exactly as the flush would have merged it, and
//! the transaction commits the lot. A batch with `k` refused rows among `n` takes about
//! `2·k·log2(n)` small attempts.
//!
//! Rows after the first refused one are not lost, and a rerun never meets the refused rows
//! again: they are dead letters, committed with the epoch like every other row.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use cdp_core::destination::RefusedRow;
use cdp_core::{Error, Result};
use cdp_postgres::{RowRefusal, pg_error};
use tokio_postgres::Transaction;

use super::{Failure, Plan, copy_rows};

/// The savepoint each attempt runs under.
const SAVEPOINT: &str = "cdp_isolate";

/// Rows of one stream's flush: `(batch, row)`, in arrival order.
type Rows = Vec<(usize, usize)>;

/// Applies the streams' `plans` in `tx`, isolating the rows PostgreSQL refuses; returns
/// them. Fails (with nothing applied) on any other error, on a refusal no single row
/// explains, or when more than `max_refused` rows are refused: then the trouble is the
/// table, not a few rows.
pub(super) async fn apply(
    tx: &Transaction<'_>,
    plans: &[(Plan, &str, String)],
    by_stream: &HashMap<&str, Vec<&RecordBatch>>,
    connector: &str,
    max_refused: usize,
) -> Result<Vec<RefusedRow>> {
    let mut refused = Vec::new();
    for (plan, stream, table) in plans {
        let batches = &by_stream[stream];
        tx.batch_execute(&plan.create_staging)
            .await
            .map_err(|e| pg_error(connector, format!("create staging table for {stream}"), e))?;
        let rows: Rows = batches
            .iter()
            .zip(&plan.keep)
            .enumerate()
            .flat_map(|(b, (batch, keep))| {
                (0..batch.num_rows())
                    .filter(move |&i| keep.as_ref().is_none_or(|k| k[i]))
                    .map(move |i| (b, i))
            })
            .collect();
        // Halves still to try, the first half on top.
        let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
        pending.push(0..rows.len());
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            match attempt(tx, plan, batches, &rows[range.clone()], stream, connector).await {
                Ok(()) => {}
                Err(Failure::Rows(refusal)) if range.len() == 1 => {
                    let (b, i) = rows[range.start];
                    refused.push(RefusedRow {
                        stream: stream.to_string(),
                        row: cdp_core::event::row_to_json(batches[b], i),
                        reason: format!("PostgreSQL refused the row: {refusal}"),
                        position: Some(format!("table {table}")),
                    });
                    if refused.len() > max_refused {
                        return Err(Error::external(
                            connector,
                            format!(
                                "PostgreSQL refused more than {max_refused} rows of one flush \
                                 (the last: {refusal}); that looks like a problem with table \
                                 {table}, not with a few rows, so nothing of the flush was \
                                 written"
                            ),
                        ));
                    }
                }
                Err(Failure::Rows(_)) => {
                    let middle = range.start + range.len() / 2;
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
                Err(Failure::Other(e)) => return Err(e),
            }
        }
    }
    Ok(refused)
}

/// Copies `rows` into the stream's (empty) staging table and merges them, under a
/// savepoint that is rolled back if PostgreSQL refuses them, leaving the staging table
/// empty either way.
async fn attempt(
    tx: &Transaction<'_>,
    plan: &Plan,
    batches: &[&RecordBatch],
    rows: &[(usize, usize)],
    stream: &str,
    connector: &str,
) -> Result<(), Failure> {
    let statement =
        |what: &str, e| Failure::Other(pg_error(connector, format!("{what} ({stream})"), e));
    tx.batch_execute(&format!("SAVEPOINT {SAVEPOINT}"))
        .await
        .map_err(|e| statement("savepoint", e))?;
    let mut keep: Vec<Option<Vec<bool>>> = batches
        .iter()
        .map(|batch| Some(vec![false; batch.num_rows()]))
        .collect();
    for &(b, i) in rows {
        if let Some(mask) = keep[b].as_mut() {
            mask[i] = true;
        }
    }
    let applied = async {
        copy_rows(tx, &plan.copy, plan, batches, &keep, stream, connector).await?;
        tx.batch_execute(&format!("{};\n{}", plan.merge, plan.truncate_staging))
            .await
            .map_err(|e| Failure::of(connector, format!("merge rows of {stream}"), e))
    }
    .await;
    match applied {
        Ok(()) => tx
            .batch_execute(&format!("RELEASE SAVEPOINT {SAVEPOINT}"))
            .await
            .map_err(|e| statement("release savepoint", e)),
        Err(Failure::Rows(refusal)) => {
            tx.batch_execute(&format!(
                "ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}"
            ))
            .await
            .map_err(|e| statement("rollback to savepoint", e))?;
            Err(Failure::Rows(refusal))
        }
        Err(other) => Err(other),
    }
}

/// Why a refusal at commit cannot be isolated.
pub(super) fn refused_at_commit(connector: &str, table: &str, refusal: &RowRefusal) -> Error {
    Error::external(
        connector,
        format!(
            "PostgreSQL refused the flush at commit ({refusal}), as a deferred constraint \
             does, after every row had gone through on its own: rows cannot be told apart \
             there, so nothing of the flush was written (tables: {table})"
        ),
    )
}
