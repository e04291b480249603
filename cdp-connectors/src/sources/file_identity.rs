//! Which file is which: the identity of each file version in a file source's cursor.
//!
//! A cursor that only said "`events.jsonl`, byte 5123" trusted the name: a file replaced
//! under it, truncated, or rotated away and recreated was read from the old position,
//! losing or repeating rows without a word. So, as log shippers do (Filebeat's and Vector's
//! fingerprints), the cursor also keeps, per file, a fingerprint of the version it read:
//!
//! - `head`: a hash of the file's first bytes (up to [`HEAD_BYTES`]), which an appended
//!   file keeps and a different file almost never shares;
//! - `tail`: for byte positions, a hash of the [`TAIL_BYTES`] just before the position,
//!   so a file rewritten with the same start but other content up to there is caught too;
//! - `len`: for row positions (Parquet, whose files are written once), the file's size;
//! - `dev`/`ino`: the device and inode, where the platform has them, which tell a renamed
//!   file (same inode) from a copy.
//!
//! Before reading, every listed file is matched with the cursor ([`resolve`]):
//!
//! 1. A file whose fingerprint matches the entry under its own name is the same file, read
//!    on from its position (it may have grown).
//! 2. An entry whose file is gone or is now another version is looked for among the files
//!    that matched nothing: one that starts with the same bytes (and, for byte positions,
//!    is at least as long and has the same bytes before the position) is that version
//!    under a new name — rotated by rename (the same inode) or by copy (copytruncate) — and
//!    is read on from the entry's position.
//! 3. Every other file is a version never read: it is read from its start. When its name
//!    had an entry, the file was replaced or truncated under it, and the run report says so.
//!
//! Each version is so read once from its start to its end, whatever happened to its name.
//! Entries of files that are gone and continue nowhere are forgotten. Cursors written
//! before identities were kept (`{"files": {"a.jsonl": 123}}`, or one edited by hand with
//! its identity removed) trust the name, as before, except that a file shorter than its
//! position is read again from its start instead of being skipped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use cdp_core::{Error, Result};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// Bytes of a file's start its fingerprint covers (what Filebeat and Vector take too).
pub(crate) const HEAD_BYTES: u64 = 1024;
/// Bytes before a byte position the fingerprint covers.
pub(crate) const TAIL_BYTES: u64 = 64;

/// What a file source's positions count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Positions {
    /// Byte offsets into files that grow by appends (JSONL, CSV).
    Bytes,
    /// Rows read from files written once (Parquet).
    Rows,
}

impl Positions {
    fn unit(self) -> &'static str {
        match self {
            Positions::Bytes => "byte",
            Positions::Rows => "row",
        }
    }
}

/// The fingerprint of one version of a file, kept in the cursor beside its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileIdentity {
    /// Hash (xxh3, hex) of the first `head_len` bytes.
    head: String,
    /// How many bytes `head` covers: [`HEAD_BYTES`], or the whole file when it was shorter.
    head_len: u64,
    /// Hash of the bytes before the position ([`TAIL_BYTES`], or fewer at a file's start);
    /// byte positions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<String>,
    /// The file's size; row positions only (such files never change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    len: Option<u64>,
    /// Device, where the platform reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev: Option<u64>,
    /// Inode, where the platform reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ino: Option<u64>,
}

impl FileIdentity {
    /// Sets the tail hash for byte position `position` of `file`, read from the open `file`.
    pub(crate) fn set_tail(&mut self, file: &mut File, position: u64) -> std::io::Result<()> {
        let start = position.saturating_sub(TAIL_BYTES);
        self.tail = hash_range(file, start, position - start)?.map(hex);
        Ok(())
    }
}

fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}

/// The hash of `len` bytes of `file` from `start`; `None` if the file ends before.
fn hash_range(file: &mut File, start: u64, len: u64) -> std::io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 == len).then(|| xxh3_64(&bytes)))
}

