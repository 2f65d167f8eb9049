//! Prometheus `/metrics` (names in docs/metrics.md). Counters and histograms of the pipeline live
//! in a `prometheus` registry and are bumped where things happen; the gauges that describe the
//! current state (alerts firing, per-series ratios, incidents, event-time lag) are built from the
//! hub at scrape time, so a series or alert that went away leaves no stale gauge behind.

use std::collections::BTreeMap;

use detector::{AlertEvent, AlertState};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

use super::hub::{wall_ms, Hub};

/// The families bumped by the pipeline, the pusher and the Kafka source.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub samples: IntCounter,
    pub rejected: IntCounterVec,
    /// Accepted samples the detector did not judge, by reason.
    pub skipped: IntCounterVec,
    /// Ticks the detector closed early to stay within `max_held_samples`.
    pub forced_closes: IntCounter,
    pub batches: IntCounter,
    pub batch_seconds: Histogram,
    pub detection_delay: HistogramVec,
    pub transitions: IntCounterVec,
    pub alertmanager_sends: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub incidents_opened: IntCounter,
    pub checkpoints: IntCounterVec,
    series_limit: usize,
}

/// The `reason` labels of `spikewatch_samples_skipped_total`.
pub const SKIP_REASONS: [&str; 2] = ["duplicate", "too_late"];

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::with_opts(Opts::new(name, help)).expect("valid metric name")
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric name")
}

