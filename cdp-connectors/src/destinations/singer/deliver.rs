//! Sending one staged epoch to the target and waiting for its confirmation.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cdp_core::{Error, Result};
use serde_json::Value;

use super::encode::state_line;
use crate::singer::SingerError;
use crate::singer::process::{Program, Workdir};

/// What the target must do before an epoch counts as delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Confirm {
    /// Write the epoch's state back on stdout (besides exiting 0).
    pub(crate) state: bool,
    /// Longest a target may take.
    pub(crate) timeout: Duration,
}

/// Runs the target on the messages in `file` followed by the `STATE` `marker`, and
/// returns once it exited successfully having written `marker` back (when required).
pub(crate) fn deliver(
    program: &Program,
    file: &Path,
    epoch: u64,
    marker: &Value,
    confirm: Confirm,
) -> Result<()> {
    let state = state_line(marker)?;
    let dir = Workdir::new()?;
    let mut command = program.command(&dir)?;
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    let (mut child, tail) = program.spawn(command)?;
    let confirmed = Arc::new(AtomicBool::new(false));
    let reader = child.stdout.take().map(|stdout| {
        let (confirmed, marker, connector) =
            (confirmed.clone(), marker.clone(), program.connector.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                tracing::debug!(connector = %connector, "target state: {line}");
                if echoes(&line, &marker) {
                    confirmed.store(true, Ordering::Relaxed);
                }
            }
        })
    });
    // A target that stops reading (it failed) closes the pipe: what it says on stderr and
    // its exit status tell why, so a write error here is not the error reported.
    if let Some(mut stdin) = child.stdin.take() {
        let sent = std::fs::File::open(file)
            .map_err(|e| Error::io(file.display().to_string(), e))
            .and_then(|mut staged| {
                std::io::copy(&mut staged, &mut stdin)
                    .and_then(|_| stdin.write_all(state.as_bytes()))
                    .and_then(|()| stdin.flush())
                    .or_else(|e| match e.kind() {
                        std::io::ErrorKind::BrokenPipe => Ok(()),
                        _ => Err(Error::io(format!("the stdin of `{}`", program.command), e)),
                    })
            });
        drop(stdin);
        if let Err(error) = sent {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    }
    let deadline = Instant::now() + confirm.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(program.error(SingerError::Timeout {
                    program: program.command.clone(),
                    after: confirm.timeout,
                    stderr: tail.finish(),
                }));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(Error::io(format!("waiting for `{}`", program.command), e));
            }
        }
    };
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    let stderr = tail.finish();
    if !status.success() {
        return Err(program.exited(status, stderr));
    }
    if confirm.state && !confirmed.load(Ordering::Relaxed) {
        return Err(program.error(SingerError::Unconfirmed {
            program: program.command.clone(),
            epoch,
            stderr,
        }));
    }
    Ok(())
}

/// Whether a line of the target's stdout is `marker`: the state value itself (what
/// targets write) or a `STATE` message carrying it.
fn echoes(line: &str, marker: &Value) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(line.trim()) else {
        return false;
    };
    if value == *marker {
        return true;
    }
    value.get("type").and_then(Value::as_str) == Some("STATE") && value.get("value") == Some(marker)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_state_comes_back_bare_or_as_a_message() {
        let marker = json!({"cdp_epoch": 3});
        assert!(echoes(r#"{"cdp_epoch": 3}"#, &marker));
        assert!(echoes(
            r#"{"type":"STATE","value":{"cdp_epoch":3}}"#,
            &marker
        ));
        assert!(!echoes(r#"{"cdp_epoch": 2}"#, &marker));
        assert!(!echoes("INFO done", &marker));
    }
}
