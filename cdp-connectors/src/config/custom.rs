//! The configuration of a connector type a host registered.

use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// A parsed configuration of a type registered with
/// [`ConnectorRegistry`](super::ConnectorRegistry): the type name, the table it was read
/// from, and what the host's factory made of it (`B` is `dyn BuildSource` or
/// `dyn BuildDestination`; see [`CustomSourceConfig`](super::CustomSourceConfig) and
/// [`CustomDestinationConfig`](super::CustomDestinationConfig)).
///
/// Two are equal when they have the same type and table. It serializes back to its table,
/// `type` included. `Debug` shows the host's config, not the table, so a host that redacts
/// secrets in its own `Debug` keeps them out of logs.
pub struct CustomConfig<B: ?Sized> {
    type_name: String,
    table: Map<String, Value>,
    config: Arc<B>,
}

impl<B: ?Sized> CustomConfig<B> {
    pub(crate) fn new(type_name: &str, table: Map<String, Value>, config: Arc<B>) -> Self {
        CustomConfig {
            type_name: type_name.to_string(),
            table,
            config,
        }
    }

    /// The registered type name (`type = "…"`).
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The table the configuration was read from, without its `type` key.
    pub fn table(&self) -> &Map<String, Value> {
        &self.table
    }

    /// What the host's factory made of the table.
    pub fn config(&self) -> &B {
        &self.config
    }
}

impl<B: ?Sized> Clone for CustomConfig<B> {
    fn clone(&self) -> Self {
        CustomConfig {
            type_name: self.type_name.clone(),
            table: self.table.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<B: ?Sized + fmt::Debug> fmt::Debug for CustomConfig<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomConfig")
            .field("type", &self.type_name)
            .field("config", &&*self.config)
            .finish()
    }
}

impl<B: ?Sized> PartialEq for CustomConfig<B> {
    fn eq(&self, other: &Self) -> bool {
        self.type_name == other.type_name && self.table == other.table
    }
}

impl<B: ?Sized> Serialize for CustomConfig<B> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.table.len() + 1))?;
        map.serialize_entry("type", &self.type_name)?;
        for (key, value) in &self.table {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}
