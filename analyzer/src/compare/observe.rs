//! What each side did: requests, errors and latency per operation of the
//! service's entry spans, log records and error logs, and the OTLP metrics
//! a policy names.

use super::selector::{quote, Selector};
use crate::error::{Error, Result};
use crate::histogram::LogHistogram;
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
    /// The sum of several operations' traffic.
    pub fn total_of<'a>(parts: impl IntoIterator<Item = &'a Traffic>) -> Traffic {
        let mut total = Traffic::default();
        for t in parts {
            total.absorb(t);
        }
        total
    }

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
    /// Entry spans per explained attribute and value (see [`super::explain`]).
    pub facets: BTreeMap<String, BTreeMap<String, super::explain::Facet>>,
    /// Error signatures and their counts.
    pub signatures: BTreeMap<String, u64>,
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

/// Reads both sides in one pass over the store (spans and logs, see
/// [`super::scan`]); `metric_names` are the OTLP metrics to collect too.
pub async fn observe(
    tables: &Tables,
    sel: &Selector,
    metric_names: &[String],
    facets: &[String],
) -> Result<Observations> {
    let (acc, _files) = super::source::scan_store(tables.store(), sel, facets.into()).await?;
    let mut obs = acc.observations();
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
