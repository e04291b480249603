//! Telling the server refusing rows (a value, a constraint) from everything else that
//! fails a statement, and what a declared column type lets through unchanged.

use std::fmt;

/// The server refused the data itself: a value a column cannot hold, a constraint the rows
/// break. Another set of rows may well go through, so a writer can look for the rows at
/// fault instead of failing; a lost connection, a missing table or a missing permission is
/// never one.
///
/// The SQLSTATE classes taken as such: `22` (data exception: out of range, too long,
/// invalid text, …), `23` (integrity constraint violation: `NOT NULL`, `UNIQUE`, `CHECK`,
/// foreign key, exclusion), `P0001` (an exception raised by a trigger) and `54000` (a value
/// too large for an index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRefusal {
    /// The SQLSTATE, e.g. `23514`.
    pub code: String,
    /// The server's message.
    pub message: String,
    /// The server's detail line, when it gave one (often the failing row or key).
    pub detail: Option<String>,
}

impl RowRefusal {
    /// The refusal in `e`, if `e` is one (see the type's docs).
    pub fn of(e: &tokio_postgres::Error) -> Option<RowRefusal> {
        let db = e.as_db_error()?;
        let code = db.code().code();
        let rows =
            code.starts_with("22") || code.starts_with("23") || matches!(code, "P0001" | "54000");
        rows.then(|| RowRefusal {
            code: code.to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
        })
    }
}

impl fmt::Display for RowRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, "; {detail}")?;
        }
        Ok(())
    }
}

/// A column's declared type (`format_type` output) as far as what it lets through: the
/// base type and its modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    /// `smallint`, `integer` or `bigint`, with their bounds.
    Integer {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// `numeric(precision, scale)`.
    Numeric {
        /// Digits after the decimal point the column keeps.
        scale: i32,
    },
    /// `character varying(n)` or `character(n)` (blank-padded: trailing spaces do not
    /// count).
    Chars {
        /// The most characters the column holds.
        max: usize,
        /// Whether it is `character(n)`.
        padded: bool,
    },
    /// `timestamp(p)`, `timestamptz(p)`, `time(p)` with `p` below 6.
    FractionalSeconds {
        /// Digits of a second the column keeps.
        digits: u32,
    },
    /// Anything else.
    Other,
}

impl Declared {
    /// Reads a `format_type` output (`character varying(5)`, `numeric(12,2)`,
    /// `timestamp(3) with time zone`, `integer`). Arrays are [`Declared::Other`].
    pub fn parse(declared: &str) -> Declared {
        let declared = declared.trim();
        if declared.ends_with("[]") {
            return Declared::Other;
        }
        let (base, args) = match declared.find('(') {
            Some(open) => {
                let close = declared[open..]
                    .find(')')
                    .map_or(declared.len(), |c| open + c);
                let rest = declared[close..].trim_start_matches(')').trim();
                let base = format!("{} {rest}", declared[..open].trim());
                (base.trim().to_string(), &declared[open + 1..close])
            }
            None => (declared.to_string(), ""),
        };
        let numbers: Vec<i64> = args
            .split(',')
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        match (base.as_str(), numbers.as_slice()) {
            ("smallint", []) => Declared::Integer {
                min: i64::from(i16::MIN),
                max: i64::from(i16::MAX),
            },
            ("integer", []) => Declared::Integer {
                min: i64::from(i32::MIN),
                max: i64::from(i32::MAX),
            },
            ("bigint", []) => Declared::Integer {
                min: i64::MIN,
                max: i64::MAX,
            },
            ("numeric", [_, scale]) => Declared::Numeric {
                scale: i32::try_from(*scale).unwrap_or(0),
            },
            ("numeric", [_]) => Declared::Numeric { scale: 0 },
            ("character varying", [n]) => Declared::Chars {
                max: usize::try_from(*n).unwrap_or(usize::MAX),
                padded: false,
            },
            ("character", [n]) => Declared::Chars {
                max: usize::try_from(*n).unwrap_or(usize::MAX),
                padded: true,
            },
            (
                "timestamp without time zone"
                | "timestamp with time zone"
                | "time without time zone"
                | "time with time zone",
                [p],
            ) if (0..6).contains(p) => Declared::FractionalSeconds {
                digits: u32::try_from(*p).unwrap_or(6),
            },
            _ => Declared::Other,
        }
    }
}

/// The type to cast a staged value to before it is assigned to a column declared
/// `declared`, so that the assignment checks the column's length: an explicit cast to
/// `character varying(5)` (or `character(n)`, `bit(n)`) cuts a longer value short without a
/// word, while assigning an unbounded value to the column refuses it (SQLSTATE 22001).
pub fn assignable_type(declared: &str) -> String {
    let (element, array) = match declared.strip_suffix("[]") {
        Some(element) => (element, "[]"),
        None => (declared, ""),
    };
    let unbounded = if element.starts_with("character varying(") {
        "character varying"
    } else if element.starts_with("character(") {
        "bpchar"
    } else if element.starts_with("bit varying(") || element.starts_with("bit(") {
        "bit varying"
    } else {
        return declared.to_string();
    };
    format!("{unbounded}{array}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_parse() {
        assert_eq!(
            Declared::parse("character varying(5)"),
            Declared::Chars {
                max: 5,
                padded: false
            }
        );
        assert_eq!(
            Declared::parse("character(3)"),
            Declared::Chars {
                max: 3,
                padded: true
            }
        );
        assert_eq!(
            Declared::parse("numeric(12,2)"),
            Declared::Numeric { scale: 2 }
        );
        assert_eq!(
            Declared::parse("timestamp(3) with time zone"),
            Declared::FractionalSeconds { digits: 3 }
        );
        assert_eq!(Declared::parse("timestamp with time zone"), Declared::Other);
        assert_eq!(
            Declared::parse("integer"),
            Declared::Integer {
                min: -2_147_483_648,
                max: 2_147_483_647
            }
        );
        assert_eq!(Declared::parse("character varying(5)[]"), Declared::Other);
        assert_eq!(Declared::parse("numeric"), Declared::Other);
    }

    #[test]
    fn bounded_strings_are_assigned_unbounded() {
        assert_eq!(assignable_type("character varying(5)"), "character varying");
        assert_eq!(assignable_type("character(2)[]"), "bpchar[]");
        assert_eq!(assignable_type("bit(8)"), "bit varying");
        assert_eq!(assignable_type("numeric(12,2)"), "numeric(12,2)");
        assert_eq!(assignable_type("jsonb"), "jsonb");
    }
}
