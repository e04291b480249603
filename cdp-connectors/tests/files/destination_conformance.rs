//! The JSONL and Parquet landing-zone destinations pass the destination conformance harness:
//! staged per epoch, published on commit, every row (tombstones included) kept once.

use std::path::{Path, PathBuf};

use cdp_connectors::{JsonlDestination, ParquetDestination};
use cdp_core::Destination;
use cdp_testkit::conformance::{
    DestinationConformance, DestinationKind, DestinationUnderTest, Publishes, VisibleRows,
    check_destination,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A landing zone in a temporary directory; every instance is built the same way over it.
#[derive(Debug)]
struct LandingZone {
    root: PathBuf,
    build: fn(&Path) -> Box<dyn Destination>,
}

#[cdp_core::async_trait]
impl DestinationUnderTest for LandingZone {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Append
    }

    fn publishes(&self) -> Publishes {
        Publishes::OnCommit
    }

    async fn fresh(&mut self) -> Result<Box<dyn Destination>, String> {
        Ok((self.build)(&self.root))
    }

    /// Every published file of the stream, the way a reader of the landing zone finds them
    /// (the staging directory sits beside the stream folders, not in them).
    async fn visible(&self, stream: &str) -> Result<VisibleRows, String> {
        let mut files = Vec::new();
        collect(&self.root.join(stream), &mut files)?;
        let mut rows = VisibleRows::new();
        for file in files {
            match file.extension().and_then(|e| e.to_str()) {
                Some("jsonl") => {
                    let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
                    for line in text.lines() {
                        rows.push_json_text(line)?;
                    }
                }
                Some("parquet") => {
                    let handle = std::fs::File::open(&file).map_err(|e| e.to_string())?;
                    let reader = ParquetRecordBatchReaderBuilder::try_new(handle)
                        .and_then(|b| b.build())
                        .map_err(|e| format!("{}: {e}", file.display()))?;
                    for batch in reader {
                        rows.push_batch(batch.map_err(|e| e.to_string())?);
                    }
                }
                _ => return Err(format!("unexpected file {}", file.display())),
            }
        }
        Ok(rows)
    }
}

/// The files under `dir`, recursively; none if it does not exist yet.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

async fn check(build: fn(&Path) -> Box<dyn Destination>) -> DestinationConformance {
    let dir = tempfile::tempdir().unwrap();
    let mut zone = LandingZone {
        root: dir.path().join("landing"),
        build,
    };
    let report = check_destination(&mut zone)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Nothing is left staged once every epoch was published or discarded.
    let staging = zone.root.join("_staging");
    let mut left = Vec::new();
    collect(&staging, &mut left).unwrap();
    assert!(left.is_empty(), "left in staging: {left:?}");
    report
}

fn assert_passed(report: &DestinationConformance) {
    // Every step but the rejected rows: a landing zone takes any row of the schema.
    assert_eq!(report.steps.len(), 6, "{:?}", report.steps);
    assert_eq!(report.rejected_rows, 0);
    assert_eq!(report.visible_rows, 12);
}

#[tokio::test]
async fn jsonl_destination_conforms() {
    assert_passed(&check(|root| Box::new(JsonlDestination::new(root))).await);
}

#[tokio::test]
async fn jsonl_destination_with_a_file_per_write_conforms() {
    let build = |root: &Path| -> Box<dyn Destination> {
        Box::new(JsonlDestination::new(root).with_max_file_bytes(1))
    };
    assert_passed(&check(build).await);
}

#[tokio::test]
async fn parquet_destination_conforms() {
    assert_passed(&check(|root| Box::new(ParquetDestination::new(root))).await);
}

#[tokio::test]
async fn parquet_destination_with_a_file_per_write_conforms() {
    let build = |root: &Path| -> Box<dyn Destination> {
        Box::new(ParquetDestination::new(root).with_max_file_bytes(1))
    };
    assert_passed(&check(build).await);
}
