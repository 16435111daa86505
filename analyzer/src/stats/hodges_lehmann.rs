//! Hodges–Lehmann estimate of the shift between two samples: the median of
//! all pairwise differences `x_i − y_j`, with its confidence interval.
//!
//! Assumptions: independent samples whose distributions differ by a location
//! shift (the interval is the inversion of the Mann–Whitney test).
//!
//! The `m·n` differences are never materialised: the k-th smallest difference
//! is found by randomised selection over the implicit sorted matrix
//! `D[i][j] = x_i − y_j` (rows `x` ascending, columns `y` descending, so `D`
//! increases along both), counting the cells below a pivot with two pointers
//! in `O(m + n)` per round and `O(log(m·n))` rounds expected (Monahan 1984).
//! Samples can be weighted, so the same code runs on histograms: a bucket is
//! one value with its count as weight.

use super::mann_whitney::{exact_pmf, exact_work, EXACT_WORK_LIMIT};
use super::normal_quantile;
use serde::Serialize;

/// A weighted sample: distinct values, each with its multiplicity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weighted {
    /// `(value, weight)`, sorted by value, weights > 0.
    points: Vec<(f64, u64)>,
    total: u64,
}

impl Weighted {
    /// One weight per observation.
    pub fn from_values(values: &[f64]) -> Self {
        Self::from_pairs(values.iter().map(|&v| (v, 1)))
    }

    /// Pairs `(value, weight)` in any order; zero weights are dropped, NaN values too.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (f64, u64)>) -> Self {
        let mut points: Vec<(f64, u64)> = pairs
            .into_iter()
            .filter(|p| p.1 > 0 && !p.0.is_nan())
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = points.iter().map(|p| p.1).sum();
        Self { points, total }
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Shift estimate with its interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shift {
    /// Median of `x_i − y_j`.
    pub estimate: f64,
    /// Confidence interval for the shift at the requested level.
    pub ci: (f64, f64),
    /// Whether the interval comes from the exact Mann–Whitney distribution.
    pub exact: bool,
}

/// Median of the pairwise differences `x_i − y_j` (NumPy's median: the mean
/// of the two middle values when their number is even). `None` when a sample
/// is empty.
pub fn median_of_differences(x: &Weighted, y: &Weighted) -> Option<f64> {
    let pairs = u128::from(x.total) * u128::from(y.total);
    if pairs == 0 {
        return None;
    }
    let matrix = DiffMatrix::new(x, y);
    if pairs % 2 == 1 {
        Some(matrix.kth((pairs - 1) / 2))
    } else {
        Some((matrix.kth(pairs / 2 - 1) + matrix.kth(pairs / 2)) / 2.0)
    }
}

/// Hodges–Lehmann shift with a `confidence` interval (e.g. 0.95).
///
/// The interval is exact (as R's `wilcox.test(conf.int = TRUE)`) when both
/// samples are unweighted, free of ties and small; otherwise it is the
/// asymptotic interval of Hollander & Wolfe: the differences of rank
/// `C = ⌊m·n/2 − z·σ_U⌋` and `m·n + 1 − C`, with the tie-corrected σ_U.
pub fn hodges_lehmann(x: &Weighted, y: &Weighted, confidence: f64) -> Option<Shift> {
    let estimate = median_of_differences(x, y)?;
    let matrix = DiffMatrix::new(x, y);
    let (m, n) = (x.total, y.total);
    let mn = u128::from(m) * u128::from(n);
    let alpha = 1.0 - confidence;
    let no_ties = x.points.iter().chain(&y.points).all(|p| p.1 == 1) && !shares_value(x, y);
    let half = m * n / 2;
    let exact = no_ties && exact_work(m, n, half) <= EXACT_WORK_LIMIT;
    let c: u128 = if exact {
        // qwilcox(alpha/2): the smallest u with P(U ≤ u) ≥ alpha/2.
        let pmf = exact_pmf(m as usize, n as usize, half as usize);
        let mut cum = 0.0;
        let mut qu = 0u128;
        for (u, f) in pmf.iter().enumerate() {
            cum += f;
            if cum >= alpha / 2.0 {
                qu = u as u128;
                break;
            }
        }
        qu.max(1)
    } else {
        let (mf, nf) = (m as f64, n as f64);
        let total = mf + nf;
        let tie_term: f64 = merged_tie_groups(x, y).map(|t| t * t * t - t).sum();
        let var = mf * nf / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)).max(1.0));
        let z = normal_quantile(1.0 - alpha / 2.0);
        let c = (mf * nf / 2.0 - z * var.max(0.0).sqrt()).floor();
        (c.max(1.0) as u128).min(mn)
    };
    // 1-based ranks C and m·n + 1 − C → 0-based C − 1 and m·n − C.
    let ci = (matrix.kth(c - 1), matrix.kth(mn - c));
    Some(Shift {
        estimate,
        ci,
        exact,
    })
}

