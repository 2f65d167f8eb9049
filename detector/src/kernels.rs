//! The per-sample kernels. Each takes row-dense slices (one entry per sample in the tick, the
//! series' state gathered next to it) and updates them in place, without branches that depend on
//! data other than selects, so the compiler can vectorise the loops. They decide nothing about
//! alerts: they leave the evidence (CUSUM sums, streaks, clear time) for the rare-candidate pass.

use crate::config::{DbPoolConfig, LatencyConfig, RatioConfig, SuccessDropConfig};
use crate::stats::fast_ln;

/// Inputs common to every kernel for one tick.
#[derive(Debug)]
pub struct Common<'a> {
    /// Interval end of every row (the tick's time), epoch ms.
    pub ts: f64,
    /// Interval length in seconds.
    pub dt: &'a [f64],
    /// Slow-baseline EWMA weight for the row's interval.
    pub alpha: &'a [f64],
    /// 1.0 when the series is past warm-up.
    pub warm: &'a [f64],
}

/// Weight of the fast EWMA used to judge recovery: a 30 s half-life.
#[inline(always)]
fn fast_alpha(dt: f64) -> f64 {
    (dt / (dt + 43.0)).min(1.0)
}

/// State columns of one ratio detector (errors or retries), gathered per row.
#[derive(Debug)]
pub struct RatioCols<'a> {
    pub be: &'a mut [f64],
    pub bn: &'a mut [f64],
    pub phi: &'a mut [f64],
    pub cus: &'a mut [f64],
    pub rune: &'a mut [f64],
    pub runn: &'a mut [f64],
    pub runstart: &'a mut [f64],
    pub fe: &'a mut [f64],
    pub fnn: &'a mut [f64],
    pub firing: &'a [f64],
    pub clear: &'a mut [f64],
    pub p0: &'a mut [f64],
    pub p1: &'a mut [f64],
}

/// Binomial CUSUM of `x` out of `n` against the series' baseline ratio.
///
/// Per row: the baseline ratio `p0` (volume-weighted EWMA with a beta prior), the smallest ratio
/// worth paging about `p1` (the practical floor), the log-likelihood ratio of the sample under
/// `p1` vs `p0` deflated by the series' overdispersion, accumulated into a one-sided CUSUM. The
/// sums of the current run (since the CUSUM left zero) are kept for the exact test. Baselines and
/// dispersion learn only while the series is quiet, so an incident is never absorbed.
#[inline(always)]
pub fn ratio(
    cfg: &RatioConfig,
    c: &Common<'_>,
    x: &[f64],
    n: &[f64],
    s: RatioCols<'_>,
    attn: &mut [u8],
) {
    ratio_rows(
        cfg, c.ts, c.dt, c.alpha, c.warm, x, n, s.be, s.bn, s.phi, s.cus, s.rune, s.runn,
        s.runstart, s.fe, s.fnn, s.firing, s.clear, s.p0, s.p1, attn,
    );
}

