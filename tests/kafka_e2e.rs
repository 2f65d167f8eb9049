//! End to end through a real Kafka-protocol broker: tansu on 127.0.0.1 with in-memory storage.
//!
//! 1. `spikewatch produce TRACE --max` writes a seed incident trace (samples and change events)
//!    into the broker, after one poison message on the metrics topic.
//! 2. `spikewatch run` consumes it (`[source.kafka]` in a config file, the API on a free port).
//! 3. The alerts served at `GET /api/v1/alerts` must equal `spikewatch replay --format jsonl`
//!    on the same trace (latest transition of every alert id: id, kind, state, cluster,
//!    service, onset, detected_at), the poison must be counted in
//!    `spikewatch_dead_letters_total{reason="malformed_json"}`, consumer lag must be exported,
//!    and `/readyz` must say the source is up.
//! 4. A second test kills spikewatch with SIGKILL mid-trace (the trace produced paced, checkpoints
//!    every second) and restarts it on the same state directory: the alerts must again equal the
//!    replay's, none lost and none listed twice, and the restarted process must have resumed.
//!
//! tansu comes from `.ci/install-tansu` (found on PATH, in ~/.local/bin, or at $TANSU); without
//! it the test fails and says so. Everything is bounded in time; children are killed on drop and
//! their logs printed when the test fails. The trace can be changed with SPIKEWATCH_KAFKA_TRACE.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::procs::{free_port, http_get, wait_until, Proc};

const DEFAULT_TRACE: &str = "2026-02-12-routing-config-removed";
/// Joining a consumer group on tansu takes some seconds; consuming the trace, a few more.
const ALERTS_TIMEOUT: Duration = Duration::from_secs(150);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_spikewatch")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tansu() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("TANSU") {
        candidates.push(p.into());
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("tansu")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".local/bin/tansu"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "tansu is not installed: run `.ci/install-tansu` (it puts the broker in \
                 ~/.local/bin), or point $TANSU at a tansu binary"
            )
        })
}

/// A scratch directory, removed unless the test fails.
struct Scratch(PathBuf);

