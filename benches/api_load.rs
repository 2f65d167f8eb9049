//! Load benchmark of the HTTP API over 10,000 stored alerts.
//!
//! Builds a hub the way a busy service would hold it (40 clusters in 4 regions, 25 services,
//! all six alert kinds, two weeks of history, most alerts resolved and a recent minority still
//! firing, 1,000 tracked series), serves the real router (`service::api::app`) on 127.0.0.1 on
//! its own runtime, and drives it from an in-process closed-loop load generator (hyper's
//! HTTP/1.1 client on a second runtime): N keep-alive connections, each sending its next request
//! as soon as the last response body has been read, for a fixed time per scenario after a short
//! warm-up. `/healthz` is measured in the same run
//! as the baseline, so each endpoint is reported both in requests/s and as a fraction of what
//! the same machine, client and server threads manage on a request that does no work.
//!
//! ```sh
//! cargo bench --bench api_load                      # 5 s per scenario, 16 connections
//! cargo bench --bench api_load -- --duration 2      # shorter
//! cargo bench --bench api_load -- alerts metrics    # only scenarios whose name contains a word
//! cargo bench --bench api_load -- --help
//! ```
//!
//! Each scenario's time is split into rounds (5 by default) that interleave with the other
//! scenarios', and the ratio to `/healthz` is the median of the per-round ratios, so a build
//! starting on a shared machine halfway through skews all scenarios alike rather than one.
//! The SPREAD column ((max - min) / mean of the rounds' requests/s) shows how steady it was.
//!
//! Options (each also read from the environment variable named in brackets, flags win):
//! `--duration S` [API_LOAD_DURATION], `--warmup S` [API_LOAD_WARMUP], `--connections N`
//! [API_LOAD_CONNECTIONS], `--rounds N` [API_LOAD_ROUNDS], `--alerts N` [API_LOAD_ALERTS],
//! `--server-threads N` and
//! `--client-threads N` [API_LOAD_SERVER_THREADS, API_LOAD_CLIENT_THREADS; by default the cores
//! are split between the two], `--out FILE` [API_LOAD_OUT; default `target/api-load.json`].
//!
//! Prints a table (requests/s, p50/p99 latency, errors, mean response size, ratio to the
//! `/healthz` baseline) and writes the same as JSON. Exits 1 if any request failed.
//!
//! With an external load generator instead (`oha` or `wrk`, if installed), start the same
//! server and leave it up until Ctrl-C; it prints one URL per scenario:
//!
//! ```sh
//! cargo bench --bench api_load -- --serve --port 8089 --server-threads 2
//! oha -z 10s -c 16 --no-tui 'http://127.0.0.1:8089/api/v1/alerts?limit=100'
//! wrk -t 1 -c 16 -d 10s --latency 'http://127.0.0.1:8089/api/v1/alerts?limit=100'
//! ```
//!
//! (External tools hit one URL per run; the in-process generator rotates over many alert ids
//! and clusters for the `{id}` and filtered scenarios.)
//!
//! Without `--bench` (as `cargo test --benches` runs a bench binary) it does a quick smoke run:
//! every scenario for a fraction of a second, failing on any error, writing no JSON.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use detector::{AlertEvent, AlertKind, AlertState, SeriesKey, SeriesTotals, SeriesView, Severity};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use spikewatch::service::api::{app, AppState};
use spikewatch::service::hub::{wall_ms, Hub};
use spikewatch::service::metrics::Metrics;

/// Event time of the newest stored alert (2026-02-02).
const NOW_MS: i64 = 1_770_000_000_000;
const HOUR_MS: i64 = 3_600_000;
const HISTORY_MS: i64 = 14 * 24 * HOUR_MS;
const SEED: u64 = 0x5eed_a11e;

