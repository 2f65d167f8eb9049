//! The service's Kafka source: [`ingest::kafka::KafkaSource`] behind the [`Source`] seam.
//!
//! - Each poll becomes one [`Delivery::Messages`] with the metrics topic's [`Format`]; the
//!   change-events topic's messages are decoded here into [`ChangeEvent`]s.
//! - At least once: a delivery's offsets are stored only when the pipeline reports it
//!   [`processed`](Source::processed) (its samples have been through the detector), and after the
//!   dead letters written for it are confirmed by the broker.
//! - A sample the pipeline [`rejected`](Source::rejected), and a change event that does not parse
//!   (reason `invalid_change`), go to the dead-letter topic and are counted in
//!   `spikewatch_dead_letters_total{reason}`.
//! - [`is_up`](Source::is_up) is the consumer's broker connection (so `/readyz` is false while the
//!   broker is unreachable); consumer lag per partition goes to the hub, which `/metrics` exports
//!   as `spikewatch_kafka_consumer_lag_messages{topic,partition}`.
//!
//! - With checkpoints on (`[checkpoint]`, the default), offsets are committed only in
//!   [`checkpointed`](Source::checkpointed), i.e. once the worker's checkpoint file covering
//!   every processed delivery is durable; never by auto-commit, a revoke or shutdown. So the
//!   committed offsets never run ahead of the state a restart resumes from.
//!
//! Dropping the source (service shutdown) waits briefly for dead letters, commits what was
//! processed (without checkpoints; with them the worker's last checkpoint has committed) and
//! leaves the consumer group.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use ingest::format::{Format, FormatKind, Payload};
use ingest::frontier::FrontierOptions;
use ingest::kafka::{AckToken, KafkaMessage, KafkaSettings, KafkaSource, TopicSettings};
use ingest::trace::ChangeEvent;

use super::config::KafkaConfig;
use super::hub::Hub;
use super::metrics::Metrics;
use super::source::{Delivery, Lanes, Source};

/// Messages per delivery, at most (the detector takes a delivery as one batch).
const MAX_DELIVERY: usize = 8192;
/// How often consumer lag is copied to the hub.
const LAG_EVERY: Duration = Duration::from_secs(1);
/// How long shutdown waits for dead letters and the final commit.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Dead-letter reason of a change event that is not a valid CONTRACT section 2 event.
pub const INVALID_CHANGE: &str = "invalid_change";

/// The ingest driver's settings for the service's `[source.kafka]`.
pub fn settings(k: &KafkaConfig) -> anyhow::Result<KafkaSettings> {
    let format: FormatKind = k
        .format
        .parse()
        .map_err(|e: String| anyhow::anyhow!("source.kafka.format: {e}"))?;
    Ok(KafkaSettings {
        brokers: k.brokers.clone(),
        group_id: k.group_id.clone(),
        metrics_topics: vec![TopicSettings {
            topic: k.metrics_topic.clone(),
            format,
        }],
        changes_topic: k.changes_topic.clone().filter(|t| !t.is_empty()),
        dead_letter_topic: k.dead_letter_topic.clone().filter(|t| !t.is_empty()),
        prom_adapter: k.prom_adapter.clone(),
        librdkafka: k.librdkafka.clone(),
        commit_after_checkpoint: false,
        // Nothing in the service reads a message's headers (dead letters carry their own), and
        // asking librdkafka for them is a large share of the source's per-message cost.
        read_headers: false,
    })
}

/// The `[source.kafka]` settings of the per-partition event-time hold and the limit on how far
/// past the wall clock the watermark may run (checked at start to be finite and in range).
fn frontier_options(k: &KafkaConfig) -> FrontierOptions {
    #[allow(clippy::cast_possible_truncation)]
    let ms = |s: f64| (s * 1000.0).round() as i64;
    FrontierOptions {
        idle_ms: ms(k.partition_idle_s),
        max_ahead_ms: Some(ms(k.max_clock_ahead_s)),
    }
}

