//! The per-sample kernels. Each takes row-dense slices (one entry per sample in the tick, the
//! series' state gathered next to it) and updates them in place, without branches that depend on
//! data other than selects, so the compiler can vectorise the loops. They decide nothing about
//! alerts: they leave the evidence (CUSUM sums, streaks, clear time) for the rare-candidate pass.

use crate::config::{DbPoolConfig, LatencyConfig, RatioConfig, SuccessDropConfig};
use crate::state::{to_f, F};
use crate::stats::fast_ln;

/// A kind's clear time (seconds of calm in a row, which resolution waits on) after a sample of
/// `dt` seconds, for the kinds that skip samples they cannot judge (latency, pool): one
/// interval more when the sample was judged and calm, back to zero when it was judged and not
/// calm, unchanged when it was not judged. Weights of 0 and 1 on the finite
/// sum rather than selects: a select of the column's own value becomes a masked store (see
/// `ratio_rows`).
#[inline(always)]
fn clear_step(judged: bool, calm: bool, clear: F, dt: F) -> F {
    let step: F = if judged && calm { dt } else { 0.0 };
    let keep: F = if calm || !judged { 1.0 } else { 0.0 };
    (clear + step) * keep
}

/// Inputs common to every kernel for one tick.
#[derive(Debug)]
pub struct Common<'a> {
    /// Interval length in seconds.
    pub dt: &'a [F],
    /// Slow-baseline EWMA weight for the row's interval.
    pub alpha: &'a [F],
    /// Fast (recovery) EWMA weight for the row's interval.
    pub fast_a: &'a [F],
    /// 1.0 when the series is past warm-up.
    pub warm: &'a [F],
    /// Samples the series had before this one.
    pub seen: &'a [F],
}

/// Weight of the fast EWMA used to judge recovery, for an interval of `dt` seconds: a 30 s
/// half-life.
pub fn fast_alpha(dt: F) -> F {
    (dt / (dt + 43.0)).min(1.0)
}

/// Where a kernel leaves its verdicts for the row, as its kind's `bit`: in `attn` when the
/// candidate pass must look at the kind for the row, in `starts` when the kind's run (CUSUM or
/// streak) started.
#[derive(Debug)]
pub struct Marks<'a> {
    pub attn: &'a mut [u32],
    pub starts: &'a mut [u32],
    pub bit: u32,
}

/// A ratio detector's thresholds as [`F`].
#[derive(Debug, Clone, Copy)]
pub struct RatioParams {
    prior_ratio: F,
    prior_n: F,
    min_odds_ratio: F,
    min_abs_increase: F,
    cusum_threshold: F,
}

impl RatioParams {
    pub fn new(cfg: &RatioConfig) -> Self {
        Self {
            prior_ratio: to_f(cfg.prior_ratio),
            prior_n: to_f(cfg.prior_requests),
            min_odds_ratio: to_f(cfg.min_odds_ratio),
            min_abs_increase: to_f(cfg.min_abs_increase),
            cusum_threshold: to_f(cfg.cusum_threshold),
        }
    }

    /// The baseline ratio `p0` of EWMA sums `be` errors in `bn` requests (with a beta prior),
    /// and the smallest ratio worth paging about, `p1` (the practical floor: an absolute rise
    /// or an odds ratio, whichever is larger). The kernel and the candidate pass both call
    /// this, so the candidate pass sees exactly the levels the kernel judged by.
    #[inline(always)]
    pub fn levels(&self, be: F, bn: F) -> (F, F) {
        // The prior weighs its configured requests, but never more than a tenth of the
        // series' own (plus one, so a series without any yet has the prior's ratio): at 500
        // requests it outweighed the whole 30-minute window of a series seeing a few requests a
        // minute, and held its baseline near 0.2% whatever its real ratio, so a quiet series
        // erring 20% of the time as a matter of course paged on it several times a day.
        let w = self.prior_n.min(0.1 * bn + 1.0);
        let p0 = ((be + self.prior_ratio * w) / (bn + w)).clamp(1e-6, 0.999);
        let k = self.min_odds_ratio * p0;
        // odds1 / (1 + odds1) with odds1 = k / (1 - p0), in one division.
        let p1 = (p0 + self.min_abs_increase)
            .max(k / (1.0 - p0 + k))
            .min(0.9999);
        (p0, p1)
    }
}

/// State columns of one ratio detector (errors or retries), gathered per row.
#[derive(Debug)]
pub struct RatioCols<'a> {
    pub be: &'a mut [F],
    pub bn: &'a mut [F],
    pub phi: &'a mut [F],
    pub cus: &'a mut [F],
    pub rune: &'a mut [F],
    pub runn: &'a mut [F],
    pub fe: &'a mut [F],
    pub fnn: &'a mut [F],
    pub firing: &'a [F],
    pub clear: &'a mut [F],
}

