//! The alerts topic (CONTRACT section 5): every alert transition the service publishes, as the
//! same JSON object the API and `spikewatch replay --format jsonl` give, one message per
//! transition, keyed by the alert's id so that an alert's firing and resolution land on one
//! partition, in order.
//!
//! A thread of its own reads the hub's tap ([`Hub::tap`]) and hands each event to librdkafka,
//! which batches and retries delivery; neither the pipeline nor the HTTP server waits on the
//! broker. Delivery is at least once: a transition published after the last checkpoint is
//! published again when a restarted service re-reads the messages behind it, and an alert
//! that joins a fleet incident is published again, still firing, with its `incident_id` set
//! (as on the API's event stream). Consumers keep the latest message per id.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use detector::AlertEvent;
use ingest::kafka::KafkaProducer;

use super::config::KafkaConfig;
use super::hub::Hub;

/// Transitions that may wait for the publisher before new ones are dropped (and counted).
const BACKLOG: usize = 100_000;
/// How long the publisher waits for a transition before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(200);
/// How long a stopping publisher waits for librdkafka to deliver what it holds.
const FLUSH: Duration = Duration::from_secs(5);

/// The alerts topic of `k`, or `None` when it is switched off (`alerts_topic = ""`).
pub fn topic_of(k: &KafkaConfig) -> Option<&str> {
    k.alerts_topic.as_deref().filter(|t| !t.is_empty())
}

