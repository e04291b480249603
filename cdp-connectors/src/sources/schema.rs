//! Column lists in configuration, and the checks every file source applies to a schema.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use cdp_core::record::is_system_column;
use cdp_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::config::ConfigErrors;

/// One column of an explicit schema in configuration.
///
/// ```toml
/// schema = [
///   { name = "user_id", type = "utf8", nullable = false },
///   { name = "amount", type = "float64" },
///   { name = "at", type = "timestamp_us" },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// Column name, as it appears in the file (JSON key, CSV header, Parquet column).
    pub name: String,
    /// Arrow type the values are decoded into.
    #[serde(rename = "type")]
    pub data_type: ColumnType,
    /// Whether the column may be missing or null. Default `true`.
    #[serde(default = "default_true")]
    pub nullable: bool,
}

fn default_true() -> bool {
    true
}

/// The column types a configuration can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ColumnType {
    /// UTF-8 text.
    Utf8,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// `true` / `false`.
    Boolean,
    /// Days since the epoch (`2024-05-01`).
    Date32,
    /// UTC timestamp, millisecond precision (RFC 3339 text in JSON and CSV; zone `+00:00`).
    TimestampMs,
    /// UTC timestamp, microsecond precision (RFC 3339 text in JSON and CSV; zone `+00:00`).
    TimestampUs,
}

impl ColumnType {
    /// The Arrow type this name stands for.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date32 => DataType::Date32,
            // UTC spelled as an offset: arrow resolves named zones only with the chrono-tz
            // database, which the workspace does not build.
            ColumnType::TimestampMs => {
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()))
            }
            ColumnType::TimestampUs => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            }
        }
    }
}

impl ColumnConfig {
    /// Builds the Arrow schema of a column list, rejecting empty lists, duplicate names and
    /// reserved `_cdp_` names.
    pub fn to_schema(columns: &[ColumnConfig]) -> Result<SchemaRef> {
        if columns.is_empty() {
            return Err(Error::Config(
                "`schema` lists no columns; omit it to infer the schema from the data".into(),
            ));
        }
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.data_type(), c.nullable))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        check_user_schema(&schema)?;
        Ok(schema)
    }
}

/// Records what is wrong with a column list from configuration, with key paths under
/// `schema`: the same rules as [`ColumnConfig::to_schema`], every problem at once.
pub(crate) fn check_columns(columns: &[ColumnConfig], errors: &mut ConfigErrors) {
    if columns.is_empty() {
        errors.push(
            "schema",
            "lists no columns; omit it to infer the schema from the data",
        );
    }
    let mut seen = std::collections::HashMap::new();
    for (i, column) in columns.iter().enumerate() {
        let path = format!("schema[{i}].name");
        let name = column.name.as_str();
        let field = Field::new(name, column.data_type.data_type(), column.nullable);
        if name.is_empty() {
            errors.push(path, "must not be empty");
        } else if is_system_column(name) && !is_carried_system_column(&field) {
            errors.push(
                path,
                format!(
                    "column `{name}` uses the reserved prefix `_cdp_`: the runtime adds those \
                     columns itself; rename the column in the data or leave it out of the schema"
                ),
            );
        } else if let Some(first) = seen.get(name) {
            errors.push(
                path,
                format!("column `{name}` appears twice in the schema (also schema[{first}])"),
            );
        } else {
            seen.insert(name, i);
        }
    }
}

/// Rejects schemas a source may not emit: reserved `_cdp_` columns (but for a `UInt8`
/// `_cdp_op` and a `Utf8` `_cdp_profile_id`, which the runtime keeps) and duplicate names.
pub(crate) fn check_user_schema(schema: &Schema) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for field in schema.fields() {
        let name = field.name();
        if is_system_column(name) && !is_carried_system_column(field) {
            return Err(Error::Config(format!(
                "column `{name}` uses the reserved prefix `_cdp_`: the runtime adds those \
                 columns itself; rename the column in the data or leave it out of the schema"
            )));
        }
        if !seen.insert(name.as_str()) {
            return Err(Error::Config(format!(
                "column `{name}` appears twice in the schema"
            )));
        }
    }
    Ok(())
}

/// System columns a source may carry from its data, with the types the runtime expects:
/// the row operation (tombstones, as written to a landing zone) and a profile id, both kept
/// when the runtime stamps the batch.
pub(crate) fn is_carried_system_column(field: &Field) -> bool {
    match field.name().as_str() {
        cdp_core::OP_COLUMN => field.data_type() == &DataType::UInt8,
        cdp_core::PROFILE_ID_COLUMN => field.data_type() == &DataType::Utf8,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_column_lists() {
        let columns: Vec<ColumnConfig> = serde_json::from_str(
            r#"[{"name":"id","type":"int64","nullable":false},{"name":"at","type":"timestamp_us"}]"#,
        )
        .unwrap();
        let schema = ColumnConfig::to_schema(&columns).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert!(!schema.field(0).is_nullable());
        assert!(schema.field(1).is_nullable());
    }

    #[test]
    fn rejects_reserved_and_duplicate_names() {
        let col = |name: &str| ColumnConfig {
            name: name.into(),
            data_type: ColumnType::Utf8,
            nullable: true,
        };
        let err = ColumnConfig::to_schema(&[col("_cdp_op")]).unwrap_err();
        assert!(err.to_string().contains("_cdp_op"), "{err}");
        assert!(ColumnConfig::to_schema(&[col("a"), col("a")]).is_err());
        assert!(ColumnConfig::to_schema(&[]).is_err());

        let mut errors = ConfigErrors::new();
        check_columns(
            &[col("id"), col("_cdp_op"), col("id"), col(""), col("id")],
            &mut errors,
        );
        let found: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0].starts_with("schema[1].name: column `_cdp_op` uses"),
            "{found:?}"
        );
        assert_eq!(
            found[1],
            "schema[2].name: column `id` appears twice in the schema (also schema[0])"
        );
        assert_eq!(found[2], "schema[3].name: must not be empty");
        assert_eq!(
            found[3],
            "schema[4].name: column `id` appears twice in the schema (also schema[0])"
        );
        let mut errors = ConfigErrors::new();
        check_columns(&[], &mut errors);
        assert_eq!(errors.iter().next().map(|e| e.path()), Some("schema"));
    }
}
