//! Configuration of the JSONL destination.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::JsonlDestination;
use crate::config::ConfigErrors;
use crate::destinations::file::Jsonl;
use crate::destinations::file_config::{
    LandingDestinationConfig, LandingDestinationFormat, sealed,
};

/// Writes a JSONL landing zone: the keys of every landing zone
/// ([`LandingOptions`](crate::destinations::LandingOptions)); the JSONL destination has none
/// of its own ([`JsonlDestinationOptions`]).
///
/// ```toml
/// [destinations.lake]
/// type = "jsonl"
/// root = "landing/"
/// partition_column = "timestamp"   # default: the day each batch was synced
/// max_file_bytes = 268435456
/// ```
pub type JsonlDestinationConfig = LandingDestinationConfig<JsonlDestinationOptions>;

/// The JSONL destination's own keys: none so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlDestinationOptions {}

impl sealed::Sealed for JsonlDestinationOptions {}

impl LandingDestinationFormat for JsonlDestinationOptions {
    type Format = Jsonl;

    fn check(&self, _errors: &mut ConfigErrors) {}

    fn destination(&self, root: &Path) -> JsonlDestination {
        JsonlDestination::new(root)
    }
}
