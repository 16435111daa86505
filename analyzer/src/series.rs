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
