//! What the store tests share: OTLP requests of one service with two
//! versions, appended as the ingest path would.

#![allow(dead_code)] // each test module uses part of it

use graylens_analyzer::{By, Comparison, Selector, Store, StoreConfig};
use graylens_collector::ingest::convert_request;
use graylens_collector::{Reservation, Signal};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use std::sync::Arc;

pub fn kv(k: &str, v: &str) -> KeyValue {
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
pub fn request(
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
    request_at(seed, n, version, slow, err_every, t0)
}

/// [`request`] at a fixed hour (2026-05-28T20:26:40Z + the seed in ms), so
/// every batch of a test lands in one hour (one flush directory, one group
/// of small batches).
pub fn request_in_one_hour(
    seed: u64,
    n: u64,
    version: &str,
    slow: f64,
    err_every: u64,
) -> ExportTraceServiceRequest {
    request_at(
        seed,
        n,
        version,
        slow,
        err_every,
        1_780_000_000_000_000_000 + seed * 1_000_000,
    )
}

/// [`request`] with its spans starting at `t0` (ns).
pub fn request_at(
    seed: u64,
    n: u64,
    version: &str,
    slow: f64,
    err_every: u64,
    t0: u64,
) -> ExportTraceServiceRequest {
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

pub fn append(store: &Store, req: &ExportTraceServiceRequest) {
    for b in convert_request(req).unwrap().batches {
        store.append(Signal::Traces, b, Reservation::none());
    }
}

/// checkout, 1.0 against 1.1, by version, all time.
pub fn checkout() -> Selector {
    Selector {
        service: "checkout".into(),
        baseline: "1.0".into(),
        canary: "1.1".into(),
        by: By::Version,
        from: None,
        to: None,
    }
}

/// A store in `dir` that keeps every segment (no retention).
pub fn store_keeping_all(dir: &std::path::Path) -> Arc<Store> {
    Store::open(StoreConfig {
        data_dir: dir.to_path_buf(),
        retention_hours: 0,
        ..Default::default()
    })
    .unwrap()
}

/// What two comparisons must agree on, as JSON.
pub fn comparison_json(c: &Comparison) -> serde_json::Value {
    serde_json::json!({
        "metrics": c.metrics, "verdict": c.verdict, "explanations": c.explanations,
        "operations": c.operations, "baseline": c.baseline, "canary": c.canary,
    })
}
