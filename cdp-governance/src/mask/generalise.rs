//! Generalisation: keep a coarser version of a value (the year of a date, the network of
//! an IP address) so aggregate analysis still works while individuals blur.

use std::net::IpAddr;
use std::sync::Arc;

use cdp_core::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use cdp_core::arrow::datatypes::{
    DataType, Date32Type, Date64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use chrono::{DateTime, Datelike, NaiveDate};

use crate::error::{Error, Result};

/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

/// Whether [`year`] accepts columns of this type.
pub fn supports_year(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
    )
}

/// Replaces each date or timestamp with the first instant of its year (UTC), keeping the
/// column's type so destination schemas do not change. Nulls stay null.
pub fn year(array: &ArrayRef) -> Result<ArrayRef> {
    let micros_to_year = |micros: i64| -> Option<i64> {
        let year = DateTime::from_timestamp_micros(micros)?.year();
        let start = NaiveDate::from_ymd_opt(year, 1, 1)?.and_hms_opt(0, 0, 0)?;
        Some(start.and_utc().timestamp_micros())
    };
    let out: ArrayRef = match array.data_type() {
        DataType::Date32 => Arc::new(
            array
                .as_primitive::<Date32Type>()
                .unary_opt::<_, Date32Type>(|days| {
                    let date = NaiveDate::from_num_days_from_ce_opt(
                        days.checked_add(UNIX_EPOCH_FROM_CE)?,
                    )?;
                    let start = NaiveDate::from_ymd_opt(date.year(), 1, 1)?;
                    Some(start.num_days_from_ce() - UNIX_EPOCH_FROM_CE)
                }),
        ),
        DataType::Date64 => Arc::new(
            array
                .as_primitive::<Date64Type>()
                .unary_opt::<_, Date64Type>(|ms| {
                    micros_to_year(ms.checked_mul(1_000)?).map(|m| m / 1_000)
                }),
        ),
        DataType::Timestamp(unit, tz) => {
            let tz = tz.clone();
            match unit {
                TimeUnit::Second => Arc::new(
                    array
                        .as_primitive::<TimestampSecondType>()
                        .unary_opt::<_, TimestampSecondType>(|s| {
                            micros_to_year(s.checked_mul(1_000_000)?).map(|m| m / 1_000_000)
                        })
                        .with_timezone_opt(tz),
                ),
                TimeUnit::Millisecond => Arc::new(
                    array
                        .as_primitive::<TimestampMillisecondType>()
                        .unary_opt::<_, TimestampMillisecondType>(|ms| {
                            micros_to_year(ms.checked_mul(1_000)?).map(|m| m / 1_000)
                        })
                        .with_timezone_opt(tz),
                ),
                TimeUnit::Microsecond => Arc::new(
                    array
                        .as_primitive::<TimestampMicrosecondType>()
                        .unary_opt::<_, TimestampMicrosecondType>(micros_to_year)
                        .with_timezone_opt(tz),
                ),
                TimeUnit::Nanosecond => Arc::new(
                    array
                        .as_primitive::<TimestampNanosecondType>()
                        .unary_opt::<_, TimestampNanosecondType>(|ns| {
                            micros_to_year(ns.div_euclid(1_000))?.checked_mul(1_000)
                        })
                        .with_timezone_opt(tz),
                ),
            }
        }
        other => {
            return Err(Error::masking(
                "<column>",
                "year",
                format!("needs a date or timestamp column, got {other}"),
            ));
        }
    };
    Ok(out)
}

/// Replaces each IP address with its network, `a.b.c.0/24` style: the first `v4` bits of
/// IPv4 addresses and the first `v6` bits of IPv6 ones.
///
/// A value that is not an IP address becomes null: passing it through could leak whatever
/// it is.
pub fn ip_prefix(array: &ArrayRef, v4: u8, v6: u8) -> Result<ArrayRef> {
    if v4 > 32 || v6 > 128 {
        return Err(Error::masking(
            "<column>",
            "ip_prefix",
            format!("prefix lengths must be at most 32 (IPv4) and 128 (IPv6), got {v4} and {v6}"),
        ));
    }
    use std::fmt::Write;
    let strings = super::as_strings(array)?;
    let mut out = StringBuilder::with_capacity(strings.len(), strings.value_data().len());
    let mask4 = u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0);
    let mask6 = u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0);
    // One buffer reused for every value: no allocation per row.
    let mut buffer = String::new();
    for value in strings.iter() {
        buffer.clear();
        let written = match value.and_then(|v| v.trim().parse::<IpAddr>().ok()) {
            None => {
                out.append_null();
                continue;
            }
            Some(IpAddr::V4(ip)) => {
                let net = std::net::Ipv4Addr::from(u32::from(ip) & mask4);
                write!(buffer, "{net}/{v4}")
            }
            Some(IpAddr::V6(ip)) => {
                let net = std::net::Ipv6Addr::from(u128::from(ip) & mask6);
                write!(buffer, "{net}/{v6}")
            }
        };
        written.map_err(|e| Error::masking("<column>", "ip_prefix", e.to_string()))?;
        out.append_value(&buffer);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_core::arrow::array::{Date32Array, StringArray, TimestampMillisecondArray};

    #[test]
    fn dates_become_january_first() {
        // 2021-07-15 is day 18823; 2021-01-01 is day 18628. 1969-12-31 is day -1.
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(18823), None, Some(-1)]));
        let years = year(&dates).unwrap();
        let years = years.as_primitive::<Date32Type>();
        assert_eq!(years.value(0), 18628);
        assert!(years.is_null(1));
        assert_eq!(years.value(2), -365);
    }

    #[test]
    fn timestamps_keep_unit_and_zone() {
        // 2023-11-14T22:13:20Z
        let ts: ArrayRef =
            Arc::new(TimestampMillisecondArray::from(vec![1_700_000_000_000]).with_timezone("UTC"));
        let y = year(&ts).unwrap();
        assert_eq!(y.data_type(), ts.data_type());
        // 2023-01-01T00:00:00Z
        assert_eq!(
            y.as_primitive::<TimestampMillisecondType>().value(0),
            1_672_531_200_000
        );
    }

    #[test]
    fn ips_become_networks_and_junk_becomes_null() {
        let ips: ArrayRef = Arc::new(StringArray::from(vec![
            Some("192.168.17.42"),
            Some("2001:db8:abcd:12::1"),
            Some("not an ip"),
            None,
        ]));
        let nets = ip_prefix(&ips, 24, 48).unwrap();
        let nets = nets.as_string::<i32>();
        assert_eq!(nets.value(0), "192.168.17.0/24");
        assert_eq!(nets.value(1), "2001:db8:abcd::/48");
        assert!(nets.is_null(2));
        assert!(nets.is_null(3));
    }
}
