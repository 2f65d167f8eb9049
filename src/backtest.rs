//! Scoring a replay against a trace's `labels.json` (CONTRACT section 3).

use detector::{AlertEvent, AlertState};
use ingest::trace::Labels;
use serde::Serialize;

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
}

impl Score {
    pub fn passed(&self) -> bool {
        self.misses == 0
    }
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
        .filter(|e| {
            !labels.windows.iter().any(|w| {
                w.service == e.service
                    && w.clusters.iter().any(|c| c == &e.cluster)
                    && (w.onset..=w.end + RECOVERY_GRACE_MS).contains(&e.detected_at)
            })
        })
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
    }
}

fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}
