//! The native JSON sample decoder (`spikewatch.v1`).
//!
//! # Format
//!
//! One message (a Kafka message, or one line of a `.jsonl` file) is one JSON object describing
//! one series, the pair (`cluster`, `service`), over one interval:
//!
//! | field | accepted | stored as |
//! |---|---|---|
//! | `ts` (required) | RFC 3339 string with any offset, or integer epoch ms; the END of the interval | `ts`, UTC epoch ms |
//! | `cluster`, `service` (required) | string of 1..=128 bytes | interned to `series_id` |
//! | `region` | string or null | kept on the series key by the interner |
//! | `interval_s` | number > 0, at most 86400; default 10 | `interval_ms`, rounded to the ms (must be >= 1) |
//! | `requests`, `errors` (required) | integer >= 0, `errors <= requests` | u64 |
//! | `retries` | integer >= 0, `retries <= requests`, or null | nullable u64 |
//! | `latency_p50_ms`, `latency_p99_ms` | number >= 0, or null | nullable f64 |
//! | `db_pool_active`, `db_pool_max`, `db_pool_pending` | integer in 0..=u32::MAX, or null | nullable u32 |
//! | `status` | object of status code -> integer count >= 0, or null | checked, not stored |
//!
//! "Integer" includes numbers written with a fraction or exponent whose value is whole
//! (`12000.0`, `1.2e4`). Absent and `null` mean the same for optional fields; a required
//! field sent as `null` is a `wrong_type`. Unknown fields are ignored (not even parsed beyond
//! syntax). A leading UTF-8 byte order mark is skipped. A known field given twice makes the
//! message `malformed_json`, since which value the producer meant is unknowable.
//!
//! # Output
//!
//! Accepted rows accumulate in plain column vectors and come out of [`JsonDecoder::flush`] as a
//! [`RecordBatch`] with exactly [`detector::schema::sample_schema`]. Series keys never enter
//! the batch: the decoder's [`SeriesInterner`] maps them to dense ids, in first-seen order.
//!
//! # Speed
//!
//! A hand-written scanner reads the common shape (a flat object, strings without escapes,
//! non-negative numbers) straight into a checked row; anything else goes to the general serde
//! parser, which owns every rejection, so both paths reject alike. The last `ts` text is
//! remembered with its value (every series of an interval carries the same). Series ids come
//! from a cache that guesses the next series from the order producers send them in, then an
//! index of one fast hash per key, and only then the interner. Rows accumulate in plain
//! vectors, turned into Arrow arrays without a copy at [`JsonDecoder::flush`].
//!
//! # Rejections
//!
//! A message that breaks the table is rejected with a [`RejectReason`] and a detail naming the
//! field and value; nothing is appended, no series is interned, and the rows around it are
//! unaffected. Checks run in a fixed order, so a message with several faults always gets the
//! same reason: size, UTF-8, JSON syntax and shape (with overflow to infinity reported as
//! `not_finite`), missing required fields, then field by field (`cluster`, `service`,
//! `region`, `ts`, `interval_s`, the counts, the cross-field count checks, latencies, pool
//! fields, `status`). Negative integer fields (counts and pool fields) are `negative_count`;
//! everything wrong with `status`, including it not being an object, is `invalid_value`.

mod columns;
mod raw;
mod reject;
mod sample;
mod scan;

use std::borrow::Cow;

use arrow_array::RecordBatch;
use detector::{SeriesId, SeriesInterner};
use serde::de::DeserializeSeed;

pub use reject::{RejectReason, Rejection};
pub use sample::Sample;

pub(crate) use columns::{filled, utc, Chunk, Stamps, U32s, U64s};
use columns::{Columns, SeriesCache};
use raw::{describe, Ctx, FieldId, Raw, RawSample, SampleSeed, Status};
use reject::echo;
use RejectReason as R;

/// Longest accepted `cluster` / `service`, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// Longest accepted interval: one day.
pub const MAX_INTERVAL_MS: u32 = 86_400_000;
/// `interval_s` when the field is absent or null.
pub const DEFAULT_INTERVAL_MS: u32 = 10_000;