/// Binomial CUSUM of `x` out of `n` against the series' baseline ratio.
///
/// Per row: the baseline ratio `p0` and the practical floor `p1` ([`RatioParams::levels`]), the
/// log-likelihood ratio of the sample under `p1` vs `p0` deflated by the series'
/// overdispersion, accumulated into a one-sided CUSUM. The sums of the current run (since the
/// CUSUM left zero) are kept for the exact test. Baselines and dispersion learn only while the
/// series is quiet, so an incident is never absorbed.
#[inline(always)]
pub fn ratio(cfg: &RatioConfig, c: &Common<'_>, x: &[F], n: &[F], s: RatioCols<'_>, m: Marks<'_>) {
    ratio_rows(
        &RatioParams::new(cfg),
        c.dt,
        c.alpha,
        c.fast_a,
        c.warm,
        c.seen,
        x,
        n,
        s.be,
        s.bn,
        s.phi,
        s.cus,
        s.rune,
        s.runn,
        s.fe,
        s.fnn,
        s.firing,
        s.clear,
        m.attn,
        m.starts,
        m.bit,
    );
}

// The row loops take every column as its own slice argument: references passed as function
// arguments are known not to alias, while references read out of a struct are not, and without
// that knowledge the compiler would not vectorise a loop over this many columns. Each is
// compiled for the baseline, AVX2 and AVX-512 (`crate::isa`), and the widest copy the CPU can
// run is chosen at run time.
crate::isa::multiversion! {
#[allow(clippy::too_many_arguments)]
fn ratio_rows(
    k: &RatioParams,
    dt: &[F],
    alpha: &[F],
    fast_a: &[F],
    warm: &[F],
    seen: &[F],
    x: &[F],
    n: &[F],
    be: &mut [F],
    bn: &mut [F],
    phi: &mut [F],
    cus: &mut [F],
    rune: &mut [F],
    runn: &mut [F],
    fe: &mut [F],
    fnn: &mut [F],
    firing: &[F],
    clear: &mut [F],
    attn: &mut [u32],
    starts: &mut [u32],
    bit: u32,
) {
    let len = x.len();
    let (n, dt, alpha, fast_a, warm, seen) = (
        &n[..len],
        &dt[..len],
        &alpha[..len],
        &fast_a[..len],
        &warm[..len],
        &seen[..len],
    );
    let (be, bn, phi, cus) = (
        &mut be[..len],
        &mut bn[..len],
        &mut phi[..len],
        &mut cus[..len],
    );
    let (rune, runn) = (&mut rune[..len], &mut runn[..len]);
    let (fe, fnn, firing, clear) = (
        &mut fe[..len],
        &mut fnn[..len],
        &firing[..len],
        &mut clear[..len],
    );
    let (attn, starts) = (&mut attn[..len], &mut starts[..len]);
    let h = k.cusum_threshold;
    for i in 0..len {
        // Every column is read once, up front, and written once, at the end: a value read
        // under a condition (or written under one and read back) becomes a masked load or
        // store, and a masked load of what a masked store just wrote waits for the store.
        let (xi, ni, warm_i, dt_i, alpha_i, fast_i) = (x[i], n[i], warm[i], dt[i], alpha[i], fast_a[i]);
        let seen_i = seen[i];
        let (be_i, bn_i, phi_i, cus_i) = (be[i], bn[i], phi[i], cus[i]);
        let (rune_i, runn_i, fe_i, fn_i) = (rune[i], runn[i], fe[i], fnn[i]);
        let (firing_i, clear_i) = (firing[i], clear[i]);
        let valid = xi.is_finite() && ni > 0.0;
        let (p0, p1) = k.levels(be_i, bn_i);
        let l1 = fast_ln(p1 / p0);
        let l0 = fast_ln((1.0 - p1) / (1.0 - p0));
        let xv = if valid { xi } else { 0.0 };
        let nv = if valid { ni } else { 0.0 };
        let llr = (xv * l1 + (nv - xv) * l0) / phi_i.max(1.0);
        let prev = cus_i;
        let next = if warm_i > 0.0 {
            (prev + llr).clamp(0.0, 1e12)
        } else {
            0.0
        };
        let starting = prev <= 0.0 && next > 0.0;
        let running = next > 0.0;
        // The run's sums: afresh when it starts, zero outside a run. Weights of 0 and 1 on
        // finite, non-negative sums rather than selects, which the compiler would turn into a
        // masked load and masked stores of the same column.
        let carried: F = if running && !starting { 1.0 } else { 0.0 };
        let in_run: F = if running { 1.0 } else { 0.0 };
        rune[i] = (rune_i * carried + xv) * in_run;
        runn[i] = (runn_i * carried + nv) * in_run;
        starts[i] |= if starting { bit } else { 0 };
        cus[i] = next;
        // Fast EWMA of the ratio, for recovery: calm while it is below the midpoint of the
        // baseline and the floor (compared without dividing).
        let af = if valid { fast_i } else { 0.0 };
        let fe_n = fe_i + af * (xv - fe_i);
        let fn_n = fn_i + af * (nv - fn_i);
        fe[i] = fe_n;
        fnn[i] = fn_n;
        let calm = valid && (fn_n <= 0.0 || fe_n < 0.5 * (p0 + p1) * fn_n);
        clear[i] = if calm { clear_i + dt_i } else { 0.0 };
        // Learn only while quiet: not firing, CUSUM below its threshold. (Excluding every
        // sample that nudges the CUSUM would bias a quiet series' baseline towards zero errors.)
        let quiet = valid && firing_i <= 0.0 && next <= h;
        let a = if quiet { alpha_i } else { 0.0 };
        be[i] = be_i * (1.0 - a) + if quiet { xv } else { 0.0 };
        bn[i] = bn_i * (1.0 - a) + if quiet { nv } else { 0.0 };
        let expected = nv * p0;
        let r2 = (xv - expected) * (xv - expected) / (expected * (1.0 - p0)).max(1e-9);
        // The dispersion learns from every sample while not firing, the CUSUM's runs included:
        // leaving out the samples that push the CUSUM up would leave out the very tail that
        // makes a series overdispersed, and the estimate would stay low (a busy series whose
        // ratio swings from sample to sample paged seven times as often). One squared residual
        // counts for at most 50 times the current estimate (so the estimate can grow with a
        // series' volume, unlike a fixed cap), and at most 20 times during a run (so the first
        // samples of an incident barely deflate the test that is about to judge them). A run
        // above the threshold teaches it only for its first 30 samples' worth of requests:
        // longer, it is a sustained shift that did not page (below the practical floor), not
        // the series' noise, and at up to 20 times the estimate per sample it would compound
        // the estimate until a later spike, many times the baseline, could no longer page.
        let young = runn_i <= 30.0 * nv;
        // A new series' dispersion is the plain mean of its samples so far, until that weighs
        // less than the EWMA's: started at 1, the slow EWMA alone would still be a fraction of
        // the way to a bursty series' level an hour after warm-up, and that hour paged on the
        // series' ordinary swings. Only while the fast EWMA is near the baseline (calm, and
        // not below two thirds of it): an incident during warm-up, which the young baseline
        // follows, or the baseline then coming back down, would otherwise teach it as noise.
        let settled = calm && 1.5 * fe_n >= p0 * fn_n;
        let rate = if settled {
            alpha_i.max(1.0 / (seen_i + 1.0))
        } else {
            alpha_i
        };
        let a_phi = if valid && firing_i <= 0.0 && (prev <= h || young) {
            rate
        } else {
            0.0
        };
        let cap = phi_i.max(1.0) * if next <= h { 50.0 } else { 20.0 };
        phi[i] = phi_i + a_phi * (r2.min(cap) - phi_i);
        attn[i] |= if (next > h) | (firing_i > 0.0) { bit } else { 0 };
    }
}
}

