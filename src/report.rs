//! Human-readable output: the alert and incident lines of `replay` and the scorecard of
//! `backtest`.

use std::fmt::Write as _;

use detector::incident::IncidentState;
use detector::time::format_rfc3339;
use detector::{AlertEvent, AlertState, Incident};

use crate::backtest::Score;

pub const ALERT_HEADER: &str = "DETECTED_AT           STATE     SEVERITY  KIND                 CLUSTER/SERVICE                  SUMMARY";

/// One line of the replay table.
pub fn alert_line(e: &AlertEvent) -> String {
    let at = match e.state {
        AlertState::Firing => e.detected_at,
        AlertState::Resolved => e.resolved_at.unwrap_or(e.detected_at),
    };
    format!(
        "{:<21} {:<9} {:<9} {:<20} {:<32} {}",
        format_rfc3339(at),
        e.state.as_str(),
        e.severity.as_str(),
        e.kind.as_str(),
        format!("{}/{}", e.cluster, e.service),
        e.summary
    )
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "?".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "7 clusters / 2 services".
fn radius(inc: &Incident) -> String {
    format!(
        "{} / {}",
        plural(inc.clusters.len(), "cluster", "clusters"),
        plural(inc.services.len(), "service", "services")
    )
}

/// A replay table line for an incident that just opened or resolved (same columns as the
/// alert lines: time, state, severity, id, blast radius, summary).
///
/// The peak fleet error ratio is only shown once the incident has resolved: while it is open,
/// the minute buckets after the onset have not settled yet, so the figure would be the
/// pre-incident level, not a peak.
pub fn incident_line(inc: &Incident) -> String {
    let (at, what, peak) = match inc.state {
        IncidentState::Open => (inc.detected_at, "opened", String::new()),
        IncidentState::Resolved => (
            inc.resolved_at.unwrap_or(inc.updated_at),
            "resolved",
            format!(", peak error ratio {}", percent(inc.peak_error_ratio)),
        ),
    };
    let cause = inc.likely_cause().map_or_else(
        || "no candidate change".to_owned(),
        |c| format!("likely {}", c.reason),
    );
    format!(
        "{:<21} {:<9} {:<9} {:<20} {:<32} incident {what}: {}, {} of traffic{peak}; {cause}",
        format_rfc3339(at),
        "incident",
        inc.severity.as_str(),
        inc.id,
        radius(inc),
        plural(inc.series, "series", "series"),
        percent(inc.affected_traffic_ratio),
    )
}

/// The incidents of a replay, one block each: blast radius, then the ranked candidates.
pub fn incident_summary(incidents: &[Incident]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "INCIDENTS ({})", incidents.len());
    for inc in incidents {
        let end = inc
            .resolved_at
            .map_or_else(|| "still open".to_owned(), format_rfc3339);
        let _ = writeln!(
            s,
            "{}  {}  {} -> {}  {}, {}, {} of traffic, peak error ratio {}",
            inc.id,
            inc.state.as_str(),
            format_rfc3339(inc.onset),
            end,
            radius(inc),
            plural(inc.series, "series", "series"),
            percent(inc.affected_traffic_ratio),
            percent(inc.peak_error_ratio),
        );
        let kinds: Vec<&str> = inc.kinds.iter().map(|k| k.as_str()).collect();
        let _ = writeln!(s, "  kinds:    {}", kinds.join(", "));
        let _ = writeln!(s, "  clusters: {}", inc.clusters.join(", "));
        let _ = writeln!(s, "  services: {}", inc.services.join(", "));
        if inc.candidates.is_empty() {
            let _ = writeln!(s, "  no candidate change");
        }
        for (i, c) in inc.candidates.iter().enumerate() {
            let _ = writeln!(s, "  {}. [{:.2}] {}", i + 1, c.score, c.reason);
        }
    }
    s
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |s| format!("{s:.0}s"))
}

