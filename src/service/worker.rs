//! The pipeline thread: pulls deliveries from the source, runs them through the one
//! [`Pipeline`] (the same one `replay` uses), and publishes what comes out to the hub and the
//! metrics. The detector is synchronous and owns its state, so it gets a thread of its own and
//! nothing else ever locks it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use detector::{AlertEvent, DetectorConfig, DetectorStats, IncidentConfig};
use serde::{Deserialize, Serialize};

use super::hub::{wall_ms, Hub, HubExport};
use super::metrics::Metrics;
use super::source::{Delivery, Source};
use crate::pipeline::{default_incidents, Pipeline, PipelineCheckpoint};

/// Rows per Arrow batch in the service (a delivery is flushed as soon as it is decoded, so this
/// only bounds batch size for large deliveries).
const BATCH_ROWS: usize = 8192;
/// How long the source may block before the thread looks at shutdown and heartbeats.
const POLL: Duration = Duration::from_millis(100);
/// How often the series snapshot for the API and `/metrics` is refreshed.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(500);

/// The first bytes of a checkpoint file, then the format version (u32, little endian), then
/// the bincode body ([`CheckpointFile`]).
const MAGIC: &[u8; 8] = b"SPKWCKPT";
/// Bumped whenever the body's layout changes; another version is refused, never guessed at.
pub const CHECKPOINT_VERSION: u32 = 10;

/// The stream a checkpoint belongs to: resuming from another stream's state would judge one
/// fleet by another's baselines and skip offsets that mean something else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIdentity {
    pub brokers: String,
    pub group_id: String,
    /// Every topic consumed, sorted.
    pub topics: Vec<String>,
}

impl std::fmt::Display for SourceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "brokers {}, group {}, topics {}",
            self.brokers,
            self.group_id,
            self.topics.join(",")
        )
    }
}

/// What `checkpoint.bin` holds after its header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointFile {
    pub source: SourceIdentity,
    /// Wall clock, epoch ms.
    pub written_at_ms: i64,
    pub pipeline: PipelineCheckpoint,
    pub hub: HubExport,
}

/// Writes a checkpoint atomically: a temporary file next to `path`, fsynced, renamed over
/// `path`, and the directory fsynced, so a crash leaves either the old file or the new one.
pub fn write_checkpoint(path: &Path, cp: &CheckpointFile) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("bin.tmp");
    let body = bincode::serialize(cp).context("encoding the checkpoint")?;
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(MAGIC)
        .and_then(|()| f.write_all(&CHECKPOINT_VERSION.to_le_bytes()))
        .and_then(|()| f.write_all(&body))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    // The rename itself is durable only once the directory is.
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Reads a checkpoint; `Ok(None)` when there is none. Anything unreadable is an error naming
/// the file (a damaged checkpoint is never silently replaced by a fresh start).
pub fn read_checkpoint(path: &Path) -> anyhow::Result<Option<CheckpointFile>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading checkpoint {}", path.display())),
    };
    let header = MAGIC.len() + 4;
    if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
        anyhow::bail!("{} is not a spikewatch checkpoint", path.display());
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[MAGIC.len()..header]);
    let version = u32::from_le_bytes(v);
    if version != CHECKPOINT_VERSION {
        anyhow::bail!(
            "checkpoint {} has format version {version}; this spikewatch reads version {CHECKPOINT_VERSION}",
            path.display()
        );
    }
    let cp = bincode::deserialize(&bytes[header..])
        .with_context(|| format!("checkpoint {} is damaged", path.display()))?;
    Ok(Some(cp))
}

/// Where and how often the worker checkpoints.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    pub file: PathBuf,
    pub interval: Duration,
    pub source: SourceIdentity,
}

#[derive(Debug)]
pub struct Worker {
    cfg: DetectorConfig,
    incidents: IncidentConfig,
    hub: Hub,
    metrics: Metrics,
    pipeline: Pipeline,
    out: Vec<AlertEvent>,
    last_snapshot: Instant,
    rejected_seen: Vec<(String, u64)>,
    /// The detector's counters as last published to `/metrics`.
    stats_seen: DetectorStats,
    checkpoint: Option<Checkpointing>,
    last_checkpoint: Instant,
    /// A delivery was processed since the last checkpoint.
    dirty: bool,
}