const REGIONS: [(&str, &str); 4] = [
    ("us-east-1", "use1"),
    ("us-west-2", "usw2"),
    ("eu-west-1", "euw1"),
    ("ap-southeast-1", "apse1"),
];
const CLUSTERS_PER_REGION: usize = 10;
const SERVICES: [&str; 25] = [
    "api-gateway",
    "auth",
    "billing",
    "cart",
    "catalog",
    "checkout",
    "conversation",
    "email",
    "frontend",
    "inventory",
    "ledger",
    "notifications",
    "orders",
    "payments",
    "pricing",
    "profile",
    "recommendations",
    "search",
    "sessions",
    "shipping",
    "storage",
    "tax",
    "uploads",
    "users",
    "webhooks",
];

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Options {
    duration: Duration,
    warmup: Duration,
    connections: usize,
    /// The duration and warm-up are split over this many interleaved rounds.
    rounds: usize,
    alerts: usize,
    server_threads: usize,
    client_threads: usize,
    /// Where the JSON report goes; `None` writes none.
    out: Option<PathBuf>,
    /// Scenario name filters (substrings); empty runs all.
    filters: Vec<String>,
    serve: bool,
    port: u16,
    /// False when not started by `cargo bench`: a quick smoke run.
    full: bool,
}

const HELP: &str = "\
api_load: load benchmark of the spikewatch HTTP API over stored alerts

usage: cargo bench --bench api_load -- [OPTIONS] [SCENARIO-FILTER...]

  --duration S         measured seconds per scenario (5)          [API_LOAD_DURATION]
  --warmup S           unmeasured seconds per scenario (1)        [API_LOAD_WARMUP]
  --connections N      concurrent keep-alive connections (16)     [API_LOAD_CONNECTIONS]
  --rounds N           split each scenario's time into N rounds,
                       interleaved with the other scenarios (5)   [API_LOAD_ROUNDS]
  --alerts N           alerts stored in the hub (10000)           [API_LOAD_ALERTS]
  --server-threads N   server runtime worker threads              [API_LOAD_SERVER_THREADS]
  --client-threads N   load generator worker threads              [API_LOAD_CLIENT_THREADS]
  --out FILE           JSON report (target/api-load.json)         [API_LOAD_OUT]
  --serve              only serve the fixture until Ctrl-C (for oha / wrk)
  --port N             port for --serve (0: any free port)
";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("environment variable {name} = `{v}` is not valid")),
        Err(_) => Ok(default),
    }
}

fn seconds(flag: &str, v: &str) -> anyhow::Result<Duration> {
    let s: f64 = v
        .parse()
        .with_context(|| format!("{flag} `{v}` is not a number of seconds"))?;
    ensure!(
        s.is_finite() && (0.0..=3600.0).contains(&s),
        "{flag} `{v}` must be from 0 to 3600 seconds"
    );
    Ok(Duration::from_secs_f64(s))
}

fn positive(flag: &str, v: &str) -> anyhow::Result<usize> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{flag} `{v}` is not a positive whole number"),
    }
}

fn parse_options(args: &[String]) -> anyhow::Result<Option<Options>> {
    let full = args.iter().any(|a| a == "--bench");
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let server_default = (cores / 2).max(1);
    let mut o = Options {
        duration: seconds(
            "API_LOAD_DURATION",
            &env_or(
                "API_LOAD_DURATION",
                if full { "5" } else { "0.3" }.to_string(),
            )?,
        )?,
        warmup: seconds(
            "API_LOAD_WARMUP",
            &env_or(
                "API_LOAD_WARMUP",
                if full { "1" } else { "0.1" }.to_string(),
            )?,
        )?,
        connections: env_or("API_LOAD_CONNECTIONS", if full { 16 } else { 4 })?,
        rounds: env_or("API_LOAD_ROUNDS", if full { 5 } else { 1 })?,
        alerts: env_or("API_LOAD_ALERTS", 10_000)?,
        server_threads: env_or("API_LOAD_SERVER_THREADS", server_default)?,
        client_threads: env_or(
            "API_LOAD_CLIENT_THREADS",
            cores.saturating_sub(server_default).max(1),
        )?,
        out: std::env::var_os("API_LOAD_OUT").map(PathBuf::from),
        filters: Vec::new(),
        serve: false,
        port: 0,
        full,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            "--bench" => {}
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            "--duration" => o.duration = seconds(a, &value(a)?)?,
            "--warmup" => o.warmup = seconds(a, &value(a)?)?,
            "--connections" => o.connections = positive(a, &value(a)?)?,
            "--rounds" => o.rounds = positive(a, &value(a)?)?,
            "--alerts" => o.alerts = positive(a, &value(a)?)?,
            "--server-threads" => o.server_threads = positive(a, &value(a)?)?,
            "--client-threads" => o.client_threads = positive(a, &value(a)?)?,
            "--out" => o.out = Some(PathBuf::from(value(a)?)),
            "--serve" => o.serve = true,
            "--port" => {
                let v = value(a)?;
                o.port = v
                    .parse()
                    .with_context(|| format!("--port `{v}` is not a port number"))?;
            }
            flag if flag.starts_with('-') => bail!("unknown option {flag} (see --help)"),
            filter => o.filters.push(filter.to_string()),
        }
    }
    ensure!(
        o.connections > 0
            && o.server_threads > 0
            && o.client_threads > 0
            && o.alerts > 0
            && (1..=1000).contains(&o.rounds),
        "connections, threads and alerts must be at least 1, rounds from 1 to 1000"
    );
    ensure!(!o.duration.is_zero(), "the duration must be above 0 s");
    if o.full && o.out.is_none() {
        o.out = Some(target_dir().join("api-load.json"));
    }
    Ok(Some(o))
}

