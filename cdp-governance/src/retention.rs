//! Retention: how long data of a class or stream may be kept, and a sweeper that removes
//! what is past it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cdp_core::arrow::array::Scalar;
use cdp_core::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray,
};
use cdp_core::arrow::compute::kernels::cmp::lt;
use cdp_core::arrow::compute::{
    cast, filter_record_batch, is_not_null, not, nullif, or_kleene, take,
};
use cdp_core::arrow::datatypes::{DataType, Field, FieldRef, Schema, TimeUnit};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditKind};
use crate::class::DataClass;
use crate::error::{Error, Result};
use crate::path::NestedPath;
use crate::policy::Policy;
use crate::rewrite::{Rewrite, Rows, Visit, rewrite_column};

/// A retention period, written `90d`, `12h`, `2w`, `1y` (365 days), `30m`, `45s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RetentionPeriod {
    seconds: i64,
}

impl RetentionPeriod {
    /// A period of `days` days.
    pub fn days(days: i64) -> Self {
        RetentionPeriod {
            seconds: days.saturating_mul(86_400),
        }
    }

    /// The period as a duration.
    pub fn duration(self) -> Duration {
        Duration::seconds(self.seconds)
    }
}

impl FromStr for RetentionPeriod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = || {
            Error::InvalidPolicy(format!(
                "retention `{s}` is not a period like 90d, 12h, 2w or 1y"
            ))
        };
        let unit = s.chars().last().ok_or_else(bad)?;
        let n: i64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
        let scale = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            'y' => 365 * 86_400,
            _ => return Err(bad()),
        };
        if n < 0 {
            return Err(bad());
        }
        Ok(RetentionPeriod {
            seconds: n.checked_mul(scale).ok_or_else(bad)?,
        })
    }
}

impl TryFrom<String> for RetentionPeriod {
    type Error = Error;

    fn try_from(value: String) -> Result<Self> {
        value.parse()
    }
}

impl From<RetentionPeriod> for String {
    fn from(p: RetentionPeriod) -> Self {
        p.to_string()
    }
}

impl fmt::Display for RetentionPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        for (unit, scale) in [
            ('y', 365 * 86_400),
            ('w', 7 * 86_400),
            ('d', 86_400),
            ('h', 3_600),
            ('m', 60),
        ] {
            if s != 0 && s % scale == 0 {
                return write!(f, "{}{unit}", s / scale);
            }
        }
        write!(f, "{s}s")
    }
}

/// The `[retention]` section of a policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// The column holding each row's time (date or timestamp); default `_cdp_synced_at`.
    #[serde(default)]
    pub time_column: Option<String>,
    /// How long values of a class may be kept; past it they are cleared (set to null).
    #[serde(default)]
    pub classes: BTreeMap<DataClass, RetentionPeriod>,
    /// How long rows of a stream may be kept; past it they are removed.
    #[serde(default)]
    pub streams: BTreeMap<String, RetentionPeriod>,
}

/// What a sweep did to one batch.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The rows that may be kept, with expired values cleared.
    pub batch: RecordBatch,
    /// Rows removed because the stream's retention passed.
    pub rows_removed: usize,
    /// Values cleared per field because the field's class retention passed.
    pub values_cleared: BTreeMap<String, usize>,
    /// Rows without a time, kept because their age is unknown.
    pub rows_undated: usize,
}

/// Applies a policy's retention to stored batches (a landing zone, a table read back).
///
/// Rows older than their stream's retention are removed; values of fields whose class has
/// a shorter retention are cleared in rows older than it. Pure and columnar; the caller
/// writes the result back. Sweeps are recorded in the policy's audit log.
#[derive(Debug, Clone)]
pub struct Sweeper {
    policy: Policy,
}

impl Sweeper {
    /// A sweeper for `policy`'s `[retention]`.
    pub fn new(policy: Policy) -> Self {
        Sweeper { policy }
    }

