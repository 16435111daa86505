//! Welch's unequal-variances t test, as SciPy's `ttest_ind(equal_var=False)`.
//!
//! Assumptions: independent samples from roughly normal distributions (apply
//! it to log-latency, not raw latency, whose tail is heavy); variances may
//! differ. Degrees of freedom by Welch–Satterthwaite.

use super::Alternative;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};
use statrs::function::beta::beta_reg;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Welch {
    pub t: f64,
    pub df: f64,
    pub p_value: f64,
    /// `mean(x) − mean(y)`.
    pub mean_difference: f64,
    /// Confidence interval for the difference of means.
    pub ci: (f64, f64),
}

/// Summary statistics of one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments {
    pub n: f64,
    pub mean: f64,
    /// Unbiased variance (n − 1 in the denominator).
    pub variance: f64,
}

impl Moments {
    pub fn of(values: &[f64]) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        Self { n, mean, variance }
    }
}

/// Welch's t test of raw samples; `None` with fewer than two values in a sample.
pub fn welch(x: &[f64], y: &[f64], alternative: Alternative, confidence: f64) -> Option<Welch> {
    if x.len() < 2 || y.len() < 2 {
        return None;
    }
    welch_from_moments(Moments::of(x), Moments::of(y), alternative, confidence)
}

/// Welch's t test from summary statistics (so histograms can feed it).
pub fn welch_from_moments(
    x: Moments,
    y: Moments,
    alternative: Alternative,
    confidence: f64,
) -> Option<Welch> {
    if x.n < 2.0 || y.n < 2.0 {
        return None;
    }
    let (vx, vy) = (x.variance / x.n, y.variance / y.n);
    let se2 = vx + vy;
    if se2 <= 0.0 || !se2.is_finite() {
        return None;
    }
    let mean_difference = x.mean - y.mean;
    let t = mean_difference / se2.sqrt();
    let df = se2 * se2 / (vx * vx / (x.n - 1.0) + vy * vy / (y.n - 1.0));
    // Tails through the regularized incomplete beta: P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2).
    let two_tail = beta_reg(df / 2.0, 0.5, df / (df + t * t));
    let lower_tail = if t < 0.0 {
        two_tail / 2.0
    } else {
        1.0 - two_tail / 2.0
    };
    let p_value = match alternative {
        Alternative::TwoSided => two_tail,
        Alternative::Less => lower_tail,
        Alternative::Greater => {
            if t > 0.0 {
                two_tail / 2.0
            } else {
                1.0 - two_tail / 2.0
            }
        }
    };
    let q = StudentsT::new(0.0, 1.0, df)
        .ok()?
        .inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    let half = q * se2.sqrt();
    Some(Welch {
        t,
        df,
        p_value: p_value.clamp(0.0, 1.0),
        mean_difference,
        ci: (mean_difference - half, mean_difference + half),
    })
}
