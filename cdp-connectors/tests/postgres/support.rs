//! The test server, a schema per test and SQL helpers (`cdp_testkit::postgres`, shared with
//! the identity-backend tests of `cdp`), and reading a source to its end.

pub(crate) use cdp_testkit::postgres::{TestDb, connect, url};
pub(crate) use cdp_testkit::read::{read_all, resume};
