//! Blocking: which pairs are compared at all.
//!
//! A [`Blocking`] is a union of [`BlockingRule`]s; a rule is a conjunction of keys (for
//! example "same soundex of surname" or "same postcode and same year of birth"). Only
//! pairs that share all keys of at least one rule become candidates, so the work grows with
//! the block sizes, never with the full cross product. Pairs found by several rules are
//! kept once, and [`CandidatePairs::per_rule`] counts how many each rule added.

use arrow::array::{Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::DataType;
use hashbrown::{HashMap, HashSet};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a blocking key is derived from a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BlockingKey {
    /// The value itself (trimmed, lower-cased).
    Exact {
        /// The column.
        column: String,
    },
    /// The American Soundex code of the value.
    Soundex {
        /// The column.
        column: String,
    },
    /// The first `len` characters (lower-cased).
    Prefix {
        /// The column.
        column: String,
        /// How many characters.
        len: usize,
    },
}

impl BlockingKey {
    /// The column the key reads.
    pub fn column(&self) -> &str {
        match self {
            BlockingKey::Exact { column }
            | BlockingKey::Soundex { column }
            | BlockingKey::Prefix { column, .. } => column,
        }
    }

    fn key(&self, value: &str, out: &mut String) -> bool {
        let value = value.trim();
        if value.is_empty() {
            return false;
        }
        match self {
            BlockingKey::Exact { .. } => out.extend(value.chars().flat_map(char::to_lowercase)),
            BlockingKey::Soundex { .. } => match soundex(value) {
                Some(code) => out.push_str(&code),
                None => return false,
            },
            BlockingKey::Prefix { len, .. } => {
                out.extend(value.chars().take(*len).flat_map(char::to_lowercase))
            }
        }
        true
    }
}

/// A conjunction of keys: two rows are candidates when all keys are equal (and non-null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockingRule {
    /// The keys that must all agree.
    pub keys: Vec<BlockingKey>,
}

impl BlockingRule {
    /// A rule of one key.
    pub fn single(key: BlockingKey) -> Self {
        BlockingRule { keys: vec![key] }
    }
}

/// A union of blocking rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blocking {
    /// The rules; a pair is a candidate when any rule puts both rows in one block.
    pub rules: Vec<BlockingRule>,
    /// Blocks larger than this (rows on one side) are skipped, so one very common key
    /// (an empty-looking placeholder, a default postcode) cannot make the pair count
    /// explode. `None` keeps every block.
    #[serde(default)]
    pub max_block_size: Option<usize>,
}

/// Deduplicated candidate pairs, as two index arrays sorted by left row, then right row
/// (the same input always gives the same order, and comparisons reuse work on the left
/// value across a run of pairs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandidatePairs {
    /// Row of the left table (for deduplication, the lower row index).
    pub left: Vec<u32>,
    /// Row of the right table (for deduplication, the higher row index).
    pub right: Vec<u32>,
    /// How many new pairs each rule added, in rule order.
    pub per_rule: Vec<usize>,
    /// Rows skipped because their block was larger than the limit, per rule.
    pub skipped_blocks: Vec<usize>,
}

impl CandidatePairs {
    /// The number of candidate pairs.
    pub fn len(&self) -> usize {
        self.left.len()
    }

    /// Whether there are no candidate pairs.
    pub fn is_empty(&self) -> bool {
        self.left.is_empty()
    }

    /// The index arrays as Arrow arrays.
    pub fn to_arrow(&self) -> (UInt32Array, UInt32Array) {
        (
            UInt32Array::from(self.left.clone()),
            UInt32Array::from(self.right.clone()),
        )
    }
}

impl Blocking {
    /// A union of the given rules, without a block-size limit.
    pub fn new(rules: Vec<BlockingRule>) -> Self {
        Blocking {
            rules,
            max_block_size: None,
        }
    }

    /// Candidate pairs within one table (`left < right`, each pair once).
    pub fn dedupe(&self, table: &RecordBatch) -> Result<CandidatePairs> {
        self.pairs(table, None)
    }

    /// Candidate pairs between two tables (left row, right row).
    pub fn link(&self, left: &RecordBatch, right: &RecordBatch) -> Result<CandidatePairs> {
        self.pairs(left, Some(right))
    }

    fn pairs(&self, left: &RecordBatch, right: Option<&RecordBatch>) -> Result<CandidatePairs> {
        if left.num_rows() > u32::MAX as usize
            || right.is_some_and(|r| r.num_rows() > u32::MAX as usize)
        {
            return Err(Error::InvalidOperation("more than 2^32 rows".into()));
        }
        let mut seen: HashSet<u64> = HashSet::new();
        let mut out = CandidatePairs::default();
        for rule in &self.rules {
            let before = seen.len();
            let mut skipped = 0;
            let left_keys = rule_keys(rule, left)?;
            let mut push = |l: u32, r: u32| {
                seen.insert(u64::from(l) << 32 | u64::from(r));
            };
            let limit = self.max_block_size.unwrap_or(usize::MAX);
            match right {
                None => {
                    for rows in group(&left_keys).values() {
                        if rows.len() > limit {
                            skipped += rows.len();
                            continue;
                        }
                        for (i, &a) in rows.iter().enumerate() {
                            for &b in &rows[i + 1..] {
                                push(a, b);
                            }
                        }
                    }
                }
                Some(right) => {
                    let right_keys = rule_keys(rule, right)?;
                    let left_groups = group(&left_keys);
                    let right_groups = group(&right_keys);
                    for (key, ls) in &left_groups {
                        let Some(rs) = right_groups.get(key) else {
                            continue;
                        };
                        if ls.len() > limit || rs.len() > limit {
                            skipped += ls.len() + rs.len();
                            continue;
                        }
                        for &a in ls {
                            for &b in rs {
                                push(a, b);
                            }
                        }
                    }
                }
            }
            out.per_rule.push(seen.len() - before);
            out.skipped_blocks.push(skipped);
        }
        let mut keys: Vec<u64> = seen.into_iter().collect();
        keys.sort_unstable();
        out.left = keys.iter().map(|k| (k >> 32) as u32).collect();
        out.right = keys.iter().map(|&k| k as u32).collect();
        Ok(out)
    }
}