/// A delivery handed to the pipeline and not yet processed.
#[derive(Debug)]
struct InFlight {
    token: u64,
    ack: AckToken,
    /// The metrics messages, by their index in the delivery (for dead letters), their payloads
    /// moved out into `payloads`.
    messages: Vec<KafkaMessage>,
    /// The payloads, shared with the pipeline (a reference count each, no copy).
    payloads: Vec<Payload>,
}

/// The Kafka [`Source`] (see the module docs).
#[derive(Debug)]
pub struct KafkaServiceSource {
    /// `None` only while being dropped.
    inner: Option<KafkaSource>,
    format: Format,
    topic: String,
    brokers: String,
    group_id: String,
    dead_letters_on: bool,
    in_flight: VecDeque<InFlight>,
    next_token: u64,
    hub: Hub,
    metrics: Metrics,
    last_lag: Option<Instant>,
    /// Partition coverage as of the previous lag update, and the partial coverage last
    /// warned about (see `warn_partial`).
    coverage: Vec<(String, usize, usize)>,
    warned: Vec<(String, usize, usize)>,
    /// How partitions hold the event-time watermark for each other.
    frontier: FrontierOptions,
}

impl KafkaServiceSource {
    /// Creates the consumer group member and subscribes; connecting happens in the background.
    /// `commit_after_checkpoint`: commit only in [`checkpointed`](Source::checkpointed).
    pub fn new(
        cfg: &KafkaConfig,
        hub: Hub,
        metrics: Metrics,
        commit_after_checkpoint: bool,
    ) -> anyhow::Result<Self> {
        let settings = KafkaSettings {
            commit_after_checkpoint,
            ..settings(cfg)?
        };
        let inner = KafkaSource::new(&settings).context("starting the Kafka consumer")?;
        let format = inner
            .format_of(&cfg.metrics_topic)
            .cloned()
            .context("the metrics topic has no format")?;
        Ok(Self {
            inner: Some(inner),
            format,
            topic: cfg.metrics_topic.clone(),
            brokers: cfg.brokers.clone(),
            group_id: settings.group_id.clone(),
            dead_letters_on: settings.dead_letter_topic.is_some(),
            in_flight: VecDeque::new(),
            next_token: 0,
            hub,
            metrics,
            last_lag: None,
            coverage: Vec::new(),
            warned: Vec::new(),
            frontier: frontier_options(cfg),
        })
    }

    fn inner(&mut self) -> anyhow::Result<&mut KafkaSource> {
        self.inner.as_mut().context("the Kafka source is closed")
    }

    fn dead_letter(
        &mut self,
        msg: &KafkaMessage,
        reason: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        let on = self.dead_letters_on;
        self.inner()?
            .dead_letter(msg, reason, detail)
            .with_context(|| {
                format!(
                    "dead-lettering {}/{} offset {}",
                    msg.topic, msg.partition, msg.offset
                )
            })?;
        if on {
            self.metrics.dead_letters.with_label_values(&[reason]).inc();
        }
        Ok(())
    }

    fn publish_lag(&mut self) {
        if self.last_lag.is_some_and(|t| t.elapsed() < LAG_EVERY) {
            return;
        }
        self.last_lag = Some(Instant::now());
        let Some(inner) = &self.inner else {
            return;
        };
        let lag: Vec<(String, i32, i64)> = inner
            .lag()
            .into_iter()
            .map(|l| (l.topic, l.partition, l.lag))
            .collect();
        let coverage: Vec<(String, usize, usize)> = inner
            .coverage()
            .into_iter()
            .map(|c| (c.topic, c.partitions, c.assigned))
            .collect();
        self.warn_partial(&coverage);
        self.hub.update_counters(|c| {
            c.kafka_lag = lag;
            c.kafka_partitions.clone_from(&coverage);
        });
        self.coverage = coverage;
    }

