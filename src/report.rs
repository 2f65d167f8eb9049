//! Human-readable output: the alert table of `replay` and the scorecard of `backtest`.

use std::fmt::Write as _;

use detector::time::format_rfc3339;
use detector::{AlertEvent, AlertState};

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

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |s| format!("{s:.0}s"))
}

/// The backtest scorecard as a table, one row per trace, then the misses and false positives.
pub fn scorecard(scores: &[Score]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<40} {:>8} {:>5} {:>6} {:>8} {:>8} {:>6} {:>4}  RESULT",
        "TRACE", "REQUIRED", "HITS", "MISSES", "DELAY_MED", "DELAY_MAX", "ALERTS", "FP"
    );
    for sc in scores {
        let result = match (sc.passed(), sc.false_positives.is_empty()) {
            (true, true) => "ok",
            (true, false) => "ok (false positives)",
            (false, _) => "MISSED",
        };
        let _ = writeln!(
            s,
            "{:<40} {:>8} {:>5} {:>6} {:>9} {:>9} {:>6} {:>4}  {}",
            sc.trace,
            sc.required,
            sc.hits,
            sc.misses,
            secs(sc.delay_median_s),
            secs(sc.delay_max_s),
            sc.alerts,
            sc.false_positives.len(),
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
    }
    s
}