/// Columns are preallocated for at most this many rows, however large `batch_size` is.
const MAX_PREALLOC_ROWS: usize = 1 << 16;

/// Settings of a [`JsonDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Rows per batch: [`JsonDecoder::is_full`] turns true at this many rows. Default 8192.
    pub batch_size: usize,
    /// Longer messages are rejected as `too_large`. Default 64 KiB.
    pub max_message_bytes: usize,
    /// Samples whose `ts` is more than this far ahead of "now" are rejected as
    /// `future_timestamp`. Default 24 h.
    pub max_future_ms: i64,
    /// "Now" in epoch ms for the future-timestamp check; `None` reads the system clock once
    /// when the decoder is created (see [`JsonDecoder::set_now_ms`] to move it on).
    pub now_ms: Option<i64>,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        Self {
            batch_size: 8192,
            max_message_bytes: 64 * 1024,
            max_future_ms: 24 * 3600 * 1000,
            now_ms: None,
        }
    }
}

/// Push-based decoder of native JSON samples into Arrow batches.
///
/// ```
/// use ingest::json::{DecoderOptions, JsonDecoder, RejectReason};
///
/// let mut dec = JsonDecoder::new(DecoderOptions::default());
/// dec.decode(br#"{"ts":"2026-02-12T21:20:10Z","cluster":"c","service":"s","requests":10,"errors":1}"#)
///     .unwrap();
/// let bad = dec.decode(br#"{"ts":0,"cluster":"c","service":"s","requests":10,"errors":12}"#);
/// assert_eq!(bad.unwrap_err().reason, RejectReason::ErrorsExceedRequests);
/// let batch = dec.flush().unwrap();
/// assert_eq!(batch.num_rows(), 1);
/// assert!(dec.flush().is_none());
/// ```
#[derive(Debug)]
pub struct JsonDecoder {
    opts: DecoderOptions,
    now_ms: i64,
    cols: Columns,
    interner: SeriesInterner,
    series: SeriesCache,
    stamps: scan::StampCache,
}

impl JsonDecoder {
    pub fn new(opts: DecoderOptions) -> Self {
        Self::with_interner(opts, SeriesInterner::new())
    }

    /// A decoder that continues an existing interner (ids already handed out stay valid).
    pub fn with_interner(opts: DecoderOptions, interner: SeriesInterner) -> Self {
        let now_ms = opts.now_ms.unwrap_or_else(system_now_ms);
        Self {
            opts,
            now_ms,
            cols: Columns::new(prealloc(opts.batch_size)),
            interner,
            series: SeriesCache::default(),
            stamps: scan::StampCache::default(),
        }
    }

    pub fn options(&self) -> &DecoderOptions {
        &self.opts
    }

