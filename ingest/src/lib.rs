//! Getting samples into spikewatch: sans-I/O decoders that turn messages into the detector's
//! Arrow sample batches, and readers for the on-disk incident trace layout.
//!
//! - [`json`]: the native JSON sample format (`spikewatch.v1`) and its push-based decoder,
//!   `decode(&[u8])` per message then `flush() -> Option<RecordBatch>`, with typed rejections.
//! - [`trace`]: sample lines, change events and labels of trace directories.
//! - [`time`]: RFC 3339 <-> epoch milliseconds, shared by both.
//!
//! Nothing here does network I/O or reads a clock except where documented
//! ([`json::DecoderOptions::now_ms`]).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod json;
pub mod time;
pub mod trace;

pub use json::{DecoderOptions, JsonDecoder, RejectReason, Rejection, Sample};
pub use trace::{
    list_traces, read_changes, read_labels, ChangeEvent, ChangeKind, Labels, SampleLines, TraceDir,
    TraceError, Window,
};
