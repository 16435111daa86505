//! Comparison of a canary with its baseline for one service.
//!
//! ```text
//!  Selector (service, baseline, canary, by, window)
//!     │  observe.rs: one aggregate query over spans (latency buckets per operation) + one over logs
//!     ▼
//!  Observations ──► judge (policy): metrics, anytime-valid decisions, verdict
//!     │         └─► report.rs: single-look tests for humans (Mann–Whitney, Hodges–Lehmann, Welch, Fisher)
//!     ▼
//!  Comparison (the JSON of GET /api/v1/compare)
//! ```

mod buckets;
pub mod explain;
mod kayenta;
mod lanes;
mod observe;
mod otlp_metrics;
pub mod partials;
mod report;
pub mod scan;
mod selector;
pub mod source;

pub use kayenta::kayenta;
pub use lanes::{Contributor, LaneBreakdown, LaneLatency};
pub(crate) use observe::{floats_col, ints_col, strings_col};
pub use observe::{observe, values_seen, Observations, Side, Traffic, ENTRY_SPANS};
pub use otlp_metrics::{observe_metrics, BucketedValues, MetricSide};
pub use report::{OperationComparison, Report};
pub use scan::Accumulator;
pub use selector::{quote, time_window};
pub use selector::{By, Selector};

use crate::error::{Error, Result};
use crate::judge::{judge, Decision, Judgement, MetricResult, Policy, SampleRatio, Verdict};
use crate::sql::Tables;
use crate::store::Store;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The stand-in for "no upper edge" in OTLP buckets.
pub(crate) fn otlp_unbounded() -> f64 {
    otlp_metrics::UNBOUNDED
}

/// Latency summary of one side, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub mean: Option<f64>,
    /// Standard deviation, from the histogram's bucket representatives (≤ 1% error per value).
    pub std: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// What one side did in the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SideSummary {
    /// The value of the `by` column (a version, a role or a lane).
    pub version: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub latency_ms: LatencySummary,
    pub log_records: u64,
    pub log_errors: u64,
    /// Intervals at level 1 − alpha: quantiles by the anytime-valid
    /// confidence sequence, the mean by Student's t (one look), the error
    /// rate by Wilson's score interval (one look). `null` ends are unbounded.
    pub intervals: SideIntervals,
}

/// Confidence intervals of one side's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SideIntervals {
    pub p50_ms: Option<[Option<f64>; 2]>,
    pub p90_ms: Option<[Option<f64>; 2]>,
    pub p99_ms: Option<[Option<f64>; 2]>,
    pub mean_ms: Option<[f64; 2]>,
    pub error_rate: Option<[f64; 2]>,
}

impl SideIntervals {
    fn of(t: &Traffic, alpha: f64, k: f64) -> Self {
        use crate::stats::quantile_cs::rank_bounds;
        let n = t.latency.count();
        let quantile = |q: f64| {
            let (lo, hi) = rank_bounds(q, n, alpha, k)?;
            let (lo, hi) = t.latency.rank_bounds(lo, hi)?;
            let end = |v: f64| v.is_finite().then_some(v / 1e6);
            Some([end(lo), end(hi)])
        };
        let mean_ms = (n >= 2).then(|| {
            use statrs::distribution::{ContinuousCDF, StudentsT};
            let (mean, sd) = (
                t.latency.mean().unwrap_or(0.0),
                t.latency.std().unwrap_or(0.0),
            );
            let q = StudentsT::new(0.0, 1.0, (n - 1) as f64)
                .map_or(1.96, |d| d.inverse_cdf(1.0 - alpha / 2.0));
            let half = q * sd / (n as f64).sqrt();
            [(mean - half) / 1e6, (mean + half) / 1e6]
        });
        let z = crate::stats::normal_quantile(1.0 - alpha / 2.0);
        let error_rate = (t.requests > 0).then(|| {
            let (lo, hi) = crate::stats::proportions::wilson(t.errors, t.requests, z);
            [lo, hi]
        });
        SideIntervals {
            p50_ms: quantile(0.5),
            p90_ms: quantile(0.9),
            p99_ms: quantile(0.99),
            mean_ms,
            error_rate,
        }
    }
}

impl SideSummary {
    fn of(value: &str, side: &Side, alpha: f64, k: f64) -> Self {
        let t = &side.total;
        let ms = |v: Option<f64>| v.map(|ns| ns / 1e6);
        SideSummary {
            version: value.to_string(),
            requests: t.requests,
            errors: t.errors,
            error_rate: (t.requests > 0).then(|| t.errors as f64 / t.requests as f64),
            latency_ms: LatencySummary {
                p50: ms(t.latency.quantile(0.5)),
                p90: ms(t.latency.quantile(0.9)),
                p99: ms(t.latency.quantile(0.99)),
                mean: ms(t.latency.mean()),
                std: ms(t.latency.std()),
                min: ms(t.latency.min()),
                max: ms(t.latency.max()),
            },
            log_records: side.log_records,
            log_errors: side.log_errors,
            intervals: SideIntervals::of(t, alpha, k),
        }
    }
}

