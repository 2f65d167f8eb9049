//! Fleet incidents: the alerts that start together, grouped into one incident with its blast
//! radius, and the change events (deploys, config pushes, maintenance, traffic moves) that most
//! likely triggered it.
//!
//! Pure like the rest of the crate: [`IncidentTracker`] is fed the same sample batches as the
//! detector (for traffic volumes and the fleet's error ratio), the detector's alert transitions
//! (it sets their `incident_id` in place) and change events. Event time only.
//!
//! # Grouping
//!
//! Two alerts are *related* when they are on the same service (any cluster) or on the same
//! cluster (any service). A firing alert joins an open incident when
//!
//! 1. its series (cluster, service) is already part of that incident (a further symptom of a
//!    series that is already hurt), or else
//! 2. it is related to one of the incident's alerts whose onset is at most
//!    [`IncidentConfig::group_window_s`] away from its own (single linkage, so an incident that
//!    spreads over several minutes keeps growing as long as each step is close in time).
//!
//! If several open incidents qualify, the one sharing the series wins, then the one with the
//! closest related onset, then the oldest. Incidents are never merged, so an `incident_id`
//! handed out on an alert stays true. An alert that joins nothing opens a new incident (of one
//! series, until others join). An incident resolves when every alert in it has resolved; a
//! resolved incident takes no new alerts.
//!
//! # Blast radius
//!
//! Clusters, services, alert kinds and series of the member alerts. The share of the fleet's
//! traffic affected is the request volume of the member series over
//! [`IncidentConfig::volume_window_s`] before the incident's onset (fixed when it opens),
//! divided by the volume of every series over the same window. The peak error ratio is the
//! highest fleet-wide ratio (errors / requests over every series) of the
//! [`IncidentConfig::bucket_s`] buckets between onset and resolution, each bucket counted once
//! event time has passed it by [`IncidentConfig::settle_s`] (so late samples are in).
//!
//! # Change correlation
//!
//! A change is a candidate for an incident when it happened at most
//! [`IncidentConfig::lookback_s`] before the onset (latent causes included) or at most
//! [`IncidentConfig::after_onset_s`] after it (onsets are estimated from the data and can be a
//! little early), and it overlaps the blast radius: it reached an affected cluster, or it
//! changed an affected service. Its score, in [0, 1], is
//!
//! ```text
//! closeness x (cluster_weight x jaccard + service_weight x same_service) / (cluster_weight + service_weight)
//! closeness = 1 / (1 + lag / closeness_half_s)      (after the onset: lag x after_onset_penalty)
//! jaccard   = |reached ∩ affected| / |reached ∪ affected|   (fleet-wide: reached = every cluster seen)
//! ```
//!
//! so a change close before the onset, to exactly the affected clusters, of an affected service,
//! scores near 1; a fleet-wide change explains a fleet-wide incident as well as a targeted one
//! explains its clusters, but explains a few-cluster incident poorly. Candidates are ranked by
//! score (then the later change first), at most [`IncidentConfig::max_candidates`].
//!
//! # JSON shape of an [`Incident`]
//!
//! ```json
//! {"id":"i-3f0c2a9e1b7d4c55","state":"open","severity":"critical",
//!  "onset":"2026-02-12T21:19:50Z","detected_at":"2026-02-12T21:20:10Z","resolved_at":null,
//!  "updated_at":"2026-02-12T21:22:50Z",
//!  "kinds":["error_rate_spike","retry_amplification"],
//!  "clusters":["prod-use1-a","prod-use1-b"],"services":["codex","conversation"],
//!  "series":4,"alerts_firing":6,"affected_traffic_ratio":0.24,"peak_error_ratio":0.31,
//!  "alert_ids":["a-5f2c0e1d9b7a3c44","…"],
//!  "candidates":[{"change_id":"deploy-8812","kind":"deploy","service":"routing-config",
//!                 "ts":"2026-02-12T21:19:30Z","score":0.5714,
//!                 "reason":"deploy-8812 (deploy of routing-config) to 2 of the 2 affected clusters (and 5 unaffected), 20 s before onset"}]}
//! ```
//!
//! `id` is `i-` and 16 hex digits, a hash of the id of the alert that opened the incident, so
//! the same input always gives the same ids. `affected_traffic_ratio` and `peak_error_ratio`
//! are `null` until there is traffic data to compute them from. Times are RFC 3339 UTC, event
//! time.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use arrow_array::types::{TimestampMillisecondType, UInt64Type};
use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::alert::{fnv1a, AlertEvent, AlertKind, AlertState, Severity};
use crate::config::ConfigError;
use crate::engine::DetectorError;
use crate::schema;
use crate::series::{SeriesId, SeriesKey};
use crate::time::{Rfc3339, Rfc3339Opt};

/// How incidents are grouped, measured and tied to changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentConfig {
    /// Related alerts (same service, or same cluster) whose onsets are at most this far apart
    /// belong to one incident. Default 300 s: a rollout or a cascading failure reaches its
    /// clusters within minutes.
    pub group_window_s: f64,
    /// Changes up to this long before an incident's onset are candidates (latent causes too).
    /// Default 6 h, so a release that only bites when a later change lands stays listed.
    pub lookback_s: f64,
    /// Changes up to this long after the estimated onset are still candidates (onsets are
    /// estimated from the data and can come out a sample or two early). Default 120 s.
    pub after_onset_s: f64,
    /// A change after the estimated onset counts its lag this many times over, so it ranks
    /// below an otherwise equal change before the onset. Default 2, at least 1.
    pub after_onset_penalty: f64,
    /// A change's time closeness halves at this lag before the onset. Default 600 s.
    pub closeness_half_s: f64,
    /// Weight of cluster overlap (Jaccard of reached and affected clusters) in a score.
    /// Default 0.6.
    pub cluster_weight: f64,
    /// Weight of the change being to one of the affected services. Default 0.4.
    pub service_weight: f64,
    /// Candidates kept per incident, best first. Default 10.
    pub max_candidates: usize,
    /// Width of the traffic and fleet error-ratio buckets. Default 60 s.
    pub bucket_s: f64,
    /// Traffic shares are measured over this window before the onset. Default 300 s.
    pub volume_window_s: f64,
    /// Per-series traffic history kept; must cover the volume window plus detection delays.
    /// Default 1800 s.
    pub history_s: f64,
    /// A fleet error-ratio bucket counts once event time is this far past its end (late
    /// samples are in by then). Default 120 s, the detector's default allowed lateness.
    pub settle_s: f64,
    /// Resolved incidents kept (for the API); the oldest resolved are dropped first.
    /// Default 1000.
    pub max_resolved: usize,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            group_window_s: 300.0,
            lookback_s: 6.0 * 3600.0,
            after_onset_s: 120.0,
            after_onset_penalty: 2.0,
            closeness_half_s: 600.0,
            cluster_weight: 0.6,
            service_weight: 0.4,
            max_candidates: 10,
            bucket_s: 60.0,
            volume_window_s: 300.0,
            history_s: 1800.0,
            settle_s: 120.0,
            max_resolved: 1000,
        }
    }
}

