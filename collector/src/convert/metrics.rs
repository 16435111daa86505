//! Metrics → the `metrics` table, one row per data point.

use super::columns::{
    identity_problem, ns, truncate, utc_built, AttributionCols, AttrsCol, Columns, Ctx, PerService,
    ResourceView, RESOURCE_TOO_WIDE, TOO_MANY_SERVICES,
};
use super::dict::DictBuilder;
use super::{Converted, Rejections};
use crate::attribution::AttributionRef;
use crate::schema::METRICS;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, ListBuilder,
    TimestampNanosecondBuilder, UInt64Builder,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use std::sync::Arc;

/// Everything one row can hold; what a metric type lacks stays `None`.
#[derive(Default)]
struct Point<'a> {
    time: u64,
    start: u64,
    attrs: &'a [KeyValue],
    monotonic: Option<bool>,
    temporality: Option<i32>,
    value: Option<f64>,
    count: Option<u64>,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    bounds: Option<&'a [f64]>,
    counts: Option<&'a [u64]>,
    exp_scale: Option<i32>,
    exp_zero: Option<u64>,
    exp_pos: Option<(i32, &'a [u64])>,
    exp_neg: Option<(i32, &'a [u64])>,
    quantiles: Option<(Vec<f64>, Vec<f64>)>,
}

pub(crate) struct MetricCols {
    time: TimestampNanosecondBuilder,
    start: TimestampNanosecondBuilder,
    attribution: AttributionCols,
    name: DictBuilder,
    kind: DictBuilder,
    unit: DictBuilder,
    monotonic: BooleanBuilder,
    temporality: Int32Builder,
    value: Float64Builder,
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
    bounds: ListBuilder<Float64Builder>,
    counts: ListBuilder<UInt64Builder>,
    exp_scale: Int32Builder,
    exp_zero: UInt64Builder,
    exp_pos_offset: Int32Builder,
    exp_pos_counts: ListBuilder<UInt64Builder>,
    exp_neg_offset: Int32Builder,
    exp_neg_counts: ListBuilder<UInt64Builder>,
    quantiles: ListBuilder<Float64Builder>,
    quantile_values: ListBuilder<Float64Builder>,
    scope: DictBuilder,
    attrs: AttrsCol,
    res_attrs: AttrsCol,
    rows: usize,
}

fn append_list<B, T>(l: &mut ListBuilder<B>, v: Option<&[T]>)
where
    B: datafusion::arrow::array::ArrayBuilder + Extend<Option<T>>,
    T: Copy,
{
    match v {
        Some(xs) => {
            l.values().extend(xs.iter().map(|x| Some(*x)));
            l.append(true);
        }
        None => l.append(false),
    }
}

// Builders start empty: a one-point batch must not hold 1,024 slots per
// column (`::new()`), or many small services amplify a request.
impl Default for MetricCols {
    fn default() -> Self {
        Self {
            time: TimestampNanosecondBuilder::with_capacity(0),
            start: TimestampNanosecondBuilder::with_capacity(0),
            attribution: AttributionCols::default(),
            name: DictBuilder::default(),
            kind: DictBuilder::default(),
            unit: DictBuilder::default(),
            monotonic: BooleanBuilder::with_capacity(0),
            temporality: Int32Builder::with_capacity(0),
            value: Float64Builder::with_capacity(0),
            count: UInt64Builder::with_capacity(0),
            sum: Float64Builder::with_capacity(0),
            min: Float64Builder::with_capacity(0),
            max: Float64Builder::with_capacity(0),
            bounds: ListBuilder::with_capacity(Float64Builder::with_capacity(0), 0),
            counts: ListBuilder::with_capacity(UInt64Builder::with_capacity(0), 0),
            exp_scale: Int32Builder::with_capacity(0),
            exp_zero: UInt64Builder::with_capacity(0),
            exp_pos_offset: Int32Builder::with_capacity(0),
            exp_pos_counts: ListBuilder::with_capacity(UInt64Builder::with_capacity(0), 0),
            exp_neg_offset: Int32Builder::with_capacity(0),
            exp_neg_counts: ListBuilder::with_capacity(UInt64Builder::with_capacity(0), 0),
            quantiles: ListBuilder::with_capacity(Float64Builder::with_capacity(0), 0),
            quantile_values: ListBuilder::with_capacity(Float64Builder::with_capacity(0), 0),
            scope: DictBuilder::default(),
            attrs: AttrsCol::default(),
            res_attrs: AttrsCol::default(),
            rows: 0,
        }
    }
}

/// The text of one metric's rows.
struct Names<'a> {
    name: &'a str,
    kind: &'a str,
    unit: &'a str,
    scope: &'a str,
}

