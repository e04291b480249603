//! Connector configurations as a configuration file gives them: `[sources.<name>]` and
//! `[destinations.<name>]` tables tagged by `type`, read through the registry.
//!
//! Every ```toml block of the config doc comments is parsed, validated and built here
//! (the files are read with `include_str!`, so the docs cannot drift from the code). Built
//! with any set of features: what a feature leaves out is skipped, or checked to be refused
//! with the feature named.

// Helpers outside `#[test]` functions panic on failure too; that is how a test fails.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use cdp_connectors::config::{
    BuildDestination, BuildSource, ConfigErrors, ConnectorConfigs, ConnectorRegistry,
    DestinationConfig, SourceConfig, from_table,
};
use cdp_core::memory::{MemoryDestination, MemorySource};
use cdp_core::{Destination, Source};
use serde::Deserialize;
use serde_json::Value;

/// The built-in types, the feature each needs, and whether this build has them.
const SOURCES: [(&str, &str, bool); 6] = [
    ("jsonl", "jsonl", cfg!(feature = "jsonl")),
    ("csv", "csv", cfg!(feature = "csv")),
    ("parquet", "parquet", cfg!(feature = "parquet")),
    ("postgres", "postgres", cfg!(feature = "postgres")),
    ("http", "http", cfg!(feature = "http")),
    ("singer", "singer", cfg!(feature = "singer")),
];
const DESTINATIONS: [(&str, &str, bool); 5] = [
    ("jsonl", "jsonl", cfg!(feature = "jsonl")),
    ("parquet", "parquet", cfg!(feature = "parquet")),
    ("postgres", "postgres", cfg!(feature = "postgres")),
    ("webhook", "http", cfg!(feature = "http")),
    ("singer", "singer", cfg!(feature = "singer")),
];

/// A configuration file's text as the `serde_json::Value` the registry reads.
fn document(text: &str) -> Value {
    toml::from_str(text).unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
}

/// Every problem, one string each.
fn messages(errors: &ConfigErrors) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// The ```toml blocks of the doc comments (`///`, `//!`) of a Rust source file.
#[cfg(any(
    feature = "jsonl",
    feature = "csv",
    feature = "parquet",
    feature = "postgres"
))]
fn toml_blocks(file: &str, source: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in source.lines() {
        let line = line.trim_start();
        let Some(doc) = line
            .strip_prefix("///")
            .or_else(|| line.strip_prefix("//!"))
        else {
            assert!(current.is_none(), "{file}: a toml block is not closed");
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        match current.as_mut() {
            None if doc.trim_end() == "```toml" => current = Some(String::new()),
            None => {}
            Some(_) if doc.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(doc);
                block.push('\n');
            }
        }
    }
    assert!(!blocks.is_empty(), "{file} documents no toml example");
    blocks
}

/// Parses, validates and builds every connector of every toml block of `file`; returns
/// the `(section, type)` of each.
#[cfg(any(
    feature = "jsonl",
    feature = "csv",
    feature = "parquet",
    feature = "postgres"
))]
fn check_examples(file: &str, source: &str) -> Vec<(&'static str, String)> {
    let registry = ConnectorRegistry::new();
    let mut seen = Vec::new();
    for block in toml_blocks(file, source) {
        let connectors = registry
            .parse_connectors(&document(&block))
            .unwrap_or_else(|e| panic!("{file}: example refused:\n{e}\n---\n{block}"));
        assert!(
            !connectors.sources.is_empty() || !connectors.destinations.is_empty(),
            "{file}: example names no connector:\n{block}"
        );
        for (name, config) in &connectors.sources {
            let source = config
                .build()
                .unwrap_or_else(|e| panic!("{file}: sources.{name} does not build: {e}"));
            assert!(!source.name().is_empty());
            seen.push(("sources", config.type_name().to_string()));
        }
        for (name, config) in &connectors.destinations {
            config
                .build()
                .unwrap_or_else(|e| panic!("{file}: destinations.{name} does not build: {e}"));
            seen.push(("destinations", config.type_name().to_string()));
        }
        round_trips(&connectors);
    }
    seen
}

/// A config serializes back to a table that reads as the same config.
#[cfg(any(
    feature = "jsonl",
    feature = "csv",
    feature = "parquet",
    feature = "postgres"
))]
fn round_trips(connectors: &ConnectorConfigs) {
    for config in connectors.sources.values() {
        let text = toml::to_string(config).unwrap();
        let again: SourceConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(&again, config, "{text}");
    }
    for config in connectors.destinations.values() {
        let text = toml::to_string(config).unwrap();
        let again: DestinationConfig =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(&again, config, "{text}");
    }
}

