//! Identifiers and literals quoted for SQL text.
//!
//! Names come from configuration and from the streams' schemas, so every one that goes into
//! a statement is quoted: a column called `order` or `"weird name"` must not change the
//! statement's meaning.

/// `name` as a quoted SQL identifier: in double quotes, inner double quotes doubled.
///
/// ```
/// assert_eq!(cdp_postgres::ident("order"), "\"order\"");
/// assert_eq!(cdp_postgres::ident("a\"b"), "\"a\"\"b\"");
/// ```
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.name`, both quoted.
///
/// ```
/// assert_eq!(cdp_postgres::qualified("crm", "Users"), "\"crm\".\"Users\"");
/// ```
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// `value` as a quoted SQL string literal: in single quotes, inner single quotes doubled.
///
/// Right only with `standard_conforming_strings = on` (where backslashes are ordinary
/// characters), the default since PostgreSQL 9.1; pass values as statement parameters
/// where the protocol allows it.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("s", "t\"x"), "\"s\".\"t\"\"x\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "'a\\b'");
    }
}
