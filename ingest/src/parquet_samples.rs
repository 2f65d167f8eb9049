//! Samples in Parquet: a trace's `samples.parquet` (CONTRACT section 3).
//!
//! # Layout
//!
//! One sample per row, in the fields of CONTRACT section 1, found by column name in any order:
//!
//! | column | Parquet / Arrow types read |
//! |---|---|
//! | `ts` (required) | a timestamp of any unit and zone (the sub-millisecond part is dropped), `Date64`, an integer (epoch ms) or a string (RFC 3339) |
//! | `cluster`, `service` (required), `region` | a string, binary or dictionary-of-string column |
//! | `interval_s` | any integer or float column, seconds (or, when there is no `interval_s`, `interval_ms` in milliseconds, as in the Arrow IPC wire schema) |
//! | `requests`, `errors` (required), `retries`, `db_pool_active`, `db_pool_max`, `db_pool_pending` | any integer or float column |
//! | `latency_p50_ms`, `latency_p99_ms` | any integer or float column |
//!
//! Other columns are ignored, as unknown JSON fields are (`status` included: the decoder does
//! not keep the breakdown). A file whose schema lacks a required column, or holds one of the
//! fields in a type that cannot carry it (a count as a list, say), is refused when it is
//! opened, naming the column; nothing of it is read.
//!
//! # One row, one sample line
//!
//! [`ParquetSamples`] writes each row out as the native JSON sample it stands for, and the trace
//! readers hand that line to the JSON decoder like a line of `samples.jsonl`. So a row passes
//! exactly the checks a JSON sample does and a bad row is rejected with the same reason, costing
//! that row only. The translation adds nothing and hides nothing:
//!
//! - a null is an absent field (a null in a required column is `missing_field`);
//! - a whole float in a count column is written as the integer it is (pandas stores an integer
//!   column with gaps as floats); any other float is written as it is, so `2.5` requests are
//!   `invalid_value`;
//! - NaN and infinities, which JSON cannot spell, are written as a number too large for a
//!   double, so the decoder rejects the row as `not_finite`, as the contract asks for NaN;
//! - key bytes are copied as they are (escaped for JSON), so a binary key that is not UTF-8 is
//!   `not_utf8`.
//!
//! [`write_samples`] writes samples in this layout (zstd-compressed), for tools and tests.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::json::Sample;

/// Rows read from the file at a time.
const READ_BATCH_ROWS: usize = 8192;

/// Problems with a Parquet samples file as a whole (row problems are rejections, made by the
/// decoder).
#[derive(Debug, thiserror::Error)]
pub enum ParquetSamplesError {
    /// The file cannot be opened or read as Parquet.
    #[error("cannot read {} as Parquet", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The file cannot be written ([`write_samples`]).
    #[error("cannot write {} as Parquet", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A required column is missing.
    #[error("{}: no `{column}` column (the samples need ts, cluster, service, requests and errors)", path.display())]
    MissingColumn { path: PathBuf, column: &'static str },
    /// A column of a sample field has a type that cannot carry the field.
    #[error("{}: column `{column}` is {data_type}, which cannot hold {what}", path.display())]
    ColumnType {
        path: PathBuf,
        column: String,
        data_type: DataType,
        what: &'static str,
    },
}

/// What a field's column may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `ts`: a timestamp, epoch ms or RFC 3339 text.
    Time,
    /// A series key or label: text.
    Text,
    /// A count: numbers, whole floats written as integers.
    Count,
    /// A measurement: numbers.
    Number,
}

impl Class {
    fn what(self) -> &'static str {
        match self {
            Class::Time => "a timestamp (a timestamp, Date64, integer epoch ms or string)",
            Class::Text => "text (a string, binary or dictionary-of-string column)",
            Class::Count => "a count (an integer or float column)",
            Class::Number => "a number (an integer or float column)",
        }
    }
}

