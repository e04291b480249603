//! Finding CSV records and their fields with csv-core, configured exactly as arrow-csv
//! configures it, so the record-by-record path cuts records where the decoder does.

use std::cell::RefCell;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

use super::Dialect;

/// Splits bytes into CSV records and fields.
#[derive(Debug)]
pub(crate) struct Splitter {
    /// Reset before each use; kept to build its tables once.
    reader: RefCell<Reader>,
}

/// One record found: its length in the input (terminator and any blank lines before it
/// included) and its fields.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) len: usize,
    pub(crate) fields: Vec<Vec<u8>>,
}

impl Splitter {
    pub(crate) fn new(dialect: Dialect) -> Self {
        let reader = ReaderBuilder::new()
            .delimiter(dialect.delimiter)
            .quote(dialect.quote)
            .build();
        Splitter {
            reader: RefCell::new(reader),
        }
    }

    /// The first record of `input`. Without `eof` only a record ended by its line break
    /// counts; with it, the end of `input` also ends one. `None`: no (complete) record.
    pub(crate) fn first(&self, input: &[u8], eof: bool) -> Option<Found> {
        let mut reader = self.reader.borrow_mut();
        reader.reset();
        let mut output = vec![0u8; input.len().clamp(16, 4096)];
        let mut ends = vec![0usize; 16];
        let (mut nin, mut nout, mut nend) = (0, 0, 0);
        loop {
            let (result, i, o, e) =
                reader.read_record(&input[nin..], &mut output[nout..], &mut ends[nend..]);
            nin += i;
            nout += o;
            nend += e;
            match result {
                ReadRecordResult::Record => break,
                ReadRecordResult::OutputFull => output.resize(output.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                ReadRecordResult::InputEmpty if eof && nin == input.len() => {
                    // An empty input tells csv-core the data ended.
                    let (result, _, _, e) =
                        reader.read_record(&[], &mut output[nout..], &mut ends[nend..]);
                    nend += e;
                    match result {
                        ReadRecordResult::Record => break,
                        _ => return None,
                    }
                }
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return None,
            }
        }
        let mut fields = Vec::with_capacity(nend);
        let mut from = 0;
        for &end in &ends[..nend] {
            fields.push(output[from..end].to_vec());
            from = end;
        }
        Some(Found { len: nin, fields })
    }

    /// Where the complete records of `input` end (blank lines after the last one count
    /// as ended too).
    pub(crate) fn complete_len(&self, input: &[u8]) -> usize {
        let mut at = 0;
        while let Some(found) = self.first(&input[at..], false) {
            at += found.len;
        }
        let blank = input[at..]
            .iter()
            .take_while(|b| matches!(b, b'\n' | b'\r'))
            .count();
        at + blank
    }
}

/// Writes `fields` as one CSV record (every field quoted), which the splitter reads back as
/// the same fields.
pub(crate) fn write_record(fields: &[Vec<u8>], dialect: Dialect) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(dialect.delimiter);
        }
        out.push(dialect.quote);
        for &b in field {
            if b == dialect.quote {
                out.push(b);
            }
            out.push(b);
        }
        out.push(dialect.quote);
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect() -> Dialect {
        Dialect {
            delimiter: b',',
            quote: b'"',
            has_header: true,
        }
    }

    #[test]
    fn records_end_where_csv_core_ends_them() {
        let splitter = Splitter::new(dialect());
        let found = splitter.first(b"1,\"a\nb\",c\n2,d\n", false).unwrap();
        assert_eq!(found.len, 10);
        assert_eq!(
            found.fields,
            [b"1".to_vec(), b"a\nb".to_vec(), b"c".to_vec()]
        );
        assert!(splitter.first(b"1,a", false).is_none());
        assert_eq!(splitter.first(b"1,a", true).unwrap().fields.len(), 2);
        assert!(splitter.first(b"1,\"open\n2,b\n", false).is_none());
        assert_eq!(splitter.complete_len(b"1,a\n2,\"b\n3"), 4);
        assert_eq!(splitter.complete_len(b"1,a\n\n"), 5);
        // A quote inside an unquoted field is a character, as arrow-csv reads it.
        let found = splitter.first(b"1,ab\"c\n", false).unwrap();
        assert_eq!(found.fields[1], b"ab\"c");
        let fields = vec![b"x,\"y\"".to_vec(), b"".to_vec()];
        let written = write_record(&fields, dialect());
        assert_eq!(splitter.first(&written, false).unwrap().fields, fields);
    }
}
