//! Pushes alerts to Alertmanager's v2 API (`POST /api/v2/alerts`) the way Prometheus does:
//! every transition at once, firing alerts re-sent every `resend_interval` with `endsAt` four
//! intervals ahead (so a spikewatch that dies lets them expire), resolved alerts re-sent with
//! `endsAt` at their resolution for `resolved_retention`. Failed sends are retried with
//! exponential backoff; the pusher runs on its own task and never holds up detection.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use detector::{AlertEvent, AlertKind, AlertState};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::config::AlertmanagerSettings;
use super::hub::Hub;
use super::metrics::Metrics;

/// One alert as Alertmanager's API takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// The Alertmanager `alertname` of a kind: Prometheus-style PascalCase.
pub fn alertname(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::ErrorRateSpike => "ErrorRateSpike",
        AlertKind::SuccessDrop => "SuccessDrop",
        AlertKind::RetryAmplification => "RetryAmplification",
        AlertKind::DbPoolSaturation => "DbPoolSaturation",
        AlertKind::LatencySpike => "LatencySpike",
        AlertKind::TelemetryAbsent => "TelemetryAbsent",
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Builds the Alertmanager form of an alert. `starts_at` is the wall time spikewatch saw it fire
/// (event times, which may be far in the past on a replay, go in the annotations); `ends_at` is
/// the resolution time for resolved alerts, or the expiry of this send for firing ones.
pub fn postable(
    e: &AlertEvent,
    public_url: &str,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> PostableAlert {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("alertname".into(), alertname(e.kind).into());
    labels.insert("kind".into(), e.kind.as_str().into());
    labels.insert("cluster".into(), e.cluster.clone());
    labels.insert("service".into(), e.service.clone());
    labels.insert("severity".into(), e.severity.as_str().into());
    // Two alerts of one kind on one series (an earlier one resolved) stay distinct.
    labels.insert("spikewatch_id".into(), e.id.clone());
    if let Some(r) = &e.region {
        labels.insert("region".into(), r.clone());
    }
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert("summary".into(), e.summary.clone());
    annotations.insert(
        "description".into(),
        format!(
            "{} on {}/{}: {} (onset {}, detected {} event time)",
            e.kind.as_str(),
            e.cluster,
            e.service,
            e.summary,
            detector::time::format_rfc3339(e.onset),
            detector::time::format_rfc3339(e.detected_at),
        ),
    );
    if let Some(i) = &e.incident_id {
        annotations.insert("incident_id".into(), i.clone());
    }
    PostableAlert {
        labels,
        annotations,
        starts_at: rfc3339(starts_at),
        ends_at: rfc3339(ends_at),
        generator_url: format!("{public_url}/api/v1/alerts/{}", e.id),
    }
}

/// Where alerts are POSTed for a configured Alertmanager URL: `api/v2/alerts` under the URL's
/// path, whether or not that path ends in `/`. `http://am:9093/am` (Alertmanager run with
/// `--web.route-prefix=/am`, or behind an ingress path) and `http://am:9093/am/` both give
/// `http://am:9093/am/api/v2/alerts`; a bare `Url::join` would drop the last segment of the
/// first and post to `/api/v2/alerts`.
pub fn alerts_endpoint(base: &reqwest::Url) -> reqwest::Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}/api/v2/alerts"));
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// How an Alertmanager is named in `spikewatch_alertmanager_sends_total{alertmanager}` and in
/// the log: its configured URL without credentials, query, fragment or trailing `/`
/// (`http://am:9093`, `http://am:9093/am`). One value per configured URL, so the label stays
/// as small as the configuration.
pub fn target_label(base: &reqwest::Url) -> String {
    let mut url = base.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.as_str().trim_end_matches('/').to_string()
}

#[derive(Debug)]
struct Tracked {
    event: AlertEvent,
    first_seen: DateTime<Utc>,
    resolved_wall: Option<DateTime<Utc>>,
}

/// The pusher's state: what is being announced, what is waiting to be sent.
#[derive(Debug)]
pub struct Pusher {
    settings: AlertmanagerSettings,
    public_url: String,
    client: reqwest::Client,
    metrics: Metrics,
    tracked: HashMap<String, Tracked>,
    pending: Vec<String>,
    backoff: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Pusher {
    pub fn new(settings: AlertmanagerSettings, public_url: String, metrics: Metrics) -> Self {
        // Every Alertmanager's outcomes exist from the start, so rates read 0 rather than
        // nothing.
        for base in &settings.urls {
            let target = target_label(base);
            for outcome in ["ok", "error"] {
                metrics
                    .alertmanager_sends
                    .with_label_values(&[target.as_str(), outcome]);
            }
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            settings,
            public_url,
            client,
            metrics,
            tracked: HashMap::new(),
            pending: Vec::new(),
            backoff: Duration::from_secs(1),
        }
    }

    fn track(&mut self, e: &AlertEvent, now: DateTime<Utc>) {
        let t = self.tracked.entry(e.id.clone()).or_insert_with(|| Tracked {
            event: e.clone(),
            first_seen: now,
            resolved_wall: None,
        });
        t.event = e.clone();
        if e.state == AlertState::Resolved && t.resolved_wall.is_none() {
            t.resolved_wall = Some(now);
        }
        if !self.pending.contains(&e.id) {
            self.pending.push(e.id.clone());
        }
    }

    /// Everything still worth announcing goes back on the queue; long-resolved alerts are
    /// forgotten.
    fn queue_resend(&mut self, now: DateTime<Utc>) {
        let keep = chrono::Duration::from_std(self.settings.resolved_retention)
            .unwrap_or(chrono::Duration::MAX);
        self.tracked
            .retain(|_, t| t.resolved_wall.is_none_or(|r| now - r <= keep));
        self.pending = self.tracked.keys().cloned().collect();
    }

    fn payload(&self, now: DateTime<Utc>) -> Vec<PostableAlert> {
        let ahead = chrono::Duration::from_std(self.settings.resend_interval * 4)
            .unwrap_or(chrono::Duration::MAX);
        self.pending
            .iter()
            .filter_map(|id| self.tracked.get(id))
            .map(|t| {
                let ends = t.resolved_wall.unwrap_or(now + ahead);
                postable(&t.event, &self.public_url, t.first_seen, ends)
            })
            .collect()
    }

    /// Sends the queue to every Alertmanager; the queue is kept if any of them failed.
    async fn send(&mut self) -> bool {
        let body = self.payload(Utc::now());
        if body.is_empty() {
            self.pending.clear();
            return true;
        }
        let mut all_ok = true;
        for base in &self.settings.urls {
            let url = alerts_endpoint(base);
            let target = target_label(base);
            let ok = match self.client.post(url).json(&body).send().await {
                Ok(r) if r.status().is_success() => true,
                Ok(r) => {
                    eprintln!("alertmanager {target}: {}", r.status());
                    false
                }
                Err(e) => {
                    eprintln!("alertmanager {target}: {}", e.without_url());
                    false
                }
            };
            self.metrics
                .alertmanager_sends
                .with_label_values(&[target.as_str(), if ok { "ok" } else { "error" }])
                .inc();
            all_ok &= ok;
        }
        if all_ok {
            self.pending.clear();
            self.backoff = Duration::from_secs(1);
        }
        all_ok
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, hub: Hub, mut shutdown: watch::Receiver<bool>) {
        let mut rx = hub.subscribe();
        let now = Utc::now();
        let current: Vec<AlertEvent> = hub.read().firing().cloned().collect();
        for e in &current {
            self.track(e, now);
        }
        let mut resend = tokio::time::interval_at(
            Instant::now() + self.settings.resend_interval,
            self.settings.resend_interval,
        );
        let mut retry_at: Option<Instant> = (!self.pending.is_empty()).then(Instant::now);
        loop {
            let retry = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = rx.recv() => {
                    match ev {
                        Ok(e) => {
                            self.track(&e, Utc::now());
                            // Take whatever else is already waiting, then send at once.
                            while let Ok(e) = rx.try_recv() {
                                self.track(&e, Utc::now());
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let now = Utc::now();
                            let current: Vec<AlertEvent> = hub.read().alerts().iter().map(|a| a.event.clone()).collect();
                            for e in &current {
                                if e.state == AlertState::Firing || self.tracked.contains_key(&e.id) {
                                    self.track(e, now);
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    retry_at = Some(Instant::now());
                }
                _ = resend.tick() => {
                    self.queue_resend(Utc::now());
                    retry_at = Some(Instant::now());
                }
                () = retry => {
                    if self.send().await {
                        retry_at = None;
                    } else {
                        retry_at = Some(Instant::now() + self.backoff);
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detector::Severity;

    fn event(state: AlertState) -> AlertEvent {
        AlertEvent {
            id: "a-0123456789abcdef".into(),
            kind: AlertKind::ErrorRateSpike,
            state,
            severity: Severity::Critical,
            cluster: "prod-a".into(),
            service: "checkout".into(),
            region: Some("eu-west-1".into()),
            onset: 1_770_931_200_000,
            detected_at: 1_770_931_210_000,
            resolved_at: None,
            value: 0.41,
            baseline: 0.002,
            summary: "error ratio 41.0% vs baseline 0.2%".into(),
            incident_id: Some("i-1".into()),
        }
    }

    #[test]
    fn postable_alert_has_the_labels_alertmanager_routes_on() {
        let start = DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = postable(
            &event(AlertState::Firing),
            "http://sw:8686",
            start,
            start + chrono::Duration::minutes(4),
        );
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["labels"]["alertname"], "ErrorRateSpike");
        assert_eq!(v["labels"]["kind"], "error_rate_spike");
        assert_eq!(v["labels"]["cluster"], "prod-a");
        assert_eq!(v["labels"]["service"], "checkout");
        assert_eq!(v["labels"]["severity"], "critical");
        assert_eq!(v["labels"]["region"], "eu-west-1");
        assert_eq!(
            v["annotations"]["summary"],
            "error ratio 41.0% vs baseline 0.2%"
        );
        assert_eq!(v["annotations"]["incident_id"], "i-1");
        assert_eq!(v["startsAt"], "2026-11-21T10:00:00.000Z");
        assert_eq!(v["endsAt"], "2026-11-21T10:04:00.000Z");
        assert_eq!(
            v["generatorURL"],
            "http://sw:8686/api/v1/alerts/a-0123456789abcdef"
        );
    }

    #[test]
    fn the_alerts_endpoint_keeps_the_configured_path_prefix() {
        let cases = [
            ("http://am:9093", "http://am:9093/api/v2/alerts"),
            ("http://am:9093/", "http://am:9093/api/v2/alerts"),
            ("http://am:9093/am", "http://am:9093/am/api/v2/alerts"),
            ("http://am:9093/am/", "http://am:9093/am/api/v2/alerts"),
            (
                "https://ops.example.com/monitoring/alertmanager",
                "https://ops.example.com/monitoring/alertmanager/api/v2/alerts",
            ),
            (
                "https://ops.example.com/monitoring/alertmanager/",
                "https://ops.example.com/monitoring/alertmanager/api/v2/alerts",
            ),
            ("http://am:9093/am//", "http://am:9093/am/api/v2/alerts"),
            (
                "http://am:9093/am?x=1#top",
                "http://am:9093/am/api/v2/alerts",
            ),
        ];
        for (configured, want) in cases {
            let base = reqwest::Url::parse(configured).unwrap();
            assert_eq!(
                alerts_endpoint(&base).as_str(),
                want,
                "configured {configured}"
            );
        }
    }

    type Requests = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

    /// A stand-in Alertmanager on 127.0.0.1, on a thread of its own: answers every request
    /// with `status` and keeps each request's line (`POST /path HTTP/1.1`) and body.
    fn fake_alertmanager(status: u16) -> (std::net::SocketAddr, Requests) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Requests::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut head: Option<(usize, usize)> = None;
                loop {
                    if let Some((end, length)) = head {
                        if buf.len() >= end + length {
                            break;
                        }
                    }
                    let n = conn.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if head.is_none() {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let text = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let length = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            head = Some((i + 4, length));
                        }
                    }
                }
                let end = head.map_or(buf.len(), |(e, _)| e);
                let line = String::from_utf8_lossy(&buf)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let body = String::from_utf8_lossy(&buf[end.min(buf.len())..]).into_owned();
                log.lock().unwrap().push((line, body));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn alerts_are_posted_under_the_configured_path_prefix() {
        let (addr, seen) = fake_alertmanager(200);
        let mut p = pusher(900);
        p.settings.urls = vec![reqwest::Url::parse(&format!("http://{addr}/am")).unwrap()];
        p.track(&event(AlertState::Firing), Utc::now());
        assert!(p.send().await, "the send failed");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, "POST /am/api/v2/alerts HTTP/1.1");
        let body: serde_json::Value = serde_json::from_str(&seen[0].1).unwrap();
        assert_eq!(body[0]["labels"]["spikewatch_id"], "a-0123456789abcdef");
    }

    #[test]
    fn an_alertmanager_is_named_by_its_url_without_secrets() {
        let cases = [
            ("http://am:9093", "http://am:9093"),
            ("http://am:9093/", "http://am:9093"),
            ("http://am:9093/am", "http://am:9093/am"),
            ("http://am:9093/am/", "http://am:9093/am"),
            (
                "https://ops:s3cret@am.example.com/am?token=t0k#x",
                "https://am.example.com/am",
            ),
        ];
        for (configured, want) in cases {
            let base = reqwest::Url::parse(configured).unwrap();
            assert_eq!(target_label(&base), want, "configured {configured}");
        }
    }

    /// One Alertmanager of an HA pair down: its sends count as errors under its own name, the
    /// other's as ok under its name, so the failing member can be told apart.
    #[tokio::test]
    async fn sends_are_counted_per_alertmanager() {
        let (up, up_seen) = fake_alertmanager(200);
        let (down, down_seen) = fake_alertmanager(503);
        let metrics = Metrics::new(10);
        let mut p = Pusher::new(
            AlertmanagerSettings {
                urls: vec![
                    reqwest::Url::parse(&format!("http://{up}/")).unwrap(),
                    reqwest::Url::parse(&format!("http://{down}/am")).unwrap(),
                ],
                resend_interval: Duration::from_secs(60),
                resolved_retention: Duration::from_secs(900),
                timeout: Duration::from_secs(5),
            },
            "http://sw".into(),
            metrics.clone(),
        );
        let (text, _) = metrics.render(&Hub::new(10));
        let line = |target: &str, outcome: &str, n: u32| {
            format!(
                "spikewatch_alertmanager_sends_total{{alertmanager=\"{target}\",outcome=\"{outcome}\"}} {n}"
            )
        };
        let (a, b) = (format!("http://{up}"), format!("http://{down}/am"));
        for want in [
            line(&a, "ok", 0),
            line(&a, "error", 0),
            line(&b, "ok", 0),
            line(&b, "error", 0),
        ] {
            assert!(
                text.contains(&want),
                "missing `{want}` before any send in\n{text}"
            );
        }

        p.track(&event(AlertState::Firing), Utc::now());
        assert!(!p.send().await, "a failed Alertmanager fails the send");
        assert!(!p.send().await, "and the retry");
        assert_eq!(up_seen.lock().unwrap().len(), 2);
        assert_eq!(down_seen.lock().unwrap().len(), 2);
        let (text, _) = metrics.render(&Hub::new(10));
        for want in [
            line(&a, "ok", 2),
            line(&a, "error", 0),
            line(&b, "ok", 0),
            line(&b, "error", 2),
        ] {
            assert!(text.contains(&want), "missing `{want}` in\n{text}");
        }
    }

    fn pusher(retention_s: u64) -> Pusher {
        Pusher::new(
            AlertmanagerSettings {
                urls: vec![reqwest::Url::parse("http://127.0.0.1:9").unwrap()],
                resend_interval: Duration::from_secs(60),
                resolved_retention: Duration::from_secs(retention_s),
                timeout: Duration::from_secs(1),
            },
            "http://sw".into(),
            Metrics::new(10),
        )
    }

    #[test]
    fn firing_alerts_roll_their_expiry_and_resolved_ones_end_at_resolution() {
        let mut p = pusher(900);
        let t0 = Utc::now();
        p.track(&event(AlertState::Firing), t0);
        let body = p.payload(t0);
        assert_eq!(body.len(), 1);
        assert_eq!(body[0].ends_at, rfc3339(t0 + chrono::Duration::minutes(4)));

        let t1 = t0 + chrono::Duration::seconds(30);
        p.track(&event(AlertState::Resolved), t1);
        assert_eq!(p.pending.len(), 1, "one alert, queued once");
        let body = p.payload(t1 + chrono::Duration::seconds(5));
        assert_eq!(body[0].ends_at, rfc3339(t1));
        assert_eq!(body[0].starts_at, rfc3339(t0));

        // Within retention the resolved alert is re-sent; after it, forgotten.
        p.queue_resend(t1 + chrono::Duration::seconds(600));
        assert_eq!(p.pending.len(), 1);
        p.queue_resend(t1 + chrono::Duration::seconds(901));
        assert!(p.pending.is_empty());
        assert!(p.tracked.is_empty());
    }
}
