//! The policy: which metrics decide, which way is bad, how much is tolerated.
//!
//! ```toml
//! name = "checkout"
//! alpha = 0.05
//! canary_weight = 0.1          # expected canary share of requests: enables the SRM guard
//!
//! [[metrics]]
//! name = "latency_p99"
//! kind = "latency"
//! quantile = 0.99
//! direction = "increase"        # increase | decrease | either: which change is bad
//! tolerance_relative = 0.2      # a change within 20% ...
//! tolerance_absolute = 5.0      # ... or within 5 ms is tolerated, even if significant
//! critical = true               # failing it fails the canary
//! weight = 1.0
//! min_samples = 500             # per side; fewer is inconclusive
//! ```

use serde::{Deserialize, Serialize};

/// Which change of a metric is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Increase,
    Decrease,
    Either,
}

/// What a metric measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A latency quantile of entry spans (`quantile` required); tolerance in ms.
    Latency,
    /// Failed requests per request; absolute tolerance in rate units (0.001 = 0.1 percentage point).
    ErrorRate,
    /// Log records with severity ≥ ERROR per request.
    LogErrorRate,
    /// An OTLP histogram or exponential-histogram metric (`metric`) at
    /// `quantile`; tolerance in the metric's unit.
    MetricHistogram,
    /// The points of an OTLP gauge (or non-monotonic sum) at `quantile`
    /// (default 0.5, the median); tolerance in the metric's unit.
    MetricGauge,
    /// The increments of an OTLP monotonic sum per request (a rate per
    /// request, tested like the error rate).
    MetricCounter,
}

impl MetricKind {
    /// Whether the kind reads an OTLP metric named by `metric`.
    pub fn is_otlp(self) -> bool {
        matches!(
            self,
            MetricKind::MetricHistogram | MetricKind::MetricGauge | MetricKind::MetricCounter
        )
    }
}

/// One metric of the policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricRule {
    pub name: String,
    pub kind: MetricKind,
    /// For `latency` and `metric_histogram` (required) and `metric_gauge`
    /// (default 0.5): the quantile, in (0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// For the `metric_*` kinds: the OTLP metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default = "increase")]
    pub direction: Direction,
    /// Relative change tolerated (0.1 = 10%).
    #[serde(default)]
    pub tolerance_relative: f64,
    /// Absolute change tolerated (ms for latency, rate units for rates).
    #[serde(default)]
    pub tolerance_absolute: f64,
    #[serde(default = "yes")]
    pub critical: bool,
    #[serde(default = "one")]
    pub weight: f64,
    /// Requests needed on each side before the metric can pass or fail.
    #[serde(default = "min_samples")]
    pub min_samples: u64,
    /// Relative regression the interval must exclude for the metric to
    /// pass (0.2: the upper end of the delta's interval is within 20% of the
    /// baseline, or within `tolerance_absolute`). Default by kind: see
    /// [`MetricRule::pass_margin`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_margin: Option<f64>,
}

impl MetricRule {
    /// The pass margin, explicit or the kind's default: 0.15 for latency and
    /// OTLP distributions, 0.5 for rates (errors are rare events: excluding a
    /// 50% rise of a 1% error rate takes about 30,000 requests per side),
    /// never below the tolerance.
    pub fn pass_margin(&self) -> f64 {
        let default = match self.kind {
            MetricKind::Latency | MetricKind::MetricHistogram | MetricKind::MetricGauge => 0.15,
            MetricKind::ErrorRate | MetricKind::LogErrorRate | MetricKind::MetricCounter => 0.5,
        };
        self.pass_margin
            .unwrap_or(default)
            .max(self.tolerance_relative)
    }
}

/// One component of the count tests' prior mixture.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorComponent {
    /// Concentration of the Beta prior around the null share.
    pub k: f64,
    /// Relative weight (normalized over the mixture).
    pub weight: f64,
}

