//! prometheus-kafka-adapter JSON: Prometheus samples, one per message, assembled into
//! spikewatch samples.
//!
//! # Input
//!
//! What Prometheus `remote_write` through prometheus-kafka-adapter produces, one message per
//! Prometheus sample:
//!
//! ```json
//! {"labels":{"__name__":"http_requests_total","cluster":"prod-use1-a","service":"conversation","code":"503"},
//!  "name":"http_requests_total","timestamp":"2026-02-12T21:20:10Z","value":"4213"}
//! ```
//!
//! `timestamp` is RFC 3339 (the adapter writes whole seconds); `value` is a string, which may be
//! `"NaN"` (also Prometheus' staleness marker), `"+Inf"` or `"-Inf"`. The metric name is `name`,
//! or the `__name__` label when `name` is absent. Other fields are ignored.
//!
//! # Mapping
//!
//! A [`PromMappingConfig`] says which Prometheus series feed which sample field, with
//! PromQL-style selectors (`metric{label="v", label=~"re", label!="v", label!~"re"}`, regexes
//! anchored as in PromQL, a missing label matching as the empty string):
//!
//! - `requests`, `errors`, `retries`: cumulative counters. Per time series (metric + full label
//!   set) the decoder keeps the last value and turns each new point into a delta; a value
//!   below the last one is a counter reset, and the delta is the new value (the counter
//!   restarted from zero). A field is the sum of the deltas of every matching time series.
//! - `db_pool_active`, `db_pool_max`, `db_pool_pending`: gauges, summed over matching series.
//! - `latency_p50_ms`, `latency_p99_ms`: gauges (summary quantiles), times `latency_scale`
//!   (default 1000: seconds to milliseconds), the maximum over matching series.
//!
//! The series key comes from labels: `cluster_labels`, `service_labels`, `region_labels` (the
//! first label present wins). Metrics no selector matches are ignored, not rejected: a
//! `remote_write` stream carries far more than spikewatch needs.
//!
//! # Assembly
//!
//! All points of one series (cluster, service) with the same timestamp form one spikewatch
//! sample (ts = the scrape time). That sample is emitted once a point of the same series at
//! least `close_after_s` newer has arrived, and never earlier than the first point of a newer
//! scrape (so with the default of 15 s and 10 s scrapes, ts closes when ts + 20 s arrives:
//! points of one scrape may be spread over partitions and arrive interleaved with the next
//! scrape's). A point for an already emitted sample is ignored as `late` (for a counter, its
//! increase is not lost: the next delta includes it). [`crate::format::MessageDecoder::finish`]
//! emits what is still open at the end of the input.
//!
//! - The first scrape of a series only primes its counters: it has no deltas, so no sample.
//! - A counter time series first seen at a scrape later than the series' first scrape (for
//!   example `http_requests_total{code="503"}` appearing when the first 503 happens, or a
//!   restarted pod, or a counter coming back after a staleness marker) is taken as having
//!   started at zero: its whole value is the delta. This holds whether or not the first
//!   scrape has closed yet, so the next scrape's new error counter is never lost.
//! - A sample is emitted only if some `requests` counter contributed a delta; `interval_s` is
//!   the time since the series' previous scrape.
//! - `NaN` on a counter ends that time series (staleness): its state is dropped. `NaN` on a
//!   gauge leaves the field absent. `±Inf` is rejected (`not_finite`), a negative counter
//!   `negative_count`.
//! - Deltas are rounded to whole counts; if `errors` or `retries` exceed `requests` (counters
//!   scraped a moment apart) they are clamped to `requests` and counted in
//!   [`AssemblerStats::clamped`].
//! - A point already taken (same time series and timestamp, e.g. a redelivery) is ignored as
//!   `duplicate`, so at-least-once redelivery never double counts.
//!
//! [`PromEncoder`] writes native samples in this format with the default mapping's metric
//! names (used by tests and `spikewatch produce --format prom`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::format::{check_row, empty_row, Accepted, Ignored, RowLimits};
use crate::json::{JsonDecoder, RejectReason, Rejection, Sample, MAX_INTERVAL_MS, MAX_KEY_BYTES};