// Building opens no file: every example below points at paths that do not exist.

#[cfg(feature = "jsonl")]
#[test]
fn jsonl_examples_parse_validate_and_build() {
    let seen = check_examples(
        "sources/jsonl/config.rs",
        include_str!("../src/sources/jsonl/config.rs"),
    );
    assert_eq!(seen, [("sources", "jsonl".to_string())]);
    let seen = check_examples(
        "destinations/jsonl/config.rs",
        include_str!("../src/destinations/jsonl/config.rs"),
    );
    assert_eq!(seen, [("destinations", "jsonl".to_string())]);
    // The shared options document themselves on a JSONL table.
    check_examples(
        "sources/file_config.rs",
        include_str!("../src/sources/file_config.rs"),
    );
    check_examples(
        "destinations/file_config.rs",
        include_str!("../src/destinations/file_config.rs"),
    );
    check_examples("config/source.rs", include_str!("../src/config/source.rs"));
}

/// The column-list example is a fragment of a file source's table.
#[cfg(feature = "jsonl")]
#[test]
fn the_column_list_example_is_a_valid_schema() {
    let file = "sources/schema.rs";
    for block in toml_blocks(file, include_str!("../src/sources/schema.rs")) {
        let text = format!("[sources.events]\ntype = \"jsonl\"\npath = \"e.jsonl\"\n{block}");
        let connectors = ConnectorRegistry::new()
            .parse_connectors(&document(&text))
            .unwrap_or_else(|e| panic!("{file}: {e}\n{text}"));
        connectors.sources["events"].build().unwrap();
    }
}

#[cfg(feature = "csv")]
#[test]
fn csv_examples_parse_validate_and_build() {
    let seen = check_examples(
        "sources/csv/config.rs",
        include_str!("../src/sources/csv/config.rs"),
    );
    assert_eq!(seen, [("sources", "csv".to_string())]);
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_examples_parse_validate_and_build() {
    let seen = check_examples(
        "sources/parquet/config.rs",
        include_str!("../src/sources/parquet/config.rs"),
    );
    assert_eq!(seen, [("sources", "parquet".to_string())]);
    let seen = check_examples(
        "destinations/parquet/config.rs",
        include_str!("../src/destinations/parquet/config.rs"),
    );
    assert_eq!(seen, [("destinations", "parquet".to_string())]);
    check_examples(
        "config/destination.rs",
        include_str!("../src/config/destination.rs"),
    );
}

#[cfg(all(feature = "jsonl", feature = "parquet"))]
#[test]
fn the_module_example_parses_validates_and_builds() {
    let seen = check_examples("config/mod.rs", include_str!("../src/config/mod.rs"));
    assert_eq!(
        seen,
        [
            ("sources", "jsonl".to_string()),
            ("destinations", "parquet".to_string())
        ]
    );
}

/// The HTTP examples build without a server and without the secrets they name: building
/// connects to nothing and reads no secret.
#[cfg(feature = "http")]
#[test]
fn http_examples_parse_validate_and_build_without_reading_secrets() {
    let seen = check_examples(
        "sources/http/config.rs",
        include_str!("../src/sources/http/config.rs"),
    );
    assert_eq!(seen, [("sources", "http".to_string())]);
    for (file, text) in [
        ("http/request.rs", include_str!("../src/http/request.rs")),
        ("http/auth.rs", include_str!("../src/http/auth.rs")),
        ("http/secret.rs", include_str!("../src/http/secret.rs")),
    ] {
        let seen = check_examples(file, text);
        assert_eq!(seen, [("sources", "http".to_string())], "{file}");
    }
    let seen = check_examples(
        "destinations/webhook/config.rs",
        include_str!("../src/destinations/webhook/config.rs"),
    );
    assert_eq!(seen, [("destinations", "webhook".to_string())]);
}

/// The Singer examples build without running a tap or a target.
#[cfg(feature = "singer")]
#[test]
fn singer_examples_parse_validate_and_build_without_running_anything() {
    let seen = check_examples(
        "sources/singer/config.rs",
        include_str!("../src/sources/singer/config.rs"),
    );
    assert_eq!(seen, vec![("sources", "singer".to_string()); 2]);
    let seen = check_examples(
        "destinations/singer/config.rs",
        include_str!("../src/destinations/singer/config.rs"),
    );
    assert_eq!(seen, vec![("destinations", "singer".to_string()); 2]);
}

/// The PostgreSQL examples build without a server, without a tokio runtime (connecting
/// needs one) and without the credentials they name in `password_env`: building connects
/// to nothing and reads no secret; the source and destination do when checked or opened.
#[cfg(feature = "postgres")]
#[test]
fn postgres_examples_parse_validate_and_build_without_connecting() {
    // The credentials the examples name are not there.
    for var in ["CRM_PASSWORD", "WAREHOUSE_PASSWORD"] {
        assert!(std::env::var_os(var).is_none(), "{var} is set");
    }
    let seen = check_examples(
        "sources/postgres/config.rs",
        include_str!("../src/sources/postgres/config.rs"),
    );
    assert_eq!(seen, [("sources", "postgres".to_string())]);
    let seen = check_examples(
        "destinations/postgres/config.rs",
        include_str!("../src/destinations/postgres/config.rs"),
    );
    assert_eq!(seen, [("destinations", "postgres".to_string())]);
}

#[cfg(feature = "jsonl")]
#[test]
fn an_unknown_key_is_refused_with_its_path_and_a_suggestion() {
    let errors = ConnectorRegistry::new()
        .parse_sources(&document(
            r#"
            [events]
            type = "jsonl"
            path = "events.jsonl"
            batch_sise = 100
            schema = [{ name = "id", type = "int64", nulable = false }]
            "#,
        ))
        .unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "sources.events.batch_sise: unknown field `batch_sise` (did you mean \
             `batch_size`?), expected one of `path`, `name`, `stream`, `schema`, `batch_size`, \
             `extensions`, `infer_records`, `new_fields`, `type_conflicts`, `overflow_column`",
            "sources.events.schema[0].nulable: unknown field `nulable`, expected one of `name`, \
             `type`, `nullable`",
        ]
    );

    // Read on its own with serde, a table names paths relative to itself.
    let error =
        toml::from_str::<SourceConfig>("type = \"jsonl\"\npath = \"x\"\nbatch_size = \"big\"\n")
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("batch_size: invalid type: string \"big\", expected usize"),
        "{error}"
    );
    // And so does a connector's own config.
    let error = serde_json::from_value::<cdp_connectors::JsonlSourceConfig>(
        serde_json::json!({"path": "x", "extensions": "jsonl"}),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        error,
        "extensions: invalid type: string \"jsonl\", expected a sequence"
    );
}

