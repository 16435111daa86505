//! Reads what each side did from the tables: one aggregate query over
//! spans (bucketed latency per operation, computed inside DataFusion so only
//! `(side, operation, bucket)` rows come out) and one over logs.

use super::selector::{quote, Selector};
use crate::error::{Error, Result};
use crate::histogram::{bucket_sql, LogHistogram};
use crate::sql::Tables;
use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use std::collections::BTreeMap;

/// Requests, errors and latency of one operation (or of the whole side).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Traffic {
    pub requests: u64,
    pub errors: u64,
    /// Latency in nanoseconds.
    pub latency: LogHistogram,
    /// Σ ln(latency ns) and Σ ln² over requests with latency > 0, for the
    /// t test on log-latency.
    pub ln_sum: f64,
    pub ln_sq_sum: f64,
    pub ln_count: u64,
}

impl Traffic {
    fn absorb(&mut self, other: &Traffic) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
        self.ln_sum += other.ln_sum;
        self.ln_sq_sum += other.ln_sq_sum;
        self.ln_count += other.ln_count;
    }
}

/// Everything observed for one side of the comparison.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Side {
    /// Entry spans (SERVER or CONSUMER kind, or roots) of the service.
    pub total: Traffic,
    pub operations: BTreeMap<String, Traffic>,
    pub log_records: u64,
    /// Log records with severity ≥ ERROR (severity_number ≥ 17).
    pub log_errors: u64,
    /// OTLP metrics the policy names, by metric name.
    pub metrics: BTreeMap<String, super::otlp_metrics::MetricSide>,
}

/// Both sides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observations {
    pub baseline: Side,
    pub canary: Side,
}

/// Which spans count as requests of a service: the spans where a request
/// enters it (SERVER = 2, CONSUMER = 5) and root spans (a job or a client
/// with no parent). Internal and client spans inside a request would count
/// one request several times.
pub const ENTRY_SPANS: &str = "(span_kind IN (2, 5) OR parent_span_id IS NULL)";

/// Reads both sides; `metric_names` are the OTLP metrics to collect too.
pub async fn observe(
    tables: &Tables,
    sel: &Selector,
    metric_names: &[String],
) -> Result<Observations> {
    let col = sel.by.column();
    let pred = sel.predicate();
    let bucket = bucket_sql("duration_ns");
    let spans = format!(
        "SELECT {col} AS side, span_name, {bucket} AS bucket, count(*) AS n, \
         sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors, \
         sum(CAST(duration_ns AS DOUBLE)) AS total, min(duration_ns) AS lo, max(duration_ns) AS hi, \
         sum(CASE WHEN duration_ns > 0 THEN ln(CAST(duration_ns AS DOUBLE)) END) AS ln_sum, \
         sum(CASE WHEN duration_ns > 0 THEN ln(CAST(duration_ns AS DOUBLE)) * ln(CAST(duration_ns AS DOUBLE)) END) AS ln_sq, \
         sum(CASE WHEN duration_ns > 0 THEN 1 ELSE 0 END) AS ln_n \
         FROM spans WHERE {pred} AND {ENTRY_SPANS} GROUP BY 1, 2, 3"
    );
    let mut obs = Observations::default();
    for batch in tables.internal(&spans).await? {
        let side = strings_col(batch.column(0))?;
        let op = strings_col(batch.column(1))?;
        let bucket = ints_col(batch.column(2))?;
        let [n, errors, lo, hi, ln_n] = [3, 4, 6, 7, 10].map(|i| ints_col(batch.column(i)));
        let (n, errors, lo, hi, ln_n) = (n?, errors?, lo?, hi?, ln_n?);
        let [total, ln_sum, ln_sq] = [5, 8, 9].map(|i| floats_col(batch.column(i)));
        let (total, ln_sum, ln_sq) = (total?, ln_sum?, ln_sq?);
        for r in 0..batch.num_rows() {
            let Some(target) = side_of(&mut obs, sel, side[r].as_deref()) else {
                continue;
            };
            let t = target
                .operations
                .entry(op[r].clone().unwrap_or_default())
                .or_default();
            let count = n[r].unwrap_or(0) as u64;
            t.requests += count;
            t.errors += errors[r].unwrap_or(0) as u64;
            t.latency.add(
                bucket[r].map(|b| b as i32),
                count,
                total[r].unwrap_or(0.0),
                lo[r].unwrap_or(0) as f64,
                hi[r].unwrap_or(0) as f64,
            );
            t.ln_sum += ln_sum[r].unwrap_or(0.0);
            t.ln_sq_sum += ln_sq[r].unwrap_or(0.0);
            t.ln_count += ln_n[r].unwrap_or(0) as u64;
        }
    }
    for side in [&mut obs.baseline, &mut obs.canary] {
        let mut total = Traffic::default();
        for t in side.operations.values() {
            total.absorb(t);
        }
        side.total = total;
    }
    let logs = format!(
        "SELECT {col} AS side, count(*) AS n, sum(CASE WHEN severity_number >= 17 THEN 1 ELSE 0 END) AS errors \
         FROM logs WHERE {pred} GROUP BY 1"
    );
    for batch in tables.internal(&logs).await? {
        let side = strings_col(batch.column(0))?;
        let (n, errors) = (ints_col(batch.column(1))?, ints_col(batch.column(2))?);
        for r in 0..batch.num_rows() {
            if let Some(target) = side_of(&mut obs, sel, side[r].as_deref()) {
                target.log_records += n[r].unwrap_or(0) as u64;
                target.log_errors += errors[r].unwrap_or(0) as u64;
            }
        }
    }
    let [b, c] = super::otlp_metrics::observe_metrics(tables, sel, metric_names).await?;
    obs.baseline.metrics = b;
    obs.canary.metrics = c;
    Ok(obs)
}

