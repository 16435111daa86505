//! Incremental judging (issue #12): a live subscription, started over data
//! already stored (Parquet and hot) and then fed batch by batch as new data
//! arrives, gives exactly the observations — and so the verdict, metrics
//! and explanations — of a from-scratch `compare` over the same data.

use graylens_analyzer::compare::{assemble, explain::default_attributes};
use graylens_analyzer::{compare, By, Policy, Selector, Store, StoreConfig, Subscription, Tables};
use graylens_collector::ingest::convert_request;
use graylens_collector::{Reservation, Signal};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// `n` server spans of `version`: latency grows with `slow`, every
/// `err_every`-th one fails, routes and pods vary.
fn request(
    seed: u64,
    n: u64,
    version: &str,
    slow: f64,
    err_every: u64,
) -> ExportTraceServiceRequest {
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        - 60_000_000_000;
    let spans = (0..n)
        .map(|i| {
            let x = (seed * 7919 + i * 104_729) % 1000;
            let ms = slow * (10.0 + x as f64 / 20.0);
            Span {
                trace_id: (seed * 1_000_000 + i + 1).to_be_bytes().repeat(2),
                span_id: (seed * 1_000_000 + i + 1).to_be_bytes().to_vec(),
                name: ["GET /cart", "POST /pay"][(i % 2) as usize].into(),
                kind: 2,
                start_time_unix_nano: t0 + i * 1000,
                end_time_unix_nano: t0 + i * 1000 + (ms * 1e6) as u64,
                attributes: vec![kv("http.route", ["/cart", "/pay"][(i % 2) as usize])],
                status: (i % err_every == 0).then(|| Status {
                    code: status::StatusCode::Error as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout"),
                    kv("service.version", version),
                    kv("k8s.pod.name", &format!("{version}-pod-{}", seed % 3)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn append(store: &Store, req: &ExportTraceServiceRequest) {
    for b in convert_request(req).unwrap().batches {
        store.append(Signal::Traces, b, Reservation::none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_verdict_equals_a_from_scratch_compare() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        data_dir: dir.path().to_path_buf(),
        retention_hours: 0,
        ..Default::default()
    })
    .unwrap();
    let tables = Tables::new(store.clone()).unwrap();
    let sel = Selector {
        service: "checkout".into(),
        baseline: "1.0".into(),
        canary: "1.1".into(),
        by: By::Version,
        from: None,
        to: None,
    };
    let policy = Policy::default();
    // Before the subscription: some data flushed to Parquet, some hot.
    for seed in 0..3 {
        append(&store, &request(seed, 400, "1.0", 1.0, 100));
        append(&store, &request(seed + 100, 400, "1.1", 1.3, 12));
    }
    store.flush_now().unwrap();
    append(&store, &request(7, 300, "1.0", 1.0, 100));
    append(&store, &request(107, 300, "1.1", 1.3, 12));

    let sub = Subscription::start(&store, sel.clone(), default_attributes().into())
        .await
        .unwrap();
    assert!(sub.files_scanned > 0, "the initial scan read Parquet");
    // After: batches fed as they are appended, with a flush in between.
    for seed in 10..16 {
        append(&store, &request(seed, 250, "1.0", 1.0, 100));
        append(&store, &request(seed + 100, 250, "1.1", 1.3, 12));
        if seed == 12 {
            store.flush_now().unwrap();
        }
    }

    let incremental = assemble(&sel, &policy, &sub.observations());
    let scratch = compare(&tables, &sel, &policy).await.unwrap();
    assert_eq!(incremental.baseline.requests, 400 * 3 + 300 + 250 * 6);
    let json = |c: &graylens_analyzer::Comparison| {
        serde_json::json!({
            "metrics": c.metrics, "verdict": c.verdict, "explanations": c.explanations,
            "operations": c.operations, "baseline": c.baseline, "canary": c.canary,
        })
    };
    assert_eq!(json(&incremental), json(&scratch));
    assert_eq!(scratch.verdict.decision, graylens_analyzer::Decision::Fail);
}
