//! Anytime-valid tests on counts: the Dirichlet–multinomial (here
//! beta–binomial) Bayes factor of Lindon & Malek, "Anytime-Valid Inference
//! for Multinomial Count Data" (NeurIPS 2022).
//!
//! Model: events (requests, errors, error logs) arrive as Poisson processes,
//! one per version, with intensities in a fixed ratio to each other. Under
//! the null each event belongs to the canary with probability `ρ` (its share
//! of traffic for requests; its share of requests for errors), whatever the
//! time-varying overall rate. The Bayes factor of a Beta(k·ρ, k·(1−ρ)) mixture
//! against the point null is a nonnegative martingale under the null, so
//! `p = min(1, 1/BF)` — and its running minimum over looks — is a valid
//! p-value at any stopping time: asking every few seconds does not inflate
//! false alarms.
//!
//! With traffic share `ρ_c`, prior `a = k·ρ_c`, `b = k·ρ_b`:
//! `ln BF = lnB(a+N_c, b+N_b) − lnB(a, b) − N_c·ln ρ_c − N_b·ln ρ_b`.
//! One-sided (canary share above `ρ_c`): the prior truncated to `θ > ρ_c`,
//! i.e. BF times `[1 − I_ρc(a+N_c, b+N_b)] / [1 − I_ρc(a, b)]`.

use super::Alternative;
use serde::Serialize;
use statrs::function::beta::{beta_reg, ln_beta};

/// Evidence against the null share.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CountTest {
    /// Natural log of the Bayes factor (alternative over null).
    pub log_bf: f64,
    /// `min(1, 1/BF)`: an anytime-valid p-value.
    pub p_value: f64,
}

/// Why a count test could not run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CountTestError {
    #[error("null share of the canary must be strictly between 0 and 1, got {0}")]
    Share(f64),
    #[error("prior concentration must be positive and finite, got {0}")]
    Concentration(f64),
}

/// Tests whether the canary's share of `n_canary + n_baseline` events is
/// `rho_canary`. `Greater`: the canary takes more than its share (canary
/// worse, for errors); `Less`: less.
pub fn dirichlet_multinomial(
    n_canary: u64,
    n_baseline: u64,
    rho_canary: f64,
    k: f64,
    alternative: Alternative,
) -> Result<CountTest, CountTestError> {
    if !(rho_canary > 0.0 && rho_canary < 1.0) {
        return Err(CountTestError::Share(rho_canary));
    }
    if !(k > 0.0 && k.is_finite()) {
        return Err(CountTestError::Concentration(k));
    }
    let rho_b = 1.0 - rho_canary;
    let (a, b) = (k * rho_canary, k * rho_b);
    let (nc, nb) = (n_canary as f64, n_baseline as f64);
    let mut log_bf =
        ln_beta(a + nc, b + nb) - ln_beta(a, b) - nc * rho_canary.ln() - nb * rho_b.ln();
    // P(θ > ρ_c) under Beta(α, β) is I_{ρ_b}(β, α): no cancellation near 1.
    let upper = |alpha: f64, beta: f64| beta_reg(beta, alpha, rho_b);
    let lower = |alpha: f64, beta: f64| beta_reg(alpha, beta, rho_canary);
    match alternative {
        Alternative::TwoSided => {}
        Alternative::Greater => log_bf += upper(a + nc, b + nb).ln() - upper(a, b).ln(),
        Alternative::Less => log_bf += lower(a + nc, b + nb).ln() - lower(a, b).ln(),
    }
    let p_value = if log_bf.is_nan() {
        1.0
    } else {
        (-log_bf).exp().min(1.0)
    };
    Ok(CountTest { log_bf, p_value })
}

/// Canary share of events when the canary's per-exposure rate is `ratio`
/// times the baseline's and it has `rho_canary` of the exposure.
pub fn share_for_ratio(ratio: f64, rho_canary: f64) -> f64 {
    ratio * rho_canary / (ratio * rho_canary + (1.0 - rho_canary))
}

