//! OTLP/gRPC receiver: `TraceService`, `MetricsService` and `LogsService`
//! `Export` on a bound listener, gzip accepted.
//!
//! The services are written against tonic's server machinery with a codec
//! that hands over the message bytes as they arrived ([`RawCodec`]): the
//! request is decoded once, straight into Arrow, by [`crate::convert`],
//! never into prost structs first.

use crate::ingest::{ExportRequest, IngestError, Ingestor};
use crate::stats::Transport;
use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::{Code, Status};

/// Maps an ingest error to its gRPC status (OTLP spec, "Failures").
/// Overload is UNAVAILABLE, which every OTLP exporter retries.
pub(crate) fn status(e: IngestError) -> Status {
    match e {
        IngestError::Malformed(m) => Status::invalid_argument(m),
        IngestError::TooLarge(m) => Status::resource_exhausted(m),
        IngestError::Unsupported(m) => Status::unimplemented(m),
        IngestError::Unavailable(m) | IngestError::Overloaded(m) => Status::unavailable(m),
        IngestError::Internal(m) => Status::internal(m),
        IngestError::Unauthenticated(m) => Status::unauthenticated(m),
        IngestError::PermissionDenied(m) => Status::permission_denied(m),
    }
}

/// A codec whose requests are the message bytes and whose responses are
/// prost messages.
pub(crate) struct RawCodec<Resp>(PhantomData<fn() -> Resp>);

impl<Resp> Default for RawCodec<Resp> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

pub(crate) struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

pub(crate) struct MessageEncoder<T>(PhantomData<fn(T)>);

impl<T: prost::Message> Encoder for MessageEncoder<T> {
    type Item = T;
    type Error = Status;
    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

impl<Resp: prost::Message + Send + 'static> Codec for RawCodec<Resp> {
    type Encode = Resp;
    type Decode = Bytes;
    type Encoder = MessageEncoder<Resp>;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// The gRPC name of each export service.
pub(crate) trait GrpcService: ExportRequest {
    const SERVICE: &'static str;
    const EXPORT_PATH: &'static str;
}

impl GrpcService for ExportTraceServiceRequest {
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
}
impl GrpcService for ExportMetricsServiceRequest {
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const EXPORT_PATH: &'static str =
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
}
impl GrpcService for ExportLogsServiceRequest {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
}

/// One OTLP export service.
pub(crate) struct ExportService<R> {
    ingestor: Ingestor,
    max_message_bytes: usize,
    auth: crate::auth::Auth,
    _r: PhantomData<fn() -> R>,
}

impl<R> Clone for ExportService<R> {
    fn clone(&self) -> Self {
        Self {
            ingestor: self.ingestor.clone(),
            max_message_bytes: self.max_message_bytes,
            auth: self.auth.clone(),
            _r: PhantomData,
        }
    }
}

impl<R: GrpcService> tonic::server::NamedService for ExportService<R> {
    const NAME: &'static str = R::SERVICE;
}

struct Unary<R>(Ingestor, PhantomData<fn() -> R>);

impl<R: GrpcService> tonic::server::UnaryService<Bytes> for Unary<R> {
    type Response = R::Response;
    type Future = BoxFuture<tonic::Response<R::Response>, Status>;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ing = self.0.clone();
        Box::pin(async move {
            let payload = request.into_inner();
            let held = ing.reserve(payload.len()).map_err(|e| {
                ing.refused(R::SIGNAL, Transport::Grpc, &e);
                status(e)
            })?;
            let acc = ing
                .ingest(R::SIGNAL, payload, held, Transport::Grpc)
                .await
                .map_err(status)?;
            Ok(tonic::Response::new(R::response(&acc)))
        })
    }
}

impl<R, B> Service<http::Request<B>> for ExportService<R>
where
    R: GrpcService,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != R::EXPORT_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let h = response.headers_mut();
                h.insert(Status::GRPC_STATUS, (Code::Unimplemented as i32).into());
                h.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        // Credentials first, before the message is read.
        let authorization = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(denied) = self.auth.check(authorization, crate::auth::Scope::Ingest) {
            let err = IngestError::from(denied);
            self.ingestor.refused(R::SIGNAL, Transport::Grpc, &err);
            let st = status(err);
            return Box::pin(async move { Ok(st.into_http()) });
        }
        let method = Unary::<R>(self.ingestor.clone(), PhantomData);
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut gz = EnabledCompressionEncodings::default();
            gz.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawCodec::<R::Response>::default())
                .apply_compression_config(gz, gz)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// tonic refuses an oversized message with OUT_OF_RANGE; the OTLP spec wants
