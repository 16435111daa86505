//! Per-version series of recent traffic: requests, errors, error rate and
//! latency quantiles by service and version, from the same log-bucketed
//! histograms as the comparison (≤ 1% relative error). They back the
//! Prometheus-shaped `GET /api/v1/query` and the gauges of `/metrics`.

use crate::compare::{ints_col, quote, strings_col, time_window, ENTRY_SPANS};
use crate::error::Result;
use crate::histogram::{bucket_sql, LogHistogram};
use crate::sql::Tables;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Which traffic to include; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesFilter {
    pub service: Option<String>,
    pub version: Option<String>,
    pub role: Option<String>,
    pub lane: Option<String>,
    /// Resource attribute `k8s.namespace.name`.
    pub namespace: Option<String>,
    /// Resource attribute `k8s.deployment.name`.
    pub deployment: Option<String>,
}

impl SeriesFilter {
    fn predicate(&self) -> String {
        let mut w = String::new();
        for (col, v) in [
            ("service_name", &self.service),
            ("service_version", &self.version),
            ("rollout_role", &self.role),
            ("traffic_lane", &self.lane),
            ("resource_attributes['k8s.namespace.name']", &self.namespace),
            (
                "resource_attributes['k8s.deployment.name']",
                &self.deployment,
            ),
        ] {
            if let Some(v) = v {
                w.push_str(&format!(" AND {col} = {}", quote(v)));
            }
        }
        w
    }
}

/// Recent traffic of one version of one service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VersionSeries {
    pub service: String,
    pub version: String,
    pub requests: u64,
    pub errors: u64,
    /// Entry-span durations, in nanoseconds.
    pub latency: LogHistogram,
}

impl VersionSeries {
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// Latency quantile `q` in milliseconds.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        self.latency.quantile(q).map(|ns| ns / 1e6)
    }
}

/// Entry-span traffic since `from` matching `filter`, per (service, version).
pub async fn version_series(
    tables: &Tables,
    filter: &SeriesFilter,
    from: Option<DateTime<Utc>>,
) -> Result<Vec<VersionSeries>> {
    let bucket = bucket_sql("duration_ns");
    let sql = format!(
        "SELECT service_name, service_version, {bucket}, count(*), \
         sum(CASE WHEN is_error THEN 1 ELSE 0 END), sum(CAST(duration_ns AS DOUBLE)), \
         min(duration_ns), max(duration_ns) \
         FROM spans WHERE {ENTRY_SPANS}{}{} GROUP BY 1, 2, 3",
        filter.predicate(),
        time_window("time", from, None)
    );
    let mut out: BTreeMap<(String, String), VersionSeries> = BTreeMap::new();
    for b in tables.internal(&sql).await? {
        let (svc, ver) = (strings_col(b.column(0))?, strings_col(b.column(1))?);
        let [key, n, e, lo, hi] = [2, 3, 4, 6, 7].map(|i| ints_col(b.column(i)));
        let (key, n, e, lo, hi) = (key?, n?, e?, lo?, hi?);
        let total = crate::compare::floats_col(b.column(5))?;
        for r in 0..b.num_rows() {
            let id = (
                svc[r].clone().unwrap_or_default(),
                ver[r].clone().unwrap_or_default(),
            );
            let s = out.entry(id.clone()).or_insert_with(|| VersionSeries {
                service: id.0,
                version: id.1,
                ..Default::default()
            });
            let count = n[r].unwrap_or(0) as u64;
            s.requests += count;
            s.errors += e[r].unwrap_or(0) as u64;
            s.latency.add(
                key[r].map(|k| k as i32),
                count,
                total[r].unwrap_or(0.0),
                lo[r].unwrap_or(0) as f64,
                hi[r].unwrap_or(0) as f64,
            );
        }
    }
    Ok(out.into_values().collect())
}

/// One time bin of one side.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Point {
    /// Start of the bin.
    pub t: DateTime<Utc>,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// What the comparison page draws for one side: the series over time and
/// the latency distribution of the whole window.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SideCharts {
    pub points: Vec<Point>,
    /// `[largest value in ms, requests]` of each non-empty log bucket (buckets are ≤ 2% wide).
    pub distribution: Vec<[f64; 2]>,
}

/// Baseline and canary of `sel` in bins of `step_secs`.
pub async fn charts(
    tables: &Tables,
    sel: &crate::compare::Selector,
    step_secs: u64,
) -> Result<[SideCharts; 2]> {
    let col = sel.by.column();
    let bucket = bucket_sql("duration_ns");
    let step = step_secs.max(1);
    let sql = format!(
        "SELECT {col}, CAST(date_bin(INTERVAL '{step} seconds', time, TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT), \
         {bucket}, count(*), sum(CASE WHEN is_error THEN 1 ELSE 0 END), sum(CAST(duration_ns AS DOUBLE)), \
         min(duration_ns), max(duration_ns) \
         FROM spans WHERE {} AND {ENTRY_SPANS} GROUP BY 1, 2, 3",
        sel.predicate()
    );
    type Bins = BTreeMap<i64, (u64, u64, LogHistogram)>;
    let mut sides: [Bins; 2] = Default::default();
    for b in tables.internal(&sql).await? {
        let side = strings_col(b.column(0))?;
        let [t, key, n, e, lo, hi] = [1, 2, 3, 4, 6, 7].map(|i| ints_col(b.column(i)));
        let (t, key, n, e, lo, hi) = (t?, key?, n?, e?, lo?, hi?);
        let total = crate::compare::floats_col(b.column(5))?;
        for r in 0..b.num_rows() {
            let v = side[r].as_deref().unwrap_or("");
            let i = if v == sel.baseline {
                0
            } else if v == sel.canary {
                1
            } else {
                continue;
            };
            let bin = sides[i].entry(t[r].unwrap_or(0)).or_default();
            let count = n[r].unwrap_or(0) as u64;
            bin.0 += count;
            bin.1 += e[r].unwrap_or(0) as u64;
            bin.2.add(
                key[r].map(|k| k as i32),
                count,
                total[r].unwrap_or(0.0),
                lo[r].unwrap_or(0) as f64,
                hi[r].unwrap_or(0) as f64,
            );
        }
    }
    Ok(sides.map(|bins| {
        let mut all = LogHistogram::new();
        let points = bins
            .into_iter()
            .map(|(t, (requests, errors, h))| {
                all.merge(&h);
                let ms = |q: f64| h.quantile(q).map(|ns| ns / 1e6);
                Point {
                    t: DateTime::from_timestamp_nanos(t),
                    requests,
                    errors,
                    error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
                    p50_ms: ms(0.5),
                    p90_ms: ms(0.9),
                    p99_ms: ms(0.99),
                }
            })
            .collect();
        SideCharts {
            points,
            distribution: all.buckets().map(|(v, n)| [v / 1e6, n as f64]).collect(),
        }
    }))
}