impl Metrics {
    #[allow(clippy::expect_used)]
    pub fn new(series_limit: usize) -> Self {
        let registry = Registry::new();
        let m = Self {
            samples: counter(
                "spikewatch_samples_total",
                "Samples accepted by the decoder.",
            ),
            rejected: counter_vec(
                "spikewatch_samples_rejected_total",
                "Messages rejected, by reason.",
                &["reason"],
            ),
            skipped: counter_vec(
                "spikewatch_samples_skipped_total",
                "Accepted samples the detector did not judge: `duplicate` (a (series, ts) \
                 already seen) or `too_late` (older than the watermark allows).",
                &["reason"],
            ),
            forced_closes: counter(
                "spikewatch_detector_forced_tick_closes_total",
                "Ticks closed before the watermark allowed because the samples held for Kafka \
                 partitions read behind passed `[detector] max_held_samples`.",
            ),
            batches: counter(
                "spikewatch_batches_total",
                "Arrow batches run through the detector.",
            ),
            batch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "spikewatch_batch_processing_seconds",
                    "Wall time to run one batch through the detector.",
                )
                .buckets(vec![
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0,
                ]),
            )
            .expect("valid metric name"),
            detection_delay: HistogramVec::new(
                HistogramOpts::new(
                    "spikewatch_detection_delay_seconds",
                    "Event-time delay from an alert's onset to its detection.",
                )
                .buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                ]),
                &["kind"],
            )
            .expect("valid metric name"),
            transitions: counter_vec(
                "spikewatch_alert_transitions_total",
                "Alert events emitted, by kind and state.",
                &["kind", "state"],
            ),
            alertmanager_sends: counter_vec(
                "spikewatch_alertmanager_sends_total",
                "POSTs to Alertmanager, by Alertmanager (its configured URL) and outcome.",
                &["alertmanager", "outcome"],
            ),
            dead_letters: counter_vec(
                "spikewatch_dead_letters_total",
                "Messages written to the dead-letter topic, by reason.",
                &["reason"],
            ),
            incidents_opened: counter("spikewatch_incidents_total", "Fleet incidents opened."),
            checkpoints: counter_vec(
                "spikewatch_checkpoints_total",
                "Checkpoints of the pipeline state written, by outcome.",
                &["outcome"],
            ),
            registry,
            series_limit,
        };
        let r = &m.registry;
        for c in [
            Box::new(m.samples.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.rejected.clone()),
            Box::new(m.skipped.clone()),
            Box::new(m.forced_closes.clone()),
            Box::new(m.batches.clone()),
            Box::new(m.batch_seconds.clone()),
            Box::new(m.detection_delay.clone()),
            Box::new(m.transitions.clone()),
            Box::new(m.alertmanager_sends.clone()),
            Box::new(m.dead_letters.clone()),
            Box::new(m.incidents_opened.clone()),
            Box::new(m.checkpoints.clone()),
        ] {
            r.register(c).expect("metric names are unique");
        }
        // Reasons and outcomes exist from the start, so rates read 0 rather than nothing.
        for reason in ingest::json::RejectReason::ALL {
            m.rejected.with_label_values(&[reason.as_str()]);
        }
        for reason in SKIP_REASONS {
            m.skipped.with_label_values(&[reason]);
        }
        // (The Alertmanager pusher does the same for each Alertmanager it is given.)
        for outcome in ["ok", "error"] {
            m.checkpoints.with_label_values(&[outcome]);
        }
        // Likewise every kind: a burst of alerts in the first scrape would otherwise never show
        // as an increase.
        for kind in detector::AlertKind::ALL {
            m.detection_delay.with_label_values(&[kind.as_str()]);
            for state in [detector::AlertState::Firing, detector::AlertState::Resolved] {
                m.transitions
                    .with_label_values(&[kind.as_str(), state.as_str()]);
            }
        }
        m
    }

    /// Counts alert transitions and, for firing ones, their detection delay.
    pub fn observe_events(&self, events: &[AlertEvent]) {
        for e in events {
            self.transitions
                .with_label_values(&[e.kind.as_str(), e.state.as_str()])
                .inc();
            if e.state == AlertState::Firing {
                #[allow(clippy::cast_precision_loss)]
                let delay = (e.detected_at - e.onset).max(0) as f64 / 1000.0;
                self.detection_delay
                    .with_label_values(&[e.kind.as_str()])
                    .observe(delay);
            }
        }
    }

    /// The exposition text and its content type.
    pub fn render(&self, hub: &Hub) -> (String, String) {
        let mut families = self.registry.gather();
        families.extend(self.state_families(hub));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let encoder = TextEncoder::new();
        let mut buf = Vec::new();
        // Encoding our own well-formed families into memory cannot fail.
        let _ = encoder.encode(&families, &mut buf);
        (
            String::from_utf8_lossy(&buf).into_owned(),
            encoder.format_type().to_string(),
        )
    }

    fn state_families(&self, hub: &Hub) -> Vec<MetricFamily> {
        let st = hub.read();
        let mut out = Vec::new();

        out.push(gauge_family(
            "spikewatch_build_info",
            "Build information; always 1.",
            vec![(labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0)],
        ));

        // Firing alerts, one gauge per alert grouped by its low-cardinality labels.
        let mut active: BTreeMap<[String; 4], f64> = BTreeMap::new();
        for e in st.firing() {
            let key = [
                e.kind.as_str().to_string(),
                e.cluster.clone(),
                e.service.clone(),
                e.severity.as_str().to_string(),
            ];
            *active.entry(key).or_default() += 1.0;
        }
        out.push(gauge_family(
            "spikewatch_alerts_active",
            "Alerts firing now, by kind, cluster, service and severity.",
            active
                .into_iter()
                .map(|(k, v)| {
                    (
                        labels(&[
                            ("kind", &k[0]),
                            ("cluster", &k[1]),
                            ("service", &k[2]),
                            ("severity", &k[3]),
                        ]),
                        v,
                    )
                })
                .collect(),
        ));

        // Per-series families, capped.
        let series = st.series.clone();
        let limit = self.series_limit.min(series.len());
        type Pick = fn(&detector::SeriesView) -> f64;
        let gauges: [(&str, &str, Pick); 8] = [
            (
                "spikewatch_series_error_ratio",
                "Errors per request of the series, recent.",
                |v| v.error_ratio,
            ),
            (
                "spikewatch_series_error_ratio_baseline",
                "The detector's baseline error ratio of the series.",
                |v| v.error_baseline,
            ),
            (
                "spikewatch_series_retry_ratio",
                "Retries per request of the series, recent.",
                |v| v.retry_ratio,
            ),
            (
                "spikewatch_series_retry_ratio_baseline",
                "The detector's baseline retries per request of the series.",
                |v| v.retry_baseline,
            ),
            (
                "spikewatch_series_db_pool_utilisation_ratio",
                "DB connections in use over pool size at the last sample.",
                |v| v.pool_utilisation,
            ),
            (
                "spikewatch_series_db_pool_pending",
                "Callers waiting for a DB connection at the last sample.",
                |v| v.pool_pending,
            ),
            (
                "spikewatch_series_latency_p99_seconds",
                "p99 latency of the series' last sample.",
                |v| v.latency_p99_ms / 1000.0,
            ),
            (
                "spikewatch_series_success_per_second",
                "Successful requests per second of the series.",
                |v| v.success_rate,
            ),
        ];
        let key_labels = |v: &detector::SeriesView| {
            labels(&[("cluster", &v.key.cluster), ("service", &v.key.service)])
        };
        for (name, help, pick) in gauges {
            out.push(gauge_family(
                name,
                help,
                series[..limit]
                    .iter()
                    .filter(|v| v.last_sample_ms.is_some())
                    .filter_map(|v| {
                        let x = pick(v);
                        x.is_finite().then(|| (key_labels(v), x))
                    })
                    .collect(),
            ));
        }
        type PickN = fn(&detector::SeriesView) -> u64;
        let counters: [(&str, &str, PickN); 3] = [
            (
                "spikewatch_series_requests_total",
                "Requests counted from the series' samples.",
                |v| v.totals.requests,
            ),
            (
                "spikewatch_series_errors_total",
                "Errors counted from the series' samples.",
                |v| v.totals.errors,
            ),
            (
                "spikewatch_series_retries_total",
                "Retries counted from the series' samples.",
                |v| v.totals.retries,
            ),
        ];
        for (name, help, pick) in counters {
            #[allow(clippy::cast_precision_loss)]
            out.push(counter_family(
                name,
                help,
                series[..limit]
                    .iter()
                    .map(|v| (key_labels(v), pick(v) as f64))
                    .collect(),
            ));
        }
        #[allow(clippy::cast_precision_loss)]
        {
            out.push(gauge_family(
                "spikewatch_series_dropped",
                "Series left out of the per-series families by metrics.series_limit now (0 when none).",
                vec![(Vec::new(), (series.len() - limit) as f64)],
            ));
            let (req, err) = series.iter().fold((0u64, 0u64), |(r, e), v| {
                (r + v.totals.requests, e + v.totals.errors)
            });
            out.push(counter_family(
                "spikewatch_fleet_requests_total",
                "Requests over every series.",
                vec![(Vec::new(), req as f64)],
            ));
            out.push(counter_family(
                "spikewatch_fleet_errors_total",
                "Errors over every series.",
                vec![(Vec::new(), err as f64)],
            ));
            out.push(gauge_family(
                "spikewatch_tracked_series",
                "Series the detector holds state for.",
                vec![(Vec::new(), series.len() as f64)],
            ));
        }

        // Incidents.
        let open: Vec<&serde_json::Value> = st
            .incidents
            .iter()
            .filter(|i| i.get("state").and_then(|s| s.as_str()) == Some("open"))
            .collect();
        let largest = open
            .iter()
            .map(|i| {
                let share = i
                    .get("affected_traffic_ratio")
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(0.0);
                let clusters = i
                    .get("clusters")
                    .and_then(|c| c.as_array())
                    .map_or(0, Vec::len);
                (share, clusters)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or((0.0, 0));
        #[allow(clippy::cast_precision_loss)]
        {
            out.push(gauge_family(
                "spikewatch_incidents_open",
                "Fleet incidents currently open.",
                vec![(Vec::new(), open.len() as f64)],
            ));
            out.push(gauge_family(
                "spikewatch_incident_affected_traffic_ratio",
                "Share of fleet traffic in the largest open incident (0 when none).",
                vec![(Vec::new(), largest.0)],
            ));
            out.push(gauge_family(
                "spikewatch_incident_affected_clusters",
                "Clusters in the largest open incident.",
                vec![(Vec::new(), largest.1 as f64)],
            ));
        }

        // Event time and the source.
        let c = &st.counters;
        #[allow(clippy::cast_precision_loss)]
        out.push(gauge_family(
            "spikewatch_detector_open_samples",
            "Samples in ticks the detector has not closed yet (within the allowed lateness, or \
             held for Kafka partitions read behind the others).",
            vec![(Vec::new(), c.open_samples as f64)],
        ));
        #[allow(clippy::cast_precision_loss)]
        if let Some(w) = c.watermark_ms {
            out.push(gauge_family(
                "spikewatch_event_time_watermark_seconds",
                "Newest event time seen, Unix seconds.",
                vec![(Vec::new(), w as f64 / 1000.0)],
            ));
            out.push(gauge_family(
                "spikewatch_event_time_lag_seconds",
                "Wall clock minus the newest event time seen.",
                vec![(Vec::new(), (wall_ms() - w) as f64 / 1000.0)],
            ));
        }
        #[allow(clippy::cast_precision_loss)]
        if let Some(at) = c.checkpoint_ms {
            out.push(gauge_family(
                "spikewatch_checkpoint_age_seconds",
                "Wall time since the last checkpoint was written (or resumed from).",
                vec![(Vec::new(), (wall_ms() - at).max(0) as f64 / 1000.0)],
            ));
        }
        if let Some((delivered, failed)) = c.alerts_published {
            #[allow(clippy::cast_precision_loss)]
            out.push(counter_family(
                "spikewatch_alerts_published_total",
                "Alert transitions written to the alerts topic: delivered, or failed (not \
                 delivered after librdkafka's retries, or dropped for want of room).",
                vec![
                    (labels(&[("outcome", "delivered")]), delivered as f64),
                    (labels(&[("outcome", "failed")]), failed as f64),
                ],
            ));
        }
        out.push(gauge_family(
            "spikewatch_source_up",
            "1 while the source is connected and delivering.",
            vec![(Vec::new(), if hub.source_up() { 1.0 } else { 0.0 })],
        ));
        out.push(gauge_family_typed(
            "spikewatch_kafka_consumer_lag_messages",
            "Messages behind the partition's high watermark.",
            c.kafka_lag
                .iter()
                .map(|(t, p, lag)| {
                    #[allow(clippy::cast_precision_loss)]
                    (
                        labels(&[("topic", t), ("partition", &p.to_string())]),
                        *lag as f64,
                    )
                })
                .collect(),
            MetricType::GAUGE,
        ));
        #[allow(clippy::cast_precision_loss)]
        for (name, help, pick) in [
            (
                "spikewatch_kafka_topic_partitions",
                "Partitions of each topic consumed.",
                (|(_, n, _)| *n) as fn(&(String, usize, usize)) -> usize,
            ),
            (
                "spikewatch_kafka_assigned_partitions",
                "Partitions of each topic assigned to this instance: fewer than the topic has \
                 means another member of the consumer group holds the rest.",
                |(_, _, a)| *a,
            ),
        ] {
            out.push(gauge_family(
                name,
                help,
                c.kafka_partitions
                    .iter()
                    .map(|p| (labels(&[("topic", &p.0)]), pick(p) as f64))
                    .collect(),
            ));
        }
        out.retain(|f| !f.get_metric().is_empty());
        out
    }
}

/// Label pairs, sorted by name as the registry's own families are.
fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    let mut pairs = pairs.to_vec();
    pairs.sort_by_key(|(k, _)| *k);
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

fn gauge_family(name: &str, help: &str, points: Vec<(Vec<LabelPair>, f64)>) -> MetricFamily {
    gauge_family_typed(name, help, points, MetricType::GAUGE)
}

fn counter_family(name: &str, help: &str, points: Vec<(Vec<LabelPair>, f64)>) -> MetricFamily {
    gauge_family_typed(name, help, points, MetricType::COUNTER)
}

fn gauge_family_typed(
    name: &str,
    help: &str,
    points: Vec<(Vec<LabelPair>, f64)>,
    ty: MetricType,
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(ty);
    for (l, v) in points {
        let mut m = Metric::from_label(l);
        if ty == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(v);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
        }
        f.mut_metric().push(m);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use detector::{SeriesKey, SeriesTotals, SeriesView};

    fn series(n: usize) -> Vec<SeriesView> {
        (0..n)
            .map(|i| SeriesView {
                id: 0,
                key: SeriesKey {
                    cluster: format!("c{i}"),
                    service: "checkout".into(),
                    region: None,
                },
                last_sample_ms: Some(1_700_000_000_000),
                error_ratio: 0.01,
                error_baseline: 0.01,
                retry_ratio: 0.0,
                retry_baseline: 0.0,
                success_rate: 100.0,
                success_baseline: 100.0,
                latency_p99_ms: 100.0,
                latency_baseline_ms: 100.0,
                pool_utilisation: 0.1,
                pool_baseline: 0.1,
                pool_pending: 0.0,
                totals: SeriesTotals::default(),
                firing: Vec::new(),
            })
            .collect()
    }

    /// The exposition lines of one family (its `# TYPE` line and samples), without the help.
    fn family(text: &str, name: &str) -> Vec<String> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                    || *l == format!("# TYPE {name} gauge")
                    || *l == format!("# TYPE {name} counter")
            })
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn series_dropped_is_a_gauge_of_the_series_left_out_now() {
        let hub = Hub::new(10);
        let m = Metrics::new(2);

        hub.set_series(series(1));
        let (text, _) = m.render(&hub);
        assert_eq!(
            family(&text, "spikewatch_series_dropped"),
            [
                "# TYPE spikewatch_series_dropped gauge",
                "spikewatch_series_dropped 0"
            ]
        );

        hub.set_series(series(5));
        let (text, _) = m.render(&hub);
        assert_eq!(text.matches("spikewatch_series_error_ratio{").count(), 2);
        assert_eq!(
            family(&text, "spikewatch_series_dropped"),
            [
                "# TYPE spikewatch_series_dropped gauge",
                "spikewatch_series_dropped 3"
            ]
        );

        // Back under the cap, nothing is left out any more.
        hub.set_series(series(2));
        let (text, _) = m.render(&hub);
        assert_eq!(text.matches("spikewatch_series_error_ratio{").count(), 2);
        assert_eq!(
            family(&text, "spikewatch_series_dropped"),
            [
                "# TYPE spikewatch_series_dropped gauge",
                "spikewatch_series_dropped 0"
            ]
        );
        assert!(!text.contains("spikewatch_series_dropped_total"), "{text}");
    }
}
