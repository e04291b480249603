//! [`ConnectorRegistry`]: connector types by name, built-in and registered by the host.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::custom::CustomConfig;
use super::destination::{BuildDestination, DestinationConfig};
use super::error::{ConfigErrors, key_segment};
use super::source::{BuildSource, SourceConfig};
use super::table::{from_table, kind, suggest};

/// Reads one table (without its `type` key) of a given type into a config; the type name
/// is passed for the configs that keep it.
type Parser<C> = Arc<dyn Fn(&str, &Map<String, Value>) -> Result<C, ConfigErrors> + Send + Sync>;

/// What a config read from a table is checked with before a registry hands it out.
pub(crate) trait Validate {
    fn validate(&self) -> Result<(), ConfigErrors>;
}

/// Connector types by name, for sources and destinations: the built-in ones of this build,
/// and those a host registers. A configuration file's `[sources.<name>]` and
/// `[destinations.<name>]` tables are read through it, so a host's connector is configured
/// like a built-in one (`type = "my_api"`) and refuses unknown keys the same way.
///
/// Tables are `serde_json::Value`s: every serde format reads into one (`toml::from_str`,
/// `serde_json::from_str`, YAML, a settings service), serde_json is a dependency of every
/// `cdp` crate already (state cursors are JSON) where TOML is not, and a `Value` is
/// deserialized by reference, which is what lets errors name key paths. TOML datetimes
/// arrive as the toml crate's private `{"$__toml_private_datetime": "…"}` table; no
/// built-in connector takes one, and a custom one can take a string.
///
/// ```
/// use cdp_connectors::config::{BuildSource, ConfigErrors, ConnectorRegistry, from_table};
/// use serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct ApiConfig {
///     url: String,
/// }
///
/// impl BuildSource for ApiConfig {
///     fn validate(&self) -> Result<(), ConfigErrors> {
///         if self.url.starts_with("https://") {
///             Ok(())
///         } else {
///             Err(ConfigErrors::at("url", "must start with https://"))
///         }
///     }
///
///     fn build(&self) -> cdp_core::Result<Box<dyn cdp_core::Source>> {
///         self.validate()?;
///         // A real host builds its API client here; an empty stream stands in for it.
///         Ok(Box::new(cdp_core::memory::MemorySource::new("api", Vec::new())))
///     }
/// }
///
/// let mut registry = ConnectorRegistry::new();
/// registry.register_source("my_api", |table| Ok(Box::new(from_table::<ApiConfig>(table)?)));
///
/// let document = serde_json::json!({
///     "sources": {
///         "crm": {"type": "my_api", "url": "http://api.example.com"},
///         "ads": {"type": "my_api", "url": "https://ads.example.com", "token": "x"},
///         "web": {"type": "kafka"},
///     }
/// });
/// let errors = registry.parse_sources(&document["sources"]).unwrap_err();
/// let paths: Vec<&str> = errors.iter().map(|e| e.path()).collect();
/// assert_eq!(paths, ["sources.ads.token", "sources.crm.url", "sources.web.type"]);
/// ```
#[derive(Clone)]
pub struct ConnectorRegistry {
    pub(crate) sources: Types<SourceConfig>,
    pub(crate) destinations: Types<DestinationConfig>,
}

/// The named sources and destinations of a configuration file, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectorConfigs {
    /// `[sources.<name>]`, by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[destinations.<name>]`, by name.
    pub destinations: BTreeMap<String, DestinationConfig>,
}

/// Registers a built-in type: always known by name and feature (so a build without the
/// feature can say which one to turn on), readable only when the feature is on. Adding a
/// connector adds one line per side below.
macro_rules! builtin {
    ($types:expr, $name:literal, $feature:literal, $variant:path, $config:ty) => {
        $types.features.push(($name, $feature));
        #[cfg(feature = $feature)]
        $types.parsers.insert(
            $name.to_string(),
            Arc::new(|_, table: &Map<String, Value>| {
                <$config>::from_table(&Value::Object(table.clone())).map($variant)
            }),
        );
    };
}

