//! Configuration of the declarative HTTP source.

use std::collections::{BTreeMap, HashSet};

use cdp_core::{Result, Source};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::HttpSource;
use super::cursor::{CursorFormat, CursorKind, parse_instant};
use super::records::RecordFilter;
use crate::config::{BuildSource, ConfigErrors, from_table_parts};
use crate::http::HttpOptions;
use crate::sources::ColumnConfig;
use crate::sources::schema::check_columns;
use crate::sources::schemaless::{DEFAULT_OVERFLOW_COLUMN, DriftPolicy, NewFields, TypeConflicts};

/// Reads records from a REST API, one stream per endpoint: the source's own keys
/// ([`HttpSourceOptions`], with its [`streams`](HttpStreamConfig)) and the client keys
/// every HTTP connector shares ([`HttpOptions`]: auth, headers, timeouts, retries, rate
/// limit, actions per status).
///
/// A Stripe-like list API, paged by the id of the last record and read incrementally by
/// creation time:
///
/// ```toml
/// [sources.billing]
/// type = "http"
/// base_url = "https://api.example.com/v1"
/// auth = { type = "bearer", token = { env = "BILLING_API_KEY" } }
/// rate_limit = { per_second = 25, burst = 25 }
///
/// [[sources.billing.streams]]
/// name = "customers"
/// path = "/customers"
/// records = "/data"
/// primary_key = ["id"]
/// page_size = { param = "limit", size = 100 }
/// paginate = { type = "cursor", param = "starting_after", last_record = "/id", has_more = "/has_more" }
/// incremental = { cursor_field = "/created", kind = "integer", param = "created[gte]" }
///
/// [[sources.billing.streams]]
/// name = "invoices"                     # a substream: one request series per customer
/// path = "/customers/{parent.id}/invoices"
/// records = "/data"
/// parent = { stream = "customers", fields = { id = "/id" } }
/// paginate = { type = "next_url", pointer = "/next" }
/// nested = "flatten"                    # {"total":{"amount":1}} becomes total_amount
/// incremental = { cursor_field = "/updated", param = "updated_since", start = "2024-01-01T00:00:00Z", lookback = 3600, window = 604800, end_param = "updated_before" }
///
/// [[sources.billing.streams]]
/// name = "events"
/// path = "/accounts/{account}/events"
/// partitions = [{ account = "acct_eu" }, { account = "acct_us" }]
/// paginate = { type = "page_number", param = "page" }
/// filter = { field = "/type", not_equals = "test" }
/// total = "/total_count"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpSourceConfig {
    /// The source's own keys.
    #[serde(flatten)]
    pub source: HttpSourceOptions,
    /// The client keys every HTTP connector shares.
    #[serde(flatten)]
    pub http: HttpOptions,
}

/// The HTTP source's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceOptions {
    /// The API's root; stream paths are joined to it.
    pub base_url: String,
    /// Instance name (`_cdp_source`). Default `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Query parameters sent with every request of every stream.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// The streams, one per endpoint.
    pub streams: Vec<HttpStreamConfig>,
    /// What happens to a key (at any depth) a stream's schema has no field for: `evolve`
    /// (a schema change), `overflow` (kept in `overflow_column`), `dead_letter`. Default
    /// `evolve`. Nothing is dropped.
    #[serde(default)]
    pub new_fields: NewFields,
    /// What happens to a value whose type does not fit its field: `widen` or
    /// `dead_letter`. Default `widen`.
    #[serde(default)]
    pub type_conflicts: TypeConflicts,
    /// The text column unknown keys go to with `new_fields = "overflow"`. Default
    /// `_overflow`.
    #[serde(default = "default_overflow_column")]
    pub overflow_column: String,
}

fn default_overflow_column() -> String {
    DEFAULT_OVERFLOW_COLUMN.to_string()
}

