//! End to end, against the real tools an SRE runs next to spikewatch:
//! - every query the Grafana dashboards run, asked of a real Prometheus that scrapes a real
//!   `spikewatch demo` replaying an incident, must return data: a renamed metric, a wrong label
//!   or a query Prometheus refuses breaks this test instead of a dashboard;
//! - an alert spikewatch fires shows up, with its labels, in Alertmanager's own API and in
//!   Prometheus, and once spikewatch resolves it Alertmanager receives the resolution.
//!
//! The harness starts, on 127.0.0.1 with free ports and a scratch directory:
//! - Alertmanager with `deploy/alertmanager/alertmanager.yml`,
//! - `spikewatch demo --speed 600 --trace <trace>` pushing its alerts to that Alertmanager,
//! - Prometheus scraping spikewatch every second and evaluating `deploy/prometheus/rules`,
//!
//! waits (bounded) until Prometheus has recorded the incident's alerts, then runs every panel,
//! annotation and variable query over the time since the start. Children are killed on drop;
//! their logs stay in the scratch directory when the test fails.
//!
//! Queries on Kafka-only metrics (consumer lag, dead letters) have no data without Kafka: they
//! are skipped by name and listed, not faked. Tools: `prometheus` and `alertmanager` from
//! `.ci/install-deploy-tools`. The trace can be changed with SPIKEWATCH_E2E_TRACE.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::procs::{free_port, http_get, on_path, wait_http_ok, Proc};
use support::{
    load_dashboards, metric_names, parse_label_values, repo_root, substitute, with_builtins,
    QueryKind,
};

/// The trace replayed: DB pools saturate, then errors and retries: every per-series panel of
/// the drill-down (pool, latency, retries) has something to show.
const DEFAULT_TRACE: &str = "2026-02-04-db-replica-maintenance";
/// Metrics only a Kafka source produces.
const NEEDS_KAFKA: &[&str] = &[
    "spikewatch_kafka_consumer_lag_messages",
    "spikewatch_dead_letters_total",
];
const INCIDENT_TIMEOUT: Duration = Duration::from_secs(240);

// ------------------------------------------------------------------------------------------
// Tools and HTTP helpers

