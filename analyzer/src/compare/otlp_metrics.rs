//! OTLP metrics a policy names, per side: histogram and exponential-histogram
//! buckets, gauge points, and the increments of monotonic sums.
//!
//! Points are grouped into series (attributes, resource attributes and start
//! time). Delta points add up. For cumulative points the window's share is the
//! last point minus the first of each series (bucket by bucket); a series that
//! restarted or changed its buckets in the window contributes its last point.
//! OTLP buckets are wider than graylens's 1% buckets, so each source bucket is
//! kept three times — at its lower edge, a representative and its upper edge —
//! and quantile bounds use the outer edges: they stay conservative however
//! coarse the exporter's buckets are.

use super::observe::{floats_col, ints_col, strings_col};
use super::selector::{quote, Selector};
use crate::error::{Error, Result};
use crate::histogram::LogHistogram;
use crate::sql::Tables;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, UInt64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Stand-in for "no upper edge" (the overflow bucket without a max).
pub const UNBOUNDED: f64 = 1e300;

/// Values known up to buckets: each bucket's count at its lower edge, at a
/// representative value and at its upper edge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BucketedValues {
    pub low: LogHistogram,
    pub mid: LogHistogram,
    pub high: LogHistogram,
}

impl BucketedValues {
    /// Exact values (span latencies): the three views coincide.
    pub fn exact(h: &LogHistogram) -> Self {
        Self {
            low: h.clone(),
            mid: h.clone(),
            high: h.clone(),
        }
    }

    /// `count` values somewhere in `[lo, hi]`.
    pub fn add(&mut self, lo: f64, hi: f64, count: u64) {
        if count == 0 {
            return;
        }
        let lo = lo.max(0.0);
        let hi = hi.max(lo);
        let mid = if lo > 0.0 && hi < UNBOUNDED {
            (lo * hi).sqrt()
        } else if hi >= UNBOUNDED {
            lo
        } else {
            hi / 2.0
        };
        for (h, v) in [
            (&mut self.low, lo),
            (&mut self.mid, mid),
            (&mut self.high, hi),
        ] {
            h.add(crate::histogram::key_of(v), count, v * count as f64, v, v);
        }
    }

    pub fn count(&self) -> u64 {
        self.mid.count()
    }
}

/// One policy-named metric on one side.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricSide {
    pub unit: String,
    /// OTLP metric types seen (`histogram`, `gauge`…).
    pub types: Vec<String>,
    /// Histogram buckets, or gauge / non-monotonic sum points.
    pub values: BucketedValues,
    /// Σ increments of monotonic sums in the window.
    pub increments: f64,
    pub points: u64,
    /// Points holding values below zero (a gauge value, a histogram's
    /// `min` or a bucket below zero, negative exponential buckets): the
    /// value histograms hold values ≥ 0 only, so such a metric is not judged.
    pub negative: u64,
}

/// A point's buckets as `(lo, hi, count)`, or a single value.
struct Point {
    start: Option<i64>,
    temporality: i64,
    monotonic: bool,
    metric_type: String,
    value: Option<f64>,
    buckets: Vec<(f64, f64, u64)>,
    unit: String,
    negative: bool,
}