    /// Says so, once, when this member holds only some of a topic's partitions for two lag
    /// updates running (a rebalance passes through partial assignments; a second member of
    /// the group keeps one).
    fn warn_partial(&mut self, now: &[(String, usize, usize)]) {
        // (None at all is how a member starts, until the group assigns it its share.)
        let partial: Vec<_> = now
            .iter()
            .filter(|(_, n, a)| 0 < *a && a < n)
            .cloned()
            .collect();
        if partial.is_empty() {
            self.warned.clear();
            return;
        }
        if now != self.coverage.as_slice() || partial == self.warned {
            return;
        }
        for (topic, n, a) in &partial {
            eprintln!(
                "spikewatch: warning: this instance holds {a} of the {n} partitions of `{topic}`; \
                 another member of consumer group `{}` has the rest, so neither sees the whole \
                 fleet and checkpoints cover only part of it. Run one spikewatch per group_id.",
                self.group_id
            );
        }
        self.warned = partial;
    }
}

impl Source for KafkaServiceSource {
    fn describe(&self) -> String {
        format!(
            "kafka: {} ({}) at {}",
            self.topic,
            self.format.name(),
            self.brokers
        )
    }

    fn next(&mut self, max_wait: Duration) -> anyhow::Result<Option<Delivery>> {
        self.publish_lag();
        let Some(d) = self.inner()?.poll(MAX_DELIVERY, max_wait) else {
            return Ok(None);
        };
        let mut changes = Vec::with_capacity(d.changes.len());
        for m in &d.changes {
            match serde_json::from_slice::<ChangeEvent>(&m.payload) {
                Ok(c) => changes.push(c),
                Err(e) => self.dead_letter(m, INVALID_CHANGE, &e.to_string())?,
            }
        }
        self.next_token += 1;
        let token = self.next_token;
        let mut messages = d.metrics;
        // Each payload's allocation is taken over as it is, then shared: the pipeline decodes
        // it (an Arrow IPC message in place) while it stays here for a dead letter.
        let payloads: Vec<Payload> = messages
            .iter_mut()
            .map(|m| Payload::from_vec(std::mem::take(&mut m.payload)))
            .collect();
        let samples = payloads.clone();
        // One metrics topic: its partition numbers are the lanes.
        let of_sample = messages
            .iter()
            .map(|m| u32::try_from(m.partition).unwrap_or(0))
            .collect();
        let assigned = self
            .inner()?
            .assignment()
            .into_iter()
            .filter(|(t, _)| *t == self.topic)
            .filter_map(|(_, p)| u32::try_from(p).ok())
            .collect();
        let lanes = Lanes {
            of_sample,
            assigned,
            options: self.frontier,
        };
        self.in_flight.push_back(InFlight {
            token,
            ack: d.token,
            messages,
            payloads,
        });
        Ok(Some(Delivery::Messages {
            samples,
            changes,
            token,
            format: self.format.clone(),
            lanes: Some(lanes),
        }))
    }

    fn processed(&mut self, token: u64) -> anyhow::Result<()> {
        // Deliveries are processed in order; anything older than `token` is done as well.
        let mut ack: Option<AckToken> = None;
        while self.in_flight.front().is_some_and(|f| f.token <= token) {
            if let Some(f) = self.in_flight.pop_front() {
                match &mut ack {
                    Some(a) => a.merge(f.ack),
                    None => ack = Some(f.ack),
                }
            }
        }
        if let Some(a) = ack {
            self.inner()?.ack(a);
        }
        Ok(())
    }

    fn rejected(
        &mut self,
        token: u64,
        index: usize,
        reason: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        // The message with its payload back (copied: dead letters are the rare case).
        let msg = self
            .in_flight
            .iter()
            .find(|f| f.token == token)
            .and_then(|f| Some((f.messages.get(index)?, f.payloads.get(index)?)))
            .map(|(m, payload)| KafkaMessage {
                payload: payload.to_vec(),
                ..m.clone()
            });
        match msg {
            Some(m) => self.dead_letter(&m, reason, detail),
            // Not one of ours (already acknowledged): nothing to send.
            None => Ok(()),
        }
    }

    fn checkpointed(&mut self) -> anyhow::Result<()> {
        self.inner()?
            .commit()
            .context("committing offsets after a checkpoint")
    }

    fn is_up(&self) -> bool {
        self.inner.as_ref().is_some_and(KafkaSource::is_connected)
    }
}

