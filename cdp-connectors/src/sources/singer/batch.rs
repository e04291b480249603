//! The files of a Singer SDK `BATCH` message: JSON lines, gzip-compressed or not, named
//! by `file://` URIs in its manifest.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// The local path of a manifest entry: a `file://` URI (percent-escapes decoded) or a
/// plain path. Other schemes (object stores) are refused with the reason.
pub(crate) fn local_path(uri: &str) -> Result<PathBuf, String> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Ok(PathBuf::from(uri));
    };
    if !scheme.eq_ignore_ascii_case("file") {
        return Err(format!(
            "batch file `{uri}` is not local: only file:// URIs are read (point the tap's \
             `batch_config.storage.root` at a local directory)"
        ));
    }
    // `file:///tmp/x` and `file://localhost/tmp/x`.
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.starts_with('/') {
        return Err(format!("batch file `{uri}` names a remote host"));
    }
    Ok(PathBuf::from(percent_decode(path)))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a batch file for reading line by line, decompressing it as `compression` says
/// (`gzip`, or `none` / absent).
pub(crate) fn open(
    path: &std::path::Path,
    format: &str,
    compression: Option<&str>,
) -> Result<Box<dyn BufRead + Send>, String> {
    if format != "jsonl" {
        return Err(format!(
            "batch encoding format `{format}` is not read (only `jsonl`); set the tap's \
             `batch_config.encoding.format` to \"jsonl\""
        ));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open batch file {}: {e}", path.display()))?;
    match compression.unwrap_or("none") {
        "gzip" => Ok(Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::read::MultiGzDecoder::new(file),
        ))),
        "none" => Ok(Box::new(BufReader::with_capacity(256 * 1024, file))),
        other => Err(format!(
            "batch compression `{other}` is not read (only `gzip` and `none`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_entries_are_local_paths() {
        assert_eq!(
            local_path("file:///tmp/a%20b.json.gz").ok(),
            Some(PathBuf::from("/tmp/a b.json.gz"))
        );
        assert_eq!(
            local_path("file://localhost/tmp/x").ok(),
            Some(PathBuf::from("/tmp/x"))
        );
        assert_eq!(local_path("/tmp/x").ok(), Some(PathBuf::from("/tmp/x")));
        assert!(
            local_path("s3://bucket/x")
                .unwrap_err()
                .contains("not local")
        );
        assert!(local_path("file://host/x").is_err());
    }
}
