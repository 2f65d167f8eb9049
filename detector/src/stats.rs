//! Numeric helpers: a branch-free logarithm for the per-sample kernels, and the exact tests that
//! run only on the rare candidates.

use statrs::distribution::{Beta, ContinuousCDF};

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
}
