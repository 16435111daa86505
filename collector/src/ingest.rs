//! The transport-independent core of a receiver: admit the request against
//! the memory limit, decode it straight into Arrow, hand it to the store
//! through the write-ahead log, and answer only once it is durable.
//!
//! ```text
//!  body (read and inflated under a memory Reservation)
//!    │ JSON → prost → protobuf bytes (the log keeps one canonical form)
//!    ▼
//!  convert(): protobuf bytes ─► Arrow batches, one per service (convert/)
//!    ▼
//!  Pipeline::commit ─► write-ahead log (fsync, group commit) ─► hot store
//!    ▼
//!  success / partial success  (or 503 UNAVAILABLE + Retry-After: retry)
//! ```

use crate::attribution::Attributor;
use crate::config::LimitsConfig;
use crate::convert::{logs_from_protobuf, metrics_to_batches, spans_from_protobuf, Converted, Ctx};
use crate::memory::{MemoryLimiter, Reservation};
use crate::pipeline::{CommitError, IngestBatch, Pipeline};
use crate::schema::Signal;
use crate::stats::{IngestStats, RefusalKind, Transport};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse},
    metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    },
    trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse},
};
use prost::Message;
use serde::de::DeserializeOwned;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a client is told after its request was stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Records refused one by one; 0 on full success.
    pub rejected: u64,
    /// Why, in English; `None` on full success.
    pub message: Option<String>,
}

/// Why a whole request was refused, sorted by what the client must do.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IngestError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unsupported(String),
    /// Retryable: queue full, log not writable, shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// Retryable: over the memory limit.
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Internal(String),
    /// No credential or an unknown token (401 / UNAUTHENTICATED).
    #[error("{0}")]
    Unauthenticated(String),
    /// A token without the `ingest` scope (403 / PERMISSION_DENIED).
    #[error("{0}")]
    PermissionDenied(String),
}

impl From<crate::auth::Denied> for IngestError {
    fn from(d: crate::auth::Denied) -> Self {
        match d {
            crate::auth::Denied::Forbidden { .. } => IngestError::PermissionDenied(d.to_string()),
            _ => IngestError::Unauthenticated(d.to_string()),
        }
    }
}

impl IngestError {
    pub fn kind(&self) -> RefusalKind {
        match self {
            IngestError::Malformed(_) => RefusalKind::Malformed,
            IngestError::TooLarge(_) => RefusalKind::TooLarge,
            IngestError::Unsupported(_) => RefusalKind::Unsupported,
            IngestError::Unavailable(_) => RefusalKind::Unavailable,
            IngestError::Overloaded(_) => RefusalKind::MemoryLimit,
            IngestError::Internal(_) => RefusalKind::Internal,
            IngestError::Unauthenticated(_) | IngestError::PermissionDenied(_) => {
                RefusalKind::Unauthorized
            }
        }
    }

    /// Whether OTLP clients should send the request again (503 / UNAVAILABLE).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            IngestError::Unavailable(_) | IngestError::Overloaded(_)
        )
    }
}

impl From<crate::memory::Exhausted> for IngestError {
    fn from(e: crate::memory::Exhausted) -> Self {
        IngestError::Overloaded(e.to_string())
    }
}

/// Converts the protobuf bytes of one export request of `signal` into
/// Arrow batches: the one conversion of live requests and of the
/// write-ahead log replayed at start.
pub fn convert(signal: Signal, protobuf: &[u8], ctx: &Ctx<'_>) -> Result<Converted, IngestError> {
    let malformed = |e: &dyn std::fmt::Display| {
        IngestError::Malformed(format!("invalid protobuf {}: {e}", signal.name()))
    };
    match signal {
        Signal::Traces => spans_from_protobuf(protobuf, ctx).map_err(|e| malformed(&e)),
        Signal::Logs => logs_from_protobuf(protobuf, ctx).map_err(|e| malformed(&e)),
        Signal::Metrics => {
            let req = ExportMetricsServiceRequest::decode(protobuf).map_err(|e| malformed(&e))?;
            metrics_to_batches(&req, ctx)
                .map_err(|e| IngestError::Internal(format!("converting to Arrow: {e}")))
        }
    }
}

