//! A Kayenta-compatible judge result (`CanaryJudgeResult` of spinnaker/kayenta),
//! so tools that read Kayenta's output can read graylens's. Mapping:
//!
//! | graylens | Kayenta |
//! |---|---|
//! | metric `pass` | `Pass` |
//! | metric `fail` | `High` (canary higher) or `Low` (canary lower) |
//! | metric `nodata` | `Nodata`, or `NodataFailMetric` when critical |
//! | metric `inconclusive` | `Nodata` with the reason (Kayenta has no per-metric "not enough data yet") |
//! | verdict pass / inconclusive / fail | score classification `Pass` / `Marginal` / `Fail` |

use super::{Comparison, SideSummary};
use crate::judge::{Classification, MetricKind, MetricResult};
use serde_json::{json, Value};

fn stats(m: &MetricResult, side: &SideSummary) -> Value {
    match m.kind {
        MetricKind::Latency => json!({
            "count": side.requests,
            "mean": side.latency_ms.mean,
            "std": side.latency_ms.std,
            "min": side.latency_ms.min,
            "max": side.latency_ms.max,
        }),
        // The per-request error indicator (or error logs per request).
        _ => {
            let rate = m_value(m, side);
            json!({
                "count": side.requests,
                "mean": rate,
                "std": rate.map(|p| (p * (1.0 - p)).max(0.0).sqrt()),
                "min": rate.map(|_| 0.0),
                "max": rate.map(|p| if p > 0.0 { 1.0 } else { 0.0 }),
            })
        }
    }
}

fn m_value(m: &MetricResult, side: &SideSummary) -> Option<f64> {
    match m.kind {
        MetricKind::LogErrorRate => {
            (side.requests > 0).then(|| side.log_errors as f64 / side.requests as f64)
        }
        _ => side.error_rate,
    }
}

/// The comparison as Kayenta's judge result.
pub fn kayenta(c: &Comparison) -> Value {
    let results: Vec<Value> = c
        .metrics
        .iter()
        .map(|m| {
            let classification = match m.classification {
                Classification::Pass => "Pass",
                Classification::Fail if m.delta.unwrap_or(0.0) >= 0.0 => "High",
                Classification::Fail => "Low",
                Classification::Nodata if m.critical => "NodataFailMetric",
                Classification::Nodata | Classification::Inconclusive => "Nodata",
            };
            json!({
                "name": m.name,
                "classification": classification,
                "classificationReason": m.reason,
                "groups": ["graylens"],
                "experimentMetadata": {"stats": stats(m, &c.canary)},
                "controlMetadata": {"stats": stats(m, &c.baseline)},
                "resultMetadata": {"ratio": m.canary.zip(m.baseline).and_then(|(c, b)| (b != 0.0).then(|| c / b))},
                "critical": m.critical,
                "muted": false,
            })
        })
        .collect();
    let score = c.verdict.score;
    json!({
        "judgeName": "graylens",
        "results": results,
        "groupScores": [{"name": "graylens", "score": score}],
        "score": {
            "score": score,
            "classification": match c.verdict.decision {
                crate::judge::Decision::Pass => "Pass",
                crate::judge::Decision::Inconclusive => "Marginal",
                crate::judge::Decision::Fail => "Fail",
            },
            "classificationReason": c.verdict.reasons.join("; "),
        },
    })
}