/// Values of the `by` column seen for a service at any time, with their
/// entry-span counts (to tell "unknown version" from "no data in window").
pub async fn values_seen(
    tables: &Tables,
    service: &str,
    by: super::By,
) -> Result<Vec<(String, u64)>> {
    let sql = format!(
        "SELECT {col}, count(*) FROM spans WHERE service_name = {svc} AND {ENTRY_SPANS} GROUP BY 1 ORDER BY 2 DESC",
        col = by.column(),
        svc = quote(service)
    );
    let mut out = Vec::new();
    for batch in tables.internal(&sql).await? {
        let (v, n) = (strings_col(batch.column(0))?, ints_col(batch.column(1))?);
        for r in 0..batch.num_rows() {
            out.push((v[r].clone().unwrap_or_default(), n[r].unwrap_or(0) as u64));
        }
    }
    Ok(out)
}

fn side_of<'a>(
    obs: &'a mut Observations,
    sel: &Selector,
    value: Option<&str>,
) -> Option<&'a mut Side> {
    let v = value.unwrap_or("");
    if v == sel.baseline {
        Some(&mut obs.baseline)
    } else if v == sel.canary {
        Some(&mut obs.canary)
    } else {
        None
    }
}

fn converted(a: &ArrayRef, to: DataType) -> Result<ArrayRef> {
    cast(a, &to).map_err(|e| Error::Internal(format!("comparison query column: {e}")))
}

pub(crate) fn ints_col(a: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let c = converted(a, DataType::Int64)?;
    Ok(c.as_primitive::<Int64Type>().iter().collect())
}

pub(crate) fn floats_col(a: &ArrayRef) -> Result<Vec<Option<f64>>> {
    let c = converted(a, DataType::Float64)?;
    Ok(c.as_primitive::<Float64Type>().iter().collect())
}

pub(crate) fn strings_col(a: &ArrayRef) -> Result<Vec<Option<String>>> {
    let c = converted(a, DataType::Utf8)?;
    Ok(c.as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}
