//! How much memory prost may allocate to decode an OTLP metrics request,
//! bounded from above by one walk over its wire format, so that the memory
//! limiter can reserve it before prost allocates it. Metrics are the one
//! signal still decoded into prost structs (spans and logs are read in
//! place), and their structs are large for their wire size: an empty
//! exponential-histogram point is 2 bytes on the wire and a 208-byte struct
//! in a vector that starts at 4 elements.
//!
//! The bound counts what prost puts on the heap: each repeated message as
//! its struct size times the capacity its vector reaches by doubling (at
//! least 4), each string or bytes field at its length, each packed or
//! repeated number at 8 bytes in a vector grown the same way. Singular and
//! `oneof` messages live inside their parent's struct and cost nothing more.
//! Unknown fields are skipped, as prost does. A message this walk cannot
//! read is not estimated (`None`): prost refuses it with its own error.

use super::reader::{Fields, Value, MAX_DEPTH};
use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, summary_data_point::ValueAtQuantile, Exemplar,
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, SummaryDataPoint,
};
use std::mem::size_of;

/// One message type: what its fields cost when decoded.
struct Msg {
    /// Fields holding messages: number, type, and whether repeated.
    messages: &'static [(u32, &'static Msg, bool)],
    /// `string` and `bytes` fields (singular or repeated).
    texts: &'static [u32],
    /// Repeated numbers (packed or not), and whether each is 8 bytes on
    /// the wire when packed (`fixed64`, `double`) or a varint.
    numbers: &'static [(u32, bool)],
    /// Size of the message's own struct (what a repeated field holds).
    size: usize,
}

const fn msg(
    size: usize,
    messages: &'static [(u32, &'static Msg, bool)],
    texts: &'static [u32],
    numbers: &'static [(u32, bool)],
) -> Msg {
    Msg {
        messages,
        texts,
        numbers,
        size,
    }
}

static REQUEST: Msg = msg(0, &[(1, &RESOURCE_METRICS, true)], &[], &[]);
static RESOURCE_METRICS: Msg = msg(
    size_of::<ResourceMetrics>(),
    &[(1, &RESOURCE, false), (2, &SCOPE_METRICS, true)],
    &[3],
    &[],
);
static RESOURCE: Msg = msg(
    0,
    &[(1, &KEY_VALUE, true), (3, &ENTITY_REF, true)],
    &[],
    &[],
);
static ENTITY_REF: Msg = msg(size_of::<EntityRef>(), &[], &[1, 2, 3, 4], &[]);
static SCOPE_METRICS: Msg = msg(
    size_of::<ScopeMetrics>(),
    &[(1, &SCOPE, false), (2, &METRIC, true)],
    &[3],
    &[],
);
static SCOPE: Msg = msg(0, &[(3, &KEY_VALUE, true)], &[1, 2], &[]);
static METRIC: Msg = msg(
    size_of::<Metric>(),
    &[
        (5, &GAUGE, false),
        (7, &SUM, false),
        (9, &HISTOGRAM, false),
        (10, &EXP_HISTOGRAM, false),
        (11, &SUMMARY, false),
        (12, &KEY_VALUE, true),
    ],
    &[1, 2, 3],
    &[],
);
static GAUGE: Msg = msg(0, &[(1, &NUMBER_POINT, true)], &[], &[]);
static SUM: Msg = msg(0, &[(1, &NUMBER_POINT, true)], &[], &[]);
static HISTOGRAM: Msg = msg(0, &[(1, &HISTOGRAM_POINT, true)], &[], &[]);
static EXP_HISTOGRAM: Msg = msg(0, &[(1, &EXP_POINT, true)], &[], &[]);
static SUMMARY: Msg = msg(0, &[(1, &SUMMARY_POINT, true)], &[], &[]);
static NUMBER_POINT: Msg = msg(
    size_of::<NumberDataPoint>(),
    &[(7, &KEY_VALUE, true), (5, &EXEMPLAR, true)],
    &[],
    &[],
);
static HISTOGRAM_POINT: Msg = msg(
    size_of::<HistogramDataPoint>(),
    &[(9, &KEY_VALUE, true), (8, &EXEMPLAR, true)],
    &[],
    &[(6, true), (7, true)],
);
static EXP_POINT: Msg = msg(
    size_of::<ExponentialHistogramDataPoint>(),
    &[
        (1, &KEY_VALUE, true),
        (8, &BUCKETS, false),
        (9, &BUCKETS, false),
        (11, &EXEMPLAR, true),
    ],
    &[],
    &[],
);
static BUCKETS: Msg = msg(size_of::<Buckets>(), &[], &[], &[(2, false)]);
static SUMMARY_POINT: Msg = msg(
    size_of::<SummaryDataPoint>(),
    &[(7, &KEY_VALUE, true), (6, &QUANTILE, true)],
    &[],
    &[],
);
static QUANTILE: Msg = msg(size_of::<ValueAtQuantile>(), &[], &[], &[]);
static EXEMPLAR: Msg = msg(
    size_of::<Exemplar>(),
    &[(7, &KEY_VALUE, true)],
    &[4, 5],
    &[],
);
static KEY_VALUE: Msg = msg(size_of::<KeyValue>(), &[(2, &ANY_VALUE, false)], &[1], &[]);
static ANY_VALUE: Msg = msg(
    size_of::<AnyValue>(),
    &[(5, &ARRAY_VALUE, false), (6, &KEY_VALUE_LIST, false)],
    &[1, 7],
    &[],
);
static ARRAY_VALUE: Msg = msg(0, &[(1, &ANY_VALUE, true)], &[], &[]);
static KEY_VALUE_LIST: Msg = msg(0, &[(1, &KEY_VALUE, true)], &[], &[]);