/// Checked, ready-to-use incident parameters (see [`IncidentConfig::check`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentParams {
    pub cfg: IncidentConfig,
    group_window_ms: i64,
    lookback_ms: i64,
    after_onset_ms: i64,
    bucket_ms: i64,
    settle_ms: i64,
    /// Buckets in the volume window.
    window_buckets: i64,
    /// Buckets of per-series history.
    ring_len: usize,
}

fn check(field: &str, v: f64, ok: bool, reason: &'static str) -> Result<(), ConfigError> {
    if ok && v.is_finite() {
        Ok(())
    } else {
        Err(ConfigError {
            field: format!("incidents.{field}"),
            value: v.to_string(),
            reason,
        })
    }
}

/// Whole milliseconds of a checked, finite, bounded number of seconds.
#[allow(clippy::cast_possible_truncation)]
fn ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

/// Longest span any duration field may have (a year): keeps the millisecond arithmetic exact.
const MAX_SPAN_S: f64 = 366.0 * 86_400.0;
/// Most buckets of per-series history (bounds memory per series).
const MAX_RING: f64 = 1440.0;

impl IncidentConfig {
    /// Validates every field and returns the runtime parameters, or the first bad field
    /// (named `incidents.<field>`).
    pub fn check(self) -> Result<IncidentParams, ConfigError> {
        let c = &self;
        let span = |v: f64| (0.0..=MAX_SPAN_S).contains(&v);
        check(
            "group_window_s",
            c.group_window_s,
            span(c.group_window_s),
            "must be in [0, 31622400]",
        )?;
        check(
            "lookback_s",
            c.lookback_s,
            span(c.lookback_s),
            "must be in [0, 31622400]",
        )?;
        check(
            "after_onset_s",
            c.after_onset_s,
            span(c.after_onset_s),
            "must be in [0, 31622400]",
        )?;
        check(
            "after_onset_penalty",
            c.after_onset_penalty,
            c.after_onset_penalty >= 1.0,
            "must be >= 1",
        )?;
        check(
            "closeness_half_s",
            c.closeness_half_s,
            c.closeness_half_s > 0.0 && span(c.closeness_half_s),
            "must be in (0, 31622400]",
        )?;
        check(
            "cluster_weight",
            c.cluster_weight,
            c.cluster_weight >= 0.0,
            "must be >= 0",
        )?;
        check(
            "service_weight",
            c.service_weight,
            c.service_weight >= 0.0,
            "must be >= 0",
        )?;
        check(
            "service_weight",
            c.service_weight,
            c.cluster_weight + c.service_weight > 0.0,
            "cluster_weight + service_weight must be > 0",
        )?;
        #[allow(clippy::cast_precision_loss)]
        let max_candidates = c.max_candidates as f64;
        check(
            "max_candidates",
            max_candidates,
            c.max_candidates >= 1,
            "must be >= 1",
        )?;
        check(
            "bucket_s",
            c.bucket_s,
            c.bucket_s >= 1.0 && c.bucket_s <= 86_400.0,
            "must be in [1, 86400]",
        )?;
        check(
            "volume_window_s",
            c.volume_window_s,
            c.volume_window_s >= c.bucket_s && span(c.volume_window_s),
            "must be >= bucket_s",
        )?;
        let ring = (c.history_s / c.bucket_s).ceil();
        check(
            "history_s",
            c.history_s,
            c.history_s >= c.volume_window_s && ring <= MAX_RING,
            "must be >= volume_window_s and at most 1440 buckets",
        )?;
        check(
            "settle_s",
            c.settle_s,
            span(c.settle_s),
            "must be in [0, 31622400]",
        )?;
        let bucket_ms = ms(c.bucket_s);
        // Both are small positive whole numbers after the checks above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (window_buckets, ring_len) = (
            (c.volume_window_s / c.bucket_s).ceil() as i64,
            ring as usize,
        );
        Ok(IncidentParams {
            group_window_ms: ms(c.group_window_s),
            lookback_ms: ms(c.lookback_s),
            after_onset_ms: ms(c.after_onset_s),
            bucket_ms,
            settle_ms: ms(c.settle_s),
            window_buckets,
            ring_len: ring_len.max(1),
            cfg: self,
        })
    }
}

/// What kind of change a [`Change`] is (CONTRACT section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Deploy,
    Config,
    Maintenance,
    Traffic,
}

impl ChangeKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Deploy => "deploy",
            ChangeKind::Config => "config",
            ChangeKind::Maintenance => "maintenance",
            ChangeKind::Traffic => "traffic",
        }
    }
}

/// A deploy, config push, maintenance or traffic move, as the tracker judges it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub kind: ChangeKind,
    /// The service that was changed (not necessarily one that breaks).
    pub service: String,
    /// Clusters the change reached; `"*"` among them means the whole fleet.
    pub clusters: Vec<String>,
    /// When it happened, event time, epoch ms.
    #[serde(with = "Rfc3339")]
    pub ts: i64,
    pub description: String,
}