/// State columns of the success-drop detector.
#[derive(Debug)]
pub struct SuccessCols<'a> {
    pub sum: &'a mut [F],
    pub w: &'a mut [F],
    pub var: &'a mut [F],
    pub off: &'a mut [F],
    pub low: &'a mut [F],
    pub run_s: &'a mut [F],
    pub run_mu: &'a mut [F],
    pub fs: &'a mut [F],
    pub fmu: &'a mut [F],
    pub rate: &'a mut [F],
    pub lvl: &'a mut [F],
    pub firing: &'a [F],
    pub clear: &'a mut [F],
}

/// The success-drop thresholds as [`F`].
#[derive(Debug, Clone, Copy)]
pub struct SuccessParams {
    min_drop: F,
    shifted_after: F,
    min_z2: F,
    confirm: F,
}

impl SuccessParams {
    pub fn new(cfg: &SuccessDropConfig) -> Self {
        Self {
            min_drop: to_f(cfg.min_drop),
            shifted_after: to_f(cfg.shifted_after_s),
            min_z2: to_f(cfg.min_z * cfg.min_z),
            confirm: to_f(f64::from(cfg.confirm_samples)),
        }
    }

    /// Whether a run of low samples that delivered `run_s` successful requests where the level
    /// expected `run_mu` is a significant loss: at least `min_z` deviations short, the variance
    /// being Poisson's (`run_mu`) plus the series' own relative variance `var`, taken as shared
    /// by every sample of the run (a slow swing does not average out over a few samples). The
    /// kernel and the candidate pass both call this, so they agree on every row.
    #[inline(always)]
    pub fn significant(&self, low: F, run_s: F, run_mu: F, var: F) -> bool {
        low >= self.confirm && self.significant_by(run_s, run_mu, var, 1.0)
    }

    /// Whether the run is short by at least `sqrt(share) * min_z` deviations.
    #[inline(always)]
    fn significant_by(&self, run_s: F, run_mu: F, var: F, share: F) -> bool {
        let deficit = run_mu - run_s;
        deficit > 0.0 && deficit * deficit >= share * self.min_z2 * (run_mu + var * run_mu * run_mu)
    }
}

