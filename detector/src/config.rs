//! Detector configuration: every threshold lives here, with defaults that suit 1-60 s samples of
//! web-service request metrics. [`DetectorConfig`] is what users write (TOML/JSON via serde);
//! [`DetectorConfig::check`] turns it into [`Params`], the checked runtime type the detector uses.

use serde::{Deserialize, Serialize};

/// A configuration value out of range; `field` is the dotted path of the offending key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid detector config `{field}` = {value}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub value: String,
    pub reason: &'static str,
}

/// Everything the detector can be tuned with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// How late (event time) a sample may arrive and still be counted. Ticks close when the
    /// watermark (newest event time seen minus this) passes them, or earlier once no series is
    /// due at or before them any more.
    pub allowed_lateness_s: f64,
    /// While a source holds the watermark back for an input read behind the others (Kafka
    /// partitions catching up, see `Detector::set_frontier`), ticks stay open and their
    /// samples buffered. Beyond this many buffered samples the oldest open tick closes anyway:
    /// the bound on that memory (about 40 bytes a sample).
    pub max_held_samples: u64,
    /// A series pages only after this much history; before that it only learns.
    pub warmup_s: f64,
    /// Half-life of the slow baselines (error/retry ratio, success rate, latency, pool level).
    /// Long enough not to chase an incident, short enough to follow the diurnal cycle.
    pub baseline_half_life_s: f64,
    /// A firing alert resolves after its condition has stayed clear this long (hysteresis).
    pub resolve_after_s: f64,
    /// An alert that fires again within this long of resolving (same series and kind) is
    /// flapping: each time, it must stay clear twice as long as before to resolve, up to
    /// `flap_max_resolve_after_s`. 0 turns this off.
    pub flap_window_s: f64,
    pub flap_max_resolve_after_s: f64,
    pub error_rate: RatioConfig,
    pub retry: RatioConfig,
    pub success_drop: SuccessDropConfig,
    pub latency: LatencyConfig,
    pub db_pool: DbPoolConfig,
    pub telemetry: TelemetryConfig,
}

