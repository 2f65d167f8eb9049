//! One pipeline from raw sample messages to alert transitions: decoder -> Arrow batches ->
//! detector -> incident tracker. File replays use it directly; live sources feed it message by
//! message.
//!
//! Every alert transition leaves the pipeline with its `incident_id` set: each batch's traffic
//! goes to the [`IncidentTracker`] before the detector sees it, and the detector's transitions go
//! through the tracker before they are handed out.

use std::path::Path;

use anyhow::Context;
use detector::incident::Change;
use detector::{
    AlertEvent, Detector, DetectorConfig, DetectorStats, Incident, IncidentConfig, IncidentTracker,
};
use ingest::format::{Format, MessageDecoder, MessageDecoderOptions};
use ingest::json::{DecoderOptions, RejectReason, Rejection};
use ingest::trace::ChangeEvent;

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

/// Decoder, detector and incident tracker wired together.
#[derive(Debug)]
pub struct Pipeline {
    decoder: MessageDecoder,
    detector: Detector,
    incidents: IncidentTracker,
    pub rejections: Rejections,
    last_rejection: Option<Rejection>,
    messages: u64,
}

impl Pipeline {
    /// A pipeline with the default incident settings (fleet error-ratio buckets settle after
    /// the detector's allowed lateness).
    pub fn new(cfg: DetectorConfig, batch_size: usize) -> anyhow::Result<Self> {
        let incidents = IncidentConfig {
            settle_s: cfg.allowed_lateness_s,
            ..IncidentConfig::default()
        };
        Self::with_incidents(cfg, incidents, batch_size)
    }

    pub fn with_incidents(
        cfg: DetectorConfig,
        incidents: IncidentConfig,
        batch_size: usize,
    ) -> anyhow::Result<Self> {
        let detector = Detector::new(cfg).context("detector configuration")?;
        let incidents = IncidentTracker::new(incidents).context("incident configuration")?;
        let decoder = MessageDecoder::new(MessageDecoderOptions {
            decoder: DecoderOptions {
                batch_size: batch_size.max(1),
                ..DecoderOptions::default()
            },
            ..MessageDecoderOptions::default()
        });
        Ok(Self {
            decoder,
            detector,
            incidents,
            rejections: Rejections::default(),
            last_rejection: None,
            messages: 0,
        })
    }

    /// Decodes one message; when a batch is full, runs it through the detector and appends the
    /// resulting alert transitions to `out`.
    pub fn push_message(&mut self, msg: &[u8], out: &mut Vec<AlertEvent>) -> anyhow::Result<()> {
        self.push_message_as(&Format::Json, msg, out)
    }

    /// [`push_message`](Self::push_message) for a message in any wire format.
    pub fn push_message_as(
        &mut self,
        format: &Format,
        msg: &[u8],
        out: &mut Vec<AlertEvent>,
    ) -> anyhow::Result<()> {
        self.messages += 1;
        if let Err(rej) = self.decoder.decode(format, msg) {
            let n = self.messages;
            self.rejections
                .add(rej.reason, || format!("message {n}: {rej}"));
            self.last_rejection = Some(rej);
        }
        if self.decoder.is_full() {
            self.flush(out)?;
        }
        Ok(())
    }

    /// The most recent rejection (reason and detail), for dead letters.
    pub fn last_rejection(&self) -> Option<&Rejection> {
        self.last_rejection.as_ref()
    }

    /// Runs whatever the decoder has buffered through the detector.
    pub fn flush(&mut self, out: &mut Vec<AlertEvent>) -> anyhow::Result<()> {
        // A long-running service moves the future-timestamp check's "now" along.
        self.decoder.set_now_ms(wall_now_ms());
        if let Some(batch) = self.decoder.flush() {
            let keys = self.decoder.interner().keys();
            self.incidents
                .observe_batch(&batch, keys)
                .context("incident tracker rejected a batch")?;
            let start = out.len();
            self.detector
                .push_batch(&batch, keys, out)
                .context("detector rejected a batch")?;
            self.incidents.on_alerts(&mut out[start..]);
        }
        Ok(())
    }