/// The mapping from Prometheus metrics to sample fields, as configured (see the module docs).
/// Every field has a default (the metric names of common instrumentation libraries); a field
/// given in configuration replaces its default entirely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromMappingConfig {
    /// Labels that may hold the cluster, in order of preference.
    pub cluster_labels: Vec<String>,
    /// Labels that may hold the service, in order of preference.
    pub service_labels: Vec<String>,
    /// Labels that may hold the region, in order of preference.
    pub region_labels: Vec<String>,
    /// `interval_s` of a sample whose series has no earlier scrape. Default 10.
    pub default_interval_s: f64,
    /// A sample closes once a point this much newer arrives for its series. Default 15.
    pub close_after_s: f64,
    /// Latency metric values are multiplied by this to get milliseconds. Default 1000.
    pub latency_scale: f64,
    pub requests: Vec<String>,
    pub errors: Vec<String>,
    pub retries: Vec<String>,
    pub latency_p50_ms: Vec<String>,
    pub latency_p99_ms: Vec<String>,
    pub db_pool_active: Vec<String>,
    pub db_pool_max: Vec<String>,
    pub db_pool_pending: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for PromMappingConfig {
    fn default() -> Self {
        Self {
            cluster_labels: strings(&["cluster"]),
            service_labels: strings(&["service", "job"]),
            region_labels: strings(&["region"]),
            default_interval_s: 10.0,
            close_after_s: 15.0,
            latency_scale: 1000.0,
            requests: strings(&[
                "http_requests_total",
                "http_server_requests_seconds_count",
                "http_server_request_duration_seconds_count",
                "grpc_server_handled_total",
            ]),
            errors: strings(&[
                r#"http_requests_total{code=~"5.."}"#,
                r#"http_server_requests_seconds_count{outcome="SERVER_ERROR"}"#,
                r#"http_server_request_duration_seconds_count{http_response_status_code=~"5.."}"#,
                r#"grpc_server_handled_total{grpc_code=~"Unknown|DeadlineExceeded|Internal|Unavailable|DataLoss"}"#,
            ]),
            retries: strings(&["envoy_cluster_upstream_rq_retry"]),
            latency_p50_ms: strings(&[r#"http_server_requests_seconds{quantile="0.5"}"#]),
            latency_p99_ms: strings(&[r#"http_server_requests_seconds{quantile="0.99"}"#]),
            db_pool_active: strings(&[
                "hikaricp_connections_active",
                r#"db_client_connection_count{state="used"}"#,
            ]),
            db_pool_max: strings(&["hikaricp_connections_max", "db_client_connection_max"]),
            db_pool_pending: strings(&[
                "hikaricp_connections_pending",
                "db_client_connection_pending_requests",
                "pgbouncer_pools_client_waiting_connections",
            ]),
        }
    }
}

/// A mapping that cannot be used; names the field and the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid prom_adapter mapping `{field}` = {value}: {reason}")]
pub struct MappingError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

/// The sample field a selector feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Requests,
    Errors,
    Retries,
    P50,
    P99,
    PoolActive,
    PoolMax,
    PoolPending,
}

impl Target {
    const ALL: [Target; 8] = [
        Target::Requests,
        Target::Errors,
        Target::Retries,
        Target::P50,
        Target::P99,
        Target::PoolActive,
        Target::PoolMax,
        Target::PoolPending,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::Requests => "requests",
            Target::Errors => "errors",
            Target::Retries => "retries",
            Target::P50 => "latency_p50_ms",
            Target::P99 => "latency_p99_ms",
            Target::PoolActive => "db_pool_active",
            Target::PoolMax => "db_pool_max",
            Target::PoolPending => "db_pool_pending",
        }
    }

    fn is_counter(self) -> bool {
        matches!(self, Target::Requests | Target::Errors | Target::Retries)
    }

    /// Index among the gauge fields (P50..PoolPending).
    fn gauge_index(self) -> usize {
        self as usize - Target::P50 as usize
    }

    fn selectors(self, cfg: &PromMappingConfig) -> &[String] {
        match self {
            Target::Requests => &cfg.requests,
            Target::Errors => &cfg.errors,
            Target::Retries => &cfg.retries,
            Target::P50 => &cfg.latency_p50_ms,
            Target::P99 => &cfg.latency_p99_ms,
            Target::PoolActive => &cfg.db_pool_active,
            Target::PoolMax => &cfg.db_pool_max,
            Target::PoolPending => &cfg.db_pool_pending,
        }
    }
}

const GAUGES: usize = 5;

#[derive(Debug, Clone)]
enum MatchOp {
    Eq(String),
    Ne(String),
    Re(regex::Regex),
    NotRe(regex::Regex),
}

#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: MatchOp,
}

/// A PromQL-style instant vector selector: a metric name and label matchers.
#[derive(Debug, Clone)]
pub struct Selector {
    metric: String,
    matchers: Vec<Matcher>,
}

impl Selector {
    /// Parses `name` or `name{label="v", label=~"re", ...}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        p.ws();
        let metric = p.ident(true).ok_or("expected a metric name")?;
        p.ws();
        let mut matchers = Vec::new();
        if p.eat(b'{') {
            loop {
                p.ws();
                if p.eat(b'}') {
                    break;
                }
                let label = p.ident(false).ok_or("expected a label name")?;
                p.ws();
                let op = if p.eat_str("=~") {
                    "=~"
                } else if p.eat_str("!~") {
                    "!~"
                } else if p.eat_str("!=") {
                    "!="
                } else if p.eat(b'=') {
                    "="
                } else {
                    return Err(format!("expected =, !=, =~ or !~ after label {label}"));
                };
                p.ws();
                let value = p.quoted()?;
                let anchored = |v: &str| {
                    regex::Regex::new(&format!("^(?:{v})$"))
                        .map_err(|e| format!("bad regex {v:?}: {e}"))
                };
                let op = match op {
                    "=" => MatchOp::Eq(value),
                    "!=" => MatchOp::Ne(value),
                    "=~" => MatchOp::Re(anchored(&value)?),
                    _ => MatchOp::NotRe(anchored(&value)?),
                };
                matchers.push(Matcher { label, op });
                p.ws();
                if p.eat(b',') {
                    continue;
                }
                p.ws();
                if p.eat(b'}') {
                    break;
                }
                return Err("expected , or } after a matcher".into());
            }
        }
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("unexpected text at byte {}", p.i));
        }
        Ok(Self { metric, matchers })
    }

    pub fn metric(&self) -> &str {
        &self.metric
    }

    fn matches(&self, labels: &Labels<'_>) -> bool {
        self.matchers.iter().all(|m| {
            let v = labels.get(m.label.as_str()).map_or("", |v| v.as_ref());
            match &m.op {
                MatchOp::Eq(x) => v == x,
                MatchOp::Ne(x) => v != x,
                MatchOp::Re(r) => r.is_match(v),
                MatchOp::NotRe(r) => !r.is_match(v),
            }
        })
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.s.get(self.i) == Some(&c);
        self.i += usize::from(hit);
        hit
    }

    fn eat_str(&mut self, t: &str) -> bool {
        let hit = self.s[self.i..].starts_with(t.as_bytes());
        if hit {
            self.i += t.len();
        }
        hit
    }

    /// A metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or label name (no colons).
    fn ident(&mut self, colons: bool) -> Option<String> {
        let ok = |c: u8, first: bool| {
            c.is_ascii_alphabetic()
                || c == b'_'
                || (colons && c == b':')
                || (!first && c.is_ascii_digit())
        };
        let start = self.i;
        while let Some(&c) = self.s.get(self.i) {
            if !ok(c, self.i == start) {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A `"…"` or `'…'` string with `\\`, `\"`, `\'`, `\n`, `\t` escapes.
    fn quoted(&mut self) -> Result<String, String> {
        let q = match self.s.get(self.i) {
            Some(&q @ (b'"' | b'\'')) => q,
            _ => return Err("expected a quoted label value".into()),
        };
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err("unterminated label value".into()),
                Some(&c) if c == q => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    let e = self.s.get(self.i + 1).ok_or("unterminated escape")?;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        other => *other,
                    });
                    self.i += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| "label value is not UTF-8".to_owned())
    }
}

