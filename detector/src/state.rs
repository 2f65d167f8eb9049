//! Per-series detector state as a struct of arrays: one `Vec<f64>` per field, indexed by the
//! dense series id. The same type doubles as the row-dense scratch a tick is computed in:
//! gather the rows' series, run the kernels over contiguous slices, scatter back.

macro_rules! soa {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: Vec<f64>,)*
        }

        impl $name {
            /// Number of f64 fields per series (for the memory budget).
            pub const FIELDS: usize = [$(stringify!($field)),*].len();

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
                $(self.$field.resize(n, 0.0);)*
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
        // Common.
        last_ts, interval_s, alpha, seen,
        // error_rate_spike: EWMA sums of errors/requests (baseline), dispersion, CUSUM,
        // current run sums and start, fast EWMA sums (for resolution), firing flag, clear count.
        e_be, e_bn, e_phi, e_cus, e_rune, e_runn, e_runstart, e_fe, e_fn, e_firing, e_clear, e_p0, e_p1,
        // retry_amplification: same layout.
        r_be, r_bn, r_phi, r_cus, r_rune, r_runn, r_runstart, r_fe, r_fn, r_firing, r_clear, r_p0, r_p1,
        // success_drop: level sum and weight, relative variance, consecutive low samples,
        // last rate and level, firing flag, clear count, run start.
        s_sum, s_w, s_var, s_low, s_rate, s_lvl, s_firing, s_clear, s_runstart,
        // latency_spike: log-p99 mean and variance, samples learned, CUSUM, last p99,
        // firing flag, clear count, run start, z-score of the last sample.
        l_m, l_v, l_n, l_cus, l_last, l_firing, l_clear, l_runstart, l_z,
        // db_pool_saturation: Holt level and trend, baseline and variance, samples learned,
        // last utilisation, warn/saturated streaks, firing flag, clear count, run start.
        p_lvl, p_tr, p_base, p_var, p_n, p_last, p_warn, p_sat, p_firing, p_clear, p_runstart,
        // telemetry_absent firing flag.
        a_firing,
        // Cold: requests, errors and retries of every sample evaluated (whole numbers, exact
        // up to 2^53), and the DB pool's waiters at the last sample (NaN when not reported).
        t_req, t_err, t_retries, p_pending,
    }
}
