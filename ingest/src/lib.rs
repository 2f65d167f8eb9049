//! Getting samples into spikewatch: sans-I/O decoders that turn messages into the detector's
//! Arrow sample batches, readers for the on-disk incident trace layout, and the Kafka driver.
//!
//! - [`format`]: one decoder ([`format::MessageDecoder`]) for every wire format, sharing one
//!   series interner: native JSON ([`json`]), Arrow IPC ([`arrow_ipc`]) and
//!   prometheus-kafka-adapter JSON ([`prom_adapter`]).
//! - [`json`]: the native JSON sample format (`spikewatch.v1`) and its push-based decoder,
//!   `decode(&[u8])` per message then `flush() -> Option<RecordBatch>`, with typed rejections.
//! - [`trace`]: sample lines, change events and labels of trace directories.
//! - [`parquet_samples`]: Parquet samples files (`samples.parquet`), read as sample lines.
//! - [`ahead`]: decodes a large delivery on a second thread while the caller runs the
//!   detector on the batches already decoded.
//! - [`frontier`]: how far each input (a Kafka partition) has delivered in event time, so a
//!   consumer catching up on several partitions holds the detector's watermark for the one
//!   furthest behind.
//! - [`time`]: RFC 3339 <-> epoch milliseconds, shared by all.
//! - [`kafka`]: the only module that talks to Kafka (rdkafka): an at-least-once consumer with a
//!   dead-letter topic, lag and health, and a keyed producer. Its types never mention rdkafka.
//!
//! Nothing outside [`kafka`] does network I/O or reads a clock except where documented
//! ([`json::DecoderOptions::now_ms`]).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod ahead;
pub mod arrow_ipc;
pub mod format;
pub mod frontier;
pub mod json;
pub mod kafka;
pub mod parquet_samples;
pub mod prom_adapter;
pub mod time;
pub mod trace;

pub use format::{Accepted, Format, FormatKind, MessageDecoder, MessageDecoderOptions};
pub use json::{DecoderOptions, JsonDecoder, RejectReason, Rejection, Sample};
pub use trace::{
    list_traces, read_changes, read_changes_skipping_bad, read_labels, ChangeEvent, ChangeKind,
    Labels, SampleLines, TraceDir, TraceError, Window,
};
