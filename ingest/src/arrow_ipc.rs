//! Arrow IPC stream messages: the fast path for high-volume producers.
//!
//! # Format
//!
//! One Kafka message is one complete Arrow IPC *stream* (the schema message, one or more record
//! batch messages, optionally the end-of-stream marker), so every message can be read on its
//! own, wherever a consumer starts. Its schema is the wire schema ([`wire_schema`]): the
//! internal sample schema with the series key as strings instead of the dense `series_id`
//! (dense ids are private to one spikewatch process, so they cannot travel):
//!
//! | column | type | nullable | required |
//! |---|---|---|---|
//! | `ts` | Timestamp(ms) (any time zone; epoch ms UTC) | no | yes |
//! | `cluster`, `service` | Utf8 | no | yes |
//! | `region` | Utf8 | yes | no |
//! | `interval_ms` | UInt32 | no | no (default 10000) |
//! | `requests`, `errors` | UInt64 | no | yes |
//! | `retries` | UInt64 | yes | no |
//! | `latency_p50_ms`, `latency_p99_ms` | Float64 | yes | no |
//! | `db_pool_active`, `db_pool_max`, `db_pool_pending` | UInt32 | yes | no |
//!
//! Columns are found by name, in any order; other columns are ignored (as unknown JSON fields
//! are). A required column that is missing, or holds a null, is `missing_field`; a column of
//! another type is `wrong_type`; bytes that are not an IPC stream are `malformed_arrow`. Each
//! row gets the same checks as a JSON sample, and a key (`cluster`, `service`, a non-null
//! `region`) that is not valid UTF-8 is `not_utf8` at its row, like a JSON message that is not
//! UTF-8 (bytes under a null are never looked at). A message is taken or rejected whole: one bad
//! row rejects the message (reason and detail of the first bad row), so a dead letter is
//! always a complete producer batch. (A null in `interval_ms` means the default; nulls in the
//! optional columns are stored as nulls.)
//!
//! [`encode`] writes samples in this format (used by `spikewatch produce --format arrow`).
//!
//! # Decoding, column by column
//!
//! Every check runs over whole columns: a branch-free pass per check says whether any row is
//! bad, and only then is the first bad row looked for, 64 rows at a time, and named by the
//! row-wise checks of the other formats ([`crate::format`]), so reasons and details are theirs.
//! The internal batch takes the message's columns as they are where the type already matches
//! (`ts` with its zone set to UTC, the counts, the optional columns without nulls); only the
//! series ids are new.
//!
//! - The message is read by arrow-ipc under this crate's framing ([`stream`]), with the key
//!   columns as bytes: arrow checks their offsets, this module their UTF-8, a whole column at
//!   a time (all ASCII, the usual case, is one pass over the bytes).
//! - Series ids come from a mirror of the interner's keys ([`keys`]): a stretch of rows that
//!   runs through the producer's usual order costs one hash lookup and two comparisons over
//!   the whole stretch, whatever the batch's alignment with that order; only new series reach
//!   the interner.
//! - [`crate::format::MessageDecoder::decode_shared`] (and `decode_owned`) read the message in
//!   place, its buffer shared with the caller, instead of copying it first.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, BinaryArray, PrimitiveArray, RecordBatch};
use arrow_buffer::{Buffer, NullBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::format::{check_row, clip, empty_row, RowLimits};
use crate::json::{
    filled, utc, Chunk, JsonDecoder, RejectReason, Rejection, Row, Sample, Stamps, U32s, U64s,
    DEFAULT_INTERVAL_MS, MAX_INTERVAL_MS, MAX_KEY_BYTES,
};

/// Column names of the wire schema beyond the internal ones.
pub const CLUSTER: &str = "cluster";
pub const SERVICE: &str = "service";
pub const REGION: &str = "region";

/// The wire schema of Arrow IPC sample messages (see the module docs).
pub fn wire_schema() -> SchemaRef {
    use detector::schema as s;
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(
                    s::TS,
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    false,
                ),
                Field::new(CLUSTER, DataType::Utf8, false),
                Field::new(SERVICE, DataType::Utf8, false),
                Field::new(REGION, DataType::Utf8, true),
                Field::new(s::INTERVAL_MS, DataType::UInt32, false),
                Field::new(s::REQUESTS, DataType::UInt64, false),
                Field::new(s::ERRORS, DataType::UInt64, false),
                Field::new(s::RETRIES, DataType::UInt64, true),
                Field::new(s::LATENCY_P50_MS, DataType::Float64, true),
                Field::new(s::LATENCY_P99_MS, DataType::Float64, true),
                Field::new(s::DB_POOL_ACTIVE, DataType::UInt32, true),
                Field::new(s::DB_POOL_MAX, DataType::UInt32, true),
                Field::new(s::DB_POOL_PENDING, DataType::UInt32, true),
            ]))
        })
        .clone()
}

/// Samples as one record batch in [`wire_schema`]. `status` is not carried (it is not stored
/// by the decoder either).
pub fn samples_to_batch(samples: &[Sample]) -> Result<RecordBatch, ArrowError> {
    let n = samples.len();
    let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut cluster = StringBuilder::with_capacity(n, n * 16);
    let mut service = StringBuilder::with_capacity(n, n * 16);
    let mut region = StringBuilder::with_capacity(n, n * 12);
    let mut interval = UInt32Builder::with_capacity(n);
    let mut requests = UInt64Builder::with_capacity(n);
    let mut errors = UInt64Builder::with_capacity(n);
    let mut retries = UInt64Builder::with_capacity(n);
    let mut p50 = Float64Builder::with_capacity(n);
    let mut p99 = Float64Builder::with_capacity(n);
    let mut active = UInt32Builder::with_capacity(n);
    let mut max = UInt32Builder::with_capacity(n);
    let mut pending = UInt32Builder::with_capacity(n);
    for s in samples {
        ts.append_value(s.ts_ms);
        cluster.append_value(&s.cluster);
        service.append_value(&s.service);
        region.append_option(s.region.as_deref());
        interval.append_value(s.interval_ms);
        requests.append_value(s.requests);
        errors.append_value(s.errors);
        retries.append_option(s.retries);
        p50.append_option(s.latency_p50_ms);
        p99.append_option(s.latency_p99_ms);
        active.append_option(s.db_pool_active);
        max.append_option(s.db_pool_max);
        pending.append_option(s.db_pool_pending);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(cluster.finish()),
        Arc::new(service.finish()),
        Arc::new(region.finish()),
        Arc::new(interval.finish()),
        Arc::new(requests.finish()),
        Arc::new(errors.finish()),
        Arc::new(retries.finish()),
        Arc::new(p50.finish()),
        Arc::new(p99.finish()),
        Arc::new(active.finish()),
        Arc::new(max.finish()),
        Arc::new(pending.finish()),
    ];
    RecordBatch::try_new(wire_schema(), columns)
}