/// A judging policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "default_name")]
    pub name: String,
    /// Family-wise error rate of the decisions (Holm over the metrics), and
    /// 1 − level of the reported intervals.
    #[serde(default = "alpha")]
    pub alpha: f64,
    /// Concentration `k` of the Beta prior of the quantile confidence
    /// sequences and the sample-ratio guard.
    #[serde(default = "concentration")]
    pub prior_concentration: f64,
    /// The count tests (error rates, log errors, counters) average the Bayes
    /// factors of these priors: small `k` for power after a few events when
    /// the change is large, large `k` for small changes over many events.
    #[serde(default = "count_prior_mixture")]
    pub count_prior_mixture: Vec<PriorComponent>,
    /// Expected canary share of requests (traffic weight); enables the
    /// sample-ratio-mismatch guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<f64>,
    /// Significance of the sample-ratio-mismatch guard.
    #[serde(default = "srm_alpha")]
    pub srm_alpha: f64,
    /// Attributes of entry spans (then of their resource) whose values are
    /// ranked by the share of the canary's excess they hold
    /// (`explanations`); `exception.type` reads the span's exception events.
    #[serde(default = "crate::compare::explain::default_attributes")]
    pub explain_attributes: Vec<String>,
    /// Score (0–100, weighted share of passing metrics) below which
    /// failing non-critical metrics fail the canary.
    #[serde(default = "fail_below")]
    pub fail_below: f64,
    pub metrics: Vec<MetricRule>,
}

fn increase() -> Direction {
    Direction::Increase
}
fn yes() -> bool {
    true
}
fn one() -> f64 {
    1.0
}
fn min_samples() -> u64 {
    200
}
fn default_name() -> String {
    "default".into()
}
fn alpha() -> f64 {
    0.05
}
fn concentration() -> f64 {
    100.0
}
fn count_prior_mixture() -> Vec<PriorComponent> {
    [(2.0, 0.25), (100.0, 0.75)]
        .into_iter()
        .map(|(k, weight)| PriorComponent { k, weight })
        .collect()
}
fn srm_alpha() -> f64 {
    0.001
}
fn fail_below() -> f64 {
    50.0
}

impl Default for Policy {
    /// Latency p50 and p99 and the error rate; an increase is bad.
    fn default() -> Self {
        let latency = |name: &str, q: f64, rel: f64, abs: f64| MetricRule {
            name: name.into(),
            kind: MetricKind::Latency,
            quantile: Some(q),
            metric: None,
            direction: Direction::Increase,
            tolerance_relative: rel,
            tolerance_absolute: abs,
            critical: true,
            weight: 1.0,
            min_samples: min_samples(),
            pass_margin: None,
        };
        Policy {
            name: default_name(),
            alpha: alpha(),
            prior_concentration: concentration(),
            count_prior_mixture: count_prior_mixture(),
            canary_weight: None,
            srm_alpha: srm_alpha(),
            explain_attributes: crate::compare::explain::default_attributes(),
            fail_below: fail_below(),
            metrics: vec![
                latency("latency_p50", 0.5, 0.05, 1.0),
                latency("latency_p99", 0.99, 0.05, 2.0),
                MetricRule {
                    name: "error_rate".into(),
                    kind: MetricKind::ErrorRate,
                    quantile: None,
                    metric: None,
                    direction: Direction::Increase,
                    tolerance_relative: 0.05,
                    tolerance_absolute: 0.001,
                    critical: true,
                    weight: 1.0,
                    min_samples: min_samples(),
                    pass_margin: None,
                },
            ],
        }
    }
}