    /// The "now" the future-timestamp check uses.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Moves "now" on, for drivers that run longer than `max_future_ms`.
    pub fn set_now_ms(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// Decodes one message, appending one row, or rejects it leaving the decoder unchanged.
    pub fn decode(&mut self, msg: &[u8]) -> Result<(), Rejection> {
        let text = message_text(msg, &self.opts)?;
        // The row is used where the fast path leaves it (it is a couple of hundred bytes).
        let fast = scan::fast_row(text, self.now_ms, self.opts.max_future_ms, &mut self.stamps);
        if let Some(row) = fast {
            return self.push_row(&row);
        }
        let row = validate(parse(text)?, self.now_ms, self.opts.max_future_ms)?;
        self.push_row(&row)
    }

    /// Interns the row's series and appends the row; the row must already be valid.
    pub(crate) fn push_row(&mut self, row: &Row<'_>) -> Result<(), Rejection> {
        let id = self.series_id(&row.cluster, &row.service, row.region.as_deref())?;
        self.cols.push_row(id, row);
        Ok(())
    }

    /// The dense id of a series, interning it if new.
    #[inline]
    pub(crate) fn series_id(
        &mut self,
        cluster: &str,
        service: &str,
        region: Option<&str>,
    ) -> Result<SeriesId, Rejection> {
        self.series
            .id(&mut self.interner, cluster, service, region)
            .ok_or_else(|| {
                Rejection::new(R::InvalidKey, "no series id left: u32::MAX series interned")
            })
    }

    /// Appends validated rows given as whole columns (ids from [`Self::series_id`]).
    pub(crate) fn push_chunk(&mut self, chunk: Chunk) {
        self.cols.push_chunk(chunk);
    }

    /// Rows buffered since the last flush.
    pub fn len(&self) -> usize {
        self.cols.len()
    }

    /// The oldest and newest event time of the rows appended since the last call (or since
    /// the decoder was made), if any: called after each message, the message's span.
    pub fn take_span(&mut self) -> Option<(i64, i64)> {
        self.cols.take_span()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.len() == 0
    }

    /// True once `batch_size` rows are buffered: time to [`flush`](Self::flush).
    pub fn is_full(&self) -> bool {
        self.cols.len() >= self.opts.batch_size
    }

    /// The buffered rows as one batch (schema [`detector::schema::sample_schema`]), or `None`
    /// when nothing is buffered.
    pub fn flush(&mut self) -> Option<RecordBatch> {
        self.cols.take_batch()
    }

    /// The series seen so far; ids index [`SeriesInterner::keys`].
    pub fn interner(&self) -> &SeriesInterner {
        &self.interner
    }

    /// Gives the interner back, dropping buffered rows.
    pub fn into_interner(self) -> SeriesInterner {
        self.interner
    }
}

/// Parses and checks one native JSON sample, with exactly the rejections of
/// [`JsonDecoder::decode`] under `opts` (`now_ms: None` reads the clock), into an owned
/// [`Sample`] without its `status` breakdown (which no decoder stores). For tools that re-encode
/// samples (`spikewatch produce --format arrow`).
pub fn parse_sample(msg: &[u8], opts: &DecoderOptions) -> Result<Sample, Rejection> {
    let now_ms = opts.now_ms.unwrap_or_else(system_now_ms);
    Ok(checked_row(msg, opts, now_ms)?.into_sample())
}

/// Size, encoding, syntax and contract checks of one message, in that order.
fn checked_row<'m>(
    msg: &'m [u8],
    opts: &DecoderOptions,
    now_ms: i64,
) -> Result<Row<'m>, Rejection> {
    let text = message_text(msg, opts)?;
    // The fast path takes the common shape; anything else (including every message to
    // reject) goes to the general path, which owns every rejection and its detail.
    let fast = scan::fast_row(
        text,
        now_ms,
        opts.max_future_ms,
        &mut scan::StampCache::default(),
    );
    if let Some(row) = fast {
        return Ok(row);
    }
    validate(parse(text)?, now_ms, opts.max_future_ms)
}

/// The size and encoding checks of one message, then its text without a byte order mark.
#[inline]
fn message_text<'m>(msg: &'m [u8], opts: &DecoderOptions) -> Result<&'m str, Rejection> {
    if msg.len() > opts.max_message_bytes {
        return Err(Rejection::new(
            R::TooLarge,
            format!(
                "message of {} bytes exceeds the limit of {} bytes",
                msg.len(),
                opts.max_message_bytes
            ),
        ));
    }
    // RFC 8259 lets parsers skip a byte order mark; editors put one on the first line of files.
    let msg = msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg);
    std::str::from_utf8(msg).map_err(|e| {
        Rejection::new(
            R::NotUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })
}

fn prealloc(batch_size: usize) -> usize {
    batch_size.clamp(1, MAX_PREALLOC_ROWS)
}

fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// JSON text to the untyped view; syntax problems become rejections here.
fn parse(text: &str) -> Result<RawSample<'_>, Rejection> {
    let mut ctx = Ctx::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let res = SampleSeed { ctx: &mut ctx }
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw));
    match res {
        Ok(raw) => match ctx.duplicate {
            Some(f) => Err(Rejection::new(
                R::MalformedJson,
                format!("duplicate field `{}`", f.name()),
            )),
            None => Ok(raw),
        },
        Err(e) => {
            // serde_json refuses numbers beyond f64 (1e999) rather than making them infinite.
            // (The Parquet reader writes NaN and infinities that way too, JSON having no
            // spelling for them: hence the wording.)
            let overflow = e.to_string().starts_with("number out of range");
            Err(match ctx.reading {
                Some(f) if overflow => Rejection::new(
                    R::NotFinite,
                    format!(
                        "{} is not a finite number (NaN, or beyond a double's range: {e})",
                        f.name()
                    ),
                ),
                _ => Rejection::new(R::MalformedJson, e.to_string()),
            })
        }
    }
}

/// A validated row, still borrowing its strings from the message where it could.
/// (`pub(crate)`: the other formats of [`crate::format`] build rows and push them through
/// [`JsonDecoder::push_row`].)
#[derive(Debug, PartialEq)]
pub(crate) struct Row<'a> {
    pub(crate) cluster: Cow<'a, str>,
    pub(crate) service: Cow<'a, str>,
    pub(crate) region: Option<Cow<'a, str>>,
    pub(crate) ts_ms: i64,
    pub(crate) interval_ms: u32,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) retries: Option<u64>,
    pub(crate) latency_p50_ms: Option<f64>,
    pub(crate) latency_p99_ms: Option<f64>,
    pub(crate) db_pool_active: Option<u32>,
    pub(crate) db_pool_max: Option<u32>,
    pub(crate) db_pool_pending: Option<u32>,
}

impl Row<'_> {
    /// The owned sample (without status counts, which rows do not carry).
    pub(crate) fn into_sample(self) -> Sample {
        let r = self;
        Sample {
            ts_ms: r.ts_ms,
            cluster: r.cluster.into_owned(),
            service: r.service.into_owned(),
            region: r.region.map(Cow::into_owned),
            interval_ms: r.interval_ms,
            requests: r.requests,
            errors: r.errors,
            retries: r.retries,
            latency_p50_ms: r.latency_p50_ms,
            latency_p99_ms: r.latency_p99_ms,
            db_pool_active: r.db_pool_active,
            db_pool_max: r.db_pool_max,
            db_pool_pending: r.db_pool_pending,
            status: Default::default(),
        }
    }
}

