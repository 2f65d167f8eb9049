//! One decoder for every metrics wire format spikewatch accepts.
//!
//! A topic (or file) carries exactly one [`Format`], chosen in configuration and never guessed
//! from the bytes:
//!
//! | format | one message is | module |
//! |---|---|---|
//! | [`Format::Json`] | one native JSON sample (`spikewatch.v1`, CONTRACT section 1) | [`crate::json`] |
//! | [`Format::ArrowIpc`] | one Arrow IPC stream of record batches in the wire schema | [`crate::arrow_ipc`] |
//! | [`Format::PromAdapter`] | one Prometheus sample as prometheus-kafka-adapter writes it | [`crate::prom_adapter`] |
//!
//! [`MessageDecoder`] decodes any of them into the detector's internal batches
//! ([`detector::schema::sample_schema`]) through one [`SeriesInterner`], so a series has the same
//! dense id whichever topic or format it came from, and rows of every format share one batch.
//! Like [`JsonDecoder`] it is push-based and sans-I/O: [`MessageDecoder::decode`] per message,
//! [`MessageDecoder::is_full`], [`MessageDecoder::flush`].
//!
//! Every rejected message gets a [`RejectReason`]: the same checks apply to every format (key
//! length, timestamp range and future limit, interval, `errors <= requests`, finite
//! non-negative latencies), so a sample accepted in one format is accepted in all.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::RecordBatch;
use detector::SeriesInterner;

use crate::json::{
    DecoderOptions, JsonDecoder, RejectReason, Rejection, Row, DEFAULT_INTERVAL_MS,
    MAX_INTERVAL_MS, MAX_KEY_BYTES,
};
use crate::prom_adapter::{PromAssembler, PromMapping};

/// A message payload in a shared, immutable buffer: cloning it counts a reference, and
/// [`Payload::from_vec`] takes a `Vec<u8>` over without copying. What a source hands the
/// decoder when it keeps the message too ([`MessageDecoder::decode_shared`]).
pub use arrow_buffer::Buffer as Payload;

/// Default limit on one Arrow IPC message: 16 MiB (a few hundred thousand rows).
pub const DEFAULT_MAX_ARROW_BYTES: usize = 16 << 20;

/// The wire format of a topic or file.
#[derive(Debug, Clone)]
pub enum Format {
    /// Native JSON, one sample per message.
    Json,
    /// Arrow IPC stream messages in [`crate::arrow_ipc::wire_schema`].
    ArrowIpc,
    /// prometheus-kafka-adapter JSON, one Prometheus sample per message, assembled into
    /// spikewatch samples by the given mapping.
    PromAdapter(Arc<PromMapping>),
}

impl Format {
    /// The stable name of the format, as written in configuration and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => FormatKind::Json.as_str(),
            Format::ArrowIpc => FormatKind::ArrowIpc.as_str(),
            Format::PromAdapter(_) => FormatKind::PromAdapter.as_str(),
        }
    }

    pub fn kind(&self) -> FormatKind {
        match self {
            Format::Json => FormatKind::Json,
            Format::ArrowIpc => FormatKind::ArrowIpc,
            Format::PromAdapter(_) => FormatKind::PromAdapter,
        }
    }
}

/// A format by name, as configuration names it (`json`, `arrow_ipc`, `prom_adapter`); the
/// Prometheus mapping is configured separately ([`crate::prom_adapter::PromMappingConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatKind {
    Json,
    ArrowIpc,
    PromAdapter,
}

impl FormatKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            FormatKind::Json => "json",
            FormatKind::ArrowIpc => "arrow_ipc",
            FormatKind::PromAdapter => "prom_adapter",
        }
    }
}

impl std::fmt::Display for FormatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FormatKind {
    type Err = String;

    /// Accepts the configuration names and the short forms `arrow` and `prom`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(FormatKind::Json),
            "arrow_ipc" | "arrow-ipc" | "arrow" => Ok(FormatKind::ArrowIpc),
            "prom_adapter" | "prom-adapter" | "prom" => Ok(FormatKind::PromAdapter),
            other => Err(format!(
                "unknown format {other:?}: expected json, arrow_ipc or prom_adapter"
            )),
        }
    }
}