// The row loops take every column as its own slice argument: references passed as function
// arguments are known not to alias, while references read out of a struct are not, and without
// that knowledge the compiler would not vectorise a loop over this many columns. Each is
// compiled for the baseline and for AVX2 (`crate::isa`), the copy the CPU can run chosen at
// run time.
crate::isa::multiversion! {
#[allow(clippy::too_many_arguments)]
fn ratio_rows(
    cfg: &RatioConfig,
    ts: f64,
    dt: &[f64],
    alpha: &[f64],
    warm: &[f64],
    x: &[f64],
    n: &[f64],
    be: &mut [f64],
    bn: &mut [f64],
    phi: &mut [f64],
    cus: &mut [f64],
    rune: &mut [f64],
    runn: &mut [f64],
    runstart: &mut [f64],
    fe: &mut [f64],
    fnn: &mut [f64],
    firing: &[f64],
    clear: &mut [f64],
    p0s: &mut [f64],
    p1s: &mut [f64],
    attn: &mut [u8],
) {
    let len = x.len();
    let (n, dt, alpha, warm) = (&n[..len], &dt[..len], &alpha[..len], &warm[..len]);
    let (be, bn, phi, cus) = (
        &mut be[..len],
        &mut bn[..len],
        &mut phi[..len],
        &mut cus[..len],
    );
    let (rune, runn, runstart) = (&mut rune[..len], &mut runn[..len], &mut runstart[..len]);
    let (fe, fnn, firing, clear) = (
        &mut fe[..len],
        &mut fnn[..len],
        &firing[..len],
        &mut clear[..len],
    );
    let (p0s, p1s, attn) = (&mut p0s[..len], &mut p1s[..len], &mut attn[..len]);
    let prior_e = cfg.prior_ratio * cfg.prior_requests;
    let h = cfg.cusum_threshold;
    for i in 0..len {
        let (xi, ni) = (x[i], n[i]);
        let valid = xi.is_finite() && ni > 0.0;
        let p0 = ((be[i] + prior_e) / (bn[i] + cfg.prior_requests)).clamp(1e-6, 0.999);
        let odds1 = p0 / (1.0 - p0) * cfg.min_odds_ratio;
        let p1 = (p0 + cfg.min_abs_increase)
            .max(odds1 / (1.0 + odds1))
            .min(0.9999);
        let l1 = fast_ln(p1 / p0);
        let l0 = fast_ln((1.0 - p1) / (1.0 - p0));
        let xv = if valid { xi } else { 0.0 };
        let nv = if valid { ni } else { 0.0 };
        let ph = phi[i].max(1.0);
        let llr = (xv * l1 + (nv - xv) * l0) / ph;
        let prev = cus[i];
        let next = if warm[i] > 0.0 {
            (prev + llr).clamp(0.0, 1e12)
        } else {
            0.0
        };
        let starting = prev <= 0.0 && next > 0.0;
        let running = next > 0.0;
        rune[i] = if running {
            if starting {
                xv
            } else {
                rune[i] + xv
            }
        } else {
            0.0
        };
        runn[i] = if running {
            if starting {
                nv
            } else {
                runn[i] + nv
            }
        } else {
            0.0
        };
        runstart[i] = if starting {
            ts - dt[i] * 1000.0
        } else {
            runstart[i]
        };
        cus[i] = next;
        // Fast EWMA of the ratio, for recovery.
        let af = if valid { fast_alpha(dt[i]) } else { 0.0 };
        fe[i] += af * (xv - fe[i]);
        fnn[i] += af * (nv - fnn[i]);
        let fast_ratio = if fnn[i] > 0.0 { fe[i] / fnn[i] } else { 0.0 };
        let calm = valid && fast_ratio < 0.5 * (p0 + p1);
        clear[i] = if calm { clear[i] + dt[i] } else { 0.0 };
        // Learn only while quiet: not firing, CUSUM below its threshold. (Excluding every
        // sample that nudges the CUSUM would bias a quiet series' baseline towards zero errors.)
        let quiet = valid && firing[i] <= 0.0 && next <= h;
        let a = if quiet { alpha[i] } else { 0.0 };
        be[i] = be[i] * (1.0 - a) + if quiet { xv } else { 0.0 };
        bn[i] = bn[i] * (1.0 - a) + if quiet { nv } else { 0.0 };
        let expected = nv * p0;
        let r2 = (xv - expected) * (xv - expected) / (expected * (1.0 - p0)).max(1e-9);
        phi[i] += a * (r2.min(50.0) - phi[i]);
        p0s[i] = p0;
        p1s[i] = p1;
        attn[i] |= u8::from((next > h) | (firing[i] > 0.0));
    }
}
}

/// State columns of the success-drop detector.
#[derive(Debug)]
pub struct SuccessCols<'a> {
    pub sum: &'a mut [f64],
    pub w: &'a mut [f64],
    pub var: &'a mut [f64],
    pub low: &'a mut [f64],
    pub rate: &'a mut [f64],
    pub lvl: &'a mut [f64],
    pub firing: &'a [f64],
    pub clear: &'a mut [f64],
    pub runstart: &'a mut [f64],
}

/// Successful requests per second against a bias-corrected EWMA level. A sample is low when it
/// is both `min_drop` below the level and `min_z` deviations below it (Poisson noise plus the
/// series' own relative spread). Upward moves are clipped when learning, so a healthy surge
/// (absorbed traffic) does not raise the level and make its end look like a loss.
#[inline(always)]
pub fn success(
    cfg: &SuccessDropConfig,
    c: &Common<'_>,
    req: &[f64],
    err: &[f64],
    s: SuccessCols<'_>,
    attn: &mut [u8],
) {
    success_rows(
        cfg, c.ts, c.dt, c.alpha, req, err, s.sum, s.w, s.var, s.low, s.rate, s.lvl, s.firing,
        s.clear, s.runstart, attn,
    );
}