fn required_tool(names: &[&str]) -> PathBuf {
    on_path(names).unwrap_or_else(|| {
        panic!(
            "`{}` is not installed: run `.ci/install-deploy-tools` (apt: prometheus, \
             prometheus-alertmanager)",
            names[0]
        )
    })
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// The stack

struct Stack {
    dir: PathBuf,
    procs: Vec<Proc>,
    prometheus: String,
    alertmanager: String,
    spikewatch: String,
    started_s: f64,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.procs.clear();
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Stack {
    fn start(trace: &str) -> Stack {
        let spikewatch = PathBuf::from(env!("CARGO_BIN_EXE_spikewatch"));
        let prometheus = required_tool(&["prometheus"]);
        let alertmanager = required_tool(&["prometheus-alertmanager", "alertmanager"]);
        let help = Command::new(&spikewatch)
            .args(["demo", "--help"])
            .output()
            .unwrap();
        assert!(
            help.status.success(),
            "`spikewatch demo` is not available: {}",
            String::from_utf8_lossy(&help.stderr)
        );

        let root = repo_root();
        // Tests of this file run in parallel: each stack gets a directory of its own (a shared
        // one would be removed under the other stack's Prometheus when the first test ends).
        static STACKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "spikewatch-e2e-{}-{}-{}",
            std::process::id(),
            STACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            (now_s() * 1e3) as u64
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let started_s = now_s();
        let (sw, prom, am) = (
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        );

        let mut am_proc = Proc::spawn(
            "alertmanager",
            &dir,
            Command::new(alertmanager)
                .arg(format!(
                    "--config.file={}",
                    root.join("deploy/alertmanager/alertmanager.yml").display()
                ))
                .arg(format!(
                    "--storage.path={}",
                    dir.join("alertmanager").display()
                ))
                .arg(format!("--web.listen-address={am}"))
                .arg("--cluster.listen-address="),
        );
        let mut demo = Proc::spawn(
            "spikewatch-demo",
            &dir,
            Command::new(spikewatch)
                .current_dir(&root)
                .args(["demo", "--listen", &sw, "--speed", "600", "--trace", trace])
                .arg("--traces")
                .arg(root.join("testdata/incidents"))
                .args(["--alertmanager", &format!("http://{am}")]),
        );
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [root.join("deploy/prometheus/rules/*.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]},
            "scrape_configs": [{
                "job_name": "spikewatch",
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [sw]}],
            }],
        });
        let config_file = dir.join("prometheus.yml"); // JSON is YAML
        std::fs::write(&config_file, config.to_string()).unwrap();
        let mut prom_proc = Proc::spawn(
            "prometheus",
            &dir,
            Command::new(prometheus)
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus").display()
                ))
                .arg(format!("--web.listen-address={prom}")),
        );

        let boot = Duration::from_secs(60);
        wait_http_ok(&am, "/-/ready", boot, &mut [&mut am_proc]);
        wait_http_ok(&sw, "/readyz", boot, &mut [&mut demo]);
        wait_http_ok(&prom, "/-/ready", boot, &mut [&mut prom_proc]);
        Stack {
            dir,
            procs: vec![am_proc, demo, prom_proc],
            prometheus: prom,
            alertmanager: am,
            spikewatch: sw,
            started_s,
        }
    }

    fn assert_running(&mut self) {
        for p in &mut self.procs {
            p.assert_running();
        }
    }

    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = http_get(&self.prometheus, path)?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if v["status"] != "success" {
            return Err(format!(
                "{}: {}",
                v["errorType"].as_str().unwrap_or("error"),
                v["error"].as_str().unwrap_or(&body)
            ));
        }
        Ok(v["data"].clone())
    }

    fn instant(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!(
            "/api/v1/query?query={}&time={:.3}",
            urlencode(expr),
            now_s()
        ))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// A range query over everything since the stack started, as a panel would run it.
    fn range(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!(
            "/api/v1/query_range?query={}&start={:.3}&end={:.3}&step=1",
            urlencode(expr),
            self.started_s - 5.0,
            now_s()
        ))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Label values like Grafana's `label_values(selector, label)` over the run.
    fn label_values(&self, selector: Option<&str>, label: &str) -> Result<Vec<String>, String> {
        let mut path = format!(
            "/api/v1/label/{label}/values?start={:.3}&end={:.3}",
            self.started_s - 5.0,
            now_s()
        );
        if let Some(s) = selector {
            path.push_str(&format!("&match[]={}", urlencode(s)));
        }
        let data = self.api(&path)?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }
}

/// A query result has data when some series has a sample that is a number.
fn has_data(result: &[Value]) -> bool {
    result.iter().any(|series| {
        let values = series["values"]
            .as_array()
            .cloned()
            .or_else(|| {
                series["value"]
                    .as_array()
                    .map(|v| vec![Value::Array(v.clone())])
            })
            .unwrap_or_default();
        values.iter().any(|pair| {
            pair[1]
                .as_str()
                .is_some_and(|v| v.parse::<f64>().is_ok_and(f64::is_finite))
        })
    })
}

fn max_value(result: &[Value]) -> f64 {
    result
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|pair| pair[1].as_str().and_then(|v| v.parse::<f64>().ok()))
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max)
}

