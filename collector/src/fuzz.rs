//! Generated and mutated OTLP requests for robustness testing on stable
//! Rust: real requests (random resources, scopes, records, attributes,
//! nested values, ids of every length, empty messages by the thousand,
//! long values), encoded as protobuf, then mutated (bit flips, cuts,
//! inserted bytes, tampered lengths, spliced halves) and fed to every
//! decoder: the wire converters, prost, the JSON mapping and gzip.
//!
//! Each case must end in `Ok` or a precise `Err`, never a panic, and the
//! Arrow it produces must stay within a fixed multiple of its input
//! (no amplification). `cargo test` runs a slice; the example
//! `fuzz_decoders` runs tens of millions (README, "Robustness").

use crate::attribution::Attributor;
use crate::config::LimitsConfig;
use crate::convert::Ctx;
use crate::ingest::{convert, json_to_protobuf};
use crate::schema::Signal;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

/// Arrow bytes allowed per input byte, plus a fixed allowance, plus an
/// allowance per batch: each service of a request gets a batch of its own,
/// whose empty-ish columns cost a few KB however small the input (at most
/// `limits.max_services_per_request` of them).
pub const MAX_AMPLIFICATION: usize = 64;
pub const FIXED_ALLOWANCE: usize = 1 << 20;
pub const BATCH_ALLOWANCE: usize = 12 << 10;

/// The most Arrow bytes `input` bytes may become as `batches` batches.
pub fn arrow_bound(input: usize, batches: usize) -> usize {
    input * MAX_AMPLIFICATION + FIXED_ALLOWANCE + batches * BATCH_ALLOWANCE
}

/// Outcome counts of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub cases: u64,
    pub accepted: u64,
    pub refused: u64,
    pub rows: u64,
    /// Largest Arrow output for its input, as bytes out per byte in.
    pub worst_ratio_milli: u64,
}

struct Gen(fastrand::Rng);

impl Gen {
    fn n(&mut self, max: usize) -> usize {
        // Mostly small, sometimes large counts.
        match self.0.u8(..) {
            0..=200 => self.0.usize(..=max.min(4)),
            201..=250 => self.0.usize(..=max),
            _ => self.0.usize(..=max * 50),
        }
    }

    fn text(&mut self) -> String {
        match self.0.u8(..) {
            0..=150 => [
                "checkout",
                "1.4.0",
                "GET /cart",
                "",
                "canary",
                "stable",
                "gray",
                "prod",
            ][self.0.usize(..8)]
            .into(),
            151..=230 => (0..self.0.usize(..40))
                .map(|_| self.0.alphanumeric())
                .collect(),
            231..=250 => (0..self.0.usize(..20)).map(|_| self.0.char(..)).collect(),
            _ => "x".repeat(self.0.usize(..20_000)),
        }
    }

    fn key(&mut self) -> String {
        match self.0.u8(..) {
            0..=200 => [
                "service.name",
                "service.version",
                "k8s.pod.label.role",
                "rollout.role",
                "traffic.lane",
                "http.route",
                "http.response.status_code",
                "k8s.deployment.name",
                "exception.type",
            ][self.0.usize(..9)]
            .into(),
            _ => self.text(),
        }
    }

    fn value(&mut self, depth: u32) -> AnyValue {
        let v = match self.0.u8(..10) {
            0..=2 => Some(Value::StringValue(self.text())),
            3 => Some(Value::IntValue(self.0.i64(..))),
            4 => Some(Value::DoubleValue(f64::from_bits(self.0.u64(..)))),
            5 => Some(Value::BoolValue(self.0.bool())),
            6 => Some(Value::BytesValue(
                (0..self.0.usize(..40)).map(|_| self.0.u8(..)).collect(),
            )),
            7 if depth < 120 => Some(Value::ArrayValue(ArrayValue {
                values: (0..self.n(3)).map(|_| self.value(depth + 1)).collect(),
            })),
            8 if depth < 120 => Some(Value::KvlistValue(KeyValueList {
                values: self.attrs(depth + 1, 3),
            })),
            _ => None,
        };
        AnyValue { value: v }
    }

    fn attrs(&mut self, depth: u32, max: usize) -> Vec<KeyValue> {
        (0..self.n(max))
            .map(|_| KeyValue {
                key: self.key(),
                value: (self.0.u8(..20) != 0).then(|| self.value(depth)),
                ..Default::default()
            })
            .collect()
    }

