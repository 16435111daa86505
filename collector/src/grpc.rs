//! OTLP/gRPC receiver: `TraceService`, `MetricsService` and `LogsService`
//! `Export` on a bound listener, gzip accepted.

use crate::ingest::{ExportRequest, IngestError, Ingestor};
use crate::stats::Transport;
use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        logs_service_server::{LogsService, LogsServiceServer},
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    },
    metrics::v1::{
        metrics_service_server::{MetricsService, MetricsServiceServer},
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    },
    trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http;
use tonic::{Code, Request, Response, Status};

/// Maps an ingest error to its gRPC status (OTLP spec, "Failures").
fn status(e: IngestError) -> Status {
    match e {
        IngestError::Malformed(m) => Status::invalid_argument(m),
        IngestError::TooLarge(m) => Status::resource_exhausted(m),
        IngestError::Unsupported(m) => Status::unimplemented(m),
        IngestError::Unavailable(m) => Status::unavailable(m),
        IngestError::Internal(m) => Status::internal(m),
    }
}

#[derive(Clone)]
struct Svc(Ingestor);

impl Svc {
    async fn export<R: ExportRequest>(
        &self,
        req: Request<R>,
    ) -> Result<Response<R::Response>, Status> {
        let req = req.into_inner();
        let acc = self.0.ingest(&req, Transport::Grpc).await.map_err(status)?;
        Ok(Response::new(R::response(&acc)))
    }
}

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        Svc::export(self, req).await
    }
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        Svc::export(self, req).await
    }
}

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        Svc::export(self, req).await
    }
}

/// tonic refuses an oversized message with OUT_OF_RANGE; the OTLP spec wants
/// RESOURCE_EXHAUSTED. Our handlers never answer OUT_OF_RANGE, so any such
/// trailers-only answer is tonic's size check and is rewritten here.
fn size_status<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let out_of_range = (Code::OutOfRange as i32).to_string();
    if resp
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == out_of_range.as_bytes())
    {
        let exhausted = (Code::ResourceExhausted as i32).to_string();
        resp.headers_mut()
            .insert("grpc-status", exhausted.parse().expect("digits"));
    }
    resp
}

/// Serves OTLP/gRPC on `listener` until `shutdown` is cancelled, then lets
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    ingestor: Ingestor,
    max_message_bytes: usize,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let svc = Svc(ingestor);
    let gz = CompressionEncoding::Gzip;
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "OTLP/gRPC listening");
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(size_status))
        .add_service(
            TraceServiceServer::new(svc.clone())
                .accept_compressed(gz)
                .send_compressed(gz)
                .max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            MetricsServiceServer::new(svc.clone())
                .accept_compressed(gz)
                .send_compressed(gz)
                .max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            LogsServiceServer::new(svc)
                .accept_compressed(gz)
                .send_compressed(gz)
                .max_decoding_message_size(max_message_bytes),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
}
