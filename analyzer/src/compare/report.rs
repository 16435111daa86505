//! Single-look tests for humans: how the distributions differ, with the
//! classic tests. Their p-values hold for one look only; decisions use the
//! anytime-valid tests of the judge.

use super::observe::{Observations, Traffic};
use crate::stats::adjust::benjamini_hochberg;
use crate::stats::fisher::fisher_exact;
use crate::stats::hodges_lehmann::hodges_lehmann;
use crate::stats::mann_whitney::mann_whitney_binned;
use crate::stats::proportions::two_proportions;
use crate::stats::welch::{welch_from_moments, Moments};
use crate::stats::Alternative;
use serde::Serialize;
use serde_json::{json, Value};

/// Canary versus baseline with fixed-horizon tests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub note: &'static str,
    /// Mann–Whitney U on the latency histograms (buckets as tie groups), two-sided; U of the canary.
    pub mann_whitney: Option<Value>,
    /// Hodges–Lehmann shift canary − baseline in ms, with interval.
    pub hodges_lehmann_ms: Option<Value>,
    /// Welch's t test on ln(latency): ratio of geometric means canary / baseline.
    pub log_latency_welch: Option<Value>,
    /// Fisher's exact test on errors (canary row first): odds ratio and p-value.
    pub fisher_errors: Option<Value>,
    /// Two-proportion z test and Newcombe interval for the error-rate difference.
    pub error_rate_difference: Option<Value>,
}

pub(super) fn report(obs: &Observations, alpha: f64) -> Report {
    let (b, c) = (&obs.baseline.total, &obs.canary.total);
    let confidence = 1.0 - alpha;
    let (cb, cc, _) = c.latency.aligned(&b.latency);
    let mann_whitney = mann_whitney_binned(&cb, &cc, Alternative::TwoSided, true)
        .ok()
        .map(|r| json!({"u": r.u, "p_value": r.p_value, "n_canary": r.n_x, "n_baseline": r.n_y}));
    let hodges_lehmann_ms = hodges_lehmann(&c.latency.weighted(), &b.latency.weighted(), confidence)
        .map(|s| json!({"estimate": s.estimate / 1e6, "ci": [s.ci.0 / 1e6, s.ci.1 / 1e6], "confidence": confidence}));
    let log_latency_welch =
        welch_from_moments(moments(c), moments(b), Alternative::TwoSided, confidence).map(|w| {
            json!({
                "ratio_of_geometric_means": w.mean_difference.exp(),
                "ci": [w.ci.0.exp(), w.ci.1.exp()],
                "t": w.t, "df": w.df, "p_value": w.p_value,
            })
        });
    let fisher_errors = (b.requests > 0 && c.requests > 0).then(|| {
        let f = fisher_exact(
            [[c.errors, c.requests - c.errors], [b.errors, b.requests - b.errors]],
            Alternative::TwoSided,
        );
        json!({"odds_ratio": f.odds_ratio.is_finite().then_some(f.odds_ratio), "p_value": f.p_value})
    });
    let error_rate_difference =
        two_proportions(c.errors, c.requests, b.errors, b.requests, Alternative::TwoSided, confidence)
            .map(|r| json!({"difference": r.difference, "ci": [r.ci.0, r.ci.1], "z": r.z.is_finite().then_some(r.z), "p_value": r.p_value}));
    Report {
        note: "single-look tests, valid for one look only; decisions use the anytime-valid tests of `metrics`",
        mann_whitney,
        hodges_lehmann_ms,
        log_latency_welch,
        fisher_errors,
        error_rate_difference,
    }
}

fn moments(t: &Traffic) -> Moments {
    let n = t.ln_count as f64;
    let mean = if n > 0.0 { t.ln_sum / n } else { 0.0 };
    let variance = if n > 1.0 {
        ((t.ln_sq_sum - n * mean * mean) / (n - 1.0)).max(0.0)
    } else {
        0.0
    };
    Moments { n, mean, variance }
}

/// Per-operation view of one side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OperationSide {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One operation (span name) compared across sides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OperationComparison {
    pub name: String,
    pub baseline: OperationSide,
    pub canary: OperationSide,
    pub p50_delta_ms: Option<f64>,
    /// Mann–Whitney (single look) on the operation's latency.
    pub mann_whitney_p: Option<f64>,
    /// Benjamini–Hochberg over the operations listed.
    pub adjusted_p_value: Option<f64>,
}

fn side(t: Option<&Traffic>) -> OperationSide {
    let empty = Traffic::default();
    let t = t.unwrap_or(&empty);
    OperationSide {
        requests: t.requests,
        errors: t.errors,
        error_rate: (t.requests > 0).then(|| t.errors as f64 / t.requests as f64),
        p50_ms: t.latency.quantile(0.5).map(|v| v / 1e6),
        p99_ms: t.latency.quantile(0.99).map(|v| v / 1e6),
    }
}

/// The `limit` busiest operations, busiest first.
pub(super) fn operations(obs: &Observations, limit: usize) -> Vec<OperationComparison> {
    let mut names: Vec<(&String, u64)> = obs
        .baseline
        .operations
        .keys()
        .chain(obs.canary.operations.keys())
        .map(|n| {
            let count = |s: &super::Side| s.operations.get(n).map_or(0, |t| t.requests);
            (n, count(&obs.baseline) + count(&obs.canary))
        })
        .collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    names.dedup_by(|a, b| a.0 == b.0);
    names.truncate(limit);
    let mut out: Vec<OperationComparison> = names
        .into_iter()
        .map(|(name, _)| {
            let (b, c) = (
                obs.baseline.operations.get(name),
                obs.canary.operations.get(name),
            );
            let (b, c) = (side(b), side(c));
            let mwu = match (
                obs.baseline.operations.get(name),
                obs.canary.operations.get(name),
            ) {
                (Some(tb), Some(tc)) => {
                    let (cc, cb, _) = tc.latency.aligned(&tb.latency);
                    mann_whitney_binned(&cc, &cb, Alternative::TwoSided, true)
                        .ok()
                        .map(|r| r.p_value)
                }
                _ => None,
            };
            OperationComparison {
                name: name.clone(),
                p50_delta_ms: c.p50_ms.zip(b.p50_ms).map(|(c, b)| c - b),
                baseline: b,
                canary: c,
                mann_whitney_p: mwu,
                adjusted_p_value: None,
            }
        })
        .collect();
    let idx: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].mann_whitney_p.is_some())
        .collect();
    let raw: Vec<f64> = idx.iter().filter_map(|&i| out[i].mann_whitney_p).collect();
    for (&i, adj) in idx.iter().zip(benjamini_hochberg(&raw)) {
        out[i].adjusted_p_value = Some(adj);
    }
    out
}