/// Shared by `error_rate_spike` (errors / requests) and `retry_amplification` (retries / requests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RatioConfig {
    /// Practical floor, absolute: the ratio must rise at least this much over baseline.
    pub min_abs_increase: f64,
    /// Practical floor, relative: the odds (r / (1 - r)) must grow at least this many times.
    pub min_odds_ratio: f64,
    /// Binomial CUSUM decision threshold, in log-likelihood-ratio units.
    pub cusum_threshold: f64,
    /// Practical floor, absolute count: a run with fewer events than this never pages, whatever
    /// the odds (a handful of errors on a quiet series is not an incident).
    pub min_count: f64,
    /// Significance a single sample must reach on its own to pass the practical floor with its
    /// own ratio (a ramp whose run is still diluted by its first samples).
    pub sample_alpha: f64,
    /// ... and how far above the floor itself that sample must be: one-sided significance
    /// against the floor's ratio. A series that settled a little below the floor has samples
    /// above it by noise alone; they must not page for it.
    pub floor_alpha: f64,
    /// Significance of the exact (beta/binomial) test run on candidates before paging.
    pub alpha: f64,
    /// Prior ratio for series with little history (a beta prior, weight `prior_requests`).
    pub prior_ratio: f64,
    pub prior_requests: f64,
    /// Firing alerts at or above this ratio are `critical`, below it `warning`.
    pub critical_ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuccessDropConfig {
    /// A sample is low when its successful requests/s fall below `(1 - min_drop) x baseline`.
    pub min_drop: f64,
    /// A run of low samples pages when, pooled, it is this many standard deviations short of
    /// the baseline (Poisson noise plus the series' own relative variance, taken as shared by
    /// the whole run).
    pub min_z: f64,
    /// Low samples in a row needed before paging.
    pub confirm_samples: u32,
    /// If the service's total success rate across its reporting clusters stays within this
    /// fraction of its total baseline, a cluster's drop is traffic moved, not lost.
    pub conserved_tolerance: f64,
    /// A series further than half of `min_drop` below its level for this many seconds in a row
    /// has shifted: the samples after that teach its variance nothing (a shift is not noise,
    /// and learning it would hide a later loss).
    pub shifted_after_s: f64,
    /// A paged drop that has held this long (seconds in a row further than half of `min_drop`
    /// below the level while still delivering at least `settled_min_ratio` of it) has
    /// settled: the level moves to where the series now is and the alert resolves, as for a
    /// recovery. (A steep evening fall, or traffic shed for good, is the new normal after an
    /// hour; a near-total loss, and the climb out of one, stay paged until traffic is back.)
    pub settled_after_s: f64,
    /// See `settled_after_s`: the share of its level a series must still deliver for its drop
    /// to settle.
    pub settled_min_ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyConfig {
    /// p99 must reach at least this multiple of its baseline ...
    pub min_factor: f64,
    /// ... and exceed it by at least this many milliseconds.
    pub min_abs_ms: f64,
    /// CUSUM slack and threshold on the log-p99 z-score.
    pub cusum_k: f64,
    pub cusum_h: f64,
    /// Single-sample rule: a sample this many deviations above baseline (and past the practical
    /// floor) fires at once, without waiting for the CUSUM, if its p50 moved with it (see
    /// `spike_min_p50_factor`). It is also the most one sample counts for in the CUSUM, so with
    /// `cusum_h` above `spike_z - cusum_k` one noisy sample cannot page through the CUSUM.
    pub spike_z: f64,
    /// The single-sample rule needs the sample's p50 at least this multiple of its own
    /// baseline: the body of the distribution got slower, not only its tail. A p99 over a few
    /// hundred requests jumps two- to fivefold whenever a handful of them are slow, and one such
    /// sample is how a healthy series looks. A rise in the p99 alone pages through the CUSUM
    /// (two samples at `spike_z`). Samples without a p50 never take the single-sample rule.
    pub spike_min_p50_factor: f64,
    /// Floor of the log-p99 standard deviation, so a very steady series is not hair-triggered.
    pub min_log_sd: f64,
    /// Samples with fewer requests carry no usable p99 (it is little more than the slowest of a
    /// handful of calls): the p99's channel skips them. The p50's channel judges every sample
    /// with a p50, so a quiet series' latency is judged on its median; there `min_factor` and
    /// `min_abs_ms` apply to the p50 against its own baseline.
    pub min_requests: f64,
    /// Usable samples needed before a channel's baseline can page (its own warm-up: a quiet
    /// series may have few usable samples in the series' warm-up period).
    pub min_samples: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbPoolConfig {
    /// Utilisation at which the pool counts as saturated (with callers waiting).
    pub saturated_utilisation: f64,
    pub min_pending: f64,
    /// Early warning: smoothed utilisation at least this ...
    pub warn_min_utilisation: f64,
    /// ... this many standard deviations above its own baseline ...
    pub warn_level_z: f64,
    /// ... and, on its current trend, full within this many seconds.
    pub horizon_s: f64,
    /// Consecutive samples that must agree before paging.
    pub confirm_samples: u32,
    /// Floor of the utilisation standard deviation.
    pub min_sd: f64,
    /// A pool that has stayed above its baseline this long without heading anywhere (not
    /// saturated, its level within two standard deviations of where it was) has settled at a
    /// new level: its baseline moves there and its alert resolves.
    pub settled_after_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// A warm series that has missed this many of its intervals, judged against the fleet's
    /// event time, is reported absent.
    pub absent_after_intervals: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            allowed_lateness_s: 120.0,
            max_held_samples: 4_000_000,
            warmup_s: 900.0,
            baseline_half_life_s: 1800.0,
            resolve_after_s: 120.0,
            flap_window_s: 1800.0,
            flap_max_resolve_after_s: 1920.0,
            error_rate: RatioConfig {
                min_abs_increase: 0.01,
                min_odds_ratio: 3.0,
                cusum_threshold: 6.0,
                min_count: 5.0,
                sample_alpha: 1e-4,
                floor_alpha: 0.05,
                alpha: 1e-6,
                prior_ratio: 0.002,
                prior_requests: 500.0,
                critical_ratio: 0.05,
            },
            retry: RatioConfig::default(),
            success_drop: SuccessDropConfig::default(),
            latency: LatencyConfig::default(),
            db_pool: DbPoolConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl Default for RatioConfig {
    /// Defaults for retries (errors override a few of them).
    fn default() -> Self {
        Self {
            min_abs_increase: 0.01,
            min_odds_ratio: 2.0,
            cusum_threshold: 6.0,
            min_count: 5.0,
            sample_alpha: 1e-4,
            floor_alpha: 0.05,
            alpha: 1e-6,
            prior_ratio: 0.01,
            prior_requests: 500.0,
            critical_ratio: 0.2,
        }
    }
}

impl Default for SuccessDropConfig {
    fn default() -> Self {
        Self {
            min_drop: 0.4,
            min_z: 4.0,
            confirm_samples: 2,
            conserved_tolerance: 0.15,
            shifted_after_s: 60.0,
            settled_after_s: 3600.0,
            settled_min_ratio: 0.1,
        }
    }
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            min_factor: 1.5,
            min_abs_ms: 20.0,
            cusum_k: 1.5,
            cusum_h: 8.0,
            spike_z: 6.0,
            spike_min_p50_factor: 1.2,
            min_log_sd: 0.05,
            min_requests: 50.0,
            min_samples: 30.0,
        }
    }
}

impl Default for DbPoolConfig {
    fn default() -> Self {
        Self {
            saturated_utilisation: 0.95,
            min_pending: 1.0,
            warn_min_utilisation: 0.7,
            warn_level_z: 4.0,
            horizon_s: 300.0,
            confirm_samples: 2,
            min_sd: 0.02,
            settled_after_s: 1800.0,
        }
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            absent_after_intervals: 3.0,
        }
    }
}

