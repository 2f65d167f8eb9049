//! Alert kinds, states and the alert event (CONTRACT section 5).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Rfc3339;

/// The six things spikewatch pages about (CONTRACT section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    ErrorRateSpike,
    SuccessDrop,
    RetryAmplification,
    DbPoolSaturation,
    LatencySpike,
    TelemetryAbsent,
}

impl AlertKind {
    pub const ALL: [AlertKind; 6] = [
        AlertKind::ErrorRateSpike,
        AlertKind::SuccessDrop,
        AlertKind::RetryAmplification,
        AlertKind::DbPoolSaturation,
        AlertKind::LatencySpike,
        AlertKind::TelemetryAbsent,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AlertKind::ErrorRateSpike => "error_rate_spike",
            AlertKind::SuccessDrop => "success_drop",
            AlertKind::RetryAmplification => "retry_amplification",
            AlertKind::DbPoolSaturation => "db_pool_saturation",
            AlertKind::LatencySpike => "latency_spike",
            AlertKind::TelemetryAbsent => "telemetry_absent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One alert transition. Times are event time (the sample clock), epoch milliseconds,
/// serialised as RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Stable id: the same (series, kind, onset) always gives the same id.
    pub id: String,
    pub kind: AlertKind,
    pub state: AlertState,
    pub severity: Severity,
    pub cluster: String,
    pub service: String,
    pub region: Option<String>,
    #[serde(with = "Rfc3339")]
    pub onset: i64,
    #[serde(with = "Rfc3339")]
    pub detected_at: i64,
    #[serde(with = "crate::time::Rfc3339Opt")]
    pub resolved_at: Option<i64>,
    /// The measured value that fired (on resolution: the worst value seen while firing).
    pub value: f64,
    pub baseline: f64,
    pub summary: String,
    pub incident_id: Option<String>,
}

/// A stable 64-bit FNV-1a hash, independent of the platform and of std's random hasher seeds.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub(crate) fn alert_id(cluster: &str, service: &str, kind: AlertKind, onset_ms: i64) -> String {
    let h = fnv1a(&[
        cluster.as_bytes(),
        service.as_bytes(),
        kind.as_str().as_bytes(),
        &onset_ms.to_le_bytes(),
    ]);
    format!("a-{h:016x}")
}

/// Formats a kind's value for the one-line summary (`p50`: a latency alert judged and
/// reported on the p50 rather than the p99).
pub(crate) fn summary(kind: AlertKind, value: f64, baseline: f64, p50: bool) -> String {
    match kind {
        AlertKind::ErrorRateSpike => {
            format!(
                "error ratio {:.1}% vs baseline {:.1}%",
                value * 100.0,
                baseline * 100.0
            )
        }
        AlertKind::RetryAmplification => format!(
            "retries {:.1}% of requests vs baseline {:.1}%",
            value * 100.0,
            baseline * 100.0
        ),
        AlertKind::SuccessDrop => {
            let drop = if baseline > 0.0 {
                (1.0 - value / baseline) * 100.0
            } else {
                0.0
            };
            format!(
                "successful requests {value:.1}/s vs baseline {baseline:.1}/s ({drop:.0}% down)"
            )
        }
        AlertKind::DbPoolSaturation => format!(
            "DB pool {:.0}% in use vs baseline {:.0}%",
            value * 100.0,
            baseline * 100.0
        ),
        AlertKind::LatencySpike => {
            let x = if baseline > 0.0 {
                value / baseline
            } else {
                0.0
            };
            let q = if p50 { "p50" } else { "p99" };
            format!("{q} latency {value:.0} ms vs baseline {baseline:.0} ms (x{x:.1})")
        }
        AlertKind::TelemetryAbsent => {
            format!("no samples for {value:.0} s (reports every {baseline:.0} s)")
        }
    }
}
