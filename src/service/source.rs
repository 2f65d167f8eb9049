//! The seam between where samples come from and the one pipeline that judges them. A source
//! hands the pipeline thread deliveries of raw messages; the pipeline reports back which it
//! processed (so a Kafka source can store offsets only then) and which it rejected (so a
//! Kafka source can dead-letter them).

use std::time::Duration;

use ingest::format::{Format, Payload};
use ingest::frontier::FrontierOptions;
use ingest::trace::ChangeEvent;

/// Where a delivery's samples came from, for a source that reads several inputs which may be
/// read out of step in event time (Kafka partitions): the pipeline holds the detector's
/// watermark for the input furthest behind (see [`ingest::frontier`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Lanes {
    /// The input ("lane", numbered by the source) of each message in `samples`.
    pub of_sample: Vec<u32>,
    /// Every lane the source may deliver from now on (its partition assignment).
    pub assigned: Vec<u32>,
    pub options: FrontierOptions,
}

/// What a source hands the pipeline.
#[derive(Debug)]
pub enum Delivery {
    /// Raw sample messages (one message each, in `format`) and change events.
    Messages {
        /// Shared buffers: the pipeline's decoder reads an Arrow IPC message in place, sharing
        /// it with the source (which keeps it for dead letters) instead of copying it.
        samples: Vec<Payload>,
        changes: Vec<ChangeEvent>,
        /// Passed back to [`Source::processed`] once every sample has been through the detector.
        token: u64,
        /// The wire format of every message in `samples` (native JSON for the demo).
        format: Format,
        /// `None` for a source with a single input in event-time order (the demo).
        lanes: Option<Lanes>,
    },
    /// What follows is an unrelated stream (the demo's next trace): start a fresh detector.
    Restart { name: String },
    /// The source is exhausted (`demo --once`, a finite file): close every tick and stop.
    End,
}

/// A source of deliveries, driven from the pipeline thread.
pub trait Source: Send {
    /// A short name for logs and `/readyz`.
    fn describe(&self) -> String;

    /// Waits at most `max_wait` for the next delivery; `Ok(None)` when nothing came.
    fn next(&mut self, max_wait: Duration) -> anyhow::Result<Option<Delivery>>;

    /// Every sample of the delivery with this token has been consumed by the detector.
    fn processed(&mut self, token: u64) -> anyhow::Result<()> {
        let _ = token;
        Ok(())
    }

    /// Sample `index` of the delivery `token` was rejected for `reason` (a stable label),
    /// `detail` saying what exactly was wrong.
    fn rejected(
        &mut self,
        token: u64,
        index: usize,
        reason: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        let _ = (token, index, reason, detail);
        Ok(())
    }

    /// A checkpoint covering every delivery reported [`processed`](Self::processed) so far is
    /// durable on disk: the Kafka source commits its offsets now (and only now, when
    /// checkpointing is on).
    fn checkpointed(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Whether the source is connected and delivering (for `/readyz`).
    fn is_up(&self) -> bool {
        true
    }
}
