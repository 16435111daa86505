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
pub fn json_to_protobuf<R: ExportRequest>(json: &[u8]) -> Result<Vec<u8>, IngestError> {
    let req: R = serde_json::from_slice(json).map_err(|e| {
        IngestError::Malformed(format!("invalid OTLP/JSON {}: {e}", R::SIGNAL.name()))
    })?;
    Ok(req.encode_to_vec())
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
