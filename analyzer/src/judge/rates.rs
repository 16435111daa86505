//! Error rates and log-error rates: decided by the Dirichlet–multinomial
//! count test of Lindon & Malek on the errors, with each side's share of
//! requests as exposure.
//!
//! Under "the canary's rate is at most (1 + tolerance) times the
//! baseline's", an error falls on the canary with probability at most
//! `ρ₀ = share_for_ratio(1 + rel, ρ)`, where ρ is the canary's share of
//! requests; the one-sided test against ρ₀ gives an anytime-valid p-value.
//! Assumption: errors are Poisson events whose rate per request is constant
//! within a side; ρ is the observed request share (its sampling error is of
//! order 1/√requests, far below the 1/√errors resolution of the test).
//! The rate ratio's confidence sequence inverts the two-sided test.

use super::{Classification, Evaluated, MetricResult, Policy, Samples, Tolerance};
use crate::compare::Observations;
use crate::judge::policy::{Direction, MetricKind, MetricRule};
use crate::stats::sequential::{
    dirichlet_multinomial_mixture, rate_ratio_confidence_sequence_mixture, share_for_ratio,
};
use crate::stats::Alternative;

pub(super) fn evaluate(policy: &Policy, rule: &MetricRule, obs: &Observations) -> Evaluated {
    let (nb, nc) = (obs.baseline.total.requests, obs.canary.total.requests);
    let increments = |s: &crate::compare::Side| {
        s.metrics
            .get(rule.metric.as_deref().unwrap_or_default())
            .map_or(0, |m| m.increments.max(0.0).round() as u64)
    };
    let (eb, ec) = match rule.kind {
        MetricKind::LogErrorRate => (obs.baseline.log_errors, obs.canary.log_errors),
        MetricKind::MetricCounter => (increments(&obs.baseline), increments(&obs.canary)),
        _ => (obs.baseline.total.errors, obs.canary.total.errors),
    };
    let rate = |e: u64, n: u64| (n > 0).then(|| e as f64 / n as f64);
    let (rb, rc) = (rate(eb, nb), rate(ec, nc));
    let delta = rb.zip(rc).map(|(b, c)| c - b);
    let (rel, abs) = (rule.tolerance_relative, rule.tolerance_absolute);
    let mut result = MetricResult {
        name: rule.name.clone(),
        kind: rule.kind,
        direction: rule.direction,
        unit: match rule.kind {
            MetricKind::LogErrorRate => "error logs per request".into(),
            MetricKind::MetricCounter => {
                format!("{} per request", rule.metric.as_deref().unwrap_or_default())
            }
            _ => "errors per request".into(),
        },
        baseline: rb,
        canary: rc,
        delta,
        relative_delta: rb.zip(delta).and_then(|(b, d)| (b > 0.0).then(|| d / b)),
        ci: None,
        ci_method: "anytime-valid rate-ratio confidence sequence times the baseline rate",
        test: "anytime-valid Dirichlet-multinomial count test (Lindon & Malek 2022), mixture over prior concentrations",
        p_value: None,
        adjusted_p_value: None,
        classification: Classification::Inconclusive,
        detectable_change: None,
        pass_margin: rule.pass_margin(),
        samples: Samples {
            baseline: nb,
            canary: nc,
        },
        tolerance: Tolerance {
            relative: rel,
            absolute: abs,
        },
        critical: rule.critical,
        weight: rule.weight,
        reason: String::new(),
        details: Default::default(),
    };
    if let Some(metric) = &rule.metric {
        result
            .details
            .insert("metric".into(), serde_json::json!(metric));
    }
    if nb < rule.min_samples || nc < rule.min_samples {
        return Evaluated {
            result,
            practically_worse: false,
            bounded: false,
            more_needed: None,
        };
    }
    let mix: Vec<(f64, f64)> = policy
        .count_prior_mixture
        .iter()
        .map(|c| (c.k, c.weight))
        .collect();
    let rho = nc as f64 / (nb + nc) as f64;
    let test = |ratio: f64, alt: Alternative| {
        let share = share_for_ratio(ratio.max(1e-9), rho).clamp(1e-12, 1.0 - 1e-12);
        dirichlet_multinomial_mixture(ec, eb, share, &mix, alt).map_or(1.0, |t| t.p_value)
    };
    let p_up = || test(1.0 + rel, Alternative::Greater);
    let p_down = || test(1.0 - rel, Alternative::Less);
    result.p_value = Some(match rule.direction {
        Direction::Increase => p_up(),
        Direction::Decrease => p_down(),
        Direction::Either => (2.0 * p_up().min(p_down())).min(1.0),
    });
    let (lo, hi) = rate_ratio_confidence_sequence_mixture(ec, eb, rho, &mix, policy.alpha)
        .unwrap_or((0.0, f64::INFINITY));
    let finite = |v: f64| v.is_finite().then_some(v);
    let base = rb.unwrap_or(0.0);
    if base > 0.0 {
        result.ci = Some([finite(base * (lo - 1.0)), finite(base * (hi - 1.0))]);
    }
    result.details.insert(
        "rate_ratio".into(),
        serde_json::json!(rc.zip(rb).and_then(|(c, b)| finite(c / b))),
    );
    result.details.insert(
        "rate_ratio_ci".into(),
        serde_json::json!([finite(lo), finite(hi)]),
    );
    result.details.insert(
        "counts".into(),
        serde_json::json!({"baseline": eb, "canary": ec}),
    );
    let d = delta.unwrap_or(0.0);
    let practically_worse = match rule.direction {
        Direction::Increase => d > abs,
        Direction::Decrease => -d > abs,
        Direction::Either => d.abs() > abs,
    };
    // Bounds for the pass decision, each at alpha/2 (together at level
    // 1 − alpha): the rate ratio's confidence sequence times the baseline
    // rate, and — useful when the baseline has no errors — the canary's own
    // rate (the delta cannot exceed it), by the same mixture on errors
    // against the canary's other requests.
    let half = policy.alpha / 2.0;
    let (rlo, rhi) = rate_ratio_confidence_sequence_mixture(ec, eb, rho, &mix, half)
        .unwrap_or((0.0, f64::INFINITY));
    // Only errors are some of the requests: error logs and counter
    // increments can outnumber them, and then bound nothing here.
    let canary_hi = if rule.kind == MetricKind::ErrorRate && ec <= nc {
        let (_, odds_hi) = rate_ratio_confidence_sequence_mixture(ec, nc - ec, 0.5, &mix, half)
            .unwrap_or((0.0, f64::INFINITY));
        if odds_hi.is_finite() {
            odds_hi / (1.0 + odds_hi)
        } else {
            1.0
        }
    } else {
        f64::INFINITY
    };
    let times_base = |r: f64| {
        if base > 0.0 {
            base * (r - 1.0)
        } else {
            f64::INFINITY
        }
    };
    let up = times_base(rhi).min(canary_hi);
    let down = if base > 0.0 { base * (1.0 - rlo) } else { 0.0 };
    let excess = match rule.direction {
        Direction::Increase => up,
        Direction::Decrease => down,
        Direction::Either => up.max(down),
    };
    let margin = (result.pass_margin * base).max(abs);
    let bounded = excess <= margin;
    result.detectable_change = (base > 0.0 && excess.is_finite()).then(|| excess / base);
    if base == 0.0 && excess.is_finite() {
        result.details.insert(
            "detectable_change_absolute".into(),
            serde_json::json!(excess),
        );
    }
    let point = match rule.direction {
        Direction::Increase => d,
        Direction::Decrease => -d,
        Direction::Either => d.abs(),
    };
    let more_needed = if bounded {
        None
    } else {
        super::latency::more_for_width(nb.min(nc), excess - point, margin - point)
    };
    Evaluated {
        result,
        practically_worse,
        bounded,
        more_needed,
    }
}
