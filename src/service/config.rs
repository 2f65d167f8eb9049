//! The service configuration: what users write (`spikewatch.toml`, [`ServiceConfig`]) and the
//! checked runtime type the service runs on ([`Settings`]). Parsing refuses unknown keys; the
//! checks afterwards report every bad value at once, each naming its dotted field.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use detector::{DetectorConfig, IncidentConfig};
use ingest::prom_adapter::{PromMapping, PromMappingConfig};
use serde::Deserialize;

/// `spikewatch.toml` as written. Every section is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    pub server: ServerConfig,
    pub source: SourceConfig,
    pub alertmanager: AlertmanagerConfig,
    pub metrics: MetricsConfig,
    pub checkpoint: CheckpointConfig,
    pub detector: DetectorConfig,
    /// Fleet incidents: grouping, change ranking, traffic shares (`IncidentConfig`, see
    /// docs/incidents.md). `settle_s` defaults to `detector.allowed_lateness_s`.
    pub incidents: IncidentConfig,
    /// Whether the file set `incidents.settle_s` (otherwise it follows the lateness).
    #[serde(skip)]
    pub settle_given: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP API and `/metrics` listen on.
    pub listen: String,
    /// The URL users reach this spikewatch at; alerts sent to Alertmanager link back to it.
    /// Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// When set, `/api/*` requires `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// Requests taking longer than this are answered 408.
    pub request_timeout_s: f64,
    /// Alerts kept for the API; the oldest resolved ones go first.
    pub max_alerts: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8686".into(),
            public_url: None,
            bearer_token: None,
            request_timeout_s: 10.0,
            max_alerts: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The testdata traces replayed in a loop, event time compressed.
    Demo,
    /// Kafka topics.
    Kafka,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// Which source feeds the detector; by default Kafka when `[source.kafka]` is present,
    /// otherwise the demo.
    pub kind: Option<SourceKind>,
    pub demo: DemoConfig,
    pub kafka: Option<KafkaConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Directory of incident traces (CONTRACT section 3).
    pub traces: PathBuf,
    /// Trace names to play, in order; empty means every trace that has an incident window.
    pub names: Vec<String>,
    /// Event seconds played per wall second.
    pub speed: f64,
    /// The first this-many event seconds of each trace are played as fast as possible (the
    /// detector's warm-up and baseline-building hour is not worth watching).
    pub fast_forward_s: f64,
    /// Start over when the last trace ends.
    #[serde(rename = "loop")]
    pub repeat: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            traces: PathBuf::from("testdata/incidents"),
            names: Vec::new(),
            speed: 30.0,
            fast_forward_s: 2400.0,
            repeat: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub metrics_topic: String,
    pub changes_topic: Option<String>,
    pub dead_letter_topic: Option<String>,
    /// Where every alert transition is published (CONTRACT section 5); `""` for none.
    pub alerts_topic: Option<String>,
    /// Encoding of the metrics topic: `json`, `arrow` or `prom_adapter`.
    pub format: String,
    /// With `format = "prom_adapter"`: which Prometheus metrics and labels become which sample
    /// fields (`[source.kafka.prom_adapter]`; every key defaults, see docs/formats.md).
    pub prom_adapter: PromMappingConfig,
    /// A partition that delivered nothing for this long (wall seconds) stops holding back the
    /// event-time watermark of the others (see docs/kafka.md, *Partitions and event time*).
    pub partition_idle_s: f64,
    /// The event-time watermark never runs more than this (seconds) past the wall clock, so a
    /// producer whose clock is fast cannot make everyone else's samples late (docs/kafka.md).
    pub max_clock_ahead_s: f64,
    /// Passed through to librdkafka as is (security settings and the like).
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "spikewatch".into(),
            metrics_topic: "spikewatch.metrics".into(),
            changes_topic: Some("spikewatch.changes".into()),
            dead_letter_topic: Some("spikewatch.dlq".into()),
            alerts_topic: Some("spikewatch.alerts".into()),
            format: "json".into(),
            prom_adapter: PromMappingConfig::default(),
            partition_idle_s: 5.0,
            max_clock_ahead_s: 60.0,
            librdkafka: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager base URLs (every member of an HA pair); empty disables pushing.
    pub urls: Vec<String>,
    /// Firing alerts are re-sent this often; `endsAt` is four of these ahead.
    pub resend_interval_s: f64,
    /// Resolved alerts keep being re-sent for this long, in case a send was lost.
    pub resolved_retention_s: f64,
    /// Per-request timeout.
    pub timeout_s: f64,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            resend_interval_s: 60.0,
            resolved_retention_s: 900.0,
            timeout_s: 5.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// At most this many series get per-series gauges in `/metrics`.
    pub series_limit: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { series_limit: 2000 }
    }
}