/// One listed file, as found now; hashes are read on demand and kept.
#[derive(Debug)]
struct Scan {
    key: String,
    path: PathBuf,
    len: u64,
    dev: Option<u64>,
    ino: Option<u64>,
    hashes: HashMap<(u64, u64), Option<u64>>,
}

impl Scan {
    fn new(key: &str, path: &Path) -> Result<Scan> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let (dev, ino) = device_and_inode(&meta);
        Ok(Scan {
            key: key.to_string(),
            path: path.to_path_buf(),
            len: meta.len(),
            dev,
            ino,
            hashes: HashMap::new(),
        })
    }

    fn hash(&mut self, start: u64, len: u64) -> Result<Option<u64>> {
        if start + len > self.len {
            return Ok(None);
        }
        if let Some(known) = self.hashes.get(&(start, len)) {
            return Ok(*known);
        }
        let context = || self.path.display().to_string();
        let mut file = File::open(&self.path).map_err(|e| Error::io(context(), e))?;
        let hash = hash_range(&mut file, start, len).map_err(|e| Error::io(context(), e))?;
        self.hashes.insert((start, len), hash);
        Ok(hash)
    }

    /// Whether this file is the version `identity` fingerprints, read up to `position`.
    fn continues(
        &mut self,
        identity: &FileIdentity,
        position: u64,
        positions: Positions,
    ) -> Result<bool> {
        match positions {
            Positions::Rows => {
                if identity.len != Some(self.len) {
                    return Ok(false);
                }
            }
            Positions::Bytes => {
                if self.len < position {
                    return Ok(false);
                }
                if let Some(tail) = &identity.tail {
                    let start = position.saturating_sub(TAIL_BYTES);
                    match self.hash(start, position - start)? {
                        Some(hash) if hex(hash) == *tail => {}
                        _ => return Ok(false),
                    }
                }
            }
        }
        Ok(matches!(self.hash(0, identity.head_len)?, Some(hash) if hex(hash) == identity.head))
    }

    fn same_inode(&self, identity: &FileIdentity) -> bool {
        self.ino.is_some() && self.ino == identity.ino && self.dev == identity.dev
    }

    /// This version's identity at `position`, with the head fingerprint as wide as the
    /// file allows now.
    fn identity(&mut self, positions: Positions, position: u64) -> Result<FileIdentity> {
        let context = self.path.display().to_string();
        let shrank = move || {
            Error::io(
                context,
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shrank while read"),
            )
        };
        let head_len = self.len.min(HEAD_BYTES);
        let head = self.hash(0, head_len)?.ok_or_else(shrank.clone())?;
        let tail = match positions {
            Positions::Bytes => {
                let start = position.saturating_sub(TAIL_BYTES);
                Some(hex(self
                    .hash(start, position - start)?
                    .ok_or_else(shrank)?))
            }
            Positions::Rows => None,
        };
        Ok(FileIdentity {
            head: hex(head),
            head_len,
            tail,
            len: (positions == Positions::Rows).then_some(self.len),
            dev: self.dev,
            ino: self.ino,
        })
    }
}

#[cfg(unix)]
fn device_and_inode(meta: &std::fs::Metadata) -> (Option<u64>, Option<u64>) {
    use std::os::unix::fs::MetadataExt;
    (Some(meta.dev()), Some(meta.ino()))
}

#[cfg(not(unix))]
fn device_and_inode(_meta: &std::fs::Metadata) -> (Option<u64>, Option<u64>) {
    (None, None)
}

/// What [`resolve`] decided for the listed files.
#[derive(Debug, Default)]
pub(crate) struct Resolution {
    /// Per listed file, where to read from (`0`: a version never read).
    pub(crate) positions: BTreeMap<String, u64>,
    /// Per listed file, the identity of its version at that position.
    pub(crate) identities: BTreeMap<String, FileIdentity>,
    /// What happened to files, `(file, message)`, for the run report.
    pub(crate) notices: Vec<(String, String)>,
}

