//! Scoring a replay against a trace's `labels.json` (CONTRACT section 3).
//!
//! Detections: every series of every window must get an alert of one of its kinds in time, and
//! nothing may fire outside the windows. Causes: for windows that name the change that caused
//! them (`"trigger"`), the incident covering those windows should rank that change first, and
//! its cluster set should match the windows' clusters.

use std::collections::{BTreeSet, HashMap};

use detector::{AlertEvent, AlertState, Incident};
use ingest::trace::{Labels, Window};
use serde::Serialize;

use crate::pipeline::ReplayResult;

/// Windows are extended by this much after `end` for recovery effects.
pub const RECOVERY_GRACE_MS: i64 = 10 * 60 * 1000;

/// One required detection: a series of a window, and what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct Requirement {
    pub cluster: String,
    pub service: String,
    pub kinds: Vec<String>,
    pub onset_ms: i64,
    pub max_delay_s: f64,
    /// Delay of the first matching alert, when one fired in time.
    pub delay_s: Option<f64>,
    /// The matching alert's kind.
    pub kind: Option<String>,
}

/// An alert outside every window of its series.
#[derive(Debug, Clone, Serialize)]
pub struct FalsePositive {
    pub id: String,
    pub kind: String,
    pub cluster: String,
    pub service: String,
    pub detected_at: String,
    pub summary: String,
}

/// How well incidents explained the windows that name one trigger (change id).
#[derive(Debug, Clone, Serialize)]
pub struct TriggerScore {
    /// The change id the labels name.
    pub trigger: String,
    /// The incident holding most of the alerts on those windows' series, if any.
    pub incident_id: Option<String>,
    /// 1-based rank of the trigger among that incident's candidates (`None`: not listed).
    pub rank: Option<usize>,
    /// The incident's top-ranked change.
    pub top: Option<String>,
    /// Jaccard similarity of the incident's clusters and the windows' clusters (0 to 1).
    pub cluster_jaccard: f64,
}

impl TriggerScore {
    /// Ranked first.
    pub fn hit(&self) -> bool {
        self.rank == Some(1)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub trace: String,
    pub required: usize,
    pub hits: usize,
    pub misses: usize,
    pub delay_median_s: Option<f64>,
    pub delay_max_s: Option<f64>,
    pub alerts: usize,
    pub false_positives: Vec<FalsePositive>,
    pub requirements: Vec<Requirement>,
    /// Incidents the replay opened (0 when scored from alerts alone).
    pub incidents: usize,
    /// One per distinct `trigger` of the windows (empty when scored from alerts alone).
    pub triggers: Vec<TriggerScore>,
}

impl Score {
    pub fn passed(&self) -> bool {
        self.misses == 0
    }

    /// Triggers ranked first by their incident.
    pub fn trigger_hits(&self) -> usize {
        self.triggers.iter().filter(|t| t.hit()).count()
    }