/// A checked, compiled [`PromMappingConfig`].
#[derive(Debug, Clone)]
pub struct PromMapping {
    cluster_labels: Vec<String>,
    service_labels: Vec<String>,
    region_labels: Vec<String>,
    default_interval_ms: u32,
    close_after_ms: i64,
    latency_scale: f64,
    /// metric name -> (target, selector)
    by_metric: HashMap<String, Vec<(Target, Selector)>>,
}

impl PromMapping {
    pub fn new(cfg: &PromMappingConfig) -> Result<Self, MappingError> {
        let bad = |field: &str, value: String, reason: &str| MappingError {
            field: field.to_owned(),
            value,
            reason: reason.to_owned(),
        };
        for (field, labels) in [
            ("cluster_labels", &cfg.cluster_labels),
            ("service_labels", &cfg.service_labels),
        ] {
            if labels.is_empty() {
                return Err(bad(field, "[]".into(), "must name at least one label"));
            }
        }
        let interval = cfg.default_interval_s;
        if !(interval.is_finite()
            && interval >= 0.001
            && interval * 1000.0 <= f64::from(MAX_INTERVAL_MS))
        {
            return Err(bad(
                "default_interval_s",
                interval.to_string(),
                "must be in 0.001..=86400",
            ));
        }
        if !(cfg.close_after_s.is_finite() && (0.0..=86_400.0).contains(&cfg.close_after_s)) {
            return Err(bad(
                "close_after_s",
                cfg.close_after_s.to_string(),
                "must be in 0..=86400",
            ));
        }
        if !(cfg.latency_scale.is_finite() && cfg.latency_scale > 0.0) {
            return Err(bad(
                "latency_scale",
                cfg.latency_scale.to_string(),
                "must be a positive number",
            ));
        }
        if cfg.requests.is_empty() {
            return Err(bad(
                "requests",
                "[]".into(),
                "must have at least one selector",
            ));
        }
        let mut by_metric: HashMap<String, Vec<(Target, Selector)>> = HashMap::new();
        for t in Target::ALL {
            for (i, text) in t.selectors(cfg).iter().enumerate() {
                let sel = Selector::parse(text)
                    .map_err(|e| bad(&format!("{}[{i}]", t.name()), format!("{text:?}"), &e))?;
                by_metric
                    .entry(sel.metric.clone())
                    .or_default()
                    .push((t, sel));
            }
        }
        Ok(Self {
            cluster_labels: cfg.cluster_labels.clone(),
            service_labels: cfg.service_labels.clone(),
            region_labels: cfg.region_labels.clone(),
            // Checked above to be in 1..=MAX_INTERVAL_MS once rounded.
            default_interval_ms: (interval * 1000.0).round() as u32,
            close_after_ms: (cfg.close_after_s * 1000.0).round() as i64,
            latency_scale: cfg.latency_scale,
            by_metric,
        })
    }