/// Cargo's target directory: the bench binary lives in `<target>/<profile>/deps/`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|p| p.file_name().is_some_and(|n| n == "deps"))
                .and_then(Path::parent)
                .and_then(Path::parent)
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

// ---------------------------------------------------------------------------------------------
// The stored state

/// The hub and what the scenarios need to address it.
struct Fixture {
    hub: Hub,
    metrics: Metrics,
    ids: Vec<String>,
    /// Clusters with the most firing alerts, busiest first.
    busy_clusters: Vec<String>,
    firing: usize,
}

fn clusters() -> Vec<(String, &'static str)> {
    REGIONS
        .iter()
        .flat_map(|(region, code)| {
            (0..CLUSTERS_PER_REGION).map(move |i| {
                let letter = char::from(b'a' + u8::try_from(i).unwrap_or(0));
                (format!("prod-{code}-{letter}"), *region)
            })
        })
        .collect()
}

/// A bijective 64-bit mix, so distinct indices give distinct alert ids.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One alert's kind, measured value, baseline and summary, in the detector's wording.
fn kind_values(rng: &mut StdRng) -> (AlertKind, Severity, f64, f64, String) {
    let roll: f64 = rng.random();
    match roll {
        r if r < 0.35 => {
            let (v, b) = (rng.random_range(0.03..0.9), rng.random_range(0.0005..0.01));
            let summary = format!(
                "error ratio {:.1}% vs baseline {:.1}%",
                v * 100.0,
                b * 100.0
            );
            let sev = if v > 0.2 {
                Severity::Critical
            } else {
                Severity::Warning
            };
            (AlertKind::ErrorRateSpike, sev, v, b, summary)
        }
        r if r < 0.55 => {
            let b: f64 = rng.random_range(80.0..400.0);
            let v = b * rng.random_range(1.5..6.0);
            let summary = format!(
                "p99 latency {v:.0} ms vs baseline {b:.0} ms (x{:.1})",
                v / b
            );
            (AlertKind::LatencySpike, Severity::Warning, v, b, summary)
        }
        r if r < 0.70 => {
            let (v, b) = (rng.random_range(0.1..0.7), rng.random_range(0.005..0.05));
            let summary = format!(
                "retries {:.1}% of requests vs baseline {:.1}%",
                v * 100.0,
                b * 100.0
            );
            (
                AlertKind::RetryAmplification,
                Severity::Warning,
                v,
                b,
                summary,
            )
        }
        r if r < 0.82 => {
            let b: f64 = rng.random_range(200.0..8000.0);
            let v = b * rng.random_range(0.05..0.6);
            let summary = format!(
                "successful requests {v:.1}/s vs baseline {b:.1}/s ({:.0}% down)",
                (1.0 - v / b) * 100.0
            );
            (AlertKind::SuccessDrop, Severity::Critical, v, b, summary)
        }
        r if r < 0.92 => {
            let (v, b) = (rng.random_range(0.9..1.0), rng.random_range(0.2..0.6));
            let summary = format!(
                "DB pool {:.0}% in use vs baseline {:.0}%",
                v * 100.0,
                b * 100.0
            );
            let sev = if v >= 0.95 {
                Severity::Critical
            } else {
                Severity::Warning
            };
            (AlertKind::DbPoolSaturation, sev, v, b, summary)
        }
        _ => {
            let b = 10.0;
            let v = b * f64::from(rng.random_range(3..30_u32));
            let summary = format!("no samples for {v:.0} s (reports every {b:.0} s)");
            (
                AlertKind::TelemetryAbsent,
                Severity::Critical,
                v,
                b,
                summary,
            )
        }
    }
}