impl Worker {
    pub fn new(cfg: DetectorConfig, hub: Hub, metrics: Metrics) -> anyhow::Result<Self> {
        let pipeline = Pipeline::new(cfg.clone(), BATCH_ROWS)?;
        Ok(Self {
            incidents: default_incidents(&cfg),
            cfg,
            hub,
            metrics,
            pipeline,
            out: Vec::new(),
            last_snapshot: Instant::now(),
            rejected_seen: Vec::new(),
            stats_seen: DetectorStats::default(),
            checkpoint: None,
            last_checkpoint: Instant::now(),
            dirty: false,
        })
    }

    /// Fleet incidents under these settings (`[incidents]`) instead of the defaults.
    pub fn with_incidents(mut self, incidents: IncidentConfig) -> anyhow::Result<Self> {
        self.pipeline = Pipeline::with_incidents(self.cfg.clone(), incidents.clone(), BATCH_ROWS)?;
        self.incidents = incidents;
        Ok(self)
    }

    /// Checkpoint every `c.interval` (after a processed delivery) and on a graceful stop.
    #[must_use]
    pub fn with_checkpoints(mut self, c: Checkpointing) -> Self {
        self.checkpoint = Some(c);
        self.last_checkpoint = Instant::now();
        self
    }

    /// Carries on from a checkpoint: the pipeline's state, the alert history and incidents.
    pub fn resume(&mut self, cp: CheckpointFile) -> anyhow::Result<()> {
        self.pipeline = Pipeline::from_checkpoint(
            self.cfg.clone(),
            self.incidents.clone(),
            cp.pipeline,
            BATCH_ROWS,
        )?;
        self.hub
            .restore(cp.hub)
            .context("restoring incidents from the checkpoint")?;
        // Process counters start from zero; only what comes after the checkpoint counts.
        self.stats_seen = self.pipeline.stats();
        self.rejected_seen = self
            .pipeline
            .rejections
            .by_reason
            .iter()
            .map(|(r, n)| (r.as_str().to_owned(), *n))
            .collect();
        self.hub
            .update_counters(|c| c.checkpoint_ms = Some(cp.written_at_ms));
        self.snapshot();
        Ok(())
    }