/// Successful requests per interval against a bias-corrected EWMA level (per second). A sample
/// is low when it is `min_drop` below the level; a run of `confirm_samples` or more low samples
/// is a candidate when, pooled, it is `min_z` deviations short of the level
/// ([`SuccessParams::significant`]). Pooling is what lets a quiet series be judged at all: at 20
/// requests a sample even a total loss is only 4.5 deviations, and an 80% one 3.6, but three such
/// samples are 6. Upward moves are clipped when learning, so a healthy surge (absorbed traffic)
/// does not raise the level and make its end look like a loss.
#[inline(always)]
pub fn success(
    cfg: &SuccessDropConfig,
    c: &Common<'_>,
    req: &[F],
    err: &[F],
    s: SuccessCols<'_>,
    m: Marks<'_>,
) {
    success_rows(
        &SuccessParams::new(cfg),
        c.dt,
        c.alpha,
        c.fast_a,
        req,
        err,
        s.sum,
        s.w,
        s.var,
        s.off,
        s.low,
        s.run_s,
        s.run_mu,
        s.fs,
        s.fmu,
        s.rate,
        s.lvl,
        s.firing,
        s.clear,
        m.attn,
        m.starts,
        m.bit,
    );
}

crate::isa::multiversion! {
#[allow(clippy::too_many_arguments)]
fn success_rows(
    k: &SuccessParams,
    dt: &[F],
    alpha: &[F],
    fast_a: &[F],
    req: &[F],
    err: &[F],
    sum: &mut [F],
    w: &mut [F],
    var: &mut [F],
    off: &mut [F],
    low: &mut [F],
    run_s: &mut [F],
    run_mu: &mut [F],
    fs: &mut [F],
    fmu: &mut [F],
    rate_o: &mut [F],
    lvl_o: &mut [F],
    firing: &[F],
    clear: &mut [F],
    attn: &mut [u32],
    starts: &mut [u32],
    bit: u32,
) {
    let len = req.len();
    let (err, dt, alpha, fast_a) = (&err[..len], &dt[..len], &alpha[..len], &fast_a[..len]);
    let (sum, w, var, off, low) = (
        &mut sum[..len],
        &mut w[..len],
        &mut var[..len],
        &mut off[..len],
        &mut low[..len],
    );
    let (run_s, run_mu, fs, fmu) = (
        &mut run_s[..len],
        &mut run_mu[..len],
        &mut fs[..len],
        &mut fmu[..len],
    );
    let (rate_o, lvl_o, firing) = (&mut rate_o[..len], &mut lvl_o[..len], &firing[..len]);
    let (clear, attn, starts) = (&mut clear[..len], &mut attn[..len], &mut starts[..len]);
    let min_drop = k.min_drop;
    // Recovery is judged against half the drop. One sample can judge it when the margin is at
    // least two Poisson deviations of the expected count; a quieter series is judged on its
    // fast (30 s) EWMA instead, or noise would keep restarting the clear time and the alert
    // would never resolve.
    let margin = 0.5 * min_drop;
    let precise_mu = 4.0 / (margin * margin);
    for i in 0..len {
        // Each column read once and written once (see `ratio_rows`).
        let (dti, low0, clear0, var0, fir) = (dt[i], low[i], clear[i], var[i], firing[i]);
        let off0 = off[i];
        let (sum0, w0, rs0, rm0) = (sum[i], w[i], run_s[i], run_mu[i]);
        let (fs0, fmu0, af, alpha_i) = (fs[i], fmu[i], fast_a[i], alpha[i]);
        let succ = (req[i] - err[i]).max(0.0);
        let rate = succ / dti;
        let has_level = w0 > 0.0;
        let lvl = if has_level { sum0 / w0 } else { rate };
        let mu = lvl * dti;
        let rel = if lvl > 0.0 { rate / lvl - 1.0 } else { 0.0 };
        let is_low = has_level && rel < -min_drop;
        starts[i] |= if is_low && low0 <= 0.0 { bit } else { 0 };
        // The run's sums: afresh when it starts, zero outside a run (weights of 0 and 1 on
        // finite, non-negative sums, as in `ratio_rows`).
        let carried: F = if low0 > 0.0 { 1.0 } else { 0.0 };
        let in_run: F = if is_low { 1.0 } else { 0.0 };
        let rs = (rs0 * carried + succ) * in_run;
        let rm = (rm0 * carried + mu) * in_run;
        let low1 = (low0 + 1.0) * in_run;
        low[i] = low1;
        run_s[i] = rs;
        run_mu[i] = rm;
        let fs1 = fs0 + af * (succ - fs0);
        let fmu1 = fmu0 + af * (mu - fmu0);
        fs[i] = fs1;
        fmu[i] = fmu1;
        let back = rel > -margin;
        let precise = mu >= precise_mu;
        let recovered = if precise {
            back
        } else {
            fs1 > (1.0 - margin) * fmu1
        };
        clear[i] = (clear0 + dti) * if recovered { 1.0 } else { 0.0 };
        // The level learns only while quiet (not firing, and this sample back near the level),
        // so an incident is not absorbed. On a quiet series one sample cannot tell: leaving out
        // each one that happens to fall low would bias the level up, and every run of low samples
        // would then look short of it. There it learns from every sample but those of a run
        // already half as significant as a page needs.
        let settled = if precise {
            back
        } else {
            !k.significant_by(rs, rm, var0, 0.25)
        };
        let quiet = fir <= 0.0 && settled;
        let a = if quiet { alpha_i } else { 0.0 };
        // A surge is learned only up to 20% above the level, or three Poisson deviations on a
        // quiet series (where a sample 20% up is noise, and clipping it would bias the level
        // down).
        let ceiling = (lvl * 1.2).max(lvl + 3.0 * mu.max(0.0).sqrt() / dti);
        let learn_rate = if has_level { rate.min(ceiling) } else { rate };
        sum[i] = sum0 * (1.0 - a) + if quiet { learn_rate } else { 0.0 };
        let w1 = w0 * (1.0 - a) + if quiet { 1.0 } else { 0.0 };
        w[i] = w1;
        // The relative variance beyond Poisson's learns from every sample while not firing:
        // learning only from samples near the level would leave out the very dips that make a
        // bursty series (or one whose level lags a steep diurnal decline) look like a loss. One
        // squared deviation counts for at most 50 times the variance expected (the estimate,
        // floored at a 5% spread, plus Poisson's), and one more than half the drop down for at
        // most 10 times, so the slide into a real loss barely widens the test about to judge it.
        // The sample's own count estimates its Poisson part: (s - mu)^2 - s is unbiased for the
        // variance beyond Poisson's plus the level's error squared (the level's expected
        // Poisson variance, mu, would overstate it whenever the level lags above the truth).
        // A run that was already as significant as a page needs before this sample is an
        // event (where it did not page, traffic moved to sibling clusters), not the series'
        // noise: its further samples do not feed the variance. Otherwise a long drain would
        // inflate the variance (each sample counting up to ten times the estimate) until a
        // later real loss on the cluster could not be told from noise. (The sample that makes
        // a run significant still does: it is judged against the variance it leaves, as a
        // burst on a noisy series must be.)
        let event = is_low && low0 > 0.0 && k.significant(low0, rs0, rm0, var0);
        let m1 = mu.max(1.0);
        // (A plain mean until the EWMA's weight takes over: an estimate that starts from zero
        // would still be a third short of the truth an hour after warm-up.)
        // Likewise a series that has stayed further than half the drop below its level for
        // `shifted_after_s` has shifted (by less than a loss, or the level would not be
        // stuck): its further samples are a bias, not noise. Learnt as variance, an hour a
        // third down compounded it (each sample counting up to ten times the estimate) until
        // the cluster then losing all its traffic was never paged. Dips that come and go
        // (bursty or periodic traffic) are back within the time and still teach it.
        let shifted = !back && off0 >= k.shifted_after;
        let off1 = (off0 + dti) * if back { 0.0 } else { 1.0 };
        off[i] = off1;
        let a_var = if has_level && fir <= 0.0 && !event && !shifted {
            alpha_i.max(1.0 / (w1 + 1.0))
        } else {
            0.0
        };
        let cap = (var0.max(0.0025) + 1.0 / m1) * if back { 50.0 } else { 10.0 };
        let excess = (rel * rel).min(cap) - succ / (m1 * m1);
        let var1 = (var0 + a_var * (excess - var0)).max(0.0);
        var[i] = var1;
        rate_o[i] = rate;
        lvl_o[i] = lvl;
        let candidate = k.significant(low1, rs, rm, var1);
        attn[i] |= if candidate | (fir > 0.0) { bit } else { 0 };
    }
}
}

