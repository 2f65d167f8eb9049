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
    AlertEvent, Detector, DetectorConfig, DetectorSnapshot, DetectorStats, Incident,
    IncidentConfig, IncidentSnapshot, IncidentTracker, SeriesInterner, SeriesKey,
};
use ingest::ahead::{decode_delivery, take_cut, worth_overlapping, Cut, Decoding};
use ingest::format::{Accepted, Format, MessageDecoder, MessageDecoderOptions, Payload};
use ingest::frontier::{Frontier, FrontierOptions};
use ingest::json::{DecoderOptions, RejectReason, Rejection};
use ingest::trace::ChangeEvent;
use serde::{Deserialize, Serialize};

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

/// Everything a [`Pipeline`] needs to carry on after a restart: the detector's and the incident
/// tracker's state, the decoder's series ids (keys in id order, so the restored decoder hands
/// out the same ids the detector state is indexed by) and the counters. The prometheus-adapter
/// counter state is not part of it: after a restart the first value of every counter is only a
/// new base, and its delta comes with the next one.
///
/// Serialize it with a binary serde format (`bincode`): the detector state holds NaN.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineCheckpoint {
    pub detector: DetectorSnapshot,
    pub incidents: IncidentSnapshot,
    pub series: Vec<SeriesKey>,
    pub messages: u64,
    /// Rejected messages by reason label ([`RejectReason::as_str`]).
    pub rejections: Vec<(String, u64)>,
}

/// The incident settings of [`Pipeline::new`]: the defaults, with fleet error-ratio buckets
/// settling after the detector's allowed lateness.
pub fn default_incidents(cfg: &DetectorConfig) -> IncidentConfig {
    IncidentConfig {
        settle_s: cfg.allowed_lateness_s,
        ..IncidentConfig::default()
    }
}

/// Runs one batch through the incident tracker and the detector, the watermark held as the cut
/// says while the detector reads it and after; alert transitions are appended to `out`.
fn run_cut(
    detector: &mut Detector,
    incidents: &mut IncidentTracker,
    cut: &Cut,
    out: &mut Vec<AlertEvent>,
) -> anyhow::Result<()> {
    detector.add_series(&cut.new_keys);
    incidents.add_series(&cut.new_keys);
    incidents
        .observe_registered(&cut.batch)
        .context("incident tracker rejected a batch")?;
    let start = out.len();
    detector.set_frontier(cut.before, out);
    detector
        .push_registered(&cut.batch, out)
        .context("detector rejected a batch")?;
    detector.set_frontier(cut.after, out);
    incidents.on_alerts(&mut out[start..]);
    Ok(())
}

/// Decoder, detector and incident tracker wired together.
#[derive(Debug)]
pub struct Pipeline {
    decoder: MessageDecoder,
    /// How far each input lane (Kafka partition) has delivered; empty for a single input.
    frontier: Frontier,
    detector: Detector,
    incidents: IncidentTracker,
    pub rejections: Rejections,
    messages: u64,
}

impl Pipeline {
    /// A pipeline with the default incident settings (fleet error-ratio buckets settle after
    /// the detector's allowed lateness).
    pub fn new(cfg: DetectorConfig, batch_size: usize) -> anyhow::Result<Self> {
        let incidents = default_incidents(&cfg);
        Self::with_incidents(cfg, incidents, batch_size)
    }

    pub fn with_incidents(
        cfg: DetectorConfig,
        incidents: IncidentConfig,
        batch_size: usize,
    ) -> anyhow::Result<Self> {
        let detector = Detector::new(cfg).context("detector configuration")?;
        let incidents = IncidentTracker::new(incidents).context("incident configuration")?;
        let decoder = MessageDecoder::new(decoder_options(batch_size));
        Ok(Self {
            decoder,
            frontier: Frontier::default(),
            detector,
            incidents,
            rejections: Rejections::default(),
            messages: 0,
        })
    }

    /// The pipeline's state, for a checkpoint (see [`PipelineCheckpoint`]). Call it between
    /// deliveries, after [`flush`](Self::flush): rows still buffered in the decoder are not in it.
    pub fn checkpoint(&self) -> PipelineCheckpoint {
        PipelineCheckpoint {
            detector: self.detector.snapshot(),
            incidents: self.incidents.snapshot(),
            series: self.decoder.interner().keys().to_vec(),
            messages: self.messages,
            rejections: self
                .rejections
                .by_reason
                .iter()
                .map(|(r, n)| (r.as_str().to_owned(), *n))
                .collect(),
        }
    }