/// One endpoint read as a stream (`[[sources.<name>.streams]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStreamConfig {
    /// The stream name.
    pub name: String,
    /// The path, joined to `base_url`; `{key}` is replaced by the partition's value of
    /// `key`, `{parent.key}` by the parent record's (both URL-encoded).
    pub path: String,
    /// Query parameters of this stream (values may use the same `{…}` placeholders).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// Where the records are in a response: a JSON pointer (`/data`, `/results`) to a list
    /// (or one object). Default: the whole body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub records: String,
    /// Keeps only the records that pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<RecordFilter>,
    /// Columns that identify a record, for the catalog (destinations upsert on them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// The columns and types; omit to infer them from the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Vec<ColumnConfig>>,
    /// Nested objects: `struct` keeps them as Arrow structs, `flatten` spreads them into
    /// top-level columns joined by `flatten_separator`. Default `struct`.
    #[serde(default)]
    pub nested: Nested,
    /// The separator of flattened names. Default `_`.
    #[serde(default = "default_separator")]
    pub flatten_separator: String,
    /// How to get the next page. Default: one page.
    #[serde(default, skip_serializing_if = "Pagination::is_none")]
    pub paginate: Pagination,
    /// The page-size parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<PageSize>,
    /// A JSON pointer to the total number of records: paging stops once that many were
    /// read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    /// Read only what is new since the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalConfig>,
    /// Partitions (an account, a region): each is read with its values in the path and
    /// parameters, and keeps its own state in the checkpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<BTreeMap<String, String>>,
    /// Makes this a substream: one partition per record of another stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentConfig>,
}

fn default_separator() -> String {
    "_".into()
}

/// How nested objects become columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nested {
    /// Kept as Arrow structs.
    #[default]
    Struct,
    /// Spread into top-level columns.
    Flatten,
}

/// How the next page is asked for (`paginate = { type = "…", … }`). Paging stops at an
/// empty page, when the next cursor or URL is missing, when `has_more` is false, or once
/// `total` records were read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One request; no paging.
    #[default]
    None,
    /// A cursor sent back as `param`: read from the body at `cursor` (a JSON pointer, as
    /// `/paging/next/after`), or from the last record at `last_record` (`/id`, as
    /// `starting_after`). `has_more` points to a boolean saying whether another page
    /// follows.
    Cursor {
        /// The request parameter the cursor goes in.
        param: String,
        /// Where the next cursor is in the body.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
        /// Where the next cursor is in the last record of the page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_record: Option<String>,
        /// Where a "more pages follow" boolean is in the body.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        has_more: Option<String>,
    },
    /// The next page's URL, in the body at `pointer` (absolute, or relative to the base).
    NextUrl {
        /// Where the URL is.
        pointer: String,
    },
    /// The next page's URL in the `Link` header (`rel="next"`).
    LinkHeader,
    /// An offset parameter advanced by the records of each page.
    Offset {
        /// The parameter. Default `offset`.
        #[serde(default = "default_offset_param")]
        param: String,
    },
    /// A page number.
    PageNumber {
        /// The parameter. Default `page`.
        #[serde(default = "default_page_param")]
        param: String,
        /// The first page's number. Default 1.
        #[serde(default = "default_first_page")]
        start: u64,
    },
}

fn default_offset_param() -> String {
    "offset".into()
}

fn default_page_param() -> String {
    "page".into()
}

fn default_first_page() -> u64 {
    1
}

impl Pagination {
    fn is_none(&self) -> bool {
        *self == Pagination::None
    }
}

/// The page-size parameter: `page_size = { param = "limit", size = 100 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageSize {
    /// The parameter.
    pub param: String,
    /// Records per page.
    pub size: u64,
}

/// Incremental reads: a cursor field in the records, sent back as a parameter.
///
/// Each sync asks for records from the checkpoint's cursor on (`param`, inclusive), or
/// from `start` on the first sync, minus `lookback`; with `window` (datetime cursors), it
/// walks date-sliced windows up to now, sending each window's end as `end_param`, so a
/// backfill proceeds in bounded requests. Records outside the asked range are skipped on
/// the client too. A record whose cursor equals the checkpoint's and that was emitted
/// already (its content is compared) is not emitted again, yet a record sharing that
/// value that was not (it arrived later, or sat on the next page) is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    /// The cursor field, as a JSON pointer into the record (`/updated_at`).
    pub cursor_field: String,
    /// What it holds. Default `datetime`.
    #[serde(default)]
    pub kind: CursorKind,
    /// The request parameter of the lower bound (inclusive). Omit it for an API that
    /// cannot filter: everything is paged and only new records are emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// The request parameter of a window's end (exclusive), with `window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_param: Option<String>,
    /// How a datetime goes in a parameter: `rfc3339`, `unix`, `unix_ms`, `date`. Default
    /// `rfc3339`.
    #[serde(default)]
    pub format: CursorFormat,
    /// Where the first sync starts (RFC 3339 or a date; a number for integers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// How far before the checkpoint each sync starts again, in the cursor's units
    /// (seconds for datetimes), to catch records that arrive late. Records inside it are
    /// read again (destinations upsert them by key). Default 0.
    #[serde(default)]
    pub lookback: u64,
    /// Reads in windows this wide, in seconds, each its own request series (datetime
    /// cursors, with a `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
}