/// The capacity a vector of `n` elements reaches by pushing (doubling from 4).
fn capacity(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n.max(4).next_power_of_two()
    }
}

/// An upper bound of the bytes prost allocates to decode `buf` as an
/// `ExportMetricsServiceRequest`; `None` when the bytes are not a message
/// this walk can read.
pub fn metrics_request_bytes(buf: &[u8]) -> Option<usize> {
    walk(buf, &REQUEST, 0)
}

fn walk(buf: &[u8], m: &Msg, depth: u32) -> Option<usize> {
    if depth >= MAX_DEPTH {
        return None;
    }
    // Elements per repeated field of this message (few distinct fields).
    let mut counts: Vec<(u32, usize, usize)> = Vec::new();
    let mut count = |field: u32, size: usize| match counts.iter_mut().find(|c| c.0 == field) {
        Some(c) => c.1 += 1,
        None => counts.push((field, 1, size)),
    };
    let mut total = 0usize;
    let mut fields = Fields::new(buf);
    while let Some((field, value)) = fields.next_field().ok()? {
        if let Some(&(_, child, repeated)) = m.messages.iter().find(|c| c.0 == field) {
            let Value::Len(b) = value else { continue };
            total = total.checked_add(walk(b, child, depth + 1)?)?;
            if repeated {
                count(field, child.size);
            }
        } else if m.texts.contains(&field) {
            if let Value::Len(b) = value {
                // A repeated string is a `String` in a vector as well.
                total = total.checked_add(b.len() + size_of::<String>())?;
            }
        } else if let Some(&(_, fixed)) = m.numbers.iter().find(|c| c.0 == field) {
            match value {
                // Packed: 8 bytes per number, or at most one per byte.
                Value::Len(b) => {
                    let n = if fixed { b.len() / 8 } else { b.len() };
                    total = total.checked_add(capacity(n).checked_mul(8)?)?;
                }
                _ => count(field, 8),
            }
        }
    }
    for (_, n, size) in counts {
        total = total.checked_add(capacity(n).checked_mul(size)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, ArrayValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, ExponentialHistogram, Gauge, Histogram, Summary,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    /// Heap bytes of the decoded request, counted the way the walk counts
    /// (vector capacities, string lengths), from prost's own structs.
    fn heap(r: &ExportMetricsServiceRequest) -> usize {
        fn v<T>(x: &Vec<T>) -> usize {
            x.capacity() * size_of::<T>()
        }
        fn any(a: &AnyValue) -> usize {
            match &a.value {
                Some(any_value::Value::StringValue(s)) => s.capacity(),
                Some(any_value::Value::BytesValue(b)) => b.capacity(),
                Some(any_value::Value::ArrayValue(x)) => {
                    v(&x.values) + x.values.iter().map(any).sum::<usize>()
                }
                Some(any_value::Value::KvlistValue(x)) => kvs(&x.values),
                _ => 0,
            }
        }
        fn kvs(x: &Vec<KeyValue>) -> usize {
            v(x) + x
                .iter()
                .map(|k| k.key.capacity() + k.value.as_ref().map_or(0, any))
                .sum::<usize>()
        }
        let mut n = v(&r.resource_metrics);
        for rm in &r.resource_metrics {
            n += rm.resource.as_ref().map_or(0, |r| kvs(&r.attributes));
            n += v(&rm.scope_metrics);
            for sm in &rm.scope_metrics {
                n += v(&sm.metrics);
                for m in &sm.metrics {
                    n += m.name.capacity();
                    n += match &m.data {
                        Some(metric::Data::Gauge(g)) => {
                            v(&g.data_points)
                                + g.data_points
                                    .iter()
                                    .map(|p| kvs(&p.attributes))
                                    .sum::<usize>()
                        }
                        Some(metric::Data::Histogram(h)) => {
                            v(&h.data_points)
                                + h.data_points
                                    .iter()
                                    .map(|p| {
                                        kvs(&p.attributes)
                                            + v(&p.bucket_counts)
                                            + v(&p.explicit_bounds)
                                    })
                                    .sum::<usize>()
                        }
                        Some(metric::Data::ExponentialHistogram(h)) => {
                            v(&h.data_points)
                                + h.data_points
                                    .iter()
                                    .map(|p| {
                                        kvs(&p.attributes)
                                            + p.positive.as_ref().map_or(0, |b| v(&b.bucket_counts))
                                    })
                                    .sum::<usize>()
                        }
                        Some(metric::Data::Summary(s)) => {
                            v(&s.data_points)
                                + s.data_points
                                    .iter()
                                    .map(|p| kvs(&p.attributes) + v(&p.quantile_values))
                                    .sum::<usize>()
                        }
                        _ => 0,
                    };
                }
            }
        }
        n
    }

    fn request(points: usize) -> ExportMetricsServiceRequest {
        let attrs = vec![
            kv("k", any_value::Value::StringValue("value".into())),
            kv(
                "list",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(any_value::Value::IntValue(3)),
                    }],
                }),
            ),
        ];
        let metric = |data| Metric {
            name: "m".into(),
            data: Some(data),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("s".into()),
                    )],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric(metric::Data::Gauge(Gauge {
                            data_points: (0..points)
                                .map(|_| NumberDataPoint {
                                    attributes: attrs.clone(),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                        metric(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                bucket_counts: vec![1; 37],
                                explicit_bounds: vec![0.5; 36],
                                ..Default::default()
                            }],
                            ..Default::default()
                        })),
                        metric(metric::Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint::default(); points],
                            ..Default::default()
                        })),
                        metric(metric::Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                quantile_values: vec![ValueAtQuantile::default(); 5],
                                ..Default::default()
                            }],
                        })),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn the_bound_holds_what_prost_allocates() {
        for points in [0, 1, 3, 5, 100, 1000] {
            let bytes = request(points).encode_to_vec();
            let decoded = ExportMetricsServiceRequest::decode(bytes.as_slice()).unwrap();
            let bound = metrics_request_bytes(&bytes).unwrap();
            let got = heap(&decoded);
            assert!(bound >= got, "{points} points: bound {bound} < {got}");
            // And not far above it: the vectors' doubling at most.
            assert!(
                bound <= 3 * got + 4096,
                "{points} points: bound {bound}, decoded {got}"
            );
        }
    }

    #[test]
    fn empty_points_are_counted_at_their_struct_size() {
        // 50,000 empty exponential-histogram points: 2 bytes each on the wire.
        let bytes = request(0).encode_to_vec();
        let mut r = request(0);
        let Some(metric::Data::ExponentialHistogram(h)) =
            &mut r.resource_metrics[0].scope_metrics[0].metrics[2].data
        else {
            unreachable!()
        };
        h.data_points = vec![ExponentialHistogramDataPoint::default(); 50_000];
        let big = r.encode_to_vec();
        let bound = metrics_request_bytes(&big).unwrap() - metrics_request_bytes(&bytes).unwrap();
        assert!(big.len() - bytes.len() < 150_000);
        assert!(bound >= 50_000 * size_of::<ExponentialHistogramDataPoint>());
    }

    #[test]
    fn unreadable_bytes_are_not_estimated() {
        assert_eq!(metrics_request_bytes(&[0x0a, 0x05, 0x01]), None);
        assert_eq!(metrics_request_bytes(&[]), Some(0));
        // Nesting past prost's limit.
        let mut deep = AnyValue::default();
        for _ in 0..120 {
            deep = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![deep],
                })),
            };
        }
        let mut r = request(1);
        r.resource_metrics[0].resource.as_mut().unwrap().attributes[0].value = Some(deep);
        assert_eq!(metrics_request_bytes(&r.encode_to_vec()), None);
    }
}
