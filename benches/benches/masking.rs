//! Masking and hashing throughput on a 1,000,000-row column, against a plain copy of the
//! same column measured in the same run.
//!
//! * `copy_buffers` — baseline: deep copy of the column's offsets and bytes (memcpy).
//! * `copy_rows` — baseline: rebuild the column value by value through a `StringBuilder`,
//!   the loop shape the per-value masks share; what is left above it is the mask's own work.
//! * `null`, `redact`, `partial_keep4`, `hmac_sha256`, `tokenize_aes_siv`, `ip_prefix`,
//!   `year` — the masking methods of `cdp-governance`, one column each.
//! * `policy_transform` — a whole policy on a four-column batch: email hashed, IP
//!   generalised, card number dropped, event name passed.
//! * `policy_transform_nested` — the same policy and values nested as events carry them
//!   (`traits.email`, `traits.card_number`, `context.ip`, `event`): against
//!   `policy_transform`, the cost of masking in place inside structs.
//! * `policy_transform_list_of_structs` — `contacts[].email` hashed, one contact per row:
//!   against `hmac_sha256`, the cost of reaching into a list of structs.

use std::hint::black_box;
use std::sync::Arc;

use cdp_core::arrow::array::{
    Array, ArrayRef, Date32Array, ListArray, RecordBatch, StringArray, StringBuilder, StructArray,
};
use cdp_core::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use cdp_core::arrow::datatypes::{DataType, Field, Schema};
use cdp_governance::mask::{generalise, partial, redact};
use cdp_governance::{Keys, Method, Policy};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS: usize = 1_000_000;

fn emails() -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        (0..ROWS).map(|i| format!("customer.{i:07}@example-mail.com")),
    ))
}

fn ips() -> ArrayRef {
    Arc::new(StringArray::from_iter_values((0..ROWS).map(|i| {
        if i % 4 == 0 {
            format!("2001:db8:{:x}::{:x}", i % 65_536, i % 4_096)
        } else {
            format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
        }
    })))
}

fn dates() -> ArrayRef {
    Arc::new(Date32Array::from_iter_values(
        (0..ROWS).map(|i| 7_000 + (i % 15_000) as i32),
    ))
}

fn copy_buffers(array: &StringArray) -> StringArray {
    let offsets = ScalarBuffer::from(array.value_offsets().to_vec());
    let values = Buffer::from_slice_ref(array.value_data());
    StringArray::new(OffsetBuffer::new(offsets), values, array.nulls().cloned())
}

fn copy_rows(array: &StringArray) -> StringArray {
    let mut out = StringBuilder::with_capacity(array.len(), array.value_data().len());
    for value in array.iter() {
        out.append_option(value);
    }
    out.finish()
}