impl Change {
    /// Whether the change reached every cluster (`"*"` among `clusters`).
    pub fn is_fleet_wide(&self) -> bool {
        self.clusters.iter().any(|c| c == "*")
    }
}

/// A change that may have triggered an incident, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub change_id: String,
    pub kind: ChangeKind,
    pub service: String,
    #[serde(with = "Rfc3339")]
    pub ts: i64,
    /// In [0, 1], higher is likelier (rounded to 4 decimals).
    pub score: f64,
    /// One line for people, e.g. "deploy-8812 (deploy of routing-config) to 7 of the 7 affected
    /// clusters, 30 s before onset".
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Resolved,
}

impl IncidentState {
    pub const fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Resolved => "resolved",
        }
    }
}

/// One fleet incident (see the module docs for its JSON shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub state: IncidentState,
    /// The worst severity of its alerts.
    pub severity: Severity,
    /// Earliest onset of its alerts.
    #[serde(with = "Rfc3339")]
    pub onset: i64,
    /// When the first alert was detected (the incident opened).
    #[serde(with = "Rfc3339")]
    pub detected_at: i64,
    /// When its last alert resolved.
    #[serde(with = "Rfc3339Opt")]
    pub resolved_at: Option<i64>,
    /// Event time of the latest change to this record.
    #[serde(with = "Rfc3339")]
    pub updated_at: i64,
    /// Sorted, distinct.
    pub kinds: Vec<AlertKind>,
    /// Affected clusters, sorted.
    pub clusters: Vec<String>,
    /// Affected services, sorted.
    pub services: Vec<String>,
    /// Distinct (cluster, service) series with an alert in the incident.
    pub series: usize,
    /// Alerts of the incident still firing.
    pub alerts_firing: usize,
    /// Share of the fleet's request volume (before onset) on the affected series.
    pub affected_traffic_ratio: Option<f64>,
    /// Highest fleet-wide error ratio between onset and resolution.
    pub peak_error_ratio: Option<f64>,
    /// Every alert that joined, in order.
    pub alert_ids: Vec<String>,
    /// Changes that may have triggered it, best first.
    pub candidates: Vec<Candidate>,
}

impl Incident {
    /// The best-ranked change, if any.
    pub fn likely_cause(&self) -> Option<&Candidate> {
        self.candidates.first()
    }
}

/// What a change is judged against: an incident's onset and blast radius.
#[derive(Debug, Clone, Copy)]
pub struct BlastRadius<'a> {
    pub onset: i64,
    /// Affected clusters (sorted, distinct).
    pub clusters: &'a [String],
    /// Affected services (sorted, distinct).
    pub services: &'a [String],
    /// Clusters in the whole fleet (what a fleet-wide change reaches).
    pub fleet_clusters: usize,
}

/// Ranks `changes` as causes of an incident with blast radius `r` (see the module docs).
/// Changes outside the time window or without any overlap are left out.
pub fn rank_changes(changes: &[Change], r: &BlastRadius<'_>, p: &IncidentParams) -> Vec<Candidate> {
    let mut scored: Vec<(f64, &Change, String)> = changes
        .iter()
        .filter_map(|c| judge(c, r, p).map(|(s, why)| (s, c, why)))
        .collect();
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(b.1.ts.cmp(&a.1.ts))
            .then(a.1.id.cmp(&b.1.id))
    });
    scored.truncate(p.cfg.max_candidates);
    scored
        .into_iter()
        .map(|(score, c, reason)| Candidate {
            change_id: c.id.clone(),
            kind: c.kind,
            service: c.service.clone(),
            ts: c.ts,
            score: (score * 10_000.0).round() / 10_000.0,
            reason,
        })
        .collect()
}

/// Score and reason of one change, or `None` if it is not a candidate.
fn judge(c: &Change, r: &BlastRadius<'_>, p: &IncidentParams) -> Option<(f64, String)> {
    let lag_ms = r.onset.saturating_sub(c.ts);
    if lag_ms > p.lookback_ms || -lag_ms > p.after_onset_ms {
        return None;
    }
    let affected = r.clusters.len();
    let fleet_wide = c.is_fleet_wide();
    let (hit, reach) = if fleet_wide {
        (affected, r.fleet_clusters.max(affected))
    } else {
        let reached: BTreeSet<&str> = c.clusters.iter().map(String::as_str).collect();
        let hit = reached
            .iter()
            .filter(|c| r.clusters.binary_search_by(|a| a.as_str().cmp(c)).is_ok())
            .count();
        (hit, reached.len())
    };
    let same_service = r.services.binary_search(&c.service).is_ok();
    if hit == 0 && !same_service {
        return None;
    }
    let union = reach + affected - hit;
    #[allow(clippy::cast_precision_loss)]
    let jaccard = if union > 0 {
        hit as f64 / union as f64
    } else {
        0.0
    };
    #[allow(clippy::cast_precision_loss)]
    let lag_s = lag_ms as f64 / 1000.0;
    // A change after the estimated onset can only be the cause if the estimate is early.
    let effective_lag = if lag_s >= 0.0 {
        lag_s
    } else {
        -p.cfg.after_onset_penalty * lag_s
    };
    let closeness = 1.0 / (1.0 + effective_lag / p.cfg.closeness_half_s);
    let (cw, sw) = (p.cfg.cluster_weight, p.cfg.service_weight);
    let overlap = (cw * jaccard + if same_service { sw } else { 0.0 }) / (cw + sw);
    let score = closeness * overlap;

    let service_note = if same_service {
        ", an affected service"
    } else {
        ""
    };
    let reach_note = if fleet_wide {
        "fleet-wide".to_owned()
    } else if hit > 0 {
        let extra = reach - hit;
        let mut s = format!("to {hit} of the {affected} affected clusters");
        if extra > 0 {
            s.push_str(&format!(" (and {extra} unaffected)"));
        }
        s
    } else if reach == 0 {
        "to no listed cluster".to_owned()
    } else {
        format!(
            "to {reach} unaffected cluster{}",
            if reach == 1 { "" } else { "s" }
        )
    };
    let when = if lag_ms > 0 {
        format!("{} before onset", duration(lag_ms))
    } else if lag_ms == 0 {
        "at onset".to_owned()
    } else {
        format!("{} after the estimated onset", duration(-lag_ms))
    };
    let reason = format!(
        "{} ({} of {}{service_note}) {reach_note}, {when}",
        c.id,
        c.kind.as_str(),
        c.service
    );
    Some((score, reason))
}