#[test]
fn an_unknown_type_is_refused_listing_the_known_ones() {
    let errors = ConnectorRegistry::new()
        .parse_connectors(&document(
            r#"
            [sources.web]
            type = "kafak"
            [destinations.lake]
            root = "lake/"
            "#,
        ))
        .unwrap_err();
    let list = |types: &[(&str, &str, bool)]| {
        let known: Vec<String> = types
            .iter()
            .filter(|(_, _, built)| *built)
            .map(|(name, _, _)| format!("`{name}`"))
            .collect();
        let mut known = known.clone();
        known.sort();
        let missing: Vec<String> = types
            .iter()
            .filter(|(_, _, built)| !*built)
            .map(|(name, feature, _)| format!("`{name}` (feature `{feature}`)"))
            .collect();
        let known = if known.is_empty() {
            "this build reads no type".to_string()
        } else {
            format!("known types: {}", known.join(", "))
        };
        if missing.is_empty() {
            known
        } else {
            format!("{known}; not in this build: {}", missing.join(", "))
        }
    };
    assert_eq!(
        messages(&errors),
        [
            format!(
                "sources.web.type: unknown source type `kafak`; {}",
                list(&SOURCES)
            ),
            format!(
                "destinations.lake.type: missing: every destination names its type; {}",
                list(&DESTINATIONS)
            ),
        ]
    );

    let errors = ConnectorRegistry::new()
        .parse_sources(&document("[a]\ntype = \"jsnl\"\n[b]\ntype = 3\n"))
        .unwrap_err();
    let found = messages(&errors);
    assert!(
        found[0].starts_with("sources.a.type: unknown source type `jsnl` (did you mean `jsonl`?)"),
        "{found:?}"
    );
    assert!(
        found[1]
            .starts_with("sources.b.type: expected a string naming the source type, got a number"),
        "{found:?}"
    );
}

/// A type this build leaves out is refused with the feature that brings it in.
#[test]
fn a_type_compiled_out_names_its_feature() {
    let registry = ConnectorRegistry::new();
    for (name, feature, built) in SOURCES {
        let result = registry.parse_source("x", &document(&format!("type = \"{name}\"")));
        if !built {
            assert_eq!(
                result.unwrap_err().to_string(),
                format!(
                    "sources.x.type: source type `{name}` needs the `{feature}` feature of \
                     cdp-connectors, which this build does not have"
                )
            );
        }
    }
    for (name, feature, built) in DESTINATIONS {
        let result = registry.parse_destination("x", &document(&format!("type = \"{name}\"")));
        if !built {
            assert!(
                result
                    .unwrap_err()
                    .to_string()
                    .contains(&format!("needs the `{feature}` feature")),
            );
        }
    }
}

