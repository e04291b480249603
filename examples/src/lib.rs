//! Runnable examples for `cdp` on bundled, generated data: `quickstart` (see the README) and
//! the `cdp-file-sync` binary used by the crash-and-resume tests.