/// "30 s", "2 min", "38 min 50 s", "1 h 46 min".
fn duration(ms: i64) -> String {
    let s = (ms + 500) / 1000;
    let (h, m, sec) = (s / 3600, (s / 60) % 60, s % 60);
    match (h, m, sec) {
        (0, 0, sec) => format!("{sec} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, sec) => format!("{m} min {sec} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// One firing alert of an incident, as grouping needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Member {
    cluster: String,
    service: String,
    onset: i64,
}

/// An incident and the bookkeeping behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tracked {
    /// Creation order, the key in `IncidentTracker::incidents`.
    seq: u64,
    inc: Incident,
    members: Vec<Member>,
    series: BTreeSet<(String, String)>,
    /// Volume window, buckets `[start, end)`, fixed when the incident opened.
    window: (i64, i64),
    fleet_volume: f64,
    affected_volume: f64,
    /// Fleet error ratio of every settled bucket since the onset: (bucket, ratio).
    ratios: Vec<(i64, f64)>,
    dirty: bool,
}

const NONE: i64 = i64::MIN;

/// Groups alert transitions into fleet incidents and ranks the changes behind them.
///
/// Feed it, in this order per batch: [`observe_batch`](Self::observe_batch) with the batch the
/// detector is about to see, then [`on_alerts`](Self::on_alerts) with the transitions the
/// detector produced (their `incident_id` is set in place). Changes may come at any time
/// ([`push_changes`](Self::push_changes)); open incidents are re-ranked when they do.
#[derive(Debug)]
pub struct IncidentTracker {
    p: IncidentParams,
    keys: Vec<SeriesKey>,
    /// cluster -> service -> id, nested so a lookup by `&str` needs no allocation.
    ids: HashMap<String, HashMap<String, SeriesId>>,
    fleet_clusters: BTreeSet<String>,
    /// Per series: newest bucket with traffic (NONE before the first sample).
    head: Vec<i64>,
    /// Per series: `ring_len` buckets of request counts, bucket `b` at `b mod ring_len`.
    ring: Vec<f32>,
    /// Fleet totals per bucket: (requests, errors).
    fleet: BTreeMap<i64, (f64, f64)>,
    /// Buckets before this one are settled.
    settled_before: i64,
    max_ts: i64,
    /// Sorted by (ts, id), ids distinct.
    changes: Vec<Change>,
    incidents: BTreeMap<u64, Tracked>,
    by_id: HashMap<String, u64>,
    open: Vec<u64>,
    resolved: VecDeque<u64>,
    alert_incident: HashMap<String, u64>,
    next_seq: u64,
    dirty: Vec<u64>,
    /// Updates of incidents dropped before they were drained.
    evicted_updates: Vec<Incident>,
}

/// Everything an [`IncidentTracker`] remembers (traffic buckets, changes, incidents and their
/// alerts), for checkpoints: [`IncidentTracker::snapshot`] and
/// [`IncidentTracker::from_snapshot`]. Serialize it with a binary serde format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncidentSnapshot {
    /// The traffic buckets' geometry the ring was laid out with.
    bucket_ms: i64,
    ring_len: usize,
    keys: Vec<SeriesKey>,
    fleet_clusters: BTreeSet<String>,
    head: Vec<i64>,
    ring: Vec<f32>,
    fleet: BTreeMap<i64, (f64, f64)>,
    settled_before: i64,
    max_ts: i64,
    changes: Vec<Change>,
    incidents: Vec<Tracked>,
    open: Vec<u64>,
    resolved: Vec<u64>,
    alert_incident: Vec<(String, u64)>,
    next_seq: u64,
    dirty: Vec<u64>,
    evicted_updates: Vec<Incident>,
}

impl IncidentSnapshot {
    /// Incidents in the snapshot.
    pub fn incident_count(&self) -> usize {
        self.incidents.len()
    }
}

impl IncidentTracker {
    /// The tracker's state, for a checkpoint (see [`IncidentSnapshot`]).
    pub fn snapshot(&self) -> IncidentSnapshot {
        let mut alert_incident: Vec<(String, u64)> = self
            .alert_incident
            .iter()
            .map(|(k, &v)| (k.clone(), v))
            .collect();
        alert_incident.sort();
        IncidentSnapshot {
            bucket_ms: self.p.bucket_ms,
            ring_len: self.p.ring_len,
            keys: self.keys.clone(),
            fleet_clusters: self.fleet_clusters.clone(),
            head: self.head.clone(),
            ring: self.ring.clone(),
            fleet: self.fleet.clone(),
            settled_before: self.settled_before,
            max_ts: self.max_ts,
            changes: self.changes.clone(),
            incidents: self.incidents.values().cloned().collect(),
            open: self.open.clone(),
            resolved: self.resolved.iter().copied().collect(),
            alert_incident,
            next_seq: self.next_seq,
            dirty: self.dirty.clone(),
            evicted_updates: self.evicted_updates.clone(),
        }
    }

