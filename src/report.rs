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