crate::isa::multiversion! {
#[allow(clippy::too_many_arguments)]
fn success_rows(
    cfg: &SuccessDropConfig,
    ts: f64,
    dt: &[f64],
    alpha: &[f64],
    req: &[f64],
    err: &[f64],
    sum: &mut [f64],
    w: &mut [f64],
    var: &mut [f64],
    low: &mut [f64],
    rate_o: &mut [f64],
    lvl_o: &mut [f64],
    firing: &[f64],
    clear: &mut [f64],
    runstart: &mut [f64],
    attn: &mut [u8],
) {
    let len = req.len();
    let (err, dt, alpha) = (&err[..len], &dt[..len], &alpha[..len]);
    let (sum, w, var, low) = (
        &mut sum[..len],
        &mut w[..len],
        &mut var[..len],
        &mut low[..len],
    );
    let (rate_o, lvl_o, firing) = (&mut rate_o[..len], &mut lvl_o[..len], &firing[..len]);
    let (clear, runstart, attn) = (&mut clear[..len], &mut runstart[..len], &mut attn[..len]);
    let confirm = f64::from(cfg.confirm_samples);
    for i in 0..len {
        let rate = (req[i] - err[i]).max(0.0) / dt[i];
        let has_level = w[i] > 0.0;
        let lvl = if has_level { sum[i] / w[i] } else { rate };
        let rel = if lvl > 0.0 { rate / lvl - 1.0 } else { 0.0 };
        let sd = (var[i] + 1.0 / (lvl * dt[i]).max(1.0)).sqrt();
        let is_low = has_level && rel < -cfg.min_drop && rel < -cfg.min_z * sd;
        runstart[i] = if is_low && low[i] <= 0.0 {
            ts - dt[i] * 1000.0
        } else {
            runstart[i]
        };
        low[i] = if is_low { low[i] + 1.0 } else { 0.0 };
        clear[i] = if rel > -0.5 * cfg.min_drop {
            clear[i] + dt[i]
        } else {
            0.0
        };
        let quiet = firing[i] <= 0.0 && rel > -0.5 * cfg.min_drop;
        let a = if quiet { alpha[i] } else { 0.0 };
        let learn_rate = if has_level { rate.min(lvl * 1.2) } else { rate };
        sum[i] = sum[i] * (1.0 - a) + if quiet { learn_rate } else { 0.0 };
        w[i] = w[i] * (1.0 - a) + if quiet { 1.0 } else { 0.0 };
        let dev = rel.clamp(-1.0, 1.0);
        var[i] += if has_level {
            a * (dev * dev - var[i])
        } else {
            0.0
        };
        rate_o[i] = rate;
        lvl_o[i] = lvl;
        attn[i] |= u8::from((low[i] >= confirm) | (firing[i] > 0.0));
    }
}
}

/// State columns of the latency detector.
#[derive(Debug)]
pub struct LatencyCols<'a> {
    pub m: &'a mut [f64],
    pub v: &'a mut [f64],
    pub n: &'a mut [f64],
    pub cus: &'a mut [f64],
    pub last: &'a mut [f64],
    pub firing: &'a [f64],
    pub clear: &'a mut [f64],
    pub runstart: &'a mut [f64],
    pub z: &'a mut [f64],
}

/// CUSUM on the z-score of log p99 against an EWMA mean/variance of log p99. Samples with too few
/// requests (p99 of a handful of calls is noise) or no p99 are skipped. The z-score of the
/// latest sample is kept too, for the single-sample rule that catches sharp regressions at once.
#[inline(always)]
pub fn latency(
    cfg: &LatencyConfig,
    c: &Common<'_>,
    p99: &[f64],
    req: &[f64],
    s: LatencyCols<'_>,
    attn: &mut [u8],
) {
    latency_rows(
        cfg, c.ts, c.dt, c.alpha, c.warm, p99, req, s.m, s.v, s.n, s.cus, s.last, s.firing,
        s.clear, s.runstart, s.z, attn,
    );
}