/// A substream's parent: `parent = { stream = "customers", fields = { id = "/id" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentConfig {
    /// The parent stream (another stream of this source).
    pub stream: String,
    /// Values taken from each parent record (JSON pointers), used as `{parent.<name>}`.
    pub fields: BTreeMap<String, String>,
}

impl HttpSourceConfig {
    /// Reads one source table; errors name key paths relative to it.
    pub fn from_table(table: &Value) -> Result<Self, ConfigErrors> {
        let (source, http) = from_table_parts::<HttpSourceOptions, HttpOptions>(table)?;
        Ok(HttpSourceConfig { source, http })
    }

    /// The schemaless settings.
    pub(crate) fn drift(&self) -> DriftPolicy {
        DriftPolicy {
            new_fields: self.source.new_fields,
            type_conflicts: self.source.type_conflicts,
            overflow_column: self.source.overflow_column.clone(),
        }
    }

    /// Checks the values without side effects.
    pub(crate) fn check(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        self.http.check(&mut errors);
        let source = &self.source;
        match reqwest::Url::parse(&source.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => errors.push(
                "base_url",
                format!("`{}` is not an absolute http(s) URL", source.base_url),
            ),
        }
        if source.name.as_deref() == Some("") {
            errors.push("name", "must not be empty; omit it for the default");
        }
        if let Some(problem) = self.drift().overflow_problem() {
            errors.push("overflow_column", problem);
        }
        if source.streams.is_empty() {
            errors.push("streams", "lists no stream");
        }
        let mut seen = HashSet::new();
        for (i, stream) in source.streams.iter().enumerate() {
            let at = |key: &str| format!("streams[{i}].{key}");
            if stream.name.is_empty() {
                errors.push(at("name"), "must not be empty");
            } else if !seen.insert(stream.name.as_str()) {
                errors.push(
                    at("name"),
                    format!("stream `{}` appears twice", stream.name),
                );
            }
            check_stream(stream, &source.streams, &at, &mut errors);
        }
        errors.into_result()
    }

    /// Validates, then builds the source (connecting to nothing).
    pub fn build_source(&self) -> Result<HttpSource> {
        self.check()?;
        Ok(HttpSource::from_config(self.clone()))
    }
}

