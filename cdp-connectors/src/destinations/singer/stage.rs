//! Epochs staged on disk, as the Singer messages a target will be given.
//!
//! `{staging_dir}/{pipeline}/{destination}/pending-{run}.singer` collects the messages of
//! the epoch being written; `flush(epoch)` makes it durable and renames it
//! `epoch-{epoch:020}.singer` (atomic); once the pipeline committed the epoch, the file is
//! sent to the target and removed when the target confirmed it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use cdp_core::{Error, Result};

/// The staging directory of one destination of one pipeline.
#[derive(Debug)]
pub(crate) struct Stage {
    dir: PathBuf,
    run: String,
    pending: Option<BufWriter<File>>,
    /// Bytes in the pending file.
    written: u64,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::io(path.display().to_string(), e)
}

impl Stage {
    /// The directory `{root}/{pipeline}/{destination}`, created if missing; the files of
    /// runs that stopped before flushing are removed.
    pub(crate) fn open(root: &Path, pipeline: &str, destination: &str) -> Result<Stage> {
        let dir = root.join(safe(pipeline)).join(safe(destination));
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let stage = Stage {
            run: format!("{}-{nanos}", std::process::id()),
            dir,
            pending: None,
            written: 0,
        };
        for (name, path) in stage.entries()? {
            if name.starts_with("pending-") {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
            }
        }
        Ok(stage)
    }

    fn entries(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let entry = entry.map_err(|e| io(&self.dir, e))?;
            entries.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
        entries.sort();
        Ok(entries)
    }

    /// The staged epochs, in order.
    pub(crate) fn epochs(&self) -> Result<Vec<(u64, PathBuf)>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter_map(|(name, path)| {
                let epoch = name
                    .strip_prefix("epoch-")?
                    .strip_suffix(".singer")?
                    .parse()
                    .ok()?;
                Some((epoch, path))
            })
            .collect())
    }

    fn pending_path(&self) -> PathBuf {
        self.dir.join(format!("pending-{}.singer", self.run))
    }

    /// Whether nothing was written since the last flush.
    pub(crate) fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Appends `bytes` (whole lines) to the epoch being written.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if self.pending.is_none() {
            let path = self.pending_path();
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            self.pending = Some(BufWriter::with_capacity(256 * 1024, file));
        }
        let path = self.pending_path();
        if let Some(writer) = self.pending.as_mut() {
            writer.write_all(bytes).map_err(|e| io(&path, e))?;
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Makes what was written durable as epoch `epoch`; `false` if nothing was written.
    pub(crate) fn seal(&mut self, epoch: u64) -> Result<bool> {
        let Some(writer) = self.pending.take() else {
            return Ok(false);
        };
        let path = self.pending_path();
        let file = writer.into_inner().map_err(|e| io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| io(&path, e))?;
        drop(file);
        let sealed = self.dir.join(format!("epoch-{epoch:020}.singer"));
        std::fs::rename(&path, &sealed).map_err(|e| io(&sealed, e))?;
        self.sync_dir()?;
        self.written = 0;
        Ok(true)
    }

    /// Removes a staged epoch (delivered, or never committed).
    pub(crate) fn remove(&self, path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(path, e)),
        }
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io(&self.dir, e))
    }
}

/// A name usable as one path segment.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '/' | '\\' | '\0' => '_',
            c => c,
        })
        .collect::<String>()
        .replace("..", "__")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn epochs_are_sealed_listed_and_removed() {
        let root = crate::singer::process::Workdir::new().unwrap();
        let mut stage = Stage::open(root.path(), "p/1", "t").unwrap();
        assert!(stage.is_empty());
        assert!(!stage.seal(1).unwrap());
        stage.append(b"a\n").unwrap();
        assert!(!stage.is_empty());
        assert!(stage.seal(2).unwrap());
        stage.append(b"b\n").unwrap();
        let epochs = stage.epochs().unwrap();
        assert_eq!(epochs.len(), 1);
        assert_eq!(epochs[0].0, 2);
        assert_eq!(std::fs::read(&epochs[0].1).unwrap(), b"a\n");
        // A new run forgets what the last one had not flushed.
        drop(stage);
        let stage = Stage::open(root.path(), "p/1", "t").unwrap();
        let names: Vec<String> = stage
            .entries()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["epoch-00000000000000000002.singer"]);
        stage.remove(&epochs[0].1).unwrap();
        assert!(stage.epochs().unwrap().is_empty());
    }
}
