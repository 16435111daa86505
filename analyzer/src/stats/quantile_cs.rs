//! Time-uniform confidence bands for a distribution function and the
//! quantile confidence sequences they imply (Howard & Ramdas, "Sequential
//! estimation of quantiles with applications to A/B-testing and best-arm
//! identification", Bernoulli 2022, Theorem 2's DKW-type bound).
//!
//! Assumption: observations of one version are i.i.d. draws from a fixed
//! distribution while the rollout runs. With `t ≥ m` observations, the
//! empirical CDF is within
//! `ε_t(α) = 0.85·sqrt((ln ln(e·t/m) + 0.8·ln(1612/α)) / t)`
//! of the true CDF everywhere, for all `t ≥ m` at once, with probability
//! `1 − α`. So the true `q`-quantile lies between the empirical quantiles at
//! levels `q − ε_t` and `q + ε_t` at every look.

/// Half-width of the time-uniform band after `t` observations, valid from
/// `m` observations on. `None` before `m` observations.
pub fn dkw_epsilon(t: u64, m: u64, alpha: f64) -> Option<f64> {
    let m = m.max(1);
    if t < m || t == 0 || !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let t = t as f64;
    let ratio = std::f64::consts::E * t / m as f64;
    Some(0.85 * ((ratio.ln().ln() + 0.8 * (1612.0 / alpha).ln()) / t).sqrt())
}

/// Probability levels whose empirical quantiles bound the true `q`-quantile:
/// `(q − ε, q + ε)`; a level below 0 means "no lower bound yet" (minus
/// infinity), above 1 "no upper bound yet".
pub fn quantile_levels(q: f64, t: u64, m: u64, alpha: f64) -> Option<(f64, f64)> {
    let eps = dkw_epsilon(t, m, alpha)?;
    Some((q - eps, q + eps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_matches_the_closed_form_and_shrinks() {
        // At t = m the iterated logarithm vanishes.
        let e = dkw_epsilon(100, 100, 0.05).unwrap();
        assert!((e - 0.85 * (0.8 * (1612.0f64 / 0.05).ln() / 100.0).sqrt()).abs() < 1e-15);
        assert!(dkw_epsilon(1_000_000, 100, 0.05).unwrap() < e / 50.0);
        assert!(dkw_epsilon(99, 100, 0.05).is_none());
        let (lo, hi) = quantile_levels(0.5, 10_000, 100, 0.05).unwrap();
        assert!(lo < 0.5 && hi > 0.5 && (0.5 - lo - (hi - 0.5)).abs() < 1e-15);
    }
}