/// `[checkpoint]`: where and how often the Kafka service saves its state (detector, incidents,
/// alert history) so a restart resumes instead of starting over. The demo never checkpoints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Checkpointing on or off; on by default (for the Kafka source).
    pub enabled: bool,
    /// Directory holding `checkpoint.bin`; created if missing. Relative paths are relative to
    /// the working directory.
    pub dir: PathBuf,
    /// A checkpoint is written at most this often (after a delivery has been processed), and
    /// on a graceful shutdown. Offsets are committed only after a checkpoint is on disk.
    pub interval_s: f64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::from("spikewatch-state"),
            interval_s: 30.0,
        }
    }
}

/// One problem with the configuration, located by its dotted field name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.message)
    }
}

/// Why a configuration was refused: every problem found, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<FieldError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} configuration error{}",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The checked configuration the service runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub public_url: String,
    pub bearer_token: Option<String>,
    pub request_timeout: Duration,
    pub max_alerts: usize,
    pub source: SourceSettings,
    pub alertmanager: Option<AlertmanagerSettings>,
    pub series_limit: usize,
    /// `None` when checkpointing is off or the source is the demo.
    pub checkpoint: Option<CheckpointSettings>,
    pub detector: DetectorConfig,
    pub incidents: IncidentConfig,
}

/// Checked `[checkpoint]` settings of a Kafka service.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointSettings {
    pub dir: PathBuf,
    pub interval: Duration,
}

impl CheckpointSettings {
    /// The checkpoint file in the state directory.
    pub fn file(&self) -> PathBuf {
        self.dir.join("checkpoint.bin")
    }
}