/// Confidence sequence for the rate ratio (canary / baseline, per unit of
/// exposure): every ratio whose two-sided test has `BF < 1/α`. Valid
/// uniformly over time at level `1 − α`. The bounds are found by bisection on
/// `ln ratio` in `[e^-30, e^30]`; `0` and `+∞` stand for "no bound yet".
pub fn rate_ratio_confidence_sequence(
    n_canary: u64,
    n_baseline: u64,
    rho_canary: f64,
    k: f64,
    alpha: f64,
) -> Result<(f64, f64), CountTestError> {
    dirichlet_multinomial(n_canary, n_baseline, rho_canary, k, Alternative::TwoSided)?;
    let threshold = (1.0 / alpha).ln();
    let inside = |ln_r: f64| {
        let share = share_for_ratio(ln_r.exp(), rho_canary);
        if !(share > 0.0 && share < 1.0) {
            return false;
        }
        dirichlet_multinomial(n_canary, n_baseline, share, k, Alternative::TwoSided)
            .map(|t| t.log_bf < threshold)
            .unwrap_or(false)
    };
    const LIMIT: f64 = 30.0;
    // Centre: the maximum-likelihood ratio, kept inside the search range.
    let centre = match (n_canary, n_baseline) {
        (0, 0) => return Ok((0.0, f64::INFINITY)),
        (0, _) => -LIMIT,
        (_, 0) => LIMIT,
        _ => {
            let r = (n_canary as f64 / rho_canary) / (n_baseline as f64 / (1.0 - rho_canary));
            r.ln().clamp(-LIMIT, LIMIT)
        }
    };
    let bound = |towards: f64| -> f64 {
        if inside(towards) {
            return towards;
        }
        let (mut ok, mut out) = (centre, towards);
        for _ in 0..100 {
            let mid = (ok + out) / 2.0;
            if inside(mid) {
                ok = mid;
            } else {
                out = mid;
            }
        }
        ok
    };
    let lo = bound(-LIMIT);
    let hi = bound(LIMIT);
    let lo = if lo <= -LIMIT { 0.0 } else { lo.exp() };
    let hi = if hi >= LIMIT { f64::INFINITY } else { hi.exp() };
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_events_is_no_evidence() {
        let t = dirichlet_multinomial(0, 0, 0.1, 100.0, Alternative::TwoSided).unwrap();
        assert!(t.log_bf.abs() < 1e-12);
        assert_eq!(t.p_value, 1.0);
    }

    #[test]
    fn events_at_the_null_share_do_not_reject() {
        let t = dirichlet_multinomial(500, 4500, 0.1, 100.0, Alternative::TwoSided).unwrap();
        assert_eq!(t.p_value, 1.0);
        let t = dirichlet_multinomial(900, 4100, 0.1, 100.0, Alternative::Greater).unwrap();
        assert!(t.p_value < 1e-6);
        let t = dirichlet_multinomial(900, 4100, 0.1, 100.0, Alternative::Less).unwrap();
        assert_eq!(t.p_value, 1.0);
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(dirichlet_multinomial(1, 1, 0.0, 1.0, Alternative::TwoSided).is_err());
        assert!(dirichlet_multinomial(1, 1, 0.5, f64::NAN, Alternative::TwoSided).is_err());
    }

    #[test]
    fn confidence_sequence_covers_the_true_ratio_and_shrinks() {
        // Canary has 10% of traffic and twice the error rate: share 2·0.1/(2·0.1+0.9).
        let small = rate_ratio_confidence_sequence(20, 90, 0.1, 100.0, 0.05).unwrap();
        let large = rate_ratio_confidence_sequence(2000, 9000, 0.1, 100.0, 0.05).unwrap();
        assert!(small.0 < 2.0 && 2.0 < small.1, "{small:?}");
        assert!(large.0 < 2.0 && 2.0 < large.1, "{large:?}");
        assert!(large.1 - large.0 < small.1 - small.0);
        assert!(large.0 > 1.5, "{large:?}");
        let none = rate_ratio_confidence_sequence(0, 50, 0.1, 100.0, 0.05).unwrap();
        assert_eq!(none.0, 0.0);
        assert!(none.1.is_finite());
    }
}