#[cfg(all(feature = "jsonl", feature = "parquet"))]
#[test]
fn every_problem_of_every_table_is_reported_at_once() {
    let errors = ConnectorRegistry::new()
        .parse_connectors(&document(
            r#"
            [sources.events]
            type = "jsonl"
            path = ""
            batch_size = 0
            schema = [
              { name = "id", type = "int64" },
              { name = "_cdp_source", type = "utf8" },
              { name = "id", type = "utf8" },
            ]

            [sources.good]
            type = "jsonl"
            path = "good.jsonl"

            [sources."my orders"]
            type = "parquet"
            path = "orders/"
            extensions = [".parquet"]

            [destinations.lake]
            type = "parquet"
            root = "lake/"
            compression = "lz4"
            max_file_bytes = 0
            "#,
        ))
        .unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "sources.events.path: must name a file or a directory",
            "sources.events.batch_size: must be at least 1",
            "sources.events.schema[1].name: column `_cdp_source` uses the reserved prefix \
             `_cdp_`: the runtime adds those columns itself; rename the column in the data or \
             leave it out of the schema",
            "sources.events.schema[2].name: column `id` appears twice in the schema (also \
             schema[0])",
            "sources.\"my orders\".extensions[0]: write `parquet`, without the dot",
            "destinations.lake.compression: unknown variant `lz4`, expected `zstd` or `snappy`",
        ]
    );
}

#[cfg(feature = "csv")]
#[test]
fn format_options_are_checked_with_their_paths() {
    let errors = ConnectorRegistry::new()
        .parse_source(
            "users",
            &document("type = \"csv\"\npath = \"u.csv\"\ndelimiter = \"→\"\ninfer_records = 0\n"),
        )
        .unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "sources.users.infer_records: must be at least 1 when no schema is given",
            "sources.users.delimiter: must be one ASCII character other than a line break, got \
             '→'",
        ]
    );
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_settings_are_checked_with_their_paths_without_connecting() {
    let errors = ConnectorRegistry::new()
        .parse_connectors(&document(
            r#"
            [sources.crm]
            type = "postgres"
            tables = ["customers"]
            page_size = 0
            [sources.crm.connection]
            url = "postgres://etl@db:port/crm"
            [sources.crm.streams.orders]
            sync_mode = "incremental_dedup"

            [destinations.warehouse]
            type = "postgres"
            fillfactor = 101
            [destinations.warehouse.connection]
            url_env = "CDP_TEST_SURELY_UNSET_URL"
            "#,
        ))
        .unwrap_err();
    let found = messages(&errors);
    assert_eq!(found.len(), 5, "{found:#?}");
    assert!(
        found[0].starts_with(
            "sources.crm.connection.url: invalid connection URL `postgres://etl@db:port/crm`"
        ),
        "{found:#?}"
    );
    assert_eq!(
        found[1..],
        [
            "sources.crm.streams.orders: `orders` is not in `tables`, so it is never read",
            "sources.crm.streams.orders.sync_mode: `incremental_dedup` needs a `cursor_field`",
            "sources.crm.page_size: must be at least 1",
            "destinations.warehouse.fillfactor: must be between 10 and 100, got 101",
        ]
    );
}

// A host's own connector types.

/// A host's source config: `deny_unknown_fields`, a nested table, a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSourceConfig {
    url: String,
    stream: String,
    #[serde(default = "default_page_size")]
    page_size: usize,
    #[serde(default)]
    auth: Option<ApiAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiAuth {
    token_env: String,
}

fn default_page_size() -> usize {
    100
}

impl BuildSource for ApiSourceConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        if !self.url.starts_with("https://") {
            errors.push("url", "must start with https://");
        }
        if !(1..=1000).contains(&self.page_size) {
            errors.push("page_size", "must be between 1 and 1000");
        }
        if let Some(auth) = &self.auth
            && auth.token_env.is_empty()
        {
            errors.push("auth.token_env", "must name an environment variable");
        }
        errors.into_result()
    }

    fn build(&self) -> cdp_core::Result<Box<dyn Source>> {
        self.validate()?;
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))])
            .map_err(|e| cdp_core::Error::external("my_api", e))?;
        Ok(Box::new(MemorySource::new(&self.stream, vec![batch])))
    }
}