/// The fields read, in the order they are written into the JSON line.
const FIELDS: [(&str, Class, bool); 13] = [
    ("ts", Class::Time, true),
    ("cluster", Class::Text, true),
    ("service", Class::Text, true),
    ("region", Class::Text, false),
    ("interval_s", Class::Number, false),
    ("requests", Class::Count, true),
    ("errors", Class::Count, true),
    ("retries", Class::Count, false),
    ("latency_p50_ms", Class::Number, false),
    ("latency_p99_ms", Class::Number, false),
    ("db_pool_active", Class::Count, false),
    ("db_pool_max", Class::Count, false),
    ("db_pool_pending", Class::Count, false),
];

/// A field's column in the file.
#[derive(Debug, Clone, Copy)]
struct Source {
    /// Name written into the JSON line.
    name: &'static str,
    class: Class,
    /// Column index in the file's (Arrow) schema.
    index: usize,
    /// Divide by this before writing (`interval_ms` read as `interval_s`).
    scale: Option<f64>,
}

/// The rows of a Parquet samples file, one native JSON sample line each (see the module docs).
pub struct ParquetSamples {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    sources: Vec<Source>,
    /// The batch being read, its columns in `sources` order, each normalised by
    /// [`normalise`] to Int64, UInt64, Float64 or Binary.
    columns: Vec<ArrayRef>,
    rows: usize,
    next: usize,
}

impl std::fmt::Debug for ParquetSamples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSamples")
            .field("path", &self.path)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

fn read_err(
    path: &Path,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> ParquetSamplesError + '_ {
    move |source| ParquetSamplesError::Read {
        path: path.to_owned(),
        source,
    }
}

impl ParquetSamples {
    /// Opens `path` and checks its schema (see the module docs).
    pub fn open(path: &Path) -> Result<Self, ParquetSamplesError> {
        let file = File::open(path).map_err(|e| read_err(path)(e.into()))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read_err(path)(e.into()))?;
        let sources = sources(path, builder.schema())?;
        let reader = builder
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| read_err(path)(e.into()))?;
        Ok(Self {
            path: path.to_owned(),
            reader,
            sources,
            columns: Vec::new(),
            rows: 0,
            next: 0,
        })
    }

    /// Writes the next row as a JSON sample line into `buf` (cleared first). `Ok(false)` after
    /// the last row.
    pub fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, ParquetSamplesError> {
        buf.clear();
        while self.next >= self.rows {
            let Some(batch) = self.reader.next() else {
                return Ok(false);
            };
            let batch = batch.map_err(|e| read_err(&self.path)(e.into()))?;
            self.columns = self
                .sources
                .iter()
                .map(|s| normalise(batch.column(s.index), s.class))
                .collect::<Result<_, _>>()
                .map_err(|e| read_err(&self.path)(e.into()))?;
            self.rows = batch.num_rows();
            self.next = 0;
        }
        let i = self.next;
        self.next += 1;
        buf.push(b'{');
        let mut first = true;
        for (s, a) in self.sources.iter().zip(&self.columns) {
            if a.is_null(i) {
                continue;
            }
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.push(b'"');
            buf.extend_from_slice(s.name.as_bytes());
            buf.extend_from_slice(b"\":");
            #[allow(clippy::cast_precision_loss)]
            match (a.data_type(), s.scale) {
                (DataType::Int64, None) => {
                    let _ = write!(
                        ByteWriter(buf),
                        "{}",
                        a.as_primitive::<Int64Type>().value(i)
                    );
                }
                (DataType::UInt64, None) => {
                    let _ = write!(
                        ByteWriter(buf),
                        "{}",
                        a.as_primitive::<UInt64Type>().value(i)
                    );
                }
                (DataType::Int64, Some(k)) => {
                    number(
                        buf,
                        a.as_primitive::<Int64Type>().value(i) as f64 / k,
                        false,
                    );
                }
                (DataType::UInt64, Some(k)) => {
                    number(
                        buf,
                        a.as_primitive::<UInt64Type>().value(i) as f64 / k,
                        false,
                    );
                }
                (DataType::Float64, k) => {
                    let v = a.as_primitive::<Float64Type>().value(i) / k.unwrap_or(1.0);
                    number(buf, v, s.class == Class::Count);
                }
                _ => json_bytes(buf, a.as_binary::<i32>().value(i)),
            }
        }
        buf.push(b'}');
        Ok(true)
    }
}