/// A series snapshot: every cluster x service, with the kinds firing on it now.
fn series_views(
    clusters: &[(String, &'static str)],
    hub: &Hub,
    rng: &mut StdRng,
) -> anyhow::Result<Vec<SeriesView>> {
    let mut firing_on: HashMap<(&str, &str), Vec<AlertKind>> = HashMap::new();
    let st = hub.read();
    for e in st.firing() {
        let kinds = firing_on
            .entry((e.cluster.as_str(), e.service.as_str()))
            .or_default();
        if !kinds.contains(&e.kind) {
            kinds.push(e.kind);
        }
    }
    let mut views = Vec::with_capacity(clusters.len() * SERVICES.len());
    for (cluster, region) in clusters {
        for service in SERVICES {
            let mut firing_kinds = firing_on
                .get(&(cluster.as_str(), service))
                .cloned()
                .unwrap_or_default();
            firing_kinds.sort_by_key(|k| k.as_str());
            let requests: u64 = rng.random_range(1_000_000..500_000_000);
            let base: f64 = rng.random_range(0.0005..0.01);
            let ratio = if firing_kinds.is_empty() {
                base * rng.random_range(0.5..1.5)
            } else {
                rng.random_range(0.05..0.5)
            };
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            views.push(SeriesView {
                id: u32::try_from(views.len()).context("series id")?,
                key: SeriesKey {
                    cluster: cluster.clone(),
                    service: service.to_string(),
                    region: Some((*region).to_string()),
                },
                last_sample_ms: Some(NOW_MS),
                error_ratio: ratio,
                error_baseline: base,
                retry_ratio: rng.random_range(0.005..0.05),
                retry_baseline: 0.02,
                success_rate: rng.random_range(100.0..5000.0),
                success_baseline: rng.random_range(100.0..5000.0),
                latency_p99_ms: rng.random_range(80.0..900.0),
                latency_baseline_ms: rng.random_range(80.0..400.0),
                pool_utilisation: rng.random_range(0.1..1.0),
                pool_baseline: rng.random_range(0.2..0.6),
                pool_pending: if rng.random_bool(0.3) {
                    f64::NAN
                } else {
                    f64::from(rng.random_range(0..40_u32))
                },
                totals: SeriesTotals {
                    requests,
                    errors: (requests as f64 * base) as u64,
                    retries: requests / 50,
                },
                firing: firing_kinds,
            });
        }
    }
    Ok(views)
}

/// Stores `n` alerts, all first published firing (as the pipeline does) and most of them
/// later resolved, plus the series snapshot and the counters `/metrics` reads.
fn build_fixture(n: usize) -> anyhow::Result<Fixture> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let clusters = clusters();
    let mut firing_events = Vec::with_capacity(n);
    let mut resolutions = Vec::new();
    let step = HISTORY_MS / i64::try_from(n).context("alert count")?;
    for i in 0..n {
        // A few clusters carry most of the incidents (big clusters, more deploys).
        let u: f64 = rng.random();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let c = ((u * u * u * clusters.len() as f64) as usize).min(clusters.len() - 1);
        let (cluster, region) = &clusters[c];
        let service = SERVICES[rng.random_range(0..SERVICES.len())];
        let (kind, severity, value, baseline, summary) = kind_values(&mut rng);
        // Alerts are detected when a 10 s tick closes.
        let detected_at = (NOW_MS - HISTORY_MS
            + step * i64::try_from(i).context("alert index")?
            + rng.random_range(0..step.max(1)))
            / 10_000
            * 10_000;
        let onset = detected_at - 10_000 * rng.random_range(1..12_i64);
        let ev = AlertEvent {
            id: format!("a-{:016x}", mix64(i as u64 ^ SEED)),
            kind,
            state: AlertState::Firing,
            severity,
            cluster: cluster.clone(),
            service: service.to_string(),
            region: Some((*region).to_string()),
            onset,
            detected_at,
            resolved_at: None,
            value,
            baseline,
            summary,
            incident_id: None,
        };
        // Old alerts are almost all over; the last six hours still have many open ones.
        let recent = NOW_MS - detected_at < 6 * HOUR_MS;
        if rng.random_bool(if recent { 0.45 } else { 0.995 }) {
            let resolved_at = (detected_at + 60_000 * rng.random_range(2..90_i64)).min(NOW_MS);
            resolutions.push(AlertEvent {
                state: AlertState::Resolved,
                resolved_at: Some(resolved_at),
                summary: format!("resolved: {}", ev.summary),
                ..ev.clone()
            });
        }
        firing_events.push(ev);
    }

    let hub = Hub::new(n);
    let metrics = Metrics::new(2000);
    hub.publish(&firing_events);
    hub.publish(&resolutions);
    metrics.observe_events(&firing_events);
    metrics.observe_events(&resolutions);

    let (stored, firing) = {
        let st = hub.read();
        (st.alerts().len(), st.firing().count())
    };
    ensure!(stored == n, "the hub holds {stored} alerts, expected {n}");

    let views = series_views(&clusters, &hub, &mut rng)?;
    hub.set_series(views);
    hub.update_counters(|c| {
        c.samples = 12_345_678;
        c.batches = 45_678;
        c.tracked_series = (clusters.len() * SERVICES.len()) as u64;
        c.watermark_ms = Some(NOW_MS);
        c.watermark_wall_ms = Some(wall_ms());
        c.source = "bench fixture".into();
    });
    hub.set_source_up(true);
    hub.heartbeat(wall_ms());

    let mut by_cluster: Vec<(String, usize)> = Vec::new();
    for e in hub.read().firing() {
        match by_cluster.iter_mut().find(|(c, _)| *c == e.cluster) {
            Some((_, n)) => *n += 1,
            None => by_cluster.push((e.cluster.clone(), 1)),
        }
    }
    by_cluster.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

    Ok(Fixture {
        hub,
        metrics,
        ids: firing_events.into_iter().map(|e| e.id).collect(),
        busy_clusters: by_cluster.into_iter().map(|(c, _)| c).collect(),
        firing,
    })
}

// ---------------------------------------------------------------------------------------------
// Scenarios and the load generator

struct Scenario {
    name: &'static str,
    /// What the table shows; the request paths rotate over `paths`.
    label: String,
    paths: Vec<String>,
}

fn scenarios(f: &Fixture, rng: &mut StdRng) -> Vec<Scenario> {
    let one = |name, path: &str| Scenario {
        name,
        label: path.to_string(),
        paths: vec![path.to_string()],
    };
    let firing: Vec<String> = f
        .busy_clusters
        .iter()
        .take(8)
        .map(|c| format!("/api/v1/alerts?state=firing&cluster={c}&limit=100"))
        .collect();
    let by_id: Vec<String> = (0..4096)
        .map(|_| format!("/api/v1/alerts/{}", f.ids[rng.random_range(0..f.ids.len())]))
        .collect();
    vec![
        one("healthz", "/healthz"),
        one("alerts", "/api/v1/alerts?limit=100"),
        Scenario {
            name: "alerts_firing_cluster",
            label: "/api/v1/alerts?state=firing&cluster=…&limit=100".into(),
            paths: firing,
        },
        Scenario {
            name: "alert_by_id",
            label: "/api/v1/alerts/{id}".into(),
            paths: by_id,
        },
        one("series", "/api/v1/series"),
        one("metrics", "/metrics"),
    ]
}

/// What one connection saw during the measured window.
#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    errors: u64,
    bytes: u64,
    first_error: Option<String>,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One keep-alive HTTP/1.1 connection, straight on hyper so the load generator costs as little
/// CPU as it can (it shares the machine with the server). Reconnects after a transport error.
struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            sender: None,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        // Drives the socket; ends when the sender is dropped or the server closes.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One GET, body read to the end. `Err` is a transport failure (the connection is
    /// dropped and reopened on the next call); an HTTP error status is `Ok`.
    async fn exchange(&mut self, uri: &Uri) -> Result<(StatusCode, Bytes), String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.sender = Some(self.connect().await?);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err("no connection".into());
        };
        sender.ready().await.map_err(|e| e.to_string())?;
        let req = Request::get(uri.clone())
            .header(header::HOST, self.host.clone())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    /// A successful response's body, or why there was none.
    async fn get(&mut self, uri: &Uri) -> Result<Bytes, String> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(uri)).await {
            Ok(Ok((status, body))) if status.is_success() => Ok(body),
            Ok(Ok((status, body))) => Err(format!("{status}: {}", String::from_utf8_lossy(&body))),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(format!("no response within {REQUEST_TIMEOUT:?}"))
            }
        }
    }
}