    /// The fields (by name) a metric with these labels feeds; empty when unmapped.
    pub fn fields_for(&self, metric: &str, labels: &BTreeMap<String, String>) -> Vec<&'static str> {
        let labels: Labels<'_> = labels
            .iter()
            .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
            .collect();
        self.targets(metric, &labels)
            .into_iter()
            .map(Target::name)
            .collect()
    }

    fn targets(&self, metric: &str, labels: &Labels<'_>) -> Vec<Target> {
        let mut out = Vec::new();
        if let Some(sels) = self.by_metric.get(metric) {
            for (t, sel) in sels {
                if !out.contains(t) && sel.matches(labels) {
                    out.push(*t);
                }
            }
        }
        out
    }
}

impl Default for PromMapping {
    fn default() -> Self {
        match Self::new(&PromMappingConfig::default()) {
            Ok(m) => m,
            // The default configuration is a constant; `default_mapping_compiles` tests it.
            Err(e) => unreachable!("default prom_adapter mapping: {e}"),
        }
    }
}

type Labels<'a> = BTreeMap<Cow<'a, str>, Cow<'a, str>>;

/// One adapter message.
#[derive(Debug, Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    labels: Labels<'a>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    value: Cow<'a, str>,
}

/// Counters of the assembler, for metrics and summaries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AssemblerStats {
    /// Samples emitted into batches.
    pub emitted: u64,
    /// Scrapes dropped because they only primed the series' counters (its first scrape).
    pub priming: u64,
    /// Scrapes dropped because no `requests` counter contributed.
    pub incomplete: u64,
    /// Assembled samples that failed the sample checks (e.g. a key over 128 bytes).
    pub invalid: u64,
    /// Samples whose `errors` or `retries` were clamped to `requests`.
    pub clamped: u64,
    pub unmapped: u64,
    pub duplicate: u64,
    pub late: u64,
    pub stale: u64,
}

#[derive(Debug, Clone, Copy)]
struct CounterState {
    ts_ms: i64,
    value: f64,
}

#[derive(Debug, Default)]
struct Partial {
    requests: f64,
    errors: f64,
    retries: Option<f64>,
    has_requests: bool,
    /// Per gauge field: time series identity -> value (a map, so redelivery is idempotent).
    gauges: [BTreeMap<String, f64>; GAUGES],
}

#[derive(Debug, Default)]
struct SeriesState {
    region: Option<String>,
    /// Whether a scrape of this series has closed (its counters have a baseline).
    primed: bool,
    /// Timestamp of the series' first scrape (the oldest point taken): counters first seen
    /// after it started from zero within the scrapes since.
    first_ms: Option<i64>,
    last_closed_ms: Option<i64>,
    newest_ms: i64,
    counters: HashMap<String, CounterState>,
    pending: BTreeMap<i64, Partial>,
}

