//! What explains a regression: which attribute values of the service's
//! entry spans hold the canary's excess errors or latency, and which error
//! signatures appear in the canary but never in the baseline.
//!
//! Collected in the same pass as the comparison (see [`super::scan`]): per
//! side, per configured attribute (`Policy::explain_attributes`), per value
//! (at most [`MAX_VALUES`] per attribute; the rest pooled as `(other)`),
//! requests, errors and latency sums; and per side the count of each error
//! signature (a span's exception type, an error log's body with digits
//! masked; at most [`MAX_SIGNATURES`]).
//!
//! For each value, its *excess* is what the canary did beyond what the
//! baseline would have done with the same requests: errors beyond the
//! baseline's rate for that value (the whole baseline's when the value has
//! fewer than [`MIN_BASELINE`] baseline requests, and always for instance
//! attributes, whose values — pods — differ between versions), and latency
//! beyond the baseline's mean. `share_of_excess` is its part of the whole
//! canary excess. A value is listed when it holds at least a quarter of the
//! excess, more than its share of the canary's requests plus 10 points,
//! and its one-sided test (Fisher's exact test on errors, Welch's t test on
//! log-latency) survives Benjamini–Hochberg over every value tested at
//! level `alpha`. These are single-look tests meant to point at a cause
//! once the verdict has been reached, never used for the verdict itself.
//! A signature seen `k ≥ 3` times in the canary and never in the baseline
//! is "new in canary" with p = ρᵏ, ρ the canary's share of requests (the
//! chance that all `k` land on the canary if the versions did not differ).
//! Nothing is explained unless the canary is worse overall (one-sided
//! Fisher on errors, Welch on log-latency, at `alpha`).

use super::observe::Observations;
use crate::stats::adjust::benjamini_hochberg;
use crate::stats::fisher::fisher_exact;
use crate::stats::welch::{welch_from_moments, Moments};
use crate::stats::Alternative;
use serde::Serialize;
use std::collections::BTreeMap;

/// Values kept per attribute and side; more are pooled as [`OTHER`].
pub const MAX_VALUES: usize = 200;
/// Error signatures kept per side.
pub const MAX_SIGNATURES: usize = 500;
/// The pooled value of an attribute past [`MAX_VALUES`].
pub const OTHER: &str = "(other)";
/// Baseline requests a value needs to be its own reference.
const MIN_BASELINE: u64 = 30;
/// Attributes whose values are instances (pods, hosts): never shared by
/// the two versions, so compared with the whole baseline.
pub const INSTANCE_ATTRIBUTES: [&str; 3] = ["k8s.pod.name", "service.instance.id", "host.name"];
/// Attributes that describe the error itself: every request with the value
/// failed, so their error *rate* says nothing. For them the canary's errors
/// per request with the value are held to the baseline's, and a value is
/// listed when it holds more of the excess than of the baseline's errors.
pub const ERROR_ATTRIBUTES: [&str; 3] =
    ["exception.type", "error.type", "http.response.status_code"];

/// The attributes explained by default.
pub fn default_attributes() -> Vec<String> {
    [
        "http.route",
        "rpc.method",
        "http.request.method",
        "http.response.status_code",
        "error.type",
        "exception.type",
        "k8s.pod.name",
        "service.instance.id",
        "cloud.availability_zone",
    ]
    .map(String::from)
    .to_vec()
}

/// Requests of one attribute value on one side.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Facet {
    pub requests: u64,
    pub errors: u64,
    /// Σ latency (ns).
    pub sum_ns: f64,
    /// Σ ln latency, Σ ln² latency over `ln_n` requests with latency > 0.
    pub ln_sum: f64,
    pub ln_sq: f64,
    pub ln_n: u64,
}

impl Facet {
    #[inline]
    pub fn add(&mut self, duration_ns: i64, error: bool) {
        let v = duration_ns as f64;
        self.add_ln(v, (v > 0.0).then(|| v.ln()), error);
    }