    /// A pipeline that carries on from `cp` under these settings. Refuses a checkpoint whose
    /// parts disagree.
    pub fn from_checkpoint(
        cfg: DetectorConfig,
        incident_cfg: IncidentConfig,
        cp: PipelineCheckpoint,
        batch_size: usize,
    ) -> anyhow::Result<Self> {
        if cp.series.len() != cp.detector.series_count() {
            anyhow::bail!(
                "checkpoint holds {} series keys but detector state for {}",
                cp.series.len(),
                cp.detector.series_count()
            );
        }
        let mut interner = SeriesInterner::new();
        for (i, k) in cp.series.iter().enumerate() {
            let id = interner.intern(&k.cluster, &k.service, k.region.as_deref());
            if id.map(|id| id as usize) != Some(i) {
                anyhow::bail!(
                    "checkpoint series {i} ({}/{}) is listed twice",
                    k.cluster,
                    k.service
                );
            }
        }
        let detector = Detector::from_snapshot(cfg, cp.detector)
            .context("restoring the detector from the checkpoint")?;
        let incidents = IncidentTracker::from_snapshot(incident_cfg, cp.incidents)
            .context("restoring the incident tracker from the checkpoint")?;
        let decoder = MessageDecoder::with_interner(decoder_options(batch_size), interner);
        let mut rejections = Rejections::default();
        for (label, n) in cp.rejections {
            let reason = RejectReason::ALL
                .iter()
                .copied()
                .find(|r| r.as_str() == label)
                .with_context(|| format!("checkpoint has an unknown reject reason {label:?}"))?;
            rejections.by_reason.push((reason, n));
        }
        Ok(Self {
            decoder,
            frontier: Frontier::default(),
            detector,
            incidents,
            rejections,
            messages: cp.messages,
        })
    }

    /// Decodes one message; when a batch is full, runs it through the detector and appends the
    /// resulting alert transitions to `out`.
    pub fn push_message(&mut self, msg: &[u8], out: &mut Vec<AlertEvent>) -> anyhow::Result<()> {
        let decoded = self.decoder.decode(&Format::Json, msg);
        self.after_decode(decoded, out)
    }

    /// A whole delivery, each message in `format` and held in a shared buffer (an Arrow IPC
    /// message is read in place, so the caller may keep it for a dead letter without either
    /// side copying it), flushed at the end. `lanes`: each message's input for a source that
    /// reads several which may be read out of step in event time (Kafka partitions; the
    /// detector's watermark is then held for the one furthest behind, see [`ingest::frontier`]
    /// and [`assign_lanes`](Self::assign_lanes)), or `None` for a single input.
    ///
    /// A large Arrow IPC delivery ([`worth_overlapping`]) is decoded on a second thread
    /// while this one runs the batches already decoded through the detector: the same batches
    /// in the same order as message by message, so the same alerts, in about the time of the
    /// slower side instead of the sum. Returns the rejected messages (index, why).
    pub fn push_delivery(
        &mut self,
        format: &Format,
        msgs: &[Payload],
        lanes: Option<&[u32]>,
        out: &mut Vec<AlertEvent>,
    ) -> anyhow::Result<Vec<(usize, Rejection)>> {
        self.decoder.set_now_ms(wall_now_ms());
        let overlap = worth_overlapping(format, msgs);
        let Self {
            decoder,
            frontier,
            detector,
            incidents,
            rejections,
            messages,
        } = self;
        let known_keys = detector.series_count();
        let mut rejected = Vec::new();
        let mut on_message = |i: usize, outcome: &Result<Accepted, Rejection>| {
            *messages += 1;
            if let Err(rej) = outcome {
                let n = *messages;
                rejections.add(rej.reason, || format!("message {n}: {rej}"));
                rejected.push((i, rej.clone()));
            }
        };
        let mut consume = |cut: Cut| run_cut(detector, incidents, &cut, out);
        decode_delivery(
            Decoding {
                decoder,
                frontier,
                lanes,
                known_keys,
                now_ms: &wall_now_ms,
            },
            format,
            msgs,
            overlap,
            &mut on_message,
            &mut consume,
        )?;
        Ok(rejected)
    }

