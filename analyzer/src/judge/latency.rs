//! Quantiles — of span latency, of an OTLP histogram metric, of gauge
//! points — decided by time-uniform quantile confidence sequences (Howard &
//! Ramdas, fixed-quantile beta-binomial form) on each side's histogram.
//!
//! With `t` values on a side, its true q-quantile lies between the order
//! statistics of the ranks given by `stats::quantile_cs::rank_bounds` at
//! level `1 − α/2`, at every look; each bucket's exact smallest and largest
//! values keep the bounds conservative. Then
//! `delta ∈ [lo_c − hi_b, hi_c − lo_b]` at level 1 − α, for all looks at once.
//! The anytime-valid p-value of "canary worse beyond tolerance" is the
//! smallest α at which `lo_c > hi_b + max(rel·hi_b, abs)`.

use super::{Classification, Evaluated, MetricResult, Policy, Samples, Tolerance};
use crate::compare::{BucketedValues, Observations};
use crate::judge::policy::{Direction, MetricKind, MetricRule};
use crate::stats::quantile_cs::rank_bounds;

const NS_PER_MS: f64 = 1e6;

/// Bounds (native unit) of a side's true q-quantile at level 1 − a, valid
/// at every look: the low view's lower bound, the high view's upper bound.
/// `k` is the prior concentration of the beta-binomial mixture.
fn bounds(v: &BucketedValues, q: f64, k: f64, a: f64) -> Option<(f64, f64)> {
    let (lo, hi) = rank_bounds(q, v.count(), a, k)?;
    let low = v.low.rank_bounds(lo, hi)?.0;
    let high = v.high.rank_bounds(lo, hi)?.1;
    let high = if high >= crate::compare::otlp_unbounded() {
        f64::INFINITY
    } else {
        high
    };
    Some((low, high))
}

pub(super) fn evaluate(policy: &Policy, rule: &MetricRule, obs: &Observations) -> Evaluated {
    if rule.kind == MetricKind::Latency {
        let (b, c) = (&obs.baseline.total.latency, &obs.canary.total.latency);
        return quantile(
            policy,
            rule,
            &BucketedValues::exact(b),
            &BucketedValues::exact(c),
            NS_PER_MS,
            "ms".into(),
        );
    }
    let name = rule.metric.as_deref().unwrap_or_default();
    let empty = Default::default();
    let (b, c) = (obs.baseline.metrics.get(name), obs.canary.metrics.get(name));
    let unit = b.or(c).map(|m| m.unit.clone()).unwrap_or_default();
    let values = |m: Option<&crate::compare::MetricSide>| m.map_or(&empty, |m| &m.values).clone();
    let mut e = quantile(policy, rule, &values(b), &values(c), 1.0, unit);
    // Values below zero would be read as zero: such a metric is not judged
    // (its classification says why).
    let negative = |m: Option<&crate::compare::MetricSide>| m.map_or(0, |m| m.negative);
    let (nb, nc) = (negative(b), negative(c));
    if nb + nc > 0 {
        e.result.p_value = None;
        e.result.ci = None;
        e.result.detectable_change = None;
        e.practically_worse = false;
        e.bounded = false;
        e.more_needed = None;
        e.result.details.insert(
            "negative_points".into(),
            serde_json::json!({"baseline": nb, "canary": nc}),
        );
    }
    e
}