/// What became of an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The message added this many rows to the batch in progress (JSON: 1; Arrow IPC: the
    /// rows it carried; Prometheus: the samples it completed).
    Rows(usize),
    /// Prometheus: the message is part of a sample still being assembled.
    Pending,
    /// The message is valid but carries nothing to keep.
    Ignored(Ignored),
}

/// Why a valid message was ignored. Ignored messages are not dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// Prometheus: no selector of the mapping matches the metric.
    Unmapped,
    /// Prometheus: the point is older than, or the same as, one already taken for its time
    /// series (a redelivery, or out of order).
    Duplicate,
    /// Prometheus: the sample this point belongs to was already emitted.
    Late,
    /// Prometheus: a `NaN` value (Prometheus' staleness marker): the time series ended.
    Stale,
    /// Arrow IPC: a stream with no rows.
    Empty,
}

impl Ignored {
    pub const fn as_str(self) -> &'static str {
        match self {
            Ignored::Unmapped => "unmapped",
            Ignored::Duplicate => "duplicate",
            Ignored::Late => "late",
            Ignored::Stale => "stale",
            Ignored::Empty => "empty",
        }
    }
}

/// Settings of a [`MessageDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageDecoderOptions {
    /// Batch size, JSON message size limit and future-timestamp check, shared by all formats.
    pub decoder: DecoderOptions,
    /// Longer Arrow IPC messages are rejected as `too_large`. Default 16 MiB.
    pub max_arrow_bytes: usize,
}

impl Default for MessageDecoderOptions {
    fn default() -> Self {
        Self {
            decoder: DecoderOptions::default(),
            max_arrow_bytes: DEFAULT_MAX_ARROW_BYTES,
        }
    }
}

/// Push-based decoder of messages in any [`Format`] into internal sample batches.
///
/// ```
/// use ingest::format::{Accepted, Format, MessageDecoder, MessageDecoderOptions};
/// use ingest::Sample;
///
/// let mut dec = MessageDecoder::new(MessageDecoderOptions::default());
/// let json = Sample::new(1_770_931_210_000, "c", "s", 10, 1).to_json_line();
/// assert_eq!(dec.decode(&Format::Json, json.as_bytes()), Ok(Accepted::Rows(1)));
/// let arrow = ingest::arrow_ipc::encode(&[Sample::new(1_770_931_220_000, "c", "s", 12, 0)]).unwrap();
/// assert_eq!(dec.decode(&Format::ArrowIpc, &arrow), Ok(Accepted::Rows(1)));
/// let batch = dec.flush().unwrap();
/// assert_eq!(batch.num_rows(), 2);
/// assert_eq!(dec.interner().len(), 1); // one series, whatever the format
/// ```
#[derive(Debug)]
pub struct MessageDecoder {
    /// Owns the interner and the batch builders; other formats push validated rows into it.
    json: JsonDecoder,
    max_arrow_bytes: usize,
    prom: PromAssembler,
    /// What the Arrow IPC decoder keeps between messages (series keys, last schema).
    arrow: crate::arrow_ipc::ArrowState,
}

impl MessageDecoder {
    pub fn new(opts: MessageDecoderOptions) -> Self {
        Self::with_interner(opts, SeriesInterner::new())
    }

    /// A decoder that continues an existing interner (ids already handed out stay valid).
    pub fn with_interner(opts: MessageDecoderOptions, interner: SeriesInterner) -> Self {
        Self {
            json: JsonDecoder::with_interner(opts.decoder, interner),
            max_arrow_bytes: opts.max_arrow_bytes,
            prom: PromAssembler::default(),
            arrow: Default::default(),
        }
    }

    /// Decodes one message of the given format. On rejection nothing is appended and no
    /// series is interned.
    pub fn decode(&mut self, format: &Format, msg: &[u8]) -> Result<Accepted, Rejection> {
        match format {
            Format::ArrowIpc => self.decode_arrow(crate::arrow_ipc::Message::Lent(msg)),
            _ => self.decode_text(format, msg),
        }
    }