impl ConnectorRegistry {
    /// The built-in types of this build: sources `jsonl`, `csv`, `parquet`, `postgres`,
    /// `http`, `singer` and destinations `jsonl`, `parquet`, `postgres`, `webhook`, `singer`,
    /// each with its cargo feature.
    pub fn new() -> Self {
        let mut sources = Types::new("source", "sources");
        builtin!(
            sources,
            "jsonl",
            "jsonl",
            SourceConfig::Jsonl,
            crate::JsonlSourceConfig
        );
        builtin!(
            sources,
            "csv",
            "csv",
            SourceConfig::Csv,
            crate::CsvSourceConfig
        );
        builtin!(
            sources,
            "parquet",
            "parquet",
            SourceConfig::Parquet,
            crate::ParquetSourceConfig
        );
        builtin!(
            sources,
            "postgres",
            "postgres",
            SourceConfig::Postgres,
            crate::PostgresSourceConfig
        );
        builtin!(
            sources,
            "http",
            "http",
            SourceConfig::Http,
            crate::HttpSourceConfig
        );
        builtin!(
            sources,
            "singer",
            "singer",
            SourceConfig::Singer,
            crate::SingerSourceConfig
        );
        let mut destinations = Types::new("destination", "destinations");
        builtin!(
            destinations,
            "jsonl",
            "jsonl",
            DestinationConfig::Jsonl,
            crate::JsonlDestinationConfig
        );
        builtin!(
            destinations,
            "parquet",
            "parquet",
            DestinationConfig::Parquet,
            crate::ParquetDestinationConfig
        );
        builtin!(
            destinations,
            "postgres",
            "postgres",
            DestinationConfig::Postgres,
            crate::PostgresDestinationConfig
        );
        builtin!(
            destinations,
            "webhook",
            "http",
            DestinationConfig::Webhook,
            crate::WebhookDestinationConfig
        );
        builtin!(
            destinations,
            "singer",
            "singer",
            DestinationConfig::Singer,
            crate::SingerDestinationConfig
        );
        ConnectorRegistry {
            sources,
            destinations,
        }
    }