/// `scale`: native units per reported unit (1e6 for ns → ms).
fn quantile(
    policy: &Policy,
    rule: &MetricRule,
    b: &BucketedValues,
    c: &BucketedValues,
    scale: f64,
    unit: String,
) -> Evaluated {
    let q = rule.quantile.unwrap_or(0.5);
    let m = rule.min_samples;
    let k = policy.prior_concentration;
    let abs_ns = rule.tolerance_absolute * scale;
    let rel = rule.tolerance_relative;
    let qb = b.mid.quantile(q);
    let qc = c.mid.quantile(q);
    let delta = qb.zip(qc).map(|(b, c)| c - b);
    let mut result = MetricResult {
        name: rule.name.clone(),
        kind: rule.kind,
        direction: rule.direction,
        unit,
        baseline: qb.map(|v| v / scale),
        canary: qc.map(|v| v / scale),
        delta: delta.map(|d| d / scale),
        relative_delta: qb.zip(delta).and_then(|(b, d)| (b > 0.0).then(|| d / b)),
        ci: None,
        ci_method: "beta-binomial quantile confidence sequences (Howard & Ramdas 2022), per side at alpha/2",
        test: "anytime-valid quantile confidence sequence",
        p_value: None,
        adjusted_p_value: None,
        classification: Classification::Inconclusive,
        detectable_change: None,
        pass_margin: rule.pass_margin(),
        samples: Samples { baseline: b.count(), canary: c.count() },
        tolerance: Tolerance { relative: rel, absolute: rule.tolerance_absolute },
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
    let enough = b.count() >= m && c.count() >= m;
    if !enough {
        return Evaluated {
            result,
            practically_worse: false,
            bounded: false,
            more_needed: None,
        };
    }
    let tol = |base: f64| (rel * base).max(abs_ns);
    // Rejects "not worse beyond tolerance" in `direction` at level a.
    let worse = |direction: Direction, a: f64| -> bool {
        let (Some((lo_b, hi_b)), Some((lo_c, hi_c))) =
            (bounds(b, q, k, a / 2.0), bounds(c, q, k, a / 2.0))
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
        bounds(b, q, k, policy.alpha / 2.0),
        bounds(c, q, k, policy.alpha / 2.0),
    ) else {
        return Evaluated {
            result,
            practically_worse: false,
            bounded: false,
            more_needed: None,
        };
    };
    let (d_lo, d_hi) = (lo_c - hi_b, hi_c - lo_b);
    let finite = |v: f64| v.is_finite().then_some(v / scale);
    result.ci = Some([finite(d_lo), finite(d_hi)]);
    let base = qb.unwrap_or(0.0);
    let margin = (result.pass_margin * base).max(abs_ns);
    let (up_ok, down_ok) = (d_hi <= margin, d_lo >= -margin);
    let bounded = match rule.direction {
        Direction::Increase => up_ok,
        Direction::Decrease => down_ok,
        Direction::Either => up_ok && down_ok,
    };
    let excess = match rule.direction {
        Direction::Increase => d_hi,
        Direction::Decrease => -d_lo,
        Direction::Either => d_hi.max(-d_lo),
    };
    result.detectable_change = (base > 0.0 && excess.is_finite()).then(|| excess / base);
    let n = b.count().min(c.count());
    let more_needed = if bounded {
        None
    } else if !excess.is_finite() {
        Some(until_bounded(q, n, k, policy.alpha / 2.0))
    } else {
        let d = delta.unwrap_or(0.0);
        let point = match rule.direction {
            Direction::Decrease => -d,
            Direction::Either => d.abs(),
            Direction::Increase => d,
        };
        more_for_width(n, excess - point, margin - point)
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
        more_needed,
    }
}

/// More observations per side (beyond `n`) before the `q`-quantile has an
/// upper bound at level `1 − a`.
fn until_bounded(q: f64, n: u64, k: f64, a: f64) -> u64 {
    let has_upper = |t: u64| rank_bounds(q, t, a, k).is_some_and(|(_, hi)| hi <= t);
    let (mut no, mut yes) = (n.max(1), n.max(1) * 2);
    while !has_upper(yes) {
        no = yes;
        yes = yes.saturating_mul(2);
        if yes > 1 << 40 {
            return yes - n;
        }
    }
    while yes - no > 1 {
        let mid = no + (yes - no) / 2;
        if has_upper(mid) {
            yes = mid
        } else {
            no = mid
        }
    }
    yes.saturating_sub(n)
}

/// More observations per side (beyond `n`) for an interval whose half-width
/// beyond the estimate is `width` to shrink to `room`, with the width
/// falling like 1/√n; `None` when the estimate itself is beyond the margin.
pub(super) fn more_for_width(n: u64, width: f64, room: f64) -> Option<u64> {
    if !(room > 0.0 && width > 0.0 && width.is_finite()) {
        return None;
    }
    let total = n as f64 * (width / room).powi(2);
    (total.is_finite() && total < 1e15).then(|| (total - n as f64).max(1.0).ceil() as u64)
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
