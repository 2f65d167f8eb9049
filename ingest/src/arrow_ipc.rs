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
//! row gets the same checks as a JSON sample. A message is taken or rejected whole: one bad
//! row rejects the message (reason and detail of the first bad row), so a dead letter is
//! always a complete producer batch.
//!
//! [`encode`] writes samples in this format (used by `spikewatch produce --format arrow`).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::format::{check_row, clip, empty_row, RowLimits};
use crate::json::{JsonDecoder, RejectReason, Rejection, Row, Sample, DEFAULT_INTERVAL_MS};

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

/// Reads every record batch of one IPC stream message.
fn read_batches(msg: &[u8]) -> Result<Vec<RecordBatch>, Rejection> {
    let malformed =
        |e: ArrowError| Rejection::new(RejectReason::MalformedArrow, clip(&e.to_string()));
    // The push decoder reads lengths from the message but only ever copies the bytes that are
    // there, so a forged length cannot make it allocate gigabytes. Parsing untrusted IPC is
    // also guarded against panics: a malformed message must cost one rejection, nothing more.
    let parsed = std::panic::catch_unwind(|| {
        let mut buf = arrow_buffer::Buffer::from_slice_ref(msg);
        let mut dec = arrow_ipc::reader::StreamDecoder::new();
        let mut batches = Vec::new();
        while !buf.is_empty() {
            if let Some(b) = dec.decode(&mut buf)? {
                batches.push(b);
            }
        }
        dec.finish()?;
        if dec.schema().is_none() {
            return Err(ArrowError::IpcError("no schema message".into()));
        }
        Ok(batches)
    });
    match parsed {
        Ok(res) => res.map_err(malformed),
        Err(_) => Err(Rejection::new(
            RejectReason::MalformedArrow,
            "the IPC reader failed on this message",
        )),
    }
}

/// Typed views of the columns of one batch.
struct Cols<'a> {
    ts: &'a arrow_array::PrimitiveArray<TimestampMillisecondType>,
    cluster: &'a arrow_array::StringArray,
    service: &'a arrow_array::StringArray,
    region: Option<&'a arrow_array::StringArray>,
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

fn utf8<'a>(
    batch: &'a RecordBatch,
    name: &str,
    required: bool,
) -> Result<Option<&'a arrow_array::StringArray>, Rejection> {
    column(batch, name, required)?
        .map(|c| {
            c.as_string_opt::<i32>()
                .ok_or_else(|| wrong_type(name, "Utf8", c.data_type()))
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
    fn new(batch: &'a RecordBatch) -> Result<Self, Rejection> {
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
            cluster: req(utf8(batch, CLUSTER, true)?),
            service: req(utf8(batch, SERVICE, true)?),
            region: utf8(batch, REGION, false)?,
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
        let s_get = |a: &'a arrow_array::StringArray, name: &str| {
            if a.is_valid(i) {
                Ok(Cow::Borrowed(a.value(i)))
            } else {
                Err(missing(name))
            }
        };
        use detector::schema as s;
        let cluster = s_get(self.cluster, CLUSTER)?;
        let service = s_get(self.service, SERVICE)?;
        let ts_ms = get(Some(self.ts), i).ok_or_else(|| missing(s::TS))?;
        let mut row = empty_row(cluster, service, ts_ms);
        row.region = self
            .region
            .filter(|a| a.is_valid(i))
            .map(|a| Cow::Borrowed(a.value(i)));
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
pub(crate) fn decode_into(
    msg: &[u8],
    max_bytes: usize,
    limits: RowLimits,
    out: &mut JsonDecoder,
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
    let batches = read_batches(msg)?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut rows = Vec::with_capacity(total);
    let mut index = 0usize;
    for batch in &batches {
        let cols = Cols::new(batch)?;
        for i in 0..batch.num_rows() {
            let at_row =
                |r: Rejection| Rejection::new(r.reason, format!("row {index}: {}", r.detail));
            let row = cols.row(i).map_err(at_row)?;
            check_row(&row, limits).map_err(at_row)?;
            rows.push(row);
            index += 1;
        }
    }
    for row in &rows {
        out.push_row(row)?;
    }
    Ok(rows.len())
}

/// Samples back from a wire-schema batch without checks (for tests and tools).
pub fn batch_to_samples(batch: &RecordBatch) -> Result<Vec<Sample>, Rejection> {
    let cols = Cols::new(batch)?;
    (0..batch.num_rows())
        .map(|i| Ok(cols.row(i)?.into_sample()))
        .collect()
}

/// Every sample of one IPC message, without the row checks (for tests and tools).
pub fn decode_samples(msg: &[u8]) -> Result<Vec<Sample>, Rejection> {
    let mut out = Vec::new();
    for b in read_batches(msg)? {
        out.extend(batch_to_samples(&b)?);
    }
    Ok(out)
}
