//! Numeric helpers: a branch-free logarithm for the per-sample kernels, and the exact tests that
//! run only on the rare candidates.

use statrs::distribution::{Beta, ContinuousCDF};
use statrs::function::gamma::ln_gamma;

/// Natural logarithm of a positive finite `x`, to about 1e-7 relative error (the precision of
/// an `f32`), written without branches or calls so loops over it vectorise. Non-positive input
/// gives a large negative number rather than NaN; callers only pass clamped probabilities and
/// positive latencies.
#[inline(always)]
pub fn fast_ln(x: f32) -> f32 {
    const LN2: f32 = std::f32::consts::LN_2;
    let bits = x.to_bits();
    // Exponent and mantissa: x = m * 2^e with m in [1, 2). The exponent becomes a float by
    // placing it in the mantissa of 2^23 (exact for these small integers, and no conversion
    // instruction needed).
    let e = f32::from_bits(0x4b00_0000 | ((bits >> 23) & 0xff)) - (8_388_608.0 + 127.0);
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    // Centre the mantissa on 1 so the series below converges fast: m in [sqrt(1/2), sqrt(2)).
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let ef = if big { e + 1.0 } else { e };
    // ln(m) = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172: the terms after t^7 / 7 are
    // below f32 precision.
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let p = 1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0)));
    ef * LN2 + 2.0 * t * p
}

