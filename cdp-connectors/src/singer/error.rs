//! [`SingerError`]: what went wrong with a Singer tap or target.

use std::fmt;
use std::time::Duration;

/// A Singer program (tap or target) failed; carried as the cause of a
/// [`cdp_core::Error::External`] naming the connector. Every variant that concerns a
/// program that ran keeps the last lines it wrote on stderr, which is where Singer
/// programs say what went wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum SingerError {
    /// The program could not be started (not found, not executable).
    Spawn {
        /// The command.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program ended unsuccessfully: a non-zero exit status, or killed by a signal.
    Exited {
        /// The command.
        program: String,
        /// How it ended, in words (`exited with status 1`, `was killed by signal 9`).
        status: String,
        /// Its last lines on stderr.
        stderr: Vec<String>,
    },
    /// A tap's `--discover` output, or a catalog file, is not a Singer catalog.
    Catalog {
        /// The command, or the catalog file.
        program: String,
        /// What is wrong with it.
        reason: String,
        /// The tap's last lines on stderr (empty for a file).
        stderr: Vec<String>,
    },
    /// A target ended without writing back the state sent after an epoch's records, so
    /// there is no sign that it made them durable.
    Unconfirmed {
        /// The command.
        program: String,
        /// The epoch whose state was not confirmed.
        epoch: u64,
        /// Its last lines on stderr.
        stderr: Vec<String>,
    },
    /// The program did not finish in time and was killed.
    Timeout {
        /// The command.
        program: String,
        /// How long it was given.
        after: Duration,
        /// Its last lines on stderr.
        stderr: Vec<String>,
    },
}

impl SingerError {
    /// The program's last lines on stderr, as kept.
    pub fn stderr(&self) -> &[String] {
        match self {
            SingerError::Spawn { .. } => &[],
            SingerError::Exited { stderr, .. }
            | SingerError::Catalog { stderr, .. }
            | SingerError::Unconfirmed { stderr, .. }
            | SingerError::Timeout { stderr, .. } => stderr,
        }
    }
}

fn write_stderr(f: &mut fmt::Formatter<'_>, stderr: &[String]) -> fmt::Result {
    if stderr.is_empty() {
        return f.write_str(" (nothing on stderr)");
    }
    f.write_str("; its last lines on stderr:")?;
    for line in stderr {
        write!(f, "\n  | {line}")?;
    }
    Ok(())
}

impl fmt::Display for SingerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SingerError::Spawn { program, source } => {
                write!(f, "could not start `{program}`: {source}")
            }
            SingerError::Exited {
                program,
                status,
                stderr,
            } => {
                write!(f, "`{program}` {status}")?;
                write_stderr(f, stderr)
            }
            SingerError::Catalog {
                program,
                reason,
                stderr,
            } => {
                write!(f, "no Singer catalog from `{program}`: {reason}")?;
                if stderr.is_empty() {
                    Ok(())
                } else {
                    write_stderr(f, stderr)
                }
            }
            SingerError::Unconfirmed {
                program,
                epoch,
                stderr,
            } => {
                write!(
                    f,
                    "target `{program}` ended without writing back the state of epoch {epoch}, \
                     so it did not confirm that the epoch's records are durable; the epoch stays \
                     staged and is sent again when the destination opens next"
                )?;
                write_stderr(f, stderr)
            }
            SingerError::Timeout {
                program,
                after,
                stderr,
            } => {
                write!(
                    f,
                    "`{program}` did not finish within {after:?} and was killed"
                )?;
                write_stderr(f, stderr)
            }
        }
    }
}

impl std::error::Error for SingerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SingerError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_ends_with_the_programs_last_words() {
        let error = SingerError::Exited {
            program: "tap-x".into(),
            status: "exited with status 2".into(),
            stderr: vec!["Traceback".into(), "KeyError: 'token'".into()],
        };
        assert_eq!(
            error.to_string(),
            "`tap-x` exited with status 2; its last lines on stderr:\n  | Traceback\n  | KeyError: 'token'"
        );
        assert_eq!(error.stderr().len(), 2);
    }
}