/// State columns of the latency detector.
#[derive(Debug)]
pub struct LatencyCols<'a> {
    pub m: &'a mut [F],
    pub m50: &'a mut [F],
    pub v50: &'a mut [F],
    pub n50: &'a mut [F],
    pub c50: &'a mut [F],
    pub v: &'a mut [F],
    pub n: &'a mut [F],
    pub cus: &'a mut [F],
    pub last: &'a mut [F],
    pub firing: &'a [F],
    pub clear: &'a mut [F],
    pub z: &'a mut [F],
}

/// CUSUM on the z-score of log p99 against an EWMA mean/variance of log p99, each sample
/// counting for at most `spike_z` deviations (so one sample never pages through it). Samples
/// with too few requests (p99 of a handful of calls is noise) or no p99 are skipped. The
/// single-sample rule, which catches sharp regressions at once, reads the z-score kept for the
/// latest sample: kept only when the p50 moved with the p99 (the body of the distribution got
/// slower, not only its tail), else 0.
///
/// The p50 has a channel of its own, judged the same way (EWMA mean and volume-scaled
/// variance of log p50, a CUSUM of its capped z-score) on every sample with a p50, whatever its
/// volume. A median is far steadier than a p99 (it does not leap when a few requests are slow,
/// and it stays usable on a handful of requests), so this is what judges a series too quiet for
/// its p99 to mean anything, and what sees a whole distribution slowing on a busy one sooner
/// than the p99's wide spread allows. Both CUSUMs form one run: it starts when the first of them
/// leaves zero.
#[inline(always)]
pub fn latency(
    cfg: &LatencyConfig,
    c: &Common<'_>,
    p99: &[F],
    p50: &[F],
    req: &[F],
    s: LatencyCols<'_>,
    m: Marks<'_>,
) {
    latency_rows(
        cfg, c.dt, c.alpha, c.warm, p99, p50, req, s.m, s.m50, s.v50, s.n50, s.c50, s.v, s.n,
        s.cus, s.last, s.firing, s.clear, s.z, m.attn, m.starts, m.bit,
    );
}