/// Upper tail of a binomial, `P(X >= k)` for `X ~ Binomial(n, p)`, extended to real `k` and `n`
/// through the regularised incomplete beta function (`I_p(k, n - k + 1)`). Real-valued counts let
/// callers deflate both by an overdispersion factor (quasi-binomial).
pub fn binomial_upper_tail(k: f64, n: f64, p: f64) -> f64 {
    if !(k.is_finite() && n.is_finite() && p.is_finite()) || n <= 0.0 || k <= 0.0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    match Beta::new(k, n - k + 1.0) {
        Ok(beta) => beta.cdf(p).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

/// Upper tail `P(X >= k)` of a count of events in `n` trials whose rate `p` is itself
/// overdispersed: its variance is `phi` times the binomial's. Modelled as the beta-binomial
/// with that mean and variance (the trials' rate drawn from a beta of concentration
/// `(n - 1) / (phi - 1) - 1`), which is the binomial itself when `phi <= 1`.
///
/// Why not deflate a binomial's counts by `phi` (quasi-binomial)? That matches the variance
/// but not the tail: a series whose error ratio swings from sample to sample has a tail like
/// its rate's, roughly exponential, while a binomial's falls off far faster. At a dispersion of
/// 30 on 3000 requests around 1%, a sample at 10% is a 3-in-100,000 event for such a series;
/// the deflated binomial put it at 8 in 100 million, and busy, bursty series paged.
///
/// The sum stops once the tail passes `1e-3` (no caller's threshold is near that), returning
/// a value at least that large.
pub fn overdispersed_upper_tail(k: f64, n: f64, p: f64, phi: f64) -> f64 {
    if !(k.is_finite() && n.is_finite() && p.is_finite() && phi.is_finite()) || n <= 0.0 || k <= 0.0
    {
        return 1.0;
    }
    // Counts are whole: a real-valued one (an f32 sum) is rounded to the nearest.
    let (k, n) = (k.round().max(1.0), n.round().max(1.0));
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let conc = if phi > 1.0 && n > 1.0 {
        (n - 1.0) / (phi - 1.0) - 1.0
    } else {
        f64::INFINITY
    };
    // Near-binomial (or a concentration too large to tell apart from it): the binomial.
    if conc >= 1e12 {
        return binomial_upper_tail(k, n, p);
    }
    let conc = conc.max(1e-6);
    beta_binomial_upper_tail(k, n, p * conc, (1.0 - p) * conc, 1e-3)
}

/// `P(X >= k)` for `X ~ BetaBinomial(n, a, b)` (whole `k` and `n`), summed from `k` up until
/// the terms no longer count or the sum reaches `enough`.
fn beta_binomial_upper_tail(k: f64, n: f64, a: f64, b: f64, enough: f64) -> f64 {
    // ln P(X = k) = ln C(n, k) + ln B(k + a, n - k + b) - ln B(a, b).
    let ln_beta = |x: f64, y: f64| ln_gamma(x) + ln_gamma(y) - ln_gamma(x + y);
    let ln_choose = ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0);
    let ln_pk = ln_choose + ln_beta(k + a, n - k + b) - ln_beta(a, b);
    let mut term = ln_pk.exp();
    let mut sum = 0.0;
    let mut j = k;
    while j <= n {
        sum += term;
        if sum >= enough || term <= sum * 1e-12 && j > k {
            break;
        }
        // P(X = j + 1) / P(X = j)
        term *= (n - j) * (j + a) / ((j + 1.0) * (n - j - 1.0 + b));
        j += 1.0;
    }
    sum.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_ln_matches_std() {
        let mut x: f32 = 1e-9;
        while x < 1e9 {
            let want = f64::from(x).ln();
            let got = f64::from(fast_ln(x));
            assert!(
                (got - want).abs() <= 3e-7 * want.abs().max(1.0),
                "ln({x}) = {got}, want {want}"
            );
            x *= 1.37;
        }
    }

    #[test]
    fn binomial_tail_matches_direct_sums() {
        // P(X >= 1 | n = 20, p = 0.002) = 1 - 0.998^20
        let want = 1.0 - 0.998f64.powi(20);
        assert!((binomial_upper_tail(1.0, 20.0, 0.002) - want).abs() < 1e-9);
        // P(X >= 2 | n = 10, p = 0.5) = 1 - (1 + 10) / 1024
        let want = 1.0 - 11.0 / 1024.0;
        assert!((binomial_upper_tail(2.0, 10.0, 0.5) - want).abs() < 1e-9);
        // 15 errors in 50 requests at a 0.2% baseline is astronomically unlikely.
        assert!(binomial_upper_tail(15.0, 50.0, 0.002) < 1e-25);
        assert_eq!(binomial_upper_tail(0.0, 50.0, 0.002), 1.0);
    }

    #[test]
    fn overdispersed_tail_is_the_beta_binomial_of_that_dispersion() {
        // Beta(1, 1) makes every count from 0 to 10 equally likely: P(X >= 7) = 4/11.
        let uniform = beta_binomial_upper_tail(7.0, 10.0, 1.0, 1.0, 1.0);
        assert!((uniform - 4.0 / 11.0).abs() < 1e-12, "{uniform}");
        // The same distribution through its mean and dispersion (1 + (n - 1) / (a + b + 1)),
        // far enough out that the sum is complete: P(X = 10) = 1/11.
        let top = overdispersed_upper_tail(10.0, 10.0, 0.5, 4.0);
        assert!((top - 1.0 / 11.0).abs() < 1e-12, "{top}");
        // No overdispersion: the binomial.
        for (k, n, p) in [(20.0, 1000.0, 0.002), (15.0, 50.0, 0.002), (3.0, 10.0, 0.1)] {
            assert_eq!(
                overdispersed_upper_tail(k, n, p, 1.0),
                binomial_upper_tail(k, n, p)
            );
            assert_eq!(
                overdispersed_upper_tail(k, n, p, 0.7),
                binomial_upper_tail(k, n, p)
            );
        }
        // A slight dispersion moves the tail slightly, and only up.
        let (b, o) = (
            binomial_upper_tail(20.0, 1000.0, 0.002),
            overdispersed_upper_tail(20.0, 1000.0, 0.002, 1.0001),
        );
        assert!(o > b && o < 1.1 * b, "{o} against {b}");
        // A bursty series (dispersion 30 on 3000 requests at 1%): a sample at 10% is rare, but
        // nowhere near as rare as the binomial deflated by the dispersion says.
        let bursty = overdispersed_upper_tail(300.0, 3000.0, 0.01, 30.0);
        let deflated = binomial_upper_tail(10.0, 100.0, 0.01);
        assert!((1e-5..1e-4).contains(&bursty), "{bursty}");
        assert!(deflated < 1e-7 && bursty > 100.0 * deflated);
        // A count below the mean is nothing (the sum stops early, at a large value).
        assert!(overdispersed_upper_tail(50.0, 10_000.0, 0.01, 3.0) >= 1e-3);
        // A long run twice the baseline on a busy series is decisive even when dispersed.
        assert!(overdispersed_upper_tail(200_000.0, 10_000_000.0, 0.01, 30.0) < 1e-30);
        assert_eq!(overdispersed_upper_tail(0.0, 10.0, 0.1, 2.0), 1.0);
        assert_eq!(overdispersed_upper_tail(11.0, 10.0, 0.1, 2.0), 0.0);
    }
}
