//! The Rust OpenTelemetry SDK (`opentelemetry-otlp`) exporting to graylens
//! over gRPC (gzip) and HTTP (protobuf and JSON).

use crate::harness::Server;
use opentelemetry::logs::{LogRecord, Logger, LoggerProvider, Severity};
use opentelemetry::metrics::MeterProvider;
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

fn resource(service: &str, version: &str, role: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_string())
        .with_attributes([
            KeyValue::new("service.version", version.to_string()),
            KeyValue::new("k8s.pod.label.role", role.to_string()),
        ])
        .build()
}

fn send_spans(provider: SdkTracerProvider, n: usize, errors: usize) {
    let tracer = provider.tracer("e2e");
    for i in 0..n {
        let mut span = tracer.start("GET /cart");
        span.set_attribute(KeyValue::new("http.route", "/cart"));
        if i < errors {
            span.set_status(opentelemetry::trace::Status::error("boom"));
        }
        span.end();
    }
    provider.force_flush().unwrap();
    provider.shutdown().unwrap();
}

#[test]
fn rust_sdk_over_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // gRPC with gzip: traces and logs from the canary.
    let (tp, lp) = rt.block_on(async {
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&s.grpc)
            .with_compression(Compression::Gzip)
            .build()
            .unwrap();
        let logs = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(&s.grpc)
            .build()
            .unwrap();
        let res = resource("checkout", "1.5.0", "canary");
        (
            SdkTracerProvider::builder()
                .with_resource(res.clone())
                .with_batch_exporter(spans)
                .build(),
            SdkLoggerProvider::builder()
                .with_resource(res)
                .with_batch_exporter(logs)
                .build(),
        )
    });
    send_spans(tp, 300, 7);
    let logger = lp.logger("e2e");
    for i in 0..25 {
        let mut rec = logger.create_log_record();
        rec.set_body(format!("payment failed {i}").into());
        rec.set_severity_number(if i < 5 {
            Severity::Error
        } else {
            Severity::Info
        });
        logger.emit(rec);
    }
    lp.shutdown().unwrap();

    // HTTP protobuf and HTTP JSON: traces from the baseline, metrics.
    for (proto, version, n) in [
        (Protocol::HttpBinary, "1.4.0", 200),
        (Protocol::HttpJson, "1.4.1", 50),
    ] {
        let exp = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(proto)
            .with_endpoint(format!("{}/v1/traces", s.otlp_http))
            .build()
            .unwrap();
        let tp = SdkTracerProvider::builder()
            .with_resource(resource("checkout", version, "stable"))
            .with_batch_exporter(exp)
            .build();
        send_spans(tp, n, 0);
    }
    let exp = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/metrics", s.otlp_http))
        .build()
        .unwrap();
    let mp = SdkMeterProvider::builder()
        .with_resource(resource("checkout", "1.5.0", "canary"))
        .with_periodic_exporter(exp)
        .build();
    let meter = mp.meter("e2e");
    meter
        .u64_counter("orders")
        .build()
        .add(42, &[KeyValue::new("region", "eu")]);
    let h = meter
        .f64_histogram("checkout.latency")
        .with_unit("ms")
        .build();
    for v in [3.0, 7.0, 120.0] {
        h.record(v, &[]);
    }
    mp.shutdown().unwrap();

    let q = |sql: &str| s.rows(sql);
    s.wait_count("SELECT count(*) FROM spans", 550);
    assert_eq!(
        q("SELECT service_version, rollout_role, count(*), sum(CASE WHEN is_error THEN 1 ELSE 0 END) \
           FROM spans WHERE service_name = 'checkout' GROUP BY 1, 2 ORDER BY 1"),
        vec![
            vec!["1.4.0".into(), "baseline".into(), 200.into(), 0.into()],
            vec!["1.4.1".into(), "baseline".into(), 50.into(), 0.into()],
            vec!["1.5.0".into(), "canary".into(), 300.into(), 7.into()],
        ] as Vec<Vec<serde_json::Value>>
    );
    assert_eq!(
        s.count("SELECT count(*) FROM spans WHERE http_route = '/cart' AND duration_ns >= 0"),
        550
    );
    s.wait_count(
        "SELECT count(*) FROM logs WHERE service_version = '1.5.0'",
        25,
    );
    assert_eq!(
        s.count("SELECT count(*) FROM logs WHERE severity_number >= 17"),
        5
    );
    s.wait_count(
        "SELECT count(*) FROM metrics WHERE metric_name = 'orders' AND value = 42",
        1,
    );
    let hist = q(
        "SELECT metric_type, count, sum, unit FROM metrics WHERE metric_name = 'checkout.latency'",
    );
    assert_eq!(
        hist,
        vec![vec![
            "histogram".into(),
            3.into(),
            130.0.into(),
            "ms".into()
        ]] as Vec<Vec<serde_json::Value>>
    );
    drop(rt);
    s.stop();
}

/// tonic's own client: an oversized gRPC message gets RESOURCE_EXHAUSTED,
/// and an empty request succeeds with no partial success.
#[test]
fn grpc_limits_and_empty_request() {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
    };
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &dir.path().join("data"),
        "[otlp]\nmax_message_bytes = 4096\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = TraceServiceClient::connect(s.grpc.clone()).await.unwrap();
        let ok = c
            .export(ExportTraceServiceRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(ok.partial_success.is_none());
        let big = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        name: "x".repeat(10_000),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let err = c.export(big).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
        // A span with bad ids: partial success, nothing stored.
        let bad = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 3],
                        span_id: vec![1; 8],
                        start_time_unix_nano: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let p = c
            .export(bad)
            .await
            .unwrap()
            .into_inner()
            .partial_success
            .unwrap();
        assert_eq!(p.rejected_spans, 1);
        assert!(
            p.error_message.contains("invalid trace_id"),
            "{}",
            p.error_message
        );
    });
    assert!(s.healthy());
    assert_eq!(s.count("SELECT count(*) FROM spans"), 0);
    s.stop();
}