fn bench(c: &mut Criterion) {
    let emails = emails();
    let email_strings = emails
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8")
        .clone();
    let ips = ips();
    let dates = dates();
    let keys = Keys::new()
        .with_hash_key(b"bench-hmac-key-of-thirty-two-byt")
        .expect("hash key")
        .with_token_key(&[7; 64])
        .expect("token key");

    let mut group = c.benchmark_group("masking_1m_rows");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);

    group.bench_function("copy_buffers", |b| {
        b.iter(|| black_box(copy_buffers(&email_strings)))
    });
    group.bench_function("copy_rows", |b| {
        b.iter(|| black_box(copy_rows(&email_strings)))
    });
    group.bench_function("null", |b| {
        b.iter(|| black_box(Method::Null.apply("email", &emails, &keys).expect("null")))
    });
    group.bench_function("redact", |b| b.iter(|| black_box(redact(&emails))));
    group.bench_function("partial_keep4", |b| {
        b.iter(|| black_box(partial(&emails, 4).expect("partial")))
    });
    group.bench_function("hmac_sha256", |b| {
        let key = keys.hash_key().expect("hash key");
        b.iter(|| black_box(key.hash_strings(&email_strings).expect("hash")))
    });
    group.bench_function("tokenize_aes_siv", |b| {
        let tokenizer = keys.tokenizer().expect("token key");
        b.iter(|| black_box(tokenizer.tokenize_array(&emails).expect("tokenize")))
    });
    group.bench_function("ip_prefix", |b| {
        b.iter(|| black_box(generalise::ip_prefix(&ips, 24, 48).expect("ip")))
    });
    group.bench_function("year", |b| {
        b.iter(|| black_box(generalise::year(&dates).expect("year")))
    });

    let schema = Arc::new(Schema::new(vec![
        Field::new("email", DataType::Utf8, false),
        Field::new("ip", DataType::Utf8, false),
        Field::new("card_number", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            emails.clone(),
            ips.clone(),
            Arc::new(StringArray::from_iter_values(
                (0..ROWS).map(|i| format!("4111{i:012}")),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..ROWS).map(|i| ["Page Viewed", "Order Completed"][i % 2]),
            )),
        ],
    )
    .expect("batch");
    let policy = Policy::from_toml(
        r#"
        default_class = "internal"
        [[classify]]
        pattern = "email"
        class = "sensitive"
        [[classify]]
        pattern = "card_number"
        class = "restricted"
        [destinations.ads]
        max_class = "internal"
        require = { sensitive = "hash" }
        fields = { ip = { ip_prefix = { v4 = 24, v6 = 48 } } }
        "#,
    )
    .expect("policy")
    .with_keys(keys.clone());
    let masking = policy.masking_for("ads", &schema).expect("masking");
    group.bench_function("policy_transform", |b| {
        b.iter(|| black_box(masking.apply_to(&batch).expect("mask")))
    });

    // The same four values, nested as events carry them: the methods run on the child
    // arrays and the structs are rebuilt around them.
    let nested = nested_batch(&batch);
    let nested_masking = policy
        .masking_for("ads", &nested.schema())
        .expect("nested masking");
    group.bench_function("policy_transform_nested", |b| {
        b.iter(|| black_box(nested_masking.apply_to(&nested).expect("mask")))
    });
    // A list of contact structs, one email each, against hashing the flat column.
    let contacts = contacts_batch(&emails);
    let contacts_masking = policy
        .masking_for("ads", &contacts.schema())
        .expect("contacts masking");
    group.bench_function("policy_transform_list_of_structs", |b| {
        b.iter(|| black_box(contacts_masking.apply_to(&contacts).expect("mask")))
    });
    group.finish();
}

/// `traits { email, card_number }`, `context { ip }`, `event`, from the flat batch's columns.
fn nested_batch(flat: &RecordBatch) -> RecordBatch {
    let column = |name: &str| flat.column_by_name(name).expect("column").clone();
    let field = |name: &str| Arc::new(Field::new(name, DataType::Utf8, false));
    let traits = StructArray::from(vec![
        (field("email"), column("email")),
        (field("card_number"), column("card_number")),
    ]);
    let context = StructArray::from(vec![(field("ip"), column("ip"))]);
    RecordBatch::try_from_iter([
        ("traits", Arc::new(traits) as ArrayRef),
        ("context", Arc::new(context) as ArrayRef),
        ("event", column("event")),
    ])
    .expect("nested batch")
}

/// `contacts: [ { email } ]`, one contact per row.
fn contacts_batch(emails: &ArrayRef) -> RecordBatch {
    let contact = StructArray::from(vec![(
        Arc::new(Field::new("email", DataType::Utf8, false)),
        emails.clone(),
    )]);
    let item = Arc::new(Field::new("item", contact.data_type().clone(), false));
    let contacts = ListArray::new(
        item,
        OffsetBuffer::from_lengths(std::iter::repeat_n(1, emails.len())),
        Arc::new(contact),
        None,
    );
    RecordBatch::try_from_iter([("contacts", Arc::new(contacts) as ArrayRef)])
        .expect("contacts batch")
}

criterion_group!(benches, bench);
criterion_main!(benches);