/// The assembly state of the Prometheus format (one per [`crate::format::MessageDecoder`]).
#[derive(Debug, Default)]
pub(crate) struct PromAssembler {
    /// cluster -> service -> state.
    series: HashMap<String, HashMap<String, SeriesState>>,
    stats: AssemblerStats,
    /// The mapping's `default_interval_s` in ms, from the last message decoded.
    default_interval_ms: u32,
}

fn reject(reason: RejectReason, detail: impl Into<String>) -> Rejection {
    Rejection::new(reason, detail)
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => {
            // Rust also reads "infinity" and the like; only plain decimals get here by intent.
            let b = s.as_bytes();
            let numeric = !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'));
            if numeric {
                s.parse().ok()
            } else {
                None
            }
        }
    }
}

/// `metric{k="v",...}` without `__name__`, labels sorted: the identity of one time series.
fn identity(metric: &str, labels: &Labels<'_>) -> String {
    let mut id = String::with_capacity(64);
    id.push_str(metric);
    id.push('{');
    for (k, v) in labels {
        if k == "__name__" {
            continue;
        }
        let _ = write!(id, "{k}={v:?},");
    }
    id.push('}');
    id
}

fn first_label<'l>(labels: &'l Labels<'_>, names: &[String]) -> Option<&'l str> {
    names.iter().find_map(|n| {
        labels
            .get(n.as_str())
            .map(|v| v.as_ref())
            .filter(|v| !v.is_empty())
    })
}

impl PromAssembler {
    pub(crate) fn stats(&self) -> &AssemblerStats {
        &self.stats
    }

    pub(crate) fn pending(&self) -> usize {
        self.series
            .values()
            .flat_map(HashMap::values)
            .map(|s| s.pending.len())
            .sum()
    }

