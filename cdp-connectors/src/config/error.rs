//! Problems in a configuration, each named by its key path.

use std::fmt;

/// One problem in a configuration: where it is (a key path such as
/// `sources.events.schema[1].name`) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    message: String,
}

impl ConfigError {
    /// A problem at `path` (relative to the table being read; empty for the table itself).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The key path: dotted keys, `[i]` for array elements, keys that are not bare TOML keys
    /// quoted (`sources."my events".path`). Empty for the table itself.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same problem seen from an enclosing table: `prefix` goes before the path.
    fn within(mut self, prefix: &str) -> Self {
        self.path = join(prefix, &self.path);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, in the order found (tables by name, keys in
/// order). Displayed one per line; converts into
/// [`cdp_core::Error::Config`] with `?`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// No problem yet.
    pub fn new() -> Self {
        ConfigErrors::default()
    }

    /// One problem at `path`.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors {
            errors: vec![ConfigError::new(path, message)],
        }
    }

    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    /// Records the problems of a nested table found at `prefix` (`connection`,
    /// `streams.orders`).
    pub fn extend_within(&mut self, prefix: &str, other: ConfigErrors) {
        self.errors
            .extend(other.errors.into_iter().map(|e| e.within(prefix)));
    }

    /// The same problems seen from an enclosing table: `prefix` goes before every path.
    pub fn within(self, prefix: &str) -> Self {
        let mut out = ConfigErrors::new();
        out.extend_within(prefix, self);
        out
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// The problems, in the order found.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// `Ok(())` when no problem was found, else `Err(self)`.
    pub fn into_result(self) -> Result<(), ConfigErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }
}

impl Extend<ConfigError> for ConfigErrors {
    fn extend<I: IntoIterator<Item = ConfigError>>(&mut self, iter: I) {
        self.errors.extend(iter);
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigErrors> for cdp_core::Error {
    fn from(errors: ConfigErrors) -> Self {
        cdp_core::Error::Config(errors.to_string())
    }
}

/// `prefix` and `path` joined into one key path.
pub(crate) fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// `key` as one segment of a key path: itself when it is a bare TOML key, else quoted.
pub(crate) fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_and_quote_like_toml() {
        assert_eq!(
            join("sources.events", "schema[1].name"),
            "sources.events.schema[1].name"
        );
        assert_eq!(
            join("sources.events.schema", "[1]"),
            "sources.events.schema[1]"
        );
        assert_eq!(join("sources.events", ""), "sources.events");
        assert_eq!(join("", "path"), "path");
        assert_eq!(key_segment("my-events_2"), "my-events_2");
        assert_eq!(key_segment("my events"), "\"my events\"");
        assert_eq!(key_segment("a.b"), "\"a.b\"");
    }

    #[test]
    fn errors_display_one_per_line_and_convert() {
        let mut errors = ConfigErrors::at("batch_size", "must be at least 1");
        errors.push("", "no path");
        let errors = errors.within("sources.events");
        assert_eq!(
            errors.to_string(),
            "sources.events.batch_size: must be at least 1\nsources.events: no path"
        );
        let error: cdp_core::Error = errors.into();
        assert!(matches!(error, cdp_core::Error::Config(_)));
    }
}