    /// [`Facet::add`] of latency `v` (ns) whose logarithm is known (`None`
    /// when `v ≤ 0`).
    #[inline]
    pub fn add_ln(&mut self, v: f64, ln: Option<f64>, error: bool) {
        self.requests += 1;
        self.errors += error as u64;
        self.sum_ns += v;
        if let Some(l) = ln {
            self.ln_sum += l;
            self.ln_sq += l * l;
            self.ln_n += 1;
        }
    }

    pub fn merge(&mut self, o: &Facet) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.sum_ns += o.sum_ns;
        self.ln_sum += o.ln_sum;
        self.ln_sq += o.ln_sq;
        self.ln_n += o.ln_n;
    }

    fn mean_ms(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.sum_ns / self.requests as f64 / 1e6)
    }

    fn ln_moments(&self) -> Moments {
        let n = self.ln_n as f64;
        let mean = if n > 0.0 { self.ln_sum / n } else { 0.0 };
        let variance = if n > 1.0 {
            ((self.ln_sq - n * mean * mean) / (n - 1.0)).max(0.0)
        } else {
            0.0
        };
        Moments { n, mean, variance }
    }
}

/// Adds `value` to `map`, pooling values past [`MAX_VALUES`].
pub fn facet_entry<'m>(map: &'m mut BTreeMap<String, Facet>, value: &str) -> &'m mut Facet {
    if !map.contains_key(value) && map.len() >= MAX_VALUES {
        return map.entry(OTHER.to_string()).or_default();
    }
    map.entry(value.to_string()).or_default()
}

/// Counts one occurrence of an error signature, within [`MAX_SIGNATURES`].
pub fn count_signature(map: &mut BTreeMap<String, u64>, signature: String, n: u64) {
    if let Some(c) = map.get_mut(&signature) {
        *c += n;
    } else if map.len() < MAX_SIGNATURES {
        map.insert(signature, n);
    }
}

/// An error log body as a signature: digit runs become `#`, at most 120
/// characters, so "order 123 failed" and "order 456 failed" are one.
pub fn log_signature(body: &str) -> String {
    let mut out = String::with_capacity(body.len().min(128));
    let mut in_digits = false;
    for ch in body.chars() {
        if out.len() >= 120 {
            out.push('…');
            break;
        }
        if ch.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(ch);
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An attribute value holding more of the excess than of the traffic.
    Concentrated,
    /// An error signature the baseline never produced.
    NewInCanary,
    /// One instance (pod, host) holding the excess.
    Instance,
}

/// One finding, best first in [`Comparison::explanations`](super::Comparison).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// The attribute (`http.route`, `k8s.pod.name`…; `exception.type` or
    /// `log.body` for signatures).
    pub attribute: String,
    pub value: String,
    /// `error_rate`, `errors_per_request` (for [`ERROR_ATTRIBUTES`]),
    /// `latency_mean_ms`, `errors` (exception signatures) or `log_errors`
    /// (log signatures).
    pub metric: String,
    /// The value's figure on each side (the reference the canary is held to
    /// for `baseline`: the value's own baseline, or the whole baseline's).
    pub baseline: Option<f64>,
    pub canary: Option<f64>,
    /// Part of the canary's excess this value holds (1 = all of it).
    pub share_of_excess: f64,
    /// The value's share of the canary's requests.
    pub share_of_requests: f64,
    /// Benjamini–Hochberg-adjusted over every value tested.
    pub p_value: f64,
    pub kind: Kind,
}

struct Candidate {
    e: Explanation,
    raw_p: f64,
    listed: bool,
}