/// Starts publishing every alert transition of `hub` to `topic` on the brokers of `k` (with
/// its librdkafka settings, security included). Runs until `stop` is set, then delivers what
/// it holds (up to a few seconds) and ends; join the handle to wait for that.
pub fn spawn(
    k: &KafkaConfig,
    topic: &str,
    hub: &Hub,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let producer = KafkaProducer::new(&k.brokers, &k.librdkafka)
        .with_context(|| format!("creating the producer for alerts_topic {topic:?}"))?;
    let events = hub
        .tap(BACKLOG)
        .context("the alerts topic's tap on the hub is taken already")?;
    let topic = topic.to_owned();
    let hub = hub.clone();
    std::thread::Builder::new()
        .name("alerts-topic".into())
        .spawn(move || {
            let mut unqueued = 0;
            // The counters go to the hub (for /metrics) when the queue runs dry and at least
            // every `POLL` in a long burst, not once per transition.
            let report = |unqueued: u64| {
                let (failed, _) = producer.failed();
                let published = (producer.delivered(), failed + unqueued + hub.tap_dropped());
                hub.update_counters(|c| c.alerts_published = Some(published));
                Instant::now()
            };
            let mut reported = report(0);
            loop {
                match events.recv_timeout(POLL) {
                    Ok(e) => {
                        if !publish(&producer, &topic, &e) {
                            unqueued += 1;
                        }
                        if reported.elapsed() < POLL {
                            continue;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => {}
                    // Stopping (and nothing left waiting), or the hub is gone.
                    Err(_) => {
                        if let Err(e) = producer.flush(FLUSH) {
                            eprintln!("spikewatch: alerts topic {topic}: {e}");
                        }
                        report(unqueued);
                        return;
                    }
                }
                reported = report(unqueued);
            }
        })
        .context("starting the alerts topic thread")
}

/// Queues one transition (librdkafka delivers it, retrying as configured). A transition that
/// cannot even be queued is reported on stderr: false.
fn publish(producer: &KafkaProducer, topic: &str, e: &AlertEvent) -> bool {
    let queued = serde_json::to_vec(e)
        .map_err(|err| err.to_string())
        .and_then(|body| {
            producer
                .send(topic, Some(e.id.as_bytes()), None, &body)
                .map_err(|err| err.to_string())
        });
    if let Err(err) = &queued {
        eprintln!("spikewatch: alerts topic {topic}: alert {}: {err}", e.id);
    }
    queued.is_ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use detector::DetectorConfig;
    use ingest::kafka::{KafkaSettings, KafkaSource, MockBroker, TopicSettings};
    use ingest::FormatKind;

    use super::*;
    use crate::pipeline::Pipeline;

    const TRACE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/incidents/2026-02-12-routing-config-removed"
    );

    /// Every alert transition of a trace, as the pipeline gives them.
    fn transitions() -> Vec<AlertEvent> {
        let mut p = Pipeline::new(DetectorConfig::default(), 8192).unwrap();
        let mut out = Vec::new();
        for line in ingest::trace::SampleLines::open(TRACE).unwrap() {
            p.push_message(&line.unwrap(), &mut out).unwrap();
        }
        p.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn every_transition_reaches_the_alerts_topic_as_its_json_keyed_by_alert_id() {
        let broker = MockBroker::new(1).unwrap();
        broker.create_topic("alerts", 3).unwrap();
        let k = KafkaConfig {
            brokers: broker.bootstrap_servers(),
            alerts_topic: Some("alerts".into()),
            ..KafkaConfig::default()
        };
        let events = transitions();
        let resolved = events.iter().filter(|e| e.resolved_at.is_some()).count();
        assert!(
            resolved > 0 && resolved < events.len(),
            "firing and resolved"
        );

        let hub = Hub::new(100_000);
        let done = Arc::new(AtomicBool::new(false));
        let publisher = spawn(&k, topic_of(&k).unwrap(), &hub, done.clone()).unwrap();
        assert!(hub.tap(10).is_none(), "one reader only");
        // As the pipeline publishes them: a tick's transitions at a time.
        for chunk in events.chunks(7) {
            hub.publish(chunk);
        }
        // Stopping delivers everything still held.
        done.store(true, Ordering::Relaxed);
        publisher.join().unwrap();
        let n = events.len() as u64;
        assert_eq!(hub.read().counters.alerts_published, Some((n, 0)));
        let (text, _) = crate::service::metrics::Metrics::new(10).render(&hub);
        for line in [
            format!("spikewatch_alerts_published_total{{outcome=\"delivered\"}} {n}"),
            "spikewatch_alerts_published_total{outcome=\"failed\"} 0".to_owned(),
        ] {
            assert!(text.contains(&line), "no `{line}` in /metrics:\n{text}");
        }

        let reader = KafkaSettings {
            brokers: k.brokers.clone(),
            group_id: "alerts-reader".into(),
            metrics_topics: vec![TopicSettings {
                topic: "alerts".into(),
                format: FormatKind::Json,
            }],
            changes_topic: None,
            dead_letter_topic: None,
            ..KafkaSettings::default()
        };
        let mut reader = KafkaSource::new(&reader).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < events.len() {
            assert!(Instant::now() < deadline, "{} of {} messages", got.len(), n);
            if let Some(d) = reader.poll(1000, Duration::from_millis(100)) {
                got.extend(d.metrics);
            }
        }
        reader.close(Duration::from_secs(5)).unwrap();
        assert_eq!(got.len(), events.len(), "each transition once");

        // Per alert, its messages are on one partition, in the order they were published, and
        // each is the line `spikewatch replay --format jsonl` prints for it.
        let mut want: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for e in &events {
            want.entry(&e.id)
                .or_default()
                .push(serde_json::to_string(e).unwrap());
        }
        let mut seen: BTreeMap<String, (i32, Vec<String>)> = BTreeMap::new();
        for m in &got {
            let id = String::from_utf8(m.key.clone().expect("keyed")).unwrap();
            let (part, lines) = seen.entry(id).or_insert((m.partition, Vec::new()));
            assert_eq!(*part, m.partition, "one alert, one partition");
            lines.push(String::from_utf8(m.payload.clone()).unwrap());
        }
        let seen: BTreeMap<&str, Vec<String>> = seen
            .iter()
            .map(|(k, (_, v))| (k.as_str(), v.clone()))
            .collect();
        assert_eq!(seen, want);
        let partitions: std::collections::BTreeSet<i32> = got.iter().map(|m| m.partition).collect();
        assert!(partitions.len() > 1, "alerts spread over the partitions");
    }

    #[test]
    fn an_empty_topic_name_switches_the_alerts_topic_off() {
        let on = KafkaConfig::default();
        assert_eq!(topic_of(&on), Some("spikewatch.alerts"));
        let off = KafkaConfig {
            alerts_topic: Some(String::new()),
            ..KafkaConfig::default()
        };
        assert_eq!(topic_of(&off), None);
    }
}