    /// Registers source type `type_name`: `factory` reads a table of that type (without
    /// its `type` key) into the host's config, usually with [`from_table`] on a
    /// `#[serde(deny_unknown_fields)]` struct so that unknown keys are refused with their
    /// paths. Its configs come out as [`SourceConfig::Custom`]. A type registered under a
    /// built-in name replaces the built-in one.
    pub fn register_source<F>(&mut self, type_name: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn(&Value) -> Result<Box<dyn BuildSource>, ConfigErrors> + Send + Sync + 'static,
    {
        self.sources.parsers.insert(
            type_name.into(),
            Arc::new(move |type_name: &str, table: &Map<String, Value>| {
                let config = factory(&Value::Object(table.clone()))?;
                Ok(SourceConfig::Custom(CustomConfig::new(
                    type_name,
                    table.clone(),
                    Arc::from(config),
                )))
            }),
        );
        self
    }

    /// Registers source type `type_name` read with [`from_table`] into a `T`: the common
    /// case of [`register_source`](Self::register_source).
    pub fn register_source_type<T>(&mut self, type_name: impl Into<String>) -> &mut Self
    where
        T: BuildSource + DeserializeOwned,
    {
        self.register_source(type_name, |table| {
            Ok(Box::new(from_table::<T>(table)?) as Box<dyn BuildSource>)
        })
    }

    /// Registers destination type `type_name`; see
    /// [`register_source`](Self::register_source). Its configs come out as
    /// [`DestinationConfig::Custom`].
    pub fn register_destination<F>(&mut self, type_name: impl Into<String>, factory: F) -> &mut Self
    where
        F: Fn(&Value) -> Result<Box<dyn BuildDestination>, ConfigErrors> + Send + Sync + 'static,
    {
        self.destinations.parsers.insert(
            type_name.into(),
            Arc::new(move |type_name: &str, table: &Map<String, Value>| {
                let config = factory(&Value::Object(table.clone()))?;
                Ok(DestinationConfig::Custom(CustomConfig::new(
                    type_name,
                    table.clone(),
                    Arc::from(config),
                )))
            }),
        );
        self
    }

    /// Registers destination type `type_name` read with [`from_table`] into a `T`.
    pub fn register_destination_type<T>(&mut self, type_name: impl Into<String>) -> &mut Self
    where
        T: BuildDestination + DeserializeOwned,
    {
        self.register_destination(type_name, |table| {
            Ok(Box::new(from_table::<T>(table)?) as Box<dyn BuildDestination>)
        })
    }

    /// The source types this registry reads, sorted.
    pub fn source_types(&self) -> Vec<&str> {
        self.sources.parsers.keys().map(String::as_str).collect()
    }

    /// The destination types this registry reads, sorted.
    pub fn destination_types(&self) -> Vec<&str> {
        self.destinations
            .parsers
            .keys()
            .map(String::as_str)
            .collect()
    }

    /// Parses and validates the table of source `name`; problems are reported with paths
    /// `sources.<name>.…`.
    pub fn parse_source(&self, name: &str, table: &Value) -> Result<SourceConfig, ConfigErrors> {
        self.sources.load(name, table)
    }

    /// Parses and validates a whole `[sources]` table (`sources.<name>` tables by name; a
    /// missing one, `Value::Null`, has none), reporting every problem of every source at
    /// once, each with its key path.
    pub fn parse_sources(
        &self,
        sources: &Value,
    ) -> Result<BTreeMap<String, SourceConfig>, ConfigErrors> {
        self.sources.load_all(sources)
    }

    /// Parses and validates the table of destination `name`; problems are reported with
    /// paths `destinations.<name>.…`.
    pub fn parse_destination(
        &self,
        name: &str,
        table: &Value,
    ) -> Result<DestinationConfig, ConfigErrors> {
        self.destinations.load(name, table)
    }

    /// Parses and validates a whole `[destinations]` table; see
    /// [`parse_sources`](Self::parse_sources).
    pub fn parse_destinations(
        &self,
        destinations: &Value,
    ) -> Result<BTreeMap<String, DestinationConfig>, ConfigErrors> {
        self.destinations.load_all(destinations)
    }

    /// Parses and validates the `sources` and `destinations` tables of a configuration
    /// file, reporting every problem of both at once; other keys of the document are left
    /// to the caller.
    pub fn parse_connectors(&self, document: &Value) -> Result<ConnectorConfigs, ConfigErrors> {
        let sources = self.parse_sources(document.get("sources").unwrap_or(&Value::Null));
        let destinations =
            self.parse_destinations(document.get("destinations").unwrap_or(&Value::Null));
        match (sources, destinations) {
            (Ok(sources), Ok(destinations)) => Ok(ConnectorConfigs {
                sources,
                destinations,
            }),
            (sources, destinations) => {
                let mut errors = ConfigErrors::new();
                errors.extend(sources.err().into_iter().flatten());
                errors.extend(destinations.err().into_iter().flatten());
                Err(errors)
            }
        }
    }
}

impl Default for ConnectorRegistry {
    fn default() -> Self {
        ConnectorRegistry::new()
    }
}

impl fmt::Debug for ConnectorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorRegistry")
            .field("sources", &self.source_types())
            .field("destinations", &self.destination_types())
            .finish()
    }
}

/// The registry of the built-in types, for `SourceConfig::from_table` and `Deserialize`.
pub(crate) fn builtin() -> &'static ConnectorRegistry {
    static BUILTIN: LazyLock<ConnectorRegistry> = LazyLock::new(ConnectorRegistry::new);
    &BUILTIN
}

/// The types of one side (sources or destinations).
pub(crate) struct Types<C> {
    /// `source` or `destination`, for messages.
    kind: &'static str,
    /// `sources` or `destinations`: the table the named configs are in.
    section: &'static str,
    /// Every built-in type with its feature, compiled in or not.
    features: Vec<(&'static str, &'static str)>,
    parsers: BTreeMap<String, Parser<C>>,
}

impl<C> Clone for Types<C> {
    fn clone(&self) -> Self {
        Types {
            kind: self.kind,
            section: self.section,
            features: self.features.clone(),
            parsers: self.parsers.clone(),
        }
    }
}