    /// [`decode`](Self::decode) for a message the caller no longer needs: an Arrow IPC message
    /// is then read in place instead of being copied first (its arrays become the batch's
    /// columns, which must own their bytes). The same rows and rejections either way.
    pub fn decode_owned(&mut self, format: &Format, msg: Vec<u8>) -> Result<Accepted, Rejection> {
        match format {
            Format::ArrowIpc => self.decode_shared(format, &Payload::from_vec(msg)),
            _ => self.decode_text(format, &msg),
        }
    }

    /// [`decode`](Self::decode) for a message held in a shared buffer (a [`Payload`], which
    /// clones by reference count): an Arrow IPC message is read in place, its arrays sharing
    /// the buffer with the caller, who may keep it (say, to dead-letter the message later).
    /// The same rows and rejections as [`decode`](Self::decode).
    pub fn decode_shared(&mut self, format: &Format, msg: &Payload) -> Result<Accepted, Rejection> {
        match format {
            Format::ArrowIpc => self.decode_arrow(crate::arrow_ipc::Message::Shared(msg.clone())),
            _ => self.decode_text(format, msg.as_slice()),
        }
    }

    fn decode_arrow(&mut self, msg: crate::arrow_ipc::Message<'_>) -> Result<Accepted, Rejection> {
        let limits = self.limits();
        crate::arrow_ipc::decode_into(
            msg,
            self.max_arrow_bytes,
            limits,
            &mut self.json,
            &mut self.arrow,
        )
        .map(|n| {
            if n == 0 {
                Accepted::Ignored(Ignored::Empty)
            } else {
                Accepted::Rows(n)
            }
        })
    }

    fn decode_text(&mut self, format: &Format, msg: &[u8]) -> Result<Accepted, Rejection> {
        match format {
            Format::Json => self.json.decode(msg).map(|()| Accepted::Rows(1)),
            Format::PromAdapter(mapping) => {
                let limits = self.limits();
                let max_bytes = self.json.options().max_message_bytes;
                self.prom
                    .decode(mapping, msg, max_bytes, limits, &mut self.json)
            }
            Format::ArrowIpc => self.decode_arrow(crate::arrow_ipc::Message::Lent(msg)),
        }
    }

    /// End of input: emits every Prometheus sample still being assembled (complete or not as
    /// far as the decoder can tell). Returns the rows added.
    pub fn finish(&mut self) -> usize {
        let limits = self.limits();
        self.prom.finish(limits, &mut self.json)
    }

    /// Rows buffered since the last flush.
    pub fn len(&self) -> usize {
        self.json.len()
    }

    /// The oldest and newest event time of the rows appended since the last call, if any:
    /// called after each message, the message's span (for [`crate::frontier::Frontier::note`]).
    pub fn take_span(&mut self) -> Option<(i64, i64)> {
        self.json.take_span()
    }

    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }

    /// True once `batch_size` rows are buffered: time to [`flush`](Self::flush).
    pub fn is_full(&self) -> bool {
        self.json.is_full()
    }

    /// The buffered rows as one batch in [`detector::schema::sample_schema`], or `None`.
    pub fn flush(&mut self) -> Option<RecordBatch> {
        self.json.flush()
    }

    /// The series seen so far; ids index [`SeriesInterner::keys`].
    pub fn interner(&self) -> &SeriesInterner {
        self.json.interner()
    }

    /// Gives the interner back, dropping buffered rows and pending Prometheus samples.
    pub fn into_interner(self) -> SeriesInterner {
        self.json.into_interner()
    }

    /// The "now" of the future-timestamp check.
    pub fn now_ms(&self) -> i64 {
        self.json.now_ms()
    }

    /// Moves "now" on, for drivers that run longer than `max_future_ms`.
    pub fn set_now_ms(&mut self, now_ms: i64) {
        self.json.set_now_ms(now_ms);
    }

    /// Counters of the Prometheus assembler (samples emitted, dropped, clamped, ...).
    pub fn prom_stats(&self) -> &crate::prom_adapter::AssemblerStats {
        self.prom.stats()
    }

    /// Prometheus samples still being assembled.
    pub fn prom_pending(&self) -> usize {
        self.prom.pending()
    }

    fn limits(&self) -> RowLimits {
        RowLimits {
            now_ms: self.json.now_ms(),
            max_future_ms: self.json.options().max_future_ms,
        }
    }
}