    pub(crate) fn decode(
        &mut self,
        m: &PromMapping,
        msg: &[u8],
        max_bytes: usize,
        limits: RowLimits,
        out: &mut JsonDecoder,
    ) -> Result<Accepted, Rejection> {
        use RejectReason as R;
        if msg.len() > max_bytes {
            return Err(reject(
                R::TooLarge,
                format!(
                    "message of {} bytes exceeds the limit of {max_bytes} bytes",
                    msg.len()
                ),
            ));
        }
        let text = std::str::from_utf8(msg).map_err(|e| {
            reject(
                R::NotUtf8,
                format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            )
        })?;
        let parsed: Message<'_> = serde_json::from_str(text).map_err(|e| {
            let detail = crate::format::clip(&e.to_string());
            let reason = match e.classify() {
                serde_json::error::Category::Data if detail.starts_with("missing field") => {
                    R::MissingField
                }
                serde_json::error::Category::Data => R::WrongType,
                _ => R::MalformedJson,
            };
            reject(reason, detail)
        })?;
        let metric = match (&parsed.name, parsed.labels.get("__name__")) {
            (Some(n), _) if !n.is_empty() => n.as_ref(),
            (_, Some(n)) if !n.is_empty() => n.as_ref(),
            _ => {
                return Err(reject(
                    R::MissingField,
                    "no metric name (`name` or label `__name__`)",
                ))
            }
        };
        let targets = m.targets(metric, &parsed.labels);
        if targets.is_empty() {
            self.stats.unmapped += 1;
            return Ok(Accepted::Ignored(Ignored::Unmapped));
        }
        let ts = crate::time::parse_rfc3339_ms(&parsed.timestamp).ok_or_else(|| {
            reject(
                R::InvalidTimestamp,
                format!(
                    "timestamp {:?} is not RFC 3339",
                    crate::format::clip(&parsed.timestamp)
                ),
            )
        })?;
        if ts > limits.now_ms.saturating_add(limits.max_future_ms) {
            return Err(reject(
                R::FutureTimestamp,
                format!(
                    "timestamp {} is more than {} s ahead of now",
                    parsed.timestamp,
                    limits.max_future_ms / 1000
                ),
            ));
        }
        let value = parse_value(&parsed.value).ok_or_else(|| {
            reject(
                R::InvalidValue,
                format!(
                    "value {:?} is not a number",
                    crate::format::clip(&parsed.value)
                ),
            )
        })?;
        if value.is_infinite() {
            return Err(reject(
                R::NotFinite,
                format!("{metric} value is {}", parsed.value),
            ));
        }
        let is_counter = targets.iter().any(|t| t.is_counter());
        if is_counter && value < 0.0 {
            return Err(reject(
                R::NegativeCount,
                format!("counter {metric} is negative: {}", parsed.value),
            ));
        }
        let key = |names: &[String], what: &str| {
            let v = first_label(&parsed.labels, names).ok_or_else(|| {
                reject(
                    R::MissingField,
                    format!(
                        "{metric} has no {what} label (looked for {})",
                        names.join(", ")
                    ),
                )
            })?;
            if v.len() > MAX_KEY_BYTES {
                return Err(reject(
                    R::InvalidKey,
                    format!("{what} is {} bytes, longer than {MAX_KEY_BYTES}", v.len()),
                ));
            }
            Ok(v)
        };
        let cluster = key(&m.cluster_labels, "cluster")?;
        let service = key(&m.service_labels, "service")?;
        let region = first_label(&parsed.labels, &m.region_labels);

        let state = self
            .series
            .entry(cluster.to_owned())
            .or_default()
            .entry(service.to_owned())
            .or_default();
        if state.region.is_none() {
            state.region = region.map(str::to_owned);
        }
        if state.last_closed_ms.is_some_and(|closed| ts <= closed) {
            self.stats.late += 1;
            return Ok(Accepted::Ignored(Ignored::Late));
        }
        let id = identity(metric, &parsed.labels);
        if value.is_nan() {
            // Staleness: the time series ended; a later point starts it afresh.
            state.counters.remove(&id);
            self.stats.stale += 1;
            return Ok(Accepted::Ignored(Ignored::Stale));
        }

        let mut took = false;
        if is_counter {
            let delta = match state.counters.get(&id) {
                Some(c) if ts <= c.ts_ms => None,
                Some(c) if value >= c.value => Some(Some(value - c.value)),
                // A reset: the counter restarted from zero and has counted `value` since.
                Some(_) => Some(Some(value)),
                None if state.first_ms.is_some_and(|first| ts > first) => Some(Some(value)),
                None => Some(None),
            };
            if let Some(delta) = delta {
                took = true;
                state
                    .counters
                    .insert(id.clone(), CounterState { ts_ms: ts, value });
                let p = state.pending.entry(ts).or_default();
                if let Some(d) = delta {
                    for t in &targets {
                        match t {
                            Target::Requests => {
                                p.requests += d;
                                p.has_requests = true;
                            }
                            Target::Errors => p.errors += d,
                            Target::Retries => *p.retries.get_or_insert(0.0) += d,
                            _ => {}
                        }
                    }
                }
            }
        }
        for t in targets.iter().filter(|t| !t.is_counter()) {
            let v = if matches!(t, Target::P50 | Target::P99) {
                value * m.latency_scale
            } else {
                value
            };
            let p = state.pending.entry(ts).or_default();
            let slot = &mut p.gauges[t.gauge_index()];
            if slot.get(&id) != Some(&v) {
                took = true;
            }
            slot.insert(id.clone(), v);
        }
        if !took {
            self.stats.duplicate += 1;
            return Ok(Accepted::Ignored(Ignored::Duplicate));
        }

        state.newest_ms = state.newest_ms.max(ts);
        state.first_ms = Some(state.first_ms.map_or(ts, |first| first.min(ts)));
        let (cluster, service) = (cluster.to_owned(), service.to_owned());
        self.default_interval_ms = m.default_interval_ms;
        let n = self.close(&cluster, &service, Some(m.close_after_ms), limits, out);
        Ok(if n > 0 {
            Accepted::Rows(n)
        } else {
            Accepted::Pending
        })
    }

    /// Emits the closed samples of one series (all of them when `close_after_ms` is `None`).
    /// Returns the rows added.
    fn close(
        &mut self,
        cluster: &str,
        service: &str,
        close_after_ms: Option<i64>,
        limits: RowLimits,
        out: &mut JsonDecoder,
    ) -> usize {
        let Some(state) = self
            .series
            .get_mut(cluster)
            .and_then(|s| s.get_mut(service))
        else {
            return 0;
        };
        let mut rows = 0;
        while let Some(entry) = state.pending.first_entry() {
            let pts = *entry.key();
            let ready = match close_after_ms {
                None => true,
                Some(after) => pts < state.newest_ms && state.newest_ms - pts >= after,
            };
            if !ready {
                break;
            }
            let partial = entry.remove();
            let prev = state.last_closed_ms.replace(pts);
            let was_primed = std::mem::replace(&mut state.primed, true);
            if !partial.has_requests {
                if was_primed {
                    self.stats.incomplete += 1;
                } else {
                    self.stats.priming += 1;
                }
                continue;
            }
            let interval_ms = match prev {
                Some(p) => u32::try_from(pts - p)
                    .unwrap_or(MAX_INTERVAL_MS)
                    .clamp(1, MAX_INTERVAL_MS),
                None => self.default_interval_ms,
            };
            let count = |x: f64| x.round().max(0.0) as u64;
            let requests = count(partial.requests);
            let mut errors = count(partial.errors);
            let mut retries = partial.retries.map(count);
            if errors > requests || retries.is_some_and(|r| r > requests) {
                self.stats.clamped += 1;
                errors = errors.min(requests);
                retries = retries.map(|r| r.min(requests));
            }
            let g = |t: Target| &partial.gauges[t.gauge_index()];
            let max_of = |t: Target| g(t).values().copied().reduce(f64::max);
            let sum_u32 = |t: Target| {
                let vals = g(t);
                (!vals.is_empty()).then(|| {
                    let s: f64 = vals.values().map(|v| v.max(0.0)).sum();
                    s.round().min(f64::from(u32::MAX)) as u32
                })
            };
            let mut row = empty_row(Cow::Borrowed(cluster), Cow::Borrowed(service), pts);
            row.region = state.region.as_deref().map(Cow::Borrowed);
            row.interval_ms = interval_ms;
            row.requests = requests;
            row.errors = errors;
            row.retries = retries;
            row.latency_p50_ms = max_of(Target::P50);
            row.latency_p99_ms = max_of(Target::P99);
            row.db_pool_active = sum_u32(Target::PoolActive);
            row.db_pool_max = sum_u32(Target::PoolMax);
            row.db_pool_pending = sum_u32(Target::PoolPending);
            match check_row(&row, limits).and_then(|()| out.push_row(&row)) {
                Ok(()) => {
                    self.stats.emitted += 1;
                    rows += 1;
                }
                Err(_) => self.stats.invalid += 1,
            }
        }
        rows
    }

    /// Emits every open sample of every series.
    pub(crate) fn finish(&mut self, limits: RowLimits, out: &mut JsonDecoder) -> usize {
        let keys: Vec<(String, String)> = self
            .series
            .iter()
            .flat_map(|(c, ss)| ss.keys().map(move |s| (c.clone(), s.clone())))
            .collect();
        keys.iter()
            .map(|(c, s)| self.close(c, s, None, limits, out))
            .sum()
    }
}