    /// End of input: flush and close every open tick.
    pub fn finish(&mut self, out: &mut Vec<AlertEvent>) -> anyhow::Result<()> {
        // Samples still being assembled (Prometheus format) are emitted as they are.
        self.decoder.finish();
        self.flush(out)?;
        let start = out.len();
        self.detector.finish(out);
        self.incidents.on_alerts(&mut out[start..]);
        self.incidents.finish();
        Ok(())
    }

    /// Change events (deploys, config pushes, maintenance, traffic moves) for incident
    /// correlation; they may arrive at any time, before or after the incidents they explain.
    pub fn push_changes(&mut self, changes: &[ChangeEvent]) {
        let changes: Vec<Change> = changes.iter().cloned().map(Change::from).collect();
        self.incidents.push_changes(&changes);
    }

    /// The incident tracker: incidents newest first, by id, open count.
    pub fn incidents(&self) -> &IncidentTracker {
        &self.incidents
    }

    /// Incidents opened or changed since the last call, each once.
    pub fn take_incident_updates(&mut self) -> Vec<Incident> {
        self.incidents.take_updates()
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

fn wall_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Result of replaying a samples file or trace directory.
#[derive(Debug)]
pub struct ReplayResult {
    pub events: Vec<AlertEvent>,
    /// Every incident, final state, in the order they opened.
    pub incidents: Vec<Incident>,
    /// Change events read (a trace directory's `changes.jsonl`).
    pub changes: usize,
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
    replay_with_incidents(path, cfg, batch_size, |events, _, messages| {
        on_events(events, messages);
    })
}

/// [`replay`], also handing `on_events` the incidents opened or changed by each group of
/// transitions. A trace directory's `changes.jsonl` is loaded first; a bare samples file has
/// no changes.
pub fn replay_with_incidents(
    path: &Path,
    cfg: DetectorConfig,
    batch_size: usize,
    mut on_events: impl FnMut(&[AlertEvent], &[Incident], u64),
) -> anyhow::Result<ReplayResult> {
    let mut pipeline = Pipeline::new(cfg, batch_size)?;
    let changes = if path.is_dir() {
        ingest::trace::read_changes(path)
            .with_context(|| format!("reading changes of {}", path.display()))?
    } else {
        Vec::new()
    };
    pipeline.push_changes(&changes);
    let lines = ingest::trace::SampleLines::open(path)
        .with_context(|| format!("opening samples of {}", path.display()))?;
    let mut events = Vec::new();
    let mut fresh = Vec::new();
    // Latest state of every incident, in the order they opened.
    let mut incidents: Vec<Incident> = Vec::new();
    let mut position: std::collections::HashMap<String, usize> = Default::default();
    let mut record = |updates: &[Incident]| {
        for inc in updates {
            match position.get(&inc.id) {
                Some(&i) => incidents[i] = inc.clone(),
                None => {
                    position.insert(inc.id.clone(), incidents.len());
                    incidents.push(inc.clone());
                }
            }
        }
    };
    for line in lines {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        pipeline.push_message(&line, &mut fresh)?;
        if !fresh.is_empty() {
            let updates = pipeline.take_incident_updates();
            record(&updates);
            on_events(&fresh, &updates, pipeline.messages());
            events.append(&mut fresh);
        }
    }
    pipeline.finish(&mut fresh)?;
    let updates = pipeline.take_incident_updates();
    record(&updates);
    on_events(&fresh, &updates, pipeline.messages());
    events.append(&mut fresh);
    Ok(ReplayResult {
        events,
        incidents,
        changes: changes.len(),
        stats: pipeline.stats(),
        rejections: pipeline.rejections.clone(),
        messages: pipeline.messages(),
    })
}