/// Reserves what prost may allocate to decode a metrics request (spans and
/// logs are read in place and need no more than their payload): 503 while
/// memory is short, 413 when that alone exceeds `limits.memory_bytes`.
/// A request the estimate cannot read is left to prost to refuse.
fn reserve_prost_metrics(payload: &[u8], held: &mut Reservation) -> Result<(), IngestError> {
    let Some(decoded) = crate::wire::metrics_request_bytes(payload) else {
        return Ok(());
    };
    let need = payload.len().saturating_add(decoded);
    if held.limit().is_some_and(|l| need as u64 > l) {
        return Err(IngestError::TooLarge(format!(
            "this OTLP metrics request could take {need} bytes to decode, more than limits.memory_bytes; send smaller batches"
        )));
    }
    Ok(held.resize(need)?)
}

/// Converts a request with the default attribution and limits, as arriving
/// now: for tests, examples and tools that build requests themselves.
pub fn convert_request<R: ExportRequest>(req: &R) -> Result<Converted, IngestError> {
    let attributor = Attributor::new(Default::default());
    let limits = LimitsConfig::default();
    let ctx = Ctx {
        attributor: &attributor,
        limits: &limits,
        received_ns: now_ns(),
    };
    convert(R::SIGNAL, &req.encode_to_vec(), &ctx)
}

/// An OTLP export request type: its signal, its JSON form and its answer.
pub trait ExportRequest: Message + Default + DeserializeOwned + Send + 'static {
    const SIGNAL: Signal;
    type Response: Message + Default + Send + 'static;
    fn response(acc: &Accepted) -> Self::Response;
    /// The JSON name of the partial-success count field.
    const REJECTED_FIELD: &'static str;
}

macro_rules! export_request {
    ($req:ty, $resp:ty, $partial:ident, $field:ident, $json:literal, $signal:expr) => {
        impl ExportRequest for $req {
            const SIGNAL: Signal = $signal;
            const REJECTED_FIELD: &'static str = $json;
            type Response = $resp;
            fn response(acc: &Accepted) -> $resp {
                <$resp>::default_with(acc.message.as_ref().map(|m| $partial {
                    $field: acc.rejected as i64,
                    error_message: m.clone(),
                }))
            }
        }
    };
}

trait WithPartial<P> {
    fn default_with(p: Option<P>) -> Self;
}
impl WithPartial<ExportTracePartialSuccess> for ExportTraceServiceResponse {
    fn default_with(partial_success: Option<ExportTracePartialSuccess>) -> Self {
        Self { partial_success }
    }
}
impl WithPartial<ExportMetricsPartialSuccess> for ExportMetricsServiceResponse {
    fn default_with(partial_success: Option<ExportMetricsPartialSuccess>) -> Self {
        Self { partial_success }
    }
}
impl WithPartial<ExportLogsPartialSuccess> for ExportLogsServiceResponse {
    fn default_with(partial_success: Option<ExportLogsPartialSuccess>) -> Self {
        Self { partial_success }
    }
}

export_request!(
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    ExportTracePartialSuccess,
    rejected_spans,
    "rejectedSpans",
    Signal::Traces
);
export_request!(
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    ExportMetricsPartialSuccess,
    rejected_data_points,
    "rejectedDataPoints",
    Signal::Metrics
);
export_request!(
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    ExportLogsPartialSuccess,
    rejected_log_records,
    "rejectedLogRecords",
    Signal::Logs
);

/// OTLP/JSON (the protobuf JSON mapping) → the protobuf bytes of the same request.
///
/// The JSON mapping leaves out empty fields, and encoders do (protojson
/// writes an empty array attribute as `{"arrayValue":{}}`), but the
/// generated types require `values` of arrays and key-value lists and
/// `key` of attributes: when the direct read fails, the request is read
/// again with those fields filled in before it is refused.
pub fn json_to_protobuf<R: ExportRequest>(json: &[u8]) -> Result<Vec<u8>, IngestError> {
    let malformed = |e: serde_json::Error| {
        IngestError::Malformed(format!("invalid OTLP/JSON {}: {e}", R::SIGNAL.name()))
    };
    let req: R = match serde_json::from_slice(json) {
        Ok(r) => r,
        Err(first) => {
            let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(json) else {
                return Err(malformed(first));
            };
            fill_omitted(&mut v, false);
            serde_json::from_value(v).map_err(|_| malformed(first))?
        }
    };
    Ok(req.encode_to_vec())
}