fn first_number(result: &[Value]) -> f64 {
    result
        .first()
        .and_then(|s| s["value"][1].as_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A single number over a metric that has no series when nothing fires ends in `or vector(0)`
/// so that a quiet fleet reads 0 (tests/deploy.rs checks it does). Here the metric itself must
/// have data, or a renamed metric would pass as a 0: the fallback is taken off.
fn without_zero_fallback(expr: &str) -> &str {
    expr.trim_end()
        .strip_suffix("vector(0)")
        .map(str::trim_end)
        .and_then(|rest| rest.strip_suffix("or"))
        .filter(|rest| rest.ends_with(|c: char| c.is_whitespace() || c == ')'))
        .map_or(expr, str::trim_end)
}

#[test]
fn a_zero_fallback_is_taken_off_before_asking_for_data() {
    for (expr, want) in [
        (
            "sum(spikewatch_alerts_active) or vector(0)",
            "sum(spikewatch_alerts_active)",
        ),
        (
            "count(count by (cluster) (spikewatch_alerts_active))\n  or vector(0)",
            "count(count by (cluster) (spikewatch_alerts_active))",
        ),
        (
            "sum(spikewatch_alerts_active)or vector(0)",
            "sum(spikewatch_alerts_active)",
        ),
        (
            "sum(spikewatch_tracked_series)",
            "sum(spikewatch_tracked_series)",
        ),
        ("a or b", "a or b"),
        ("a or vector(1)", "a or vector(1)"),
    ] {
        assert_eq!(without_zero_fallback(expr), want, "{expr}");
    }
}

// ------------------------------------------------------------------------------------------

#[test]
fn every_dashboard_query_returns_data_during_a_replayed_incident() {
    let trace = std::env::var("SPIKEWATCH_E2E_TRACE").unwrap_or_else(|_| DEFAULT_TRACE.into());
    let mut stack = Stack::start(&trace);

    // Wait until Prometheus has seen the incident: alerts firing, and (a few scrapes later)
    // the first of them resolved, so counters have moved both ways.
    let deadline = Instant::now() + INCIDENT_TIMEOUT;
    loop {
        stack.assert_running();
        let fired = stack
            .instant("max(max_over_time(spikewatch_alerts_active[10m]))")
            .map(|r| first_number(&r))
            .unwrap_or(f64::NAN);
        let resolved = stack
            .instant(r#"sum(spikewatch_alert_transitions_total{state="resolved"})"#)
            .map(|r| first_number(&r))
            .unwrap_or(f64::NAN);
        // Detections that Prometheus saw happen (not only their totals from before its first
        // scrape): the demo loops, so the incident's next replay provides them if the first
        // one was over before Prometheus came up.
        let detected = stack
            .instant("sum(increase(spikewatch_detection_delay_seconds_count[1m]))")
            .map(|r| first_number(&r))
            .unwrap_or(f64::NAN);
        if fired >= 1.0 && resolved >= 1.0 && detected > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no incident recorded by Prometheus after {INCIDENT_TIMEOUT:?} \
             (max alerts active {fired}, resolved transitions {resolved}, \
             detections in the last minute {detected})"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // A few more scrapes so that rates over the last minute see the incident's counters move.
    std::thread::sleep(Duration::from_secs(5));
    stack.assert_running();

    // The drill-down's series: one that alerted and has a DB pool, as an SRE would pick.
    let picked = stack
        .instant(
            "group by (cluster, service) (max_over_time(spikewatch_alerts_active[10m])) \
             and on (cluster, service) group by (cluster, service) \
             (max_over_time(spikewatch_series_db_pool_utilisation_ratio[10m]))",
        )
        .unwrap();
    let mut candidates: Vec<(String, String)> = picked
        .iter()
        .map(|s| {
            (
                s["metric"]["cluster"].as_str().unwrap_or("").to_string(),
                s["metric"]["service"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    candidates.sort();
    let (cluster, service) = candidates
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("no alerting series with a DB pool in {trace}"));
    let mut values = BTreeMap::new();
    values.insert("cluster".to_string(), cluster.clone());
    values.insert("service".to_string(), service.clone());
    values.insert("datasource".to_string(), "prometheus".to_string());
    let values = with_builtins(values);
    println!("trace {trace}; drill-down on cluster={cluster} service={service}");

    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut checked = 0;
    let mut results: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for d in load_dashboards() {
        for q in d.queries() {
            let expr = without_zero_fallback(&substitute(&q.expr, &values)).to_string();
            if metric_names(&expr)
                .iter()
                .any(|m| NEEDS_KAFKA.contains(&m.as_str()))
            {
                skipped.push(format!("{q} (needs kafka)"));
                continue;
            }
            checked += 1;
            if q.kind == QueryKind::Variable {
                // Grafana fills the variable from label values; the picked series must be there.
                let Some((selector, label)) = parse_label_values(&expr) else {
                    failures.push(format!("{q}: unsupported variable query {expr}"));
                    continue;
                };
                match stack.label_values(selector.as_deref(), &label) {
                    Ok(found) if found.contains(values.get(&label).unwrap_or(&String::new())) => {}
                    Ok(found) => failures.push(format!("{q}: {expr} offers {found:?}")),
                    Err(e) => failures.push(format!("{q}: {e}\n    {expr}")),
                }
                continue;
            }
            match stack.range(&expr) {
                Ok(r) if has_data(&r) => {
                    results.insert(q.to_string(), r);
                }
                Ok(_) => failures.push(format!("{q}: no data\n    {expr}")),
                Err(e) => failures.push(format!("{q}: {e}\n    {expr}")),
            }
        }
    }
    println!("{checked} dashboard queries returned data");
    for s in &skipped {
        println!("skipped: {s}");
    }
    assert!(
        failures.is_empty(),
        "dashboard queries without data:\n{}",
        failures.join("\n")
    );

    // The dashboards show the incident, not just something: an error spike among the alert
    // kinds, and the drill-down's error ratio above its baseline at some point.
    let kinds: BTreeSet<String> = results
        .iter()
        .filter(|(place, _)| {
            place.starts_with("spikewatch-fleet") && place.contains("Active alerts by kind")
        })
        .flat_map(|(_, r)| r.iter())
        .filter_map(|s| s["metric"]["kind"].as_str().map(str::to_string))
        .collect();
    assert!(
        kinds.contains("error_rate_spike"),
        "the fleet overview's alerts by kind show {kinds:?}"
    );
    let ratio = stack
        .range(&substitute(
            r#"spikewatch_series_error_ratio{cluster="$cluster", service="$service"}"#,
            &values,
        ))
        .unwrap();
    let baseline = stack
        .range(&substitute(
            r#"spikewatch_series_error_ratio_baseline{cluster="$cluster", service="$service"}"#,
            &values,
        ))
        .unwrap();
    assert!(
        max_value(&ratio) > 2.0 * max_value(&baseline),
        "the drill-down's error ratio (max {}) never rose above its baseline (max {})",
        max_value(&ratio),
        max_value(&baseline)
    );

    // spikewatch's own health rules evaluate cleanly against its real metrics.
    let rules = stack.api("/api/v1/rules").unwrap();
    let mut evaluated = 0;
    for group in rules["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            evaluated += 1;
            assert_eq!(
                rule["health"], "ok",
                "rule {} does not evaluate: {}",
                rule["name"], rule["lastError"]
            );
        }
    }
    assert!(
        evaluated > 0,
        "Prometheus loaded no rules from deploy/prometheus/rules"
    );

    // And the alerts reached the Alertmanager running the shipped routing config.
    let sent_ok = stack
        .instant(r#"sum(spikewatch_alertmanager_sends_total{outcome="ok"})"#)
        .map(|r| first_number(&r))
        .unwrap_or(f64::NAN);
    assert!(
        sent_ok >= 1.0,
        "spikewatch delivered no alert to Alertmanager (ok sends: {sent_ok})"
    );
}

/// Alertmanager's view of the alert spikewatch pushed: `/api/v2/alerts` entries whose
/// `spikewatch_id` label is `id`.
fn am_alerts(stack: &Stack, id: Option<&str>) -> Vec<Value> {
    let (status, body) = http_get(&stack.alertmanager, "/api/v2/alerts").unwrap();
    assert_eq!(status, 200, "Alertmanager /api/v2/alerts: {body}");
    let all: Vec<Value> = serde_json::from_str(&body).unwrap();
    all.into_iter()
        .filter(|a| a["labels"]["spikewatch_id"].is_string())
        .filter(|a| id.is_none_or(|id| a["labels"]["spikewatch_id"] == id))
        .collect()
}

fn spikewatch_alert(stack: &Stack, id: &str) -> Value {
    let (status, body) = http_get(&stack.spikewatch, &format!("/api/v1/alerts/{id}")).unwrap();
    assert_eq!(status, 200, "spikewatch /api/v1/alerts/{id}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Reads one sample of a metric family from Prometheus text exposition (sums matching lines).
fn exposition_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn alertmanager_lists_the_alert_then_receives_its_resolution() {
    let trace = std::env::var("SPIKEWATCH_E2E_TRACE").unwrap_or_else(|_| DEFAULT_TRACE.into());
    let mut stack = Stack::start(&trace);

    // 1. A spikewatch alert, active in Alertmanager, labelled as the contract says.
    let deadline = Instant::now() + INCIDENT_TIMEOUT;
    let pushed = loop {
        stack.assert_running();
        if let Some(a) = am_alerts(&stack, None)
            .into_iter()
            .find(|a| a["status"]["state"] == "active")
        {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "Alertmanager listed no spikewatch alert within {INCIDENT_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let id = pushed["labels"]["spikewatch_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ours = spikewatch_alert(&stack, &id);
    for (label, field) in [
        ("kind", "kind"),
        ("cluster", "cluster"),
        ("service", "service"),
    ] {
        assert_eq!(
            pushed["labels"][label], ours[field],
            "Alertmanager label {label} of {id}: {pushed:#}"
        );
    }
    assert!(
        pushed["labels"]["alertname"]
            .as_str()
            .is_some_and(|n| !n.is_empty() && n.chars().all(char::is_alphanumeric)),
        "alertname {:?}",
        pushed["labels"]["alertname"]
    );
    assert!(
        pushed["labels"]["severity"].is_string(),
        "no severity: {pushed:#}"
    );
    assert!(
        pushed["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "no summary: {pushed:#}"
    );
    assert!(
        pushed["generatorURL"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/api/v1/alerts/{id}"))),
        "generatorURL {:?} does not point at the alert",
        pushed["generatorURL"]
    );

    // 2. spikewatch resolves it; Alertmanager receives the resolution and stops listing it.
    let deadline = Instant::now() + INCIDENT_TIMEOUT;
    loop {
        stack.assert_running();
        let state = spikewatch_alert(&stack, &id)["state"].clone();
        let listed_active = am_alerts(&stack, Some(&id))
            .iter()
            .any(|a| a["status"]["state"] == "active");
        if state == "resolved" && !listed_active {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alert {id}: spikewatch state {state}, still active in Alertmanager: {listed_active}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, metrics) = http_get(&stack.alertmanager, "/metrics").unwrap();
    assert_eq!(status, 200);
    let resolved = exposition_sum(
        &metrics,
        "alertmanager_alerts_received_total",
        r#"status="resolved""#,
    );
    assert!(
        resolved >= 1.0,
        "Alertmanager counted no resolved alert received: {resolved}"
    );

    // 3. Prometheus holds the alert's gauge for that series.
    let expr = format!(
        r#"max_over_time(spikewatch_alerts_active{{kind="{}",cluster="{}",service="{}"}}[10m])"#,
        ours["kind"].as_str().unwrap(),
        ours["cluster"].as_str().unwrap(),
        ours["service"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = stack
            .instant(&expr)
            .map(|r| first_number(&r))
            .unwrap_or(f64::NAN);
        if got >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no active-alert gauge for {id}: {expr} = {got}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
