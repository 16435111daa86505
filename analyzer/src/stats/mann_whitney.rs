//! Mann–Whitney U test (Wilcoxon rank-sum), as SciPy's `mannwhitneyu`.
//!
//! Assumptions: observations are independent within and between samples; the
//! null hypothesis is that both samples come from the same distribution.
//! `U` is the statistic of the first sample: the number of pairs `(x, y)`
//! with `x > y`, ties counting one half.
//!
//! * **Exact**: the null distribution of `U` without ties, by dynamic
//!   programming over sample sizes (`O(m·n·t)` for a tail up to `t`, no
//!   enumeration), used while that stays under [`EXACT_WORK_LIMIT`].
//! * **Asymptotic**: normal approximation with the tie correction of the
//!   variance and an optional continuity correction of 0.5.
//! * **Binned**: from two histograms with aligned buckets, each bucket a tie
//!   group, so millions of requests cost as much as their bucket count.

use super::{z_p_value, Alternative};
use serde::Serialize;

/// How the p-value is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Exact null distribution; refused when there are ties.
    Exact,
    /// Normal approximation.
    Asymptotic { continuity: bool },
    /// Exact when there are no ties and the samples are small enough for the
    /// exact computation, asymptotic with continuity correction otherwise.
    Auto,
}

/// Result of a Mann–Whitney U test.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U statistic of the first sample.
    pub u: f64,
    pub p_value: f64,
    /// Whether the exact distribution was used.
    pub exact: bool,
    /// Sample sizes.
    pub n_x: u64,
    pub n_y: u64,
}

/// Why a test could not be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MwuError {
    #[error("both samples need at least one observation")]
    Empty,
    #[error("samples contain NaN")]
    NotANumber,
    #[error("the exact distribution is defined without ties only")]
    TiesInExact,
    #[error("samples too large for the exact distribution (m·n·(tail + 1) > {EXACT_WORK_LIMIT})")]
    TooLargeForExact,
    #[error("all observations are tied: the normal approximation is undefined")]
    AllTied,
}

/// Work bound for the exact distribution (`m·n·(tail + 1)` steps).
pub const EXACT_WORK_LIMIT: u64 = 50_000_000;

/// Mann–Whitney U test of raw samples `x` and `y`.
pub fn mann_whitney(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    method: Method,
) -> Result<MannWhitney, MwuError> {
    if x.is_empty() || y.is_empty() {
        return Err(MwuError::Empty);
    }
    if x.iter().chain(y).any(|v| v.is_nan()) {
        return Err(MwuError::NotANumber);
    }
    let (m, n) = (x.len() as u64, y.len() as u64);
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));

    // Rank sum of x with average ranks for ties, and the tie term Σ(t³ − t).
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let in_x = all[i..=j].iter().filter(|e| e.1).count() as f64;
        rank_sum_x += in_x * avg_rank;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let u = rank_sum_x - (m * (m + 1)) as f64 / 2.0;
    let exact = match method {
        Method::Exact if tie_term > 0.0 => return Err(MwuError::TiesInExact),
        Method::Exact if !exact_feasible(m, n, u) => return Err(MwuError::TooLargeForExact),
        Method::Exact => true,
        Method::Asymptotic { .. } => false,
        Method::Auto => tie_term == 0.0 && exact_feasible(m, n, u),
    };
    let p_value = if exact {
        exact_p_value(u, m, n, alternative)
    } else {
        let continuity = !matches!(method, Method::Asymptotic { continuity: false });
        asymptotic_p_value(u, m, n, tie_term, alternative, continuity)?
    };
    Ok(MannWhitney {
        u,
        p_value,
        exact,
        n_x: m,
        n_y: n,
    })
}