    /// The worst cluster-set match over the triggers.
    pub fn min_cluster_jaccard(&self) -> Option<f64> {
        self.triggers
            .iter()
            .map(|t| t.cluster_jaccard)
            .min_by(f64::total_cmp)
    }
}

/// Scores a replay: detections from its alerts, causes from its incidents.
pub fn score_replay(labels: &Labels, res: &ReplayResult) -> Score {
    let mut sc = score(labels, &res.events);
    sc.incidents = res.incidents.len();
    sc.triggers = score_triggers(labels, &res.events, &res.incidents);
    sc
}

/// Whether a firing alert is on one of the window's series during the window.
fn in_window(w: &Window, e: &AlertEvent) -> bool {
    e.service == w.service
        && w.clusters.iter().any(|c| c == &e.cluster)
        && (w.onset..=w.end + RECOVERY_GRACE_MS).contains(&e.detected_at)
}

/// Per distinct trigger (in order of first appearance): the incident covering its windows, the
/// trigger's rank there, and how well the incident's clusters match the windows' clusters.
pub fn score_triggers(
    labels: &Labels,
    events: &[AlertEvent],
    incidents: &[Incident],
) -> Vec<TriggerScore> {
    let mut triggers: Vec<&str> = Vec::new();
    for w in &labels.windows {
        if let Some(t) = w.trigger.as_deref() {
            if !triggers.contains(&t) {
                triggers.push(t);
            }
        }
    }
    triggers
        .into_iter()
        .map(|trigger| {
            let windows: Vec<&Window> = labels
                .windows
                .iter()
                .filter(|w| w.trigger.as_deref() == Some(trigger))
                .collect();
            let wanted: BTreeSet<&str> = windows
                .iter()
                .flat_map(|w| w.clusters.iter().map(String::as_str))
                .collect();
            // Vote: the incident holding most of the windows' alerts covers them.
            let mut votes: HashMap<&str, usize> = HashMap::new();
            for e in events.iter().filter(|e| e.state == AlertState::Firing) {
                if let Some(id) = e.incident_id.as_deref() {
                    if windows.iter().any(|w| in_window(w, e)) {
                        *votes.entry(id).or_default() += 1;
                    }
                }
            }
            let covering = incidents
                .iter()
                .filter(|i| votes.contains_key(i.id.as_str()))
                .max_by_key(|i| (votes[i.id.as_str()], std::cmp::Reverse(i.onset)));
            let Some(inc) = covering else {
                return TriggerScore {
                    trigger: trigger.to_owned(),
                    incident_id: None,
                    rank: None,
                    top: None,
                    cluster_jaccard: 0.0,
                };
            };
            let got: BTreeSet<&str> = inc.clusters.iter().map(String::as_str).collect();
            let union = got.union(&wanted).count();
            #[allow(clippy::cast_precision_loss)]
            let cluster_jaccard = if union == 0 {
                0.0
            } else {
                got.intersection(&wanted).count() as f64 / union as f64
            };
            TriggerScore {
                trigger: trigger.to_owned(),
                incident_id: Some(inc.id.clone()),
                rank: inc
                    .candidates
                    .iter()
                    .position(|c| c.change_id == trigger)
                    .map(|i| i + 1),
                top: inc.likely_cause().map(|c| c.change_id.clone()),
                cluster_jaccard,
            }
        })
        .collect()
}

/// Scores the alert events of one replay against its labels.
pub fn score(labels: &Labels, events: &[AlertEvent]) -> Score {
    let fired: Vec<&AlertEvent> = events
        .iter()
        .filter(|e| e.state == AlertState::Firing)
        .collect();
    let mut requirements = Vec::new();
    for w in &labels.windows {
        #[allow(clippy::cast_possible_truncation)]
        let deadline = w.onset + (w.max_delay_s * 1000.0).round() as i64;
        for cluster in &w.clusters {
            let hit = fired
                .iter()
                .filter(|e| {
                    &e.cluster == cluster
                        && e.service == w.service
                        && w.kinds.iter().any(|k| k == e.kind.as_str())
                        && (w.onset..=deadline).contains(&e.detected_at)
                })
                .min_by_key(|e| e.detected_at);
            #[allow(clippy::cast_precision_loss)]
            requirements.push(Requirement {
                cluster: cluster.clone(),
                service: w.service.clone(),
                kinds: w.kinds.clone(),
                onset_ms: w.onset,
                max_delay_s: w.max_delay_s,
                delay_s: hit.map(|e| (e.detected_at - w.onset) as f64 / 1000.0),
                kind: hit.map(|e| e.kind.as_str().to_owned()),
            });
        }
    }
    let false_positives = fired
        .iter()
        .filter(|e| !labels.windows.iter().any(|w| in_window(w, e)))
        .map(|e| FalsePositive {
            id: e.id.clone(),
            kind: e.kind.as_str().to_owned(),
            cluster: e.cluster.clone(),
            service: e.service.clone(),
            detected_at: detector::time::format_rfc3339(e.detected_at),
            summary: e.summary.clone(),
        })
        .collect();
    let mut delays: Vec<f64> = requirements.iter().filter_map(|r| r.delay_s).collect();
    delays.sort_by(f64::total_cmp);
    let hits = delays.len();
    Score {
        trace: labels.trace.clone(),
        required: requirements.len(),
        hits,
        misses: requirements.len() - hits,
        delay_median_s: median(&delays),
        delay_max_s: delays.last().copied(),
        alerts: fired.len(),
        false_positives,
        requirements,
        incidents: 0,
        triggers: Vec::new(),
    }
}

fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use detector::incident::{Candidate, ChangeKind, IncidentState};
    use detector::{AlertKind, Severity};

    use super::*;

    /// Event time origin (ms) and a minute.
    const T0: i64 = 1_770_000_000_000;
    const MIN: i64 = 60_000;