/// The clock-dependent part of the row checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowLimits {
    pub(crate) now_ms: i64,
    pub(crate) max_future_ms: i64,
}

/// The checks of CONTRACT section 1 on a typed row (formats other than JSON, whose decoder
/// checks while parsing). Same reasons, in the same order, as the JSON decoder.
pub(crate) fn check_row(row: &Row<'_>, limits: RowLimits) -> Result<(), Rejection> {
    use crate::time::{format_rfc3339_ms, MAX_TS_MS, MIN_TS_MS};
    use RejectReason as R;
    for (name, key) in [("cluster", &row.cluster), ("service", &row.service)] {
        if key.is_empty() {
            return Err(Rejection::new(R::InvalidKey, format!("{name} is empty")));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Rejection::new(
                R::InvalidKey,
                format!("{name} is {} bytes, longer than {MAX_KEY_BYTES}", key.len()),
            ));
        }
    }
    if !(MIN_TS_MS..=MAX_TS_MS).contains(&row.ts_ms) {
        return Err(Rejection::new(
            R::InvalidTimestamp,
            format!(
                "ts {} is outside the years 0000-9999 in epoch milliseconds",
                row.ts_ms
            ),
        ));
    }
    if row.ts_ms > limits.now_ms.saturating_add(limits.max_future_ms) {
        return Err(Rejection::new(
            R::FutureTimestamp,
            format!(
                "ts {} is {} s ahead of now, more than the allowed {} s",
                format_rfc3339_ms(row.ts_ms).unwrap_or_else(|| row.ts_ms.to_string()),
                row.ts_ms.saturating_sub(limits.now_ms) / 1000,
                limits.max_future_ms / 1000
            ),
        ));
    }
    if row.interval_ms == 0 || row.interval_ms > MAX_INTERVAL_MS {
        return Err(Rejection::new(
            R::InvalidInterval,
            format!(
                "interval_ms must be in 1..={MAX_INTERVAL_MS}, found {}",
                row.interval_ms
            ),
        ));
    }
    if row.errors > row.requests {
        return Err(Rejection::new(
            R::ErrorsExceedRequests,
            format!("errors {} > requests {}", row.errors, row.requests),
        ));
    }
    if let Some(retries) = row.retries.filter(|&r| r > row.requests) {
        return Err(Rejection::new(
            R::RetriesExceedRequests,
            format!("retries {retries} > requests {}", row.requests),
        ));
    }
    for (name, v) in [
        ("latency_p50_ms", row.latency_p50_ms),
        ("latency_p99_ms", row.latency_p99_ms),
    ] {
        match v {
            Some(x) if !x.is_finite() => {
                return Err(Rejection::new(
                    R::NotFinite,
                    format!("{name} is not finite"),
                ))
            }
            Some(x) if x < 0.0 => {
                return Err(Rejection::new(
                    R::InvalidValue,
                    format!("{name} is negative: {x}"),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A row with every optional field absent, for builders.
pub(crate) fn empty_row<'a>(cluster: Cow<'a, str>, service: Cow<'a, str>, ts_ms: i64) -> Row<'a> {
    Row {
        cluster,
        service,
        region: None,
        ts_ms,
        interval_ms: DEFAULT_INTERVAL_MS,
        requests: 0,
        errors: 0,
        retries: None,
        latency_p50_ms: None,
        latency_p99_ms: None,
        db_pool_active: None,
        db_pool_max: None,
        db_pool_pending: None,
    }
}

/// `s` cut to at most 200 bytes on a char boundary (details travel in dead-letter headers).
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
