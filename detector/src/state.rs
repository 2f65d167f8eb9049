//! Per-series detector state as a struct of arrays: one `Vec` per field, indexed by the dense
//! series id. The same type doubles as the row-dense scratch a tick is computed in: gather the
//! rows' series, run the kernels over contiguous slices, scatter back.
//!
//! The statistics are [`F`] (`f32`): eight lanes to an AVX2 register (sixteen to AVX-512)
//! instead of four (eight), half the bytes to move per sample, and single-precision division
//! and square root at about twice the throughput. Their inputs are counts and ratios judged
//! against thresholds, for which seven significant digits are ample. What must be exact stays `f64`: event times (epoch
//! milliseconds) and cumulative counts.

use crate::col::Col;

/// The float type of the per-sample statistics.
pub type F = f32;

/// `x` as an [`F`] (statistics, thresholds: rounding to seven digits is intended).
#[inline(always)]
#[allow(clippy::cast_possible_truncation)]
pub fn to_f(x: f64) -> F {
    x as F
}

macro_rules! soa {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: Col<$ty>,)*
        }

        impl $name {
            /// Bytes of state per series (for the memory budget).
            pub const BYTES: usize = 0 $(+ std::mem::size_of::<$ty>())*;

            pub fn len(&self) -> usize {
                self.last_ts.len()
            }

            pub fn is_empty(&self) -> bool {
                self.last_ts.is_empty()
            }

            /// Whether every column has `n` entries (a restored state may not).
            pub fn all_len(&self, n: usize) -> bool {
                true $(&& self.$field.len() == n)*
            }

            /// Grows (or shrinks) every column to `n` entries, new ones zeroed.
            pub fn resize(&mut self, n: usize) {
                $(self.$field.resize(n, <$ty>::default());)*
            }

            /// Copies the state of `ids[i]` into row `i` of `out` (which is resized to `ids.len()`).
            pub fn gather(&self, ids: &[u32], out: &mut Self) {
                $(
                    out.$field.clear();
                    out.$field.extend(ids.iter().map(|&s| self.$field[s as usize]));
                )*
            }

            /// Writes row `i` of `from` back to the state of `ids[i]`.
            pub fn scatter(&mut self, ids: &[u32], from: &Self) {
                $(
                    for (&s, &v) in ids.iter().zip(&from.$field) {
                        self.$field[s as usize] = v;
                    }
                )*
            }
        }
    };
}

soa! {
    /// Everything the detector remembers about a series. Flags are stored as 0.0 / 1.0 so the
    /// kernels stay branch-free; times are epoch milliseconds (exact in f64).
    pub struct SeriesState {
        // Common: newest sample evaluated (epoch ms), interval (s), slow-baseline and fast
        // (recovery) EWMA weights for that interval, samples evaluated (saturating).
        last_ts: f64, interval_s: F, alpha: F, fast_a: F, seen: F,
        // error_rate_spike: EWMA sums of errors/requests (baseline), dispersion, CUSUM,
        // current run sums and start, fast EWMA sums (for resolution), firing flag, clear time.
        e_be: F, e_bn: F, e_phi: F, e_cus: F, e_rune: F, e_runn: F, e_runstart: f64,
        e_fe: F, e_fn: F, e_firing: F, e_clear: F,
        // retry_amplification: same layout.
        r_be: F, r_bn: F, r_phi: F, r_cus: F, r_rune: F, r_runn: F, r_runstart: f64,
        r_fe: F, r_fn: F, r_firing: F, r_clear: F,
        // success_drop: level sum and weight, relative variance beyond Poisson's, consecutive
        // low samples and the successes and expected successes of their run, fast EWMAs of
        // both (for recovery), last rate and level, firing flag, clear time, run start,
        // seconds in a row further than half the drop below the level.
        s_sum: F, s_w: F, s_var: F, s_off: F, s_low: F, s_run: F, s_runmu: F, s_fs: F, s_fmu: F,
        s_rate: F, s_lvl: F, s_firing: F, s_clear: F, s_runstart: f64,
        // latency_spike: log-p99 mean and variance, samples learned, CUSUM, last p99,
        // firing flag, clear time, run start, z-score of the last sample for the single-sample
        // rule; the p50's own channel: log-p50 mean, volume-scaled variance, samples learned,
        // CUSUM.
        l_m: F, l_v: F, l_n: F, l_cus: F, l_last: F, l_firing: F, l_clear: F, l_runstart: f64,
        l_z: F, l_m50: F, l_v50: F, l_n50: F, l_c50: F,
        // db_pool_saturation: Holt level and trend, baseline and variance, samples learned,
        // last utilisation, warn/saturated streaks, seconds settled above the baseline and the
        // level then, firing flag, clear time, run start.
        p_lvl: F, p_tr: F, p_base: F, p_var: F, p_n: F, p_last: F, p_warn: F, p_sat: F,
        p_hold: F, p_from: F, p_firing: F, p_clear: F, p_runstart: f64,
        // telemetry_absent firing flag.
        a_firing: F,
        // Cold: requests, errors and retries of every sample evaluated (whole numbers, exact
        // up to 2^53), and the DB pool's waiters at the last sample (NaN when not reported).
        t_req: f64, t_err: f64, t_retries: f64, p_pending: F,
    }
}

/// A statistic for people to read: `x` at [`F`]'s precision, as the shortest decimal that
/// names it (so a rate held as `1542.8f32` is reported as 1542.8, not 1542.800048828125).
pub fn readable(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    to_f(x).to_string().parse().unwrap_or(x)
}