/// Checked, ready-to-use parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub cfg: DetectorConfig,
    pub lateness_ms: i64,
    /// `flap_window_s` in milliseconds (event time).
    pub flap_window_ms: i64,
}

fn check(field: &str, v: f64, ok: bool, reason: &'static str) -> Result<(), ConfigError> {
    if ok && v.is_finite() {
        Ok(())
    } else {
        Err(ConfigError {
            field: field.to_owned(),
            value: v.to_string(),
            reason,
        })
    }
}

fn check_ratio(prefix: &str, r: &RatioConfig) -> Result<(), ConfigError> {
    let f = |name: &str| format!("{prefix}.{name}");
    check(
        &f("min_abs_increase"),
        r.min_abs_increase,
        (0.0..1.0).contains(&r.min_abs_increase),
        "must be in [0, 1)",
    )?;
    check(
        &f("min_odds_ratio"),
        r.min_odds_ratio,
        r.min_odds_ratio >= 1.0,
        "must be >= 1",
    )?;
    check(
        &f("cusum_threshold"),
        r.cusum_threshold,
        r.cusum_threshold > 0.0,
        "must be > 0",
    )?;
    check(
        &f("min_count"),
        r.min_count,
        r.min_count >= 0.0,
        "must be >= 0",
    )?;
    check(
        &f("sample_alpha"),
        r.sample_alpha,
        r.sample_alpha > 0.0 && r.sample_alpha < 0.5,
        "must be in (0, 0.5)",
    )?;
    check(
        &f("floor_alpha"),
        r.floor_alpha,
        r.floor_alpha > 0.0 && r.floor_alpha <= 1.0,
        "must be in (0, 1]",
    )?;
    check(
        &f("alpha"),
        r.alpha,
        r.alpha > 0.0 && r.alpha < 0.5,
        "must be in (0, 0.5)",
    )?;
    check(
        &f("prior_ratio"),
        r.prior_ratio,
        r.prior_ratio > 0.0 && r.prior_ratio < 1.0,
        "must be in (0, 1)",
    )?;
    check(
        &f("prior_requests"),
        r.prior_requests,
        r.prior_requests > 0.0,
        "must be > 0",
    )?;
    check(
        &f("critical_ratio"),
        r.critical_ratio,
        (0.0..=1.0).contains(&r.critical_ratio),
        "must be in [0, 1]",
    )?;
    Ok(())
}