    /// The lanes the source may deliver from now on (its partition assignment) and how they
    /// hold each other back. A lane not listed is forgotten; a new one holds the watermark
    /// until it delivers or goes idle.
    ///
    /// `opts.max_ahead_ms` is taken no larger than the detector's allowed lateness: a clock
    /// further ahead than that would make on-time samples late, which is what the limit is
    /// there to prevent.
    pub fn assign_lanes(&mut self, lanes: &[u32], mut opts: FrontierOptions) {
        #[allow(clippy::cast_possible_truncation)]
        let lateness_ms = (self.detector.config().allowed_lateness_s * 1000.0).round() as i64;
        opts.max_ahead_ms = opts.max_ahead_ms.map(|a| a.min(lateness_ms));
        self.frontier.set_options(opts);
        self.frontier.assign(lanes, wall_now_ms());
    }

    fn after_decode(
        &mut self,
        decoded: Result<Accepted, Rejection>,
        out: &mut Vec<AlertEvent>,
    ) -> anyhow::Result<()> {
        self.messages += 1;
        if let Err(rej) = decoded {
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
        // A long-running service moves the future-timestamp check's "now" along.
        let now = wall_now_ms();
        self.decoder.set_now_ms(now);
        let known_keys = self.detector.series_count();
        if let Some(cut) = take_cut(&mut self.decoder, &mut self.frontier, known_keys, now) {
            return run_cut(&mut self.detector, &mut self.incidents, &cut, out);
        }
        // Nothing came: a lane gone idle may still release the ticks it held.
        let start = out.len();
        self.detector
            .set_frontier(self.frontier.after_batch(now), out);
        self.incidents.on_alerts(&mut out[start..]);
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

fn decoder_options(batch_size: usize) -> MessageDecoderOptions {
    MessageDecoderOptions {
        decoder: DecoderOptions {
            batch_size: batch_size.max(1),
            ..DecoderOptions::default()
        },
        ..MessageDecoderOptions::default()
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
    /// Lines of `changes.jsonl` that are not change events, skipped: each error's message and
    /// cause, naming the file and line.
    pub rejected_changes: Vec<String>,
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
/// transitions. A trace directory's `changes.jsonl` is loaded first, skipping (and returning)
/// any line that is not a change event, as bad samples are skipped; a bare samples file has no
/// changes.
pub fn replay_with_incidents(
    path: &Path,
    cfg: DetectorConfig,
    batch_size: usize,
    mut on_events: impl FnMut(&[AlertEvent], &[Incident], u64),
) -> anyhow::Result<ReplayResult> {
    let mut pipeline = Pipeline::new(cfg, batch_size)?;
    let changes = if path.is_dir() {
        ingest::trace::read_changes_skipping_bad(path)
            .with_context(|| format!("reading changes of {}", path.display()))?
    } else {
        ingest::trace::ChangesRead::default()
    };
    pipeline.push_changes(&changes.events);
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
        changes: changes.events.len(),
        rejected_changes: changes
            .rejected
            .iter()
            .map(ingest::trace::with_cause)
            .collect(),
        stats: pipeline.stats(),
        rejections: pipeline.rejections.clone(),
        messages: pipeline.messages(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/incidents");

    /// Alerts and incidents (as JSON, so NaN-free comparisons and every field counts) of a
    /// trace fed to a pipeline that, after `split` lines (if any), is checkpointed to bincode
    /// bytes, dropped, and restored from them.
    fn run(trace: &str, split: Option<usize>) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
        let path = Path::new(TRACES).join(trace);
        let mut p = Pipeline::new(DetectorConfig::default(), 500).unwrap();
        p.push_changes(&ingest::trace::read_changes(&path).unwrap());
        let mut out = Vec::new();
        let mut updates = Vec::new();
        for (i, line) in ingest::trace::SampleLines::open(&path).unwrap().enumerate() {
            if Some(i) == split {
                p.flush(&mut out).unwrap();
                updates.extend(p.take_incident_updates());
                let bytes = bincode::serialize(&p.checkpoint()).unwrap();
                drop(p);
                let cp: PipelineCheckpoint = bincode::deserialize(&bytes).unwrap();
                p = Pipeline::from_checkpoint(
                    DetectorConfig::default(),
                    default_incidents(&DetectorConfig::default()),
                    cp,
                    500,
                )
                .unwrap();
            }
            p.push_message(&line.unwrap(), &mut out).unwrap();
            updates.extend(p.take_incident_updates());
        }
        p.finish(&mut out).unwrap();
        updates.extend(p.take_incident_updates());
        // Each incident's final record, in the order they opened.
        let mut incidents: Vec<(String, serde_json::Value)> = Vec::new();
        for inc in &updates {
            let v = serde_json::to_value(inc).unwrap();
            match incidents.iter_mut().find(|(id, _)| *id == inc.id) {
                Some(slot) => slot.1 = v,
                None => incidents.push((inc.id.clone(), v)),
            }
        }
        (
            out.iter()
                .map(|e| serde_json::to_value(e).unwrap())
                .collect(),
            incidents.into_iter().map(|(_, v)| v).collect(),
        )
    }

    #[test]
    fn a_pipeline_restored_from_a_checkpoint_carries_on_as_if_it_never_stopped() {
        let cases = [
            (
                "routing config removed",
                "2026-02-12-routing-config-removed",
            ),
            (
                "db replica maintenance",
                "2026-02-04-db-replica-maintenance",
            ),
            (
                "telemetry control plane",
                "2024-12-11-telemetry-control-plane",
            ),
        ];
        for (name, trace) in cases {
            let lines = ingest::trace::SampleLines::open(Path::new(TRACES).join(trace))
                .unwrap()
                .count();
            let (alerts, incidents) = run(trace, None);
            assert!(!alerts.is_empty(), "{name}: the trace has alerts");
            assert!(!incidents.is_empty(), "{name}: the trace has incidents");
            // The middle (mid-incident for these traces) and a point shortly before the end.
            for split in [lines / 2, lines - lines / 20] {
                let (a, i) = run(trace, Some(split));
                assert_eq!(
                    a, alerts,
                    "{name}: alerts differ when split at line {split}"
                );
                assert_eq!(
                    i, incidents,
                    "{name}: incidents differ when split at line {split}"
                );
            }
        }
    }

    /// Live, at 1 s resolution up to the wall clock: 20 series, one of whose producers starts
    /// stamping its samples an hour fast 200 s before now. With the wall-clock limit only that
    /// series is reported (absent: nothing of it arrives in the fleet's time). Without it, the
    /// detector's quorum clock alone keeps the watermark with the fleet (before that clock, the
    /// fast samples dragged it an hour ahead and every other series was reported absent).
    #[test]
    fn a_producer_whose_clock_is_an_hour_fast_does_not_get_the_rest_of_the_fleet_reported() {
        let run = |max_ahead_ms: Option<i64>| {
            let now = wall_now_ms() / 1000 * 1000;
            let mut p = Pipeline::new(DetectorConfig::default(), 4096).unwrap();
            p.assign_lanes(
                &[0],
                FrontierOptions {
                    idle_ms: 5_000,
                    max_ahead_ms,
                },
            );
            let mut out = Vec::new();
            for t in (0..1_500i64).rev() {
                let msgs: Vec<Payload> = (0..20u32)
                    .map(|s| {
                        let fast = if s == 5 && t < 200 { 3_600_000 } else { 0 };
                        let mut sample = ingest::Sample::new(
                            now - t * 1000 + fast,
                            format!("c{}", s / 2),
                            format!("svc{}", s % 2),
                            100,
                            1,
                        );
                        sample.interval_ms = 1000;
                        Payload::from_vec(sample.to_json_line().into_bytes())
                    })
                    .collect();
                let lanes = vec![0u32; msgs.len()];
                let rejected = p
                    .push_delivery(&Format::Json, &msgs, Some(&lanes), &mut out)
                    .unwrap();
                assert!(rejected.is_empty(), "{rejected:?}");
            }
            (p.stats(), out)
        };
        let absent = |alerts: &[AlertEvent]| -> Vec<(String, String)> {
            alerts
                .iter()
                .filter(|a| a.kind == detector::AlertKind::TelemetryAbsent)
                .map(|a| (a.cluster.clone(), a.service.clone()))
                .collect()
        };
        let (limited, alerts) = run(Some(60_000));
        assert_eq!(limited.too_late, 0, "{limited:?}");
        assert!(
            alerts
                .iter()
                .all(|a| a.cluster == "c2" && a.service == "svc1"),
            "{alerts:#?}"
        );
        assert_eq!(absent(&alerts), [("c2".to_owned(), "svc1".to_owned())]);
        // Without the limit, the detector's own clock follows the fleet (a quorum of series),
        // not the one producer an hour ahead, so the others are not reported either; the fast
        // series' samples wait for the fleet to reach them.
        let (unlimited, alerts) = run(None);
        assert_eq!(unlimited.too_late, 0, "{unlimited:?}");
        assert!(
            absent(&alerts)
                .iter()
                .all(|(c, s)| c == "c2" && s == "svc1"),
            "{:?}",
            absent(&alerts)
        );
    }

    #[test]
    fn a_checkpoint_whose_series_disagree_with_the_detector_is_refused() {
        let mut p = Pipeline::new(DetectorConfig::default(), 100).unwrap();
        let mut out = Vec::new();
        let path = Path::new(TRACES).join("2026-02-12-routing-config-removed");
        for line in ingest::trace::SampleLines::open(&path).unwrap().take(200) {
            p.push_message(&line.unwrap(), &mut out).unwrap();
        }
        p.flush(&mut out).unwrap();
        let good = p.checkpoint();
        assert!(good.series.len() > 1);
        let mut missing = good.clone();
        missing.series.pop();
        let mut twice = good.clone();
        twice.series[1] = twice.series[0].clone();
        let mut unknown = good;
        unknown.rejections.push(("no_such_reason".into(), 1));
        for (name, cp, want) in [
            ("a series key missing", missing, "series keys"),
            ("a series listed twice", twice, "listed twice"),
            ("an unknown reject reason", unknown, "unknown reject reason"),
        ] {
            let err = Pipeline::from_checkpoint(
                DetectorConfig::default(),
                default_incidents(&DetectorConfig::default()),
                cp,
                100,
            )
            .unwrap_err();
            assert!(format!("{err:#}").contains(want), "{name}: {err:#}");
        }
    }
    #[test]
    fn a_bad_change_event_in_a_trace_is_skipped_and_named_and_loses_nothing_else() {
        let src = Path::new(TRACES).join("2026-02-12-routing-config-removed");
        let dir = std::env::temp_dir().join(format!(
            "spikewatch-bad-change-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["samples.jsonl.gz", "labels.json"] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        let good = std::fs::read_to_string(src.join("changes.jsonl")).unwrap();
        let n = good.lines().count();
        assert!(n >= 2, "the trace has change events");
        // A change of a kind the contract does not know, between the second and third lines.
        let mut lines: Vec<&str> = good.lines().collect();
        let bogus =
            r#"{"ts":"2026-02-12T21:00:00Z","kind":"bogus","service":"x","clusters":["*"]}"#;
        lines.insert(2, bogus);
        std::fs::write(dir.join("changes.jsonl"), lines.join("\n") + "\n").unwrap();

        let json = |r: &ReplayResult| -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
            (
                r.events
                    .iter()
                    .map(|e| serde_json::to_value(e).unwrap())
                    .collect(),
                r.incidents
                    .iter()
                    .map(|i| serde_json::to_value(i).unwrap())
                    .collect(),
            )
        };
        let want = replay(&src, DetectorConfig::default(), 1024, |_, _| {}).unwrap();
        let got = replay(&dir, DetectorConfig::default(), 1024, |_, _| {}).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(want.rejected_changes.is_empty());
        assert_eq!(got.changes, n, "every good change event read");
        assert_eq!(got.rejected_changes.len(), 1, "{:?}", got.rejected_changes);
        let msg = &got.rejected_changes[0];
        assert!(
            msg.contains("changes.jsonl:3") && msg.contains("bogus"),
            "{msg}"
        );
        assert!(
            !want.incidents.is_empty(),
            "the trace has incidents with changes"
        );
        assert_eq!(json(&got), json(&want), "the same alerts and incidents");
    }
}
