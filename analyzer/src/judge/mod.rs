//! The judge: a policy turns two sides' observations into per-metric
//! classifications and one verdict, each with the evidence behind it.
//!
//! ```text
//!  Observations ──► latency.rs / rates.rs: estimate, interval, anytime-valid p per metric
//!                        ▼
//!                  Holm over the metrics' p-values (family-wise error ≤ alpha at any look)
//!                        ▼
//!                  classify: pass | fail | inconclusive | nodata, with a reason
//!                        ▼
//!                  verdict.rs: sample-ratio guard, critical metrics, score → pass | fail | inconclusive
//! ```

mod latency;
pub mod policy;
mod rates;
mod verdict;

pub use policy::{Direction, MetricKind, MetricRule, Policy};
pub use verdict::{Decision, SampleRatio, Verdict};

use crate::compare::Observations;
use crate::stats::adjust::holm;
use serde::Serialize;

/// How one metric came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Pass,
    Fail,
    Inconclusive,
    /// A side has no requests at all.
    Nodata,
}

/// Requests per side.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Samples {
    pub baseline: u64,
    pub canary: u64,
}

/// Tolerance of a metric, as configured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerance {
    pub relative: f64,
    pub absolute: f64,
}

/// One metric's evidence and classification. Intervals use `null` for an
/// unbounded end.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricResult {
    pub name: String,
    pub kind: MetricKind,
    pub direction: Direction,
    /// Unit of `baseline`, `canary`, `delta` and `ci`.
    pub unit: String,
    pub baseline: Option<f64>,
    pub canary: Option<f64>,
    pub delta: Option<f64>,
    pub relative_delta: Option<f64>,
    /// Interval for `delta` at level 1 − alpha.
    pub ci: Option<[Option<f64>; 2]>,
    /// How `ci` was obtained.
    pub ci_method: &'static str,
    /// The decision test.
    pub test: &'static str,
    /// The smallest relative regression the data would reject now: the
    /// upper end of the delta's interval over the baseline (for direction
    /// `decrease`, the lower end; `either`, the larger); `None` while unbounded.
    pub detectable_change: Option<f64>,
    /// The relative regression the interval must exclude to pass.
    pub pass_margin: f64,
    /// Anytime-valid p-value of "worse beyond tolerance" (None before min_samples).
    pub p_value: Option<f64>,
    /// Holm-adjusted over the policy's metrics.
    pub adjusted_p_value: Option<f64>,
    pub classification: Classification,
    pub samples: Samples,
    pub tolerance: Tolerance,
    pub critical: bool,
    pub weight: f64,
    /// One sentence a human can act on.
    pub reason: String,
    /// Extra evidence specific to the kind (rate ratio and its confidence sequence…).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// The judged comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judgement {
    pub metrics: Vec<MetricResult>,
    pub verdict: Verdict,
    /// Present when the policy names the expected canary traffic share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<SampleRatio>,
}

/// A metric after estimation, before the multiplicity correction.
pub(crate) struct Evaluated {
    pub result: MetricResult,
    /// Decides `fail` once the adjusted p-value is at most alpha and the
    /// effect is beyond tolerance (`practically_worse`).
    pub practically_worse: bool,
    /// Whether the interval rules out a regression beyond the pass margin.
    pub bounded: bool,
    /// When not bounded: about how many more requests per side would bound
    /// it, if that can be estimated.
    pub more_needed: Option<u64>,
}

/// Judges the observations under the policy.
pub fn judge(policy: &Policy, obs: &Observations, labels: (&str, &str)) -> Judgement {
    let mut evaluated: Vec<Evaluated> = policy
        .metrics
        .iter()
        .map(|rule| match rule.kind {
            MetricKind::Latency | MetricKind::MetricHistogram | MetricKind::MetricGauge => {
                latency::evaluate(policy, rule, obs)
            }
            MetricKind::ErrorRate | MetricKind::LogErrorRate | MetricKind::MetricCounter => {
                rates::evaluate(policy, rule, obs)
            }
        })
        .collect();
    // Holm over the metrics that could be tested at this look.
    let tested: Vec<usize> = (0..evaluated.len())
        .filter(|&i| evaluated[i].result.p_value.is_some())
        .collect();
    let raw: Vec<f64> = tested
        .iter()
        .map(|&i| evaluated[i].result.p_value.unwrap_or(1.0))
        .collect();
    for (&i, adj) in tested.iter().zip(holm(&raw)) {
        evaluated[i].result.adjusted_p_value = Some(adj);
    }
    for e in &mut evaluated {
        classify(policy, e, labels);
    }
    let metrics: Vec<MetricResult> = evaluated.into_iter().map(|e| e.result).collect();
    let sample_ratio = policy
        .canary_weight
        .map(|w| verdict::sample_ratio(policy, w, obs));
    let verdict = verdict::decide(policy, &metrics, sample_ratio.as_ref());
    Judgement {
        metrics,
        verdict,
        sample_ratio,
    }
}

