//! Quantile confidence sequences (Howard & Ramdas, "Sequential estimation of
//! quantiles with applications to A/B-testing and best-arm identification",
//! Bernoulli 2022).
//!
//! **Fixed quantile** ([`rank_bounds`], their Theorem 1 with a beta-binomial
//! mixture): with i.i.d. observations from a continuous distribution, the
//! number `S_t` of the first `t` observations at or below the true
//! q-quantile is Binomial(t, q) at every `t`. The beta-binomial mixture
//! martingale of [`dirichlet_multinomial`](super::sequential::dirichlet_multinomial)
//! (prior Beta(k·q, k·(1−q))) stays below `1/α` for all `t` with probability
//! `1 − α` (Ville), so `S_t` stays in `[s_lo, s_hi]`, the counts whose Bayes
//! factor is below `1/α`; hence the true quantile lies between the order
//! statistics of rank `s_lo` and `s_hi + 1` at every look. Its width shrinks
//! like `sqrt(q(1−q)·log t / t)`, so tail quantiles (p99) resolve far sooner
//! than with a band for the whole distribution.
//!
//! **Whole distribution** ([`dkw_epsilon`], their Theorem 2's DKW-type bound):
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

/// Ranks (1-based order statistics) bounding the true `q`-quantile after `t`
/// observations, at level `1 − α` uniformly over time: `(lower, upper)`;
/// `lower = 0` means no lower bound yet, `upper > t` no upper bound yet.
/// `k` is the prior concentration of the mixture.
pub fn rank_bounds(q: f64, t: u64, alpha: f64, k: f64) -> Option<(u64, u64)> {
    use super::sequential::dirichlet_multinomial;
    use super::Alternative;
    if !(q > 0.0 && q < 1.0 && alpha > 0.0 && alpha < 1.0 && t > 0) {
        return None;
    }
    let threshold = (1.0 / alpha).ln();
    let inside = |s: u64| {
        dirichlet_multinomial(s, t - s, q, k, Alternative::TwoSided)
            .is_ok_and(|r| r.log_bf < threshold)
    };
    // The Bayes factor is smallest near s = t·q and grows away from it.
    let centre = ((t as f64 * q).round() as u64).min(t);
    if !inside(centre) {
        return Some((0, t + 1));
    }
    // Smallest s in [0, centre] inside, largest in [centre, t] inside.
    let (mut out, mut ok) = (0u64, centre);
    if inside(0) {
        ok = 0;
    } else {
        while ok - out > 1 {
            let mid = out + (ok - out) / 2;
            if inside(mid) {
                ok = mid
            } else {
                out = mid
            }
        }
    }
    let s_lo = ok;
    let (mut ok, mut out) = (centre, t);
    if inside(t) {
        ok = t;
    } else {
        while out - ok > 1 {
            let mid = ok + (out - ok) / 2;
            if inside(mid) {
                ok = mid
            } else {
                out = mid
            }
        }
    }
    let s_hi = ok;
    // S_t ≥ s_lo ⇒ X_(s_lo) ≤ Q;  S_t ≤ s_hi ⇒ X_(s_hi+1) > Q.
    Some((s_lo, s_hi + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_bounds_bracket_the_quantile_and_beat_the_band_in_the_tail() {
        let t = 36_000;
        let (lo, hi) = rank_bounds(0.99, t, 0.05, 100.0).unwrap();
        assert!(lo < 35_640 && 35_640 < hi, "{lo} {hi}");
        let eps = dkw_epsilon(t, 200, 0.05).unwrap();
        // The DKW band cannot bound p99 from above at all here (0.99 + ε > 1).
        assert!(0.99 + eps > 1.0);
        assert!(hi <= t, "beta-binomial bound exists: {hi} of {t}");
        let (lo50, hi50) = rank_bounds(0.5, 1000, 0.05, 100.0).unwrap();
        assert!(
            lo50 < 500 && hi50 > 500 && hi50 - lo50 < 200,
            "{lo50} {hi50}"
        );
        // Too few observations for an upper bound on p99.
        assert!(rank_bounds(0.99, 5, 0.05, 100.0).unwrap().1 > 5);
    }

    #[test]
    fn band_matches_the_closed_form_and_shrinks() {
        // At t = m the iterated logarithm vanishes.
        let e = dkw_epsilon(100, 100, 0.05).unwrap();
        assert!((e - 0.85 * (0.8 * (1612.0f64 / 0.05).ln() / 100.0).sqrt()).abs() < 1e-15);
        assert!(dkw_epsilon(1_000_000, 100, 0.05).unwrap() < e / 50.0);
        assert!(dkw_epsilon(99, 100, 0.05).is_none());
    }
}
