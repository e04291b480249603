//! Incremental cursor values: read from records, compared, kept in checkpoints and sent as
//! request parameters.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a stream's cursor field holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorKind {
    /// Instants: RFC 3339 text (`2024-05-01T10:00:00Z`), a date (`2024-05-01`, midnight
    /// UTC), or Unix seconds (or milliseconds, when beyond year 5000 as seconds).
    #[default]
    Datetime,
    /// Integers (an id, a version, a sequence number), as numbers or digit strings.
    Integer,
}

/// How a datetime cursor is written in a request parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorFormat {
    /// `2024-05-01T10:00:00Z` (fractional seconds when there are some).
    #[default]
    Rfc3339,
    /// Unix seconds.
    Unix,
    /// Unix milliseconds.
    UnixMs,
    /// `2024-05-01`.
    Date,
}

/// A cursor value as an integer that orders like it: microseconds since the epoch for
/// datetimes, the value itself for integers.
pub(crate) type Position = i64;

/// Seconds beyond which a number is taken for milliseconds (year 5138 as seconds).
const MILLIS_FROM: i64 = 100_000_000_000;

impl CursorKind {
    /// Reads a cursor from a record's value, or from its checkpoint form; `None` when it
    /// is missing or not a value of this kind.
    pub(crate) fn read(self, value: &Value) -> Option<Position> {
        match self {
            CursorKind::Integer => match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            },
            CursorKind::Datetime => match value {
                Value::Number(n) => {
                    let n = n.as_i64()?;
                    if n.abs() >= MILLIS_FROM {
                        n.checked_mul(1_000)
                    } else {
                        n.checked_mul(1_000_000)
                    }
                }
                Value::String(s) => parse_instant(s),
                _ => None,
            },
        }
    }

    /// The checkpoint form: RFC 3339 text for datetimes, a number for integers.
    pub(crate) fn to_json(self, position: Position) -> Value {
        match self {
            CursorKind::Integer => Value::from(position),
            CursorKind::Datetime => Value::String(
                instant(position)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                    .unwrap_or_default(),
            ),
        }
    }

    /// The request parameter form.
    pub(crate) fn param(self, position: Position, format: CursorFormat) -> String {
        match self {
            CursorKind::Integer => position.to_string(),
            CursorKind::Datetime => match (instant(position), format) {
                (Some(t), CursorFormat::Rfc3339) => {
                    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                }
                (Some(t), CursorFormat::Date) => t.format("%Y-%m-%d").to_string(),
                (_, CursorFormat::Unix) => position.div_euclid(1_000_000).to_string(),
                (_, CursorFormat::UnixMs) => position.div_euclid(1_000).to_string(),
                (None, _) => position.to_string(),
            },
        }
    }

    /// A span (`lookback`, `window`) given in the cursor's units (seconds for datetimes) as
    /// a difference of positions.
    pub(crate) fn span(self, units: u64) -> i64 {
        let units = i64::try_from(units).unwrap_or(i64::MAX);
        match self {
            CursorKind::Integer => units,
            CursorKind::Datetime => units.saturating_mul(1_000_000),
        }
    }

    /// Now, as a position (datetimes); `None` for integers, which have no now.
    pub(crate) fn now(self) -> Option<Position> {
        match self {
            CursorKind::Datetime => Some(Utc::now().timestamp_micros()),
            CursorKind::Integer => None,
        }
    }
}

fn instant(micros: Position) -> Option<DateTime<Utc>> {
    Utc.timestamp_micros(micros).single()
}

/// An instant from RFC 3339 text, a bare date or a date-time without zone (taken as
/// UTC), or digits (Unix seconds or milliseconds).
pub(crate) fn parse_instant(text: &str) -> Option<Position> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc().timestamp_micros());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(t.and_utc().timestamp_micros());
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return CursorKind::Datetime.read(&Value::from(text.parse::<i64>().ok()?));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn datetimes_read_in_every_common_spelling() {
        let kind = CursorKind::Datetime;
        let at = kind.read(&json!("2024-05-01T10:00:00Z")).unwrap();
        assert_eq!(kind.read(&json!("2024-05-01T12:00:00+02:00")), Some(at));
        assert_eq!(kind.read(&json!(1_714_557_600)), Some(at));
        assert_eq!(kind.read(&json!(1_714_557_600_000i64)), Some(at));
        assert_eq!(kind.read(&json!("2024-05-01T10:00:00")), Some(at));
        assert_eq!(kind.to_json(at), json!("2024-05-01T10:00:00Z"));
        assert_eq!(kind.param(at, CursorFormat::Unix), "1714557600");
        assert_eq!(kind.param(at, CursorFormat::Date), "2024-05-01");
        assert_eq!(kind.read(&json!("soon")), None);
    }

    #[test]
    fn integers_read_from_numbers_and_digits() {
        let kind = CursorKind::Integer;
        assert_eq!(kind.read(&json!(42)), Some(42));
        assert_eq!(kind.read(&json!("42")), Some(42));
        assert_eq!(kind.read(&json!(4.5)), None);
        assert_eq!(kind.to_json(42), json!(42));
    }
}