/// The columns of `schema` that carry sample fields, checked.
fn sources(path: &Path, schema: &SchemaRef) -> Result<Vec<Source>, ParquetSamplesError> {
    let mut out = Vec::new();
    for (name, class, required) in FIELDS {
        let (found, scale) = match schema.index_of(name) {
            Ok(i) => (Some(i), None),
            Err(_) if name == "interval_s" => (schema.index_of("interval_ms").ok(), Some(1000.0)),
            Err(_) => (None, None),
        };
        let Some(index) = found else {
            if required {
                return Err(ParquetSamplesError::MissingColumn {
                    path: path.to_owned(),
                    column: name,
                });
            }
            continue;
        };
        let field = schema.field(index);
        if target(field.data_type(), class).is_none() {
            return Err(ParquetSamplesError::ColumnType {
                path: path.to_owned(),
                column: field.name().clone(),
                data_type: field.data_type().clone(),
                what: class.what(),
            });
        }
        out.push(Source {
            name,
            class,
            index,
            scale,
        });
    }
    Ok(out)
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// The Arrow type a column of type `t` is read as for a field of `class`, or `None` when it
/// cannot carry the field.
fn target(t: &DataType, class: Class) -> Option<DataType> {
    let numeric = matches!(class, Class::Count | Class::Number | Class::Time);
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
            if numeric =>
        {
            Some(DataType::Int64)
        }
        DataType::UInt64 if numeric => Some(DataType::UInt64),
        DataType::Float16 | DataType::Float32 | DataType::Float64
            if matches!(class, Class::Count | Class::Number) =>
        {
            Some(DataType::Float64)
        }
        DataType::Timestamp(_, _) | DataType::Date64 if class == Class::Time => {
            Some(DataType::Int64)
        }
        t if is_text(t) && matches!(class, Class::Text | Class::Time) => Some(DataType::Binary),
        _ => None,
    }
}

/// `a` cast to the type [`target`] reads it as (Int64, UInt64, Float64 or Binary).
fn normalise(a: &ArrayRef, class: Class) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let to = target(a.data_type(), class).ok_or_else(|| {
        arrow_schema::ArrowError::SchemaError(format!("unexpected column type {}", a.data_type()))
    })?;
    let a = match a.data_type() {
        // Timestamps to epoch milliseconds first (cast keeps the unit otherwise).
        DataType::Timestamp(unit, _) if *unit != TimeUnit::Millisecond => {
            arrow_cast::cast(a, &DataType::Timestamp(TimeUnit::Millisecond, None))?
        }
        _ => a.clone(),
    };
    arrow_cast::cast(&a, &to)
}

/// `x` as a JSON number: a whole `count` as an integer; NaN and infinities as a number out of
/// a double's range (rejected as `not_finite`).
fn number(out: &mut Vec<u8>, x: f64, count: bool) {
    if !x.is_finite() {
        out.extend_from_slice(if x < 0.0 { b"-1e999" } else { b"1e999" });
    } else if count && x.fract() == 0.0 && x.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        let _ = write!(ByteWriter(out), "{}", x as i64);
    } else if let Some(n) = serde_json::Number::from_f64(x) {
        let _ = write!(ByteWriter(out), "{n}");
    }
}