impl MetricCols {
    fn push(
        &mut self,
        who: &AttributionRef<'_>,
        n: &Names<'_>,
        resource: &ResourceView<'_>,
        p: Point<'_>,
        max: usize,
        cuts: &mut u64,
    ) {
        self.rows += 1;
        self.time.append_value(ns(p.time));
        self.start
            .append_option((p.start != 0).then(|| ns(p.start)));
        self.attribution.push(who, max, cuts);
        self.name.push(truncate(n.name, max, cuts));
        self.kind.push(n.kind);
        self.unit.push(truncate(n.unit, max, cuts));
        self.monotonic.append_option(p.monotonic);
        self.temporality.append_option(p.temporality);
        self.value.append_option(p.value);
        self.count.append_option(p.count);
        self.sum.append_option(p.sum);
        self.min.append_option(p.min);
        self.max.append_option(p.max);
        append_list(&mut self.bounds, p.bounds);
        append_list(&mut self.counts, p.counts);
        self.exp_scale.append_option(p.exp_scale);
        self.exp_zero.append_option(p.exp_zero);
        self.exp_pos_offset.append_option(p.exp_pos.map(|b| b.0));
        append_list(&mut self.exp_pos_counts, p.exp_pos.map(|b| b.1));
        self.exp_neg_offset.append_option(p.exp_neg.map(|b| b.0));
        append_list(&mut self.exp_neg_counts, p.exp_neg.map(|b| b.1));
        let (q, qv) = match &p.quantiles {
            Some((q, v)) => (Some(q.as_slice()), Some(v.as_slice())),
            None => (None, None),
        };
        append_list(&mut self.quantiles, q);
        append_list(&mut self.quantile_values, qv);
        self.scope.push(truncate(n.scope, max, cuts));
        self.attrs.push_prost(p.attrs, max, cuts);
        self.res_attrs.push_resource(resource);
    }
}

impl Columns for MetricCols {
    fn rows(&self) -> usize {
        self.rows
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let [svc, ver, env, role, lane] = self.attribution.finish();
        let columns: Vec<ArrayRef> = vec![
            utc_built(self.time),
            utc_built(self.start),
            svc,
            ver,
            env,
            role,
            lane,
            self.name.finish(),
            self.kind.finish(),
            self.unit.finish(),
            Arc::new(self.monotonic.finish()),
            Arc::new(self.temporality.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.sum.finish()),
            Arc::new(self.min.finish()),
            Arc::new(self.max.finish()),
            Arc::new(self.bounds.finish()),
            Arc::new(self.counts.finish()),
            Arc::new(self.exp_scale.finish()),
            Arc::new(self.exp_zero.finish()),
            Arc::new(self.exp_pos_offset.finish()),
            Arc::new(self.exp_pos_counts.finish()),
            Arc::new(self.exp_neg_offset.finish()),
            Arc::new(self.exp_neg_counts.finish()),
            Arc::new(self.quantiles.finish()),
            Arc::new(self.quantile_values.finish()),
            self.scope.finish(),
            self.attrs.finish(),
            self.res_attrs.finish(),
        ];
        super::tight::batch(METRICS.clone(), columns)
    }
}

/// An exponential histogram side as (offset, counts); absent means empty.
fn side(b: &Option<Buckets>) -> (i32, &[u64]) {
    b.as_ref()
        .map_or((0, &[][..]), |b| (b.offset, b.bucket_counts.as_slice()))
}

fn number(v: &Option<number_data_point::Value>) -> Option<f64> {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => Some(*d),
        Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
        None => None,
    }
}