    /// A tracker that carries on from `snap`. Refuses a snapshot taken with other traffic
    /// bucket settings (`bucket_s`, the volume window) or with inconsistent columns.
    pub fn from_snapshot(cfg: IncidentConfig, snap: IncidentSnapshot) -> Result<Self, ConfigError> {
        let mut t = Self::new(cfg)?;
        if snap.bucket_ms != t.p.bucket_ms || snap.ring_len != t.p.ring_len {
            return Err(ConfigError {
                field: "snapshot".into(),
                value: format!("{} ms buckets x {}", snap.bucket_ms, snap.ring_len),
                reason: "taken with other incident bucket settings (bucket_s, volume window)",
            });
        }
        let n = snap.keys.len();
        if snap.head.len() != n || snap.ring.len() != n * snap.ring_len {
            return Err(ConfigError {
                field: "snapshot".into(),
                value: format!("{n} series"),
                reason: "per-series columns of different lengths: a damaged checkpoint",
            });
        }
        t.ids.clear();
        for (i, k) in snap.keys.iter().enumerate() {
            let Ok(id) = SeriesId::try_from(i) else {
                break;
            };
            t.ids
                .entry(k.cluster.clone())
                .or_default()
                .insert(k.service.clone(), id);
        }
        t.keys = snap.keys;
        t.fleet_clusters = snap.fleet_clusters;
        t.head = snap.head;
        t.ring = snap.ring;
        t.fleet = snap.fleet;
        t.settled_before = snap.settled_before;
        t.max_ts = snap.max_ts;
        t.changes = snap.changes;
        t.by_id = snap
            .incidents
            .iter()
            .map(|tr| (tr.inc.id.clone(), tr.seq))
            .collect();
        t.incidents = snap.incidents.into_iter().map(|tr| (tr.seq, tr)).collect();
        t.open = snap.open;
        t.resolved = snap.resolved.into();
        t.alert_incident = snap.alert_incident.into_iter().collect();
        t.next_seq = snap.next_seq;
        t.dirty = snap.dirty;
        t.evicted_updates = snap.evicted_updates;
        Ok(t)
    }

    pub fn new(cfg: IncidentConfig) -> Result<Self, ConfigError> {
        let p = cfg.check()?;
        Ok(Self {
            p,
            keys: Vec::new(),
            ids: HashMap::new(),
            fleet_clusters: BTreeSet::new(),
            head: Vec::new(),
            ring: Vec::new(),
            fleet: BTreeMap::new(),
            settled_before: NONE,
            max_ts: NONE,
            changes: Vec::new(),
            incidents: BTreeMap::new(),
            by_id: HashMap::new(),
            open: Vec::new(),
            resolved: VecDeque::new(),
            alert_incident: HashMap::new(),
            next_seq: 0,
            dirty: Vec::new(),
            evicted_updates: Vec::new(),
        })
    }

    pub fn config(&self) -> &IncidentConfig {
        &self.p.cfg
    }

    /// Registers series keys `self.keys.len()..keys.len()`; ids are positions in `keys`, the
    /// same convention as [`crate::Detector::register_series`].
    pub fn register_series(&mut self, keys: &[SeriesKey]) {
        if let Some(new) = keys.get(self.keys.len()..) {
            self.add_series(new);
        }
    }

    /// Registers `new` as the keys of the next series ids, in order (see
    /// [`crate::Detector::add_series`]).
    pub fn add_series(&mut self, new: &[SeriesKey]) {
        if new.is_empty() {
            return;
        }
        let old = self.keys.len();
        for (i, key) in new.iter().enumerate() {
            let id = SeriesId::try_from(old + i).unwrap_or(SeriesId::MAX);
            self.ids
                .entry(key.cluster.clone())
                .or_default()
                .insert(key.service.clone(), id);
            if !self.fleet_clusters.contains(&key.cluster) {
                self.fleet_clusters.insert(key.cluster.clone());
            }
            self.keys.push(key.clone());
        }
        let n = self.keys.len();
        self.head.resize(n, NONE);
        self.ring.resize(n * self.p.ring_len, 0.0);
    }

    /// Takes the traffic of one sample batch (schema: [`crate::schema::sample_schema`]);
    /// `keys[id]` is the key of series `id`. Call it before the detector sees the batch.
    pub fn observe_batch(
        &mut self,
        batch: &RecordBatch,
        keys: &[SeriesKey],
    ) -> Result<(), DetectorError> {
        self.register_series(keys);
        self.observe_registered(batch)
    }

    /// [`observe_batch`](Self::observe_batch) for a batch whose series are all registered
    /// already ([`add_series`](Self::add_series)).
    pub fn observe_registered(&mut self, batch: &RecordBatch) -> Result<(), DetectorError> {
        let sid = schema::series_ids(batch, self.keys.len())?;
        let ts = schema::column::<TimestampMillisecondType>(batch, schema::TS)?;
        let req = schema::column::<UInt64Type>(batch, schema::REQUESTS)?;
        let err = schema::column::<UInt64Type>(batch, schema::ERRORS)?;
        for i in 0..batch.num_rows() {
            #[allow(clippy::cast_precision_loss)]
            self.observe(
                sid.value(i),
                ts.value(i),
                req.value(i) as f64,
                err.value(i) as f64,
            );
        }
        Ok(())
    }

    /// Takes the traffic of one sample of a registered series.
    pub fn observe(&mut self, series: SeriesId, ts: i64, requests: f64, errors: f64) {
        let s = series as usize;
        if s >= self.keys.len() {
            return;
        }
        let b = ts.div_euclid(self.p.bucket_ms);
        self.ring_add(s, b, requests);
        if b >= self.settled_before {
            let e = self.fleet.entry(b).or_insert((0.0, 0.0));
            e.0 += requests;
            e.1 += errors;
        }
        if ts > self.max_ts {
            self.max_ts = ts;
            self.settle();
        }
    }

    fn ring_add(&mut self, s: usize, b: i64, v: f64) {
        let n = self.p.ring_len;
        let nl = n as i64;
        let row = &mut self.ring[s * n..(s + 1) * n];
        let h = self.head[s];
        if h == NONE || b - h >= nl {
            row.fill(0.0);
            self.head[s] = b;
        } else if b > h {
            for x in h + 1..=b {
                row[slot(x, n)] = 0.0;
            }
            self.head[s] = b;
        } else if b <= h - nl {
            return;
        }
        #[allow(clippy::cast_possible_truncation)]
        {
            row[slot(b, n)] += v as f32;
        }
    }