/// `bytes` as a JSON string, copied as they are but for the characters JSON must escape.
fn json_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                let _ = write!(ByteWriter(out), "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// `fmt::Write` into a byte vector.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The Arrow IPC wire schema ([`crate::arrow_ipc::wire_schema`]) with the interval as
/// CONTRACT section 1 names it: `interval_s` (Float64, seconds) for `interval_ms`. What
/// [`write_samples`] writes.
pub fn samples_schema() -> SchemaRef {
    let wire = crate::arrow_ipc::wire_schema();
    let fields: Vec<Field> = wire
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            detector::schema::INTERVAL_MS => Field::new("interval_s", DataType::Float64, false),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Writes `samples` to `path` as a zstd-compressed Parquet file in [`samples_schema`], in row
/// groups of at most `row_group` rows. (`status` is not written.)
pub fn write_samples(
    path: &Path,
    samples: impl IntoIterator<Item = Sample>,
    row_group: usize,
) -> Result<(), ParquetSamplesError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| ParquetSamplesError::Write {
        path: path.to_owned(),
        source,
    };
    let file = File::create(path).map_err(|e| err(e.into()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_size(row_group.max(1))
        .build();
    let schema = samples_schema();
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| err(e.into()))?;
    let per_batch = row_group.clamp(1, 1 << 16);
    let mut chunk = Vec::with_capacity(per_batch);
    let mut samples = samples.into_iter().peekable();
    while samples.peek().is_some() {
        chunk.clear();
        chunk.extend(samples.by_ref().take(per_batch));
        let wire = crate::arrow_ipc::samples_to_batch(&chunk).map_err(|e| err(e.into()))?;
        let seconds: Float64Array = chunk
            .iter()
            .map(|s| Some(f64::from(s.interval_ms) / 1000.0))
            .collect();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match wire.column_by_name(f.name()) {
                Some(c) => c.clone(),
                None => Arc::new(seconds.clone()) as ArrayRef,
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| err(e.into()))?;
        writer.write(&batch).map_err(|e| err(e.into()))?;
    }
    writer.close().map_err(|e| err(e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{parse_sample, DecoderOptions, RejectReason};
    use arrow_array::builder::{BinaryBuilder, StringDictionaryBuilder};
    use arrow_array::types::Int32Type;
    use arrow_array::{
        BooleanArray, Date64Array, Float32Array, Float64Array, Int32Array, Int64Array,
        LargeStringArray, StringArray, TimestampNanosecondArray, UInt16Array,
    };

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("spikewatch-parquet-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("samples.parquet")
    }

    fn write_batch(path: &Path, cols: Vec<(&str, ArrayRef)>) {
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let file = File::create(path).unwrap();
        let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn lines(path: &Path) -> Vec<Vec<u8>> {
        let mut p = ParquetSamples::open(path).unwrap();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while p.read_line(&mut buf).unwrap() {
            out.push(buf.clone());
        }
        out
    }

    fn opts() -> DecoderOptions {
        DecoderOptions {
            now_ms: Some(1_800_000_000_000),
            ..DecoderOptions::default()
        }
    }

    #[test]
    fn written_samples_read_back_as_the_same_samples() {
        let mut full = Sample::new(
            1_770_931_210_000,
            "prod-use1-a",
            "conv\"ersation\n",
            12_000,
            4_200,
        );
        full.region = Some("us-east-1".into());
        full.interval_ms = 1_500;
        full.retries = Some(1_800);
        full.latency_p50_ms = Some(85.25);
        full.latency_p99_ms = Some(0.1 + 0.2);
        full.db_pool_active = Some(180);
        full.db_pool_max = Some(200);
        full.db_pool_pending = Some(0);
        let bare = Sample::new(1_770_931_220_000, "c", "s", 0, 0);
        let samples: Vec<Sample> = (0..5)
            .flat_map(|i| {
                let mut a = full.clone();
                a.ts_ms += i * 10_000;
                let mut b = bare.clone();
                b.ts_ms += i * 10_000;
                [a, b]
            })
            .collect();
        let path = scratch("roundtrip");
        // Row groups of 3: the reader crosses group and batch edges.
        write_samples(&path, samples.clone(), 3).unwrap();
        let got: Vec<Sample> = lines(&path)
            .iter()
            .map(|l| parse_sample(l, &opts()).unwrap())
            .collect();
        assert_eq!(got, samples);
    }

    /// One column varied at a time against a valid base row: what the decoder makes of it.
    #[test]
    fn column_types_and_values_decode_as_json_would() {
        type Check = fn(&Result<Sample, RejectReason>);
        let base = || -> Vec<(&'static str, ArrayRef)> {
            vec![
                (
                    "ts",
                    Arc::new(Int64Array::from(vec![1_770_931_210_000i64])) as ArrayRef,
                ),
                ("cluster", Arc::new(StringArray::from(vec!["a"]))),
                ("service", Arc::new(StringArray::from(vec!["s"]))),
                ("requests", Arc::new(Int64Array::from(vec![100i64]))),
                ("errors", Arc::new(Int64Array::from(vec![5i64]))),
            ]
        };
        let cases: Vec<(&str, &str, ArrayRef, Check)> = vec![
            (
                "timestamp in ns with a zone",
                "ts",
                Arc::new(
                    TimestampNanosecondArray::from(vec![1_770_931_210_000_999_999i64])
                        .with_timezone("+02:00"),
                ),
                |r| assert_eq!(r.as_ref().unwrap().ts_ms, 1_770_931_210_000),
            ),
            (
                "Date64",
                "ts",
                Arc::new(Date64Array::from(vec![1_770_931_210_000i64])),
                |r| assert_eq!(r.as_ref().unwrap().ts_ms, 1_770_931_210_000),
            ),
            (
                "RFC 3339 text",
                "ts",
                Arc::new(StringArray::from(vec!["2026-02-12T21:20:10Z"])),
                |r| assert_eq!(r.as_ref().unwrap().ts_ms, 1_770_931_210_000),
            ),
            (
                "text that is no time",
                "ts",
                Arc::new(StringArray::from(vec!["yesterday"])),
                |r| assert_eq!(r.as_ref().unwrap_err(), &RejectReason::InvalidTimestamp),
            ),
            (
                "a dictionary of strings",
                "cluster",
                {
                    let mut b = StringDictionaryBuilder::<Int32Type>::new();
                    b.append_value("dict-a");
                    Arc::new(b.finish())
                },
                |r| assert_eq!(r.as_ref().unwrap().cluster, "dict-a"),
            ),
            (
                "LargeUtf8",
                "service",
                Arc::new(LargeStringArray::from(vec!["large"])),
                |r| assert_eq!(r.as_ref().unwrap().service, "large"),
            ),
            (
                "binary that is not UTF-8",
                "service",
                {
                    let mut b = BinaryBuilder::new();
                    b.append_value([0xff, 0xfe]);
                    Arc::new(b.finish())
                },
                |r| assert_eq!(r.as_ref().unwrap_err(), &RejectReason::NotUtf8),
            ),
            (
                "a null key",
                "cluster",
                Arc::new(StringArray::from(vec![None::<&str>])),
                |r| assert_eq!(r.as_ref().unwrap_err(), &RejectReason::MissingField),
            ),
            (
                "Int32 counts",
                "requests",
                Arc::new(Int32Array::from(vec![70])),
                |r| assert_eq!(r.as_ref().unwrap().requests, 70),
            ),
            (
                "whole floats as counts",
                "errors",
                Arc::new(Float32Array::from(vec![7.0f32])),
                |r| assert_eq!(r.as_ref().unwrap().errors, 7),
            ),
            (
                "a fractional count",
                "errors",
                Arc::new(Float32Array::from(vec![2.5f32])),
                |r| assert_eq!(r.as_ref().unwrap_err(), &RejectReason::InvalidValue),
            ),
            (
                "a negative count",
                "errors",
                Arc::new(Int64Array::from(vec![-1i64])),
                |r| assert_eq!(r.as_ref().unwrap_err(), &RejectReason::NegativeCount),
            ),
            (
                "more errors than requests",
                "errors",
                Arc::new(Int64Array::from(vec![101i64])),
                |r| assert_eq!(r.as_ref().unwrap_err(), &RejectReason::ErrorsExceedRequests),
            ),
            (
                "a NaN latency",
                "latency_p99_ms",
                Arc::new(Float64Array::from(vec![f64::NAN])),
                |r| assert_eq!(r.as_ref().unwrap_err(), &RejectReason::NotFinite),
            ),
            (
                "a null latency",
                "latency_p99_ms",
                Arc::new(Float64Array::from(vec![None])),
                |r| assert_eq!(r.as_ref().unwrap().latency_p99_ms, None),
            ),
            (
                "an integer latency",
                "latency_p50_ms",
                Arc::new(UInt16Array::from(vec![40u16])),
                |r| assert_eq!(r.as_ref().unwrap().latency_p50_ms, Some(40.0)),
            ),
            (
                "interval in milliseconds",
                "interval_ms",
                Arc::new(Int64Array::from(vec![1_500i64])),
                |r| assert_eq!(r.as_ref().unwrap().interval_ms, 1_500),
            ),
            (
                "a zero interval",
                "interval_s",
                Arc::new(Float64Array::from(vec![0.0])),
                |r| assert_eq!(r.as_ref().unwrap_err(), &RejectReason::InvalidInterval),
            ),
            (
                "an unknown column of any type",
                "note",
                Arc::new(BooleanArray::from(vec![true])),
                |r| assert_eq!(r.as_ref().unwrap().requests, 100),
            ),
        ];
        for (i, (name, column, array, check)) in cases.into_iter().enumerate() {
            let mut cols = base();
            match cols.iter_mut().find(|(n, _)| *n == column) {
                Some(c) => c.1 = array,
                None => cols.push((column, array)),
            }
            let path = scratch(&format!("case{i}"));
            write_batch(&path, cols);
            let got = lines(&path);
            assert_eq!(got.len(), 1, "{name}");
            let decoded = parse_sample(&got[0], &opts()).map_err(|e| e.reason);
            eprintln!("{name}: {}", String::from_utf8_lossy(&got[0]));
            check(&decoded);
        }
    }

    #[test]
    fn a_schema_that_cannot_carry_samples_is_refused_naming_the_column() {
        let path = scratch("schema");
        let valid = || {
            vec![
                ("ts", Arc::new(Int64Array::from(vec![1i64])) as ArrayRef),
                ("cluster", Arc::new(StringArray::from(vec!["a"]))),
                ("service", Arc::new(StringArray::from(vec!["s"]))),
                ("requests", Arc::new(Int64Array::from(vec![1i64]))),
                ("errors", Arc::new(Int64Array::from(vec![0i64]))),
            ]
        };
        type Columns = Vec<(&'static str, ArrayRef)>;
        // (what is wrong, the columns, what the error says)
        let cases: Vec<(&str, Columns, &str)> = vec![
            (
                "no errors column",
                valid().into_iter().filter(|c| c.0 != "errors").collect(),
                "no `errors` column",
            ),
            (
                "a boolean count",
                valid()
                    .into_iter()
                    .map(|c| match c.0 {
                        "requests" => (c.0, Arc::new(BooleanArray::from(vec![true])) as ArrayRef),
                        _ => c,
                    })
                    .collect(),
                "column `requests` is Boolean, which cannot hold a count",
            ),
            (
                "a float timestamp",
                valid()
                    .into_iter()
                    .map(|c| match c.0 {
                        "ts" => (c.0, Arc::new(Float64Array::from(vec![1.0])) as ArrayRef),
                        _ => c,
                    })
                    .collect(),
                "column `ts` is Float64, which cannot hold a timestamp",
            ),
        ];
        for (name, cols, want) in cases {
            write_batch(&path, cols);
            let err = ParquetSamples::open(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
            assert!(err.contains("samples.parquet"), "{name}: {err}");
        }
        std::fs::write(&path, b"PAR1 but not parquet").unwrap();
        let err = ParquetSamples::open(&path).unwrap_err();
        assert!(matches!(err, ParquetSamplesError::Read { .. }), "{err}");
    }
}
