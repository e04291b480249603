//! Running a Singer program: its command line, its configuration file, a private working
//! directory for the files it is handed, and the last lines of its stderr.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use cdp_core::{Error, Result};
use serde_json::Value;

use super::SingerError;

/// Longest stderr line kept, in characters; the rest of a longer one is cut.
const STDERR_LINE_CHARS: usize = 2000;

/// A Singer program and how to run it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Program {
    /// The connector instance, for errors.
    pub(crate) connector: String,
    pub(crate) command: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) config: ProgramConfig,
    /// Lines of stderr kept for errors.
    pub(crate) stderr_lines: usize,
}

/// Where the program's `--config` comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProgramConfig {
    /// A JSON object, written to a private file for each run.
    Inline(Value),
    /// A file the user keeps.
    File(PathBuf),
}

impl Program {
    pub(crate) fn new(connector: impl Into<String>, command: impl Into<String>) -> Self {
        Program {
            connector: connector.into(),
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            config: ProgramConfig::Inline(Value::Object(Default::default())),
            stderr_lines: 20,
        }
    }

    /// The command with its arguments and `--config`, writing an inline config into `dir`;
    /// stdin, stdout and stderr are for the caller to set.
    pub(crate) fn command(&self, dir: &Workdir) -> Result<Command> {
        let config = match &self.config {
            ProgramConfig::Inline(value) => {
                let path = dir.path().join("config.json");
                dir.write_private(&path, &serde_json::to_vec(value)?)?;
                path
            }
            ProgramConfig::File(path) => path.clone(),
        };
        let mut command = Command::new(&self.command);
        command.args(&self.args).arg("--config").arg(config);
        command.envs(&self.env);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        Ok(command)
    }

    /// Starts `command` with its stderr kept in a [`StderrTail`].
    pub(crate) fn spawn(&self, mut command: Command) -> Result<(Child, StderrTail)> {
        command.stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| {
            self.error(SingerError::Spawn {
                program: self.command.clone(),
                source,
            })
        })?;
        let tail = StderrTail::start(
            child.stderr.take(),
            self.stderr_lines,
            self.connector.clone(),
        );
        Ok((child, tail))
    }

    /// `error` as the connector's error (not retryable: a Singer program that failed
    /// once is looked at before it is run again).
    pub(crate) fn error(&self, error: SingerError) -> Error {
        Error::external(self.connector.clone(), error)
    }

    /// The error for a program that ended with `status`.
    pub(crate) fn exited(&self, status: ExitStatus, stderr: Vec<String>) -> Error {
        self.error(SingerError::Exited {
            program: self.command.clone(),
            status: describe(status),
            stderr,
        })
    }
}

/// How a process ended, in words.
pub(crate) fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return format!("was killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("ended: {status}"),
    }
}

/// The last lines a program wrote on stderr, read by a thread of its own (so a program
/// that writes much on stderr never blocks on a full pipe). Every line also goes to the
/// log at debug level.
#[derive(Debug)]
pub(crate) struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl StderrTail {
    fn start(stderr: Option<ChildStderr>, keep: usize, connector: String) -> Self {
        let lines = Arc::new(Mutex::new(VecDeque::with_capacity(keep)));
        let thread = stderr.map(|stderr| {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match read_line(&mut reader, &mut buf, 64 * 1024) {
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                    let text = String::from_utf8_lossy(&buf);
                    let text = text.trim_end();
                    let line: String = match text.char_indices().nth(STDERR_LINE_CHARS) {
                        Some((at, _)) => format!("{}…", &text[..at]),
                        None => text.to_string(),
                    };
                    tracing::debug!(connector = %connector, "stderr: {line}");
                    if keep == 0 {
                        continue;
                    }
                    let mut kept = lines.lock().unwrap_or_else(|e| e.into_inner());
                    if kept.len() == keep {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            })
        });
        StderrTail { lines, thread }
    }

    /// Waits until the program's stderr is closed (it ended), then returns its last lines.
    pub(crate) fn finish(mut self) -> Vec<String> {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.snapshot()
    }

    /// The lines kept so far.
    pub(crate) fn snapshot(&self) -> Vec<String> {
        let kept = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter().cloned().collect()
    }
}

/// Reads one line (up to and without its `\n`) into `buf`, keeping at most `max` bytes of
/// it and skipping the rest. `None` at the end of the input; `Some(true)` when the line
/// was longer than `max` (and `buf` holds its first `max` bytes).
pub(crate) fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    let mut seen = false;
    let mut cut = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(seen.then_some(cut));
        }
        seen = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            cut = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(cut));
        }
    }
}

/// A private directory for the files one run of a program is handed (its config, state
/// and catalog), removed when dropped.
#[derive(Debug)]
pub(crate) struct Workdir {
    path: PathBuf,
}

impl Workdir {
    pub(crate) fn new() -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "cdp-singer-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&path)
            .map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(Workdir { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to `path`, readable by this user only (configs hold secrets).
    pub(crate) fn write_private(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let context = || path.display().to_string();
        let mut file = options.open(path).map_err(|e| Error::io(context(), e))?;
        file.write_all(bytes).map_err(|e| Error::io(context(), e))
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process killed when the last holder lets go of it, unless it ended already:
/// a read that is dropped (the run was cancelled or failed) does not leave its tap behind.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChildGuard {
    child: Arc<Mutex<Option<Child>>>,
}

impl ChildGuard {
    pub(crate) fn set(&self, child: Child) {
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    /// Waits for the child to end (it closed its stdout, so it is ending).
    pub(crate) fn wait(&self) -> std::io::Result<Option<ExitStatus>> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(child) => {
                let status = child.wait()?;
                *guard = None;
                Ok(Some(status))
            }
            None => Ok(None),
        }
    }

    /// Kills the child if it still runs, and reaps it.
    pub(crate) fn kill(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Kills the child when the last clone is dropped.
#[derive(Debug)]
pub(crate) struct KillOnDrop(pub(crate) ChildGuard);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill();
    }
}

/// Reads all of `reader`, at most `max` bytes (a longer output is an error).
pub(crate) fn read_bounded(reader: impl Read, max: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "the output is larger than {max} bytes"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let input = b"short\nabcdefghij\n\nlast".to_vec();
        let mut reader = BufReader::with_capacity(3, input.as_slice());
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while let Some(cut) = read_line(&mut reader, &mut buf, 5).unwrap() {
            lines.push((String::from_utf8(buf.clone()).unwrap(), cut));
            buf.clear();
        }
        assert_eq!(
            lines,
            [
                ("short".to_string(), false),
                ("abcde".to_string(), true),
                (String::new(), false),
                ("last".to_string(), false),
            ]
        );
    }

    #[test]
    fn a_workdir_is_private_and_removed() {
        let dir = Workdir::new().unwrap();
        let path = dir.path().to_path_buf();
        dir.write_private(&path.join("c.json"), b"{}").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path.join("c.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
        drop(dir);
        assert!(!path.exists());
    }

    #[cfg(unix)]
    #[test]
    fn the_tail_keeps_the_last_lines() {
        let mut program = Program::new("t", "sh");
        program.stderr_lines = 2;
        let mut command = Command::new("sh");
        command
            .args(["-c", "echo one >&2; echo two >&2; echo three >&2; exit 3"])
            .stdout(Stdio::null());
        let (mut child, tail) = program.spawn(command).unwrap();
        let status = child.wait().unwrap();
        let lines = tail.finish();
        assert_eq!(lines, ["two", "three"]);
        let error = program.exited(status, lines).to_string();
        assert!(error.contains("exited with status 3"), "{error}");
        assert!(error.contains("| three"), "{error}");
    }
}