#[derive(Debug, Clone)]
pub enum SourceSettings {
    Demo(DemoSettings),
    Kafka(Box<KafkaConfig>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DemoSettings {
    pub traces: PathBuf,
    pub names: Vec<String>,
    pub speed: f64,
    pub fast_forward_ms: i64,
    pub repeat: bool,
}

#[derive(Debug, Clone)]
pub struct AlertmanagerSettings {
    pub urls: Vec<reqwest::Url>,
    pub resend_interval: Duration,
    pub resolved_retention: Duration,
    pub timeout: Duration,
}

/// Environment variables that override the usual deployment knobs, and the field each sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("SPIKEWATCH_LISTEN", "server.listen"),
    ("SPIKEWATCH_PUBLIC_URL", "server.public_url"),
    ("SPIKEWATCH_BEARER_TOKEN", "server.bearer_token"),
    ("SPIKEWATCH_SOURCE", "source.kind"),
    ("SPIKEWATCH_KAFKA_BROKERS", "source.kafka.brokers"),
    ("SPIKEWATCH_KAFKA_GROUP_ID", "source.kafka.group_id"),
    ("SPIKEWATCH_ALERTMANAGER_URLS", "alertmanager.urls"),
];

impl ServiceConfig {
    /// Parses TOML text; the error names the file, line and key.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigErrors> {
        let mut cfg: Self = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigErrors(vec![FieldError {
                field: field_from_toml_error(&msg, text, e.span()),
                message: format!(
                    "{msg} (in {} at line {line}, column {col})",
                    origin.display()
                ),
            }])
        })?;
        cfg.settle_given = text
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("incidents")?.get("settle_s").cloned())
            .is_some();
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![FieldError {
                field: "(file)".into(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Self::from_toml(&text, path)
    }

    /// Applies the environment overrides in [`ENV_OVERRIDES`], read through `get` (so tests do
    /// not touch the process environment).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        for &(var, field) in ENV_OVERRIDES {
            let Some(v) = get(var) else { continue };
            match var {
                "SPIKEWATCH_LISTEN" => self.server.listen = v,
                "SPIKEWATCH_PUBLIC_URL" => self.server.public_url = Some(v),
                "SPIKEWATCH_BEARER_TOKEN" => self.server.bearer_token = Some(v),
                "SPIKEWATCH_SOURCE" => match v.as_str() {
                    "demo" => self.source.kind = Some(SourceKind::Demo),
                    "kafka" => self.source.kind = Some(SourceKind::Kafka),
                    _ => errors.push(FieldError {
                        field: format!("{field} (from {var})"),
                        message: format!("`{v}` is not a source; expected `demo` or `kafka`"),
                    }),
                },
                "SPIKEWATCH_KAFKA_BROKERS" => {
                    self.source
                        .kafka
                        .get_or_insert_with(KafkaConfig::default)
                        .brokers = v;
                }
                "SPIKEWATCH_KAFKA_GROUP_ID" => {
                    self.source
                        .kafka
                        .get_or_insert_with(KafkaConfig::default)
                        .group_id = v;
                }
                "SPIKEWATCH_ALERTMANAGER_URLS" => {
                    self.alertmanager.urls = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                }
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Checks every value and builds the runtime [`Settings`]; reports all problems found.
    pub fn check(&self) -> Result<Settings, ConfigErrors> {
        let mut errs = Vec::new();
        let mut bad = |field: &str, message: String| {
            errs.push(FieldError {
                field: field.into(),
                message,
            });
        };
        let s = &self.server;
        let listen = match s.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                bad(
                    "server.listen",
                    format!("`{}` is not an address like 127.0.0.1:8686", s.listen),
                );
                None
            }
        };
        let public_url = match &s.public_url {
            Some(u) => match reqwest::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {
                    u.trim_end_matches('/').to_string()
                }
                _ => {
                    bad("server.public_url", format!("`{u}` is not an http(s) URL"));
                    String::new()
                }
            },
            None => format!("http://{}", s.listen),
        };
        if s.bearer_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            bad(
                "server.bearer_token",
                "is empty; remove it to turn authentication off".into(),
            );
        }
        if !(s.request_timeout_s.is_finite() && s.request_timeout_s > 0.0) {
            bad(
                "server.request_timeout_s",
                format!(
                    "{} must be a positive number of seconds",
                    s.request_timeout_s
                ),
            );
        }
        if s.max_alerts == 0 {
            bad("server.max_alerts", "must be at least 1".into());
        }

        let kind = self.source.kind.unwrap_or(if self.source.kafka.is_some() {
            SourceKind::Kafka
        } else {
            SourceKind::Demo
        });
        let d = &self.source.demo;
        if !(d.speed.is_finite() && d.speed > 0.0) {
            bad(
                "source.demo.speed",
                format!(
                    "{} must be a positive factor (event seconds per wall second)",
                    d.speed
                ),
            );
        }
        if !(d.fast_forward_s.is_finite() && d.fast_forward_s >= 0.0) {
            bad(
                "source.demo.fast_forward_s",
                format!("{} must be zero or more seconds", d.fast_forward_s),
            );
        }
        let source = match kind {
            SourceKind::Demo => {
                #[allow(clippy::cast_possible_truncation)]
                let fast_forward_ms = (d.fast_forward_s * 1000.0) as i64;
                SourceSettings::Demo(DemoSettings {
                    traces: d.traces.clone(),
                    names: d.names.clone(),
                    speed: d.speed,
                    fast_forward_ms,
                    repeat: d.repeat,
                })
            }
            SourceKind::Kafka => {
                let k = self.source.kafka.clone().unwrap_or_default();
                if k.brokers.trim().is_empty() {
                    bad("source.kafka.brokers", "is empty".into());
                }
                if k.group_id.trim().is_empty() {
                    bad("source.kafka.group_id", "is empty".into());
                }
                if k.metrics_topic.trim().is_empty() {
                    bad("source.kafka.metrics_topic", "is empty".into());
                }
                if !matches!(k.format.as_str(), "json" | "arrow" | "prom_adapter") {
                    bad(
                        "source.kafka.format",
                        format!(
                            "`{}` is not a format; expected `json`, `arrow` or `prom_adapter`",
                            k.format
                        ),
                    );
                }
                if let Err(e) = PromMapping::new(&k.prom_adapter) {
                    bad(
                        &format!("source.kafka.prom_adapter.{}", e.field),
                        format!("{}: {}", e.value, e.reason),
                    );
                }
                let idle = k.partition_idle_s;
                if !(idle.is_finite() && idle > 0.0 && idle <= 3_600.0) {
                    bad(
                        "source.kafka.partition_idle_s",
                        format!("{idle} must be a positive number of seconds, at most 3600"),
                    );
                }
                let ahead = k.max_clock_ahead_s;
                if !(ahead.is_finite() && (0.0..=86_400.0).contains(&ahead)) {
                    bad(
                        "source.kafka.max_clock_ahead_s",
                        format!("{ahead} must be a number of seconds from 0 to 86400"),
                    );
                }
                SourceSettings::Kafka(Box::new(k))
            }
        };

        let a = &self.alertmanager;
        let mut urls = Vec::new();
        for (i, u) in a.urls.iter().enumerate() {
            match reqwest::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => urls.push(url),
                _ => bad(
                    &format!("alertmanager.urls[{i}]"),
                    format!("`{u}` is not an http(s) URL"),
                ),
            }
        }
        for (field, v) in [
            ("alertmanager.resend_interval_s", a.resend_interval_s),
            ("alertmanager.resolved_retention_s", a.resolved_retention_s),
            ("alertmanager.timeout_s", a.timeout_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bad(field, format!("{v} must be a positive number of seconds"));
            }
        }
        if self.metrics.series_limit > 1_000_000 {
            bad(
                "metrics.series_limit",
                format!(
                    "{} would make /metrics unusably large; at most 1000000",
                    self.metrics.series_limit
                ),
            );
        }
        let c = &self.checkpoint;
        if !(c.interval_s.is_finite() && c.interval_s > 0.0 && c.interval_s <= 86_400.0) {
            bad(
                "checkpoint.interval_s",
                format!(
                    "{} must be a positive number of seconds, at most a day",
                    c.interval_s
                ),
            );
        }
        if c.dir.as_os_str().is_empty() {
            bad(
                "checkpoint.dir",
                "is empty; set `enabled = false` to turn checkpoints off".into(),
            );
        }
        let checkpoint = (c.enabled && kind == SourceKind::Kafka).then(|| CheckpointSettings {
            dir: c.dir.clone(),
            interval: Duration::from_secs_f64(c.interval_s.clamp(0.001, 86_400.0)),
        });
        if let Err(e) = self.detector.clone().check() {
            bad(
                &format!("detector.{}", e.field),
                format!("{} ({})", e.value, e.reason),
            );
        }
        let mut incidents = self.incidents.clone();
        if !self.settle_given {
            incidents.settle_s = self.detector.allowed_lateness_s;
        }
        if let Err(e) = incidents.clone().check() {
            // The incident settings' errors name their section already.
            bad(&e.field, format!("{} ({})", e.value, e.reason));
        }
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        let secs = |v: f64| Duration::from_secs_f64(v);
        Ok(Settings {
            listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8686))),
            public_url,
            bearer_token: s.bearer_token.clone(),
            request_timeout: secs(s.request_timeout_s),
            max_alerts: s.max_alerts,
            source,
            alertmanager: (!urls.is_empty()).then(|| AlertmanagerSettings {
                urls,
                resend_interval: secs(a.resend_interval_s),
                resolved_retention: secs(a.resolved_retention_s),
                timeout: secs(a.timeout_s),
            }),
            series_limit: self.metrics.series_limit,
            checkpoint,
            detector: self.detector.clone(),
            incidents,
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Best effort at the dotted key a TOML error is about: the table header above the error and
/// the key on the error's line.
fn field_from_toml_error(msg: &str, text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return "(file)".into();
    };
    let start = span.start.min(text.len());
    let before = &text[..start];
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let key = if line.starts_with('[') {
        // An error on a table header: unknown section.
        return line
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string();
    } else {
        line.split('=').next().unwrap_or("").trim().to_string()
    };
    let _ = msg;
    match (table, key.is_empty()) {
        (Some(t), false) => format!("{t}.{key}"),
        (Some(t), true) => t,
        (None, false) => key,
        (None, true) => "(file)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigErrors> {
        ServiceConfig::from_toml(text, Path::new("test.toml"))?.check()
    }

    fn fields(r: Result<Settings, ConfigErrors>) -> Vec<String> {
        match r {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn empty_file_is_the_demo_on_localhost() {
        let s = parse("").unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8686");
        assert_eq!(s.public_url, "http://127.0.0.1:8686");
        assert!(matches!(s.source, SourceSettings::Demo(_)));
        assert!(s.alertmanager.is_none());
    }

    #[test]
    fn kafka_section_selects_kafka() {
        let s = parse("[source.kafka]\nbrokers = \"k:9092\"\n").unwrap();
        match s.source {
            SourceSettings::Kafka(k) => {
                assert_eq!(k.brokers, "k:9092");
                assert_eq!(k.metrics_topic, "spikewatch.metrics");
            }
            SourceSettings::Demo(_) => panic!("expected kafka"),
        }
    }

    #[test]
    fn each_bad_value_is_named_by_its_field() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "bad listen",
                "[server]\nlisten = \"nowhere\"\n",
                &["server.listen"],
            ),
            (
                "unknown key",
                "[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n",
                &["server.listen_port"],
            ),
            ("unknown section", "[servr]\nlisten = \"x\"\n", &["servr"]),
            (
                "wrong type",
                "[metrics]\nseries_limit = \"many\"\n",
                &["metrics.series_limit"],
            ),
            (
                "bad alertmanager url and interval",
                "[alertmanager]\nurls = [\"http://am:9093\", \"am:9093\"]\nresend_interval_s = 0\n",
                &["alertmanager.urls[1]", "alertmanager.resend_interval_s"],
            ),
            (
                "detector value out of range",
                "[detector]\nwarmup_s = -5\n",
                &["detector.warmup_s"],
            ),
            (
                "unknown detector key",
                "[detector.error_rate]\nalpah = 0.1\n",
                &["detector.error_rate.alpah"],
            ),
            (
                "demo speed",
                "[source.demo]\nspeed = 0\n",
                &["source.demo.speed"],
            ),
            (
                "kafka format",
                "[source.kafka]\nformat = \"avro\"\n",
                &["source.kafka.format"],
            ),
            (
                "prom_adapter selector",
                "[source.kafka]\nformat = \"prom_adapter\"\n[source.kafka.prom_adapter]\nerrors = [\"ok\", \"http{code=~\"]\n",
                &["source.kafka.prom_adapter.errors[1]"],
            ),
            (
                "unknown prom_adapter key",
                "[source.kafka.prom_adapter]\nerrrors = []\n",
                &["source.kafka.prom_adapter.errrors"],
            ),
            (
                "partition idle time",
                "[source.kafka]\npartition_idle_s = 0\n",
                &["source.kafka.partition_idle_s"],
            ),
            (
                "clock ahead limit",
                "[source.kafka]\nmax_clock_ahead_s = -1\n",
                &["source.kafka.max_clock_ahead_s"],
            ),
            (
                "incident setting",
                "[incidents]\ngroup_window_s = -1\n",
                &["incidents.group_window_s"],
            ),
            (
                "unknown incident key",
                "[incidents]\ngroup_windw_s = 60\n",
                &["incidents.group_windw_s"],
            ),
            (
                "held samples",
                "[detector]\nmax_held_samples = 0\n",
                &["detector.max_held_samples"],
            ),
            (
                "checkpoint interval and dir",
                "[checkpoint]\ninterval_s = 0\ndir = \"\"\n",
                &["checkpoint.interval_s", "checkpoint.dir"],
            ),
            (
                "unknown checkpoint key",
                "[checkpoint]\nevery_s = 3\n",
                &["checkpoint.every_s"],
            ),
            (
                "empty token",
                "[server]\nbearer_token = \" \"\n",
                &["server.bearer_token"],
            ),
        ];
        for (name, text, want) in cases {
            assert_eq!(&fields(parse(text)), want, "case {name}");
        }
    }

    #[test]
    fn incident_settings_settle_after_the_lateness_unless_set() {
        let cases: &[(&str, &str, f64, f64)] = &[
            ("defaults", "", 120.0, 300.0),
            (
                "lateness moves settling",
                "[detector]\nallowed_lateness_s = 30\n",
                30.0,
                300.0,
            ),
            (
                "settle_s given",
                "[detector]\nallowed_lateness_s = 30\n[incidents]\nsettle_s = 90\n",
                90.0,
                300.0,
            ),
            (
                "another setting only",
                "[detector]\nallowed_lateness_s = 30\n[incidents]\ngroup_window_s = 600\n",
                30.0,
                600.0,
            ),
        ];
        for (name, text, settle, window) in cases {
            let s = parse(text).unwrap();
            assert_eq!(
                (s.incidents.settle_s, s.incidents.group_window_s),
                (*settle, *window),
                "case {name}"
            );
        }
    }

    #[test]
    fn checkpoints_are_on_for_kafka_and_never_for_the_demo() {
        /// (case, config text, expected (dir, interval in seconds) or `None` for no checkpoints)
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, u64)>);
        let cases: &[Case<'_>] = &[
            ("demo, defaults", "", None),
            ("demo, asked for", "[checkpoint]\nenabled = true\n", None),
            (
                "kafka, defaults",
                "[source.kafka]\n",
                Some(("spikewatch-state", 30)),
            ),
            (
                "kafka, set",
                "[source.kafka]\n[checkpoint]\ndir = \"/var/lib/sw\"\ninterval_s = 5\n",
                Some(("/var/lib/sw", 5)),
            ),
            (
                "kafka, turned off",
                "[source.kafka]\n[checkpoint]\nenabled = false\n",
                None,
            ),
        ];
        for (name, text, want) in cases {
            let s = parse(text).unwrap();
            let got = s
                .checkpoint
                .as_ref()
                .map(|c| (c.dir.to_string_lossy().into_owned(), c.interval.as_secs()));
            let want = want.map(|(d, i)| (d.to_owned(), i));
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut cfg =
            ServiceConfig::from_toml("[server]\nlisten = \"127.0.0.1:1\"\n", Path::new("t.toml"))
                .unwrap();
        let env = |k: &str| match k {
            "SPIKEWATCH_LISTEN" => Some("0.0.0.0:9000".to_string()),
            "SPIKEWATCH_ALERTMANAGER_URLS" => Some("http://a:9093, http://b:9093".into()),
            "SPIKEWATCH_KAFKA_BROKERS" => Some("kafka:9092".into()),
            _ => None,
        };
        cfg.apply_env(env).unwrap();
        let s = cfg.check().unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.alertmanager.unwrap().urls.len(), 2);
        assert!(matches!(s.source, SourceSettings::Kafka(ref k) if k.brokers == "kafka:9092"));

        let mut cfg = ServiceConfig::default();
        let err = cfg
            .apply_env(|k| (k == "SPIKEWATCH_SOURCE").then(|| "pulsar".to_string()))
            .unwrap_err();
        assert_eq!(err.0[0].field, "source.kind (from SPIKEWATCH_SOURCE)");
    }

    #[test]
    fn example_config_in_the_repo_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("spikewatch.example.toml");
        let cfg = ServiceConfig::load(&path).unwrap();
        cfg.check().unwrap();
    }
}
