//! Full-link gray release: colored (canary lane) traces against uncolored
//! (or other-lane) traces, end to end and per hop.
//!
//! A trace belongs to a lane when any of its spans carries that lane (the
//! color travels with the request, in baggage or a header, so usually every
//! hop carries it). End-to-end latency is the duration of each trace's root
//! span. The delta is then split over `(service, operation)` by *self time*
//! per trace (a span's duration minus its direct children's, floored at 0),
//! so the hop that got slower stands out even when every caller above it
//! inherits the delay.

use super::observe::{floats_col, ints_col, strings_col};
use super::selector::{quote, time_window, Selector};
use crate::error::Result;
use crate::histogram::LogHistogram;
use crate::sql::Tables;
use serde::Serialize;
use std::collections::BTreeMap;

/// End-to-end latency of one lane's traces (root spans), in ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LaneLatency {
    pub lane: String,
    pub traces: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

/// One hop's share of the end-to-end delta.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contributor {
    pub service: String,
    pub operation: String,
    /// Mean self time per trace, ms.
    pub baseline_ms_per_trace: f64,
    pub canary_ms_per_trace: f64,
    pub delta_ms_per_trace: f64,
}

/// The full-link view of a lane comparison.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LaneBreakdown {
    pub baseline: LaneLatency,
    pub canary: LaneLatency,
    /// Hops by self-time delta per trace, largest first (at most 10).
    pub contributors: Vec<Contributor>,
}

pub(super) async fn breakdown(tables: &Tables, sel: &Selector) -> Result<LaneBreakdown> {
    let within = |column: &str| format!("TRUE{}", time_window(column, sel.from, sel.to));
    let window = within("time");
    let lanes = format!("({}, {})", quote(&sel.baseline), quote(&sel.canary));
    let traces = format!(
        "SELECT trace_id, max(traffic_lane) AS lane FROM spans WHERE {window} GROUP BY trace_id HAVING max(traffic_lane) IN {lanes}"
    );
    let mut out = LaneBreakdown::default();
    let roots = format!(
        "WITH t AS ({traces}) SELECT t.lane, s.duration_ns FROM spans s JOIN t ON s.trace_id = t.trace_id \
         WHERE s.parent_span_id IS NULL AND {w}",
        w = within("s.time")
    );
    let mut hist: BTreeMap<String, LogHistogram> = BTreeMap::new();
    for b in tables.internal(&roots).await? {
        let (lane, d) = (strings_col(b.column(0))?, ints_col(b.column(1))?);
        for r in 0..b.num_rows() {
            hist.entry(lane[r].clone().unwrap_or_default())
                .or_default()
                .record(d[r].unwrap_or(0) as f64);
        }
    }
    let summary = |lane: &str| {
        let h = hist.get(lane).cloned().unwrap_or_default();
        LaneLatency {
            lane: lane.to_string(),
            traces: h.count(),
            p50_ms: h.quantile(0.5).map(|v| v / 1e6),
            p99_ms: h.quantile(0.99).map(|v| v / 1e6),
            mean_ms: h.mean().map(|v| v / 1e6),
        }
    };
    out.baseline = summary(&sel.baseline);
    out.canary = summary(&sel.canary);
    if out.baseline.traces == 0 || out.canary.traces == 0 {
        return Ok(out);
    }
    let hops = format!(
        "WITH t AS ({traces}), \
         c AS (SELECT trace_id, parent_span_id, sum(duration_ns) AS child_ns FROM spans \
               WHERE parent_span_id IS NOT NULL AND {window} GROUP BY 1, 2) \
         SELECT t.lane, s.service_name, s.span_name, \
                sum(greatest(s.duration_ns - coalesce(c.child_ns, 0), 0)) AS self_ns \
         FROM spans s JOIN t ON s.trace_id = t.trace_id \
         LEFT JOIN c ON c.trace_id = s.trace_id AND c.parent_span_id = s.span_id \
         WHERE {w} GROUP BY 1, 2, 3",
        w = within("s.time")
    );
    let mut per_hop: BTreeMap<(String, String), [f64; 2]> = BTreeMap::new();
    for b in tables.internal(&hops).await? {
        let (lane, svc, op) = (
            strings_col(b.column(0))?,
            strings_col(b.column(1))?,
            strings_col(b.column(2))?,
        );
        let self_ns = floats_col(b.column(3))?;
        for r in 0..b.num_rows() {
            let lane = lane[r].clone().unwrap_or_default();
            let (idx, n) = if lane == sel.canary {
                (1, out.canary.traces)
            } else {
                (0, out.baseline.traces)
            };
            let key = (
                svc[r].clone().unwrap_or_default(),
                op[r].clone().unwrap_or_default(),
            );
            per_hop.entry(key).or_default()[idx] += self_ns[r].unwrap_or(0.0) / 1e6 / n as f64;
        }
    }
    let mut contributors: Vec<Contributor> = per_hop
        .into_iter()
        .map(|((service, operation), [b, c])| Contributor {
            service,
            operation,
            baseline_ms_per_trace: b,
            canary_ms_per_trace: c,
            delta_ms_per_trace: c - b,
        })
        .collect();
    contributors.sort_by(|a, b| {
        b.delta_ms_per_trace
            .abs()
            .total_cmp(&a.delta_ms_per_trace.abs())
    });
    contributors.truncate(10);
    out.contributors = contributors;
    Ok(out)
}
