//! One pipeline from raw sample messages to alert transitions: decoder -> Arrow batches ->
//! detector. File replays use it directly; live sources feed it message by message.

use std::path::Path;

use anyhow::Context;
use detector::{AlertEvent, Detector, DetectorConfig, DetectorStats};
use ingest::json::{DecoderOptions, JsonDecoder, RejectReason};

/// Counts of rejected messages by reason.
#[derive(Debug, Default, Clone)]
pub struct Rejections {
    pub by_reason: Vec<(RejectReason, u64)>,
    /// The first few rejections, with their position, for humans.
    pub examples: Vec<String>,
}

impl Rejections {
    fn add(&mut self, reason: RejectReason, example: impl FnOnce() -> String) {
        match self.by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.by_reason.push((reason, 1)),
        }
        if self.examples.len() < 10 {
            self.examples.push(example());
        }
    }

    pub fn total(&self) -> u64 {
        self.by_reason.iter().map(|(_, n)| n).sum()
    }
}

/// Decoder and detector wired together.
#[derive(Debug)]
pub struct Pipeline {
    decoder: JsonDecoder,
    detector: Detector,
    pub rejections: Rejections,
    messages: u64,
}

impl Pipeline {
    pub fn new(cfg: DetectorConfig, batch_size: usize) -> anyhow::Result<Self> {
        let detector = Detector::new(cfg).context("detector configuration")?;
        let decoder = JsonDecoder::new(DecoderOptions {
            batch_size: batch_size.max(1),
            ..DecoderOptions::default()
        });
        Ok(Self {
            decoder,
            detector,
            rejections: Rejections::default(),
            messages: 0,
        })
    }

    /// Decodes one message; when a batch is full, runs it through the detector and appends the
    /// resulting alert transitions to `out`.
    pub fn push_message(&mut self, msg: &[u8], out: &mut Vec<AlertEvent>) -> anyhow::Result<()> {
        self.messages += 1;
        if let Err(rej) = self.decoder.decode(msg) {
            let n = self.messages;
            self.rejections
                .add(rej.reason, || format!("message {n}: {rej}"));
        }
        if self.decoder.is_full() {
            self.flush(out)?;
        }
        Ok(())
    }

    /// Runs whatever the decoder has buffered through the detector.
    pub fn flush(&mut self, out: &mut Vec<AlertEvent>) -> anyhow::Result<()> {
        if let Some(batch) = self.decoder.flush() {
            self.detector
                .push_batch(&batch, self.decoder.interner().keys(), out)
                .context("detector rejected a batch")?;
        }
        Ok(())
    }

    /// End of input: flush and close every open tick.
    pub fn finish(&mut self, out: &mut Vec<AlertEvent>) -> anyhow::Result<()> {
        self.flush(out)?;
        self.detector.finish(out);
        Ok(())
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    pub fn stats(&self) -> DetectorStats {
        self.detector.stats()
    }

    pub fn messages(&self) -> u64 {
        self.messages
    }
}

/// Result of replaying a samples file or trace directory.
#[derive(Debug)]
pub struct ReplayResult {
    pub events: Vec<AlertEvent>,
    pub stats: DetectorStats,
    pub rejections: Rejections,
    pub messages: u64,
}

/// Replays a trace (directory or samples file) as fast as possible, calling `on_events` with each
/// group of alert transitions as they are produced (in event-time order).
pub fn replay(
    path: &Path,
    cfg: DetectorConfig,
    batch_size: usize,
    mut on_events: impl FnMut(&[AlertEvent], u64),
) -> anyhow::Result<ReplayResult> {
    let mut pipeline = Pipeline::new(cfg, batch_size)?;
    let lines = ingest::trace::SampleLines::open(path)
        .with_context(|| format!("opening samples of {}", path.display()))?;
    let mut events = Vec::new();
    let mut fresh = Vec::new();
    for line in lines {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        pipeline.push_message(&line, &mut fresh)?;
        if !fresh.is_empty() {
            on_events(&fresh, pipeline.messages());
            events.append(&mut fresh);
        }
    }
    pipeline.finish(&mut fresh)?;
    on_events(&fresh, pipeline.messages());
    events.append(&mut fresh);
    Ok(ReplayResult {
        events,
        stats: pipeline.stats(),
        rejections: pipeline.rejections.clone(),
        messages: pipeline.messages(),
    })
}
