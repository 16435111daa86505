//! Fisher's exact test on a 2×2 table, as SciPy's `fisher_exact` and R's
//! `fisher.test`.
//!
//! Assumptions: row and column totals are fixed (conditional test); cells
//! are counts of independent observations. Table `[[a, b], [c, d]]`: `a`
//! follows the hypergeometric distribution given the margins.
//! The two-sided p-value sums the probabilities of every table no more
//! likely than the observed one (relative tolerance 1e-7, as R).

use super::Alternative;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fisher {
    /// Sample odds ratio `a·d / (b·c)` (infinite or NaN when undefined).
    pub odds_ratio: f64,
    pub p_value: f64,
}

/// Fisher's exact test of `[[a, b], [c, d]]`. `Greater` tests an odds ratio
/// above 1 (`a` large), `Less` below 1.
pub fn fisher_exact(table: [[u64; 2]; 2], alternative: Alternative) -> Fisher {
    let [[a, b], [c, d]] = table;
    let odds_ratio = (a as f64 * d as f64) / (b as f64 * c as f64);
    let row1 = a + b;
    let col1 = a + c;
    let total = a + b + c + d;
    let lo = (row1 + col1).saturating_sub(total);
    let hi = row1.min(col1);
    // log weights of x = lo..=hi relative to x = lo, by the ratio
    // p(x+1)/p(x) = (col1−x)(row1−x) / ((x+1)(total−col1−row1+x+1)).
    let mut log_w = Vec::with_capacity((hi - lo + 1) as usize);
    let mut current = 0.0f64;
    log_w.push(current);
    for x in lo..hi {
        let num = (col1 - x) as f64 * (row1 - x) as f64;
        let den = (x + 1) as f64 * ((total + x + 1) - (col1 + row1)) as f64;
        current += (num / den).ln();
        log_w.push(current);
    }
    let max = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = log_w.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = w.iter().sum();
    let at = (a - lo) as usize;
    let p_value = match alternative {
        Alternative::Less => w[..=at].iter().sum::<f64>() / sum,
        Alternative::Greater => w[at..].iter().sum::<f64>() / sum,
        Alternative::TwoSided => {
            let limit = w[at] * (1.0 + 1e-7);
            w.iter().filter(|&&v| v <= limit).sum::<f64>() / sum
        }
    };
    Fisher {
        odds_ratio,
        p_value: p_value.clamp(0.0, 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_table_is_not_significant() {
        let f = fisher_exact([[5, 5], [5, 5]], Alternative::TwoSided);
        assert!((f.p_value - 1.0).abs() < 1e-12);
        assert_eq!(f.odds_ratio, 1.0);
    }

    #[test]
    fn one_sided_p_values_sum_to_one_plus_the_observed_probability() {
        let t = [[3, 17], [9, 11]];
        let g = fisher_exact(t, Alternative::Greater).p_value;
        let l = fisher_exact(t, Alternative::Less).p_value;
        let point = fisher_exact([[3, 17], [9, 11]], Alternative::Less).p_value
            - fisher_exact([[2, 18], [10, 10]], Alternative::Less).p_value;
        assert!((g + l - 1.0 - point).abs() < 1e-12);
    }

    #[test]
    fn zero_cells_are_handled() {
        let f = fisher_exact([[0, 10], [0, 10]], Alternative::TwoSided);
        assert_eq!(f.p_value, 1.0);
        assert!(f.odds_ratio.is_nan());
        let f = fisher_exact([[10, 0], [0, 10]], Alternative::Greater);
        assert!(f.odds_ratio.is_infinite());
        assert!(f.p_value < 1e-5);
    }
}