impl Drop for KafkaServiceSource {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            if let Err(e) = inner.close(CLOSE_TIMEOUT) {
                eprintln!("spikewatch: closing the Kafka consumer: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The service's Kafka path end to end in one process, on librdkafka's mock brokers: a
    //! trace produced with `spikewatch produce`'s code, consumed by the real worker thread.
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use detector::{AlertEvent, DetectorConfig};
    use ingest::kafka::{KafkaProducer, MockBroker, HEADER_DETAIL, HEADER_OFFSET, HEADER_REASON};

    use super::*;
    use crate::pipeline::Pipeline;
    use crate::produce::{produce, KafkaSink, Pace, ProduceOptions, WireFormat};
    use crate::service::worker::{self, Worker};

    const TRACE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/incidents/2026-02-12-routing-config-removed"
    );

    /// What the API compares: the latest transition of every alert id.
    type Seen = BTreeMap<String, (String, String, String, String, i64, i64)>;

    fn key(e: &AlertEvent) -> (String, (String, String, String, String, i64, i64)) {
        (
            e.id.clone(),
            (
                e.kind.as_str().to_owned(),
                e.state.as_str().to_owned(),
                e.cluster.clone(),
                e.service.clone(),
                e.onset,
                e.detected_at,
            ),
        )
    }

    /// The pipeline fed the trace's lines directly, as a live source sees them: flushed, not
    /// finished (a stream never ends, so its last ticks stay open).
    fn direct(trace: &str) -> (Seen, u64) {
        let mut p = Pipeline::new(DetectorConfig::default(), 8192).unwrap();
        let mut out = Vec::new();
        for line in ingest::trace::SampleLines::open(trace).unwrap() {
            p.push_message(&line.unwrap(), &mut out).unwrap();
        }
        p.flush(&mut out).unwrap();
        (out.iter().map(key).collect(), p.stats().samples)
    }

    fn config(brokers: &str, group: &str, format: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.to_owned(),
            group_id: group.to_owned(),
            metrics_topic: "metrics".into(),
            changes_topic: Some("changes".into()),
            dead_letter_topic: Some("dlq".into()),
            format: format.into(),
            librdkafka: [("session.timeout.ms", "6000")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ..KafkaConfig::default()
        }
    }

    fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    type Serving = (
        Hub,
        Metrics,
        Arc<AtomicBool>,
        std::thread::JoinHandle<anyhow::Result<()>>,
    );

