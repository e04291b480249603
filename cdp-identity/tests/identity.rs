//! Integration tests of `cdp-identity`, one binary with a module per topic.

#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod identity {
    mod common;
    mod explain;
    mod graph;
    mod props;
    mod resolver;
    mod sample;
    #[cfg(feature = "sqlite")]
    mod sqlite;
    mod store;
}
