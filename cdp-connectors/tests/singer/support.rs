//! A fake Singer tap and target written by the tests (POSIX sh and awk, no Python), and a
//! builder of the tap's output.

use std::path::{Path, PathBuf};

use cdp_connectors::{SingerDestination, SingerSource};
use serde_json::{Value, json};

/// The fake tap: `tap --config FILE [--state FILE] [--catalog FILE] [--discover]`.
///
/// Its config names a `script`: the lines it writes on a run from scratch. With a state
/// `{"line": L}` it writes the last `SCHEMA` of each stream among the first `L` lines, then
/// the lines after `L`, as a tap that resumes right after its state does. Directive lines
/// in the script: `#STDERR text` (to stderr), `#EXIT n` (stop with status n), `#KILL`
/// (SIGKILL itself), `#FAIL_ONCE file` (exit 3, once: the file remembers). `--discover`
/// prints the config's `catalog` file.
const TAP: &str = r#"#!/bin/sh
config=""; state=""; discover=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config=$2; shift ;;
    --state) state=$2; shift ;;
    --catalog|--properties) shift ;;
    --discover) discover=1 ;;
  esac
  shift
done
field() { sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p" "$config"; }
if [ -n "$discover" ]; then cat "$(field catalog)"; exit 0; fi
start=0
if [ -n "$state" ]; then start=$(sed -n 's/.*"line" *: *\([0-9]*\).*/\1/p' "$state"); fi
exec awk -v start="$start" -v pid="$$" '
  NR <= start {
    if ($0 ~ /"type":"SCHEMA"/) {
      match($0, /"stream":"[^"]*"/); s = substr($0, RSTART, RLENGTH)
      if (!(s in last)) order[++n] = s
      last[s] = $0
    }
    next
  }
  !resumed { for (i = 1; i <= n; i++) print last[order[i]]; resumed = 1 }
  /^#STDERR / { sub(/^#STDERR /, ""); print > "/dev/stderr"; next }
  /^#EXIT / { fflush(); exit $2 }
  /^#KILL/ { fflush(); system("kill -9 " pid) }
  /^#FAIL_ONCE / {
    if (system("test -e " $2) != 0) {
      system("touch " $2); print "boom: the tap lost its connection" > "/dev/stderr"; fflush(); exit 3
    }
    next
  }
  { print }
' "$(field script)"
"#;

/// The fake target: appends every message but `STATE` to the config's `out` file, then
/// writes back the last state's value, as targets do once they flushed. `mode` `fail`
/// exits 4 instead; `silent` writes no state.
const TARGET: &str = r#"#!/bin/sh
config=$2
field() { sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p" "$config"; }
out=$(field out); mode=$(field mode)
state=""
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    *'"type":"STATE"'*) state=$line ;;
    *) printf '%s\n' "$line" >> "$out" ;;
  esac
done
case "$mode" in
  fail) echo "target: the warehouse refused the load" >&2; exit 4 ;;
  silent) exit 0 ;;
esac
printf '%s\n' "$state" | sed 's/^{"type":"STATE","value":\(.*\)}$/\1/'
"#;

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// The lines a fake tap writes, built message by message.
#[derive(Debug, Default)]
pub(crate) struct Script {
    lines: Vec<String>,
}

impl Script {
    pub(crate) fn new() -> Self {
        Script::default()
    }

    pub(crate) fn line(&mut self, line: impl Into<String>) -> &mut Self {
        self.lines.push(line.into());
        self
    }

    pub(crate) fn schema(&mut self, stream: &str, properties: Value) -> &mut Self {
        let message = json!({"type": "SCHEMA", "stream": stream,
            "schema": {"type": "object", "properties": properties}, "key_properties": ["id"]});
        self.line(compact(&message))
    }

    /// A `SCHEMA` whose properties are given as JSON text, in the order written.
    pub(crate) fn schema_text(&mut self, stream: &str, properties: &str) -> &mut Self {
        self.line(format!(
            r#"{{"type":"SCHEMA","stream":"{stream}","schema":{{"type":"object","properties":{properties}}},"key_properties":["id"]}}"#
        ))
    }

    pub(crate) fn record(&mut self, stream: &str, record: Value) -> &mut Self {
        let message = json!({"type": "RECORD", "stream": stream, "record": record});
        self.line(compact(&message))
    }

    /// A `STATE` whose value is its own line number, which the fake tap resumes after.
    pub(crate) fn state(&mut self) -> &mut Self {
        let line = self.lines.len() + 1;
        self.line(format!(r#"{{"type":"STATE","value":{{"line":{line}}}}}"#))
    }

    pub(crate) fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }
}

/// A JSON value as the compact text a Singer program writes (`"type"` first, as taps
/// write it, so the fake tap's patterns find it).
pub(crate) fn compact(message: &Value) -> String {
    let Value::Object(map) = message else {
        return message.to_string();
    };
    let mut parts = Vec::new();
    if let Some(kind) = map.get("type") {
        parts.push(format!("\"type\":{kind}"));
    }
    for (key, value) in map {
        if key != "type" {
            parts.push(format!("{}:{value}", Value::String(key.clone())));
        }
    }
    format!("{{{}}}", parts.join(","))
}

/// A directory with the fake tap and target in it.
#[derive(Debug)]
pub(crate) struct Fakes {
    pub(crate) dir: tempfile::TempDir,
}

impl Fakes {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        executable(&dir.path().join("tap"), TAP);
        executable(&dir.path().join("target"), TARGET);
        Fakes { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A source running the fake tap on `script` (and `catalog`, for `--discover`).
    pub(crate) fn source(&self, script: &Script, catalog: Option<Value>) -> SingerSource {
        let script_path = self.path("script.singer");
        std::fs::write(&script_path, script.text()).unwrap();
        let catalog_path = self.path("catalog.json");
        std::fs::write(
            &catalog_path,
            catalog.unwrap_or(json!({"streams": []})).to_string(),
        )
        .unwrap();
        SingerSource::new(self.path("tap").display().to_string())
            .with_name("fake-tap")
            .with_config(json!({
                "script": script_path.display().to_string(),
                "catalog": catalog_path.display().to_string(),
            }))
            .with_batch_size(3)
    }

    /// A destination running the fake target, which appends to `out`.
    pub(crate) fn destination(&self, out: &Path, mode: &str) -> SingerDestination {
        SingerDestination::new(
            self.path("target").display().to_string(),
            self.path("staging"),
        )
        .with_name("fake-target")
        .with_config(json!({"out": out.display().to_string(), "mode": mode}))
    }
}

/// The `RECORD`s of `stream` a fake target appended to `out`, as records.
pub(crate) fn received(out: &Path, stream: &str) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(out) else {
        return Vec::new();
    };
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|m| m["type"] == "RECORD" && m["stream"] == stream)
        .map(|m| m["record"].clone())
        .collect()
}