impl Blocking {
    /// For every rule, whether it puts each candidate pair in one block (a pair can be in
    /// several rules' blocks). Used to train EM per rule.
    pub fn rule_membership(
        &self,
        left: &RecordBatch,
        right: Option<&RecordBatch>,
        pairs: &CandidatePairs,
    ) -> Result<Vec<Vec<bool>>> {
        self.rules
            .iter()
            .map(|rule| {
                let left_keys = rule_keys(rule, left)?;
                let right_keys = right.map(|r| rule_keys(rule, r)).transpose()?;
                let right_keys = right_keys.as_ref().unwrap_or(&left_keys);
                Ok(pairs
                    .left
                    .iter()
                    .zip(&pairs.right)
                    .map(
                        |(&l, &r)| match (left_keys.get(l as usize), right_keys.get(r as usize)) {
                            (Some(Some(a)), Some(Some(b))) => a == b,
                            _ => false,
                        },
                    )
                    .collect())
            })
            .collect()
    }
}

impl BlockingRule {
    /// Whether any key of the rule reads `column`.
    pub fn uses_column(&self, column: &str) -> bool {
        self.keys.iter().any(|k| k.column() == column)
    }
}

/// One key string per row (`None` when any key column is null or empty).
fn rule_keys(rule: &BlockingRule, table: &RecordBatch) -> Result<Vec<Option<String>>> {
    let columns = rule
        .keys
        .iter()
        .map(|k| string_column(table, k.column()))
        .collect::<Result<Vec<_>>>()?;
    let mut keys = Vec::with_capacity(table.num_rows());
    for row in 0..table.num_rows() {
        let mut key = String::new();
        let mut ok = true;
        for (k, col) in rule.keys.iter().zip(&columns) {
            if col.is_null(row) || !k.key(col.value(row), &mut key) {
                ok = false;
                break;
            }
            key.push('\u{1f}');
        }
        keys.push(ok.then_some(key));
    }
    Ok(keys)
}

fn group(keys: &[Option<String>]) -> HashMap<&str, Vec<u32>> {
    let mut groups: HashMap<&str, Vec<u32>> = HashMap::new();
    for (row, key) in keys.iter().enumerate() {
        if let Some(key) = key {
            groups.entry(key.as_str()).or_default().push(row as u32);
        }
    }
    groups
}

/// A column as UTF-8 strings (other types are cast).
pub fn string_column(table: &RecordBatch, name: &str) -> Result<StringArray> {
    let column = table.column_by_name(name).ok_or_else(|| Error::Schema {
        stream: String::new(),
        message: format!("no column `{name}`"),
    })?;
    let column = if column.data_type() == &DataType::Utf8 {
        column.clone()
    } else {
        arrow::compute::cast(column, &DataType::Utf8)?
    };
    column
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| Error::Schema {
            stream: String::new(),
            message: format!("column `{name}` is not UTF-8"),
        })
}

/// American Soundex (letter + three digits) of the ASCII letters of `s`; `None` when `s`
/// has no ASCII letter. Written here because it is a dozen lines and the crates that offer
/// it bring whole phonetic suites.
pub fn soundex(s: &str) -> Option<String> {
    fn code(c: u8) -> u8 {
        match c {
            b'b' | b'f' | b'p' | b'v' => b'1',
            b'c' | b'g' | b'j' | b'k' | b'q' | b's' | b'x' | b'z' => b'2',
            b'd' | b't' => b'3',
            b'l' => b'4',
            b'm' | b'n' => b'5',
            b'r' => b'6',
            b'h' | b'w' => b'h',
            _ => b'0', // vowels and y separate equal codes
        }
    }
    let mut letters = s
        .bytes()
        .filter(u8::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase());
    let first = letters.next()?;
    let mut out = vec![first.to_ascii_uppercase()];
    let mut last = code(first);
    for c in letters {
        let d = code(c);
        if d == b'h' {
            continue; // h and w do not separate equal codes
        }
        if d != b'0' && d != last {
            out.push(d);
            if out.len() == 4 {
                break;
            }
        }
        last = d;
    }
    out.resize(4, b'0');
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soundex_reference_values() {
        for (name, code) in [
            ("Robert", "R163"),
            ("Rupert", "R163"),
            ("Rubin", "R150"),
            ("Ashcraft", "A261"),
            ("Ashcroft", "A261"),
            ("Tymczak", "T522"),
            ("Pfister", "P236"),
            ("Honeyman", "H555"),
            ("Lee", "L000"),
        ] {
            assert_eq!(soundex(name).as_deref(), Some(code), "{name}");
        }
        assert_eq!(soundex("123"), None);
    }
}