crate::isa::multiversion! {
#[allow(clippy::too_many_arguments)]
fn latency_rows(
    cfg: &LatencyConfig,
    ts: f64,
    dt: &[f64],
    alpha: &[f64],
    warm: &[f64],
    p99: &[f64],
    req: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    n: &mut [f64],
    cus: &mut [f64],
    last: &mut [f64],
    firing: &[f64],
    clear: &mut [f64],
    runstart: &mut [f64],
    zs: &mut [f64],
    attn: &mut [u8],
) {
    let len = p99.len();
    let (req, dt, alpha, warm) = (&req[..len], &dt[..len], &alpha[..len], &warm[..len]);
    let (m, v, n, cus) = (&mut m[..len], &mut v[..len], &mut n[..len], &mut cus[..len]);
    let (last, firing, clear, runstart) = (
        &mut last[..len],
        &firing[..len],
        &mut clear[..len],
        &mut runstart[..len],
    );
    let (zs, attn) = (&mut zs[..len], &mut attn[..len]);
    let min_sd2 = cfg.min_log_sd * cfg.min_log_sd;
    let ln_clear = fast_ln(1.0 + 0.5 * (cfg.min_factor - 1.0));
    for i in 0..len {
        let p = p99[i];
        let valid = p.is_finite() && p > 0.0 && req[i] >= cfg.min_requests;
        let lp = fast_ln(if valid { p } else { 1.0 });
        let first = n[i] <= 0.0;
        let mean = if first { lp } else { m[i] };
        // The spread of a p99 shrinks with the requests behind it: `v` holds the variance
        // scaled by volume, so a quiet hour is judged with the wider spread it really has.
        let vol = req[i].max(1.0);
        let sd = (v[i] / vol).max(min_sd2).sqrt();
        let dev = lp - mean;
        let z = dev / sd;
        let prev = cus[i];
        let next = if valid && warm[i] > 0.0 {
            (prev + z - cfg.cusum_k).clamp(0.0, 1e12)
        } else {
            prev
        };
        runstart[i] = if prev <= 0.0 && next > 0.0 {
            ts - dt[i] * 1000.0
        } else {
            runstart[i]
        };
        cus[i] = next;
        clear[i] = if valid {
            if dev < ln_clear {
                clear[i] + dt[i]
            } else {
                0.0
            }
        } else {
            clear[i]
        };
        let quiet = valid && firing[i] <= 0.0 && z < 3.0;
        let a = if quiet {
            alpha[i].max(1.0 / (n[i] + 1.0))
        } else {
            0.0
        };
        m[i] = mean + a * dev;
        // Winsorise at 3 deviations once the spread is known; not before, or a spread learned
        // from the first few samples could never grow to its real size.
        let clip = if n[i] < 30.0 {
            f64::INFINITY
        } else {
            9.0 * sd * sd
        };
        v[i] += a * ((dev * dev).min(clip) * vol - v[i]);
        n[i] += if quiet { 1.0 } else { 0.0 };
        last[i] = if valid { p } else { last[i] };
        zs[i] = if valid && warm[i] > 0.0 { z } else { 0.0 };
        attn[i] |= u8::from((next > cfg.cusum_h) | (zs[i] >= cfg.spike_z) | (firing[i] > 0.0));
    }
}
}

/// State columns of the DB pool detector.
#[derive(Debug)]
pub struct PoolCols<'a> {
    pub lvl: &'a mut [f64],
    pub tr: &'a mut [f64],
    pub base: &'a mut [f64],
    pub var: &'a mut [f64],
    pub n: &'a mut [f64],
    pub last: &'a mut [f64],
    pub warn: &'a mut [f64],
    pub sat: &'a mut [f64],
    pub firing: &'a [f64],
    pub clear: &'a mut [f64],
    pub runstart: &'a mut [f64],
}