/// Puts back the empty fields the JSON mapping may omit: `values` of
/// `arrayValue` and `kvlistValue`, `key` of the key-values in `attributes`
/// and in key-value lists (`in_kvs`: `v` is such a list's entry); and
/// writes `bytesValue` in the padded standard base64 the types read.
fn fill_omitted(v: &mut serde_json::Value, in_kvs: bool) {
    use serde_json::Value;
    match v {
        Value::Object(o) => {
            if in_kvs && !o.contains_key("key") {
                o.insert("key".into(), Value::String(String::new()));
            }
            // The JSON mapping accepts bytes in URL-safe or unpadded base64.
            if let Some(Value::String(b)) = o.get_mut("bytesValue") {
                let mut std: String = b
                    .chars()
                    .map(|c| match c {
                        '-' => '+',
                        '_' => '/',
                        c => c,
                    })
                    .collect();
                while !std.len().is_multiple_of(4) {
                    std.push('=');
                }
                *b = std;
            }
            for list in ["arrayValue", "kvlistValue"] {
                if let Some(Value::Object(inner)) = o.get_mut(list) {
                    inner
                        .entry("values")
                        .or_insert_with(|| Value::Array(Vec::new()));
                }
            }
            let kvs = o.contains_key("kvlistValue");
            for (k, child) in o.iter_mut() {
                let entries = k == "attributes" || (kvs && k == "kvlistValue");
                match child {
                    Value::Array(items) => {
                        for item in items {
                            fill_omitted(item, entries);
                        }
                    }
                    Value::Object(inner) if entries => {
                        if let Some(Value::Array(items)) = inner.get_mut("values") {
                            for item in items {
                                fill_omitted(item, true);
                            }
                        }
                    }
                    other => fill_omitted(other, false),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                fill_omitted(item, false);
            }
        }
        _ => {}
    }
}

/// Shared by both transports: one per process.
#[derive(Debug, Clone)]
pub struct Ingestor {
    attributor: Arc<Attributor>,
    limits: Arc<LimitsConfig>,
    pipeline: Pipeline,
    stats: Arc<IngestStats>,
    memory: Arc<MemoryLimiter>,
}

impl Ingestor {
    pub fn new(
        attributor: Attributor,
        limits: LimitsConfig,
        pipeline: Pipeline,
        stats: Arc<IngestStats>,
        memory: Arc<MemoryLimiter>,
    ) -> Self {
        Self {
            attributor: Arc::new(attributor),
            limits: Arc::new(limits),
            pipeline,
            stats,
            memory,
        }
    }

    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn memory(&self) -> &Arc<MemoryLimiter> {
        &self.memory
    }

    /// Reserves room for `n` bytes of a request before reading them.
    pub fn reserve(&self, n: usize) -> Result<Reservation, IngestError> {
        Ok(self.memory.try_reserve(n)?)
    }

    /// Stores one request given as protobuf bytes (`payload`) whose memory
    /// is held by `held`; answers once the records are durable.
    pub async fn ingest(
        &self,
        signal: Signal,
        payload: Bytes,
        mut held: Reservation,
        transport: Transport,
    ) -> Result<Accepted, IngestError> {
        let result = self.store(signal, payload, &mut held).await;
        match &result {
            Ok(_) => {}
            Err(e) => self.refused(signal, transport, e),
        }
        let (acc, rows, truncated) = result?;
        self.stats.accepted(signal, transport, rows);
        if truncated > 0 {
            self.stats
                .values_truncated
                .fetch_add(truncated, Ordering::Relaxed);
        }
        if acc.rejected > 0 {
            self.stats.rejected(signal, transport, acc.rejected);
            tracing::debug!(
                signal = signal.name(),
                transport = transport.name(),
                rejected = acc.rejected,
                reason = acc.message.as_deref().unwrap_or(""),
                "partial success"
            );
        }
        Ok(acc)
    }

    async fn store(
        &self,
        signal: Signal,
        payload: Bytes,
        held: &mut Reservation,
    ) -> Result<(Accepted, u64, u64), IngestError> {
        let received_ns = now_ns();
        let ctx = Ctx {
            attributor: &self.attributor,
            limits: &self.limits,
            received_ns,
        };
        if signal == Signal::Metrics {
            reserve_prost_metrics(&payload, held)?;
        }
        let converted = convert(signal, &payload, &ctx)?;
        let rows = converted.rows() as u64;
        let acc = Accepted {
            rejected: converted.rejections.total(),
            message: converted.rejections.message(signal.record_noun()),
        };
        if rows == 0 {
            return Ok((acc, 0, converted.truncated));
        }
        // What stays: the Arrow batches (until flushed) and the payload
        // (until it is in the log).
        held.resize(payload.len() + converted.memory_bytes())?;
        let memory = std::mem::take(held);
        let item = IngestBatch {
            signal,
            received_ns,
            payload,
            batches: converted.batches,
            memory,
        };
        match self.pipeline.commit(item).await {
            Ok(()) => Ok((acc, rows, converted.truncated)),
            Err(e @ CommitError::Full) => {
                tracing::warn!(
                    signal = signal.name(),
                    depth = self.pipeline.depth(),
                    "ingest queue full; asking the client to retry"
                );
                Err(IngestError::Unavailable(e.to_string()))
            }
            Err(e) => Err(IngestError::Unavailable(e.to_string())),
        }
    }

    /// Counts and logs a request refused before or during conversion.
    pub fn refused(&self, signal: Signal, transport: Transport, err: &IngestError) {
        self.stats.refused(signal, transport, err.kind());
        tracing::debug!(signal = signal.name(), transport = transport.name(),
            kind = err.kind().name(), error = %err, "request refused");
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    #[test]
    fn empty_fields_the_json_mapping_leaves_out_are_read_as_empty() {
        let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},
            "scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
            "name":"GET /","startTimeUnixNano":"1","endTimeUnixNano":"2",
            "attributes":[{"key":"empty","value":{"arrayValue":{}}},{"value":{"stringValue":"no key"}},
              {"key":"map","value":{"kvlistValue":{"values":[{"value":{"intValue":"3"}},{"key":"inner","value":{"kvlistValue":{}}}]}}}]}]}]}]}"#;
        let bytes = json_to_protobuf::<ExportTraceServiceRequest>(json).unwrap();
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let attrs = &req.resource_spans[0].scope_spans[0].spans[0].attributes;
        assert_eq!(attrs.len(), 3);
        match attrs[0].value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::ArrayValue(a)) => assert!(a.values.is_empty()),
            other => panic!("{other:?}"),
        }
        assert_eq!(attrs[1].key, "");
        let bytes = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10",
            "spanId":"0102030405060708","attributes":[{"key":"b","value":{"bytesValue":"AQID_w"}}]}]}]}]}"#;
        let req = ExportTraceServiceRequest::decode(
            json_to_protobuf::<ExportTraceServiceRequest>(bytes)
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        match req.resource_spans[0].scope_spans[0].spans[0].attributes[0]
            .value
            .as_ref()
            .and_then(|v| v.value.as_ref())
        {
            Some(Value::BytesValue(b)) => assert_eq!(b, &[1, 2, 3, 255]),
            other => panic!("{other:?}"),
        }
        match attrs[2].value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::KvlistValue(l)) => {
                assert_eq!(l.values[0].key, "");
                assert_eq!(l.values[1].key, "inner");
            }
            other => panic!("{other:?}"),
        }
        // Still refused: what no encoder omits.
        let err = json_to_protobuf::<ExportTraceServiceRequest>(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER"}]}]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("invalid OTLP/JSON"), "{err}");
    }

    #[test]
    fn a_json_metric_whose_data_cannot_be_read_is_rejected_not_dropped() {
        let json = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},
            "scopeMetrics":[{"metrics":[
              {"name":"bad_sum","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","dataPoints":[{"timeUnixNano":"1","asInt":"2"}]}},
              {"name":"bad_value","gauge":{"dataPoints":[{"timeUnixNano":"1","asInt":"1.5"}]}},
              {"name":"good","gauge":{"dataPoints":[{"timeUnixNano":"1","asDouble":2.5}]}}]}]}]}"#;
        let bytes = json_to_protobuf::<ExportMetricsServiceRequest>(json).unwrap();
        let c = convert_request(&ExportMetricsServiceRequest::decode(bytes.as_slice()).unwrap())
            .unwrap();
        assert_eq!(c.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        assert_eq!(c.rejections.total(), 2);
        let why = c.rejections.message("data points").unwrap();
        assert!(
            why.contains("whose data could not be read") && why.contains("without a value"),
            "{why}"
        );
    }
}