/// One record batch as a complete IPC stream (schema, batch, end-of-stream): one message.
pub fn batch_to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    w.into_inner()
}

/// Samples as one Arrow IPC message in the wire schema.
pub fn encode(samples: &[Sample]) -> Result<Vec<u8>, ArrowError> {
    batch_to_ipc(&samples_to_batch(samples)?)
}

mod keys;
mod stream;

use keys::KeyIndex;
use stream::{SchemaCache, Stream};

/// One IPC message, lent or shared. A shared message is read in place; a lent one is copied
/// first (the batch keeps the arrays until it is flushed, so they must own their bytes).
#[derive(Debug)]
pub(crate) enum Message<'a> {
    Lent(&'a [u8]),
    Shared(Buffer),
}

impl Message<'_> {
    fn len(&self) -> usize {
        match self {
            Message::Lent(b) => b.len(),
            Message::Shared(b) => b.len(),
        }
    }

    fn into_buffer(self) -> Buffer {
        match self {
            Message::Lent(b) => Buffer::from_slice_ref(b),
            Message::Shared(b) => b,
        }
    }
}

/// What the Arrow IPC decoder keeps from one message to the next: the series keys it has seen
/// (a mirror of the interner, [`keys`]) and the last schema message ([`stream`]).
#[derive(Debug, Default)]
pub(crate) struct ArrowState {
    keys: KeyIndex,
    schema: SchemaCache,
}

/// Reads every record batch of one IPC stream message ([`stream`]).
fn read_message(msg: Buffer, schema: &mut SchemaCache) -> Result<Stream, Rejection> {
    let malformed =
        |e: ArrowError| Rejection::new(RejectReason::MalformedArrow, clip(&e.to_string()));
    // Lengths read from the message are checked against the bytes that are there before
    // anything is sliced, so a forged length cannot make the reader allocate gigabytes.
    // Parsing untrusted IPC is also guarded against panics: a malformed message must cost one
    // rejection, nothing more. (Unwind safety: on a panic the message is dropped unseen, and
    // the schema cache is only ever replaced whole.)
    let parsed =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream::read(&msg, schema)));
    match parsed {
        Ok(res) => res.map_err(malformed),
        Err(_) => Err(Rejection::new(
            RejectReason::MalformedArrow,
            "the IPC reader failed on this message",
        )),
    }
}

/// Typed views of the columns of one batch as read ([`stream`]: key columns as bytes).
struct Cols<'a> {
    ts: &'a arrow_array::PrimitiveArray<TimestampMillisecondType>,
    cluster: &'a BinaryArray,
    service: &'a BinaryArray,
    region: Option<&'a BinaryArray>,
    interval: Option<&'a arrow_array::PrimitiveArray<UInt32Type>>,
    requests: &'a arrow_array::PrimitiveArray<UInt64Type>,
    errors: &'a arrow_array::PrimitiveArray<UInt64Type>,
    retries: Option<&'a arrow_array::PrimitiveArray<UInt64Type>>,
    p50: Option<&'a arrow_array::PrimitiveArray<Float64Type>>,
    p99: Option<&'a arrow_array::PrimitiveArray<Float64Type>>,
    active: Option<&'a arrow_array::PrimitiveArray<UInt32Type>>,
    max: Option<&'a arrow_array::PrimitiveArray<UInt32Type>>,
    pending: Option<&'a arrow_array::PrimitiveArray<UInt32Type>>,
}

fn wrong_type(name: &str, want: &str, got: &DataType) -> Rejection {
    Rejection::new(
        RejectReason::WrongType,
        format!("column {name} must be {want}, found {got}"),
    )
}

fn column<'a>(
    batch: &'a RecordBatch,
    name: &str,
    required: bool,
) -> Result<Option<&'a ArrayRef>, Rejection> {
    match batch.column_by_name(name) {
        Some(c) => Ok(Some(c)),
        None if required => Err(Rejection::new(
            RejectReason::MissingField,
            format!("missing required column `{name}`"),
        )),
        None => Ok(None),
    }
}

/// A key column: `Utf8` as sent (`wire`), read as bytes.
fn key<'a>(
    batch: &'a RecordBatch,
    wire: &Schema,
    name: &str,
    required: bool,
) -> Result<Option<&'a BinaryArray>, Rejection> {
    column(batch, name, required)?
        .map(|c| {
            let sent = wire
                .field_with_name(name)
                .map_or(c.data_type(), |f| f.data_type());
            match (sent, c.as_binary_opt::<i32>()) {
                (DataType::Utf8, Some(bytes)) => Ok(bytes),
                _ => Err(wrong_type(name, "Utf8", sent)),
            }
        })
        .transpose()
}

fn prim<'a, T: arrow_array::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
    required: bool,
) -> Result<Option<&'a arrow_array::PrimitiveArray<T>>, Rejection> {
    column(batch, name, required)?
        .map(|c| {
            c.as_primitive_opt::<T>()
                .ok_or_else(|| wrong_type(name, &T::DATA_TYPE.to_string(), c.data_type()))
        })
        .transpose()
}

fn req<T>(v: Option<T>) -> T
where
    T: Copy,
{
    match v {
        Some(v) => v,
        // Only called on columns fetched with `required = true`, which error instead of None.
        None => unreachable!("required column checked above"),
    }
}