fn shares_value(x: &Weighted, y: &Weighted) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < x.points.len() && j < y.points.len() {
        match x.points[i].0.total_cmp(&y.points[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// Sizes of the tie groups of the pooled sample.
fn merged_tie_groups<'a>(x: &'a Weighted, y: &'a Weighted) -> impl Iterator<Item = f64> + 'a {
    let mut all: Vec<(f64, u64)> = x.points.iter().chain(&y.points).copied().collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups = Vec::new();
    for (v, w) in all {
        match groups.last_mut() {
            Some((last, count)) if *last == v => *count += w,
            _ => groups.push((v, w)),
        }
    }
    groups.into_iter().map(|g| g.1 as f64)
}

/// The implicit matrix `D[i][j] = x_i − y_j`, rows by `x` ascending and
/// columns by `y` descending, so that `D` increases along rows and columns.
struct DiffMatrix<'a> {
    rows: &'a [(f64, u64)],
    cols: Vec<(f64, u64)>,
    /// `col_prefix[j]` = total weight of columns `0..j`.
    col_prefix: Vec<u128>,
}

impl<'a> DiffMatrix<'a> {
    fn new(x: &'a Weighted, y: &Weighted) -> Self {
        let cols: Vec<(f64, u64)> = y.points.iter().rev().copied().collect();
        let mut col_prefix = Vec::with_capacity(cols.len() + 1);
        col_prefix.push(0u128);
        for c in &cols {
            col_prefix.push(col_prefix.last().unwrap() + u128::from(c.1));
        }
        Self {
            rows: &x.points,
            cols,
            col_prefix,
        }
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.rows[i].0 - self.cols[j].0
    }

    /// For every row, the number of columns whose difference is `< pivot`
    /// (`or_equal = false`) or `<= pivot`; and the weight of those cells.
    fn count_below(&self, pivot: f64, or_equal: bool, out: &mut [usize]) -> u128 {
        let below = |d: f64| if or_equal { d <= pivot } else { d < pivot };
        let mut j = self.cols.len();
        let mut weight = 0u128;
        for (i, slot) in out.iter_mut().enumerate().take(self.rows.len()) {
            // D grows with i, so the boundary only moves left.
            while j > 0 && !below(self.at(i, j - 1)) {
                j -= 1;
            }
            *slot = j;
            weight += u128::from(self.rows[i].1) * self.col_prefix[j];
        }
        weight
    }

    /// The k-th smallest difference (0-based, counting weights).
    fn kth(&self, k: u128) -> f64 {
        let (rows, cols) = (self.rows.len(), self.cols.len());
        let mut lo = vec![0usize; rows];
        let mut hi = vec![cols; rows];
        let mut lt = vec![0usize; rows];
        let mut le = vec![0usize; rows];
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        loop {
            let active: usize = lo.iter().zip(&hi).map(|(l, h)| h - l).sum();
            assert!(active > 0, "rank {k} out of range");
            if active <= 4 * (rows + cols) {
                return self.select_among_active(k, &lo, &hi);
            }
            // A pseudo-random active cell as pivot (xorshift; determinism keeps
            // results reproducible, the answer does not depend on it).
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut r = (rng % active as u64) as usize;
            let mut pivot = f64::NAN;
            for i in 0..rows {
                let width = hi[i] - lo[i];
                if r < width {
                    pivot = self.at(i, lo[i] + r);
                    break;
                }
                r -= width;
            }
            let below = self.count_below(pivot, false, &mut lt);
            let below_or_equal = self.count_below(pivot, true, &mut le);
            if k < below {
                for i in 0..rows {
                    hi[i] = hi[i].min(lt[i]);
                    lo[i] = lo[i].min(hi[i]);
                }
            } else if k < below_or_equal {
                return pivot;
            } else {
                for i in 0..rows {
                    lo[i] = lo[i].max(le[i]);
                    hi[i] = hi[i].max(lo[i]);
                }
            }
        }
    }

    fn select_among_active(&self, k: u128, lo: &[usize], hi: &[usize]) -> f64 {
        // Cells left of the active range are all below the answer.
        let mut base = 0u128;
        let mut cells = Vec::new();
        for i in 0..self.rows.len() {
            base += u128::from(self.rows[i].1) * self.col_prefix[lo[i]];
            for j in lo[i]..hi[i] {
                cells.push((
                    self.at(i, j),
                    u128::from(self.rows[i].1) * u128::from(self.cols[j].1),
                ));
            }
        }
        cells.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut rank = base;
        for (value, weight) in cells {
            rank += weight;
            if k < rank {
                return value;
            }
        }
        unreachable!("rank {k} beyond the active cells")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force_sorted(x: &[f64], y: &[f64]) -> Vec<f64> {
        let mut d: Vec<f64> = x
            .iter()
            .flat_map(|a| y.iter().map(move |b| a - b))
            .collect();
        d.sort_by(f64::total_cmp);
        d
    }

    #[test]
    fn kth_matches_brute_force_on_every_rank() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % 50) as f64 / 4.0
        };
        for (m, n) in [(1, 1), (3, 5), (40, 37), (120, 90)] {
            let x: Vec<f64> = (0..m).map(|_| next()).collect();
            let y: Vec<f64> = (0..n).map(|_| next()).collect();
            let sorted = brute_force_sorted(&x, &y);
            let matrix_x = Weighted::from_values(&x);
            let matrix_y = Weighted::from_values(&y);
            let matrix = DiffMatrix::new(&matrix_x, &matrix_y);
            for (k, expected) in sorted.iter().enumerate() {
                assert_eq!(matrix.kth(k as u128), *expected, "m={m} n={n} k={k}");
            }
        }
    }

    #[test]
    fn weighted_histograms_give_the_same_median_as_raw_values() {
        let x = [1.0, 1.0, 1.0, 2.0, 5.0, 5.0];
        let y = [0.5, 2.0, 2.0, 3.0];
        let raw = median_of_differences(&Weighted::from_values(&x), &Weighted::from_values(&y));
        let binned = median_of_differences(
            &Weighted::from_pairs([(1.0, 3), (2.0, 1), (5.0, 2)]),
            &Weighted::from_pairs([(0.5, 1), (2.0, 2), (3.0, 1)]),
        );
        assert_eq!(raw, binned);
        let d = brute_force_sorted(&x, &y);
        assert_eq!(raw, Some((d[11] + d[12]) / 2.0));
    }

    #[test]
    fn interval_contains_the_estimate_and_a_known_shift() {
        let x: Vec<f64> = (0..200)
            .map(|i| (i as f64 * 0.37).sin() * 10.0 + 30.0)
            .collect();
        let y: Vec<f64> = x.iter().map(|v| v - 5.0).collect();
        let shift =
            hodges_lehmann(&Weighted::from_values(&x), &Weighted::from_values(&y), 0.95).unwrap();
        assert!((shift.estimate - 5.0).abs() < 1e-9);
        assert!(shift.ci.0 <= 5.0 && 5.0 <= shift.ci.1, "{shift:?}");
    }

    #[test]
    fn exact_interval_matches_r_wilcox_test() {
        // R's wilcox.test(x, y, conf.int = TRUE) takes, for the exact 95%
        // interval, qu = qwilcox(0.025, 5, 6) = 4 (P(U ≤ 4) = 0.02597 in the
        // reference vectors, P(U ≤ 3) < 0.025): the 4th and the 27th of the 30
        // sorted differences.
        let x = [1.1, 2.3, 3.5, 4.2, 5.9];
        let y = [2.0, 6.1, 7.4, 8.8, 9.3, 10.2];
        let shift =
            hodges_lehmann(&Weighted::from_values(&x), &Weighted::from_values(&y), 0.95).unwrap();
        let d = brute_force_sorted(&x, &y);
        assert!(shift.exact);
        assert_eq!(shift.ci, (d[3], d[26]));
    }
}