/// The explanations of `obs`, best first, at most `limit`.
pub fn explain(obs: &Observations, alpha: f64, limit: usize) -> Vec<Explanation> {
    let (b, c) = (&obs.baseline, &obs.canary);
    let (nb, nc) = (b.total.requests, c.total.requests);
    if nb == 0 || nc == 0 {
        return Vec::new();
    }
    let mut cands: Vec<Candidate> = Vec::new();
    let rate_b = b.total.errors as f64 / nb as f64;
    let excess_errors = c.total.errors as f64 - nc as f64 * rate_b;
    let mean = |f: &Facet| f.mean_ms();
    let whole = |side: &super::observe::Side| Facet {
        requests: side.total.requests,
        errors: side.total.errors,
        sum_ns: side.total.latency.sum(),
        ln_sum: side.total.ln_sum,
        ln_sq: side.total.ln_sq_sum,
        ln_n: side.total.ln_count,
    };
    let (whole_b, whole_c) = (whole(b), whole(c));
    // Only a canary worse than the baseline (one-sided, at alpha) has an
    // excess to explain.
    let excess_errors = if excess_errors > 0.0
        && c.total.errors >= 3
        && fisher_exact(
            [
                [c.total.errors, nc - c.total.errors],
                [b.total.errors, nb - b.total.errors],
            ],
            Alternative::Greater,
        )
        .p_value
            <= alpha
    {
        excess_errors
    } else {
        0.0
    };
    let slower = welch_from_moments(
        whole_c.ln_moments(),
        whole_b.ln_moments(),
        Alternative::Greater,
        0.95,
    )
    .is_some_and(|w| w.p_value <= alpha);
    let excess_latency = match (mean(&whole_c), mean(&whole_b)) {
        (Some(mc), Some(mb)) if slower => nc as f64 * (mc - mb),
        _ => 0.0,
    };
    let empty = BTreeMap::new();
    for (attribute, values) in &c.facets {
        let instance = INSTANCE_ATTRIBUTES.contains(&attribute.as_str());
        let kind = if instance {
            Kind::Instance
        } else {
            Kind::Concentrated
        };
        let base_values = b.facets.get(attribute).unwrap_or(&empty);
        for (value, fc) in values {
            if fc.requests == 0 {
                continue;
            }
            let reference = match base_values.get(value) {
                Some(fb) if !instance && fb.requests >= MIN_BASELINE => *fb,
                _ => whole_b,
            };
            let share_of_requests = fc.requests as f64 / nc as f64;
            // A candidate holding at least a tenth of the excess; listed when
            // it holds a quarter and 10 points more than `beat`.
            let mut push = |metric: &str,
                            baseline: f64,
                            canary: f64,
                            share: f64,
                            beat: f64,
                            p: &dyn Fn() -> f64| {
                if share >= 0.1 {
                    cands.push(Candidate {
                        listed: share >= 0.25 && share > beat + 0.1,
                        raw_p: p(),
                        e: Explanation {
                            attribute: attribute.clone(),
                            value: value.clone(),
                            metric: metric.into(),
                            baseline: Some(baseline),
                            canary: Some(canary),
                            share_of_excess: share.min(1.0),
                            share_of_requests,
                            p_value: 1.0,
                            kind,
                        },
                    });
                }
            };
            if excess_errors > 0.0 && ERROR_ATTRIBUTES.contains(&attribute.as_str()) {
                // Errors with this value per request, canary against baseline.
                let eb = base_values.get(value).map_or(0, |f| f.errors);
                let r = eb as f64 / nb as f64;
                let share = (fc.errors as f64 - nc as f64 * r) / excess_errors;
                let of_baseline = eb as f64 / b.total.errors.max(1) as f64;
                push(
                    "errors_per_request",
                    r,
                    fc.errors as f64 / nc as f64,
                    share,
                    of_baseline,
                    &|| {
                        fisher_exact(
                            [[fc.errors, nc - fc.errors], [eb, nb - eb]],
                            Alternative::Greater,
                        )
                        .p_value
                    },
                );
            } else if excess_errors > 0.0 {
                let r = reference.errors as f64 / reference.requests.max(1) as f64;
                let share = (fc.errors as f64 - fc.requests as f64 * r) / excess_errors;
                let canary = fc.errors as f64 / fc.requests as f64;
                push("error_rate", r, canary, share, share_of_requests, &|| {
                    fisher_exact(
                        [
                            [fc.errors, fc.requests - fc.errors],
                            [reference.errors, reference.requests - reference.errors],
                        ],
                        Alternative::Greater,
                    )
                    .p_value
                });
            }
            if excess_latency > 0.0 {
                let (Some(mc), Some(mb)) = (mean(fc), mean(&reference)) else {
                    continue;
                };
                let share = fc.requests as f64 * (mc - mb) / excess_latency;
                push("latency_mean_ms", mb, mc, share, share_of_requests, &|| {
                    welch_from_moments(
                        fc.ln_moments(),
                        reference.ln_moments(),
                        Alternative::Greater,
                        0.95,
                    )
                    .map_or(1.0, |w| w.p_value)
                });
            }
        }
    }
    // Signatures the baseline never produced.
    let rho = nc as f64 / (nb + nc) as f64;
    for (signature, &k) in &c.signatures {
        if k < 3 || b.signatures.contains_key(signature) {
            continue;
        }
        let (attribute, value, metric, of) = match signature.split_once(": ") {
            Some(("exception", v)) => ("exception.type", v, "errors", c.total.errors),
            Some(("log", v)) => ("log.body", v, "log_errors", c.log_errors),
            _ => continue,
        };
        cands.push(Candidate {
            listed: true,
            raw_p: rho.powf(k as f64),
            e: Explanation {
                attribute: attribute.into(),
                value: value.into(),
                metric: metric.into(),
                baseline: Some(0.0),
                canary: Some(k as f64),
                share_of_excess: (k as f64 / of.max(k) as f64).min(1.0),
                share_of_requests: 0.0,
                p_value: 1.0,
                kind: Kind::NewInCanary,
            },
        });
    }
    let raw: Vec<f64> = cands.iter().map(|c| c.raw_p).collect();
    let mut out: Vec<Explanation> = cands
        .into_iter()
        .zip(benjamini_hochberg(&raw))
        .filter(|(c, adj)| c.listed && *adj <= alpha)
        .map(|(mut c, adj)| {
            c.e.p_value = adj;
            c.e
        })
        .collect();
    // A value both new and concentrated is listed once, as new.
    let new: Vec<(String, String)> = out
        .iter()
        .filter(|e| e.kind == Kind::NewInCanary)
        .map(|e| (e.attribute.clone(), e.value.clone()))
        .collect();
    out.retain(|e| {
        e.kind == Kind::NewInCanary || !new.contains(&(e.attribute.clone(), e.value.clone()))
    });
    out.sort_by(|x, y| {
        y.share_of_excess
            .total_cmp(&x.share_of_excess)
            .then(x.p_value.total_cmp(&y.p_value))
    });
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::observe::Side;

    /// A side built from (route, pod, requests, errors, latency ms), with a
    /// little spread in latency so the t test has a variance.
    fn side(rows: &[(&str, &str, u64, u64, f64)]) -> Side {
        let mut s = Side::default();
        for &(route, pod, n, errors, ms) in rows {
            for i in 0..n {
                let ns = (ms * (1.0 + 0.2 * ((i % 7) as f64 - 3.0) / 3.0) * 1e6) as i64;
                let error = i < errors;
                for (key, value) in [("http.route", route), ("k8s.pod.name", pod)] {
                    facet_entry(s.facets.entry(key.into()).or_default(), value).add(ns, error);
                }
                s.total.requests += 1;
                s.total.errors += error as u64;
                s.total.latency.record(ns as f64);
                let l = (ns as f64).ln();
                s.total.ln_sum += l;
                s.total.ln_sq_sum += l * l;
                s.total.ln_count += 1;
            }
        }
        s
    }

    #[test]
    fn errors_on_one_route_name_that_route() {
        let baseline = side(&[
            ("/pay", "b-1", 900, 9, 20.0),
            ("/refund", "b-1", 100, 1, 20.0),
        ]);
        let canary = side(&[
            ("/pay", "c-1", 900, 9, 20.0),
            ("/refund", "c-1", 100, 40, 20.0),
        ]);
        let e = explain(&Observations { baseline, canary }, 0.05, 10);
        assert_eq!(e[0].attribute, "http.route", "{e:#?}");
        assert_eq!(e[0].value, "/refund");
        assert_eq!(e[0].kind, Kind::Concentrated);
        assert_eq!(e[0].metric, "error_rate");
        assert!(e[0].share_of_excess > 0.9 && e[0].p_value < 1e-6, "{e:#?}");
        assert!(e.iter().all(|x| x.value != "/pay"), "{e:#?}");
    }

    #[test]
    fn one_slow_pod_is_named_as_the_instance() {
        let baseline = side(&[("/pay", "b-1", 600, 0, 20.0), ("/pay", "b-2", 600, 0, 20.0)]);
        let canary = side(&[
            ("/pay", "c-1", 400, 0, 20.0),
            ("/pay", "c-2", 400, 0, 35.0),
            ("/pay", "c-3", 400, 0, 20.0),
        ]);
        let e = explain(&Observations { baseline, canary }, 0.05, 10);
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(
            (e[0].attribute.as_str(), e[0].value.as_str()),
            ("k8s.pod.name", "c-2")
        );
        assert_eq!(e[0].kind, Kind::Instance);
        assert_eq!(e[0].metric, "latency_mean_ms");
        assert!(e[0].share_of_excess > 0.9, "{e:#?}");
    }

    #[test]
    fn a_uniform_regression_is_not_pinned_on_any_value() {
        let baseline = side(&[
            ("/pay", "b-1", 500, 5, 20.0),
            ("/cart", "b-2", 500, 5, 20.0),
        ]);
        let canary = side(&[
            ("/pay", "c-1", 500, 30, 30.0),
            ("/cart", "c-2", 500, 30, 30.0),
        ]);
        let e = explain(&Observations { baseline, canary }, 0.05, 10);
        assert!(e.is_empty(), "{e:#?}");
    }

    #[test]
    fn a_signature_only_the_canary_produces_is_new_in_canary() {
        let mut baseline = side(&[("/pay", "b-1", 500, 5, 20.0)]);
        let mut canary = side(&[("/pay", "c-1", 500, 12, 20.0)]);
        count_signature(
            &mut baseline.signatures,
            "exception: TimeoutError".into(),
            5,
        );
        count_signature(&mut canary.signatures, "exception: TimeoutError".into(), 5);
        count_signature(&mut canary.signatures, "exception: KeyError".into(), 7);
        count_signature(&mut canary.signatures, "log: rare thing".into(), 2);
        canary.log_errors = 2;
        let e = explain(&Observations { baseline, canary }, 0.05, 10);
        let new: Vec<_> = e.iter().filter(|x| x.kind == Kind::NewInCanary).collect();
        assert_eq!(new.len(), 1, "{e:#?}");
        assert_eq!(
            (new[0].attribute.as_str(), new[0].value.as_str()),
            ("exception.type", "KeyError")
        );
        // ρ⁷ with ρ = 1/2, then BH over every value tested.
        assert!(
            new[0].p_value >= 0.5f64.powi(7) && new[0].p_value < 0.05,
            "{new:#?}"
        );
    }

    #[test]
    fn log_signatures_mask_numbers_and_values_are_capped() {
        assert_eq!(
            log_signature("order 123 failed after 45ms"),
            "order # failed after #ms"
        );
        let mut m = BTreeMap::new();
        for i in 0..MAX_VALUES + 50 {
            facet_entry(&mut m, &format!("v{i}")).add(1, false);
        }
        assert_eq!(m.len(), MAX_VALUES + 1);
        assert_eq!(m[OTHER].requests, 50);
    }
}