/// RESOURCE_EXHAUSTED. Our handlers never answer OUT_OF_RANGE, so any such
/// trailers-only answer is tonic's size check and is rewritten here.
fn size_status<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let code = |c: Code| (c as i32).to_string();
    let status = resp.headers().get("grpc-status").map(|v| v.as_bytes());
    let to = if status == Some(code(Code::OutOfRange).as_bytes()) {
        Some(Code::ResourceExhausted)
    } else if status == Some(code(Code::Internal).as_bytes())
        && resp.headers().get("grpc-message").is_some_and(|m| {
            // tonic's message for a body that does not inflate, percent-encoded.
            let m = m.as_bytes();
            m.starts_with(b"Error%20decompressing") || m.starts_with(b"Error decompressing")
        })
    {
        // Bad gzip is the client's fault, as over HTTP (400): not retried.
        Some(Code::InvalidArgument)
    } else {
        None
    };
    if let Some(to) = to {
        resp.headers_mut()
            .insert("grpc-status", code(to).parse().expect("digits"));
    }
    resp
}

fn service<R: GrpcService>(
    ingestor: &Ingestor,
    max_message_bytes: usize,
    auth: &crate::auth::Auth,
) -> ExportService<R> {
    ExportService {
        ingestor: ingestor.clone(),
        max_message_bytes,
        auth: auth.clone(),
        _r: PhantomData,
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` is cancelled, then lets
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    ingestor: Ingestor,
    max_message_bytes: usize,
    auth: crate::auth::Auth,
    shutdown: CancellationToken,
    tls: Option<Arc<crate::tls::Tls>>,
) -> Result<(), tonic::transport::Error> {
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = tls.is_some(), "OTLP/gRPC listening");
    let router = tonic::transport::Server::builder()
        // Bounded work per connection: a client cannot open unlimited streams.
        .concurrency_limit_per_connection(256)
        .max_concurrent_streams(Some(256))
        .layer(tower::util::MapResponseLayer::new(size_status))
        .add_service(service::<ExportTraceServiceRequest>(
            &ingestor,
            max_message_bytes,
            &auth,
        ))
        .add_service(service::<ExportMetricsServiceRequest>(
            &ingestor,
            max_message_bytes,
            &auth,
        ))
        .add_service(service::<ExportLogsServiceRequest>(
            &ingestor,
            max_message_bytes,
            &auth,
        ));
    match tls {
        None => {
            router
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    shutdown.cancelled_owned(),
                )
                .await
        }
        Some(tls) => {
            let incoming = tls_incoming(listener, tls, shutdown.clone());
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
        }
    }
}

/// Accepted connections after their TLS handshake (each handshake on its own
/// task, at most 10 s, so a slow client cannot hold up the others).
fn tls_incoming(
    listener: TcpListener,
    tls: Arc<crate::tls::Tls>,
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<crate::tls::TlsConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                let limit = std::time::Duration::from_secs(10);
                let which = crate::tls::Listener::OtlpGrpc;
                if let Some(s) = tls.handshake(which, stream, peer, limit).await {
                    let _ = tx.send(Ok(crate::tls::TlsConn(s))).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> String {
        let resp = http::Response::builder()
            .header("grpc-status", (code as i32).to_string())
            .header("grpc-message", message)
            .body(())
            .unwrap();
        let out = size_status(resp);
        out.headers()["grpc-status"].to_str().unwrap().to_string()
    }

    #[test]
    fn size_and_bad_gzip_get_the_codes_of_their_http_answers() {
        let want = |c: Code| (c as i32).to_string();
        assert_eq!(
            status(Code::OutOfRange, "too big"),
            want(Code::ResourceExhausted)
        );
        assert_eq!(
            status(
                Code::Internal,
                "Error%20decompressing:%20invalid%20gzip%20header,%20while%20sending%20request"
            ),
            want(Code::InvalidArgument)
        );
        assert_eq!(status(Code::Internal, "store failed"), want(Code::Internal));
        assert_eq!(status(Code::Unavailable, "x"), want(Code::Unavailable));
    }
}