pub async fn observe_metrics(
    tables: &Tables,
    sel: &Selector,
    names: &[String],
) -> Result<[BTreeMap<String, MetricSide>; 2]> {
    let mut out = [BTreeMap::new(), BTreeMap::new()];
    if names.is_empty() {
        return Ok(out);
    }
    let list = names
        .iter()
        .map(|n| quote(n))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {col}, metric_name, metric_type, unit, CAST(start_time AS BIGINT), aggregation_temporality, is_monotonic, \
         value, max, bucket_bounds, bucket_counts, exp_scale, exp_zero_count, exp_positive_offset, exp_positive_counts, \
         attributes, resource_attributes, min, exp_negative_counts FROM metrics WHERE {pred} AND metric_name IN ({list}) ORDER BY time",
        col = sel.by.column(),
        pred = sel.predicate()
    );
    // (side, metric, series) → points in time order.
    let mut series: BTreeMap<(usize, String, String), Vec<Point>> = BTreeMap::new();
    for b in tables.internal(&sql).await? {
        let side = strings_col(b.column(0))?;
        let name = strings_col(b.column(1))?;
        let mtype = strings_col(b.column(2))?;
        let unit = strings_col(b.column(3))?;
        let start = ints_col(b.column(4))?;
        let temporality = ints_col(b.column(5))?;
        let monotonic = b
            .column(6)
            .as_boolean_opt()
            .map(|a| {
                (0..a.len())
                    .map(|i| a.is_valid(i) && a.value(i))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let value = floats_col(b.column(7))?;
        let max = floats_col(b.column(8))?;
        let bounds = list_f64(b.column(9))?;
        let counts = list_u64(b.column(10))?;
        let scale = ints_col(b.column(11))?;
        let zero = ints_col(b.column(12))?;
        let offset = ints_col(b.column(13))?;
        let exp_counts = list_u64(b.column(14))?;
        let fmt_opts = FormatOptions::default();
        let attrs = ArrayFormatter::try_new(b.column(15).as_ref(), &fmt_opts).map_err(internal)?;
        let res = ArrayFormatter::try_new(b.column(16).as_ref(), &fmt_opts).map_err(internal)?;
        let min = floats_col(b.column(17))?;
        let exp_negative = list_u64(b.column(18))?;
        for r in 0..b.num_rows() {
            let s = side[r].as_deref().unwrap_or("");
            let idx = if s == sel.baseline {
                0
            } else if s == sel.canary {
                1
            } else {
                continue;
            };
            let mtype_r = mtype[r].clone().unwrap_or_default();
            let mut buckets = Vec::new();
            let negative = match mtype_r.as_str() {
                "histogram" => {
                    min[r].is_some_and(|m| m < 0.0)
                        || bounds[r]
                            .as_ref()
                            .zip(counts[r].as_ref())
                            .is_some_and(|(b, c)| {
                                b.first().is_some_and(|&b0| b0 < 0.0)
                                    && c.first().is_some_and(|&n| n > 0)
                            })
                }
                "exponential_histogram" => exp_negative[r]
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|&n| n > 0)),
                _ => value[r].is_some_and(|v| v < 0.0),
            };
            match mtype_r.as_str() {
                "histogram" => {
                    if let (Some(bounds), Some(counts)) = (&bounds[r], &counts[r]) {
                        for (i, c) in counts.iter().enumerate() {
                            let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
                            let hi = bounds
                                .get(i)
                                .copied()
                                .unwrap_or_else(|| max[r].unwrap_or(UNBOUNDED).max(lo));
                            buckets.push((lo, hi, *c));
                        }
                    }
                }
                "exponential_histogram" => {
                    let base = 2f64.powf(2f64.powi(-(scale[r].unwrap_or(0) as i32)));
                    buckets.push((0.0, 0.0, zero[r].unwrap_or(0) as u64));
                    if let Some(counts) = &exp_counts[r] {
                        let off = offset[r].unwrap_or(0) as i32;
                        for (i, c) in counts.iter().enumerate() {
                            let k = off + i as i32;
                            buckets.push((base.powi(k), base.powi(k + 1), *c));
                        }
                    }
                }
                _ => {}
            }
            let key = format!("{}|{}|{:?}", attrs.value(r), res.value(r), start[r]);
            series
                .entry((idx, name[r].clone().unwrap_or_default(), key))
                .or_default()
                .push(Point {
                    start: start[r],
                    temporality: temporality[r].unwrap_or(0),
                    monotonic: monotonic.get(r).copied().unwrap_or(false),
                    metric_type: mtype_r,
                    value: value[r],
                    buckets,
                    unit: unit[r].clone().unwrap_or_default(),
                    negative,
                });
        }
    }
    for ((idx, name, _), points) in series {
        let m: &mut MetricSide = out[idx].entry(name).or_default();
        absorb(m, &points);
    }
    Ok(out)
}

/// Adds one series' share of the window.
fn absorb(m: &mut MetricSide, points: &[Point]) {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return;
    };
    m.points += points.len() as u64;
    m.negative += points.iter().filter(|p| p.negative).count() as u64;
    if m.unit.is_empty() {
        m.unit = last.unit.clone();
    }
    if !m.types.contains(&last.metric_type) {
        m.types.push(last.metric_type.clone());
    }
    const CUMULATIVE: i64 = 2;
    let cumulative = last.temporality == CUMULATIVE;
    match last.metric_type.as_str() {
        "histogram" | "exponential_histogram" => {
            let same_layout = first.start == last.start
                && first.buckets.len() == last.buckets.len()
                && first
                    .buckets
                    .iter()
                    .zip(&last.buckets)
                    .all(|(a, b)| a.0 == b.0 && a.1 == b.1 && b.2 >= a.2);
            if !cumulative {
                for p in points {
                    for &(lo, hi, c) in &p.buckets {
                        m.values.add(lo, hi, c);
                    }
                }
            } else if points.len() >= 2 && same_layout {
                for (a, b) in first.buckets.iter().zip(&last.buckets) {
                    m.values.add(b.0, b.1, b.2 - a.2);
                }
            } else {
                for &(lo, hi, c) in &last.buckets {
                    m.values.add(lo, hi, c);
                }
            }
        }
        "sum" if last.monotonic => {
            let v = |p: &Point| p.value.unwrap_or(0.0);
            m.increments += if !cumulative {
                points.iter().map(v).sum()
            } else if points.len() >= 2 && first.start == last.start && v(last) >= v(first) {
                v(last) - v(first)
            } else {
                v(last)
            };
        }
        _ => {
            for p in points {
                if let Some(v) = p.value {
                    m.values.add(v, v, 1);
                }
            }
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("metrics query: {e}"))
}

fn list_of(a: &ArrayRef, item: DataType) -> Result<ListArray> {
    let to = DataType::List(Arc::new(Field::new("item", item, true)));
    Ok(cast(a, &to).map_err(internal)?.as_list::<i32>().clone())
}

fn list_f64(a: &ArrayRef) -> Result<Vec<Option<Vec<f64>>>> {
    let l = list_of(a, DataType::Float64)?;
    Ok((0..l.len())
        .map(|i| {
            l.is_valid(i)
                .then(|| l.value(i).as_primitive::<Float64Type>().values().to_vec())
        })
        .collect())
}

fn list_u64(a: &ArrayRef) -> Result<Vec<Option<Vec<u64>>>> {
    let l = list_of(a, DataType::UInt64)?;
    Ok((0..l.len())
        .map(|i| {
            l.is_valid(i)
                .then(|| l.value(i).as_primitive::<UInt64Type>().values().to_vec())
        })
        .collect())
}