    /// Requests of series `s` in buckets `[start, end)`, as far as its history reaches.
    fn volume(&self, s: usize, start: i64, end: i64) -> f64 {
        let n = self.p.ring_len;
        let h = self.head[s];
        if h == NONE {
            return 0.0;
        }
        let lo = start.max(h - n as i64 + 1);
        let hi = end.min(h + 1);
        let row = &self.ring[s * n..(s + 1) * n];
        (lo..hi).map(|b| f64::from(row[slot(b, n)])).sum()
    }

    /// Volume of a member series for an incident's window; when the series' history no longer
    /// reaches the window (it joined long after the onset), its oldest window-length of history.
    fn member_volume(&self, cluster: &str, service: &str, window: (i64, i64)) -> f64 {
        let Some(&id) = self.ids.get(cluster).and_then(|m| m.get(service)) else {
            return 0.0;
        };
        let s = id as usize;
        let h = self.head[s];
        if h == NONE {
            return 0.0;
        }
        let oldest = h - self.p.ring_len as i64 + 1;
        let (start, end) = if window.0 < oldest {
            (oldest, oldest + (window.1 - window.0))
        } else {
            window
        };
        self.volume(s, start, end)
    }

    /// Settles the fleet buckets event time has passed and folds them into incidents.
    fn settle(&mut self) {
        let limit = (self.max_ts - self.p.settle_ms).div_euclid(self.p.bucket_ms);
        self.settle_to(limit);
    }

    /// End of input (a replay's end, or a source that is gone): no later samples will come, so
    /// every fleet bucket is settled.
    pub fn finish(&mut self) {
        if self.max_ts != NONE {
            self.settle_to(self.max_ts.div_euclid(self.p.bucket_ms) + 1);
        }
    }

    /// Settles buckets before `limit`.
    fn settle_to(&mut self, limit: i64) {
        if limit <= self.settled_before {
            return;
        }
        let from = self.settled_before;
        let newly: Vec<(i64, f64)> = self
            .fleet
            .range(from..limit)
            .filter(|(_, (r, _))| *r > 0.0)
            .map(|(&b, &(r, e))| (b, e / r))
            .collect();
        self.settled_before = limit;
        let w = self.p.bucket_ms;
        for (b, ratio) in newly {
            for t in self.incidents.values_mut() {
                let covers =
                    (b + 1) * w > t.inc.onset && t.inc.resolved_at.is_none_or(|r| b * w < r);
                if covers {
                    t.ratios.push((b, ratio));
                    if refresh_peak(t, w) {
                        mark(&mut self.dirty, t);
                    }
                }
            }
        }
        let keep_from = limit - self.p.ring_len as i64;
        self.fleet = self.fleet.split_off(&keep_from);
        self.evict_changes();
    }

    /// Settled fleet ratios of buckets overlapping `[from, to)` ms.
    fn settled_ratios(&self, from: i64, to: i64) -> Vec<(i64, f64)> {
        let w = self.p.bucket_ms;
        let first = from.div_euclid(w);
        let last = to.div_euclid(w).saturating_add(1).min(self.settled_before);
        if first >= last {
            return Vec::new();
        }
        self.fleet
            .range(first..last)
            .filter(|(&b, (r, _))| *r > 0.0 && (b + 1) * w > from && b * w < to)
            .map(|(&b, &(r, e))| (b, e / r))
            .collect()
    }

    /// Adds change events (a change with an id already known replaces it) and re-ranks the
    /// incidents they may explain.
    pub fn push_changes(&mut self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        for c in changes {
            if let Some(i) = self.changes.iter().position(|x| x.id == c.id) {
                self.changes.remove(i);
            }
            let at = self
                .changes
                .partition_point(|x| (x.ts, &x.id) <= (c.ts, &c.id));
            self.changes.insert(at, c.clone());
        }
        let (lookback, after) = (self.p.lookback_ms, self.p.after_onset_ms);
        let seqs: Vec<u64> = self
            .incidents
            .iter()
            .filter(|(_, t)| {
                changes.iter().any(|c| {
                    c.ts >= t.inc.onset.saturating_sub(lookback)
                        && c.ts <= t.inc.onset.saturating_add(after)
                })
            })
            .map(|(&s, _)| s)
            .collect();
        for seq in seqs {
            self.rerank(seq);
        }
        self.evict_changes();
    }

    /// Drops changes too old to explain any open incident or any future one.
    fn evict_changes(&mut self) {
        if self.max_ts == NONE {
            return;
        }
        let oldest_open = self
            .open
            .iter()
            .filter_map(|s| self.incidents.get(s))
            .map(|t| t.inc.onset)
            .min()
            .unwrap_or(self.max_ts);
        // Detection may lag the onset, and late alerts may carry older onsets: keep a margin.
        let horizon = oldest_open
            .min(self.max_ts - self.p.ring_len as i64 * self.p.bucket_ms)
            .saturating_sub(self.p.lookback_ms);
        let n = self.changes.partition_point(|c| c.ts < horizon);
        if n > 0 {
            self.changes.drain(..n);
        }
    }

    /// Assigns each firing alert to an incident (opening one if none fits), counts each
    /// resolution against its incident, and sets `incident_id` on every event.
    ///
    /// Events are taken tick by tick (runs of equal event time, as the detector emits them):
    /// the alerts of one tick are grouped together first, so alerts that are related only
    /// through each other still form one incident, whatever the order within the tick.
    pub fn on_alerts(&mut self, events: &mut [AlertEvent]) {
        let mut rest = events;
        while let Some(first) = rest.first() {
            let at = event_time(first);
            let n = rest.iter().take_while(|e| event_time(e) == at).count();
            let (tick, tail) = rest.split_at_mut(n);
            self.on_tick(tick);
            rest = tail;
        }
    }

