//! Latency quantiles: decided by time-uniform quantile confidence sequences
//! (Howard & Ramdas) on each side's histogram.
//!
//! With `t` requests on a side, its true q-quantile lies within the empirical
//! quantiles at `q ± ε_t(α/2)` at every look (`stats::quantile_cs`); the
//! histogram's bucket edges keep the bounds conservative. Then
//! `delta ∈ [lo_c − hi_b, hi_c − lo_b]` at level 1 − α, for all looks at once.
//! The anytime-valid p-value of "canary worse beyond tolerance" is the
//! smallest α at which `lo_c > hi_b + max(rel·hi_b, abs)`.

use super::{Classification, Evaluated, MetricResult, Policy, Samples, Tolerance};
use crate::compare::Observations;
use crate::histogram::LogHistogram;
use crate::judge::policy::{Direction, MetricRule};
use crate::stats::quantile_cs::quantile_levels;

const NS_PER_MS: f64 = 1e6;

/// Bounds (ns) of a side's true q-quantile at level 1 − a, or None before `m` samples.
fn bounds(h: &LogHistogram, q: f64, m: u64, a: f64) -> Option<(f64, f64)> {
    let (lo, hi) = quantile_levels(q, h.count(), m, a)?;
    h.quantile_bounds(lo, hi)
}

pub(super) fn evaluate(policy: &Policy, rule: &MetricRule, obs: &Observations) -> Evaluated {
    let q = rule.quantile.unwrap_or(0.5);
    let (b, c) = (&obs.baseline.total.latency, &obs.canary.total.latency);
    let m = rule.min_samples;
    let abs_ns = rule.tolerance_absolute * NS_PER_MS;
    let rel = rule.tolerance_relative;
    let qb = b.quantile(q);
    let qc = c.quantile(q);
    let delta = qb.zip(qc).map(|(b, c)| c - b);
    let mut result = MetricResult {
        name: rule.name.clone(),
        kind: rule.kind,
        direction: rule.direction,
        unit: "ms",
        baseline: qb.map(|v| v / NS_PER_MS),
        canary: qc.map(|v| v / NS_PER_MS),
        delta: delta.map(|d| d / NS_PER_MS),
        relative_delta: qb.zip(delta).and_then(|(b, d)| (b > 0.0).then(|| d / b)),
        ci: None,
        ci_method: "time-uniform DKW quantile confidence sequences (Howard & Ramdas 2022), per side at alpha/2",
        test: "anytime-valid quantile confidence sequence",
        p_value: None,
        adjusted_p_value: None,
        classification: Classification::Inconclusive,
        samples: Samples { baseline: b.count(), canary: c.count() },
        tolerance: Tolerance { relative: rel, absolute: rule.tolerance_absolute },
        critical: rule.critical,
        weight: rule.weight,
        reason: String::new(),
        details: Default::default(),
    };
    let enough = b.count() >= m && c.count() >= m;
    if !enough {
        return Evaluated {
            result,
            practically_worse: false,
            bounded: false,
        };
    }
    let tol = |base: f64| (rel * base).max(abs_ns);
    // Rejects "not worse beyond tolerance" in `direction` at level a.
    let worse = |direction: Direction, a: f64| -> bool {
        let (Some((lo_b, hi_b)), Some((lo_c, hi_c))) =
            (bounds(b, q, m, a / 2.0), bounds(c, q, m, a / 2.0))
        else {
            return false;
        };
        match direction {
            Direction::Decrease => hi_c < lo_b - tol(lo_b),
            _ => lo_c > hi_b + tol(hi_b),
        }
    };
    let p_of = |d: Direction| smallest_rejecting_alpha(|a| worse(d, a));
    let p = match rule.direction {
        Direction::Either => {
            (2.0 * p_of(Direction::Increase).min(p_of(Direction::Decrease))).min(1.0)
        }
        d => p_of(d),
    };
    result.p_value = Some(p);
    let (Some((lo_b, hi_b)), Some((lo_c, hi_c))) = (
        bounds(b, q, m, policy.alpha / 2.0),
        bounds(c, q, m, policy.alpha / 2.0),
    ) else {
        return Evaluated {
            result,
            practically_worse: false,
            bounded: false,
        };
    };
    let (d_lo, d_hi) = (lo_c - hi_b, hi_c - lo_b);
    let finite = |v: f64| v.is_finite().then_some(v / NS_PER_MS);
    result.ci = Some([finite(d_lo), finite(d_hi)]);
    let base = qb.unwrap_or(0.0);
    let (up_ok, down_ok) = (d_hi <= tol(base), d_lo >= -tol(base));
    let bounded = match rule.direction {
        Direction::Increase => up_ok,
        Direction::Decrease => down_ok,
        Direction::Either => up_ok && down_ok,
    };
    let d = delta.unwrap_or(0.0);
    let practically_worse = match rule.direction {
        Direction::Increase => d > tol(base),
        Direction::Decrease => -d > tol(base),
        Direction::Either => d.abs() > tol(base),
    };
    for (key, v) in [
        ("baseline_bounds_ms", (lo_b, hi_b)),
        ("canary_bounds_ms", (lo_c, hi_c)),
    ] {
        result
            .details
            .insert(key.into(), serde_json::json!([finite(v.0), finite(v.1)]));
    }
    Evaluated {
        result,
        practically_worse,
        bounded,
    }
}

/// The smallest α in [1e-15, 1) at which `reject(α)` holds, given that
/// rejection gets easier as α grows (narrower bands); 1 when it never holds.
pub(super) fn smallest_rejecting_alpha(reject: impl Fn(f64) -> bool) -> f64 {
    const TOP: f64 = 0.999_999;
    const FLOOR: f64 = 1e-15;
    if !reject(TOP) {
        return 1.0;
    }
    if reject(FLOOR) {
        return FLOOR;
    }
    let (mut no, mut yes) = (FLOOR.ln(), TOP.ln());
    for _ in 0..60 {
        let mid = (no + yes) / 2.0;
        if reject(mid.exp()) {
            yes = mid;
        } else {
            no = mid;
        }
    }
    yes.exp()
}
