//! The pipeline thread: pulls deliveries from the source, runs them through the one
//! [`Pipeline`] (the same one `replay` uses), and publishes what comes out to the hub and the
//! metrics. The detector is synchronous and owns its state, so it gets a thread of its own and
//! nothing else ever locks it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use detector::{AlertEvent, DetectorConfig};

use super::hub::{wall_ms, Hub};
use super::metrics::Metrics;
use super::source::{Delivery, Source};
use crate::pipeline::Pipeline;

/// Rows per Arrow batch in the service (a delivery is flushed as soon as it is decoded, so this
/// only bounds batch size for large deliveries).
const BATCH_ROWS: usize = 8192;
/// How long the source may block before the thread looks at shutdown and heartbeats.
const POLL: Duration = Duration::from_millis(100);
/// How often the series snapshot for the API and `/metrics` is refreshed.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct Worker {
    cfg: DetectorConfig,
    hub: Hub,
    metrics: Metrics,
    pipeline: Pipeline,
    out: Vec<AlertEvent>,
    last_snapshot: Instant,
    rejected_seen: Vec<(String, u64)>,
    samples_seen: u64,
}

impl Worker {
    pub fn new(cfg: DetectorConfig, hub: Hub, metrics: Metrics) -> anyhow::Result<Self> {
        let pipeline = Pipeline::new(cfg.clone(), BATCH_ROWS)?;
        Ok(Self {
            cfg,
            hub,
            metrics,
            pipeline,
            out: Vec::new(),
            last_snapshot: Instant::now(),
            rejected_seen: Vec::new(),
            samples_seen: 0,
        })
    }

    /// Runs until the source ends or `stop` is set.
    pub fn run(mut self, mut source: Box<dyn Source>, stop: &AtomicBool) -> anyhow::Result<()> {
        loop {
            self.hub.heartbeat(wall_ms());
            self.hub.set_source_up(source.is_up());
            if stop.load(Ordering::Relaxed) {
                // Close what is decoded but keep ticks open: the stream has not ended, we are
                // only going away.
                self.flush()?;
                return Ok(());
            }
            match source.next(POLL)? {
                None => self.flush()?,
                Some(Delivery::Messages {
                    samples,
                    changes,
                    token,
                    format,
                }) => {
                    if !changes.is_empty() {
                        self.pipeline.push_changes(&changes);
                    }
                    let started = Instant::now();
                    for (i, msg) in samples.iter().enumerate() {
                        let before = self.pipeline.rejections.total();
                        self.pipeline.push_message_as(&format, msg, &mut self.out)?;
                        if self.pipeline.rejections.total() > before {
                            if let Some(reason) = self.newly_rejected() {
                                let detail = self
                                    .pipeline
                                    .last_rejection()
                                    .map_or("", |r| r.detail.as_str());
                                source.rejected(token, i, &reason, detail)?;
                            }
                        }
                    }
                    self.pipeline.flush(&mut self.out)?;
                    self.metrics.batches.inc();
                    self.metrics
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.publish();
                    source.processed(token)?;
                }
                Some(Delivery::Restart { name }) => {
                    self.pipeline.finish(&mut self.out)?;
                    self.publish();
                    self.pipeline = Pipeline::new(self.cfg.clone(), BATCH_ROWS)?;
                    self.samples_seen = 0;
                    self.rejected_seen.clear();
                    self.hub.update_counters(|c| c.source = name);
                    self.snapshot();
                }
                Some(Delivery::End) => {
                    self.pipeline.finish(&mut self.out)?;
                    self.publish();
                    self.snapshot();
                    self.hub.set_source_up(false);
                    return Ok(());
                }
            }
            if self.last_snapshot.elapsed() >= SNAPSHOT_EVERY {
                self.snapshot();
            }
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.pipeline.flush(&mut self.out)?;
        self.publish();
        Ok(())
    }

    /// The reason of the rejection just counted (the one whose count went up).
    fn newly_rejected(&mut self) -> Option<String> {
        for (reason, n) in &self.pipeline.rejections.by_reason {
            let name = reason.as_str();
            match self.rejected_seen.iter_mut().find(|(r, _)| r == name) {
                Some((_, seen)) if *seen < *n => {
                    let d = *n - *seen;
                    *seen = *n;
                    self.metrics.rejected.with_label_values(&[name]).inc_by(d);
                    return Some(name.to_string());
                }
                Some(_) => {}
                None => {
                    self.rejected_seen.push((name.to_string(), *n));
                    self.metrics.rejected.with_label_values(&[name]).inc_by(*n);
                    return Some(name.to_string());
                }
            }
        }
        None
    }

    fn publish(&mut self) {
        let accepted = self.pipeline.stats().samples;
        self.metrics
            .samples
            .inc_by(accepted.saturating_sub(self.samples_seen));
        self.samples_seen = accepted;
        // Incidents first, so an API reader who sees an alert's incident_id finds the incident.
        let updates = self.pipeline.take_incident_updates();
        let opened = self.hub.upsert_incidents(&updates);
        self.metrics.incidents_opened.inc_by(opened as u64);
        if self.out.is_empty() {
            return;
        }
        self.metrics.observe_events(&self.out);
        self.hub.publish(&self.out);
        self.out.clear();
    }

    /// Refreshes the series snapshot and the pipeline gauges in the hub.
    fn snapshot(&mut self) {
        self.last_snapshot = Instant::now();
        let det = self.pipeline.detector();
        let n = det.series_count();
        let mut views: Vec<detector::SeriesView> = (0..n)
            .filter_map(|i| u32::try_from(i).ok())
            .filter_map(|id| det.series_view(id))
            .collect();
        views.sort_by(|a, b| {
            (&a.key.cluster, &a.key.service).cmp(&(&b.key.cluster, &b.key.service))
        });
        let stats = self.pipeline.stats();
        let watermark = det.max_event_time();
        self.hub.set_series(views);
        self.hub.update_counters(|c| {
            c.samples = stats.samples;
            c.tracked_series = n as u64;
            c.watermark_ms = watermark;
            c.watermark_wall_ms = Some(wall_ms());
            c.rejected = self
                .rejected_seen
                .iter()
                .map(|(r, n)| (r.clone(), *n))
                .collect();
        });
    }
}

/// Spawns the pipeline thread.
pub fn spawn(
    worker: Worker,
    source: Box<dyn Source>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || worker.run(source, &stop))
}