    fn on_tick(&mut self, events: &mut [AlertEvent]) {
        // New firing alerts (a repeat of a counted transition only gets its id back).
        let mut fresh: Vec<usize> = Vec::new();
        for i in 0..events.len() {
            if events[i].state != AlertState::Firing
                || self.alert_incident.contains_key(&events[i].id)
                || fresh.iter().any(|&j| events[j].id == events[i].id)
            {
                continue;
            }
            fresh.push(i);
        }
        if !fresh.is_empty() {
            self.group_fresh(events, &fresh);
        }
        for e in events.iter_mut() {
            match e.state {
                AlertState::Firing if e.incident_id.is_none() => {
                    let seq = self.alert_incident.get(&e.id);
                    e.incident_id = seq
                        .and_then(|s| self.incidents.get(s))
                        .map(|t| t.inc.id.clone());
                }
                AlertState::Firing => {}
                AlertState::Resolved => self.on_resolved(e),
            }
        }
    }

    /// Groups one tick's new alerts: related alerts of the tick (single linkage) form a
    /// component; each alert joins its own best open incident if it has one, else its
    /// component's best, else the component opens a new incident.
    fn group_fresh(&mut self, events: &mut [AlertEvent], fresh: &[usize]) {
        let n = fresh.len();
        let mut parent: Vec<usize> = (0..n).collect();
        for by_cluster in [true, false] {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| {
                let (ea, eb) = (&events[fresh[a]], &events[fresh[b]]);
                let (ka, kb) = if by_cluster {
                    (&ea.cluster, &eb.cluster)
                } else {
                    (&ea.service, &eb.service)
                };
                ka.cmp(kb).then(ea.onset.cmp(&eb.onset)).then(a.cmp(&b))
            });
            // Within one cluster (or service), sorted by onset, neighbours within the window
            // link everything single linkage would.
            for w in order.windows(2) {
                let (ea, eb) = (&events[fresh[w[0]]], &events[fresh[w[1]]]);
                let same = if by_cluster {
                    ea.cluster == eb.cluster
                } else {
                    ea.service == eb.service
                };
                if same && (eb.onset - ea.onset).abs() <= self.p.group_window_ms {
                    union(&mut parent, w[0], w[1]);
                }
            }
        }
        let own: Vec<Option<(u8, i64, u64)>> = fresh
            .iter()
            .map(|&i| self.find_incident(&events[i]))
            .collect();
        let mut done = vec![false; n];
        for a in 0..n {
            if done[a] {
                continue;
            }
            let root = find(&mut parent, a);
            let members: Vec<usize> = (a..n).filter(|&b| find(&mut parent, b) == root).collect();
            let best = members.iter().filter_map(|&b| own[b]).min();
            let shared = match best {
                Some((_, _, seq)) => seq,
                None => {
                    let onset = members
                        .iter()
                        .map(|&b| events[fresh[b]].onset)
                        .min()
                        .unwrap_or(events[fresh[a]].onset);
                    self.open_incident(&events[fresh[a]], onset)
                }
            };
            for &b in &members {
                done[b] = true;
                let seq = own[b].map_or(shared, |(_, _, seq)| seq);
                self.join(seq, &mut events[fresh[b]]);
            }
        }
    }

    /// The best open incident `e` qualifies for, as a sort key (same series first, then the
    /// closest related onset, then the oldest incident); see the module docs for the rules.
    fn find_incident(&self, e: &AlertEvent) -> Option<(u8, i64, u64)> {
        let key = (e.cluster.clone(), e.service.clone());
        let mut best: Option<(u8, i64, u64)> = None;
        for &seq in &self.open {
            let Some(t) = self.incidents.get(&seq) else {
                continue;
            };
            let rank = if t.series.contains(&key) {
                Some((0, 0, seq))
            } else {
                t.members
                    .iter()
                    .filter(|m| m.cluster == e.cluster || m.service == e.service)
                    .map(|m| (m.onset - e.onset).abs())
                    .filter(|gap| *gap <= self.p.group_window_ms)
                    .min()
                    .map(|gap| (1, gap, seq))
            };
            if let Some(r) = rank {
                if best.is_none_or(|b| r < b) {
                    best = Some(r);
                }
            }
        }
        best
    }

    /// Opens an incident for alert `e` (its id derives from the alert's), with the traffic
    /// window before `onset` (the earliest onset of the alerts opening it).
    fn open_incident(&mut self, e: &AlertEvent, onset: i64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = format!("i-{:016x}", fnv1a(&[b"incident", e.id.as_bytes()]));
        let end = onset.div_euclid(self.p.bucket_ms);
        let window = (end - self.p.window_buckets, end);
        let fleet_volume = (0..self.keys.len())
            .map(|s| self.volume(s, window.0, window.1))
            .sum();
        let ratios = self.settled_ratios(e.onset, i64::MAX);
        let mut t = Tracked {
            seq,
            inc: Incident {
                id: id.clone(),
                state: IncidentState::Open,
                severity: e.severity,
                onset: e.onset,
                detected_at: e.detected_at,
                resolved_at: None,
                updated_at: e.detected_at,
                kinds: Vec::new(),
                clusters: Vec::new(),
                services: Vec::new(),
                series: 0,
                alerts_firing: 0,
                affected_traffic_ratio: None,
                peak_error_ratio: None,
                alert_ids: Vec::new(),
                candidates: Vec::new(),
            },
            members: Vec::new(),
            series: BTreeSet::new(),
            window,
            fleet_volume,
            affected_volume: 0.0,
            ratios,
            dirty: false,
        };
        refresh_peak(&mut t, self.p.bucket_ms);
        self.incidents.insert(seq, t);
        self.by_id.insert(id, seq);
        self.open.push(seq);
        seq
    }

    fn join(&mut self, seq: u64, e: &mut AlertEvent) {
        let key = (e.cluster.clone(), e.service.clone());
        let new_series = self
            .incidents
            .get(&seq)
            .is_some_and(|t| !t.series.contains(&key));
        let (window, old_onset) = match self.incidents.get(&seq) {
            Some(t) => (t.window, t.inc.onset),
            None => return,
        };
        let volume = if new_series {
            self.member_volume(&e.cluster, &e.service, window)
        } else {
            0.0
        };
        let earlier = if e.onset < old_onset {
            self.settled_ratios(e.onset, old_onset)
                .into_iter()
                .filter(|(b, _)| (b + 1) * self.p.bucket_ms <= old_onset)
                .collect()
        } else {
            Vec::new()
        };
        let Some(t) = self.incidents.get_mut(&seq) else {
            return;
        };
        let mut radius_changed = false;
        t.members.push(Member {
            cluster: e.cluster.clone(),
            service: e.service.clone(),
            onset: e.onset,
        });
        t.inc.alert_ids.push(e.id.clone());
        insert_sorted(&mut t.inc.kinds, e.kind);
        radius_changed |= insert_sorted(&mut t.inc.clusters, e.cluster.clone());
        radius_changed |= insert_sorted(&mut t.inc.services, e.service.clone());
        if new_series {
            t.series.insert(key);
            t.inc.series += 1;
            t.affected_volume += volume;
            if t.fleet_volume > 0.0 {
                t.inc.affected_traffic_ratio =
                    Some((t.affected_volume / t.fleet_volume).clamp(0.0, 1.0));
            }
        }
        t.inc.alerts_firing += 1;
        t.inc.severity = t.inc.severity.max(e.severity);
        if e.onset < t.inc.onset {
            t.inc.onset = e.onset;
            t.ratios.extend(earlier);
            refresh_peak(t, self.p.bucket_ms);
            radius_changed = true;
        }
        t.inc.updated_at = t.inc.updated_at.max(e.detected_at);
        e.incident_id = Some(t.inc.id.clone());
        mark(&mut self.dirty, t);
        self.alert_incident.insert(e.id.clone(), seq);
        if radius_changed {
            self.rerank(seq);
        }
    }

    fn on_resolved(&mut self, e: &mut AlertEvent) {
        let Some(seq) = self.alert_incident.remove(&e.id) else {
            return;
        };
        let Some(t) = self.incidents.get_mut(&seq) else {
            return;
        };
        e.incident_id = Some(t.inc.id.clone());
        let at = e.resolved_at.unwrap_or(e.detected_at);
        t.inc.alerts_firing = t.inc.alerts_firing.saturating_sub(1);
        t.inc.updated_at = t.inc.updated_at.max(at);
        mark(&mut self.dirty, t);
        if t.inc.alerts_firing == 0 {
            t.inc.state = IncidentState::Resolved;
            t.inc.resolved_at = Some(at);
            refresh_peak(t, self.p.bucket_ms);
            self.open.retain(|&s| s != seq);
            self.resolved.push_back(seq);
            self.evict_resolved();
        }
    }

    fn evict_resolved(&mut self) {
        while self.resolved.len() > self.p.cfg.max_resolved {
            let Some(seq) = self.resolved.pop_front() else {
                break;
            };
            if let Some(t) = self.incidents.remove(&seq) {
                self.by_id.remove(&t.inc.id);
                if t.dirty {
                    self.evicted_updates.push(t.inc);
                }
            }
        }
    }

    fn rerank(&mut self, seq: u64) {
        let Some(t) = self.incidents.get(&seq) else {
            return;
        };
        let extra = t
            .inc
            .clusters
            .iter()
            .filter(|c| !self.fleet_clusters.contains(*c))
            .count();
        let radius = BlastRadius {
            onset: t.inc.onset,
            clusters: &t.inc.clusters,
            services: &t.inc.services,
            fleet_clusters: self.fleet_clusters.len() + extra,
        };
        let ranked = rank_changes(&self.changes, &radius, &self.p);
        if let Some(t) = self.incidents.get_mut(&seq) {
            if t.inc.candidates != ranked {
                t.inc.candidates = ranked;
                mark(&mut self.dirty, t);
            }
        }
    }

    /// Incidents kept, newest first.
    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values().rev().map(|t| &t.inc)
    }

    /// One incident by id (`None` if unknown or dropped).
    pub fn get(&self, id: &str) -> Option<&Incident> {
        self.by_id
            .get(id)
            .and_then(|s| self.incidents.get(s))
            .map(|t| &t.inc)
    }

    /// Number of open incidents.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Incidents created or changed since the last call, each once, in the order they first
    /// changed.
    pub fn take_updates(&mut self) -> Vec<Incident> {
        let mut out = std::mem::take(&mut self.evicted_updates);
        for seq in std::mem::take(&mut self.dirty) {
            if let Some(t) = self.incidents.get_mut(&seq) {
                t.dirty = false;
                out.push(t.inc.clone());
            }
        }
        out
    }

    /// Change events currently kept (sorted by time).
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }
}