impl<'a> Cols<'a> {
    /// The columns of a batch as read, `wire` being the schema as sent.
    fn new(batch: &'a RecordBatch, wire: &Schema) -> Result<Self, Rejection> {
        use detector::schema as s;
        let ts_col = req(column(batch, s::TS, true)?);
        let ts = match ts_col.data_type() {
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                ts_col.as_primitive::<TimestampMillisecondType>()
            }
            other => return Err(wrong_type(s::TS, "Timestamp(ms)", other)),
        };
        Ok(Self {
            ts,
            cluster: req(key(batch, wire, CLUSTER, true)?),
            service: req(key(batch, wire, SERVICE, true)?),
            region: key(batch, wire, REGION, false)?,
            interval: prim::<UInt32Type>(batch, s::INTERVAL_MS, false)?,
            requests: req(prim::<UInt64Type>(batch, s::REQUESTS, true)?),
            errors: req(prim::<UInt64Type>(batch, s::ERRORS, true)?),
            retries: prim::<UInt64Type>(batch, s::RETRIES, false)?,
            p50: prim::<Float64Type>(batch, s::LATENCY_P50_MS, false)?,
            p99: prim::<Float64Type>(batch, s::LATENCY_P99_MS, false)?,
            active: prim::<UInt32Type>(batch, s::DB_POOL_ACTIVE, false)?,
            max: prim::<UInt32Type>(batch, s::DB_POOL_MAX, false)?,
            pending: prim::<UInt32Type>(batch, s::DB_POOL_PENDING, false)?,
        })
    }

    fn row(&self, i: usize) -> Result<Row<'a>, Rejection> {
        fn get<T: arrow_array::ArrowPrimitiveType>(
            a: Option<&arrow_array::PrimitiveArray<T>>,
            i: usize,
        ) -> Option<T::Native> {
            a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
        }
        let missing =
            |name: &str| Rejection::new(RejectReason::MissingField, format!("{name} is null"));
        let text = |a: &'a BinaryArray, name: &str| -> Result<Cow<'a, str>, Rejection> {
            std::str::from_utf8(a.value(i))
                .map(Cow::Borrowed)
                .map_err(|e| {
                    Rejection::new(
                        RejectReason::NotUtf8,
                        format!("{name} is not valid UTF-8: {e}"),
                    )
                })
        };
        let required_text = |a: &'a BinaryArray, name: &str| {
            if a.is_valid(i) {
                text(a, name)
            } else {
                Err(missing(name))
            }
        };
        use detector::schema as s;
        let cluster = required_text(self.cluster, CLUSTER)?;
        let service = required_text(self.service, SERVICE)?;
        let ts_ms = get(Some(self.ts), i).ok_or_else(|| missing(s::TS))?;
        let mut row = empty_row(cluster, service, ts_ms);
        row.region = match self.region {
            Some(a) if a.is_valid(i) => Some(text(a, REGION)?),
            _ => None,
        };
        row.interval_ms = get(self.interval, i).unwrap_or(DEFAULT_INTERVAL_MS);
        row.requests = get(Some(self.requests), i).ok_or_else(|| missing(s::REQUESTS))?;
        row.errors = get(Some(self.errors), i).ok_or_else(|| missing(s::ERRORS))?;
        row.retries = get(self.retries, i);
        row.latency_p50_ms = get(self.p50, i);
        row.latency_p99_ms = get(self.p99, i);
        row.db_pool_active = get(self.active, i);
        row.db_pool_max = get(self.max, i);
        row.db_pool_pending = get(self.pending, i);
        Ok(row)
    }
}

/// Decodes one IPC message, checks every row, then appends them all to `out` (or none).
/// Returns the number of rows appended.
///
/// Column by column: each check runs over a whole column, so a valid message (the common case)
/// costs a few tight loops per column and one series-id lookup per row, and the internal
/// batch's columns share the message's buffers wherever the types already match. When a check
/// finds a bad row, the row-wise checks ([`Cols::row`], [`check_row`]) run on the first one to
/// name it, so reasons and details are exactly those of a row-by-row decoder.
pub(crate) fn decode_into(
    msg: Message<'_>,
    max_bytes: usize,
    limits: RowLimits,
    out: &mut JsonDecoder,
    state: &mut ArrowState,
) -> Result<usize, Rejection> {
    if msg.len() > max_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!(
                "message of {} bytes exceeds the limit of {max_bytes} bytes",
                msg.len()
            ),
        ));
    }
    let stream = read_message(msg.into_buffer(), &mut state.schema)?;
    decode_batches(&stream.batches, &stream.wire, limits, out, &mut state.keys)
}

/// The batches of one message (read with [`stream::read_schema`] from `wire`): every row
/// checked, then all appended to `out` (or none).
fn decode_batches(
    batches: &[RecordBatch],
    wire: &Schema,
    limits: RowLimits,
    out: &mut JsonDecoder,
    keys: &mut KeyIndex,
) -> Result<usize, Rejection> {
    let mut checked = Vec::with_capacity(batches.len());
    let mut index = 0usize;
    for batch in batches {
        let cols = Cols::new(batch, wire)?;
        let n = batch.num_rows();
        if let Some(first) = cols.first_bad_row(limits) {
            // The row-wise checks name the problem. Should they pass a row the column checks
            // flagged, they carry on to the next bad row: a false alarm costs time, never a
            // valid message.
            let bad = (first..n).find_map(|i| {
                cols.row(i)
                    .and_then(|row| check_row(&row, limits))
                    .err()
                    .map(|r| (i, r))
            });
            if let Some((i, r)) = bad {
                return Err(Rejection::new(
                    r.reason,
                    format!("row {}: {}", index + i, r.detail),
                ));
            }
        }
        index += n;
        checked.push(cols);
    }
    // Every row is valid: look the series up (interning new ones), then hand the columns over.
    let mut ids = Vec::with_capacity(checked.len());
    for cols in &checked {
        ids.push(cols.series_ids(out, keys)?);
    }
    for (cols, ids) in checked.iter().zip(ids) {
        if !ids.is_empty() {
            out.push_chunk(cols.to_chunk(ids));
        }
    }
    Ok(index)
}

