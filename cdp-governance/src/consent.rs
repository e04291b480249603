//! Consent per profile and purpose, captured from events (Segment's
//! `context.consent.categoryPreferences`) or a consent stream, and a per-destination
//! transform that keeps rows out of destinations whose purposes lack consent.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use cdp_core::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, UInt8Array,
};
use cdp_core::arrow::compute::{cast, filter_record_batch};
use cdp_core::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMicrosecondType};
use cdp_core::{Batch, OP_COLUMN, Op, Transform, TransformOutput};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::policy::Policy;

/// Common purposes. Any string works; these are the ones the docs use.
pub mod purposes {
    /// Measuring and understanding use of the product.
    pub const ANALYTICS: &str = "analytics";
    /// Tailoring the product to the person.
    pub const PERSONALISATION: &str = "personalisation";
    /// Advertising and marketing messages.
    pub const MARKETING: &str = "marketing";
    /// Helping the person when they ask.
    pub const SUPPORT: &str = "support";
}

/// One profile's consent decision for one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    /// Whether the purpose is allowed.
    pub granted: bool,
    /// When the person said so; a later statement replaces an earlier one.
    pub at: DateTime<Utc>,
}

/// What to do with rows of profiles that never stated consent for a purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// Keep them out (opt-in regimes such as the GDPR).
    #[default]
    Deny,
    /// Let them through (opt-out regimes).
    Allow,
}

/// Every decision of one profile, per purpose, oldest first.
type History = BTreeMap<String, Vec<ConsentState>>;

/// Consent by profile key and purpose, shared between capture and enforcement.
///
/// It keeps each profile's history, so enforcement asks what was in force *when the event
/// happened*: a destination worker that runs behind the capture still judges each row by
/// the consent of its time, not by whatever was captured since.
#[derive(Debug, Default)]
pub struct ConsentStore {
    profiles: RwLock<HashMap<String, History>>,
}

impl ConsentStore {
    /// An empty store.
    pub fn new() -> Self {
        ConsentStore::default()
    }

    /// Records a decision made at `at` (decisions may arrive out of order).
    pub fn set(&self, key: &str, purpose: &str, granted: bool, at: DateTime<Utc>) -> Result<()> {
        let mut profiles = self.write()?;
        let history = profiles
            .entry(key.to_string())
            .or_default()
            .entry(purpose.to_string())
            .or_default();
        let index = history.partition_point(|s| s.at <= at);
        history.insert(index, ConsentState { granted, at });
        Ok(())
    }

    /// The latest decision for `key` and `purpose`, if one was recorded.
    pub fn get(&self, key: &str, purpose: &str) -> Result<Option<ConsentState>> {
        Ok(self
            .read()?
            .get(key)
            .and_then(|p| p.get(purpose))
            .and_then(|h| h.last())
            .copied())
    }