/// The backtest scorecard as a table, one row per trace, then the misses and false positives.
pub fn scorecard(scores: &[Score]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<40} {:>8} {:>5} {:>6} {:>8} {:>8} {:>6} {:>4} {:>9} {:>5} {:>6}  RESULT",
        "TRACE",
        "REQUIRED",
        "HITS",
        "MISSES",
        "DELAY_MED",
        "DELAY_MAX",
        "ALERTS",
        "FP",
        "INCIDENTS",
        "CAUSE",
        "RADIUS"
    );
    for sc in scores {
        let result = match (sc.passed(), sc.false_positives.is_empty()) {
            (true, true) => "ok",
            (true, false) => "ok (false positives)",
            (false, _) => "MISSED",
        };
        let (cause, radius) = if sc.triggers.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{}/{}", sc.trigger_hits(), sc.triggers.len()),
                sc.min_cluster_jaccard()
                    .map_or_else(|| "-".to_owned(), |j| format!("{j:.2}")),
            )
        };
        let _ = writeln!(
            s,
            "{:<40} {:>8} {:>5} {:>6} {:>9} {:>9} {:>6} {:>4} {:>9} {:>5} {:>6}  {}",
            sc.trace,
            sc.required,
            sc.hits,
            sc.misses,
            secs(sc.delay_median_s),
            secs(sc.delay_max_s),
            sc.alerts,
            sc.false_positives.len(),
            sc.incidents,
            cause,
            radius,
            result
        );
    }
    for sc in scores {
        for r in sc.requirements.iter().filter(|r| r.delay_s.is_none()) {
            let _ = writeln!(
                s,
                "  miss  {}: {}/{} wanted {} within {:.0}s of {}",
                sc.trace,
                r.cluster,
                r.service,
                r.kinds.join("|"),
                r.max_delay_s,
                format_rfc3339(r.onset_ms)
            );
        }
        for fp in &sc.false_positives {
            let _ = writeln!(
                s,
                "  fp    {}: {} {}/{} at {}: {}",
                sc.trace, fp.kind, fp.cluster, fp.service, fp.detected_at, fp.summary
            );
        }
        for t in sc.triggers.iter().filter(|t| !t.hit()) {
            let rank = t
                .rank
                .map_or_else(|| "not listed".to_owned(), |r| format!("ranked {r}"));
            let _ = writeln!(
                s,
                "  cause {}: {} {rank} in {} (first: {})",
                sc.trace,
                t.trigger,
                t.incident_id.as_deref().unwrap_or("no incident"),
                t.top.as_deref().unwrap_or("none"),
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use detector::incident::{Candidate, ChangeKind};
    use detector::{AlertKind, Severity};
    use ingest::trace::Labels;

    use super::*;
    use crate::backtest::{self, TriggerScore};

    const T0: i64 = 1_770_000_000_000;

    fn incident(state: IncidentState, cause: Option<&str>) -> Incident {
        Incident {
            id: "i-00000000000000aa".into(),
            state,
            severity: Severity::Critical,
            onset: T0,
            detected_at: T0 + 10_000,
            resolved_at: (state == IncidentState::Resolved).then_some(T0 + 600_000),
            updated_at: T0 + 600_000,
            kinds: vec![AlertKind::ErrorRateSpike],
            clusters: vec!["a".into(), "b".into()],
            services: vec!["web".into()],
            series: 2,
            alerts_firing: usize::from(state == IncidentState::Open),
            affected_traffic_ratio: Some(0.25),
            peak_error_ratio: Some(0.4),
            alert_ids: Vec::new(),
            candidates: cause
                .map(|id| Candidate {
                    change_id: id.into(),
                    kind: ChangeKind::Deploy,
                    service: "web".into(),
                    ts: T0 - 30_000,
                    score: 0.9,
                    reason: format!("{id} (deploy of web) to 2 of the 2 affected clusters"),
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn incident_lines() {
        // (name, incident, must contain, must not contain)
        let cases = [
            (
                "opened: time of detection, radius, share and cause; no peak yet",
                incident(IncidentState::Open, Some("deploy-1")),
                vec![
                    "2026-02-02T02:40:10Z",
                    "incident opened",
                    "2 clusters / 1 service",
                    "2 series",
                    "25.0% of traffic",
                    "likely deploy-1 (deploy of web)",
                ],
                vec!["peak error ratio"],
            ),
            (
                "resolved: time of resolution and the peak",
                incident(IncidentState::Resolved, None),
                vec![
                    "2026-02-02T02:50:00Z",
                    "incident resolved",
                    "peak error ratio 40.0%",
                    "no candidate change",
                ],
                vec!["likely"],
            ),
        ];
        for (name, inc, want, unwanted) in cases {
            let line = incident_line(&inc);
            for w in want {
                assert!(line.contains(w), "{name}: {w:?} missing from {line}");
            }
            for u in unwanted {
                assert!(!line.contains(u), "{name}: {u:?} in {line}");
            }
        }
    }

    #[test]
    fn scorecard_reports_causes_and_cluster_match() {
        let labels: Labels =
            serde_json::from_str(r#"{"trace":"trace-x","interval_s":10,"windows":[]}"#).unwrap();
        let mut sc = backtest::score(&labels, &[]);
        sc.incidents = 2;
        sc.triggers = vec![
            TriggerScore {
                trigger: "deploy-1".into(),
                incident_id: Some("i-1".into()),
                rank: Some(1),
                top: Some("deploy-1".into()),
                cluster_jaccard: 1.0,
            },
            TriggerScore {
                trigger: "cfg-2".into(),
                incident_id: Some("i-2".into()),
                rank: Some(3),
                top: Some("deploy-9".into()),
                cluster_jaccard: 0.5,
            },
        ];
        let text = scorecard(std::slice::from_ref(&sc));
        let row = text.lines().nth(1).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        // TRACE .. FP INCIDENTS CAUSE RADIUS RESULT
        assert_eq!(cols[0], "trace-x");
        assert_eq!(&cols[8..], ["2", "1/2", "0.50", "ok"], "{row}");
        assert!(
            text.contains("cause trace-x: cfg-2 ranked 3 in i-2 (first: deploy-9)"),
            "{text}"
        );
        assert!(!text.contains("cause trace-x: deploy-1"), "{text}");
    }
}
