//! Column decoders that keep values as they are written: hooked into arrow-json's decoder
//! so the fast path refuses what would change a value, and the record-by-record path (which
//! applies the drift policy) sees the same verdicts.
//!
//! arrow-json on its own turns `10.75` into the integer `10`, and the string `"007"` into
//! `7`. Here an integer column takes a number only when its value is an integer exact in
//! 64 bits, and a string only when it is an integer written canonically; a float column
//! takes any number but an integer beyond 64 bits (which it would round), and a string only
//! when it is a canonical number. Under
//! [`TypeConflicts::Widen`](super::TypeConflicts::Widen) a text column also takes numbers
//! and booleans, as their JSON text, and says so through a flag the source turns into one
//! drift event per column.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, FieldRef, Schema};
use arrow::error::ArrowError;
use arrow_json::reader::{ArrayDecoder, DecoderContext, DecoderFactory, Tape, TapeElement};

use super::path::Path;
use super::text::{NumberKind, canonical_int, canonical_number, number_kind};

/// The decoder factory of one schema.
#[derive(Debug)]
pub(crate) struct StrictDecoders {
    widen_text: bool,
    /// Text columns by field identity (the `Arc` of the schema's field), with their path
    /// and the flag set when one took a non-string value.
    text: HashMap<usize, (Path, Arc<AtomicBool>)>,
}

impl StrictDecoders {
    /// Decoders for `schema`; `widen_text` lets text columns take numbers and booleans.
    pub(crate) fn new(schema: &Schema, widen_text: bool) -> Self {
        let mut text = HashMap::new();
        if widen_text {
            for field in schema.fields() {
                collect_text(field, Path::default().child(field.name()), &mut text);
            }
        }
        StrictDecoders { widen_text, text }
    }

    /// The paths of the text columns that took a number or a boolean since the last call.
    pub(crate) fn take_coerced(&self) -> Vec<Path> {
        self.text
            .values()
            .filter(|(_, flag)| flag.swap(false, Ordering::Relaxed))
            .map(|(path, _)| path.clone())
            .collect()
    }
}

fn key(field: &FieldRef) -> usize {
    Arc::as_ptr(field) as usize
}

fn collect_text(field: &FieldRef, path: Path, out: &mut HashMap<usize, (Path, Arc<AtomicBool>)>) {
    match field.data_type() {
        DataType::Utf8 => {
            out.insert(key(field), (path, Arc::new(AtomicBool::new(false))));
        }
        DataType::Struct(children) => {
            for child in children {
                collect_text(child, path.child(child.name()), out);
            }
        }
        DataType::List(item) => collect_text(item, path.item(), out),
        _ => {}
    }
}

impl DecoderFactory for StrictDecoders {
    fn make_default_decoder(
        &self,
        ctx: &DecoderContext,
        field: &FieldRef,
        is_nullable: bool,
    ) -> Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        let data_type = field.data_type();
        let check = if data_type.is_integer() {
            Check::Integer
        } else if data_type.is_floating() {
            Check::Float
        } else if self.widen_text && *data_type == DataType::Utf8 {
            let flag = match self.text.get(&key(field)) {
                Some((_, flag)) => flag.clone(),
                None => Arc::new(AtomicBool::new(false)),
            };
            let inner = ctx.make_builtin_decoder(field, is_nullable)?;
            return Ok(Some(Box::new(TextDecoder { inner, flag })));
        } else {
            return Ok(None);
        };
        let inner = ctx.make_builtin_decoder(field, is_nullable)?;
        Ok(Some(Box::new(StrictNumber { inner, check })))
    }
}

#[derive(Debug, Clone, Copy)]
enum Check {
    Integer,
    Float,
}

/// Refuses numbers a numeric column would change, then lets arrow-json decode.
struct StrictNumber {
    inner: Box<dyn ArrayDecoder>,
    check: Check,
}

/// Whether `text`, a JSON number, is an integer exact in 64 bits: most are short runs of
/// digits, which need no parsing to know.
fn integral(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text).as_bytes();
    if !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) {
        return true;
    }
    number_kind(text) == NumberKind::Int
}

/// Whether `text`, a JSON number, is an integer beyond 64 bits, which a float would round.
fn big_int(text: &str) -> bool {
    text.len() > 19 && number_kind(text) == NumberKind::BigInt
}

impl ArrayDecoder for StrictNumber {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        for &p in pos {
            let refused = match (tape.get(p), self.check) {
                (TapeElement::Number(idx), Check::Integer) => !integral(tape.get_string(idx)),
                (TapeElement::String(idx), Check::Integer) => {
                    canonical_int(tape.get_string(idx)).is_none()
                }
                (TapeElement::Number(idx), Check::Float) => big_int(tape.get_string(idx)),
                (TapeElement::String(idx), Check::Float) => {
                    canonical_number(tape.get_string(idx)).is_none()
                }
                _ => false,
            };
            if refused {
                return Err(tape.error(p, "a number its column holds unchanged"));
            }
        }
        self.inner.decode(tape, pos)
    }
}

/// A text column that, when a batch holds numbers or booleans, keeps them as their JSON
/// text instead of failing.
struct TextDecoder {
    inner: Box<dyn ArrayDecoder>,
    flag: Arc<AtomicBool>,
}

impl ArrayDecoder for TextDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        let error = match self.inner.decode(tape, pos) {
            Ok(array) => return Ok(array),
            Err(e) => e,
        };
        let mut builder = StringBuilder::with_capacity(pos.len(), pos.len() * 8);
        for &p in pos {
            match tape.get(p) {
                TapeElement::Null => builder.append_null(),
                TapeElement::String(idx) | TapeElement::Number(idx) => {
                    builder.append_value(tape.get_string(idx))
                }
                TapeElement::True => builder.append_value("true"),
                TapeElement::False => builder.append_value("false"),
                // Objects and lists become text on the record-by-record path, which
                // rewrites them; numbers from `serde` input do not occur in files.
                _ => return Err(error),
            }
        }
        self.flag.store(true, Ordering::Relaxed);
        Ok(Arc::new(builder.finish()))
    }
}
