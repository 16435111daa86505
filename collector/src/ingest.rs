//! The transport-independent core of a receiver: convert, hand off, count.

use crate::attribution::Attributor;
use crate::convert::{logs_to_batch, metrics_to_batch, spans_to_batch, Converted};
use crate::pipeline::{IngestBatch, Pipeline, SendError};
use crate::schema::Signal;
use crate::stats::{IngestStats, RefusalKind, Transport};
use datafusion::arrow::error::ArrowError;
use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse},
    metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    },
    trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse},
};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// What a client is told after its request was handed off.
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
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl IngestError {
    pub fn kind(&self) -> RefusalKind {
        match self {
            IngestError::Malformed(_) => RefusalKind::Malformed,
            IngestError::TooLarge(_) => RefusalKind::TooLarge,
            IngestError::Unsupported(_) => RefusalKind::Unsupported,
            IngestError::Unavailable(_) => RefusalKind::Unavailable,
            IngestError::Internal(_) => RefusalKind::Internal,
        }
    }
}

/// An OTLP export request of one signal.
pub trait ExportRequest: prost::Message + Default + DeserializeOwned + Send + 'static {
    const SIGNAL: Signal;
    type Response: prost::Message + Default;
    fn convert(&self, a: &Attributor, received_ns: i64) -> Result<Converted, ArrowError>;
    fn response(acc: &Accepted) -> Self::Response;
    /// The JSON name of the partial-success count field.
    const REJECTED_FIELD: &'static str;
}

macro_rules! export_request {
    ($req:ty, $resp:ty, $partial:ident, $field:ident, $json:literal, $signal:expr, |$s:ident, $a:ident, $t:ident| $conv:expr) => {
        impl ExportRequest for $req {
            const SIGNAL: Signal = $signal;
            const REJECTED_FIELD: &'static str = $json;
            type Response = $resp;
            fn convert(&self, $a: &Attributor, $t: i64) -> Result<Converted, ArrowError> {
                let $s = self;
                $conv
            }
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
    Signal::Traces,
    |s, a, _t| spans_to_batch(s, a)
);
export_request!(
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    ExportMetricsPartialSuccess,
    rejected_data_points,
    "rejectedDataPoints",
    Signal::Metrics,
    |s, a, _t| metrics_to_batch(s, a)
);
export_request!(
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    ExportLogsPartialSuccess,
    rejected_log_records,
    "rejectedLogRecords",
    Signal::Logs,
    |s, a, t| logs_to_batch(s, a, t)
);

/// Shared by both transports: one per process.
#[derive(Debug, Clone)]
pub struct Ingestor {
    attributor: Arc<Attributor>,
    pipeline: Pipeline,
    stats: Arc<IngestStats>,
}

impl Ingestor {
    pub fn new(attributor: Attributor, pipeline: Pipeline, stats: Arc<IngestStats>) -> Self {
        Self {
            attributor: Arc::new(attributor),
            pipeline,
            stats,
        }
    }

    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Converts `req` and waits for it to enter the queue.
    pub async fn ingest<R: ExportRequest>(
        &self,
        req: &R,
        transport: Transport,
    ) -> Result<Accepted, IngestError> {
        let now = now_ns();
        let converted = req
            .convert(&self.attributor, now)
            .map_err(|e| IngestError::Internal(format!("converting to Arrow: {e}")))
            .inspect_err(|e| self.refused(R::SIGNAL, transport, e))?;
        let rows = converted.rows() as u64;
        let rejected = converted.rejections.total();
        if let Some(batch) = converted.batch {
            let item = IngestBatch {
                signal: R::SIGNAL,
                batch,
            };
            if let Err(e) = self.pipeline.send(item).await {
                let err = IngestError::Unavailable(e.to_string());
                if e == SendError::Full {
                    tracing::warn!(
                        signal = R::SIGNAL.name(),
                        transport = transport.name(),
                        depth = self.pipeline.depth(),
                        "ingest queue full; asking the client to retry"
                    );
                }
                self.refused(R::SIGNAL, transport, &err);
                return Err(err);
            }
        }
        self.stats.accepted(R::SIGNAL, transport, rows);
        let message = converted.rejections.message(R::SIGNAL.record_noun());
        if rejected > 0 {
            self.stats.rejected(R::SIGNAL, transport, rejected);
            tracing::debug!(
                signal = R::SIGNAL.name(),
                transport = transport.name(),
                rejected,
                reason = message.as_deref().unwrap_or(""),
                "partial success"
            );
        }
        Ok(Accepted { rejected, message })
    }

    /// Counts and logs a request refused before or during conversion.
    pub fn refused(&self, signal: Signal, transport: Transport, err: &IngestError) {
        self.stats.refused(signal, transport, err.kind());
        tracing::debug!(signal = signal.name(), transport = transport.name(),
            kind = err.kind().name(), error = %err, "request refused");
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
