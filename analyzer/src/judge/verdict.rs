//! From metric classifications to one decision, with reasons.
//!
//! * `fail`: a critical metric fails, or failing metrics bring the score
//!   below `fail_below`.
//! * `inconclusive`: the request split does not match the configured canary
//!   weight (sample-ratio mismatch: the data cannot be trusted), or some
//!   critical metric is inconclusive or has no data, or no metric passes.
//!   Too little data is never pass and never fail.
//! * `pass`: every critical metric passes, at least one metric passes, and
//!   any failing metric is non-critical with the score at or above
//!   `fail_below`; unsettled non-critical metrics are listed.
//!
//! Score: 100 × weighted share of passing metrics.

use super::{Classification, MetricResult, Policy};
use crate::compare::Observations;
use crate::stats::sequential::dirichlet_multinomial;
use crate::stats::Alternative;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Pass,
    Fail,
    Inconclusive,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Pass => "pass",
            Decision::Fail => "fail",
            Decision::Inconclusive => "inconclusive",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub decision: Decision,
    pub score: f64,
    pub reasons: Vec<String>,
}

/// The sample-ratio-mismatch guard: the anytime-valid count test on
/// requests against the configured canary weight.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SampleRatio {
    pub expected_canary_share: f64,
    pub observed_canary_share: Option<f64>,
    pub p_value: f64,
    pub mismatch: bool,
}

pub(super) fn sample_ratio(policy: &Policy, weight: f64, obs: &Observations) -> SampleRatio {
    let (nb, nc) = (obs.baseline.total.requests, obs.canary.total.requests);
    let p_value = dirichlet_multinomial(
        nc,
        nb,
        weight,
        policy.prior_concentration,
        Alternative::TwoSided,
    )
    .map_or(1.0, |t| t.p_value);
    SampleRatio {
        expected_canary_share: weight,
        observed_canary_share: (nb + nc > 0).then(|| nc as f64 / (nb + nc) as f64),
        p_value,
        mismatch: p_value <= policy.srm_alpha,
    }
}

pub(super) fn decide(
    policy: &Policy,
    metrics: &[MetricResult],
    srm: Option<&SampleRatio>,
) -> Verdict {
    let total_weight: f64 = metrics.iter().map(|m| m.weight).sum();
    let passing: f64 = metrics
        .iter()
        .filter(|m| m.classification == Classification::Pass)
        .map(|m| m.weight)
        .sum();
    let score = if total_weight > 0.0 {
        100.0 * passing / total_weight
    } else {
        0.0
    };
    let score = (score * 10.0).round() / 10.0;
    let of = |c: Classification| metrics.iter().filter(move |m| m.classification == c);
    let critical_fail: Vec<&MetricResult> =
        of(Classification::Fail).filter(|m| m.critical).collect();
    let any_fail = of(Classification::Fail).next().is_some();
    let mut reasons = Vec::new();
    let decision = if !critical_fail.is_empty() {
        reasons.extend(critical_fail.iter().map(|m| m.reason.clone()));
        Decision::Fail
    } else if any_fail && score < policy.fail_below {
        reasons.push(format!(
            "score {score} is below {} with failing metrics",
            policy.fail_below
        ));
        reasons.extend(of(Classification::Fail).map(|m| m.reason.clone()));
        Decision::Fail
    } else if let Some(s) = srm.filter(|s| s.mismatch) {
        reasons.push(format!(
            "sample ratio mismatch: the canary has {} of the requests, {} expected (anytime-valid p = {}); the comparison cannot be trusted",
            s.observed_canary_share.map_or("none".into(), |v| format!("{:.2}%", 100.0 * v)),
            format_args!("{:.2}%", 100.0 * s.expected_canary_share),
            super::sig(s.p_value)
        ));
        Decision::Inconclusive
    } else if of(Classification::Pass).next().is_none()
        || metrics.iter().any(|m| {
            m.critical
                && matches!(
                    m.classification,
                    Classification::Nodata | Classification::Inconclusive
                )
        })
    {
        // A pass is earned by every critical metric, and by at least one
        // metric (a policy without critical metrics and without data is
        // not a pass); non-critical ones still unsettled are listed after
        // them.
        let unsettled = |m: &&MetricResult| {
            matches!(
                m.classification,
                Classification::Nodata | Classification::Inconclusive
            )
        };
        reasons.extend(
            metrics
                .iter()
                .filter(|m| m.critical)
                .filter(unsettled)
                .map(|m| m.reason.clone()),
        );
        reasons.extend(
            metrics
                .iter()
                .filter(|m| !m.critical)
                .filter(unsettled)
                .map(|m| m.reason.clone()),
        );
        Decision::Inconclusive
    } else {
        if any_fail {
            reasons.extend(of(Classification::Fail).map(|m| format!("non-critical: {}", m.reason)));
        }
        reasons.extend(of(Classification::Pass).map(|m| m.reason.clone()));
        Decision::Pass
    };
    Verdict {
        decision,
        score,
        reasons,
    }
}