impl Cols<'_> {
    /// The first row that any check of [`Cols::row`] or [`check_row`] would reject.
    fn first_bad_row(&self, limits: RowLimits) -> Option<usize> {
        use crate::time::{MAX_TS_MS, MIN_TS_MS};
        let latest = MAX_TS_MS.min(limits.now_ms.saturating_add(limits.max_future_ms));
        let max_key = MAX_KEY_BYTES as u32;
        let max_interval = MAX_INTERVAL_MS;
        let key_len_bad =
            |start: i32, end: i32| end.wrapping_sub(start).wrapping_sub(1) as u32 >= max_key;
        // Not `is_finite()` nor a range's `contains` (whose `&&` branches): this form compiles
        // to vector compares.
        #[allow(clippy::manual_range_contains)]
        let latency_bad = |x: f64| !((x >= 0.0) & (x <= f64::MAX));
        // Each candidate is the first bad row of one check; the minimum is the answer. Every
        // required column is checked without regard to nulls: a null row there is bad anyway.
        let key = |a: &BinaryArray| {
            let offsets = a.value_offsets();
            first_bad_pair(&offsets[..a.len()], &offsets[1..], None, key_len_bad)
        };
        let candidates = [
            first_null(self.cluster),
            first_null(self.service),
            first_non_utf8(self.cluster, None),
            first_non_utf8(self.service, None),
            self.region.and_then(|a| first_non_utf8(a, a.nulls())),
            first_null(self.ts),
            first_null(self.requests),
            first_null(self.errors),
            key(self.cluster),
            key(self.service),
            first_bad(self.ts.values(), None, |t| (t < MIN_TS_MS) | (t > latest)),
            self.interval.and_then(|a| {
                first_bad(a.values(), a.nulls(), |v| v.wrapping_sub(1) >= max_interval)
            }),
            first_bad_pair(
                self.errors.values(),
                self.requests.values(),
                None,
                |e, r| e > r,
            ),
            self.retries.and_then(|a| {
                first_bad_pair(a.values(), self.requests.values(), a.nulls(), |t, r| t > r)
            }),
            self.p50
                .and_then(|a| first_bad(a.values(), a.nulls(), latency_bad)),
            self.p99
                .and_then(|a| first_bad(a.values(), a.nulls(), latency_bad)),
        ];
        candidates.into_iter().flatten().min()
    }

    /// The series id of every row, interning new series in row order.
    fn series_ids(
        &self,
        out: &mut JsonDecoder,
        keys: &mut KeyIndex,
    ) -> Result<ScalarBuffer<u32>, Rejection> {
        if self.ts.is_empty() {
            return Ok(ScalarBuffer::from(Vec::new()));
        }
        // All null is no region at all.
        let region = self.region.filter(|r| r.null_count() < r.len());
        keys.ids(self.cluster, self.service, region, out)
            .map(ScalarBuffer::from)
    }

    /// The checked rows in the internal schema, sharing this batch's buffers where the type
    /// already matches.
    fn to_chunk(&self, ids: ScalarBuffer<u32>) -> Chunk {
        let n = ids.len();
        Chunk {
            series_id: U32s::new(ids, None),
            // Checked: no nulls. Any time zone on the wire: the values are UTC epoch ms.
            ts: Stamps::new(self.ts.values().clone(), None).with_timezone(utc()),
            interval_ms: match self.interval {
                None => U32s::new(filled(DEFAULT_INTERVAL_MS, n), None),
                Some(a) => with_default(a, DEFAULT_INTERVAL_MS),
            },
            requests: U64s::new(self.requests.values().clone(), None),
            errors: U64s::new(self.errors.values().clone(), None),
            retries: optional(self.retries, n),
            latency_p50_ms: optional(self.p50, n),
            latency_p99_ms: optional(self.p99, n),
            db_pool_active: optional(self.active, n),
            db_pool_max: optional(self.max, n),
            db_pool_pending: optional(self.pending, n),
        }
    }
}

/// An optional column as the internal batch holds it: shared when it has no null, copied with
/// 0 in the null slots when it has some (what a row-by-row builder would have written, so the
/// batch does not depend on whatever a producer left under its nulls), all null when absent.
fn optional<T: ArrowPrimitiveType>(a: Option<&PrimitiveArray<T>>, n: usize) -> PrimitiveArray<T> {
    let all_null = || {
        PrimitiveArray::new(
            filled(T::Native::default(), n),
            Some(NullBuffer::new_null(n)),
        )
    };
    let Some(a) = a else {
        return all_null();
    };
    match a.nulls().filter(|nulls| nulls.null_count() > 0) {
        None => PrimitiveArray::new(a.values().clone(), None),
        Some(nulls) if nulls.null_count() == n => all_null(),
        Some(nulls) => PrimitiveArray::new(
            replace_nulls(a.values(), nulls, T::Native::default()).into(),
            Some(nulls.clone()),
        ),
    }
}

/// A column whose nulls mean `default`, without nulls.
fn with_default<T: ArrowPrimitiveType>(
    a: &PrimitiveArray<T>,
    default: T::Native,
) -> PrimitiveArray<T> {
    match a.nulls().filter(|nulls| nulls.null_count() > 0) {
        None => PrimitiveArray::new(a.values().clone(), None),
        Some(nulls) => PrimitiveArray::new(replace_nulls(a.values(), nulls, default).into(), None),
    }
}

/// `values` with `fill` in every null slot, validity read 64 bits at a time.
fn replace_nulls<T: Copy>(values: &[T], nulls: &NullBuffer, fill: T) -> Vec<T> {
    let mut out = Vec::with_capacity(values.len());
    let bits = nulls.inner().bit_chunks();
    for (block, valid) in values.chunks(BLOCK).zip(bits.iter_padded()) {
        out.extend(
            block
                .iter()
                .enumerate()
                .map(|(j, &v)| if valid >> j & 1 == 1 { v } else { fill }),
        );
    }
    out
}

/// The value bytes an array's offsets cover (a slice of an array covers only its rows').
fn covered_bytes(a: &BinaryArray) -> &[u8] {
    let offsets = a.value_offsets();
    let (start, end) = (
        offsets.first().copied().unwrap_or(0),
        offsets.last().copied().unwrap_or(0),
    );
    a.value_data()
        .get(start as usize..end as usize)
        .unwrap_or_default()
}

/// The first row that is not UTF-8, among those valid in `valid` (all when `None`).
///
/// The column at once first: bytes that are all ASCII are UTF-8 whatever the offsets; bytes
/// that are UTF-8 as a whole are UTF-8 row by row when every offset falls on a character
/// boundary. Only a column that fails both is looked at row by row.
fn first_non_utf8(a: &BinaryArray, valid: Option<&NullBuffer>) -> Option<usize> {
    let bytes = covered_bytes(a);
    if bytes.is_ascii() {
        return None;
    }
    let offsets = a.value_offsets();
    let base = offsets.first().copied().unwrap_or(0);
    if let Ok(text) = std::str::from_utf8(bytes) {
        if offsets
            .iter()
            .all(|&o| text.is_char_boundary((o - base) as usize))
        {
            return None;
        }
    }
    (0..a.len())
        .find(|&i| valid.is_none_or(|v| v.is_valid(i)) && std::str::from_utf8(a.value(i)).is_err())
}

/// Rows per block of the column checks: one bit of a `u64` mask each.
const BLOCK: usize = 64;

/// The first null of a column, if any.
fn first_null(a: &dyn Array) -> Option<usize> {
    let nulls = a.nulls().filter(|n| n.null_count() > 0)?;
    nulls.iter().position(|valid| !valid)
}

/// The first row, among those valid in `valid` (all when `None`), for which `bad` holds.
///
/// Without nulls, one branch-free pass over the whole column says whether any row is bad (the
/// common answer being no). Otherwise, or to find the row, a block of 64 rows at a time: `bad`
/// runs on every row of the block into a bit mask, masked by the validity bits of the block,
/// read 64 at a time; the first block with a bad row has its lowest set bit taken.
fn first_bad<T: Copy>(
    values: &[T],
    valid: Option<&NullBuffer>,
    bad: impl Fn(T) -> bool,
) -> Option<usize> {
    first_bad_pair(values, values, valid, |a, _| bad(a))
}