    /// Writes the checkpoint, then lets the source commit. A failure is counted and logged,
    /// and retried after another interval; detection carries on (offsets are then simply not
    /// committed, so a restart reads more again).
    fn write_checkpoint(&mut self, source: &mut dyn Source) {
        let Some(c) = &self.checkpoint else {
            return;
        };
        self.last_checkpoint = Instant::now();
        let now = wall_ms();
        let cp = CheckpointFile {
            source: c.source.clone(),
            written_at_ms: now,
            pipeline: self.pipeline.checkpoint(),
            hub: self.hub.export(),
        };
        if let Err(e) = write_checkpoint(&c.file, &cp) {
            self.metrics.checkpoints.with_label_values(&["error"]).inc();
            eprintln!("spikewatch: checkpoint not written: {e:#}");
            return;
        }
        self.metrics.checkpoints.with_label_values(&["ok"]).inc();
        self.hub.update_counters(|c| c.checkpoint_ms = Some(now));
        self.dirty = false;
        if let Err(e) = source.checkpointed() {
            eprintln!("spikewatch: {e:#} (retried after the next checkpoint)");
        }
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
                self.write_checkpoint(source.as_mut());
                return Ok(());
            }
            match source.next(POLL)? {
                None => self.flush()?,
                Some(Delivery::Messages {
                    samples,
                    changes,
                    token,
                    format,
                    lanes,
                }) => {
                    if !changes.is_empty() {
                        self.pipeline.push_changes(&changes);
                    }
                    let started = Instant::now();
                    if let Some(l) = &lanes {
                        self.pipeline.assign_lanes(&l.assigned, l.options);
                    }
                    let rejected = self.pipeline.push_delivery(
                        &format,
                        &samples,
                        lanes.as_ref().map(|l| l.of_sample.as_slice()),
                        &mut self.out,
                    )?;
                    // Counted in /metrics by reason, then dead-lettered one by one.
                    while self.newly_rejected().is_some() {}
                    for (i, rej) in &rejected {
                        source.rejected(token, *i, rej.reason.as_str(), &rej.detail)?;
                    }
                    self.pipeline.flush(&mut self.out)?;
                    self.metrics.batches.inc();
                    self.metrics
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.publish();
                    source.processed(token)?;
                    self.dirty = true;
                }
                Some(Delivery::Restart { name }) => {
                    self.pipeline.finish(&mut self.out)?;
                    self.publish();
                    self.pipeline = Pipeline::with_incidents(
                        self.cfg.clone(),
                        self.incidents.clone(),
                        BATCH_ROWS,
                    )?;
                    self.stats_seen = DetectorStats::default();
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
            let due = self
                .checkpoint
                .as_ref()
                .is_some_and(|c| self.last_checkpoint.elapsed() >= c.interval);
            if self.dirty && due {
                self.write_checkpoint(source.as_mut());
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
        let now = self.pipeline.stats();
        let was = std::mem::replace(&mut self.stats_seen, now);
        self.metrics
            .samples
            .inc_by(now.samples.saturating_sub(was.samples));
        for (reason, n, before) in [
            ("duplicate", now.duplicates, was.duplicates),
            ("too_late", now.too_late, was.too_late),
        ] {
            self.metrics
                .skipped
                .with_label_values(&[reason])
                .inc_by(n.saturating_sub(before));
        }
        self.metrics
            .forced_closes
            .inc_by(now.forced_closes.saturating_sub(was.forced_closes));
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
        let open = det.open_samples();
        self.hub.set_series(views);
        self.hub.update_counters(|c| {
            c.samples = stats.samples;
            c.tracked_series = n as u64;
            c.open_samples = open as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "spikewatch-worker-{name}-{}-{}",
            std::process::id(),
            wall_ms()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn sample_checkpoint() -> CheckpointFile {
        let mut p = Pipeline::new(DetectorConfig::default(), 16).unwrap();
        let mut out = Vec::new();
        let line = br#"{"ts":"2026-02-12T20:20:10Z","cluster":"c1","service":"s1","requests":100,"errors":1}"#;
        p.push_message(line, &mut out).unwrap();
        p.flush(&mut out).unwrap();
        CheckpointFile {
            source: SourceIdentity {
                brokers: "k:9092".into(),
                group_id: "g".into(),
                topics: vec!["m".into()],
            },
            written_at_ms: 1_700_000_000_000,
            pipeline: p.checkpoint(),
            hub: Hub::new(10).export(),
        }
    }

    #[test]
    fn a_checkpoint_reads_back_and_a_bad_file_is_refused_by_name() {
        let dir = scratch("read");
        let path = dir.join("checkpoint.bin");
        assert!(
            read_checkpoint(&path).unwrap().is_none(),
            "no file: no checkpoint"
        );

        write_checkpoint(&path, &sample_checkpoint()).unwrap();
        let back = read_checkpoint(&path).unwrap().unwrap();
        assert_eq!(back.source, sample_checkpoint().source);
        assert_eq!(back.pipeline.series.len(), 1);
        assert!(
            !dir.join("checkpoint.bin.tmp").exists(),
            "temporary file left behind"
        );
        let good = fs::read(&path).unwrap();

        let mut other_version = good.clone();
        other_version[MAGIC.len()] = 99;
        let cases: [(&str, Vec<u8>, &str); 4] = [
            (
                "not a checkpoint",
                b"hello".to_vec(),
                "is not a spikewatch checkpoint",
            ),
            ("another version", other_version, "format version 99"),
            ("cut short", good[..good.len() / 2].to_vec(), "is damaged"),
            ("empty", Vec::new(), "is not a spikewatch checkpoint"),
        ];
        for (name, bytes, want) in cases {
            fs::write(&path, bytes).unwrap();
            let err = format!("{:#}", read_checkpoint(&path).unwrap_err());
            assert!(err.contains(want), "{name}: {err}");
            assert!(
                err.contains(&path.display().to_string()),
                "{name}: file not named: {err}"
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn incident_settings_are_used_and_kept_when_resuming() {
        let inc = IncidentConfig {
            group_window_s: 42.0,
            max_candidates: 3,
            ..IncidentConfig::default()
        };
        let mut w = Worker::new(DetectorConfig::default(), Hub::new(10), Metrics::new(10))
            .unwrap()
            .with_incidents(inc.clone())
            .unwrap();
        assert_eq!(w.pipeline.incidents().config(), &inc);
        w.resume(sample_checkpoint()).unwrap();
        assert_eq!(w.pipeline.incidents().config(), &inc, "after resuming");
        assert_eq!(w.pipeline.checkpoint().series.len(), 1, "state resumed");
        let bad = IncidentConfig {
            group_window_s: -1.0,
            ..IncidentConfig::default()
        };
        let w = Worker::new(DetectorConfig::default(), Hub::new(10), Metrics::new(10)).unwrap();
        assert!(w.with_incidents(bad).is_err());
    }
}