/// Pool utilisation smoothed with Holt's linear method (level + trend per second). Saturated:
/// utilisation at `saturated_utilisation` with callers waiting. Early warning: the smoothed level
/// is well above the pool's own baseline and, on its trend, reaches 100% within `horizon_s`.
#[inline(always)]
pub fn pool(
    cfg: &DbPoolConfig,
    c: &Common<'_>,
    active: &[f64],
    max: &[f64],
    pending: &[f64],
    s: PoolCols<'_>,
    attn: &mut [u8],
) {
    pool_rows(
        cfg, c.ts, c.dt, c.alpha, active, max, pending, s.lvl, s.tr, s.base, s.var, s.n, s.last,
        s.warn, s.sat, s.firing, s.clear, s.runstart, attn,
    );
}

crate::isa::multiversion! {
#[allow(clippy::too_many_arguments)]
fn pool_rows(
    cfg: &DbPoolConfig,
    ts: f64,
    dt: &[f64],
    alpha: &[f64],
    active: &[f64],
    max: &[f64],
    pending: &[f64],
    lvl: &mut [f64],
    tr: &mut [f64],
    base: &mut [f64],
    var: &mut [f64],
    n: &mut [f64],
    last: &mut [f64],
    warn: &mut [f64],
    sat: &mut [f64],
    firing: &[f64],
    clear: &mut [f64],
    runstart: &mut [f64],
    attn: &mut [u8],
) {
    let len = active.len();
    let (max, pending, dt, alpha) = (&max[..len], &pending[..len], &dt[..len], &alpha[..len]);
    let (lvl, tr, base, var, n) = (
        &mut lvl[..len],
        &mut tr[..len],
        &mut base[..len],
        &mut var[..len],
        &mut n[..len],
    );
    let (last, warn, sat, firing) = (
        &mut last[..len],
        &mut warn[..len],
        &mut sat[..len],
        &firing[..len],
    );
    let (clear, runstart, attn) = (&mut clear[..len], &mut runstart[..len], &mut attn[..len]);
    let confirm = f64::from(cfg.confirm_samples);
    let min_var = cfg.min_sd * cfg.min_sd;
    for i in 0..len {
        let u = active[i] / max[i];
        let valid = u.is_finite() && max[i] > 0.0;
        let u = if valid { u.clamp(0.0, 1.5) } else { 0.0 };
        let first = n[i] <= 0.0;
        let pred = lvl[i] + tr[i] * dt[i];
        let new_lvl = if first { u } else { 0.5 * u + 0.5 * pred };
        let new_tr = if first {
            0.0
        } else {
            0.3 * (new_lvl - lvl[i]) / dt[i] + 0.7 * tr[i]
        };
        let b = if first { u } else { base[i] };
        let sd = var[i].max(min_var).sqrt();
        let z = (new_lvl - b) / sd;
        let eta = if new_tr > 0.0 {
            (1.0 - new_lvl).max(0.0) / new_tr
        } else {
            f64::INFINITY
        };
        let warn_now = valid
            && !first
            && new_lvl >= cfg.warn_min_utilisation
            && z >= cfg.warn_level_z
            && eta <= cfg.horizon_s;
        let sat_now = valid && u >= cfg.saturated_utilisation && pending[i] >= cfg.min_pending;
        let streak_start = (warn_now || sat_now) && warn[i] <= 0.0 && sat[i] <= 0.0;
        runstart[i] = if streak_start {
            ts - dt[i] * 1000.0
        } else {
            runstart[i]
        };
        warn[i] = if warn_now { warn[i] + 1.0 } else { 0.0 };
        sat[i] = if sat_now { sat[i] + 1.0 } else { 0.0 };
        let calm = valid && !warn_now && !sat_now && z < 0.5 * cfg.warn_level_z;
        clear[i] = if calm {
            clear[i] + dt[i]
        } else if valid {
            0.0
        } else {
            clear[i]
        };
        let quiet = valid && firing[i] <= 0.0 && !warn_now && !sat_now;
        let a = if quiet {
            alpha[i].max(1.0 / (n[i] + 1.0))
        } else {
            0.0
        };
        let dev = u - b;
        lvl[i] = if valid { new_lvl } else { lvl[i] };
        tr[i] = if valid { new_tr } else { tr[i] };
        base[i] = b + a * dev;
        var[i] += a * (dev * dev - var[i]);
        n[i] += if valid { 1.0 } else { 0.0 };
        last[i] = if valid { u } else { last[i] };
        attn[i] |= u8::from((warn[i] >= confirm) | (sat[i] >= confirm) | (firing[i] > 0.0));
    }
}
}