    /// Sweeps `data` of `stream` as of `now`.
    pub fn sweep(&self, stream: &str, data: &RecordBatch, now: DateTime<Utc>) -> Result<Sweep> {
        let config = &self.policy.config().retention;
        let time_name = config
            .time_column
            .as_deref()
            .unwrap_or(cdp_core::SYNCED_AT_COLUMN);
        let time_column = data.column_by_name(time_name).ok_or_else(|| {
            Error::column(
                time_name,
                format!("stream `{stream}` has no time column for retention"),
            )
        })?;
        let times = as_micros(time_name, time_column)?;
        let older_than = |period: RetentionPeriod| -> Result<BooleanArray> {
            let cutoff = (now - period.duration()).timestamp_micros();
            let cutoff = Scalar::new(TimestampMicrosecondArray::from(vec![cutoff]));
            // Null times compare as null; treated as "not expired" by the kernels below.
            Ok(lt(&times, &cutoff)?)
        };

        let schema = data.schema();
        // The period of every leaf whose class has one, at every depth.
        let mut periods: HashMap<NestedPath, RetentionPeriod> = HashMap::new();
        for (leaf, c) in self
            .policy
            .classifier()
            .classify_leaves(Some(stream), &schema)?
        {
            if leaf.path.is_top_level() && leaf.path.name() == time_name {
                continue;
            }
            if let Some(period) = config.classes.get(&c.class) {
                periods.insert(leaf.path, *period);
            }
        }
        let mut expired_by_period: HashMap<RetentionPeriod, BooleanArray> = HashMap::new();
        for period in periods.values() {
            if !expired_by_period.contains_key(period) {
                expired_by_period.insert(*period, older_than(*period)?);
            }
        }
        let clearing = Clearing {
            periods: &periods,
            expired: &expired_by_period,
            cleared: std::cell::RefCell::new(BTreeMap::new()),
        };
        let mut fields: Vec<Arc<Field>> = Vec::with_capacity(schema.fields().len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (field, column) in schema.fields().iter().zip(data.columns()) {
            let touched = !cdp_core::record::is_system_column(field.name())
                && periods.keys().any(|p| p.column_name() == field.name());
            if !touched {
                fields.push(field.clone());
                columns.push(column.clone());
                continue;
            }
            if let Some((field, Some(column))) = rewrite_column(field, Some(column), &clearing)? {
                fields.push(field);
                columns.push(column);
            }
        }
        let values_cleared = clearing.cleared.into_inner();
        let cleared = RecordBatch::try_new(
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            columns,
        )?;
        let (batch, rows_removed) = match config.streams.get(stream) {
            None => (cleared, 0),
            Some(period) => {
                let expired = older_than(*period)?;
                // Keep rows that are not expired, including undated ones.
                let keep = or_kleene(&not(&expired)?, &not(&is_not_null(&times)?)?)?;
                let kept = filter_record_batch(&cleared, &keep)?;
                let removed = data.num_rows() - kept.num_rows();
                (kept, removed)
            }
        };
        let rows_undated = times.null_count();
        if let Some(log) = self.policy.audit_log()
            && (rows_removed > 0 || !values_cleared.is_empty())
        {
            log.append(AuditEvent::new(
                AuditKind::Retention,
                "retention sweeper",
                stream.to_string(),
                serde_json::json!({
                    "as_of": now.to_rfc3339(),
                    "rows_removed": rows_removed,
                    "values_cleared": values_cleared,
                }),
            ))?;
        }
        Ok(Sweep {
            batch,
            rows_removed,
            values_cleared,
            rows_undated,
        })
    }
}

/// Clears, at every leaf with a period, the values of rows older than it.
struct Clearing<'a> {
    periods: &'a HashMap<NestedPath, RetentionPeriod>,
    expired: &'a HashMap<RetentionPeriod, BooleanArray>,
    cleared: std::cell::RefCell<BTreeMap<String, usize>>,
}

impl Rewrite for Clearing<'_> {
    fn visit(
        &self,
        path: &NestedPath,
        field: &FieldRef,
        array: Option<&ArrayRef>,
        rows: &Rows,
    ) -> Result<Visit> {
        let Some(period) = self.periods.get(path) else {
            return Ok(if self.periods.keys().any(|p| p.starts_with(path)) {
                Visit::Descend
            } else {
                Visit::Keep
            });
        };
        let (Some(array), Some(expired)) = (array, self.expired.get(period)) else {
            return Ok(Visit::Keep);
        };
        // Per element: is the row it belongs to expired?
        let expired = match rows {
            Rows::Same => expired.clone(),
            Rows::Mapped(indices) => take(expired, indices, None)?.as_boolean().clone(),
        };
        let cleared = nullif(array, &expired)?;
        let count = cleared.null_count() - array.null_count();
        if count > 0 {
            *self
                .cleared
                .borrow_mut()
                .entry(path.to_string())
                .or_default() += count;
        }
        let field = Arc::new(field.as_ref().clone().with_nullable(true));
        Ok(Visit::Replace(field, Some(cleared)))
    }

    fn needs_rows(&self) -> bool {
        true
    }
}