/// Writes native samples as prometheus-kafka-adapter messages, keeping cumulative counters
/// per series, with the metric names of the default mapping:
///
/// | sample field | metric |
/// |---|---|
/// | requests - errors, errors | `http_requests_total{code="200"}`, `http_requests_total{code="500"}` (once non-zero) |
/// | retries | `envoy_cluster_upstream_rq_retry` |
/// | latency p50 / p99 | `http_server_requests_seconds{quantile="0.5"}` / `{quantile="0.99"}`, in seconds |
/// | db_pool_active / max / pending | `hikaricp_connections_active` / `_max` / `_pending` (`pool="main"`) |
///
/// Labels are `cluster`, `service` and `region` (when set). Timestamps are whole seconds
/// (sub-second parts are dropped, as the adapter does).
#[derive(Debug, Default)]
pub struct PromEncoder {
    totals: HashMap<(String, String), Totals>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    ok: u64,
    errors: u64,
    retries: u64,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    labels: BTreeMap<&'a str, &'a str>,
    name: &'a str,
    timestamp: &'a str,
    value: &'a str,
}

impl PromEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The messages for one sample (each one JSON object).
    pub fn encode(&mut self, s: &Sample) -> Vec<String> {
        let t = self
            .totals
            .entry((s.cluster.clone(), s.service.clone()))
            .or_default();
        t.ok = t.ok.saturating_add(s.requests.saturating_sub(s.errors));
        t.errors = t.errors.saturating_add(s.errors.min(s.requests));
        t.retries = t.retries.saturating_add(s.retries.unwrap_or(0));
        let totals = *t;
        let ts = crate::time::format_rfc3339_ms(s.ts_ms.div_euclid(1000) * 1000)
            .unwrap_or_else(|| "0000-01-01T00:00:00Z".to_owned());
        let mut out = Vec::with_capacity(8);
        let mut push = |name: &str, extra: &[(&str, &str)], value: String| {
            let mut labels: BTreeMap<&str, &str> = BTreeMap::new();
            labels.insert("__name__", name);
            labels.insert("cluster", &s.cluster);
            labels.insert("service", &s.service);
            if let Some(r) = &s.region {
                labels.insert("region", r);
            }
            for (k, v) in extra {
                labels.insert(k, v);
            }
            let msg = OutMessage {
                labels,
                name,
                timestamp: &ts,
                value: &value,
            };
            if let Ok(text) = serde_json::to_string(&msg) {
                out.push(text);
            }
        };
        push(
            "http_requests_total",
            &[("code", "200")],
            totals.ok.to_string(),
        );
        if totals.errors > 0 {
            push(
                "http_requests_total",
                &[("code", "500")],
                totals.errors.to_string(),
            );
        }
        if s.retries.is_some() {
            push(
                "envoy_cluster_upstream_rq_retry",
                &[],
                totals.retries.to_string(),
            );
        }
        for (q, v) in [("0.5", s.latency_p50_ms), ("0.99", s.latency_p99_ms)] {
            if let Some(v) = v {
                push(
                    "http_server_requests_seconds",
                    &[("quantile", q)],
                    (v / 1000.0).to_string(),
                );
            }
        }
        for (name, v) in [
            ("hikaricp_connections_active", s.db_pool_active),
            ("hikaricp_connections_max", s.db_pool_max),
            ("hikaricp_connections_pending", s.db_pool_pending),
        ] {
            if let Some(v) = v {
                push(name, &[("pool", "main")], v.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mapping_compiles() {
        PromMapping::new(&PromMappingConfig::default()).unwrap();
    }

    #[test]
    fn selectors() {
        let labels = |pairs: &[(&str, &str)]| -> Labels<'static> {
            pairs
                .iter()
                .map(|(k, v)| (Cow::Owned((*k).to_owned()), Cow::Owned((*v).to_owned())))
                .collect()
        };
        // (name, selector, labels, matches)
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case<'_>] = &[
            (
                "bare name matches any labels",
                "m",
                &[("code", "200")],
                true,
            ),
            (
                "regex is anchored",
                r#"m{code=~"5.."}"#,
                &[("code", "5030")],
                false,
            ),
            (
                "regex matches",
                r#"m{code=~"5..|403"}"#,
                &[("code", "403")],
                true,
            ),
            (
                "missing label is empty for !=",
                r#"m{code!="200"}"#,
                &[],
                true,
            ),
            (
                "missing label is empty for =",
                r#"m{code="200"}"#,
                &[],
                false,
            ),
            (
                "negative regex",
                r#"m{code!~"2.."}"#,
                &[("code", "200")],
                false,
            ),
            (
                "several matchers all apply",
                r#"m{a="1", b='2'}"#,
                &[("a", "1"), ("b", "3")],
                false,
            ),
            ("escaped quote", r#"m{a="x\"y"}"#, &[("a", "x\"y")], true),
        ];
        for (name, sel, l, want) in cases {
            let s = Selector::parse(sel).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.matches(&labels(l)), *want, "{name}");
        }
    }

    #[test]
    fn bad_selectors_are_refused() {
        let cases = [
            ("no name", "{code=\"1\"}"),
            ("bad op", "m{code>\"1\"}"),
            ("unquoted", "m{code=1}"),
            ("unterminated", "m{code=\"1}"),
            ("bad regex", "m{code=~\"(\"}"),
            ("trailing", "m{} x"),
        ];
        for (name, sel) in cases {
            assert!(Selector::parse(sel).is_err(), "{name}: {sel} parsed");
        }
    }

    #[test]
    fn mapping_errors_name_the_field() {
        let cfg = PromMappingConfig {
            errors: vec!["ok".into(), "m{code=~\"(\"}".into()],
            ..PromMappingConfig::default()
        };
        let e = PromMapping::new(&cfg).unwrap_err();
        assert_eq!(e.field, "errors[1]");
        assert!(
            e.to_string()
                .starts_with("invalid prom_adapter mapping `errors[1]`"),
            "{e}"
        );
        let cfg = PromMappingConfig {
            close_after_s: -1.0,
            ..PromMappingConfig::default()
        };
        assert_eq!(PromMapping::new(&cfg).unwrap_err().field, "close_after_s");
    }

    #[test]
    fn values() {
        let cases = [
            ("integer", "4213", Some(4213.0)),
            ("decimal", "0.085", Some(0.085)),
            ("exponent", "1e3", Some(1000.0)),
            ("plus inf", "+Inf", Some(f64::INFINITY)),
            ("minus inf", "-Inf", Some(f64::NEG_INFINITY)),
            ("word", "infinity", None),
            ("empty", "", None),
            ("text", "12 req", None),
        ];
        for (name, text, want) in cases {
            assert_eq!(parse_value(text), want, "{name}");
        }
        assert!(parse_value("NaN").unwrap().is_nan());
    }
}