/// Mann–Whitney U test from two histograms with aligned buckets:
/// `x_counts[j]` and `y_counts[j]` count the observations of each sample in
/// bucket `j`, buckets in increasing order of value. Each bucket is one tie
/// group, so the normal approximation with tie correction is used:
/// `U_x = Σ_j x_j · (Y_<j + y_j / 2)`, ties `t_j = x_j + y_j`.
pub fn mann_whitney_binned(
    x_counts: &[u64],
    y_counts: &[u64],
    alternative: Alternative,
    continuity: bool,
) -> Result<MannWhitney, MwuError> {
    assert_eq!(x_counts.len(), y_counts.len(), "buckets must be aligned");
    let m: u64 = x_counts.iter().sum();
    let n: u64 = y_counts.iter().sum();
    if m == 0 || n == 0 {
        return Err(MwuError::Empty);
    }
    let mut u = 0.0;
    let mut y_below = 0.0;
    let mut tie_term = 0.0;
    for (&a, &b) in x_counts.iter().zip(y_counts) {
        let (a, b) = (a as f64, b as f64);
        u += a * (y_below + b / 2.0);
        y_below += b;
        let t = a + b;
        tie_term += t * t * t - t;
    }
    let p_value = asymptotic_p_value(u, m, n, tie_term, alternative, continuity)?;
    Ok(MannWhitney {
        u,
        p_value,
        exact: false,
        n_x: m,
        n_y: n,
    })
}

/// Normal approximation with tie-corrected variance, as SciPy's `_get_mwu_z`.
fn asymptotic_p_value(
    u: f64,
    m: u64,
    n: u64,
    tie_term: f64,
    alternative: Alternative,
    continuity: bool,
) -> Result<f64, MwuError> {
    let (mf, nf) = (m as f64, n as f64);
    let total = mf + nf;
    let mu = mf * nf / 2.0;
    let var = mf * nf / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)));
    if var <= 0.0 || !var.is_finite() {
        return Err(MwuError::AllTied);
    }
    let sd = var.sqrt();
    let cc = if continuity { 0.5 } else { 0.0 };
    // SciPy evaluates the upper tail of the statistic that points the
    // alternative's way: U for "greater", m·n − U for "less", the larger of
    // the two (doubled) for "two-sided".
    let p = match alternative {
        Alternative::Greater => z_p_value((u - mu - cc) / sd, Alternative::Greater),
        Alternative::Less => z_p_value((mf * nf - u - mu - cc) / sd, Alternative::Greater),
        Alternative::TwoSided => {
            let big = u.max(mf * nf - u);
            (2.0 * z_p_value((big - mu - cc) / sd, Alternative::Greater)).min(1.0)
        }
    };
    Ok(p)
}

/// Work of the exact lower tail up to `upto`: `m·n·(upto + 1)` steps.
pub(crate) fn exact_work(m: u64, n: u64, upto: u64) -> u64 {
    m.saturating_mul(n).saturating_mul(upto + 1)
}

/// Whether the exact p-value of `u` is cheap enough.
fn exact_feasible(m: u64, n: u64, u: f64) -> bool {
    let u = u.round() as u64;
    exact_work(m, n, u.min(m * n - u.min(m * n))) <= EXACT_WORK_LIMIT
}

fn exact_p_value(u: f64, m: u64, n: u64, alternative: Alternative) -> f64 {
    let mn = m * n;
    let u = (u.round() as u64).min(mn);
    // P(U ≤ t) from the lower tail only; the distribution is symmetric
    // around m·n/2, so every tail is a lower tail.
    let lower_cdf = |t: u64| -> f64 {
        exact_pmf(m as usize, n as usize, t as usize)
            .iter()
            .sum::<f64>()
            .min(1.0)
    };
    // P(U ≥ k) = P(U ≤ m·n − k).
    let sf = |k: u64| lower_cdf(mn - k);
    let p = match alternative {
        Alternative::Greater => sf(u),
        Alternative::Less => lower_cdf(u),
        Alternative::TwoSided => 2.0 * lower_cdf(u.min(mn - u)),
    };
    p.clamp(0.0, 1.0)
}