    fn id(&mut self, want: usize) -> Vec<u8> {
        let len = if self.0.u8(..10) == 0 {
            self.0.usize(..20)
        } else {
            want
        };
        (0..len).map(|_| self.0.u8(..)).collect()
    }

    fn resource(&mut self) -> Option<Resource> {
        (self.0.u8(..10) != 0).then(|| Resource {
            attributes: self.attrs(0, 12),
            ..Default::default()
        })
    }

    fn scope(&mut self) -> Option<InstrumentationScope> {
        (self.0.bool()).then(|| InstrumentationScope {
            name: self.text(),
            attributes: self.attrs(0, 2),
            ..Default::default()
        })
    }

    fn time(&mut self) -> u64 {
        match self.0.u8(..10) {
            0 => 0,
            1 => self.0.u64(..),
            _ => 1_700_000_000_000_000_000 + self.0.u64(..1_000_000_000_000),
        }
    }

    fn traces(&mut self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: (0..self.n(3))
                .map(|_| ResourceSpans {
                    resource: self.resource(),
                    scope_spans: (0..self.n(3))
                        .map(|_| ScopeSpans {
                            scope: self.scope(),
                            spans: (0..self.n(20)).map(|_| self.span()).collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn span(&mut self) -> Span {
        let start = self.time();
        Span {
            trace_id: self.id(16),
            span_id: self.id(8),
            parent_span_id: if self.0.bool() { vec![] } else { self.id(8) },
            name: self.text(),
            kind: self.0.i32(-1..8),
            start_time_unix_nano: start,
            end_time_unix_nano: start.wrapping_add(self.0.u64(..1_000_000_000)),
            attributes: self.attrs(0, 12),
            events: (0..self.n(2))
                .map(|_| Event {
                    name: if self.0.bool() {
                        "exception".into()
                    } else {
                        self.text()
                    },
                    attributes: self.attrs(0, 3),
                    ..Default::default()
                })
                .collect(),
            status: self.0.bool().then(|| Status {
                code: self.0.i32(-1..4),
                message: self.text(),
            }),
            ..Default::default()
        }
    }

    fn logs(&mut self) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: (0..self.n(3))
                .map(|_| ResourceLogs {
                    resource: self.resource(),
                    scope_logs: (0..self.n(3))
                        .map(|_| ScopeLogs {
                            scope: self.scope(),
                            log_records: (0..self.n(20))
                                .map(|_| LogRecord {
                                    time_unix_nano: self.time(),
                                    observed_time_unix_nano: self.time(),
                                    severity_number: self.0.i32(-1..25),
                                    severity_text: self.text(),
                                    body: self.0.bool().then(|| self.value(0)),
                                    attributes: self.attrs(0, 8),
                                    trace_id: self.id(16),
                                    span_id: self.id(8),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn point(&mut self) -> NumberDataPoint {
        NumberDataPoint {
            time_unix_nano: self.time(),
            attributes: self.attrs(0, 4),
            value: Some(number_data_point::Value::AsDouble(self.0.f64() * 100.0)),
            ..Default::default()
        }
    }

    fn metrics(&mut self) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: (0..self.n(3))
                .map(|_| ResourceMetrics {
                    resource: self.resource(),
                    scope_metrics: vec![ScopeMetrics {
                        scope: self.scope(),
                        metrics: (0..self.n(6))
                            .map(|_| {
                                let data = match self.0.u8(..4) {
                                    0 => Some(Data::Gauge(Gauge {
                                        data_points: (0..self.n(5)).map(|_| self.point()).collect(),
                                    })),
                                    1 => Some(Data::Sum(Sum {
                                        data_points: (0..self.n(5)).map(|_| self.point()).collect(),
                                        is_monotonic: self.0.bool(),
                                        aggregation_temporality: self.0.i32(0..3),
                                    })),
                                    2 => Some(Data::Histogram(Histogram {
                                        data_points: (0..self.n(3))
                                            .map(|_| {
                                                let b = self.n(8);
                                                HistogramDataPoint {
                                                    time_unix_nano: self.time(),
                                                    explicit_bounds: (0..b)
                                                        .map(|i| i as f64)
                                                        .collect(),
                                                    bucket_counts: (0..b + self.0.usize(..2))
                                                        .map(|_| self.0.u64(..100))
                                                        .collect(),
                                                    ..Default::default()
                                                }
                                            })
                                            .collect(),
                                        aggregation_temporality: 1,
                                    })),
                                    _ => None,
                                };
                                Metric {
                                    name: self.text(),
                                    unit: self.text(),
                                    data,
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }
}

/// Mutates `bytes` in place with one to four random edits.
fn mutate(rng: &mut fastrand::Rng, bytes: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..rng.usize(1..=4) {
        if bytes.is_empty() {
            bytes.extend_from_slice(&other[..other.len().min(16)]);
            continue;
        }
        let at = rng.usize(..bytes.len());
        match rng.u8(..7) {
            0 => bytes[at] ^= 1 << rng.u8(..8),
            1 => bytes.truncate(at),
            2 => bytes.insert(at, rng.u8(..)),
            3 => bytes[at] = [0x00, 0x7f, 0x80, 0xff][rng.usize(..4)],
            // A length-like varint that claims far more than remains.
            4 => bytes
                .splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f])
                .for_each(drop),
            5 => {
                let cut = rng.usize(..=other.len());
                bytes.truncate(at);
                bytes.extend_from_slice(&other[cut..]);
            }
            _ => {
                let n = rng.usize(..=8.min(bytes.len() - at));
                bytes.drain(at..at + n);
            }
        }
    }
}

/// Runs `cases` cases from `seed`; panics (with the seed and case) on a
/// broken promise.
pub fn run(seed: u64, cases: u64) -> Tally {
    let mut g = Gen(fastrand::Rng::with_seed(seed));
    let attributor = Attributor::new(Default::default());
    let limits = LimitsConfig::default();
    let ctx = Ctx {
        attributor: &attributor,
        limits: &limits,
        received_ns: 1_700_000_500_000_000_000,
    };
    let mut t = Tally::default();
    let mut previous = Vec::new();
    for case in 0..cases {
        let signal = Signal::ALL[g.0.usize(..3)];
        let mut bytes = match signal {
            Signal::Traces => g.traces().encode_to_vec(),
            Signal::Logs => g.logs().encode_to_vec(),
            Signal::Metrics => g.metrics().encode_to_vec(),
        };
        let mode = g.0.u8(..10);
        if mode >= 3 {
            mutate(&mut g.0, &mut bytes, &previous);
        }
        previous.clone_from(&bytes);
        let input = bytes.len();
        let out = match mode {
            // JSON: the request as JSON, or bytes that are not.
            0 => {
                let json = json_of(signal, &bytes);
                json_protobuf(signal, &json).and_then(|pb| convert(signal, &pb, &ctx))
            }
            // gzip, the stream itself mutated, inflated under a limit.
            1 => {
                let mut gz = gzip(&bytes);
                if g.0.bool() {
                    mutate(&mut g.0, &mut gz, &previous);
                }
                let mut held = crate::memory::Reservation::none();
                crate::http::inflate(&gz, 4 << 20, &mut held)
                    .and_then(|pb| convert(signal, &pb, &ctx))
            }
            _ => convert(signal, &bytes, &ctx),
        };
        t.cases += 1;
        match out {
            Ok(c) => {
                t.accepted += 1;
                t.rows += c.rows() as u64;
                let mem = c.memory_bytes();
                let ratio = (mem as u64 * 1000) / (input.max(1) as u64);
                t.worst_ratio_milli = t.worst_ratio_milli.max(ratio);
                if mem > arrow_bound(input, c.batches.len()) {
                    let kept = keep_case(seed, case, signal, mode, &bytes);
                    panic!(
                        "seed {seed} case {case}: {input} bytes of {} (mode {mode}) became \
                         {mem} bytes of Arrow; input kept in {kept}",
                        signal.name()
                    );
                }
            }
            Err(_) => t.refused += 1,
        }
    }
    t
}

/// Writes a failing case's input where it can be replayed from.
fn keep_case(seed: u64, case: u64, signal: Signal, mode: u8, bytes: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!(
        "graylens-fuzz-{seed}-{case}-{}-mode{mode}.pb",
        signal.name()
    ));
    match std::fs::write(&path, bytes) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(nowhere: {e})"),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("in memory");
    e.finish().expect("in memory")
}

fn json_of(signal: Signal, bytes: &[u8]) -> Vec<u8> {
    let v = match signal {
        Signal::Traces => ExportTraceServiceRequest::decode(bytes).map(|r| serde_json::to_vec(&r)),
        Signal::Logs => ExportLogsServiceRequest::decode(bytes).map(|r| serde_json::to_vec(&r)),
        Signal::Metrics => {
            ExportMetricsServiceRequest::decode(bytes).map(|r| serde_json::to_vec(&r))
        }
    };
    match v {
        Ok(Ok(j)) => j,
        _ => bytes.to_vec(),
    }
}

fn json_protobuf(signal: Signal, json: &[u8]) -> Result<Vec<u8>, crate::ingest::IngestError> {
    match signal {
        Signal::Traces => json_to_protobuf::<ExportTraceServiceRequest>(json),
        Signal::Logs => json_to_protobuf::<ExportLogsServiceRequest>(json),
        Signal::Metrics => json_to_protobuf::<ExportMetricsServiceRequest>(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One resource per service, each with one minimal record: the shape
    /// that costs the most Arrow per input byte.
    fn tiny_services(signal: Signal, n: usize) -> Vec<u8> {
        let res = |i: usize| {
            Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(format!("s{i}"))),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            })
        };
        match signal {
            Signal::Traces => ExportTraceServiceRequest {
                resource_spans: (0..n)
                    .map(|i| ResourceSpans {
                        resource: res(i),
                        scope_spans: vec![ScopeSpans {
                            spans: vec![Span {
                                trace_id: vec![1; 16],
                                span_id: vec![1; 8],
                                start_time_unix_nano: 1_700_000_000_000_000_000,
                                end_time_unix_nano: 1_700_000_000_000_000_001,
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            }
            .encode_to_vec(),
            Signal::Logs => ExportLogsServiceRequest {
                resource_logs: (0..n)
                    .map(|i| ResourceLogs {
                        resource: res(i),
                        scope_logs: vec![ScopeLogs {
                            log_records: vec![LogRecord::default()],
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceRequest {
                resource_metrics: (0..n)
                    .map(|i| ResourceMetrics {
                        resource: res(i),
                        scope_metrics: vec![ScopeMetrics {
                            metrics: vec![Metric {
                                name: "m".into(),
                                data: Some(Data::Gauge(Gauge {
                                    data_points: vec![NumberDataPoint {
                                        time_unix_nano: 1_700_000_000_000_000_000,
                                        value: Some(number_data_point::Value::AsDouble(1.0)),
                                        ..Default::default()
                                    }],
                                })),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            }
            .encode_to_vec(),
        }
    }

    #[test]
    fn many_tiny_services_stay_within_the_bound() {
        let attributor = Attributor::new(Default::default());
        let limits = LimitsConfig::default();
        let ctx = Ctx {
            attributor: &attributor,
            limits: &limits,
            received_ns: 1_700_000_500_000_000_000,
        };
        for signal in Signal::ALL {
            for n in [1, 10, 1_000, 5_000] {
                let pb = tiny_services(signal, n);
                let c = convert(signal, &pb, &ctx).expect("valid");
                let mem = c.memory_bytes();
                let kept = n.min(limits.max_services_per_request);
                assert_eq!(c.batches.len(), kept);
                assert_eq!(c.rows(), kept);
                assert_eq!(c.rejections.total() as usize, n - kept);
                if n > kept {
                    let msg = c.rejections.message("records").expect("a reason");
                    assert!(msg.contains("limits.max_services_per_request"), "{msg}");
                }
                assert!(mem <= arrow_bound(pb.len(), kept));
                // Builders start empty: one record costs a few KB, not the
                // 1,024 slots per column a default Arrow builder reserves.
                assert!(mem <= kept * BATCH_ALLOWANCE, "{mem} for {kept}");
            }
        }
    }

    #[test]
    fn a_slice_of_generated_and_mutated_requests() {
        let t = super::run(0x5eed, 3_000);
        assert_eq!(t.cases, 3_000);
        assert!(t.accepted > 300 && t.refused > 300, "{t:?}");
        assert!(t.rows > 1_000, "{t:?}");
    }
}