/// The window actually compared (`null` = unbounded).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// The full comparison: summaries, judged metrics, verdict and the
/// single-look report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub service: String,
    pub by: By,
    pub window: Window,
    pub policy: String,
    pub baseline: SideSummary,
    pub canary: SideSummary,
    pub metrics: Vec<MetricResult>,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<SampleRatio>,
    pub report: Report,
    pub operations: Vec<OperationComparison>,
    /// Attribute values and error signatures that hold the canary's excess
    /// errors or latency, best first (see [`explain`]).
    pub explanations: Vec<explain::Explanation>,
    /// `by = lane` only: colored against uncolored traces end to end, and the hops that account for the delta.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lanes: Option<LaneBreakdown>,
    /// In a cluster (`storage.url`): the rows other nodes acknowledged
    /// before this instant are included; this node's own are all included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// In a cluster: the nodes whose rows of the service are not stored yet
    /// while its traffic moves between nodes; the verdict is `inconclusive`
    /// until they are (see [`Store::waiting_for`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
}

/// Says how fresh `c` is in a cluster, and holds its verdict at
/// `inconclusive` while part of its window is still in other nodes' memory:
/// never a pass or a fail on partial data.
pub fn hold_until_covered(c: &mut Comparison, store: &Store) {
    c.as_of = store
        .as_of_ms()
        .and_then(chrono::DateTime::from_timestamp_millis);
    c.waiting_for = store.waiting_for(&c.service);
    if c.waiting_for.is_empty() {
        return;
    }
    let mut reasons = vec![format!(
        "{}'s traffic is new to this node or moving between nodes: {} may still hold rows of it not yet stored, \
         so the window is not covered; the verdict waits until they have stored them or report holding none \
         (about one flush interval)",
        c.service,
        c.waiting_for.join(", ")
    )];
    reasons.extend(
        c.verdict
            .reasons
            .drain(..)
            .map(|r| format!("on partial data: {r}")),
    );
    c.verdict.reasons = reasons;
    c.verdict.decision = Decision::Inconclusive;
}

/// Compares the two sides of `sel` under `policy`.
///
/// Errors: [`Error::Query`] for a malformed selector; [`Error::NotFound`]
/// when the service, or one side's value, was never seen at all (as opposed
/// to not seen in the window, which is a `nodata` metric).
pub async fn compare(tables: &Tables, sel: &Selector, policy: &Policy) -> Result<Comparison> {
    let problems = sel.problems();
    if !problems.is_empty() {
        return Err(Error::Query(problems.join("; ")));
    }
    let names: Vec<String> = policy
        .metrics
        .iter()
        .filter_map(|m| m.metric.clone())
        .collect();
    let obs = observe(tables, sel, &names, &policy.explain_attributes).await?;
    if obs.baseline.total.requests == 0 || obs.canary.total.requests == 0 {
        check_known(tables, sel).await?;
    }
    let mut c = assemble(sel, policy, &obs);
    hold_until_covered(&mut c, tables.store());
    if sel.by == By::Lane {
        c.lanes = Some(lanes::breakdown(tables, sel).await?);
    }
    Ok(c)
}

/// Judges observations that are already at hand (tests, simulations).
pub fn assemble(sel: &Selector, policy: &Policy, obs: &Observations) -> Comparison {
    let Judgement {
        metrics,
        verdict,
        sample_ratio,
    } = judge(policy, obs, (&sel.baseline, &sel.canary));
    Comparison {
        service: sel.service.clone(),
        by: sel.by,
        window: Window {
            from: sel.from,
            to: sel.to,
        },
        policy: policy.name.clone(),
        baseline: SideSummary::of(
            &sel.baseline,
            &obs.baseline,
            policy.alpha,
            policy.prior_concentration,
        ),
        canary: SideSummary::of(
            &sel.canary,
            &obs.canary,
            policy.alpha,
            policy.prior_concentration,
        ),
        metrics,
        verdict,
        sample_ratio,
        report: report::report(obs, policy.alpha),
        operations: report::operations(obs, 20),
        explanations: explain::explain(obs, policy.alpha, 10),
        lanes: None,
        as_of: None,
        waiting_for: Vec::new(),
    }
}

async fn check_known(tables: &Tables, sel: &Selector) -> Result<()> {
    let seen = values_seen(tables, &sel.service, sel.by).await?;
    if seen.is_empty() {
        return Err(Error::NotFound(format!(
            "no requests from service {:?} in the store",
            sel.service
        )));
    }
    let known: Vec<&str> = seen.iter().map(|(v, _)| v.as_str()).collect();
    let unknown: Vec<&str> = [&sel.baseline, &sel.canary]
        .into_iter()
        .map(String::as_str)
        .filter(|v| !known.contains(v))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::NotFound(format!(
        "service {:?} has no {} {}; seen: {}",
        sel.service,
        sel.by.as_str(),
        unknown
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(" or "),
        seen.iter()
            .map(|(v, n)| format!("{v:?} ({n} requests)"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}