/// [`first_bad`] over two columns of equal length, row by row.
fn first_bad_pair<A: Copy, B: Copy>(
    a: &[A],
    b: &[B],
    valid: Option<&NullBuffer>,
    bad: impl Fn(A, B) -> bool,
) -> Option<usize> {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let valid = valid.filter(|v| v.null_count() > 0);
    if valid.is_some_and(|v| v.null_count() == v.len()) {
        // Nothing valid, nothing to check.
        return None;
    }
    if valid.is_none() {
        // The common case, nothing bad: one pass or-ing every row's verdict, which the
        // compiler vectorises (a boolean `any` would become a loop with an early exit
        // instead, and a `usize` count narrows the vector lanes for 32-bit columns).
        let any = a
            .iter()
            .zip(b)
            .fold(0u8, |acc, (&x, &y)| acc | u8::from(bad(x, y)))
            != 0;
        if !any {
            return None;
        }
    }
    let valid_chunks = valid.map(|v| v.inner().bit_chunks());
    let mut valid_bits = valid_chunks.as_ref().map(|c| c.iter_padded());
    let mask_of = |a: &[A], b: &[B]| {
        let mut mask = 0u64;
        for (j, (&x, &y)) in a.iter().zip(b).enumerate() {
            mask |= u64::from(bad(x, y)) << j;
        }
        mask
    };
    let mut blocks = a.chunks_exact(BLOCK).zip(b.chunks_exact(BLOCK));
    let mut start = 0;
    for (ca, cb) in blocks.by_ref() {
        let mut mask = mask_of(ca, cb);
        if let Some(bits) = valid_bits.as_mut() {
            mask &= bits.next().unwrap_or(0);
        }
        if mask != 0 {
            return Some(start + mask.trailing_zeros() as usize);
        }
        start += BLOCK;
    }
    let mut mask = mask_of(&a[start..], &b[start..]);
    if let Some(bits) = valid_bits.as_mut() {
        mask &= bits.next().unwrap_or(0);
    }
    (mask != 0).then(|| start + mask.trailing_zeros() as usize)
}

/// A wire-schema batch as the reader gives it ([`stream::read_schema`]: `Utf8` key columns
/// as bytes).
fn as_read(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = stream::read_schema(&batch.schema());
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| match (c.as_string_opt::<i32>(), f.data_type()) {
            (Some(strings), DataType::Binary) => {
                Arc::new(BinaryArray::from(strings.clone())) as ArrayRef
            }
            _ => c.clone(),
        })
        .collect();
    RecordBatch::try_new(schema, columns)
}

/// Samples back from a wire-schema batch without checks (for tests and tools).
pub fn batch_to_samples(batch: &RecordBatch) -> Result<Vec<Sample>, Rejection> {
    let read = as_read(batch)
        .map_err(|e| Rejection::new(RejectReason::MalformedArrow, clip(&e.to_string())))?;
    samples_of(&read, &batch.schema())
}

fn samples_of(batch: &RecordBatch, wire: &Schema) -> Result<Vec<Sample>, Rejection> {
    let cols = Cols::new(batch, wire)?;
    (0..batch.num_rows())
        .map(|i| Ok(cols.row(i)?.into_sample()))
        .collect()
}