fn validate(raw: RawSample<'_>, now_ms: i64, max_future_ms: i64) -> Result<Row<'_>, Rejection> {
    let ts = required(raw.ts, FieldId::Ts)?;
    let cluster = required(raw.cluster, FieldId::Cluster)?;
    let service = required(raw.service, FieldId::Service)?;
    let requests = required(raw.requests, FieldId::Requests)?;
    let errors = required(raw.errors, FieldId::Errors)?;

    let cluster = key(cluster, FieldId::Cluster)?;
    let service = key(service, FieldId::Service)?;
    let region = match present(raw.region) {
        None => None,
        Some(Raw::Str(s)) => Some(s),
        Some(other) => return Err(wrong_type(FieldId::Region, "a string", &other)),
    };

    let ts_ms = timestamp(&ts)?;
    if ts_ms > now_ms.saturating_add(max_future_ms) {
        return Err(Rejection::new(
            R::FutureTimestamp,
            format!(
                "ts {} is {} s ahead of now, more than the allowed {} s",
                crate::time::format_rfc3339_ms(ts_ms).unwrap_or_else(|| ts_ms.to_string()),
                ts_ms.saturating_sub(now_ms) / 1000,
                max_future_ms / 1000,
            ),
        ));
    }

    let interval_ms = match present(raw.interval_s) {
        None => DEFAULT_INTERVAL_MS,
        Some(v) => interval(&v)?,
    };

    let requests = count(&requests, FieldId::Requests)?;
    let errors = count(&errors, FieldId::Errors)?;
    let retries = optional(raw.retries, FieldId::Retries, count)?;
    if errors > requests {
        return Err(Rejection::new(
            R::ErrorsExceedRequests,
            format!("errors {errors} > requests {requests}"),
        ));
    }
    if let Some(retries) = retries.filter(|&r| r > requests) {
        return Err(Rejection::new(
            R::RetriesExceedRequests,
            format!("retries {retries} > requests {requests}"),
        ));
    }

    let latency_p50_ms = optional(raw.latency_p50_ms, FieldId::LatencyP50, latency)?;
    let latency_p99_ms = optional(raw.latency_p99_ms, FieldId::LatencyP99, latency)?;
    let db_pool_active = optional(raw.db_pool_active, FieldId::PoolActive, count_u32)?;
    let db_pool_max = optional(raw.db_pool_max, FieldId::PoolMax, count_u32)?;
    let db_pool_pending = optional(raw.db_pool_pending, FieldId::PoolPending, count_u32)?;

    match raw.status {
        None | Some(Status::Valid) => {}
        Some(Status::BadEntry(detail)) => return Err(Rejection::new(R::InvalidValue, detail)),
        Some(Status::NotObject(kind)) => {
            return Err(Rejection::new(
                R::InvalidValue,
                format!("status must be an object of status code -> count, found {kind}"),
            ))
        }
    }

    Ok(Row {
        cluster,
        service,
        region,
        ts_ms,
        interval_ms,
        requests,
        errors,
        retries,
        latency_p50_ms,
        latency_p99_ms,
        db_pool_active,
        db_pool_max,
        db_pool_pending,
    })
}

fn required(v: Option<Raw<'_>>, f: FieldId) -> Result<Raw<'_>, Rejection> {
    v.ok_or_else(|| {
        Rejection::new(
            R::MissingField,
            format!("missing required field `{}`", f.name()),
        )
    })
}

/// Absent and null are the same for optional fields.
fn present(v: Option<Raw<'_>>) -> Option<Raw<'_>> {
    v.filter(|v| *v != Raw::Null)
}

fn optional<'a, T>(
    v: Option<Raw<'a>>,
    f: FieldId,
    check: impl Fn(&Raw<'a>, FieldId) -> Result<T, Rejection>,
) -> Result<Option<T>, Rejection> {
    present(v).map(|v| check(&v, f)).transpose()
}

fn wrong_type(f: FieldId, expected: &str, found: &Raw<'_>) -> Rejection {
    Rejection::new(
        R::WrongType,
        format!("{} must be {expected}, found {}", f.name(), describe(found)),
    )
}

fn key<'a>(v: Raw<'a>, f: FieldId) -> Result<Cow<'a, str>, Rejection> {
    let Raw::Str(s) = v else {
        return Err(wrong_type(f, "a string", &v));
    };
    if s.is_empty() {
        return Err(Rejection::new(
            R::InvalidKey,
            format!("{} is empty", f.name()),
        ));
    }
    if s.len() > MAX_KEY_BYTES {
        return Err(Rejection::new(
            R::InvalidKey,
            format!(
                "{} is {} bytes, longer than {MAX_KEY_BYTES}: {}",
                f.name(),
                s.len(),
                echo(&s)
            ),
        ));
    }
    Ok(s)
}

fn timestamp(v: &Raw<'_>) -> Result<i64, Rejection> {
    use crate::time::{parse_rfc3339_ms, MAX_TS_MS, MIN_TS_MS};
    let out_of_range = || {
        Rejection::new(
            R::InvalidTimestamp,
            format!(
                "ts {} is outside the years 0000-9999 in epoch milliseconds",
                describe(v)
            ),
        )
    };
    let ms = match v {
        Raw::Str(s) => {
            return parse_rfc3339_ms(s).ok_or_else(|| {
                Rejection::new(
                    R::InvalidTimestamp,
                    format!("ts {:?} is not an RFC 3339 timestamp", echo(s)),
                )
            })
        }
        Raw::U64(n) => i64::try_from(*n).map_err(|_| out_of_range())?,
        Raw::I64(n) => *n,
        Raw::F64(x) if !x.is_finite() => {
            return Err(Rejection::new(R::NotFinite, "ts is not finite"))
        }
        Raw::F64(x) if x.fract() != 0.0 => {
            return Err(Rejection::new(
                R::InvalidTimestamp,
                format!("ts {} is not a whole number of milliseconds", describe(v)),
            ))
        }
        // Whole and finite; the range check below rejects anything the cast saturated.
        Raw::F64(x) => *x as i64,
        other => {
            return Err(wrong_type(
                FieldId::Ts,
                "an RFC 3339 string or integer epoch milliseconds",
                other,
            ))
        }
    };
    if (MIN_TS_MS..=MAX_TS_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(out_of_range())
    }
}

fn interval(v: &Raw<'_>) -> Result<u32, Rejection> {
    let bad = || {
        Rejection::new(
            R::InvalidInterval,
            format!(
                "interval_s must be > 0 and at most 86400 (at least 1 ms), found {}",
                describe(v)
            ),
        )
    };
    let secs = match v {
        Raw::U64(n) => *n as f64,
        Raw::I64(_) => return Err(bad()),
        Raw::F64(x) if !x.is_finite() => {
            return Err(Rejection::new(R::NotFinite, "interval_s is not finite"))
        }
        Raw::F64(x) => *x,
        other => return Err(wrong_type(FieldId::IntervalS, "a positive number", other)),
    };
    let ms = (secs * 1000.0).round();
    if secs > 0.0 && ms >= 1.0 && ms <= f64::from(MAX_INTERVAL_MS) {
        // In 1..=MAX_INTERVAL_MS, so the cast is exact.
        Ok(ms as u32)
    } else {
        Err(bad())
    }
}

/// A count: a whole number >= 0 that fits u64.
fn count(v: &Raw<'_>, f: FieldId) -> Result<u64, Rejection> {
    match v {
        Raw::U64(n) => Ok(*n),
        Raw::I64(n) => Err(Rejection::new(
            R::NegativeCount,
            format!("{} is negative: {n}", f.name()),
        )),
        Raw::F64(x) if !x.is_finite() => Err(Rejection::new(
            R::NotFinite,
            format!("{} is not finite", f.name()),
        )),
        Raw::F64(x) if *x < 0.0 => Err(Rejection::new(
            R::NegativeCount,
            format!("{} is negative: {}", f.name(), describe(v)),
        )),
        Raw::F64(x) if x.fract() != 0.0 => Err(Rejection::new(
            R::InvalidValue,
            format!("{} must be an integer, found {}", f.name(), describe(v)),
        )),
        // 2^64 is exactly representable; anything below it casts exactly when whole.
        Raw::F64(x) if *x < 18_446_744_073_709_551_616.0 => Ok(*x as u64),
        Raw::F64(_) => Err(Rejection::new(
            R::InvalidValue,
            format!("{} {} does not fit 64 bits", f.name(), describe(v)),
        )),
        other => Err(wrong_type(f, "a non-negative integer", other)),
    }
}

fn count_u32(v: &Raw<'_>, f: FieldId) -> Result<u32, Rejection> {
    let n = count(v, f)?;
    u32::try_from(n).map_err(|_| {
        Rejection::new(
            R::InvalidValue,
            format!("{} {n} exceeds {}", f.name(), u32::MAX),
        )
    })
}

fn latency(v: &Raw<'_>, f: FieldId) -> Result<f64, Rejection> {
    let x = match v {
        Raw::U64(n) => *n as f64,
        Raw::I64(n) => *n as f64,
        Raw::F64(x) => *x,
        other => return Err(wrong_type(f, "a non-negative number", other)),
    };
    if !x.is_finite() {
        Err(Rejection::new(
            R::NotFinite,
            format!("{} is not finite", f.name()),
        ))
    } else if x < 0.0 {
        Err(Rejection::new(
            R::InvalidValue,
            format!("{} is negative: {}", f.name(), describe(v)),
        ))
    } else {
        Ok(x)
    }
}