    /// The service's source and worker on `cfg`, once every sample is in and the API serves
    /// exactly `want`; still running (set the flag, then join).
    fn serve_until_replayed(cfg: &KafkaConfig, want: &Seen, want_samples: u64) -> Serving {
        let hub = Hub::new(100_000);
        let metrics = Metrics::new(100);
        let source = KafkaServiceSource::new(cfg, hub.clone(), metrics.clone(), false).unwrap();
        let w = Worker::new(DetectorConfig::default(), hub.clone(), metrics.clone()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = worker::spawn(w, Box::new(source), stop.clone()).unwrap();
        wait("every sample", 60, || {
            hub.read().counters.samples >= want_samples
        });
        wait("the same alerts as the direct replay", 10, || {
            let got: Seen = hub.read().alerts().iter().map(|a| key(&a.event)).collect();
            got == *want
        });
        (hub, metrics, stop, handle)
    }

    #[test]
    fn kafka_source_gives_the_alerts_of_a_direct_replay_and_dead_letters_the_poison() {
        service_matches_replay(WireFormat::Json, "json", "malformed_json");
    }

    /// The same through Arrow IPC messages, which the pipeline reads in place from the buffers
    /// the source keeps for dead letters.
    #[test]
    fn kafka_source_of_arrow_ipc_gives_the_alerts_of_a_direct_replay() {
        service_matches_replay(WireFormat::Arrow, "arrow_ipc", "malformed_arrow");
    }

    #[test]
    fn the_prom_adapter_mapping_comes_from_the_config_file() {
        let text = "[source.kafka]\nformat = \"prom_adapter\"\nmetrics_topic = \"m\"\n\
                    [source.kafka.prom_adapter]\n\
                    errors = ['http_requests_total{code=~\"5..|403\"}']\n\
                    cluster_labels = [\"k8s_cluster\"]\n";
        let cfg = crate::service::config::ServiceConfig::from_toml(text, std::path::Path::new("t"))
            .unwrap();
        let k = cfg.source.kafka.unwrap();
        let formats = settings(&k).unwrap().formats().unwrap();
        let Some(Format::PromAdapter(mapping)) = formats.get("m") else {
            panic!("no prom_adapter format for the metrics topic: {formats:?}");
        };
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        for (code, want) in [
            ("403", vec!["requests", "errors"]),
            ("503", vec!["requests", "errors"]),
            ("200", vec!["requests"]),
        ] {
            let mut got = mapping.fields_for(
                "http_requests_total",
                &labels(&[("k8s_cluster", "c"), ("service", "s"), ("code", code)]),
            );
            got.sort_unstable();
            let mut want = want;
            want.sort_unstable();
            assert_eq!(got, want, "code {code}");
        }
    }

    /// A backlog on several partitions, read from the start: librdkafka hands over each
    /// partition's messages in bursts covering many minutes of event time, far more than the
    /// detector's allowed lateness. Holding the watermark for the partition furthest behind,
    /// the service must judge every sample and give exactly the alerts of a direct replay in
    /// event-time order (without the hold most samples were too late, and series absent).
    #[test]
    fn a_backlog_on_several_partitions_gives_the_alerts_of_a_direct_replay() {
        for (format, name) in [(WireFormat::Json, "json"), (WireFormat::Arrow, "arrow_ipc")] {
            let broker = MockBroker::new(1).unwrap();
            broker.create_topic("metrics", 8).unwrap();
            let brokers = broker.bootstrap_servers();
            let opts = ProduceOptions {
                trace: TRACE.into(),
                brokers: brokers.clone(),
                topic: "metrics".into(),
                changes_topic: None,
                pace: Pace::Max,
                format,
                repeat: false,
                arrow_rows: 256,
                librdkafka: BTreeMap::new(),
            };
            let mut sink = KafkaSink::new(&brokers, &BTreeMap::new()).unwrap();
            produce(&opts, &mut sink, &AtomicBool::new(false), &mut |_| {}).unwrap();
            sink.finish(Duration::from_secs(30)).unwrap();
            let (want, want_samples) = direct(TRACE);

            let cfg = KafkaConfig {
                changes_topic: None,
                dead_letter_topic: None,
                ..config(&brokers, "backlog", name)
            };
            let (hub, metrics, stop, handle) = serve_until_replayed(&cfg, &want, want_samples);
            stop.store(true, Ordering::Relaxed);
            handle.join().unwrap().unwrap();
            let (text, _) = metrics.render(&hub);
            for line in [
                "spikewatch_samples_skipped_total{reason=\"too_late\"} 0",
                "spikewatch_samples_skipped_total{reason=\"duplicate\"} 0",
            ] {
                assert!(
                    text.contains(line),
                    "{name}: no `{line}` in /metrics:\n{text}"
                );
            }
            drop(broker);
        }
    }

    /// The trace through the service's source and worker in `format` (its config name), with
    /// a poison sample (rejected for `poison_reason`) and an invalid change event first.
    fn service_matches_replay(format: WireFormat, format_name: &str, poison_reason: &str) {
        let broker = MockBroker::new(1).unwrap();
        // One partition: the trace's event-time order survives as it is (see docs/kafka.md).
        for t in ["metrics", "changes", "dlq"] {
            broker.create_topic(t, 1).unwrap();
        }
        let brokers = broker.bootstrap_servers();
        let poison = KafkaProducer::new(&brokers, &BTreeMap::new()).unwrap();
        let poison_payload = b"{\"ts\":oops}";
        poison
            .send("metrics", Some(b"x/y"), None, poison_payload)
            .unwrap();
        poison
            .send("changes", None, None, b"{\"kind\":\"reboot\"}")
            .unwrap();
        poison.flush(Duration::from_secs(10)).unwrap();
        let opts = ProduceOptions {
            trace: TRACE.into(),
            brokers: brokers.clone(),
            topic: "metrics".into(),
            changes_topic: Some("changes".into()),
            pace: Pace::Max,
            format,
            repeat: false,
            arrow_rows: 1024,
            librdkafka: BTreeMap::new(),
        };
        let mut sink = KafkaSink::new(&brokers, &BTreeMap::new()).unwrap();
        let sent = produce(&opts, &mut sink, &AtomicBool::new(false), &mut |_| {}).unwrap();
        sink.finish(Duration::from_secs(30)).unwrap();
        let (want, want_samples) = direct(TRACE);
        assert_eq!(sent.samples, want_samples);
        assert!(!want.is_empty(), "the trace has alerts");

        let cfg = config(&brokers, "svc", format_name);
        let (hub, metrics, stop, handle) = serve_until_replayed(&cfg, &want, want_samples);
        wait("lag and the broker connection", 10, || {
            hub.source_up() && !hub.read().counters.kafka_lag.is_empty()
        });
        let (text, _) = metrics.render(&hub);
        for line in [
            format!("spikewatch_dead_letters_total{{reason=\"{poison_reason}\"}} 1"),
            "spikewatch_dead_letters_total{reason=\"invalid_change\"} 1".to_owned(),
        ] {
            assert!(
                text.contains(line.as_str()),
                "no `{line}` in /metrics:\n{text}"
            );
        }
        assert!(
            text.contains(
                "spikewatch_kafka_consumer_lag_messages{partition=\"0\",topic=\"metrics\"}"
            ),
            "no lag in /metrics:\n{text}"
        );
        // The only member of its group holds every partition of the topic.
        for line in [
            "spikewatch_kafka_topic_partitions{topic=\"metrics\"} 1",
            "spikewatch_kafka_assigned_partitions{topic=\"metrics\"} 1",
        ] {
            assert!(text.contains(line), "no `{line}` in /metrics:\n{text}");
        }
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();

        // The dead letters carry reason, detail and the source offset (the poison was first).
        let reader = KafkaSettings {
            metrics_topics: vec![TopicSettings {
                topic: "dlq".into(),
                format: FormatKind::Json,
            }],
            changes_topic: None,
            dead_letter_topic: None,
            read_headers: true,
            ..settings(&config(&brokers, "dlq-reader", "json")).unwrap()
        };
        let mut reader = KafkaSource::new(&reader).unwrap();
        let mut letters = Vec::new();
        wait("two dead letters", 20, || {
            if let Some(d) = reader.poll(10, Duration::from_millis(100)) {
                letters.extend(d.metrics);
            }
            letters.len() >= 2
        });
        let mut reasons: Vec<(String, String, bool)> = letters
            .iter()
            .map(|m| {
                let h =
                    |n: &str| String::from_utf8_lossy(m.header(n).unwrap_or_default()).into_owned();
                (
                    h(HEADER_REASON),
                    h(HEADER_OFFSET),
                    !h(HEADER_DETAIL).is_empty(),
                )
            })
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            vec![
                ("invalid_change".into(), "0".into(), true),
                (poison_reason.into(), "0".into(), true)
            ]
        );
        // The poison sample's dead letter carries its key and payload as they were sent.
        let letter = letters
            .iter()
            .find(|m| m.header(HEADER_REASON) == Some(poison_reason.as_bytes()))
            .unwrap();
        assert_eq!(letter.payload, poison_payload);
        assert_eq!(letter.key.as_deref(), Some(b"x/y".as_slice()));
        reader.close(Duration::from_secs(5)).unwrap();

        // Everything processed was committed when the service stopped: a restart of the same
        // group reads nothing again.
        let hub2 = Hub::new(1000);
        let source = KafkaServiceSource::new(&cfg, hub2.clone(), metrics.clone(), false).unwrap();
        let w = Worker::new(DetectorConfig::default(), hub2.clone(), metrics.clone()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = worker::spawn(w, Box::new(source), stop.clone()).unwrap();
        wait("the restarted source to connect", 10, || hub2.source_up());
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        assert_eq!(
            hub2.read().counters.samples,
            0,
            "re-delivered after a clean stop"
        );
        assert!(hub2.read().alerts().is_empty());
        drop(broker);
    }
}