    /// Labels with one trigger on web of clusters a and b, onset at T0, ten minutes long.
    fn labels() -> Labels {
        let text = r#"{"trace":"t","interval_s":10,"windows":[
            {"kinds":["error_rate_spike"],"service":"web","clusters":["a","b"],
             "onset":"2026-02-02T02:40:00Z","end":"2026-02-02T02:50:00Z","max_delay_s":20,
             "trigger":"deploy-1"}]}"#;
        let l: Labels = serde_json::from_str(text).unwrap();
        assert_eq!(l.windows[0].onset, T0);
        l
    }

    fn alert(cluster: &str, service: &str, at: i64, incident: &str) -> AlertEvent {
        AlertEvent {
            id: format!("a-{cluster}-{service}-{at}"),
            kind: AlertKind::ErrorRateSpike,
            state: AlertState::Firing,
            severity: Severity::Critical,
            cluster: cluster.into(),
            service: service.into(),
            region: None,
            onset: at,
            detected_at: at,
            resolved_at: None,
            value: 0.5,
            baseline: 0.001,
            summary: String::new(),
            incident_id: Some(incident.into()),
        }
    }

    fn incident(id: &str, clusters: &[&str], ranked: &[&str]) -> Incident {
        Incident {
            id: id.into(),
            state: IncidentState::Open,
            severity: Severity::Critical,
            onset: T0,
            detected_at: T0,
            resolved_at: None,
            updated_at: T0,
            kinds: vec![AlertKind::ErrorRateSpike],
            clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
            services: vec!["web".into()],
            series: clusters.len(),
            alerts_firing: clusters.len(),
            affected_traffic_ratio: Some(0.5),
            peak_error_ratio: Some(0.3),
            alert_ids: Vec::new(),
            candidates: ranked
                .iter()
                .map(|c| Candidate {
                    change_id: (*c).into(),
                    kind: ChangeKind::Deploy,
                    service: "web".into(),
                    ts: T0 - MIN,
                    score: 0.5,
                    reason: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn trigger_scores() {
        struct Case {
            name: &'static str,
            incidents: Vec<Incident>,
            alerts: Vec<AlertEvent>,
            incident: Option<&'static str>,
            rank: Option<usize>,
            top: Option<&'static str>,
            jaccard: f64,
        }
        let both = |id: &str| {
            vec![
                alert("a", "web", T0 + 10_000, id),
                alert("b", "web", T0, id),
            ]
        };
        let cases = vec![
            Case {
                name: "trigger ranked first on exactly the windows' clusters",
                incidents: vec![incident("i-1", &["a", "b"], &["deploy-1", "cfg-9"])],
                alerts: both("i-1"),
                incident: Some("i-1"),
                rank: Some(1),
                top: Some("deploy-1"),
                jaccard: 1.0,
            },
            Case {
                name: "trigger ranked second",
                incidents: vec![incident("i-1", &["a", "b"], &["cfg-9", "deploy-1"])],
                alerts: both("i-1"),
                incident: Some("i-1"),
                rank: Some(2),
                top: Some("cfg-9"),
                jaccard: 1.0,
            },
            Case {
                name: "trigger not among the candidates",
                incidents: vec![incident("i-1", &["a", "b"], &["cfg-9"])],
                alerts: both("i-1"),
                incident: Some("i-1"),
                rank: None,
                top: Some("cfg-9"),
                jaccard: 1.0,
            },
            Case {
                name: "incident spread over twice the windows' clusters",
                incidents: vec![incident("i-1", &["a", "b", "c", "d"], &["deploy-1"])],
                alerts: both("i-1"),
                incident: Some("i-1"),
                rank: Some(1),
                top: Some("deploy-1"),
                jaccard: 0.5,
            },
            Case {
                name: "the incident holding most of the windows' alerts covers them",
                incidents: vec![
                    incident("i-1", &["a"], &["cfg-9"]),
                    incident("i-2", &["a", "b"], &["deploy-1"]),
                ],
                alerts: vec![
                    alert("a", "web", T0, "i-1"),
                    alert("a", "web", T0 + MIN, "i-2"),
                    alert("b", "web", T0 + MIN, "i-2"),
                ],
                incident: Some("i-2"),
                rank: Some(1),
                top: Some("deploy-1"),
                jaccard: 1.0,
            },
            Case {
                name: "alerts outside the windows (other service, long after) cover nothing",
                incidents: vec![incident("i-1", &["a"], &["deploy-1"])],
                alerts: vec![
                    alert("a", "api", T0, "i-1"),
                    alert("a", "web", T0 + 30 * MIN, "i-1"),
                ],
                incident: None,
                rank: None,
                top: None,
                jaccard: 0.0,
            },
        ];
        let labels = labels();
        for c in cases {
            let got = score_triggers(&labels, &c.alerts, &c.incidents);
            assert_eq!(got.len(), 1, "{}", c.name);
            let t = &got[0];
            assert_eq!(t.trigger, "deploy-1", "{}", c.name);
            assert_eq!(t.incident_id.as_deref(), c.incident, "{}", c.name);
            assert_eq!(t.rank, c.rank, "{}", c.name);
            assert_eq!(t.hit(), c.rank == Some(1), "{}", c.name);
            assert_eq!(t.top.as_deref(), c.top, "{}", c.name);
            assert!(
                (t.cluster_jaccard - c.jaccard).abs() < 1e-12,
                "{}: {t:?}",
                c.name
            );
        }
    }

    #[test]
    fn windows_without_a_trigger_are_not_scored_for_causes() {
        let mut labels = labels();
        labels.windows[0].trigger = None;
        let incidents = [incident("i-1", &["a", "b"], &["deploy-1"])];
        let alerts = [alert("a", "web", T0, "i-1")];
        assert!(score_triggers(&labels, &alerts, &incidents).is_empty());
    }
}
