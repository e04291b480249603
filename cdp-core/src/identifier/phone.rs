//! Phone numbers to E.164 on libphonenumber's metadata (the `phonenumber` crate).
//!
//! Two paths give one answer: a value already in E.164 form (`+` and digits, the common
//! case in event data) is checked directly against the metadata's country calling codes
//! and number lengths; anything else is parsed by libphonenumber, formatted as E.164, and
//! that form is checked the same way. So a number is accepted or refused for what it is,
//! never for how it was written.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use phonenumber::Mode;
use phonenumber::country::Id;
use serde::{Deserialize, Serialize};

use super::Normalised;
use crate::error::{Error, Result};

const INVALID: Normalised<'static> = Normalised::Invalid("a phone number");

/// A region (country) of libphonenumber's metadata, by its ISO 3166 alpha-2 code (`US`,
/// `GB`, `DE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(RegionRepr);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum RegionRepr {
    Known(Id),
    /// Not in the metadata; [`Region::validate`] reports it, parsing with it fails.
    Unknown([u8; 3]),
}

impl Region {
    /// The region of an ISO 3166 alpha-2 code (case-insensitive).
    pub fn new(code: &str) -> Result<Self> {
        let region = Region::unchecked(code);
        region.validate()?;
        Ok(region)
    }

    /// Like [`Region::new`], deferring the error to [`Region::validate`].
    pub(crate) fn unchecked(code: &str) -> Self {
        let upper = code.trim().to_ascii_uppercase();
        match Id::from_str(&upper) {
            Ok(id) => Region(RegionRepr::Known(id)),
            Err(_) => {
                let mut bytes = [b'?'; 3];
                for (b, c) in bytes.iter_mut().zip(upper.bytes()) {
                    *b = c;
                }
                Region(RegionRepr::Unknown(bytes))
            }
        }
    }

    /// Fails when the code is not a region of the phone metadata.
    pub fn validate(&self) -> Result<()> {
        match self.0 {
            RegionRepr::Known(_) => Ok(()),
            RegionRepr::Unknown(_) => Err(Error::Config(format!(
                "`{self}` is not a region of the phone number metadata \
                 (expected an ISO 3166 alpha-2 code such as US, GB, DE)"
            ))),
        }
    }

    fn id(self) -> Option<Id> {
        match self.0 {
            RegionRepr::Known(id) => Some(id),
            RegionRepr::Unknown(_) => None,
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            RegionRepr::Known(id) => f.write_str(id.as_ref()),
            RegionRepr::Unknown(bytes) => {
                let end = bytes.iter().position(|&b| b == b'?').unwrap_or(3);
                f.write_str(std::str::from_utf8(&bytes[..end]).unwrap_or("?"))
            }
        }
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({self})")
    }
}

impl Serialize for Region {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Region::new(&code).map_err(serde::de::Error::custom)
    }
}

/// The lengths of national significant numbers, per country calling code (all regions
/// sharing a code together).
fn lengths() -> &'static HashMap<u16, Vec<u16>> {
    static LENGTHS: OnceLock<HashMap<u16, Vec<u16>>> = OnceLock::new();
    LENGTHS.get_or_init(|| {
        let mut map: HashMap<u16, Vec<u16>> = HashMap::new();
        for meta in phonenumber::metadata::DATABASE.iter() {
            let entry = map.entry(meta.country_code()).or_default();
            // The metadata keeps lengths per number type (the general entry is empty);
            // short codes and emergency numbers are no E.164 identifiers.
            let d = meta.descriptors();
            let types = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ];
            for descriptor in types.into_iter().flatten() {
                entry.extend_from_slice(descriptor.possible_length());
            }
        }
        for lengths in map.values_mut() {
            lengths.sort_unstable();
            lengths.dedup();
        }
        map
    })
}

/// Whether `digits` (after the `+`) is a country calling code followed by a national number
/// of a length that country has. Calling codes are prefix-free, so at most one split fits.
fn possible(digits: &[u8]) -> bool {
    if !(4..=17).contains(&digits.len()) || digits[0] == b'0' {
        return false;
    }
    let table = lengths();
    (1..=3).any(|n| {
        let code = digits[..n]
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        table
            .get(&code)
            .is_some_and(|lengths| lengths.contains(&((digits.len() - n) as u16)))
    })
}

pub(super) fn normalise<'a>(
    raw: &'a str,
    region: Option<Region>,
    buf: &'a mut String,
) -> Normalised<'a> {
    let value = raw.trim();
    if value.is_empty() {
        return Normalised::Null;
    }
    if let Some(digits) = value.strip_prefix('+')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        return if possible(digits.as_bytes()) {
            Normalised::Value(value)
        } else {
            INVALID
        };
    }
    // `00` is the international prefix of most of the world; read it as `+` whatever the
    // default region dials abroad with.
    let international;
    let text = match value.strip_prefix("00") {
        Some(rest) => {
            international = format!("+{rest}");
            international.as_str()
        }
        None => value,
    };
    let region = match region {
        Some(r) => match r.id() {
            Some(id) => Some(id),
            None => return INVALID,
        },
        None => None,
    };
    let Ok(number) = phonenumber::parse(region, text) else {
        return INVALID;
    };
    buf.clear();
    use fmt::Write as _;
    if write!(buf, "{}", number.format().mode(Mode::E164)).is_err() {
        return INVALID;
    }
    match buf.strip_prefix('+') {
        Some(digits)
            if digits.bytes().all(|b| b.is_ascii_digit()) && possible(digits.as_bytes()) =>
        {
            Normalised::Value(buf.as_str())
        }
        _ => INVALID,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Normaliser;

    fn norm(region: Option<&str>, raw: &str) -> Option<String> {
        Normaliser::phone(region).normalise(raw)
    }

    #[test]
    fn formats_of_one_number_agree() {
        for raw in [
            "+1 (519) 555-0166",
            "+15195550166",
            "(519) 555-0166",
            "519.555.0166",
            "1-519-555-0166",
            "001 519 555 0166",
            " +1 519 555 0166 ",
        ] {
            assert_eq!(
                norm(Some("US"), raw).as_deref(),
                Some("+15195550166"),
                "{raw}"
            );
        }
        assert_eq!(
            norm(Some("US"), "+44 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            norm(Some("US"), "0044 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            norm(Some("GB"), "020 7946 0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            norm(Some("gb"), "07700 900123").as_deref(),
            Some("+447700900123")
        );
    }

    #[test]
    fn invalid_numbers_are_refused_on_both_paths() {
        for raw in [
            "+0123456789",
            "+1 555",
            "+15",
            "12",
            "call me",
            "+999 1234567",
        ] {
            assert_eq!(norm(Some("US"), raw), None, "{raw}");
        }
        // A national number needs a default region.
        assert_eq!(norm(None, "(519) 555-0166"), None);
        assert_eq!(
            norm(None, "+1 519 555 0166").as_deref(),
            Some("+15195550166")
        );
        // The fast path and the parser agree on an E.164 value of a wrong length.
        assert_eq!(norm(Some("US"), "+1519555016"), None);
        assert_eq!(norm(Some("US"), "+1 519 555 016"), None);
    }

    #[test]
    fn regions_are_checked() {
        assert!(super::Region::new("US").is_ok());
        let err = super::Region::new("XX").unwrap_err().to_string();
        assert!(err.contains("`XX` is not a region"), "{err}");
        assert!(Normaliser::phone(Some("ZZ")).validate().is_err());
        assert_eq!(norm(Some("ZZ"), "(519) 555-0166"), None);
    }
}