/// When an alert transition happened: the tick it came out of.
fn event_time(e: &AlertEvent) -> i64 {
    match e.state {
        AlertState::Firing => e.detected_at,
        AlertState::Resolved => e.resolved_at.unwrap_or(e.detected_at),
    }
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    // The lower index stays root, so a component's root is its first alert.
    if ra < rb {
        parent[rb] = ra;
    } else {
        parent[ra] = rb;
    }
}

fn slot(b: i64, n: usize) -> usize {
    // rem_euclid of a positive modulus is in [0, n).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    {
        b.rem_euclid(n as i64) as usize
    }
}

/// Queues `t` for the next [`IncidentTracker::take_updates`] (once).
fn mark(dirty: &mut Vec<u64>, t: &mut Tracked) {
    if !t.dirty {
        t.dirty = true;
        dirty.push(t.seq);
    }
}

/// Recomputes the peak fleet error ratio over the buckets before resolution; true if changed.
fn refresh_peak(t: &mut Tracked, bucket_ms: i64) -> bool {
    let cutoff = t.inc.resolved_at;
    let peak = t
        .ratios
        .iter()
        .filter(|(b, _)| cutoff.is_none_or(|r| b * bucket_ms < r))
        .map(|&(_, r)| r)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    if peak == t.inc.peak_error_ratio {
        false
    } else {
        t.inc.peak_error_ratio = peak;
        true
    }
}

/// Inserts into a sorted vector of distinct values; true if it was not there.
fn insert_sorted<T: Ord>(v: &mut Vec<T>, x: T) -> bool {
    match v.binary_search(&x) {
        Ok(_) => false,
        Err(i) => {
            v.insert(i, x);
            true
        }
    }
}

#[cfg(test)]
mod tests;