impl DetectorConfig {
    /// Validates every field and returns the runtime parameters, or the first bad field.
    pub fn check(self) -> Result<Params, ConfigError> {
        let c = &self;
        check(
            "allowed_lateness_s",
            c.allowed_lateness_s,
            c.allowed_lateness_s >= 0.0 && c.allowed_lateness_s <= 86_400.0,
            "must be in [0, 86400]",
        )?;
        #[allow(clippy::cast_precision_loss)]
        let held = c.max_held_samples as f64;
        check("max_held_samples", held, held >= 1.0, "must be >= 1")?;
        check("warmup_s", c.warmup_s, c.warmup_s >= 0.0, "must be >= 0")?;
        check(
            "baseline_half_life_s",
            c.baseline_half_life_s,
            c.baseline_half_life_s > 0.0,
            "must be > 0",
        )?;
        check(
            "resolve_after_s",
            c.resolve_after_s,
            c.resolve_after_s >= 0.0,
            "must be >= 0",
        )?;
        check(
            "flap_window_s",
            c.flap_window_s,
            c.flap_window_s >= 0.0,
            "must be >= 0",
        )?;
        check(
            "flap_max_resolve_after_s",
            c.flap_max_resolve_after_s,
            c.flap_max_resolve_after_s >= c.resolve_after_s,
            "must be >= resolve_after_s",
        )?;
        check_ratio("error_rate", &c.error_rate)?;
        check_ratio("retry", &c.retry)?;
        let s = &c.success_drop;
        check(
            "success_drop.min_drop",
            s.min_drop,
            s.min_drop > 0.0 && s.min_drop < 1.0,
            "must be in (0, 1)",
        )?;
        check(
            "success_drop.min_z",
            s.min_z,
            s.min_z >= 0.0,
            "must be >= 0",
        )?;
        check(
            "success_drop.confirm_samples",
            f64::from(s.confirm_samples),
            s.confirm_samples >= 1,
            "must be >= 1",
        )?;
        check(
            "success_drop.conserved_tolerance",
            s.conserved_tolerance,
            (0.0..1.0).contains(&s.conserved_tolerance),
            "must be in [0, 1)",
        )?;
        check(
            "success_drop.shifted_after_s",
            s.shifted_after_s,
            s.shifted_after_s > 0.0,
            "must be > 0",
        )?;
        check(
            "success_drop.settled_after_s",
            s.settled_after_s,
            s.settled_after_s > 0.0,
            "must be > 0",
        )?;
        check(
            "success_drop.settled_min_ratio",
            s.settled_min_ratio,
            s.settled_min_ratio > 0.0 && s.settled_min_ratio < 1.0,
            "must be in (0, 1)",
        )?;
        let l = &c.latency;
        check(
            "latency.min_factor",
            l.min_factor,
            l.min_factor >= 1.0,
            "must be >= 1",
        )?;
        check(
            "latency.min_abs_ms",
            l.min_abs_ms,
            l.min_abs_ms >= 0.0,
            "must be >= 0",
        )?;
        check(
            "latency.cusum_k",
            l.cusum_k,
            l.cusum_k >= 0.0,
            "must be >= 0",
        )?;
        check("latency.cusum_h", l.cusum_h, l.cusum_h > 0.0, "must be > 0")?;
        check("latency.spike_z", l.spike_z, l.spike_z > 0.0, "must be > 0")?;
        check(
            "latency.spike_min_p50_factor",
            l.spike_min_p50_factor,
            l.spike_min_p50_factor >= 1.0,
            "must be >= 1",
        )?;
        check(
            "latency.min_log_sd",
            l.min_log_sd,
            l.min_log_sd > 0.0,
            "must be > 0",
        )?;
        check(
            "latency.min_samples",
            l.min_samples,
            l.min_samples >= 0.0,
            "must be >= 0",
        )?;
        check(
            "latency.min_requests",
            l.min_requests,
            l.min_requests >= 0.0,
            "must be >= 0",
        )?;
        let p = &c.db_pool;
        check(
            "db_pool.saturated_utilisation",
            p.saturated_utilisation,
            p.saturated_utilisation > 0.0 && p.saturated_utilisation <= 1.0,
            "must be in (0, 1]",
        )?;
        check(
            "db_pool.min_pending",
            p.min_pending,
            p.min_pending >= 0.0,
            "must be >= 0",
        )?;
        check(
            "db_pool.warn_min_utilisation",
            p.warn_min_utilisation,
            (0.0..=1.0).contains(&p.warn_min_utilisation),
            "must be in [0, 1]",
        )?;
        check(
            "db_pool.warn_level_z",
            p.warn_level_z,
            p.warn_level_z >= 0.0,
            "must be >= 0",
        )?;
        check(
            "db_pool.horizon_s",
            p.horizon_s,
            p.horizon_s > 0.0,
            "must be > 0",
        )?;
        check(
            "db_pool.confirm_samples",
            f64::from(p.confirm_samples),
            p.confirm_samples >= 1,
            "must be >= 1",
        )?;
        check("db_pool.min_sd", p.min_sd, p.min_sd > 0.0, "must be > 0")?;
        check(
            "db_pool.settled_after_s",
            p.settled_after_s,
            p.settled_after_s > 0.0,
            "must be > 0",
        )?;
        let t = &c.telemetry;
        check(
            "telemetry.absent_after_intervals",
            t.absent_after_intervals,
            t.absent_after_intervals >= 1.0,
            "must be >= 1",
        )?;
        // Whole milliseconds: the clamp above keeps this in range.
        #[allow(clippy::cast_possible_truncation)]
        let lateness_ms = (c.allowed_lateness_s * 1000.0).round() as i64;
        #[allow(clippy::cast_possible_truncation)]
        let flap_window_ms = (c.flap_window_s * 1000.0) as i64;
        Ok(Params {
            lateness_ms,
            flap_window_ms,
            cfg: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(DetectorConfig::default().check().is_ok());
    }

    type Mutation = Box<dyn Fn(&mut DetectorConfig)>;

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "allowed_lateness_s",
                Box::new(|c| c.allowed_lateness_s = -1.0),
            ),
            ("error_rate.alpha", Box::new(|c| c.error_rate.alpha = 0.0)),
            ("retry.floor_alpha", Box::new(|c| c.retry.floor_alpha = 1.5)),
            (
                "flap_max_resolve_after_s",
                Box::new(|c| c.flap_max_resolve_after_s = 60.0),
            ),
            (
                "db_pool.settled_after_s",
                Box::new(|c| c.db_pool.settled_after_s = 0.0),
            ),
            (
                "success_drop.shifted_after_s",
                Box::new(|c| c.success_drop.shifted_after_s = 0.0),
            ),
            (
                "retry.min_odds_ratio",
                Box::new(|c| c.retry.min_odds_ratio = 0.5),
            ),
            (
                "success_drop.min_drop",
                Box::new(|c| c.success_drop.min_drop = 1.5),
            ),
            (
                "latency.cusum_h",
                Box::new(|c| c.latency.cusum_h = f64::NAN),
            ),
            (
                "db_pool.confirm_samples",
                Box::new(|c| c.db_pool.confirm_samples = 0),
            ),
            (
                "telemetry.absent_after_intervals",
                Box::new(|c| c.telemetry.absent_after_intervals = 0.5),
            ),
        ];
        for (field, mutate) in cases {
            let mut c = DetectorConfig::default();
            mutate(&mut c);
            let err = c.check().expect_err(field);
            assert_eq!(err.field, field);
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<DetectorConfig>(r#"{"warmup_s": 10, "bogus": 1}"#)
            .expect_err("unknown field");
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