/// Every sample of one IPC message, without the row checks (for tests and tools).
pub fn decode_samples(msg: &[u8]) -> Result<Vec<Sample>, Rejection> {
    let stream = read_message(Buffer::from_slice_ref(msg), &mut SchemaCache::default())?;
    let mut out = Vec::new();
    for b in &stream.batches {
        out.extend(samples_of(b, &stream.wire)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::DecoderOptions;
    use crate::json::RejectReason;
    use arrow_array::{
        Float64Array, StringArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
    };
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000;
    const LIMITS: RowLimits = RowLimits {
        now_ms: NOW,
        max_future_ms: 86_400_000,
    };

    fn json_decoder() -> JsonDecoder {
        JsonDecoder::new(DecoderOptions {
            now_ms: Some(NOW),
            ..DecoderOptions::default()
        })
    }

    /// The row-by-row decoder this module's column checks replaced: every row through
    /// [`Cols::row`] and [`check_row`], then appended one by one.
    fn row_by_row(batches: &[RecordBatch], out: &mut JsonDecoder) -> Result<usize, Rejection> {
        let (read, wire) = read_form(batches);
        let mut rows = Vec::new();
        let mut index = 0;
        for batch in &read {
            let cols = Cols::new(batch, &wire)?;
            for i in 0..batch.num_rows() {
                let at =
                    |r: Rejection| Rejection::new(r.reason, format!("row {index}: {}", r.detail));
                let row = cols.row(i).map_err(at)?;
                check_row(&row, LIMITS).map_err(at)?;
                rows.push(row);
                index += 1;
            }
        }
        for row in &rows {
            out.push_row(row)?;
        }
        Ok(rows.len())
    }

    /// Wire batches (`Utf8` keys) as the reader gives them, and their wire schema.
    fn read_form(batches: &[RecordBatch]) -> (Vec<RecordBatch>, SchemaRef) {
        let wire = batches
            .first()
            .map_or_else(wire_schema, RecordBatch::schema);
        (batches.iter().map(|b| as_read(b).unwrap()).collect(), wire)
    }

    /// [`decode_batches`] on wire batches.
    fn columnar(
        batches: &[RecordBatch],
        out: &mut JsonDecoder,
        keys: &mut KeyIndex,
    ) -> Result<usize, Rejection> {
        let (read, wire) = read_form(batches);
        decode_batches(&read, &wire, LIMITS, out, keys)
    }

    /// Decodes with both and checks they agree on the outcome, the batch (values under nulls
    /// included) and the interned series; twice, the second time with the keys the first
    /// pass interned.
    fn agree(batches: &[RecordBatch]) -> Result<Result<usize, Rejection>, TestCaseError> {
        let (mut dec, mut reference) = (json_decoder(), json_decoder());
        let mut keys = KeyIndex::default();
        let mut outcome = None;
        for _ in 0..2 {
            let got = columnar(batches, &mut dec, &mut keys);
            let want = row_by_row(batches, &mut reference);
            prop_assert_eq!(&got, &want);
            let (a, b) = (dec.flush(), reference.flush());
            prop_assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                prop_assert_eq!(&a, &b);
                // Values under nulls too: the batch must not depend on what a producer left
                // there.
                let raw = |a: &ArrayRef| {
                    let d = a.to_data();
                    let width = d.data_type().primitive_width().unwrap_or(0);
                    d.buffers()[0].as_slice()[d.offset() * width..(d.offset() + d.len()) * width]
                        .to_vec()
                };
                for (ca, cb) in a.columns().iter().zip(b.columns()) {
                    prop_assert_eq!(raw(ca), raw(cb), "values of {}", ca.data_type());
                }
            }
            prop_assert_eq!(dec.interner().keys(), reference.interner().keys());
            outcome = Some(got);
        }
        outcome.ok_or_else(|| TestCaseError::fail("no outcome"))
    }

    /// A wire batch of the given columns (all optional ones present, nullable everywhere).
    #[allow(clippy::too_many_arguments)]
    fn batch(
        ts: Vec<Option<i64>>,
        cluster: Vec<Option<&str>>,
        service: Vec<Option<&str>>,
        region: Vec<Option<&str>>,
        interval: Vec<Option<u32>>,
        requests: Vec<Option<u64>>,
        errors: Vec<Option<u64>>,
        retries: Vec<Option<u64>>,
        p50: Vec<Option<f64>>,
    ) -> RecordBatch {
        use detector::schema as s;
        let n = ts.len();
        let columns: Vec<(&str, ArrayRef)> = vec![
            (s::TS, Arc::new(TimestampMillisecondArray::from(ts))),
            (CLUSTER, Arc::new(StringArray::from(cluster))),
            (SERVICE, Arc::new(StringArray::from(service))),
            (REGION, Arc::new(StringArray::from(region))),
            (s::INTERVAL_MS, Arc::new(UInt32Array::from(interval))),
            (s::REQUESTS, Arc::new(UInt64Array::from(requests))),
            (s::ERRORS, Arc::new(UInt64Array::from(errors))),
            (s::RETRIES, Arc::new(UInt64Array::from(retries))),
            (s::LATENCY_P50_MS, Arc::new(Float64Array::from(p50))),
            (
                s::DB_POOL_MAX,
                Arc::new(UInt32Array::from(vec![Some(7); n])),
            ),
        ];
        let batch = RecordBatch::try_from_iter_with_nullable(
            columns.into_iter().map(|(name, a)| (name, a, true)),
        );
        batch.unwrap()
    }

    /// `n` good rows of two series, then `edit` applied to them.
    fn edited(n: usize, edit: &dyn Fn(&mut Vec<RowValues>)) -> RecordBatch {
        let mut rows: Vec<RowValues> = (0..n)
            .map(|i| RowValues {
                ts: Some(NOW - 10_000 * i as i64),
                cluster: Some(if i % 2 == 0 { "c1" } else { "c2" }),
                service: Some("api"),
                region: None,
                interval: Some(10_000),
                requests: Some(100),
                errors: Some(1),
                retries: Some(2),
                p50: Some(1.5),
            })
            .collect();
        edit(&mut rows);
        batch(
            rows.iter().map(|r| r.ts).collect(),
            rows.iter().map(|r| r.cluster).collect(),
            rows.iter().map(|r| r.service).collect(),
            rows.iter().map(|r| r.region).collect(),
            rows.iter().map(|r| r.interval).collect(),
            rows.iter().map(|r| r.requests).collect(),
            rows.iter().map(|r| r.errors).collect(),
            rows.iter().map(|r| r.retries).collect(),
            rows.iter().map(|r| r.p50).collect(),
        )
    }

    #[derive(Debug, Clone)]
    struct RowValues {
        ts: Option<i64>,
        cluster: Option<&'static str>,
        service: Option<&'static str>,
        region: Option<&'static str>,
        interval: Option<u32>,
        requests: Option<u64>,
        errors: Option<u64>,
        retries: Option<u64>,
        p50: Option<f64>,
    }

    #[test]
    fn column_checks_name_the_first_bad_row_like_the_row_checks() {
        type Edit = fn(&mut RowValues);
        // (name, edit of the bad rows, reason, detail fragment)
        let cases: Vec<(&str, Edit, RejectReason, &str)> = vec![
            (
                "null cluster",
                |r| r.cluster = None,
                RejectReason::MissingField,
                "cluster is null",
            ),
            (
                "null ts",
                |r| r.ts = None,
                RejectReason::MissingField,
                "ts is null",
            ),
            (
                "null requests",
                |r| r.requests = None,
                RejectReason::MissingField,
                "requests is null",
            ),
            (
                "null errors",
                |r| r.errors = None,
                RejectReason::MissingField,
                "errors is null",
            ),
            (
                "empty service",
                |r| r.service = Some(""),
                RejectReason::InvalidKey,
                "service is empty",
            ),
            (
                "ts before year 0",
                |r| r.ts = Some(i64::MIN),
                RejectReason::InvalidTimestamp,
                "outside",
            ),
            (
                "ts in the future",
                |r| r.ts = Some(NOW + 86_400_001),
                RejectReason::FutureTimestamp,
                "ahead",
            ),
            (
                "zero interval",
                |r| r.interval = Some(0),
                RejectReason::InvalidInterval,
                "found 0",
            ),
            (
                "interval over a day",
                |r| r.interval = Some(86_400_001),
                RejectReason::InvalidInterval,
                "86400001",
            ),
            (
                "errors over requests",
                |r| r.errors = Some(101),
                RejectReason::ErrorsExceedRequests,
                "errors 101 > requests 100",
            ),
            (
                "retries over requests",
                |r| r.retries = Some(101),
                RejectReason::RetriesExceedRequests,
                "retries 101",
            ),
            (
                "NaN latency",
                |r| r.p50 = Some(f64::NAN),
                RejectReason::NotFinite,
                "latency_p50_ms",
            ),
            (
                "infinite latency",
                |r| r.p50 = Some(f64::INFINITY),
                RejectReason::NotFinite,
                "latency_p50_ms",
            ),
            (
                "negative latency",
                |r| r.p50 = Some(-0.5),
                RejectReason::InvalidValue,
                "negative",
            ),
        ];
        // A bad row first, in the middle, last; in a batch longer than one 64-row block, and
        // twice (the first one is named).
        for (name, edit, reason, detail) in cases {
            for (n, bad) in [
                (3, vec![0]),
                (3, vec![1]),
                (3, vec![2]),
                (150, vec![70, 149]),
                (150, vec![149]),
            ] {
                let b = edited(n, &|rows| bad.iter().for_each(|&i| edit(&mut rows[i])));
                let got = agree(std::slice::from_ref(&b)).unwrap();
                let err = got.unwrap_err();
                assert_eq!(err.reason, reason, "case {name:?} rows {bad:?}: {err}");
                assert!(
                    err.detail.starts_with(&format!("row {}: ", bad[0])),
                    "case {name:?} rows {bad:?}: {err}"
                );
                assert!(
                    err.detail.contains(detail),
                    "case {name:?} rows {bad:?}: {err}"
                );
            }
        }
    }

    #[test]
    fn nulls_in_optional_columns_are_accepted_and_stored_as_nulls() {
        // (name, edit)
        type Edit = fn(&mut RowValues);
        let cases: Vec<(&str, Edit)> = vec![
            ("null interval means the default", |r| r.interval = None),
            ("null retries", |r| r.retries = None),
            ("null latency", |r| r.p50 = None),
            ("null region", |r| r.region = None),
            ("region on some rows", |r| r.region = Some("eu-west-1")),
        ];
        for (name, edit) in cases {
            for bad in [vec![0], vec![5], vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9]] {
                let b = edited(10, &|rows| bad.iter().for_each(|&i| edit(&mut rows[i])));
                let got = agree(std::slice::from_ref(&b)).unwrap();
                assert_eq!(got, Ok(10), "case {name:?} rows {bad:?}");
            }
        }
    }

    /// `msg` with the first occurrence of `from` replaced by `to` (same length, so every
    /// offset stays where it was).
    fn patched(msg: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let at = msg
            .windows(from.len())
            .position(|w| w == from)
            .expect("marker in the message");
        let mut out = msg.to_vec();
        out[at..at + to.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn invalid_utf8_in_a_key_column_is_not_utf8_at_its_row() {
        use crate::format::{Format, MessageDecoder, MessageDecoderOptions};
        let row = |cluster: &str, service: &str, region: Option<&str>| {
            let mut s = Sample::new(NOW - 10_000, cluster, service, 10, 1);
            s.region = region.map(str::to_owned);
            s
        };
        // Invalid sequences, each 3 bytes, put where a 3-byte marker was.
        let lone_continuation: &[u8] = &[b'a', 0x80, b'b'];
        let cut_two_byte: &[u8] = &[b'a', b'b', 0xc3];
        let overlong: &[u8] = &[0xc0, 0xaf, b'a'];
        // (name, rows, marker, replacement, expected detail)
        type Case<'a> = (&'a str, Vec<Sample>, &'a [u8], &'a [u8], Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "cluster, second row",
                vec![row("c1", "s", None), row("cXYZ", "s", None)],
                b"XYZ",
                lone_continuation,
                Some("row 1: cluster is not valid UTF-8"),
            ),
            (
                "service, first row, after non-ASCII keys",
                vec![row("zürich", "sXYZ", None), row("zürich", "s", None)],
                b"XYZ",
                cut_two_byte,
                Some("row 0: service is not valid UTF-8"),
            ),
            (
                "region, third row",
                vec![
                    row("c", "s", Some("eu")),
                    row("c", "s", None),
                    row("c", "s", Some("uXYZ")),
                ],
                b"XYZ",
                overlong,
                Some("row 2: region is not valid UTF-8"),
            ),
            (
                "valid multi-byte keys pass",
                vec![row("zürich", "dienst-ß", Some("東京")), row("c", "s", None)],
                b"zz",
                b"zz",
                None,
            ),
        ];
        for (name, rows, marker, bad, want) in cases {
            let mut msg = encode(&rows).unwrap();
            if marker != bad {
                msg = patched(&msg, marker, bad);
            }
            let mut dec = MessageDecoder::new(MessageDecoderOptions {
                decoder: DecoderOptions {
                    now_ms: Some(NOW),
                    ..DecoderOptions::default()
                },
                ..MessageDecoderOptions::default()
            });
            // Lent, shared: the same outcome.
            let got = dec.decode(&Format::ArrowIpc, &msg);
            let shared = dec.decode_shared(&Format::ArrowIpc, &Buffer::from_vec(msg.clone()));
            assert_eq!(got, shared, "case {name:?}");
            match want {
                Some(detail) => {
                    let err = got.unwrap_err();
                    assert_eq!(err.reason, RejectReason::NotUtf8, "case {name:?}: {err}");
                    assert!(err.detail.starts_with(detail), "case {name:?}: {err}");
                    assert!(dec.is_empty(), "case {name:?}: rows appended");
                    assert!(dec.interner().is_empty(), "case {name:?}: series interned");
                }
                None => {
                    assert!(got.is_ok(), "case {name:?}: {got:?}");
                    let keys = dec.interner().keys();
                    assert_eq!(keys[0].cluster, "zürich", "case {name:?}");
                    assert_eq!(keys[0].region.as_deref(), Some("東京"), "case {name:?}");
                }
            }
        }
    }

    #[test]
    fn utf8_is_checked_where_rows_are_valid_only() {
        // Read-form batches built directly: bytes a `Utf8` array could not hold. A region
        // that is not UTF-8 under a null is never looked at (a null region is no region);
        // bad bytes outside a sliced array's rows are not its rows'.
        let wire = wire_schema();
        let n = 4;
        let batch = |cluster: BinaryArray, region: BinaryArray| {
            let base = as_read(&edited(n, &|_| {})).unwrap();
            let mut cols = base.columns().to_vec();
            let schema = base.schema();
            cols[schema.index_of(CLUSTER).unwrap()] = Arc::new(cluster);
            cols[schema.index_of(REGION).unwrap()] = Arc::new(region);
            RecordBatch::try_new(schema, cols).unwrap()
        };
        let ok = |v: &'static [u8]| Some(v);
        let bad: &[u8] = &[0xff, b'x'];
        let clusters = |third: &'static [u8]| {
            BinaryArray::from(vec![ok(b"c1"), ok(b"c2"), ok(third), ok(b"c2")])
        };
        // (name, batch, offset, length, expected: Ok(rows) or the bad row)
        type Case<'a> = (&'a str, RecordBatch, usize, usize, Result<usize, usize>);
        let cases: Vec<Case> = vec![
            (
                "bad region under a null",
                batch(clusters(b"c1"), {
                    let values =
                        BinaryArray::from(vec![ok(b"eu"), Some(bad), ok(b"eu"), ok(b"eu")]);
                    let nulls = NullBuffer::from(vec![true, false, true, true]);
                    BinaryArray::new(
                        values.offsets().clone(),
                        values.values().clone(),
                        Some(nulls),
                    )
                }),
                0,
                n,
                Ok(n),
            ),
            (
                "bad region on a valid row",
                batch(
                    clusters(b"c1"),
                    BinaryArray::from(vec![None, None, Some(bad), None]),
                ),
                0,
                n,
                Err(2),
            ),
            (
                "bad cluster outside the slice",
                batch(clusters(bad), BinaryArray::from(vec![None::<&[u8]>; 4])),
                0,
                2,
                Ok(2),
            ),
            (
                "bad cluster inside the slice",
                batch(clusters(bad), BinaryArray::from(vec![None::<&[u8]>; 4])),
                1,
                3,
                Err(1),
            ),
        ];
        for (name, b, offset, len, want) in cases {
            let b = b.slice(offset, len);
            let (mut dec, mut keys) = (json_decoder(), KeyIndex::default());
            let got = decode_batches(std::slice::from_ref(&b), &wire, LIMITS, &mut dec, &mut keys);
            match want {
                Ok(rows) => assert_eq!(got, Ok(rows), "case {name:?}"),
                Err(row) => {
                    let err = got.unwrap_err();
                    assert_eq!(err.reason, RejectReason::NotUtf8, "case {name:?}");
                    assert!(
                        err.detail.starts_with(&format!("row {row}: ")),
                        "case {name:?}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn values_under_nulls_are_never_checked() {
        // A NaN latency, an oversized retry count and a zero interval hidden under nulls.
        let b = edited(4, &|_| {});
        let mut cols = b.columns().to_vec();
        let schema = b.schema();
        let nulls = Some(NullBuffer::from(vec![true, false, true, false]));
        let replace = |name: &str, a: ArrayRef, cols: &mut Vec<ArrayRef>| {
            cols[schema.index_of(name).unwrap()] = a;
        };
        replace(
            detector::schema::LATENCY_P50_MS,
            Arc::new(Float64Array::new(
                vec![1.0, f64::NAN, 2.0, -1.0].into(),
                nulls.clone(),
            )),
            &mut cols,
        );
        replace(
            detector::schema::RETRIES,
            Arc::new(UInt64Array::new(
                vec![1, u64::MAX, 2, 1000].into(),
                nulls.clone(),
            )),
            &mut cols,
        );
        replace(
            detector::schema::INTERVAL_MS,
            Arc::new(UInt32Array::new(vec![1000, 0, 2000, 0].into(), nulls)),
            &mut cols,
        );
        let b = RecordBatch::try_new(schema.clone(), cols).unwrap();
        assert_eq!(agree(&[b]).unwrap(), Ok(4));
    }

    #[test]
    fn sliced_batches_and_several_batches_per_message() {
        let whole = edited(200, &|rows| {
            rows[3].errors = Some(500);
            rows[150].region = Some("us-east-1");
            rows[160].retries = None;
        });
        // (name, batches, expected outcome)
        let cases: Vec<(&str, Vec<RecordBatch>, Result<usize, RejectReason>)> = vec![
            ("slice past the bad row", vec![whole.slice(4, 196)], Ok(196)),
            (
                "slice starting on it",
                vec![whole.slice(3, 10)],
                Err(RejectReason::ErrorsExceedRequests),
            ),
            ("odd offset, short", vec![whole.slice(5, 3)], Ok(3)),
            ("offset not on a block", vec![whole.slice(67, 130)], Ok(130)),
            ("empty slice", vec![whole.slice(10, 0)], Ok(0)),
            (
                "two batches",
                vec![whole.slice(4, 60), whole.slice(100, 100)],
                Ok(160),
            ),
            (
                "bad row in the second batch",
                vec![whole.slice(4, 60), whole.slice(0, 10)],
                Err(RejectReason::ErrorsExceedRequests),
            ),
        ];
        for (name, batches, want) in cases {
            let got = agree(&batches).unwrap();
            assert_eq!(got.map_err(|e| e.reason), want, "case {name:?}");
        }
        // The second batch's bad row is numbered across the message.
        let err = agree(&[whole.slice(4, 60), whole.slice(0, 10)])
            .unwrap()
            .unwrap_err();
        assert!(err.detail.starts_with("row 63: "), "{err}");
    }

    #[test]
    fn known_keys_give_the_interners_ids_batch_after_batch() {
        let mut dec = json_decoder();
        let mut keys = KeyIndex::default();
        let a = edited(6, &|_| {});
        let with_region = edited(6, &|rows| rows[1].region = Some("eu-west-1"));
        let other_order = edited(6, &|rows| rows.reverse());
        let rotated = edited(7, &|rows| rows.rotate_left(3));
        let new_in_the_middle = edited(6, &|rows| rows[3].cluster = Some("c3"));
        let mut reference = json_decoder();
        // (name, batch): each decoded by the index-using decoder and the reference, in turn.
        let cases = [
            ("first time", a.clone()),
            ("same keys again", a.clone()),
            ("a region arrives", with_region.clone()),
            ("same keys with the region", with_region),
            ("same keys without it", a.clone()),
            ("other order", other_order),
            ("rotated", rotated),
            ("a new series in the middle", new_in_the_middle),
            ("sliced at an odd row", a.slice(1, 4)),
            ("back to the first", a),
        ];
        for (name, b) in cases {
            let got = columnar(std::slice::from_ref(&b), &mut dec, &mut keys);
            let want = row_by_row(std::slice::from_ref(&b), &mut reference);
            assert_eq!(got, want, "case {name:?}");
            assert_eq!(dec.flush(), reference.flush(), "case {name:?}");
            assert_eq!(
                dec.interner().keys(),
                reference.interner().keys(),
                "case {name:?}"
            );
        }
    }

    fn cell<T: Clone + std::fmt::Debug + 'static>(
        good: T,
        bad: Vec<T>,
    ) -> impl Strategy<Value = T> {
        let bad = prop::sample::select(bad);
        prop_oneof![8 => Just(good), 1 => bad]
    }

    prop_compose! {
        fn row_values()(
            ts in cell(Some(NOW - 5_000), vec![None, Some(i64::MIN), Some(i64::MAX), Some(NOW + 86_400_001)]),
            cluster in cell(Some("c1"), vec![None, Some(""), Some("c2"), Some("c3")]),
            service in cell(Some("api"), vec![None, Some(""), Some("web")]),
            region in cell(None, vec![Some(""), Some("eu"), Some("us")]),
            interval in cell(Some(10_000u32), vec![None, Some(0), Some(86_400_001), Some(86_400_000)]),
            requests in cell(Some(100u64), vec![None, Some(0), Some(u64::MAX)]),
            errors in cell(Some(3u64), vec![None, Some(100), Some(101)]),
            retries in cell(Some(2u64), vec![None, Some(100), Some(101)]),
            p50 in cell(Some(1.5f64), vec![None, Some(f64::NAN), Some(-0.0), Some(-1.0), Some(f64::INFINITY), Some(f64::MAX)]),
        ) -> RowValues {
            RowValues { ts, cluster, service, region, interval, requests, errors, retries, p50 }
        }
    }

    proptest! {
        /// Whatever the rows, sliced or split however, the column checks and the row checks
        /// agree: same outcome, same rejection (reason and detail), same batch, same series.
        #[test]
        fn columnar_decoding_agrees_with_row_by_row(
            rows in prop::collection::vec(row_values(), 0..150),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
            offset in 0usize..5,
        ) {
            let rows = rows.clone();
            let whole = edited(rows.len(), &|r| *r = rows.clone());
            let offset = offset.min(whole.num_rows());
            let rest = whole.slice(offset, whole.num_rows() - offset);
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(rest.num_rows() + 1)).collect();
            at.sort_unstable();
            let mut batches = Vec::new();
            let mut start = 0;
            for end in at.into_iter().chain([rest.num_rows()]) {
                batches.push(rest.slice(start, end - start));
                start = end;
            }
            let _outcome = agree(&batches)?;
        }
    }
}