/// `P(U = u)` for `u = 0..=upto` under the null without ties, by the
/// recurrence on the largest observation of the pooled sample: it is an `x`
/// (probability m/(m+n), and it beats all n y's) or a `y`:
/// `p(u; m, n) = m/(m+n) · p(u − n; m − 1, n) + n/(m+n) · p(u; m, n − 1)`.
/// Convex combinations only, so no cancellation; `O(m·n·upto)` time,
/// `O(m·upto)` memory.
pub fn exact_pmf(m: usize, n: usize, upto: usize) -> Vec<f64> {
    let upto = upto.min(m * n);
    // p[i][u] = p(u; i, j) for the current j.
    let mut p = vec![vec![0.0f64; upto + 1]; m + 1];
    for row in &mut p {
        row[0] = 1.0; // j = 0: U = 0 surely.
    }
    for j in 1..=n {
        for i in 1..=m {
            let (a, b) = (i as f64 / (i + j) as f64, j as f64 / (i + j) as f64);
            let (prev, cur) = p.split_at_mut(i);
            let (left, row) = (&prev[i - 1], &mut cur[0]);
            for u in (0..=upto).rev() {
                let from_x = if u >= j { left[u - j] } else { 0.0 };
                row[u] = a * from_x + b * row[u];
            }
        }
    }
    p.swap_remove(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_pmf_sums_to_one_and_is_symmetric() {
        for (m, n) in [(1, 1), (2, 3), (5, 6), (7, 7), (3, 20), (12, 9), (60, 60)] {
            let f = exact_pmf(m, n, m * n);
            let total: f64 = f.iter().sum();
            assert!((total - 1.0).abs() < 1e-12, "m={m} n={n} total={total}");
            for k in 0..f.len() {
                let (a, b) = (f[k], f[f.len() - 1 - k]);
                assert!(
                    (a - b).abs() <= 1e-12 * a.max(b),
                    "symmetry m={m} n={n} k={k}: {a} {b}"
                );
            }
        }
        // m = n = 2: arrangements of xxyy give U = 0,1,2,2,3,4.
        let f = exact_pmf(2, 2, 4);
        let want = [1.0, 1.0, 2.0, 1.0, 1.0].map(|c| c / 6.0);
        assert!(
            f.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-15),
            "{f:?}"
        );
        // A truncated tail is the head of the full distribution.
        assert_eq!(exact_pmf(12, 9, 20), exact_pmf(12, 9, 108)[..=20].to_vec());
    }

    #[test]
    fn binned_matches_raw_samples_with_ties() {
        let x = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 7.0];
        let y = [2.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0, 8.0];
        let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let count = |s: &[f64]| {
            values
                .iter()
                .map(|v| s.iter().filter(|x| *x == v).count() as u64)
                .collect::<Vec<_>>()
        };
        for alt in [
            Alternative::TwoSided,
            Alternative::Less,
            Alternative::Greater,
        ] {
            for cc in [true, false] {
                let raw = mann_whitney(&x, &y, alt, Method::Asymptotic { continuity: cc }).unwrap();
                let binned = mann_whitney_binned(&count(&x), &count(&y), alt, cc).unwrap();
                assert_eq!(raw.u, binned.u);
                assert!((raw.p_value - binned.p_value).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(
            mann_whitney(&[], &[1.0], Alternative::TwoSided, Method::Auto),
            Err(MwuError::Empty)
        );
        assert_eq!(
            mann_whitney(&[1.0, 2.0], &[2.0], Alternative::TwoSided, Method::Exact),
            Err(MwuError::TiesInExact)
        );
        assert_eq!(
            mann_whitney(&[1.0], &[1.0], Alternative::TwoSided, Method::Auto),
            Err(MwuError::AllTied)
        );
        assert_eq!(
            mann_whitney(&[f64::NAN], &[1.0], Alternative::TwoSided, Method::Auto),
            Err(MwuError::NotANumber)
        );
    }
}