/// Matches the listed `files` (key, path) with the committed `positions` and `identities`;
/// see the [module docs](self).
pub(crate) fn resolve(
    files: &[(String, PathBuf)],
    positions: &BTreeMap<String, u64>,
    identities: &BTreeMap<String, FileIdentity>,
    unit: Positions,
) -> Result<Resolution> {
    let mut scans = files
        .iter()
        .map(|(key, path)| Scan::new(key, path))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Resolution::default();
    // Index of the scan each entry was matched with; scans matched so far.
    let mut claimed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut taken = vec![false; scans.len()];
    // Why the file under an entry's name is not that entry's version, for the notices.
    let mut replaced: HashMap<usize, String> = HashMap::new();

    // 1. Same name, same version (or a cursor without identities, which trusts the name).
    for (i, scan) in scans.iter_mut().enumerate() {
        let Some(&position) = positions.get(&scan.key) else {
            continue;
        };
        let same = match identities.get(&scan.key) {
            Some(identity) => scan.continues(identity, position, unit)?,
            None => unit == Positions::Rows || scan.len >= position,
        };
        if same {
            if let Some((key, _)) = positions.get_key_value(&scan.key) {
                claimed.insert(key.as_str(), i);
            }
            taken[i] = true;
            out.positions.insert(scan.key.clone(), position);
        } else if position > 0 {
            let why = if unit == Positions::Bytes && scan.len < position {
                format!(
                    "is shorter than what was read ({} bytes, {position} had been read): it \
                     was truncated or replaced",
                    scan.len
                )
            } else {
                format!(
                    "is not the file read up to {} {position} (its {} differ): it was replaced",
                    unit.unit(),
                    if unit == Positions::Rows {
                        "size or first bytes"
                    } else {
                        "first bytes or the bytes before that position"
                    }
                )
            };
            replaced.insert(i, why);
        }
    }

    // 2. Versions whose name now holds something else, or nothing: renamed or copied away?
    for (key, &position) in positions {
        if claimed.contains_key(key.as_str()) || position == 0 {
            continue;
        }
        let Some(identity) = identities.get(key) else {
            continue;
        };
        let mut found: Option<usize> = None;
        for (i, scan) in scans.iter_mut().enumerate() {
            if taken[i] || !scan.continues(identity, position, unit)? {
                continue;
            }
            let better = scan.same_inode(identity);
            if found.is_none() || better {
                found = Some(i);
            }
            if better {
                break;
            }
        }
        let Some(i) = found else {
            continue;
        };
        taken[i] = true;
        claimed.insert(key.as_str(), i);
        let scan = &scans[i];
        let how = if scan.same_inode(identity) {
            "renamed (the same file)"
        } else {
            "copied (the same content, as a copytruncate rotation leaves it)"
        };
        out.notices.push((
            scan.key.clone(),
            format!(
                "is `{key}` {how}, which was read up to {} {position}: reading on from there",
                unit.unit()
            ),
        ));
        out.positions.insert(scan.key.clone(), position);
    }

    // 3. Everything else is a version never read.
    for (i, scan) in scans.iter().enumerate() {
        if taken[i] {
            continue;
        }
        if let Some(why) = replaced.get(&i) {
            out.notices.push((
                scan.key.clone(),
                format!("{why}; reading this version from its start"),
            ));
        }
        out.positions.insert(scan.key.clone(), 0);
    }
    for scan in &mut scans {
        let position = out.positions.get(&scan.key).copied().unwrap_or(0);
        out.identities
            .insert(scan.key.clone(), scan.identity(unit, position)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn lines(range: std::ops::Range<u32>) -> String {
        range.map(|i| format!("{{\"id\":{i}}}\n")).collect()
    }

    /// The cursor a full read of `files` would leave.
    fn read_to_end(
        files: &[(String, PathBuf)],
    ) -> (BTreeMap<String, u64>, BTreeMap<String, FileIdentity>) {
        let resolved =
            resolve(files, &BTreeMap::new(), &BTreeMap::new(), Positions::Bytes).unwrap();
        let mut positions = BTreeMap::new();
        let mut identities = resolved.identities;
        for (key, path) in files {
            let len = std::fs::metadata(path).unwrap().len();
            positions.insert(key.clone(), len);
            let identity = identities.get_mut(key).unwrap();
            identity
                .set_tail(&mut File::open(path).unwrap(), len)
                .unwrap();
        }
        (positions, identities)
    }

    #[test]
    fn an_appended_file_goes_on_and_a_rewritten_one_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, lines(0..100)).unwrap();
        let files = vec![("e.jsonl".to_string(), path.clone())];
        let (positions, identities) = read_to_end(&files);
        let read = positions["e.jsonl"];

        let mut more = lines(0..100);
        more.push_str(&lines(100..150));
        std::fs::write(&path, &more).unwrap();
        let r = resolve(&files, &positions, &identities, Positions::Bytes).unwrap();
        assert_eq!(r.positions["e.jsonl"], read);
        assert!(r.notices.is_empty(), "{:?}", r.notices);

        // The same first kilobyte, other bytes before the position: a different file.
        let mut edited = lines(0..100);
        edited.replace_range(edited.len() - 5..edited.len() - 4, "8");
        edited.push_str(&lines(100..150));
        std::fs::write(&path, &edited).unwrap();
        let r = resolve(&files, &positions, &identities, Positions::Bytes).unwrap();
        assert_eq!(r.positions["e.jsonl"], 0);
        assert!(r.notices[0].1.contains("replaced"), "{:?}", r.notices);
    }

    #[test]
    fn a_cursor_without_identities_trusts_the_name_unless_the_file_is_shorter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, lines(0..10)).unwrap();
        let files = vec![("e.jsonl".to_string(), path.clone())];
        let positions = BTreeMap::from([("e.jsonl".to_string(), 30)]);
        let r = resolve(&files, &positions, &BTreeMap::new(), Positions::Bytes).unwrap();
        assert_eq!(r.positions["e.jsonl"], 30);
        let positions = BTreeMap::from([("e.jsonl".to_string(), 10_000)]);
        let r = resolve(&files, &positions, &BTreeMap::new(), Positions::Bytes).unwrap();
        assert_eq!(r.positions["e.jsonl"], 0);
        assert!(r.notices[0].1.contains("shorter"), "{:?}", r.notices);
    }

    #[test]
    fn a_rotation_chain_is_followed_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("a.1.jsonl"), lines(0..50)).unwrap();
        std::fs::write(path("a.jsonl"), lines(50..120)).unwrap();
        let before = vec![
            ("a.1.jsonl".to_string(), path("a.1.jsonl")),
            ("a.jsonl".to_string(), path("a.jsonl")),
        ];
        let (positions, identities) = read_to_end(&before);
        // Rotate: a.1 -> a.2, a -> a.1 (by copy), a new a.
        std::fs::rename(path("a.1.jsonl"), path("a.2.jsonl")).unwrap();
        std::fs::copy(path("a.jsonl"), path("a.1.jsonl")).unwrap();
        std::fs::write(path("a.jsonl"), lines(120..130)).unwrap();
        let after = vec![
            ("a.1.jsonl".to_string(), path("a.1.jsonl")),
            ("a.2.jsonl".to_string(), path("a.2.jsonl")),
            ("a.jsonl".to_string(), path("a.jsonl")),
        ];
        let r = resolve(&after, &positions, &identities, Positions::Bytes).unwrap();
        assert_eq!(r.positions["a.2.jsonl"], positions["a.1.jsonl"]);
        assert_eq!(r.positions["a.1.jsonl"], positions["a.jsonl"]);
        assert_eq!(r.positions["a.jsonl"], 0);
        let notices: Vec<&str> = r.notices.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(notices.len(), 3, "{notices:?}");
        assert!(notices.iter().any(|m| m.contains("renamed")), "{notices:?}");
        assert!(notices.iter().any(|m| m.contains("copied")), "{notices:?}");
    }
}
