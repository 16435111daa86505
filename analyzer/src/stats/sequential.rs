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
    #[error("a prior mixture needs at least one component, each with a positive finite weight")]
    Weights,
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

/// The count test under a mixture of priors: the weighted average of the
/// Bayes factors of [`dirichlet_multinomial`] over `mixture`, pairs of
/// (concentration `k`, weight); weights are normalized to sum to 1. Each is a nonnegative martingale with mean 1 under
/// the null, so their average is too (an average of e-values is an
/// e-value), and `min(1, 1/BF)` stays anytime-valid. A small `k` spreads the
/// prior wide (power against large changes after a few events), a large `k`
/// keeps it near the null (power against small changes after many); the
/// mixture costs at most `-ln(weight)` of evidence against any one component.
pub fn dirichlet_multinomial_mixture(
    n_canary: u64,
    n_baseline: u64,
    rho_canary: f64,
    mixture: &[(f64, f64)],
    alternative: Alternative,
) -> Result<CountTest, CountTestError> {
    let total: f64 = mixture.iter().map(|c| c.1).sum();
    if mixture.is_empty() || mixture.iter().any(|c| !(c.1 > 0.0 && c.1.is_finite())) {
        return Err(CountTestError::Weights);
    }
    let mut logs = Vec::with_capacity(mixture.len());
    for &(k, w) in mixture {
        let t = dirichlet_multinomial(n_canary, n_baseline, rho_canary, k, alternative)?;
        logs.push(t.log_bf + (w / total).ln());
    }
    // log of the weighted mean of the factors, without overflow.
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_bf = if top.is_finite() {
        top + logs.iter().map(|l| (l - top).exp()).sum::<f64>().ln()
    } else {
        top
    };
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
    rate_ratio_confidence_sequence_mixture(n_canary, n_baseline, rho_canary, &[(k, 1.0)], alpha)
}

/// [`rate_ratio_confidence_sequence`] inverting the mixture test of
/// [`dirichlet_multinomial_mixture`].
pub fn rate_ratio_confidence_sequence_mixture(
    n_canary: u64,
    n_baseline: u64,
    rho_canary: f64,
    mixture: &[(f64, f64)],
    alpha: f64,
) -> Result<(f64, f64), CountTestError> {
    dirichlet_multinomial_mixture(
        n_canary,
        n_baseline,
        rho_canary,
        mixture,
        Alternative::TwoSided,
    )?;
    let threshold = (1.0 / alpha).ln();
    let inside = |ln_r: f64| {
        let share = share_for_ratio(ln_r.exp(), rho_canary);
        if !(share > 0.0 && share < 1.0) {
            return false;
        }
        dirichlet_multinomial_mixture(n_canary, n_baseline, share, mixture, Alternative::TwoSided)
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
    fn the_mixture_is_the_mean_of_its_bayes_factors() {
        let ks = [1.0, 10.0, 100.0, 1000.0];
        let mixture = [(1.0, 0.1), (10.0, 0.2), (100.0, 0.3), (1000.0, 0.4)];
        for (nc, nb, alt) in [
            (32, 4, Alternative::Greater),
            (3, 40, Alternative::Less),
            (500, 480, Alternative::TwoSided),
        ] {
            let mean = mixture
                .iter()
                .map(|&(k, w)| {
                    w * dirichlet_multinomial(nc, nb, 0.5, k, alt)
                        .unwrap()
                        .log_bf
                        .exp()
                })
                .sum::<f64>();
            let m = dirichlet_multinomial_mixture(nc, nb, 0.5, &mixture, alt).unwrap();
            assert!((m.log_bf.exp() / mean - 1.0).abs() < 1e-12, "{nc} {nb}");
        }
        // Issue #13's counts: 4 of 400 baseline requests failed, 32 of 400
        // canary ones. k = 100 alone barely reacts; the mixture does.
        let rho0 = share_for_ratio(1.05, 0.5);
        let single = dirichlet_multinomial(32, 4, rho0, 100.0, Alternative::Greater).unwrap();
        let equal: Vec<(f64, f64)> = ks.iter().map(|&k| (k, 1.0)).collect();
        let mix = dirichlet_multinomial_mixture(32, 4, rho0, &equal, Alternative::Greater).unwrap();
        assert!(single.p_value > 0.01, "{single:?}");
        assert!(mix.p_value < 1e-3, "{mix:?}");
        assert!(dirichlet_multinomial_mixture(1, 1, 0.5, &[], Alternative::Greater).is_err());
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