fn check_stream(
    stream: &HttpStreamConfig,
    streams: &[HttpStreamConfig],
    at: &dyn Fn(&str) -> String,
    errors: &mut ConfigErrors,
) {
    let pointer = |key: String, value: &str, errors: &mut ConfigErrors| {
        if !value.is_empty() && !value.starts_with('/') {
            errors.push(
                key,
                format!("`{value}` is not a JSON pointer: write `/{value}`"),
            );
        }
    };
    pointer(at("records"), &stream.records, errors);
    if let Some(total) = &stream.total {
        pointer(at("total"), total, errors);
    }
    if let Some(filter) = &stream.filter {
        pointer(at("filter.field"), &filter.field, errors);
        if filter.tests() != 1 {
            errors.push(
                at("filter"),
                "give exactly one of `equals`, `not_equals`, `one_of`, `exists`",
            );
        }
    }
    if let Some(columns) = &stream.schema {
        let mut inner = ConfigErrors::new();
        check_columns(columns, &mut inner);
        errors.extend_within(at("").trim_end_matches('.'), inner);
    }
    if stream.flatten_separator.is_empty() {
        errors.push(at("flatten_separator"), "must not be empty");
    }
    if let Some(size) = &stream.page_size
        && (size.size == 0 || size.param.is_empty())
    {
        errors.push(
            at("page_size"),
            "needs a `param` and a `size` of at least 1",
        );
    }
    match &stream.paginate {
        Pagination::Cursor {
            param,
            cursor,
            last_record,
            has_more,
        } => {
            if param.is_empty() {
                errors.push(at("paginate.param"), "must name the cursor parameter");
            }
            match (cursor, last_record) {
                (Some(c), None) => pointer(at("paginate.cursor"), c, errors),
                (None, Some(l)) => pointer(at("paginate.last_record"), l, errors),
                _ => errors.push(
                    at("paginate"),
                    "give exactly one of `cursor` (in the body) and `last_record`",
                ),
            }
            if let Some(more) = has_more {
                pointer(at("paginate.has_more"), more, errors);
            }
        }
        Pagination::NextUrl { pointer: p } => pointer(at("paginate.pointer"), p, errors),
        Pagination::Offset { param } | Pagination::PageNumber { param, .. } => {
            if param.is_empty() {
                errors.push(at("paginate.param"), "must not be empty");
            }
            if matches!(stream.paginate, Pagination::Offset { .. }) && stream.page_size.is_none() {
                errors.push(
                    at("page_size"),
                    "offset paging needs a page size, to send as the limit",
                );
            }
        }
        Pagination::None | Pagination::LinkHeader => {}
    }
    if let Some(incremental) = &stream.incremental {
        pointer(
            at("incremental.cursor_field"),
            &incremental.cursor_field,
            errors,
        );
        if incremental.cursor_field.is_empty() {
            errors.push(
                at("incremental.cursor_field"),
                "must point at the cursor field",
            );
        }
        if let Some(start) = &incremental.start {
            let ok = match incremental.kind {
                CursorKind::Datetime => parse_instant(start).is_some(),
                CursorKind::Integer => start.trim().parse::<i64>().is_ok(),
            };
            if !ok {
                errors.push(
                    at("incremental.start"),
                    format!("`{start}` is not a {:?} cursor value", incremental.kind),
                );
            }
        }
        if incremental.window == Some(0) {
            errors.push(at("incremental.window"), "must be at least 1");
        }
        if incremental.window.is_some() && incremental.kind == CursorKind::Integer {
            errors.push(
                at("incremental.window"),
                "windows walk datetime cursors up to now; an integer cursor has no now",
            );
        }
        if incremental.window.is_some() && incremental.start.is_none() {
            errors.push(
                at("incremental.window"),
                "windows need a `start`, where the first sync begins",
            );
        }
        if incremental.end_param.is_some() && incremental.window.is_none() {
            errors.push(at("incremental.end_param"), "is sent only with a `window`");
        }
    }
    if let Some(parent) = &stream.parent {
        if parent.stream == stream.name {
            errors.push(at("parent.stream"), "a stream cannot be its own parent");
        } else {
            match streams.iter().find(|s| s.name == parent.stream) {
                None => errors.push(
                    at("parent.stream"),
                    format!("no stream `{}` in this source", parent.stream),
                ),
                Some(found) if found.parent.is_some() => errors.push(
                    at("parent.stream"),
                    format!(
                        "`{}` is a substream itself; a parent must be a stream of its own",
                        parent.stream
                    ),
                ),
                Some(_) => {}
            }
        }
        if parent.fields.is_empty() {
            errors.push(at("parent.fields"), "names no field of the parent record");
        }
        for (name, p) in &parent.fields {
            pointer(at(&format!("parent.fields.{name}")), p, errors);
        }
        if !stream.partitions.is_empty() {
            errors.push(
                at("partitions"),
                "a substream's partitions are its parent's records; give `partitions` to the parent",
            );
        }
    }
}

impl BuildSource for HttpSourceConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        self.check()
    }

    fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(self.build_source()?))
    }
}

impl<'de> Deserialize<'de> for HttpSourceConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = Value::deserialize(deserializer)?;
        HttpSourceConfig::from_table(&table).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_named_by_their_key_paths() {
        let table: Value = toml::from_str(
            r#"
            base_url = "api.example.com"
            [[streams]]
            name = "a"
            path = "/a"
            records = "data"
            incremental = { cursor_field = "/n", kind = "integer", window = 10 }
            [[streams]]
            name = "b"
            path = "/a/{parent.id}/b"
            parent = { stream = "a", fields = { id = "/id" } }
            [[streams]]
            name = "c"
            path = "/b/{parent.id}/c"
            parent = { stream = "b", fields = { id = "/id" } }
            paginate = { type = "cursor", param = "after" }
            "#,
        )
        .unwrap();
        let errors = HttpSourceConfig::from_table(&table)
            .unwrap()
            .check()
            .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path()).collect();
        assert_eq!(
            paths,
            [
                "base_url",
                "streams[0].records",
                "streams[0].incremental.window",
                "streams[0].incremental.window",
                "streams[2].paginate",
                "streams[2].parent.stream",
            ],
            "{errors}"
        );
    }
}