/// One latency channel's CUSUM after a sample whose z-score is `z` (counting for at most
/// `spike_z`, less the slack `k`), if `on`; else `prev` unchanged.
#[inline(always)]
fn cusum_step(on: bool, prev: F, z: F, spike_z: F, k: F) -> F {
    if on {
        (prev + z.min(spike_z) - k).clamp(0.0, 1e12)
    } else {
        prev
    }
}

/// One latency channel's learning step: the mean of the log quantile `mean` moves by the
/// deviation `dev` (clipped at 3 deviations once 30 samples are known), the volume-scaled
/// variance `v` by the squared deviation (capped at 50 times the current variance, 20 times in a
/// CUSUM run, once known), `n` counts the sample; all only if `learn`. The weight is `alpha`, or
/// a plain mean's while that is larger. Returns the new `(mean, v, n)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn learn_step(
    learn: bool,
    alpha: F,
    n: F,
    mean: F,
    v: F,
    dev: F,
    sd: F,
    vol: F,
    calm_run: bool,
) -> (F, F, F) {
    let a = if learn {
        alpha.max(1.0 / (n + 1.0))
    } else {
        0.0
    };
    let known = n >= 30.0;
    // (max/min, not clamp: clamp's check of its bounds would keep the loop scalar.)
    let step = if known {
        dev.max(-3.0 * sd).min(3.0 * sd)
    } else {
        dev
    };
    let cap = if known {
        sd * sd * if calm_run { 50.0 } else { 20.0 }
    } else {
        F::INFINITY
    };
    (
        mean + a * step,
        v + a * ((dev * dev).min(cap) * vol - v),
        n + if learn { 1.0 } else { 0.0 },
    )
}

