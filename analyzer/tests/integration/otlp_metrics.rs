//! OTLP metrics named by a policy, through the real path: OTLP export
//! requests → Arrow (collector) → store → `compare`: cumulative explicit
//! histograms (window share = last − first per series), delta exponential
//! histograms, monotonic counters per request, gauges.

use graylens_analyzer::judge::Classification;
use graylens_analyzer::{compare, By, Decision, Policy, Selector, Store, StoreConfig, Tables};
use graylens_collector::ingest::convert_request;
use graylens_collector::Reservation;
use graylens_collector::Signal;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

const T0: u64 = 1_700_000_000_000_000_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn resource(version: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", "api"), kv("service.version", version)],
        ..Default::default()
    })
}

/// Bounds in seconds: 5, 10, 25, 50, 100, 250 ms.
const BOUNDS: [f64; 6] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

/// Two cumulative points of one series; `before` counts precede the window's share `share`.
fn histogram(
    version: &str,
    before: [u64; 7],
    share: [u64; 7],
    requests: (f64, f64),
    gauge: &[f64],
) -> ExportMetricsServiceRequest {
    let point = |t: u64, counts: [u64; 7]| HistogramDataPoint {
        start_time_unix_nano: T0,
        time_unix_nano: t,
        count: counts.iter().sum(),
        bucket_counts: counts.to_vec(),
        explicit_bounds: BOUNDS.to_vec(),
        ..Default::default()
    };
    let after: [u64; 7] = std::array::from_fn(|i| before[i] + share[i]);
    let sum_point = |t: u64, v: f64| NumberDataPoint {
        start_time_unix_nano: T0,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let metrics = vec![
        Metric {
            name: "http.server.request.duration".into(),
            unit: "s".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![point(T0 + 1_000, before), point(T0 + 60_000_000_000, after)],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
        Metric {
            name: "db.retries".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![
                    sum_point(T0 + 1_000, requests.0),
                    sum_point(T0 + 60_000_000_000, requests.1),
                ],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "queue.depth".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: gauge
                    .iter()
                    .enumerate()
                    .map(|(i, v)| sum_point(T0 + i as u64 * 1_000_000, *v))
                    .collect(),
            })),
            ..Default::default()
        },
        Metric {
            name: "rpc.duration".into(),
            unit: "ms".into(),
            data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: T0 + 5_000,
                    scale: 3,
                    zero_count: 2,
                    count: 402,
                    positive: Some(Buckets {
                        offset: 20,
                        bucket_counts: vec![100, 200, 100],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(version),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `n` server spans: the exposure of the counter test.
fn spans(version: &str, n: u64) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: [&[3u8; 8][..], &i.to_be_bytes()].concat(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: "GET /".into(),
            kind: 2,
            start_time_unix_nano: T0 + i,
            end_time_unix_nano: T0 + i + 10_000_000,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(version),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn store(dir: &std::path::Path) -> std::sync::Arc<Store> {
    Store::open(StoreConfig {
        data_dir: dir.into(),
        ..Default::default()
    })
    .unwrap()
}

fn v1_against_v2() -> Selector {
    Selector {
        service: "api".into(),
        baseline: "v1".into(),
        canary: "v2".into(),
        by: By::Version,
        from: None,
        to: None,
    }
}

const POLICY: &str = r#"
[[metrics]]
name = "duration_p90"
kind = "metric_histogram"
metric = "http.server.request.duration"
quantile = 0.9
tolerance_relative = 0.1
min_samples = 100

[[metrics]]
name = "retries"
kind = "metric_counter"
metric = "db.retries"
tolerance_relative = 0.1
min_samples = 100

[[metrics]]
name = "queue"
kind = "metric_gauge"
metric = "queue.depth"
min_samples = 5
critical = false

[[metrics]]
name = "rpc_p50"
kind = "metric_histogram"
metric = "rpc.duration"
quantile = 0.5
min_samples = 100
critical = false
"#;

#[tokio::test]
async fn policy_named_otlp_metrics_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    // Baseline: 10,000 requests in the window, p90 in (10, 25] ms. Canary: p90 in (100, 250] ms,
    // and 5 retries per 100 requests against 1.
    let base = histogram(
        "v1",
        [500, 500, 0, 0, 0, 0, 0],
        [4000, 3000, 2000, 800, 150, 50, 0],
        (100.0, 200.0),
        &[3.0; 20],
    );
    let canary = histogram(
        "v2",
        [0; 7],
        [1000, 1000, 500, 500, 500, 1500, 0],
        (0.0, 250.0),
        &[3.0; 20],
    );
    for req in [base, canary] {
        let c = convert_request(&req).unwrap();
        assert_eq!(c.rejections.total(), 0);
        for b in c.batches {
            store.append(Signal::Metrics, b, Reservation::none());
        }
    }
    for (v, n) in [("v1", 10_000), ("v2", 5_000)] {
        for b in convert_request(&spans(v, n)).unwrap().batches {
            store.append(Signal::Traces, b, Reservation::none());
        }
    }
    let tables = Tables::new(store).unwrap();
    let sel = v1_against_v2();
    let c = compare(&tables, &sel, &Policy::from_toml(POLICY).unwrap())
        .await
        .unwrap();
    let m = |name: &str| c.metrics.iter().find(|m| m.name == name).unwrap();

    let p90 = m("duration_p90");
    // Window share only: the 1,000 values before the window are gone (last − first).
    assert_eq!(p90.samples.baseline, 10_000);
    assert_eq!(p90.samples.canary, 5_000);
    assert_eq!(p90.unit, "s");
    assert!(
        p90.baseline.unwrap() <= 0.025 && p90.canary.unwrap() > 0.05,
        "{p90:?}"
    );
    assert_eq!(p90.classification, Classification::Fail, "{}", p90.reason);

    let retries = m("retries");
    assert!(retries.details.contains_key("counts"), "{retries:?}");
    assert_eq!(
        retries.details["counts"],
        serde_json::json!({"baseline": 100, "canary": 250})
    );
    assert!(
        (retries.baseline.unwrap() - 0.01).abs() < 1e-12
            && (retries.canary.unwrap() - 0.05).abs() < 1e-12
    );
    assert_eq!(
        retries.classification,
        Classification::Fail,
        "{}",
        retries.reason
    );

    // 20 gauge points per side, equal: no regression, but too few points to
    // bound the median, so not a pass yet.
    let queue = m("queue");
    assert_eq!(queue.samples.baseline, 20);
    assert_eq!(
        queue.classification,
        Classification::Inconclusive,
        "{}",
        queue.reason
    );
    assert!(
        queue.reason.contains("cannot be bounded yet: about ")
            && queue.reason.contains("more points per side"),
        "{}",
        queue.reason
    );

    // Delta exponential histogram: 402 values, median in bucket 21 of base 2^(1/8).
    let rpc = m("rpc_p50");
    assert_eq!(rpc.samples.canary, 402);
    let base = 2f64.powf(0.125);
    let median = rpc.canary.unwrap();
    assert!(
        median > base.powi(21) && median <= base.powi(22),
        "{median}"
    );
    assert_eq!(c.verdict.decision, Decision::Fail);

    // A metric nobody sends: nodata, named.
    let policy = Policy::from_toml(
        "[[metrics]]\nname = \"x\"\nkind = \"metric_histogram\"\nmetric = \"nope\"\nquantile = 0.5",
    )
    .unwrap();
    let c = compare(&tables, &sel, &policy).await.unwrap();
    assert_eq!(c.metrics[0].classification, Classification::Nodata);
    assert!(
        c.metrics[0].reason.contains("no points of metric \"nope\""),
        "{}",
        c.metrics[0].reason
    );
}

#[tokio::test]
async fn values_below_zero_are_not_judged_as_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    // A gauge at −10 on the baseline and −50 on the canary: read as 0 and 0,
    // it passed whatever the change.
    for (v, g) in [("v1", -10.0), ("v2", -50.0)] {
        let req = histogram(v, [0; 7], [10; 7], (0.0, 1.0), &[g; 300]);
        for b in convert_request(&req).unwrap().batches {
            store.append(Signal::Metrics, b, Reservation::none());
        }
        for b in convert_request(&spans(v, 10)).unwrap().batches {
            store.append(Signal::Traces, b, Reservation::none());
        }
    }
    let tables = Tables::new(store).unwrap();
    let sel = v1_against_v2();
    let policy = Policy::from_toml(
        "[[metrics]]\nname = \"queue\"\nkind = \"metric_gauge\"\nmetric = \"queue.depth\"\nmin_samples = 5",
    )
    .unwrap();
    let c = compare(&tables, &sel, &policy).await.unwrap();
    let m = &c.metrics[0];
    assert_eq!(
        m.classification,
        Classification::Inconclusive,
        "{}",
        m.reason
    );
    assert!(m.reason.contains("below zero"), "{}", m.reason);
    assert_eq!(
        m.details["negative_points"],
        serde_json::json!({"baseline": 300, "canary": 300})
    );
    assert_eq!(c.verdict.decision, Decision::Inconclusive);
}