impl Scratch {
    /// Unique per test: the tests of this file run in parallel in one process.
    fn new(test: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "spikewatch-kafka-e2e-{test}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch directory kept: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What is compared: the latest transition of every alert id.
type Alerts = BTreeMap<String, [String; 6]>;

fn alert_key(e: &Value) -> (String, [String; 6]) {
    let f = |k: &str| match &e[k] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (
        f("id"),
        [
            f("kind"),
            f("state"),
            f("cluster"),
            f("service"),
            f("onset"),
            f("detected_at"),
        ],
    )
}

/// Every alert the API serves, following the cursor.
fn api_alerts(addr: &str) -> Result<Alerts, String> {
    let mut out = Alerts::new();
    let mut path = "/api/v1/alerts?limit=1000".to_owned();
    loop {
        let (status, body) = http_get(addr, &path)?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        for a in v["alerts"].as_array().into_iter().flatten() {
            let (id, k) = alert_key(a);
            out.insert(id, k);
        }
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/alerts?limit=1000&cursor={c}"),
            None => return Ok(out),
        }
    }
}

fn replay_alerts(trace: &Path) -> Alerts {
    let out = Command::new(bin())
        .args(["replay", "--format", "jsonl"])
        .arg(trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut alerts = Alerts::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let (id, k) = alert_key(&v);
        // Later transitions of an id replace earlier ones, as in the API.
        alerts.insert(id, k);
    }
    alerts
}

fn diff(got: &Alerts, want: &Alerts) -> String {
    let mut lines = Vec::new();
    for (id, w) in want {
        match got.get(id) {
            None => lines.push(format!("missing {id} {w:?}")),
            Some(g) if g != w => lines.push(format!("differs {id}: got {g:?}, replay {w:?}")),
            Some(_) => {}
        }
    }
    for (id, g) in got {
        if !want.contains_key(id) {
            lines.push(format!("extra {id} {g:?}"));
        }
    }
    lines.truncate(20);
    lines.join("\n")
}

/// tansu on a free port with in-memory storage and the three topics, each with one partition:
/// `produce` writes event time faster than real time, and only a single partition hands it to
/// the consumer in event-time order (docs/kafka.md). Returns the broker and its address.
fn start_broker(tansu: &Path, dir: &Path) -> (Proc, String) {
    let kafka_port = free_port();
    let brokers = format!("127.0.0.1:{kafka_port}");
    let url = format!("tcp://{brokers}");
    let mut broker = Proc::spawn(
        "tansu",
        dir,
        Command::new(tansu).args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ]),
    );
    wait_until(
        "tansu to listen",
        Duration::from_secs(20),
        &mut [&mut broker],
        || TcpStream::connect(&brokers).is_ok(),
    );
    // Several metrics partitions: a consumer reads them in bursts, one partition far ahead of
    // another in event time, and the service must still give the replay's alerts.
    for (topic, partitions) in [
        ("spikewatch.metrics", "4"),
        ("spikewatch.changes", "1"),
        ("spikewatch.dlq", "1"),
        ("spikewatch.alerts", "3"),
    ] {
        let out = Command::new(tansu)
            .args([
                "topic",
                "create",
                "--broker",
                &url,
                "--partitions",
                partitions,
                topic,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu topic create {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (broker, brokers)
}

/// A service config consuming the three topics, checkpointing to `state` every `checkpoint_s`.
/// A short session timeout lets the group hand a killed member's partitions to its successor
/// in seconds rather than librdkafka's default 45.
fn service_config(
    dir: &Path,
    listen: &str,
    brokers: &str,
    state: &Path,
    checkpoint_s: f64,
) -> PathBuf {
    let config = dir.join("spikewatch.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{listen}\"\n\n[source.kafka]\nbrokers = \"{brokers}\"\n\
             group_id = \"kafka-e2e\"\nmetrics_topic = \"spikewatch.metrics\"\n\
             changes_topic = \"spikewatch.changes\"\ndead_letter_topic = \"spikewatch.dlq\"\n\
             alerts_topic = \"spikewatch.alerts\"\nformat = \"json\"\n\n\
             [source.kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\n[checkpoint]\ndir = {:?}\ninterval_s = {checkpoint_s:?}\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    config
}

/// Every alert the API serves, as listed (an id listed twice would be a duplicate alert).
fn api_alert_list(addr: &str) -> Result<Vec<(String, [String; 6])>, String> {
    let mut out = Vec::new();
    let mut path = "/api/v1/alerts?limit=1000".to_owned();
    loop {
        let (status, body) = http_get(addr, &path)?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        out.extend(v["alerts"].as_array().into_iter().flatten().map(alert_key));
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/alerts?limit=1000&cursor={c}"),
            None => return Ok(out),
        }
    }
}

#[test]
fn alerts_served_from_kafka_equal_the_replay_of_the_same_trace() {
    let tansu = tansu();
    let trace_name =
        std::env::var("SPIKEWATCH_KAFKA_TRACE").unwrap_or_else(|_| DEFAULT_TRACE.into());
    let trace = repo().join("testdata/incidents").join(&trace_name);
    let scratch = Scratch::new("replay");
    let dir = scratch.0.clone();

    let (mut broker, brokers) = start_broker(&tansu, &dir);

    // A poison message first, then the trace.
    let poison = ingest::kafka::KafkaProducer::new(&brokers, &BTreeMap::new()).unwrap();
    poison
        .send(
            "spikewatch.metrics",
            Some(b"poison/test"),
            None,
            b"{\"ts\": not json",
        )
        .unwrap();
    poison.flush(Duration::from_secs(30)).unwrap();
    let produced = Command::new(bin())
        .arg("produce")
        .arg(&trace)
        .args(["--brokers", &brokers, "--max"])
        .output()
        .unwrap();
    let produce_log = String::from_utf8_lossy(&produced.stderr);
    assert!(produced.status.success(), "produce failed: {produce_log}");
    assert!(
        produce_log.contains("produced "),
        "no summary line: {produce_log}"
    );
    assert!(produced.stdout.is_empty(), "produce wrote to stdout");

    // The service.
    let listen = format!("127.0.0.1:{}", free_port());
    let config = service_config(&dir, &listen, &brokers, &dir.join("state"), 30.0);
    let mut service = Proc::spawn(
        "spikewatch",
        &dir,
        Command::new(bin()).arg("run").arg("--config").arg(&config),
    );
    wait_until(
        "the API",
        Duration::from_secs(30),
        &mut [&mut service, &mut broker],
        || http_get(&listen, "/healthz").is_ok_and(|(s, _)| s == 200),
    );

    let want = replay_alerts(&trace);
    assert!(!want.is_empty(), "the replay of {trace_name} has no alerts");
    let mut got = Alerts::new();
    let deadline = Instant::now() + ALERTS_TIMEOUT;
    while got != want {
        service.assert_running();
        broker.assert_running();
        assert!(
            Instant::now() < deadline,
            "after {ALERTS_TIMEOUT:?} the API serves {} alerts, the replay {}:\n{}",
            got.len(),
            want.len(),
            diff(&got, &want)
        );
        std::thread::sleep(Duration::from_millis(500));
        got = api_alerts(&listen).unwrap_or_default();
    }

    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let mut text = String::new();
    wait_until(
        "dead letters and lag in /metrics",
        Duration::from_secs(20),
        &mut [&mut service],
        || {
            text = http_get(&listen, "/metrics")
                .map(|r| r.1)
                .unwrap_or_default();
            metric(&text, "spikewatch_dead_letters_total{reason=\"malformed_json\"}") == Some(1.0)
            && metric(
                &text,
                "spikewatch_kafka_consumer_lag_messages{partition=\"0\",topic=\"spikewatch.metrics\"}",
            )
            .is_some()
        },
    );
    let (status, ready) = http_get(&listen, "/readyz").unwrap();
    assert_eq!(status, 200, "/readyz: {ready}");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["source_up"], true, "{ready}");

    // The alerts topic carries the same alerts: its latest message per id is the replay's
    // last transition of that alert, and every message is keyed by its alert's id.
    let on_topic = alerts_on_topic(&brokers, &want, &mut [&mut service, &mut broker]);
    assert!(
        on_topic == want,
        "the alerts topic holds {} alerts, the replay {}:\n{}",
        on_topic.len(),
        want.len(),
        diff(&on_topic, &want)
    );
}

/// The latest message per alert id on `spikewatch.alerts`, read from the beginning until that
/// is `want` (or 30 s pass); checks each message's key is its alert's id.
fn alerts_on_topic(brokers: &str, want: &Alerts, procs: &mut [&mut Proc]) -> Alerts {
    use ingest::kafka::{KafkaSettings, KafkaSource, TopicSettings};
    let settings = KafkaSettings {
        brokers: brokers.to_owned(),
        group_id: "alerts-topic-reader".into(),
        metrics_topics: vec![TopicSettings {
            topic: "spikewatch.alerts".into(),
            format: ingest::FormatKind::Json,
        }],
        changes_topic: None,
        dead_letter_topic: None,
        librdkafka: [("session.timeout.ms", "6000")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        ..KafkaSettings::default()
    };
    let mut reader = KafkaSource::new(&settings).unwrap();
    let mut got = Alerts::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got != *want && Instant::now() < deadline {
        for p in procs.iter_mut() {
            p.assert_running();
        }
        let Some(d) = reader.poll(1000, Duration::from_millis(200)) else {
            continue;
        };
        for m in &d.metrics {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            let (id, k) = alert_key(&v);
            assert_eq!(m.key.as_deref(), Some(id.as_bytes()), "message key: {v}");
            got.insert(id, k);
        }
        reader.ack(d.token);
    }
    let _ = reader.close(Duration::from_secs(5));
    got
}

/// Issue 4's "restarts resume, not restart": the trace is produced paced (about 20 s of wall
/// time), spikewatch checkpoints every second, is SIGKILLed once it serves some alerts but
/// before the trace is over, and is started again on the same state directory. When the trace
/// is in, the API must serve exactly the replay's alerts: none lost, none twice, every one in
/// its latest state, and the second process must say it resumed from the checkpoint.
#[test]
fn a_service_killed_mid_trace_resumes_from_its_checkpoint_without_losing_or_repeating_alerts() {
    let tansu = tansu();
    let trace = repo().join("testdata/incidents").join(DEFAULT_TRACE);
    let scratch = Scratch::new("restart");
    let dir = scratch.0.clone();
    let (mut broker, brokers) = start_broker(&tansu, &dir);
    let want = replay_alerts(&trace);
    assert!(!want.is_empty(), "the replay has no alerts");

    let listen = format!("127.0.0.1:{}", free_port());
    let state = dir.join("state");
    let config = service_config(&dir, &listen, &brokers, &state, 1.0);
    let run = || {
        let mut c = Command::new(bin());
        c.arg("run").arg("--config").arg(&config);
        c
    };

    let mut first = Proc::spawn("spikewatch-1", &dir, &mut run());
    // Produce only once the service holds the partition (joining a group on tansu takes a few
    // seconds), so the kill below lands while the trace is still coming in.
    wait_until(
        "the first service to be assigned the metrics partition",
        Duration::from_secs(60),
        &mut [&mut first, &mut broker],
        || {
            http_get(&listen, "/metrics").is_ok_and(|(_, m)| {
                m.contains("spikewatch_kafka_consumer_lag_messages{partition=\"0\",topic=\"spikewatch.metrics\"}")
            })
        },
    );
    // Two hours of event time at 360x: about 20 s, the incident from about 10 s in.
    let mut produce = Proc::spawn(
        "produce",
        &dir,
        Command::new(bin()).arg("produce").arg(&trace).args([
            "--brokers",
            &brokers,
            "--speed",
            "360",
        ]),
    );
    // Kill once an alert has fired and resolved, and a checkpoint (every second) covers it:
    // its transitions are then never read again, so only the checkpoint can bring it back.
    wait_until(
        "the first service to serve a resolved alert",
        ALERTS_TIMEOUT,
        &mut [&mut first, &mut broker],
        || api_alert_list(&listen).is_ok_and(|a| a.iter().any(|(_, k)| k[1] == "resolved")),
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        produce.child.try_wait().unwrap().is_none(),
        "the trace was fully produced before the service resolved an alert: the kill would \
         not be mid-trace"
    );
    assert!(
        state.join("checkpoint.bin").is_file(),
        "no checkpoint was written:\n{}",
        first.log()
    );
    // SIGKILL: no shutdown checkpoint, no final commit.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let log1 = first.log();
    assert!(
        !log1.contains("resumed from checkpoint"),
        "the first run resumed from something:\n{log1}"
    );

    let mut second = Proc::spawn("spikewatch-2", &dir, &mut run());
    wait_until(
        "the produce run to finish",
        Duration::from_secs(120),
        &mut [&mut second, &mut broker],
        || produce.child.try_wait().unwrap().is_some(),
    );
    assert!(
        produce.child.wait().unwrap().success(),
        "produce failed:\n{}",
        produce.log()
    );
    let mut got: Vec<(String, [String; 6])> = Vec::new();
    let deadline = Instant::now() + ALERTS_TIMEOUT;
    loop {
        second.assert_running();
        broker.assert_running();
        let latest: Alerts = got.iter().cloned().collect();
        if latest == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart the API serves {} alerts, the replay {}:\n{}",
            latest.len(),
            want.len(),
            diff(&latest, &want)
        );
        std::thread::sleep(Duration::from_millis(500));
        got = api_alert_list(&listen).unwrap_or_default();
    }
    // Stable: a few seconds later, still the same.
    std::thread::sleep(Duration::from_secs(3));
    let again = api_alert_list(&listen).unwrap();
    let latest: Alerts = again.iter().cloned().collect();
    assert_eq!(
        latest,
        want,
        "alerts changed after settling:\n{}",
        diff(&latest, &want)
    );
    assert_eq!(
        again.len(),
        latest.len(),
        "an alert id is listed more than once"
    );
    let log2 = second.log();
    assert!(
        log2.contains("resumed from checkpoint ("),
        "the restarted service did not resume:\n{log2}"
    );
}