/// Converts a metrics export request. Data points without a timestamp or
/// dated too far in the future, and histograms whose bucket counts do not
/// match their bounds, are rejected.
pub fn metrics_to_batches(
    req: &ExportMetricsServiceRequest,
    ctx: &Ctx<'_>,
) -> Result<Converted, ArrowError> {
    let mut rej = Rejections::default();
    let mut cuts = 0u64;
    let mut out: PerService<MetricCols> = PerService::default();
    let max = ctx.max_value();
    let latest = ctx.latest_ns();
    for (i, rm) in req.resource_metrics.iter().enumerate() {
        let resource = rm
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let res = ResourceView::from_prost(
            i as u32,
            resource,
            prost::Message::encoded_len(rm),
            ctx,
            &mut cuts,
        );
        for sm in &rm.scope_metrics {
            let scope = sm.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
            for m in &sm.metrics {
                let mut emit = |kind: &str, p: Point<'_>, rej: &mut Rejections| {
                    if m.name.is_empty() {
                        rej.add("of metrics without a name", 1);
                    } else if p.time == 0 {
                        rej.add("missing time_unix_nano", 1);
                    } else if ns(p.time) > latest {
                        rej.add(
                            "dated further in the future than limits.max_future_skew_secs",
                            1,
                        );
                    } else {
                        let who = ctx.attributor.record_ref(&res.attribution, p.attrs);
                        if let Some(reason) = identity_problem(&who) {
                            rej.add(reason, 1);
                            return;
                        }
                        if !res.charge() {
                            rej.add(RESOURCE_TOO_WIDE, 1);
                            return;
                        }
                        let names = Names {
                            name: &m.name,
                            kind,
                            unit: &m.unit,
                            scope,
                        };
                        match out.get(&who.service_name, ctx.max_services()) {
                            Some(c) => c.push(&who, &names, &res, p, max, &mut cuts),
                            None => rej.add(TOO_MANY_SERVICES, 1),
                        }
                    }
                };
                // OTLP/JSON reads a malformed `gauge`, `sum`… object as no
                // data at all (serde's flattened oneof), and a malformed
                // number as no value: both are reported, never dropped
                // silently (a metric counts as one data point).
                let valued = |v: &Option<number_data_point::Value>, rej: &mut Rejections| {
                    let ok = v.is_some();
                    if !ok {
                        rej.add("number data points without a value (asDouble or asInt)", 1);
                    }
                    ok
                };
                match &m.data {
                    None => rej.add(
                        "metrics whose data could not be read (none of gauge, sum, histogram, exponentialHistogram, summary)",
                        1,
                    ),
                    Some(Data::Gauge(g)) => {
                        for dp in &g.data_points {
                            if !valued(&dp.value, &mut rej) {
                                continue;
                            }
                            let p = Point {
                                time: dp.time_unix_nano,
                                start: dp.start_time_unix_nano,
                                attrs: &dp.attributes,
                                value: number(&dp.value),
                                ..Default::default()
                            };
                            emit("gauge", p, &mut rej);
                        }
                    }
                    Some(Data::Sum(s)) => {
                        for dp in &s.data_points {
                            if !valued(&dp.value, &mut rej) {
                                continue;
                            }
                            let p = Point {
                                time: dp.time_unix_nano,
                                start: dp.start_time_unix_nano,
                                attrs: &dp.attributes,
                                value: number(&dp.value),
                                monotonic: Some(s.is_monotonic),
                                temporality: Some(s.aggregation_temporality),
                                ..Default::default()
                            };
                            emit("sum", p, &mut rej);
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for dp in &h.data_points {
                            let buckets_ok = dp.bucket_counts.is_empty()
                                || dp.bucket_counts.len() == dp.explicit_bounds.len() + 1;
                            if !buckets_ok {
                                rej.add(
                                    "with bucket_counts not one longer than explicit_bounds",
                                    1,
                                );
                                continue;
                            }
                            let p = Point {
                                time: dp.time_unix_nano,
                                start: dp.start_time_unix_nano,
                                attrs: &dp.attributes,
                                temporality: Some(h.aggregation_temporality),
                                count: Some(dp.count),
                                sum: dp.sum,
                                min: dp.min,
                                max: dp.max,
                                bounds: Some(&dp.explicit_bounds),
                                counts: Some(&dp.bucket_counts),
                                ..Default::default()
                            };
                            emit("histogram", p, &mut rej);
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for dp in &h.data_points {
                            let p = Point {
                                time: dp.time_unix_nano,
                                start: dp.start_time_unix_nano,
                                attrs: &dp.attributes,
                                temporality: Some(h.aggregation_temporality),
                                count: Some(dp.count),
                                sum: dp.sum,
                                min: dp.min,
                                max: dp.max,
                                exp_scale: Some(dp.scale),
                                exp_zero: Some(dp.zero_count),
                                exp_pos: Some(side(&dp.positive)),
                                exp_neg: Some(side(&dp.negative)),
                                ..Default::default()
                            };
                            emit("exponential_histogram", p, &mut rej);
                        }
                    }
                    Some(Data::Summary(s)) => {
                        for dp in &s.data_points {
                            let q = dp.quantile_values.iter().map(|q| q.quantile).collect();
                            let v = dp.quantile_values.iter().map(|q| q.value).collect();
                            let p = Point {
                                time: dp.time_unix_nano,
                                start: dp.start_time_unix_nano,
                                attrs: &dp.attributes,
                                count: Some(dp.count),
                                sum: Some(dp.sum),
                                quantiles: Some((q, v)),
                                ..Default::default()
                            };
                            emit("summary", p, &mut rej);
                        }
                    }
                }
            }
        }
    }
    Ok(Converted {
        batches: out.finish()?,
        rejections: rej,
        truncated: cuts,
    })
}

#[cfg(test)]
mod tests;