crate::isa::multiversion! {
#[allow(clippy::too_many_arguments)]
fn latency_rows(
    cfg: &LatencyConfig,
    dt: &[F],
    alpha: &[F],
    warm: &[F],
    p99: &[F],
    p50: &[F],
    req: &[F],
    m: &mut [F],
    m50: &mut [F],
    v50: &mut [F],
    n50: &mut [F],
    c50: &mut [F],
    v: &mut [F],
    n: &mut [F],
    cus: &mut [F],
    last: &mut [F],
    firing: &[F],
    clear: &mut [F],
    zs: &mut [F],
    attn: &mut [u32],
    starts: &mut [u32],
    bit: u32,
) {
    let len = p99.len();
    let (req, dt, alpha, warm) = (&req[..len], &dt[..len], &alpha[..len], &warm[..len]);
    let (m, v, n, cus) = (&mut m[..len], &mut v[..len], &mut n[..len], &mut cus[..len]);
    let (p50, m50) = (&p50[..len], &mut m50[..len]);
    let (v50, n50, c50) = (&mut v50[..len], &mut n50[..len], &mut c50[..len]);
    let (last, firing, clear, starts) = (
        &mut last[..len],
        &firing[..len],
        &mut clear[..len],
        &mut starts[..len],
    );
    let (zs, attn) = (&mut zs[..len], &mut attn[..len]);
    let min_sd2 = to_f(cfg.min_log_sd * cfg.min_log_sd);
    let ln_clear = fast_ln(to_f(1.0 + 0.5 * (cfg.min_factor - 1.0)));
    let (min_requests, cusum_k) = (to_f(cfg.min_requests), to_f(cfg.cusum_k));
    let (cusum_h, spike_z) = (to_f(cfg.cusum_h), to_f(cfg.spike_z));
    let ln_body = fast_ln(to_f(cfg.spike_min_p50_factor));
    for i in 0..len {
        // Each column read once and written once (see `ratio_rows`).
        let (p, q, req_i, warm_i, dt_i, alpha_i) = (p99[i], p50[i], req[i], warm[i], dt[i], alpha[i]);
        let (m0, v0, n0, prev, last0) = (m[i], v[i], n[i], cus[i], last[i]);
        let (m50_0, v50_0, n50_0, prev50) = (m50[i], v50[i], n50[i], c50[i]);
        let (fir, clear0) = (firing[i], clear[i]);
        let valid = p.is_finite() && p > 0.0 && req_i >= min_requests;
        let lp = fast_ln(if valid { p } else { 1.0 });
        let first = n0 <= 0.0;
        let mean = if first { lp } else { m0 };
        // The spread of a p99 shrinks with the requests behind it: `v` holds the variance
        // scaled by volume, so a quiet hour is judged with the wider spread it really has.
        let vol = req_i.max(1.0);
        let sd = (v0 / vol).max(min_sd2).sqrt();
        let dev = lp - mean;
        let z = dev / sd;
        let next = cusum_step(valid && warm_i > 0.0, prev, z, spike_z, cusum_k);
        // The p50's channel: every sample with a p50 and a request behind it.
        let has50 = q.is_finite() && q > 0.0 && req_i >= 1.0;
        let lq = fast_ln(if has50 { q } else { 1.0 });
        let had50 = n50_0 > 0.0;
        let mean50 = if had50 { m50_0 } else { lq };
        let sd50 = (v50_0 / vol).max(min_sd2).sqrt();
        let dev50 = lq - mean50;
        let next50 = cusum_step(has50 && warm_i > 0.0, prev50, dev50 / sd50, spike_z, cusum_k);
        c50[i] = next50;
        starts[i] |= if (prev <= 0.0 && prev50 <= 0.0) && (next > 0.0 || next50 > 0.0) {
            bit
        } else {
            0
        };
        cus[i] = next;
        // Calm when each quantile the sample has is back within the clearing factor (the
        // p50 give or take one of its deviations: on a handful of requests a median is often
        // that far off, and a recovered series would wait long for enough calm samples in a row).
        let judged = valid | has50;
        let calm = (!valid || dev < ln_clear) && (!has50 || dev50 < ln_clear + sd50);
        clear[i] = clear_step(judged, calm, clear0, dt_i);
        // Learn from every sample while not firing. Leaving out the samples far above the
        // mean would leave out the very tail that makes a p99 noisy (a p99 over a few hundred
        // requests jumps two- to fivefold whenever a handful of them are slow), and the spread
        // would stay too small to judge it by. So the mean takes each sample's deviation
        // clipped at 3 deviations (a Huber step: a run of high samples moves it a little, not
        // to the incident's level), and one squared deviation counts for at most 50 times the
        // current variance, or 20 times in a CUSUM run (the first samples of a regression
        // barely widen the test that is about to judge them). Neither applies before the
        // spread is known (30 samples), or a spread learned from the first few samples could
        // never grow to its real size. The p50's channel learns the same way.
        let learn = valid && fir <= 0.0;
        (m[i], v[i], n[i]) = learn_step(learn, alpha_i, n0, mean, v0, dev, sd, vol, next <= cusum_h);
        last[i] = if valid { p } else { last0 };
        let learn50 = has50 && fir <= 0.0;
        (m50[i], v50[i], n50[i]) = learn_step(
            learn50,
            alpha_i,
            n50_0,
            mean50,
            v50_0,
            dev50,
            sd50,
            vol,
            next50 <= cusum_h,
        );
        // The single-sample rule: the p99 far up, and the body with it.
        let body = valid && has50 && had50 && dev50 >= ln_body;
        let z_kept = if body && warm_i > 0.0 { z } else { 0.0 };
        zs[i] = z_kept;
        let look = (next > cusum_h) | (next50 > cusum_h) | (z_kept >= spike_z) | (fir > 0.0);
        attn[i] |= if look { bit } else { 0 };
    }
}
}

/// State columns of the DB pool detector.
#[derive(Debug)]
pub struct PoolCols<'a> {
    pub lvl: &'a mut [F],
    pub tr: &'a mut [F],
    pub base: &'a mut [F],
    pub var: &'a mut [F],
    pub n: &'a mut [F],
    pub last: &'a mut [F],
    pub warn: &'a mut [F],
    pub sat: &'a mut [F],
    pub hold: &'a mut [F],
    pub from: &'a mut [F],
    pub firing: &'a [F],
    pub clear: &'a mut [F],
}

/// Pool utilisation smoothed with Holt's linear method (level + trend per second). Saturated:
/// utilisation at `saturated_utilisation` with callers waiting. Early warning: the smoothed level
/// is well above the pool's own baseline and, on its trend, reaches 100% within `horizon_s`.
#[inline(always)]
pub fn pool(
    cfg: &DbPoolConfig,
    c: &Common<'_>,
    active: &[F],
    max: &[F],
    pending: &[F],
    s: PoolCols<'_>,
    m: Marks<'_>,
) {
    pool_rows(
        cfg, c.dt, c.alpha, active, max, pending, s.lvl, s.tr, s.base, s.var, s.n, s.last, s.warn,
        s.sat, s.hold, s.from, s.firing, s.clear, m.attn, m.starts, m.bit,
    );
}