fn classify(policy: &Policy, e: &mut Evaluated, (baseline, canary): (&str, &str)) {
    let r = &mut e.result;
    let min = policy
        .metrics
        .iter()
        .find(|m| m.name == r.name)
        .map_or(1, |m| m.min_samples);
    if r.samples.baseline == 0 || r.samples.canary == 0 {
        r.classification = Classification::Nodata;
        let missing = match (r.samples.baseline, r.samples.canary) {
            (0, 0) => format!("baseline ({baseline:?}) and canary ({canary:?})"),
            (0, _) => format!("baseline ({baseline:?})"),
            _ => format!("canary ({canary:?})"),
        };
        let what = match (r.kind, r.details.get("metric").and_then(|m| m.as_str())) {
            (MetricKind::MetricHistogram | MetricKind::MetricGauge, Some(m)) => {
                format!("no points of metric {m:?}")
            }
            _ => "no requests".to_string(),
        };
        r.reason = format!("{}: {what} from the {missing} in the window", r.name);
        return;
    }
    if r.samples.baseline < min || r.samples.canary < min {
        r.classification = Classification::Inconclusive;
        r.reason = format!(
            "{}: needs at least {min} requests per side, has baseline {} and canary {}",
            r.name, r.samples.baseline, r.samples.canary
        );
        return;
    }
    if let Some(n) = r.details.get("negative_points") {
        r.classification = Classification::Inconclusive;
        r.reason = format!(
            "{}: {} baseline and {} canary points hold values below zero; graylens compares values of zero or more, \
             so this metric is not judged",
            r.name, n["baseline"], n["canary"]
        );
        return;
    }
    let adjusted = r.adjusted_p_value.unwrap_or(1.0);
    let evidence = format!(
        "{}; {} p {} (Holm-adjusted p {})",
        describe(r),
        r.test,
        p_text(r.p_value.unwrap_or(1.0)),
        p_text(adjusted)
    );
    if adjusted <= policy.alpha && e.practically_worse {
        r.classification = Classification::Fail;
        r.reason = format!(
            "{}: worse beyond tolerance {}: {evidence}",
            r.name,
            tolerance(r)
        );
    } else if e.bounded {
        r.classification = Classification::Pass;
        let why = if adjusted <= policy.alpha {
            "changed, but within tolerance"
        } else {
            "no regression beyond the pass margin"
        };
        r.reason = format!(
            "{}: {why}: the interval excludes a regression of {}% ({evidence})",
            r.name,
            sig(100.0 * r.pass_margin)
        );
    } else {
        r.classification = Classification::Inconclusive;
        let more = e
            .more_needed
            .map(|n| {
                let noun = match r.kind {
                    MetricKind::MetricGauge => "points",
                    MetricKind::MetricHistogram => "values",
                    _ => "requests",
                };
                format!(": about {n} more {noun} per side")
            })
            .unwrap_or_default();
        r.reason = match r.detectable_change {
            None => format!(
                "{}: cannot be bounded yet{more} ({evidence})",
                r.name
            ),
            Some(d) => format!(
                "{}: a regression of {}% cannot be excluded yet (pass margin {}%){more} ({evidence})",
                r.name,
                sig(100.0 * d),
                sig(100.0 * r.pass_margin)
            ),
        };
    }
}

fn describe(r: &MetricResult) -> String {
    let (Some(b), Some(c)) = (r.baseline, r.canary) else {
        return String::new();
    };
    let rel = r
        .relative_delta
        .map(|x| format!(" ({:+.1}%)", 100.0 * x))
        .unwrap_or_default();
    let ci = match r.ci {
        Some([lo, hi]) => format!(
            ", delta interval [{}, {}]",
            lo.map_or("-∞".into(), sig),
            hi.map_or("+∞".into(), sig)
        ),
        None => String::new(),
    };
    format!(
        "canary {} vs baseline {} {}{rel}{ci}",
        sig(c),
        sig(b),
        r.unit
    )
}

fn tolerance(r: &MetricResult) -> String {
    format!(
        "{}% or {} {}",
        sig(100.0 * r.tolerance.relative),
        sig(r.tolerance.absolute),
        r.unit
    )
}

/// A p-value for reasons; the search for p stops at 1e-15.
fn p_text(p: f64) -> String {
    if p <= 1e-15 {
        "≤ 1e-15".into()
    } else {
        format!("= {}", sig(p))
    }
}

/// A number with four significant digits, for reasons.
pub(crate) fn sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    if v.abs() < 1e-4 {
        format!("{v:.3e}")
    } else {
        format!("{v:.digits$}")
    }
}
