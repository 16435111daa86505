//! Unit tests of the metrics conversion.

use super::*;
use crate::config::AttributionConfig;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, UInt64Type};
use opentelemetry_proto::tonic::metrics::v1::{
    summary_data_point::ValueAtQuantile, ExponentialHistogram, ExponentialHistogramDataPoint,
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, Summary, SummaryDataPoint,
};

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: "ms".into(),
        data: Some(data),
        ..Default::default()
    }
}

fn num(t: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

#[test]
fn every_metric_type_becomes_rows_with_its_columns() {
    let metrics = vec![
        metric(
            "g",
            Data::Gauge(Gauge {
                data_points: vec![num(1, 2.5), num(0, 1.0)],
            }),
        ),
        metric(
            "s",
            Data::Sum(Sum {
                data_points: vec![num(1, 10.0)],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "h",
            Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        time_unix_nano: 1,
                        count: 3,
                        sum: Some(6.0),
                        bucket_counts: vec![1, 2],
                        explicit_bounds: vec![5.0],
                        ..Default::default()
                    },
                    HistogramDataPoint {
                        time_unix_nano: 1,
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![5.0],
                        ..Default::default()
                    },
                ],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "e",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: 1,
                    count: 4,
                    scale: 3,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: -2,
                        bucket_counts: vec![1, 2],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "q",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: 1,
                    count: 2,
                    sum: 3.0,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 1.0,
                        },
                        ValueAtQuantile {
                            quantile: 1.0,
                            value: 2.0,
                        },
                    ],
                    ..Default::default()
                }],
            }),
        ),
    ];
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let a = crate::attribution::Attributor::new(AttributionConfig::default());
    let limits = crate::config::LimitsConfig::default();
    let ctx = Ctx {
        attributor: &a,
        limits: &limits,
        received_ns: 0,
    };
    let out = metrics_to_batches(&req, &ctx).unwrap();
    let msg = out.rejections.message("data points").unwrap();
    assert!(
        msg.contains("missing time_unix_nano") && msg.contains("bucket_counts"),
        "{msg}"
    );
    let b = &out.batches[0];
    assert_eq!(b.num_rows(), 5);
    let kind = datafusion::arrow::compute::cast(
        b.column_by_name("metric_type").unwrap(),
        &datafusion::arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let kind = kind.as_string::<i32>();
    let kinds: Vec<_> = (0..5).map(|i| kind.value(i)).collect();
    assert_eq!(
        kinds,
        [
            "gauge",
            "sum",
            "histogram",
            "exponential_histogram",
            "summary"
        ]
    );
    let value = b
        .column_by_name("value")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!((value.value(0), value.value(1)), (2.5, 10.0));
    assert!(value.is_null(2));
    let counts = b.column_by_name("bucket_counts").unwrap().as_list::<i32>();
    assert_eq!(
        counts
            .value(2)
            .as_primitive::<UInt64Type>()
            .values()
            .to_vec(),
        vec![1, 2]
    );
    assert!(counts.is_null(0));
    let off = b
        .column_by_name("exp_positive_offset")
        .unwrap()
        .as_primitive::<Int32Type>();
    assert_eq!(off.value(3), -2);
    let neg = b
        .column_by_name("exp_negative_counts")
        .unwrap()
        .as_list::<i32>();
    assert_eq!(neg.value(3).len(), 0, "absent side is an empty list");
    let qv = b
        .column_by_name("quantile_values")
        .unwrap()
        .as_list::<i32>();
    assert_eq!(
        qv.value(4).as_primitive::<Float64Type>().values().to_vec(),
        vec![1.0, 2.0]
    );
    let mono = b.column_by_name("is_monotonic").unwrap().as_boolean();
    assert!(mono.value(1) && mono.is_null(0));
}