    /// The decision in force at `at`.
    pub fn get_at(
        &self,
        key: &str,
        purpose: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ConsentState>> {
        Ok(self
            .read()?
            .get(key)
            .and_then(|p| p.get(purpose))
            .and_then(|h| state_at(h, at)))
    }

    /// The latest decision per purpose for `key`.
    pub fn profile(&self, key: &str) -> Result<BTreeMap<String, ConsentState>> {
        Ok(self
            .read()?
            .get(key)
            .map(|p| {
                p.iter()
                    .filter_map(|(purpose, h)| Some((purpose.clone(), *h.last()?)))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Forgets a profile (on erasure).
    pub fn remove(&self, key: &str) -> Result<bool> {
        Ok(self.write()?.remove(key).is_some())
    }

    /// Records Segment-style preferences: `preferences_column` holds, per row, either a
    /// struct of booleans or a JSON object text (`{"Advertising": false, ...}`), for the
    /// profile in `key_column`. Categories are mapped to purposes by `categories`; unmapped
    /// ones become the lower-cased category name. Each row's decision takes effect at
    /// `time_column`'s value (a date or timestamp), or at `at` without one. Returns the
    /// decisions recorded.
    pub fn record_segment(
        &self,
        data: &RecordBatch,
        key_column: &str,
        preferences_column: &str,
        categories: &BTreeMap<String, String>,
        time_column: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<usize> {
        let times = row_times(data, time_column, at)?;
        let keys = text_column(data, key_column)?;
        let prefs = data
            .column_by_name(preferences_column)
            .ok_or_else(|| Error::column(preferences_column, "missing"))?;
        let purpose_of = |category: &str| {
            categories
                .get(category)
                .cloned()
                .unwrap_or_else(|| category.to_lowercase())
        };
        let mut recorded = 0;
        match prefs.data_type() {
            DataType::Struct(fields) => {
                let prefs = prefs.as_struct();
                for (field, child) in fields.iter().zip(prefs.columns()) {
                    let Some(flags) = child.as_boolean_opt() else {
                        return Err(Error::column(
                            format!("{preferences_column}.{}", field.name()),
                            "consent categories must be booleans",
                        ));
                    };
                    let purpose = purpose_of(field.name());
                    for (row, at) in times.iter().enumerate() {
                        if prefs.is_valid(row) && flags.is_valid(row) && keys.is_valid(row) {
                            self.set(keys.value(row), &purpose, flags.value(row), *at)?;
                            recorded += 1;
                        }
                    }
                }
            }
            _ => {
                let texts = cast(prefs, &DataType::Utf8)?;
                let texts = texts.as_string::<i32>();
                for (row, at) in times.iter().enumerate() {
                    if !(texts.is_valid(row) && keys.is_valid(row)) {
                        continue;
                    }
                    let parsed: BTreeMap<String, serde_json::Value> =
                        serde_json::from_str(texts.value(row))?;
                    for (category, value) in parsed {
                        if let Some(granted) = value.as_bool() {
                            self.set(keys.value(row), &purpose_of(&category), granted, *at)?;
                            recorded += 1;
                        }
                    }
                }
            }
        }
        Ok(recorded)
    }

    /// Records a consent stream in long form: one row per (profile, purpose, granted),
    /// taking effect at `time_column`'s value, or at `at` without one.
    pub fn record_stream(
        &self,
        data: &RecordBatch,
        key_column: &str,
        purpose_column: &str,
        granted_column: &str,
        time_column: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<usize> {
        let times = row_times(data, time_column, at)?;
        let keys = text_column(data, key_column)?;
        let purposes = text_column(data, purpose_column)?;
        let granted = data
            .column_by_name(granted_column)
            .and_then(|c| c.as_boolean_opt().cloned())
            .ok_or_else(|| Error::column(granted_column, "missing or not boolean"))?;
        let mut recorded = 0;
        for (row, at) in times.iter().enumerate() {
            if keys.is_valid(row) && purposes.is_valid(row) && granted.is_valid(row) {
                self.set(
                    keys.value(row),
                    purposes.value(row),
                    granted.value(row),
                    *at,
                )?;
                recorded += 1;
            }
        }
        Ok(recorded)
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, HashMap<String, History>>> {
        self.profiles
            .read()
            .map_err(|_| Error::Audit("consent store lock poisoned".into()))
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, HashMap<String, History>>> {
        self.profiles
            .write()
            .map_err(|_| Error::Audit("consent store lock poisoned".into()))
    }
}

fn state_at(history: &[ConsentState], at: DateTime<Utc>) -> Option<ConsentState> {
    let index = history.partition_point(|s| s.at <= at);
    index.checked_sub(1).map(|i| history[i])
}

/// Per-row times from `column` (a date or timestamp), or `fallback` for every row.
fn row_times(
    data: &RecordBatch,
    column: Option<&str>,
    fallback: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>> {
    let Some(name) = column else {
        return Ok(vec![fallback; data.num_rows()]);
    };
    let values = data
        .column_by_name(name)
        .ok_or_else(|| Error::column(name, "missing time column"))?;
    let micros = cast(values, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let micros = micros.as_primitive::<TimestampMicrosecondType>();
    Ok((0..data.num_rows())
        .map(|row| {
            micros
                .is_valid(row)
                .then(|| DateTime::from_timestamp_micros(micros.value(row)))
                .flatten()
                .unwrap_or(fallback)
        })
        .collect())
}

fn text_column(data: &RecordBatch, name: &str) -> Result<StringArray> {
    let column = data
        .column_by_name(name)
        .ok_or_else(|| Error::column(name, "missing"))?;
    Ok(cast(column, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// A pipeline transform recording consent from the batches passing through, then passing
/// them on unchanged: Segment preferences carried by events, and optionally a dedicated
/// consent stream in long form. Put it before any [`ConsentFilter`].
#[derive(Debug)]
pub struct ConsentCapture {
    store: Arc<ConsentStore>,
    key_column: String,
    preferences_column: String,
    categories: BTreeMap<String, String>,
    time_column: Option<String>,
    /// `(stream, purpose column, granted column)` of a consent stream.
    consent_stream: Option<(String, String, String)>,
}

impl ConsentCapture {
    /// Captures `preferences_column` (e.g. the flattened
    /// `context_consent_categoryPreferences`) for the profile in `key_column`.
    pub fn new(
        store: Arc<ConsentStore>,
        key_column: impl Into<String>,
        preferences_column: impl Into<String>,
    ) -> Self {
        ConsentCapture {
            store,
            key_column: key_column.into(),
            preferences_column: preferences_column.into(),
            categories: BTreeMap::new(),
            time_column: None,
            consent_stream: None,
        }
    }

    /// Maps a consent category (`Advertising`) to a purpose (`marketing`).
    pub fn category(mut self, category: impl Into<String>, purpose: impl Into<String>) -> Self {
        self.categories.insert(category.into(), purpose.into());
        self
    }

    /// Takes each decision's time from this column (the event time) instead of the batch's
    /// sync time.
    pub fn time_column(mut self, column: impl Into<String>) -> Self {
        self.time_column = Some(column.into());
        self
    }

    /// Also records batches of `stream` as a consent stream: one row per profile (the key
    /// column), purpose (`purpose_column`) and decision (`granted_column`, boolean).
    pub fn consent_stream(
        mut self,
        stream: impl Into<String>,
        purpose_column: impl Into<String>,
        granted_column: impl Into<String>,
    ) -> Self {
        self.consent_stream = Some((stream.into(), purpose_column.into(), granted_column.into()));
        self
    }
}

impl Transform for ConsentCapture {
    fn name(&self) -> &str {
        "consent capture"
    }

    fn output_schema(&self, input: &SchemaRef) -> cdp_core::Result<SchemaRef> {
        Ok(input.clone())
    }

    fn apply(&self, batch: Batch) -> cdp_core::Result<TransformOutput> {
        if let Some((stream, purpose, granted)) = &self.consent_stream
            && *batch.stream == **stream
        {
            self.store.record_stream(
                &batch.data,
                &self.key_column,
                purpose,
                granted,
                self.time_column.as_deref(),
                batch.meta.synced_at,
            )?;
            return Ok(TransformOutput::pass(batch));
        }
        let has = |c: &str| batch.data.column_by_name(c).is_some();
        if has(&self.key_column) && has(&self.preferences_column) {
            self.store.record_segment(
                &batch.data,
                &self.key_column,
                &self.preferences_column,
                &self.categories,
                self.time_column.as_deref(),
                batch.meta.synced_at,
            )?;
        }
        Ok(TransformOutput::pass(batch))
    }
}

/// A per-destination transform keeping only rows whose profile consented to every purpose
/// of the destination. Tombstones always pass (deleting needs no consent); rows without a
/// profile key, or with no recorded decision, follow [`Unknown`].
#[derive(Debug)]
pub struct ConsentFilter {
    name: String,
    store: Arc<ConsentStore>,
    key_column: String,
    purposes: Vec<String>,
    unknown: Unknown,
    time_column: Option<String>,
    withheld: AtomicU64,
}

impl ConsentFilter {
    /// A filter for `purposes`, reading the profile key from `key_column`.
    pub fn new(
        store: Arc<ConsentStore>,
        key_column: impl Into<String>,
        purposes: Vec<String>,
    ) -> Self {
        ConsentFilter {
            name: format!("consent for {}", purposes.join(", ")),
            store,
            key_column: key_column.into(),
            purposes,
            unknown: Unknown::Deny,
            time_column: None,
            withheld: AtomicU64::new(0),
        }
    }

    /// Sets what happens to rows without a recorded decision (default: deny).
    pub fn unknown(mut self, unknown: Unknown) -> Self {
        self.unknown = unknown;
        self
    }

    /// Judges each row by the consent in force at this column's time (the event time)
    /// instead of the batch's sync time.
    pub fn time_column(mut self, column: impl Into<String>) -> Self {
        self.time_column = Some(column.into());
        self
    }

    /// Rows kept out so far.
    pub fn withheld(&self) -> u64 {
        self.withheld.load(Ordering::Relaxed)
    }

    /// The rows of `data` allowed through, judged as of each row's time (`at` when no time
    /// column is set).
    pub fn filter(&self, data: &RecordBatch, at: DateTime<Utc>) -> Result<RecordBatch> {
        if self.purposes.is_empty() {
            return Ok(data.clone());
        }
        let times = row_times(data, self.time_column.as_deref(), at)?;
        let rows = data.num_rows();
        let keys: Option<ArrayRef> = data.column_by_name(&self.key_column).cloned();
        let keys = match keys {
            Some(k) => Some(cast(&k, &DataType::Utf8)?.as_string::<i32>().clone()),
            None => None,
        };
        let ops: Option<UInt8Array> = data
            .column_by_name(OP_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<UInt8Array>().cloned());
        let profiles = self.store.read()?;
        let default = self.unknown == Unknown::Allow;
        let keep: BooleanArray = (0..rows)
            .map(|row| {
                if ops
                    .as_ref()
                    .is_some_and(|o| o.is_valid(row) && o.value(row) == Op::Delete as u8)
                {
                    return Some(true);
                }
                let key = keys
                    .as_ref()
                    .filter(|k| k.is_valid(row))
                    .map(|k| k.value(row));
                let consent = key.and_then(|k| profiles.get(k));
                Some(self.purposes.iter().all(|purpose| {
                    consent
                        .and_then(|c| c.get(purpose))
                        .and_then(|h| state_at(h, times[row]))
                        .map_or(default, |state| state.granted)
                }))
            })
            .collect();
        drop(profiles);
        let kept = filter_record_batch(data, &keep)?;
        self.withheld
            .fetch_add((rows - kept.num_rows()) as u64, Ordering::Relaxed);
        Ok(kept)
    }
}

impl Transform for ConsentFilter {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_schema(&self, input: &SchemaRef) -> cdp_core::Result<SchemaRef> {
        Ok(input.clone())
    }

    fn apply(&self, batch: Batch) -> cdp_core::Result<TransformOutput> {
        let data = self.filter(&batch.data, batch.meta.synced_at)?;
        Ok(TransformOutput::pass(Batch { data, ..batch }))
    }
}

impl Policy {
    /// The consent filter for `destination`: its purposes from the policy, the profile key
    /// from `key_column`. Put it before the masking transforms, since masking may hash the
    /// key.
    pub fn consent_filter(
        &self,
        destination: &str,
        store: Arc<ConsentStore>,
        key_column: &str,
    ) -> ConsentFilter {
        ConsentFilter::new(store, key_column, self.purposes(destination))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_core::arrow::array::{BooleanArray, StructArray};
    use cdp_core::arrow::datatypes::{Field, Schema};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn later_decisions_win_and_history_answers_as_of() {
        let store = ConsentStore::new();
        let set = |granted, at| store.set("p1", "marketing", granted, t(at)).unwrap();
        set(true, "2025-01-02T00:00:00Z");
        set(false, "2025-01-01T00:00:00Z");
        assert!(store.get("p1", "marketing").unwrap().unwrap().granted);
        set(false, "2025-01-03T00:00:00Z");
        assert!(!store.get("p1", "marketing").unwrap().unwrap().granted);
        let at = |s| {
            store
                .get_at("p1", "marketing", t(s))
                .unwrap()
                .map(|c| c.granted)
        };
        assert_eq!(at("2024-12-31T00:00:00Z"), None);
        assert_eq!(at("2025-01-01T12:00:00Z"), Some(false));
        assert_eq!(at("2025-01-02T12:00:00Z"), Some(true));
        assert_eq!(at("2025-01-04T00:00:00Z"), Some(false));
    }

    #[test]
    fn consent_stream_batches_are_recorded_and_filtered_by() {
        let store = Arc::new(ConsentStore::new());
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("purpose", DataType::Utf8, false),
            Field::new("granted", DataType::Boolean, false),
        ]));
        let consent = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(StringArray::from(vec!["marketing", "marketing"])),
                Arc::new(BooleanArray::from(vec![true, false])),
            ],
        )
        .unwrap();
        let capture = ConsentCapture::new(store.clone(), "user_id", "unused")
            .consent_stream("consent", "purpose", "granted");
        capture
            .apply(Batch::new("consent", consent, "cmp"))
            .unwrap();
        let events = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "user_id",
                DataType::Utf8,
                true,
            )])),
            vec![Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                Some("c"),
                None,
            ]))],
        )
        .unwrap();
        let filter = ConsentFilter::new(store.clone(), "user_id", vec!["marketing".into()]);
        assert_eq!(filter.filter(&events, Utc::now()).unwrap().num_rows(), 1);
        assert_eq!(filter.withheld(), 3);
        let lenient =
            ConsentFilter::new(store, "user_id", vec!["marketing".into()]).unknown(Unknown::Allow);
        assert_eq!(lenient.filter(&events, Utc::now()).unwrap().num_rows(), 3);
    }

    #[test]
    fn segment_preferences_as_struct_and_as_json() {
        let store = ConsentStore::new();
        let prefs = StructArray::from(vec![
            (
                Arc::new(Field::new("Advertising", DataType::Boolean, true)),
                Arc::new(BooleanArray::from(vec![true, false])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("Analytics", DataType::Boolean, true)),
                Arc::new(BooleanArray::from(vec![true, true])) as ArrayRef,
            ),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("prefs", prefs.data_type().clone(), true),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["a", "b"])), Arc::new(prefs)],
        )
        .unwrap();
        let categories = BTreeMap::from([("Advertising".to_string(), "marketing".to_string())]);
        let n = store
            .record_segment(&data, "user_id", "prefs", &categories, None, Utc::now())
            .unwrap();
        assert_eq!(n, 4);
        assert!(store.get("a", "marketing").unwrap().unwrap().granted);
        assert!(!store.get("b", "marketing").unwrap().unwrap().granted);
        assert!(store.get("b", "analytics").unwrap().unwrap().granted);

        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("prefs", DataType::Utf8, true),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["c"])),
                Arc::new(StringArray::from(vec![
                    r#"{"Advertising": true, "Functional": false}"#,
                ])),
            ],
        )
        .unwrap();
        store
            .record_segment(&data, "user_id", "prefs", &categories, None, Utc::now())
            .unwrap();
        assert!(store.get("c", "marketing").unwrap().unwrap().granted);
        assert!(!store.get("c", "functional").unwrap().unwrap().granted);
    }
}