/// A host's destination config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkConfig {
    label: String,
}

impl BuildDestination for SinkConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        Ok(())
    }

    fn build(&self) -> cdp_core::Result<Box<dyn Destination>> {
        Ok(Box::new(MemoryDestination::new(&self.label)))
    }
}

fn host_registry() -> ConnectorRegistry {
    let mut registry = ConnectorRegistry::new();
    registry
        .register_source("my_api", |table| {
            Ok(Box::new(from_table::<ApiSourceConfig>(table)?))
        })
        .register_destination_type::<SinkConfig>("my_sink");
    registry
}

#[tokio::test]
async fn a_custom_connector_type_is_parsed_and_built() {
    let registry = host_registry();
    assert!(registry.source_types().contains(&"my_api"));
    assert!(registry.destination_types().contains(&"my_sink"));
    let connectors = registry
        .parse_connectors(&document(
            r#"
            [sources.orders]
            type = "my_api"
            url = "https://api.example.com/orders"
            stream = "orders"
            [sources.orders.auth]
            token_env = "API_TOKEN"

            [destinations.sink]
            type = "my_sink"
            label = "memory"
            "#,
        ))
        .unwrap();
    let config = &connectors.sources["orders"];
    assert_eq!(config.type_name(), "my_api");
    let SourceConfig::Custom(custom) = config else {
        panic!("not a custom config: {config:?}");
    };
    assert_eq!(custom.table()["url"], "https://api.example.com/orders");
    let source = config.build().unwrap();
    assert_eq!(source.discover().await.unwrap().streams[0].name, "orders");
    let destination = connectors.destinations["sink"].build().unwrap();
    assert_eq!(destination.name(), "memory");

    // It writes back as the table it was read from, `type` included.
    let text = toml::to_string(config).unwrap();
    assert!(text.starts_with("type = \"my_api\"\n"), "{text}");
    let again = registry.parse_source("orders", &document(&text)).unwrap();
    assert_eq!(&again, config);
}

#[test]
fn a_custom_connector_refuses_unknown_keys_and_bad_values_with_their_paths() {
    let registry = host_registry();
    let errors = registry
        .parse_connectors(&document(
            r#"
            [sources.orders]
            type = "my_api"
            url = "https://api.example.com/orders"
            stream = "orders"
            page_sise = 50
            [sources.orders.auth]
            token_env = "API_TOKEN"
            token = "s3cret"

            [sources.ads]
            type = "my_api"
            url = "http://ads.example.com"
            stream = "ads"
            page_size = 5000

            [destinations.sink]
            type = "my_sink"
            lable = "memory"
            "#,
        ))
        .unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "sources.ads.url: must start with https://",
            "sources.ads.page_size: must be between 1 and 1000",
            "sources.orders.page_sise: unknown field `page_sise` (did you mean `page_size`?), \
             expected one of `url`, `stream`, `page_size`, `auth`",
            "sources.orders.auth.token: unknown field `token`, expected `token_env`",
            "destinations.sink.lable: unknown field `lable` (did you mean `label`?), expected \
             `label`",
            "destinations.sink: missing field `label`",
        ]
    );

    // Without the host's registration the type is unknown, and the host's types are listed
    // once registered.
    let error = ConnectorRegistry::new()
        .parse_source("orders", &document("type = \"my_api\""))
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown source type `my_api`"), "{error}");
    let error = registry
        .parse_source("orders", &document("type = \"my_apl\""))
        .unwrap_err()
        .to_string();
    assert!(error.contains("(did you mean `my_api`?)"), "{error}");
    assert!(error.contains("`my_api`"), "{error}");
}

#[test]
fn sections_must_be_tables_and_may_be_missing() {
    let registry = ConnectorRegistry::new();
    assert_eq!(
        registry.parse_connectors(&document("[pipeline]\nname = \"x\"\n")),
        Ok(ConnectorConfigs::default())
    );
    let errors = registry
        .parse_connectors(&document("sources = 3\n[destinations]\nlake = \"x\"\n"))
        .unwrap_err();
    assert_eq!(
        messages(&errors),
        [
            "sources: expected a table of named sources (`[sources.<name>]`), got a number",
            "destinations.lake: expected a table with a `type` key, got a string",
        ]
    );
}

#[test]
fn configs_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SourceConfig>();
    assert_send_sync::<DestinationConfig>();
    assert_send_sync::<ConnectorRegistry>();
    assert_send_sync::<ConfigErrors>();
}
