//! What the Singer source and destination share (feature `singer`): running a tap or a
//! target as a child process with its configuration, and keeping the last lines of its
//! stderr for errors.
//!
//! [Singer](https://hub.meltano.com/singer/spec) programs speak JSON lines: a tap writes
//! `SCHEMA`, `RECORD`, `STATE` (and Singer SDK `BATCH`, `ACTIVATE_VERSION`) messages on
//! stdout; a target reads them on stdin and writes the state it has made durable on stdout.
//! The source is [`SingerSource`](crate::sources::singer::SingerSource), the destination
//! [`SingerDestination`](crate::destinations::singer::SingerDestination).

mod error;
pub(crate) mod process;

pub use error::SingerError;
