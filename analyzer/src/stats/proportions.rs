//! Two-proportion z test with a Newcombe (hybrid Wilson score) interval for
//! the difference.
//!
//! Assumptions: independent Bernoulli trials per group; the z test needs
//! enough successes and failures in both groups (roughly ≥ 5 of each) for the
//! normal approximation, which is why decisions on sparse errors use the
//! sequential count test instead. The Newcombe interval stays sensible with
//! zero counts, where the Wald interval collapses.

use super::{normal_quantile, z_p_value, Alternative};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TwoProportions {
    /// `x1/n1 − x2/n2`.
    pub difference: f64,
    /// Pooled z statistic; NaN when every trial failed or every trial succeeded.
    pub z: f64,
    pub p_value: f64,
    /// Newcombe interval for the difference.
    pub ci: (f64, f64),
}

/// Compares `x1` successes in `n1` trials with `x2` in `n2`. `None` when a
/// group has no trials or more successes than trials.
pub fn two_proportions(
    x1: u64,
    n1: u64,
    x2: u64,
    n2: u64,
    alternative: Alternative,
    confidence: f64,
) -> Option<TwoProportions> {
    if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
        return None;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    let (z, p_value) = if se > 0.0 {
        let z = (p1 - p2) / se;
        (z, z_p_value(z, alternative))
    } else {
        (f64::NAN, 1.0)
    };
    let zq = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let (l1, u1) = wilson(x1, n1, zq);
    let (l2, u2) = wilson(x2, n2, zq);
    let difference = p1 - p2;
    let ci = (
        difference - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        difference + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    );
    Some(TwoProportions {
        difference,
        z,
        p_value,
        ci,
    })
}

/// Wilson score interval for `x` successes in `n` trials.
pub fn wilson(x: u64, n: u64, z: f64) -> (f64, f64) {
    let n = n as f64;
    let p = x as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((center - half).max(0.0), (center + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_statistic_matches_the_textbook_formula() {
        // 25/1000 vs 10/1000: pooled 0.0175, se = sqrt(0.0175·0.9825·0.002).
        let r = two_proportions(25, 1000, 10, 1000, Alternative::TwoSided, 0.95).unwrap();
        let se = (0.0175f64 * 0.9825 * 0.002).sqrt();
        assert!((r.z - 0.015 / se).abs() < 1e-12);
        assert!((r.p_value - 2.0 * crate::stats::normal_sf(0.015 / se)).abs() < 1e-15);
        assert!(r.ci.0 < 0.015 && 0.015 < r.ci.1 && r.ci.0 > 0.0);
    }

    #[test]
    fn zero_errors_give_a_non_degenerate_interval() {
        let r = two_proportions(0, 50, 0, 5000, Alternative::Greater, 0.95).unwrap();
        assert_eq!(r.p_value, 1.0);
        assert!(
            r.ci.1 > 0.05,
            "Wilson upper bound for 0/50 is about 7%: {:?}",
            r.ci
        );
        assert!(two_proportions(1, 0, 0, 5, Alternative::Greater, 0.95).is_none());
    }
}