fn as_micros(name: &str, column: &ArrayRef) -> Result<TimestampMicrosecondArray> {
    let ok = matches!(
        column.data_type(),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    );
    if !ok {
        return Err(Error::column(
            name,
            format!(
                "retention needs a date or timestamp, found {}",
                column.data_type()
            ),
        ));
    }
    let micros = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    Ok(micros.as_primitive().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_core::arrow::array::StringArray;

    #[test]
    fn periods_parse_and_print() {
        assert_eq!(
            "90d".parse::<RetentionPeriod>().unwrap(),
            RetentionPeriod::days(90)
        );
        assert_eq!("2w".parse::<RetentionPeriod>().unwrap().to_string(), "2w");
        assert_eq!(
            "1y".parse::<RetentionPeriod>().unwrap(),
            RetentionPeriod::days(365)
        );
        assert!("ninety days".parse::<RetentionPeriod>().is_err());
        assert!("-1d".parse::<RetentionPeriod>().is_err());
    }

    #[test]
    fn sweeper_removes_old_rows_and_clears_old_values() {
        let policy = Policy::from_toml(
            r#"
            default_class = "internal"
            [[classify]]
            pattern = "email"
            class = "sensitive"
            [retention]
            time_column = "ts"
            classes = { sensitive = "30d" }
            streams = { events = "365d" }
            "#,
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let day = 86_400_000_000i64;
        let ts = |days_ago: i64| now.timestamp_micros() - days_ago * day;
        let schema = Arc::new(Schema::new(vec![
            Field::new("email", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["new", "old", "ancient", "undated"])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(ts(1)),
                        Some(ts(60)),
                        Some(ts(400)),
                        None,
                    ])
                    .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let sweep = Sweeper::new(policy).sweep("events", &data, now).unwrap();
        assert_eq!(sweep.rows_removed, 1);
        assert_eq!(sweep.rows_undated, 1);
        assert_eq!(sweep.values_cleared.get("email"), Some(&2));
        let email = sweep.batch.column(0).as_string::<i32>();
        assert_eq!(
            email.iter().collect::<Vec<_>>(),
            [Some("new"), None, Some("undated")]
        );
    }

    #[test]
    fn nested_values_are_cleared_in_place_in_structs_and_lists() {
        use cdp_core::arrow::array::{ListArray, StructArray};
        use cdp_core::arrow::buffer::OffsetBuffer;

        let policy = Policy::from_toml(
            r#"
            default_class = "internal"
            [[classify]]
            pattern = "email"
            class = "sensitive"
            [retention]
            time_column = "at"
            classes = { sensitive = "30d" }
            "#,
        )
        .unwrap();
        let now = Utc::now();
        let old = (now - Duration::days(90)).timestamp_micros();
        let new = (now - Duration::days(1)).timestamp_micros();
        let utf8 = |name: &str| Arc::new(Field::new(name, DataType::Utf8, true));
        let traits = StructArray::from(vec![
            (
                utf8("email"),
                Arc::new(StringArray::from(vec!["old@x.io", "new@x.io"])) as ArrayRef,
            ),
            (
                utf8("plan"),
                Arc::new(StringArray::from(vec!["pro", "free"])) as ArrayRef,
            ),
        ]);
        // Row 0 has two contacts, row 1 one.
        let contact = StructArray::from(vec![(
            utf8("email"),
            Arc::new(StringArray::from(vec!["c1@x.io", "c2@x.io", "c3@x.io"])) as ArrayRef,
        )]);
        let item = Arc::new(Field::new("item", contact.data_type().clone(), true));
        let contacts = ListArray::new(
            item,
            OffsetBuffer::from_lengths([2, 1]),
            Arc::new(contact),
            None,
        );
        let data = RecordBatch::try_from_iter([
            (
                "at",
                Arc::new(TimestampMicrosecondArray::from(vec![old, new])) as ArrayRef,
            ),
            ("traits", Arc::new(traits) as ArrayRef),
            ("contacts", Arc::new(contacts) as ArrayRef),
        ])
        .unwrap();
        let sweep = Sweeper::new(policy).sweep("users", &data, now).unwrap();
        assert_eq!(sweep.values_cleared.get("traits.email"), Some(&1));
        assert_eq!(sweep.values_cleared.get("contacts[].email"), Some(&2));
        let traits = sweep.batch.column(1).as_struct();
        assert!(traits.column(0).is_null(0) && traits.column(0).is_valid(1));
        assert_eq!(traits.column(1).null_count(), 0, "plan is kept");
        let contacts = sweep.batch.column(2).as_list::<i32>();
        let emails = contacts.values().as_struct().column(0).clone();
        assert_eq!(
            (emails.is_null(0), emails.is_null(1), emails.is_null(2)),
            (true, true, false)
        );
    }
}
