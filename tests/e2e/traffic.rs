//! Telemetry for the end-to-end tests: deterministic OTLP spans of a
//! service version, sent over OTLP/HTTP protobuf, and API helpers.

use crate::harness::{now_ns, Server};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value;

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// Deterministic pseudo-random numbers.
pub struct Gen(pub u64);
impl Gen {
    pub fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// `n` SERVER spans of `service`/`version` with median latency `median_ms`
/// and error probability `p_err`, as one OTLP request, started a minute ago.
pub fn requests(
    g: &mut Gen,
    service: &str,
    version: &str,
    n: usize,
    median_ms: f64,
    p_err: f64,
) -> Vec<u8> {
    requests_at(
        g,
        service,
        version,
        n,
        median_ms,
        p_err,
        now_ns() - 60_000_000_000,
        &[],
    )
}

/// The same, one span per millisecond from `start`, with `extra` resource attributes.
#[allow(clippy::too_many_arguments)]
pub fn requests_at(
    g: &mut Gen,
    service: &str,
    version: &str,
    n: usize,
    median_ms: f64,
    p_err: f64,
    start: u64,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let spans = (0..n)
        .map(|i| {
            let dur = (median_ms * 1e6 * (0.4 * g.normal()).exp()) as u64;
            let t = start + i as u64 * 1_000_000;
            let error = g.uniform() < p_err;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&g.0.to_be_bytes());
            trace_id[8..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            Span {
                trace_id: trace_id.to_vec(),
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: if i % 3 == 0 { "POST /pay" } else { "GET /cart" }.into(),
                kind: 2,
                start_time_unix_nano: t,
                end_time_unix_nano: t + dur,
                status: error.then(|| Status {
                    code: status::StatusCode::Error as i32,
                    message: "boom".into(),
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: [("service.name", service), ("service.version", version)]
                    .iter()
                    .chain(extra)
                    .map(|(k, v)| kv(k, v))
                    .collect(),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

pub fn send(s: &Server, body: Vec<u8>) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", s.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

pub fn get(s: &Server, path: &str) -> (u16, Value) {
    let r = reqwest::blocking::get(format!("{}{path}", s.api)).unwrap();
    (r.status().as_u16(), r.json().unwrap())
}