/// Closed loop on one connection: the next request goes out when the last body is read.
async fn connection(
    addr: SocketAddr,
    uris: Arc<Vec<Uri>>,
    start_at: usize,
    measure_from: Instant,
    until: Instant,
) -> anyhow::Result<Tally> {
    let mut conn = Conn::new(addr)?;
    let mut tally = Tally::default();
    let mut next = start_at;
    loop {
        let sent = Instant::now();
        if sent >= until {
            break;
        }
        let uri = &uris[next % uris.len()];
        next += 1;
        let result = conn.get(uri).await;
        if sent < measure_from {
            continue;
        }
        match result {
            Ok(body) => {
                let ns = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                tally.latencies_ns.push(ns);
                tally.bytes += body.len() as u64;
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(format!("{uri}: {e}"));
            }
        }
    }
    Ok(tally)
}

#[derive(Debug, Clone)]
struct Outcome {
    name: &'static str,
    label: String,
    requests: u64,
    errors: u64,
    /// Mean over the rounds.
    rps: f64,
    round_rps: Vec<f64>,
    p50_ms: f64,
    p99_ms: f64,
    mean_bytes: f64,
    first_error: Option<String>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn uris(paths: &[String]) -> anyhow::Result<Vec<Uri>> {
    paths
        .iter()
        .map(|p| p.parse().with_context(|| format!("request path `{p}`")))
        .collect()
}

impl Tally {
    fn absorb(&mut self, other: Tally) {
        self.latencies_ns.extend(other.latencies_ns);
        self.errors += other.errors;
        self.bytes += other.bytes;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// One round of one scenario: every connection for `warmup` unmeasured, then `duration`.
async fn drive(
    addr: SocketAddr,
    s: &Scenario,
    o: &Options,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Tally> {
    let uris = Arc::new(uris(&s.paths)?);
    let measure_from = Instant::now() + warmup;
    let until = measure_from + duration;
    // Connections start at different places in the rotation (ids, clusters).
    let step = (uris.len() / o.connections).max(1);
    let tasks: Vec<_> = (0..o.connections)
        .map(|i| {
            tokio::spawn(connection(
                addr,
                uris.clone(),
                i * step,
                measure_from,
                until,
            ))
        })
        .collect();
    let mut all = Tally::default();
    for t in tasks {
        all.absorb(t.await.context("a load connection panicked")??);
    }
    Ok(all)
}

/// A scenario's rounds, summed up; `round` is one round's measured time.
fn summarise(s: &Scenario, rounds: Vec<Tally>, round: Duration) -> Outcome {
    #[allow(clippy::cast_precision_loss)]
    let rps = |t: &Tally| t.latencies_ns.len() as f64 / round.as_secs_f64();
    let round_rps: Vec<f64> = rounds.iter().map(rps).collect();
    let mut all = Tally::default();
    for t in rounds {
        all.absorb(t);
    }
    all.latencies_ns.sort_unstable();
    let ok = all.latencies_ns.len() as u64;
    #[allow(clippy::cast_precision_loss)]
    let ms = |ns: u64| ns as f64 / 1e6;
    #[allow(clippy::cast_precision_loss)]
    Outcome {
        name: s.name,
        label: s.label.clone(),
        requests: ok + all.errors,
        errors: all.errors,
        rps: round_rps.iter().sum::<f64>() / round_rps.len().max(1) as f64,
        round_rps,
        p50_ms: ms(percentile(&all.latencies_ns, 50.0)),
        p99_ms: ms(percentile(&all.latencies_ns, 99.0)),
        mean_bytes: if ok == 0 {
            0.0
        } else {
            all.bytes as f64 / ok as f64
        },
        first_error: all.first_error,
    }
}

/// A few requests per scenario before any load: every one must succeed, and the filtered
/// scenario must find firing alerts (or it would measure an empty answer).
async fn check(addr: SocketAddr, scenarios: &[Scenario]) -> anyhow::Result<()> {
    let mut conn = Conn::new(addr)?;
    for s in scenarios {
        for uri in uris(&s.paths)?.iter().take(16) {
            let body = conn
                .get(uri)
                .await
                .map_err(|e| anyhow::anyhow!("GET {uri}: {e}"))?;
            if s.name == "alerts_firing_cluster" {
                let v: Value = serde_json::from_slice(&body)?;
                let n = v["alerts"].as_array().map_or(0, Vec::len);
                ensure!(n > 0, "GET {uri} found no firing alerts");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report

/// Throughput as a fraction of the baseline's: the median over rounds of the two measured in
/// the same round, so drift in the machine's speed between rounds cancels out.
fn ratio(o: &Outcome, baseline: Option<&Outcome>) -> Option<f64> {
    let b = baseline?;
    let mut r: Vec<f64> = o
        .round_rps
        .iter()
        .zip(&b.round_rps)
        .filter(|(_, b)| **b > 0.0)
        .map(|(x, b)| x / b)
        .collect();
    if r.is_empty() {
        return None;
    }
    r.sort_by(f64::total_cmp);
    let mid = r.len() / 2;
    Some(if r.len() % 2 == 1 {
        r[mid]
    } else {
        (r[mid - 1] + r[mid]) / 2.0
    })
}

/// (max - min) / mean of the rounds' requests/s: how steady the measurement was.
fn spread(o: &Outcome) -> f64 {
    let max = o.round_rps.iter().copied().fold(f64::MIN, f64::max);
    let min = o.round_rps.iter().copied().fold(f64::MAX, f64::min);
    if o.rps > 0.0 {
        (max - min) / o.rps
    } else {
        0.0
    }
}

fn print_table(outcomes: &[Outcome], baseline: Option<&Outcome>) {
    println!(
        "{:<50} {:>9} {:>7} {:>9} {:>9} {:>7} {:>10}  VS_HEALTHZ",
        "SCENARIO", "REQ/S", "SPREAD", "P50_MS", "P99_MS", "ERRORS", "BYTES/REQ"
    );
    for o in outcomes {
        // As a fraction and, below 1, as "1/N": how many baseline requests one costs.
        let vs = ratio(o, baseline).map_or_else(
            || "-".to_string(),
            |r| {
                if r < 0.995 {
                    format!("{r:.4} (1/{:.1})", 1.0 / r)
                } else {
                    format!("{r:.4}")
                }
            },
        );
        println!(
            "{:<50} {:>9.0} {:>6.0}% {:>9.3} {:>9.3} {:>7} {:>10.0}  {}",
            o.label,
            o.rps,
            spread(o) * 100.0,
            o.p50_ms,
            o.p99_ms,
            o.errors,
            o.mean_bytes,
            vs
        );
    }
}

fn report_json(
    o: &Options,
    f: &Fixture,
    outcomes: &[Outcome],
    baseline: Option<&Outcome>,
) -> Value {
    json!({
        "benchmark": "api_load",
        "measured_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "machine": {
            "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        },
        "settings": {
            "duration_s": o.duration.as_secs_f64(),
            "warmup_s": o.warmup.as_secs_f64(),
            "connections": o.connections,
            "rounds": o.rounds,
            "server_threads": o.server_threads,
            "client_threads": o.client_threads,
        },
        "fixture": {
            "alerts": f.ids.len(),
            "firing": f.firing,
            "series": f.hub.read().series.len(),
        },
        "baseline": "healthz",
        "baseline_rps": baseline.map(|b| b.rps),
        "scenarios": outcomes.iter().map(|s| json!({
            "name": s.name,
            "path": s.label,
            "requests": s.requests,
            "errors": s.errors,
            "requests_per_second": s.rps,
            "requests_per_second_by_round": s.round_rps,
            "latency_p50_ms": s.p50_ms,
            "latency_p99_ms": s.p99_ms,
            "mean_response_bytes": s.mean_bytes,
            "ratio_to_baseline": ratio(s, baseline),
        })).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------------------------

fn runtime(threads: usize, name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .with_context(|| format!("starting the {name} runtime"))
}

/// Serves the router on 127.0.0.1 from its own runtime (so server and load generator get
/// their own threads) and returns the bound address.
fn start_server(
    rt: &tokio::runtime::Runtime,
    f: &Fixture,
    port: u16,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let state = AppState {
        hub: f.hub.clone(),
        metrics: f.metrics.clone(),
        bearer_token: None,
        stall_after: Duration::from_secs(3600),
    };
    let router = app(state, Duration::from_secs(10));
    rt.spawn(async move {
        let served = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => axum::serve(l, router).await,
            Err(e) => Err(e),
        };
        if let Err(e) = served {
            eprintln!("api_load: server stopped: {e}");
        }
    });
    Ok(addr)
}

fn run(o: &Options) -> anyhow::Result<bool> {
    let built = Instant::now();
    let fixture = build_fixture(o.alerts)?;
    eprintln!(
        "api_load: {} alerts stored ({} firing), {} series, built in {:.1?}",
        fixture.ids.len(),
        fixture.firing,
        fixture.hub.read().series.len(),
        built.elapsed()
    );
    let mut rng = StdRng::seed_from_u64(SEED ^ 1);
    let all = scenarios(&fixture, &mut rng);
    let picked: Vec<Scenario> = all
        .into_iter()
        .filter(|s| o.filters.is_empty() || o.filters.iter().any(|f| s.name.contains(f.as_str())))
        .collect();
    ensure!(
        !picked.is_empty(),
        "no scenario matches {:?}; scenarios: healthz, alerts, alerts_firing_cluster, \
         alert_by_id, series, metrics",
        o.filters
    );

    let server_rt = runtime(o.server_threads, "api-server")?;
    let addr = start_server(&server_rt, &fixture, o.port)?;
    let base = format!("http://{addr}");

    if o.serve {
        println!("serving {} stored alerts on {base} until Ctrl-C:", o.alerts);
        for s in &picked {
            println!("  {:<22} {base}{}", s.name, s.paths[0]);
        }
        println!(
            "e.g.  oha -z 10s -c {} --no-tui '{base}{}'",
            o.connections, picked[0].paths[0]
        );
        server_rt.block_on(tokio::signal::ctrl_c())?;
        return Ok(true);
    }

    let client_rt = runtime(o.client_threads, "api-load")?;
    eprintln!(
        "api_load: {base}, {} connections, {:.1?} warm-up + {:.1?} per scenario, \
         {} server / {} client threads",
        o.connections, o.warmup, o.duration, o.server_threads, o.client_threads
    );
    let outcomes = client_rt.block_on(async {
        check(addr, &picked).await?;
        // Rounds interleave the scenarios, so a slow spell on a shared machine is spread over
        // all of them (the baseline included) instead of landing on one.
        #[allow(clippy::cast_possible_truncation)]
        let rounds = o.rounds as u32;
        let (warmup, duration) = (o.warmup / rounds, o.duration / rounds);
        let mut tallies: Vec<Vec<Tally>> = picked.iter().map(|_| Vec::new()).collect();
        for r in 1..=o.rounds {
            eprintln!("api_load: round {r}/{} ...", o.rounds);
            for (s, t) in picked.iter().zip(&mut tallies) {
                t.push(drive(addr, s, o, warmup, duration).await?);
            }
        }
        anyhow::Ok(
            picked
                .iter()
                .zip(tallies)
                .map(|(s, t)| summarise(s, t, duration))
                .collect::<Vec<_>>(),
        )
    })?;
    client_rt.shutdown_background();
    server_rt.shutdown_background();

    let baseline = outcomes.iter().find(|s| s.name == "healthz");
    print_table(&outcomes, baseline);
    if let Some(path) = &o.out {
        let text = serde_json::to_string_pretty(&report_json(o, &fixture, &outcomes, baseline))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("api_load: wrote {}", path.display());
    }
    let mut clean = true;
    for s in outcomes.iter().filter(|s| s.errors > 0 || s.requests == 0) {
        clean = false;
        eprintln!(
            "api_load: {}: {} of {} requests failed; first: {}",
            s.name,
            s.errors,
            s.requests,
            s.first_error.as_deref().unwrap_or("no request completed")
        );
    }
    Ok(clean)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_options(&args).and_then(|o| match o {
        None => Ok(true),
        Some(o) => run(&o),
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("api_load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
