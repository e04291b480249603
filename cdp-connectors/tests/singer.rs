//! Integration tests of the Singer connectors: a fake tap and target written by the tests
//! (sh and awk), and, with feature `singer-integration`, the PyPI tap `tap-jsonl` and
//! target `target-jsonl`.

#![cfg(feature = "singer")]
// Helpers outside `#[test]` functions panic on failure too; that is how a test fails.
#![allow(clippy::unwrap_used)]

#[path = "singer/support.rs"]
mod support;

#[path = "singer/conformance.rs"]
mod conformance;
#[path = "singer/destination.rs"]
mod destination;
#[path = "singer/protocol.rs"]
mod protocol;
#[cfg(feature = "singer-integration")]
#[path = "singer/pypi.rs"]
mod pypi;