impl Policy {
    /// Parses a TOML policy and validates it, reporting every problem.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let p: Policy = toml::from_str(text).map_err(|e| e.to_string())?;
        let problems = p.problems();
        if problems.is_empty() {
            Ok(p)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Every problem of the policy.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let unit = |v: f64| v > 0.0 && v < 1.0;
        if !unit(self.alpha) {
            p.push(format!("alpha must be in (0, 1), got {}", self.alpha));
        }
        if !unit(self.srm_alpha) {
            p.push(format!(
                "srm_alpha must be in (0, 1), got {}",
                self.srm_alpha
            ));
        }
        if !(self.prior_concentration > 0.0 && self.prior_concentration.is_finite()) {
            p.push(format!(
                "prior_concentration must be positive, got {}",
                self.prior_concentration
            ));
        }
        if self.count_prior_mixture.is_empty()
            || self
                .count_prior_mixture
                .iter()
                .any(|c| !(c.k > 0.0 && c.k.is_finite() && c.weight > 0.0 && c.weight.is_finite()))
        {
            p.push(
                "count_prior_mixture needs at least one component, each with k > 0 and weight > 0"
                    .into(),
            );
        }
        if let Some(w) = self.canary_weight {
            if !unit(w) {
                p.push(format!("canary_weight must be in (0, 1), got {w}"));
            }
        }
        if !(0.0..=100.0).contains(&self.fail_below) {
            p.push(format!(
                "fail_below must be in [0, 100], got {}",
                self.fail_below
            ));
        }
        if self.explain_attributes.len() > 64 {
            p.push(format!(
                "explain_attributes lists {} attributes; at most 64",
                self.explain_attributes.len()
            ));
        }
        if self.metrics.is_empty() {
            p.push("a policy needs at least one metric".into());
        }
        let mut names = std::collections::HashSet::new();
        for m in &self.metrics {
            if !names.insert(&m.name) {
                p.push(format!("metric {:?} is listed twice", m.name));
            }
            match (m.kind, m.quantile) {
                (MetricKind::Latency | MetricKind::MetricHistogram | MetricKind::MetricGauge, Some(q)) if unit(q) => {}
                (MetricKind::MetricGauge, None) => {}
                (MetricKind::Latency | MetricKind::MetricHistogram | MetricKind::MetricGauge, _) => {
                    p.push(format!("metric {:?}: {} needs quantile in (0, 1)", m.name, kind_name(m.kind)))
                }
                (_, Some(_)) => p.push(format!(
                    "metric {:?}: quantile applies to latency, metric_histogram and metric_gauge only",
                    m.name
                )),
                _ => {}
            }
            match (m.kind.is_otlp(), &m.metric) {
                (true, Some(n)) if !n.is_empty() => {}
                (true, _) => p.push(format!(
                    "metric {:?}: {} needs `metric`, the OTLP metric name",
                    m.name,
                    kind_name(m.kind)
                )),
                (false, Some(_)) => p.push(format!(
                    "metric {:?}: `metric` applies to the metric_* kinds only",
                    m.name
                )),
                (false, None) => {}
            }
            if m.tolerance_relative < 0.0 || m.tolerance_absolute < 0.0 {
                p.push(format!(
                    "metric {:?}: tolerances cannot be negative",
                    m.name
                ));
            }
            if !(m.weight >= 0.0 && m.weight.is_finite()) {
                p.push(format!("metric {:?}: weight must be ≥ 0", m.name));
            }
            if let Some(margin) = m.pass_margin {
                if !(margin > 0.0 && margin.is_finite()) {
                    p.push(format!(
                        "metric {:?}: pass_margin must be positive, got {margin}",
                        m.name
                    ));
                }
            }
            if m.min_samples == 0 {
                p.push(format!(
                    "metric {:?}: min_samples must be at least 1",
                    m.name
                ));
            }
        }
        p
    }
}

fn kind_name(k: MetricKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid_and_round_trips_through_toml() {
        let p = Policy::default();
        assert!(p.problems().is_empty());
        let text = toml::to_string(&p).unwrap();
        assert_eq!(Policy::from_toml(&text).unwrap(), p);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Policy::from_toml(
            r#"alpha = 2.0
               [[metrics]]
               name = "p"
               kind = "latency"
               [[metrics]]
               name = "p"
               kind = "error_rate"
               quantile = 0.5
               min_samples = 0"#,
        )
        .unwrap_err();
        for needle in [
            "alpha",
            "listed twice",
            "needs quantile",
            "metric_histogram and metric_gauge only",
            "min_samples",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
        assert!(Policy::from_toml("metrics = []\nbogus = 1")
            .unwrap_err()
            .contains("bogus"));
        let err =
            Policy::from_toml("[[metrics]]\nname = \"q\"\nkind = \"metric_counter\"").unwrap_err();
        assert!(err.contains("metric_counter needs `metric`"), "{err}");
        let err =
            Policy::from_toml("[[metrics]]\nname = \"q\"\nkind = \"error_rate\"\nmetric = \"x\"")
                .unwrap_err();
        assert!(err.contains("applies to the metric_* kinds only"), "{err}");
    }
}