impl<C: Validate> Types<C> {
    fn new(kind: &'static str, section: &'static str) -> Self {
        Types {
            kind,
            section,
            features: Vec::new(),
            parsers: BTreeMap::new(),
        }
    }

    /// Reads one table by its `type`, without checking values; paths relative to it.
    pub(crate) fn read(&self, table: &Value) -> Result<C, ConfigErrors> {
        let Value::Object(map) = table else {
            return Err(ConfigErrors::at(
                "",
                format!("expected a table with a `type` key, got {}", kind(table)),
            ));
        };
        let type_name = match map.get("type") {
            Some(Value::String(type_name)) => type_name,
            Some(other) => {
                return Err(ConfigErrors::at(
                    "type",
                    format!(
                        "expected a string naming the {} type, got {}; {}",
                        self.kind,
                        kind(other),
                        self.known()
                    ),
                ));
            }
            None => {
                return Err(ConfigErrors::at(
                    "type",
                    format!(
                        "missing: every {} names its type; {}",
                        self.kind,
                        self.known()
                    ),
                ));
            }
        };
        let Some(parser) = self.parsers.get(type_name) else {
            return Err(ConfigErrors::at("type", self.unknown(type_name)));
        };
        let mut rest = map.clone();
        rest.remove("type");
        parser(type_name, &rest)
    }

    /// Reads and validates the table of `name`; paths from the configuration file's root.
    fn load(&self, name: &str, table: &Value) -> Result<C, ConfigErrors> {
        let prefix = format!("{}.{}", self.section, key_segment(name));
        let config = self.read(table).map_err(|e| e.within(&prefix))?;
        config.validate().map_err(|e| e.within(&prefix))?;
        Ok(config)
    }

    fn load_all(&self, tables: &Value) -> Result<BTreeMap<String, C>, ConfigErrors> {
        let tables = match tables {
            Value::Null => return Ok(BTreeMap::new()),
            Value::Object(tables) => tables,
            other => {
                return Err(ConfigErrors::at(
                    self.section,
                    format!(
                        "expected a table of named {} (`[{}.<name>]`), got {}",
                        self.section,
                        self.section,
                        kind(other)
                    ),
                ));
            }
        };
        let mut configs = BTreeMap::new();
        let mut errors = ConfigErrors::new();
        let mut names: Vec<&String> = tables.keys().collect();
        names.sort();
        for name in names {
            match self.load(name, &tables[name]) {
                Ok(config) => {
                    configs.insert(name.clone(), config);
                }
                Err(e) => errors.extend(e),
            }
        }
        errors.into_result().map(|()| configs)
    }

    /// `type_name` is not readable here: why, and what is.
    fn unknown(&self, type_name: &str) -> String {
        if let Some((_, feature)) = self.features.iter().find(|(name, _)| *name == type_name) {
            return format!(
                "{} type `{type_name}` needs the `{feature}` feature of cdp-connectors, which \
                 this build does not have",
                self.kind
            );
        }
        let candidates = self
            .parsers
            .keys()
            .map(String::as_str)
            .chain(self.features.iter().map(|(name, _)| *name));
        let hint = suggest(type_name, candidates)
            .map(|t| format!(" (did you mean `{t}`?)"))
            .unwrap_or_default();
        format!(
            "unknown {} type `{type_name}`{hint}; {}",
            self.kind,
            self.known()
        )
    }

    /// The types readable here, and the built-in ones this build lacks with their features.
    fn known(&self) -> String {
        let list = |names: Vec<String>| names.join(", ");
        let known: Vec<String> = self.parsers.keys().map(|t| format!("`{t}`")).collect();
        let missing: Vec<String> = self
            .features
            .iter()
            .filter(|(name, _)| !self.parsers.contains_key(*name))
            .map(|(name, feature)| format!("`{name}` (feature `{feature}`)"))
            .collect();
        let known = if known.is_empty() {
            "this build reads no type".to_string()
        } else {
            format!("known types: {}", list(known))
        };
        if missing.is_empty() {
            known
        } else {
            format!("{known}; not in this build: {}", list(missing))
        }
    }
}
