//! Statistical tests used to compare a canary with its baseline.
//!
//! Every function here is pure and checked against SciPy reference values
//! (`tests/stats_vectors.rs`, data from `shared/reference/stats-vectors.json`).
//!
//! | module | what | used for |
//! |---|---|---|
//! | [`mann_whitney`] | Mann–Whitney U: exact (no ties), normal with tie and continuity correction, on aligned histograms | latency distributions (report) |
//! | [`hodges_lehmann`] | median of pairwise differences + exact / asymptotic interval, without materialising m·n | latency shift (report) |
//! | [`fisher`] | Fisher's exact test on a 2×2 table | error counts (report) |
//! | [`proportions`] | two-proportion z test, Newcombe interval | error rates (report) |
//! | [`welch`] | Welch's t test | log-latency and metric means (report) |
//! | [`adjust`] | Holm and Benjamini–Hochberg adjustments | several metrics at once |
//! | [`sequential`] | Lindon & Malek Dirichlet–multinomial test, rate-ratio confidence sequence | error and request counts (decisions, SRM guard) |
//! | [`quantile_cs`] | Howard & Ramdas time-uniform DKW band → quantile confidence sequences | latency quantiles (decisions) |
//!
//! "Report" tests are fixed-horizon: their p-values are valid for one look
//! only. Decisions use the anytime-valid ones, which stay valid when a
//! rollout controller asks every few seconds.

pub mod adjust;
pub mod fisher;
pub mod hodges_lehmann;
pub mod mann_whitney;
pub mod proportions;
pub mod quantile_cs;
pub mod sequential;
pub mod welch;

use serde::Serialize;

/// Which way the alternative hypothesis points, for the first sample
/// relative to the second (SciPy's `alternative`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alternative {
    TwoSided,
    /// The first sample tends to be smaller.
    Less,
    /// The first sample tends to be larger.
    Greater,
}

/// Upper tail of the standard normal distribution, accurate in the far tail.
pub(crate) fn normal_sf(z: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(z / std::f64::consts::SQRT_2)
}

/// Quantile of the standard normal distribution.
pub(crate) fn normal_quantile(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(p)
}

/// p-value of a z statistic for the given alternative.
pub(crate) fn z_p_value(z: f64, alternative: Alternative) -> f64 {
    let p = match alternative {
        Alternative::Greater => normal_sf(z),
        Alternative::Less => normal_sf(-z),
        Alternative::TwoSided => 2.0 * normal_sf(z.abs()),
    };
    p.clamp(0.0, 1.0)
}
