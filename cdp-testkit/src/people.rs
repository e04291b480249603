//! Generated person records with duplicates, for record-linkage tests and benches.
//!
//! Each person gets one clean record; a share of them gets a second record with the kinds
//! of errors data entry makes (a swapped pair of letters, a dropped letter, day and month
//! swapped, a postcode digit off, a missing value). Every record carries the person's
//! `cluster` id, so the true pairs are the pairs of records that share it.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FIRST: &[&str] = &[
    "james",
    "mary",
    "robert",
    "patricia",
    "john",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "william",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "olivia",
    "noah",
    "amelia",
    "liam",
    "harper",
    "lucas",
];
const SURNAME: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
];
const SUBURB: &[&str] = &[
    "richmond",
    "fitzroy",
    "carlton",
    "brunswick",
    "northcote",
    "coburg",
    "kew",
    "hawthorn",
    "prahran",
    "st kilda",
    "footscray",
    "yarraville",
    "essendon",
    "preston",
    "thornbury",
];

/// Column names of [`people`]: `rec_id`, `cluster`, `given_name`, `surname`,
/// `date_of_birth`, `postcode`, `suburb`, `phone`.
pub const COLUMNS: [&str; 8] = [
    "rec_id",
    "cluster",
    "given_name",
    "surname",
    "date_of_birth",
    "postcode",
    "suburb",
    "phone",
];

/// `n` people, about `duplicate_share` of them with a second, noisy record, shuffled.
/// Deterministic for a seed. All columns are Utf8; missing values are null.
pub fn people(n: usize, duplicate_share: f64, seed: u64) -> RecordBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows: Vec<[Option<String>; 8]> = Vec::with_capacity(n * 2);
    for person in 0..n {
        let first = FIRST.choose(&mut rng).map_or("", |s| s).to_string();
        // Many surnames repeat, as in real data; a numeric suffix keeps blocks realistic
        // in size rather than making every smith one block.
        let surname = format!(
            "{}{}",
            SURNAME.choose(&mut rng).map_or("", |s| s),
            ["", "son", "e", "s", "ton", "ley"][rng.random_range(0..6)]
        );
        let dob = format!(
            "19{:02}-{:02}-{:02}",
            rng.random_range(30..100),
            rng.random_range(1..13),
            rng.random_range(1..29)
        );
        let postcode = format!("{}", rng.random_range(3000..3999));
        let suburb = SUBURB.choose(&mut rng).map_or("", |s| s).to_string();
        let phone = format!("04{:08}", rng.random_range(0..100_000_000u64));
        let clean = [
            None,
            Some(format!("p{person}")),
            Some(first),
            Some(surname),
            Some(dob),
            Some(postcode),
            Some(suburb),
            Some(phone),
        ];
        if rng.random_bool(duplicate_share.clamp(0.0, 1.0)) {
            rows.push(noisy(&clean, &mut rng));
        }
        rows.push(clean);
    }
    // Shuffle so duplicates are not neighbours, then number the records.
    for i in (1..rows.len()).rev() {
        let j = rng.random_range(0..=i);
        rows.swap(i, j);
    }
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = Some(format!("rec-{i}"));
    }
    let schema = Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let columns = (0..COLUMNS.len())
        .map(|k| Arc::new(StringArray::from_iter(rows.iter().map(|r| r[k].clone()))) as _)
        .collect();
    RecordBatch::try_new(schema, columns).expect("columns match the schema")
}

/// A copy of `clean` with one to three errors.
fn noisy(clean: &[Option<String>; 8], rng: &mut ChaCha8Rng) -> [Option<String>; 8] {
    let mut row = clean.clone();
    for _ in 0..rng.random_range(1..=3) {
        // Columns 2.. are the compared fields.
        let k = rng.random_range(2..COLUMNS.len());
        let Some(value) = row[k].take() else {
            continue;
        };
        row[k] = match rng.random_range(0..5) {
            0 => None,
            1 if k == 4 => Some(swap_day_month(&value)),
            _ => Some(typo(&value, rng)),
        };
    }
    row
}

/// A swapped pair of neighbouring characters, or a dropped one.
fn typo(value: &str, rng: &mut ChaCha8Rng) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    if chars.len() < 3 {
        return value.to_string();
    }
    let i = rng.random_range(1..chars.len() - 1);
    if rng.random_bool(0.5) {
        chars.swap(i, i + 1);
    } else {
        chars.remove(i);
    }
    chars.into_iter().collect()
}

fn swap_day_month(date: &str) -> String {
    match date.split('-').collect::<Vec<_>>().as_slice() {
        [y, m, d] if d.parse::<u32>().is_ok_and(|d| d <= 12) => format!("{y}-{d}-{m}"),
        _ => date.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn deterministic_with_duplicates() {
        let a = people(1_000, 0.3, 7);
        assert_eq!(a, people(1_000, 0.3, 7));
        let n = a.num_rows();
        assert!((1_250..1_350).contains(&n), "{n} records");
        let cluster = a.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let distinct: std::collections::HashSet<_> = cluster.iter().collect();
        assert_eq!(distinct.len(), 1_000);
        assert_eq!(cluster.null_count(), 0);
    }
}