crate::isa::multiversion! {
#[allow(clippy::too_many_arguments)]
fn pool_rows(
    cfg: &DbPoolConfig,
    dt: &[F],
    alpha: &[F],
    active: &[F],
    max: &[F],
    pending: &[F],
    lvl: &mut [F],
    tr: &mut [F],
    base: &mut [F],
    var: &mut [F],
    n: &mut [F],
    last: &mut [F],
    warn: &mut [F],
    sat: &mut [F],
    hold: &mut [F],
    from: &mut [F],
    firing: &[F],
    clear: &mut [F],
    attn: &mut [u32],
    starts: &mut [u32],
    bit: u32,
) {
    let len = active.len();
    let (hold, from) = (&mut hold[..len], &mut from[..len]);
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
    let (clear, attn, starts) = (&mut clear[..len], &mut attn[..len], &mut starts[..len]);
    let confirm = to_f(f64::from(cfg.confirm_samples));
    let min_var = to_f(cfg.min_sd * cfg.min_sd);
    let (warn_min_u, warn_z) = (to_f(cfg.warn_min_utilisation), to_f(cfg.warn_level_z));
    let (horizon, sat_u) = (to_f(cfg.horizon_s), to_f(cfg.saturated_utilisation));
    let min_pending = to_f(cfg.min_pending);
    let settled_after = to_f(cfg.settled_after_s);
    for i in 0..len {
        // Each column read once and written once (see `ratio_rows`).
        let (dt_i, alpha_i, pend_i, fir) = (dt[i], alpha[i], pending[i], firing[i]);
        let (lvl0, tr0, base0, var0, n0) = (lvl[i], tr[i], base[i], var[i], n[i]);
        let (warn0, sat0, clear0, last0) = (warn[i], sat[i], clear[i], last[i]);
        let (hold0, from0) = (hold[i], from[i]);
        let u = active[i] / max[i];
        let valid = u.is_finite() && max[i] > 0.0;
        let u = if valid { u.clamp(0.0, 1.5) } else { 0.0 };
        let first = n0 <= 0.0;
        let pred = lvl0 + tr0 * dt_i;
        let new_lvl = if first { u } else { 0.5 * u + 0.5 * pred };
        let new_tr = if first {
            0.0
        } else {
            0.3 * (new_lvl - lvl0) / dt_i + 0.7 * tr0
        };
        let b = if first { u } else { base0 };
        let sd = var0.max(min_var).sqrt();
        let z = (new_lvl - b) / sd;
        let eta = if new_tr > 0.0 {
            (1.0 - new_lvl).max(0.0) / new_tr
        } else {
            F::INFINITY
        };
        let warn_now = valid
            && !first
            && new_lvl >= warn_min_u
            && z >= warn_z
            && eta <= horizon;
        let sat_now = valid && u >= sat_u && pend_i >= min_pending;
        let streak_start = (warn_now || sat_now) && warn0 <= 0.0 && sat0 <= 0.0;
        starts[i] |= if streak_start { bit } else { 0 };
        // Streaks by weights of 0 and 1 (finite, non-negative counts), not selects: see
        // `ratio_rows`.
        let warn1 = (warn0 + 1.0) * if warn_now { 1.0 } else { 0.0 };
        let sat1 = (sat0 + 1.0) * if sat_now { 1.0 } else { 0.0 };
        warn[i] = warn1;
        sat[i] = sat1;
        let calm = valid && !warn_now && !sat_now && z < 0.5 * warn_z;
        // Settled: above the calm band but heading nowhere (not saturated, the level no more
        // than two deviations above where it was when that began) for `settled_after_s`: a
        // pool that stepped up (a resize, a shift of traffic) and stayed there. Its baseline
        // moves to the new level at once (learning its way there would teach the variance
        // the step, and a leak from the new level would then warn late), and its alert
        // resolves. Until it has settled, the baseline does not learn: a leak climbs out of
        // the two deviations and starts the count over.
        let above = valid && !sat_now && !calm;
        let held = above && hold0 > 0.0 && new_lvl - from0 <= 2.0 * sd;
        let hold1 = if held {
            hold0 + dt_i
        } else if above {
            dt_i
        } else {
            0.0
        };
        hold[i] = hold1;
        from[i] = if held { from0 } else { new_lvl };
        let settled = above && hold1 >= settled_after;
        clear[i] = clear_step(valid, calm || settled, clear0, dt_i);
        // Learn only while calm (within half the warning's z of the baseline): a slow leak
        // sampled once a minute climbs by a standard deviation or more per sample, and learning
        // the climb as normal would keep its z below the warning until the pool is full.
        let quiet = calm && fir <= 0.0;
        let a = if quiet {
            alpha_i.max(1.0 / (n0 + 1.0))
        } else {
            0.0
        };
        let dev = u - b;
        lvl[i] = if valid { new_lvl } else { lvl0 };
        tr[i] = if valid { new_tr } else { tr0 };
        base[i] = if settled { new_lvl } else { b + a * dev };
        var[i] = var0 + a * (dev * dev - var0);
        n[i] = n0 + if valid { 1.0 } else { 0.0 };
        last[i] = if valid { u } else { last0 };
        attn[i] |= if (warn1 >= confirm) | (sat1 >= confirm) | (fir > 0.0) { bit } else { 0 };
    }
}
}
