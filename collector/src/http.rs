//! OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with
//! protobuf or JSON bodies, optionally gzip-compressed.

use crate::ingest::{json_to_protobuf, ExportRequest, IngestError, Ingestor};
use crate::memory::Reservation;
use crate::reply::{failure, success, Format};
use crate::stats::Transport;
use crate::tls::{self, Tls};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct HttpState {
    ingestor: Ingestor,
    max_bytes: usize,
    retry_after_secs: u32,
    auth: crate::auth::Auth,
}

/// The OTLP/HTTP routes, testable without a socket.
pub fn router(
    ingestor: Ingestor,
    max_message_bytes: usize,
    retry_after_secs: u32,
    auth: crate::auth::Auth,
) -> Router {
    let st = HttpState {
        ingestor,
        max_bytes: max_message_bytes,
        retry_after_secs,
        auth,
    };
    Router::new()
        .route("/v1/traces", post(export::<ExportTraceServiceRequest>))
        .route("/v1/metrics", post(export::<ExportMetricsServiceRequest>))
        .route("/v1/logs", post(export::<ExportLogsServiceRequest>))
        // The size limit is ours (before and after inflation), not axum's 2 MB.
        .layer(DefaultBodyLimit::disable())
        .with_state(st)
}

/// Serves `router` on `listener` until `shutdown`, then drains requests in flight.
/// Serves `router` on `listener` (HTTP/1.1 and HTTP/2, over TLS when `tls`
/// is given) until `shutdown`, then lets open connections finish their
/// requests. A client that has not completed its TLS handshake, or sent a
/// request's headers, within `header_read_timeout` is disconnected, so slow
/// or idle connections (slowloris) cannot pile up.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
    tls: Option<(Arc<Tls>, tls::Listener)>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = tls.is_some(), "HTTP listening");
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(%addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            builder: builder.clone(),
            router: router.clone(),
            stop: shutdown.clone(),
            peer,
        };
        let tls = tls.clone();
        connections.spawn(async move {
            let Some((tls, which)) = tls else {
                return conn.serve(stream).await;
            };
            if let Some(s) = tls
                .handshake(which, stream, peer, header_read_timeout)
                .await
            {
                conn.serve(s).await;
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One accepted connection, served until it ends or the server stops.
struct Conn {
    builder: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    router: Router,
    stop: CancellationToken,
    peer: std::net::SocketAddr,
}

impl Conn {
    async fn serve<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper_util::service::TowerToHyperService::new(self.router);
        let conn = self
            .builder
            .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service);
        tokio::pin!(conn);
        let outcome = tokio::select! {
            r = conn.as_mut() => r,
            _ = self.stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = outcome {
            tracing::debug!(peer = %self.peer, error = %e, "HTTP connection ended");
        }
    }
}

async fn export<R: ExportRequest>(
    State(st): State<HttpState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(denied) = st.auth.check(authorization, crate::auth::Scope::Ingest) {
        let err = IngestError::from(denied);
        st.ingestor.refused(R::SIGNAL, Transport::Http, &err);
        let fmt = Format::from_content_type(ct).unwrap_or(Format::Json);
        return failure(fmt, &err, st.retry_after_secs);
    }
    let Some(fmt) = Format::from_content_type(ct) else {
        let err = IngestError::Unsupported(format!(
            "unsupported Content-Type {ct:?}: use application/x-protobuf or application/json"
        ));
        st.ingestor.refused(R::SIGNAL, Transport::Http, &err);
        return failure(Format::Json, &err, st.retry_after_secs);
    };
    let (payload, held) = match read::<R>(&st, fmt, &headers, body).await {
        Ok(p) => p,
        Err(e) => {
            st.ingestor.refused(R::SIGNAL, Transport::Http, &e);
            return failure(fmt, &e, st.retry_after_secs);
        }
    };
    match st
        .ingestor
        .ingest(R::SIGNAL, payload, held, Transport::Http)
        .await
    {
        Ok(acc) => success::<R>(fmt, &acc),
        Err(e) => failure(fmt, &e, st.retry_after_secs),
    }
}

/// Reads, inflates and (for JSON) re-encodes the body as protobuf bytes,
/// holding a memory reservation that grows with every byte kept.
async fn read<R: ExportRequest>(
    st: &HttpState,
    fmt: Format,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, Reservation), IngestError> {
    let max = st.max_bytes;
    let too_large = |what: &str| {
        IngestError::TooLarge(format!(
            "{what} exceeds the limit of {max} bytes (otlp.max_message_bytes)"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large("request body"));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let gzip = match encoding.as_str() {
        "" | "identity" => false,
        "gzip" | "x-gzip" => true,
        other => {
            return Err(IngestError::Unsupported(format!(
                "unsupported Content-Encoding {other:?}: use gzip or none"
            )))
        }
    };
    // Admitted before anything is read: the declared size, if any. A
    // refusal for memory still reads (and drops) the body, so the client
    // gets its 503 instead of a connection reset in the middle of sending.
    let mut body = body;
    let mut held = match st.ingestor.reserve(declared.unwrap_or(0) as usize) {
        Ok(held) => held,
        Err(e) => {
            discard(&mut body, max).await;
            return Err(e);
        }
    };
    let raw = match read_limited(&mut body, max, &mut held).await {
        Ok(raw) => raw,
        Err(ReadError::TooLarge) => return Err(too_large("request body")),
        Err(ReadError::Memory(e)) => {
            discard(&mut body, max).await;
            return Err(e);
        }
        Err(ReadError::Body(m)) => {
            return Err(IngestError::Malformed(format!("reading request body: {m}")))
        }
    };
    let bytes = if gzip {
        let out = inflate(&raw, max, &mut held)?;
        drop(raw);
        held.resize(out.len())?;
        Bytes::from(out)
    } else {
        raw
    };
    let payload = match fmt {
        Format::Protobuf => bytes,
        Format::Json => {
            let need = bytes.len() + json_decode_bytes(&bytes);
            if held.limit().is_some_and(|l| need as u64 > l) {
                // Never fits: not worth a retry.
                return Err(IngestError::TooLarge(format!(
                    "this OTLP/JSON body could take {need} bytes to decode, more than limits.memory_bytes; send smaller batches"
                )));
            }
            held.resize(need)?;
            let pb = json_to_protobuf::<R>(&bytes)?;
            held.resize(bytes.len() + pb.len())?;
            drop(bytes);
            Bytes::from(pb)
        }
    };
    held.resize(payload.len())?;
    Ok((payload, held))
}

/// What decoding a JSON body may hold before it is protobuf again: 128
/// bytes for every object, counted by its `{`. Most objects are attributes
/// and values (tens of bytes decoded); a span is 264, so a body of nothing
/// but empty spans is reserved at half its decoded size, which still
/// refuses it long before it could matter: 64 MiB of `{},` would be 6 GB of
/// empty spans, reserved first, so refused (413 when it could never fit,
/// 503 while memory is short) instead of allocated. A typical span with
/// ten attributes (about 820 bytes of JSON, 23 objects) reserves 2.9 KB.
fn json_decode_bytes(json: &[u8]) -> usize {
    json.iter()
        .filter(|&&b| b == b'{')
        .count()
        .saturating_mul(128)
}

/// Reads the rest of a refused body without keeping it, up to `max` bytes
/// (a larger one is left: the connection closes instead).
async fn discard(body: &mut Body, max: usize) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > max {
                return;
            }
        }
    }
}

enum ReadError {
    TooLarge,
    Memory(IngestError),
    Body(String),
}

/// Collects the body frame by frame, refusing past `max` bytes or when the
/// memory limiter will not hold the next frame.
async fn read_limited(
    body: &mut Body,
    max: usize,
    held: &mut Reservation,
) -> Result<Bytes, ReadError> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if is_length_limit(&e) {
                ReadError::TooLarge
            } else {
                ReadError::Body(e.to_string())
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > max {
            return Err(ReadError::TooLarge);
        }
        if buf.len() + data.len() > held.bytes() as usize {
            held.resize(buf.len() + data.len())
                .map_err(|e| ReadError::Memory(e.into()))?;
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// Inflates gzip (several members allowed) up to `max` bytes; a bomb is cut
/// at the limit, never inflated whole. Memory is reserved as it grows.
pub(crate) fn inflate(
    raw: &[u8],
    max: usize,
    held: &mut Reservation,
) -> Result<Vec<u8>, IngestError> {
    let mut dec = flate2::read::MultiGzDecoder::new(raw);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = dec
            .read(&mut chunk)
            .map_err(|e| IngestError::Malformed(format!("invalid gzip body: {e}")))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > max {
            return Err(IngestError::TooLarge(format!(
                "inflated gzip body exceeds the limit of {max} bytes (otlp.max_message_bytes)"
            )));
        }
        held.resize(raw.len() + out.len() + n)?;
        out.extend_from_slice(&chunk[..n]);
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        src = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Attributor;
    use crate::memory::MemoryLimiter;
    use crate::pipeline::Pipeline;
    use axum::http::{Request, StatusCode};
    use std::time::Duration;
    use tower::ServiceExt;

    fn one_span() -> String {
        serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708",
            "name": "s", "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000000000001"
        }]}]}]})
        .to_string()
    }

    fn request() -> Request<Body> {
        Request::post("/v1/traces")
            .header("content-type", "application/json")
            .body(Body::from(one_span()))
            .unwrap()
    }

    fn ingestor(pipeline: Pipeline, memory: u64) -> (Ingestor, std::sync::Arc<crate::IngestStats>) {
        let stats = std::sync::Arc::new(crate::IngestStats::default());
        let ing = Ingestor::new(
            Attributor::new(Default::default()),
            Default::default(),
            pipeline,
            stats.clone(),
            MemoryLimiter::new(memory),
        );
        (ing, stats)
    }

    #[tokio::test]
    async fn full_queue_answers_503_with_retry_after_and_counts_it() {
        let (pipeline, mut rx) = Pipeline::bounded(1, Duration::from_millis(20));
        let (ing, stats) = ingestor(pipeline, 1 << 30);
        let app = router(ing, 1 << 20, 7, crate::auth::Auth::disabled());
        // A store that answers the first commit, then stops reading.
        let store = tokio::spawn(async move {
            let c = rx.recv().await.unwrap();
            let rows = c.batch.rows();
            c.finish(Ok(()));
            (rows, rx)
        });
        assert_eq!(
            app.clone().oneshot(request()).await.unwrap().status(),
            StatusCode::OK
        );
        let (rows, mut rx) = store.await.unwrap();
        assert_eq!(rows, 1, "the accepted request reached the store intact");
        // The queue fills (one waiting commit) and nobody drains it.
        let waiting = tokio::spawn(app.clone().oneshot(request()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        let s = crate::Signal::Traces;
        assert_eq!(
            stats.refused_count(s, Transport::Http, crate::stats::RefusalKind::Unavailable),
            1
        );
        assert_eq!(stats.accepted_count(s, Transport::Http), 1);
        rx.recv().await.unwrap().finish(Ok(()));
        assert_eq!(waiting.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_failed_log_write_or_a_closed_pipeline_is_retryable() {
        let (pipeline, mut rx) = Pipeline::bounded(4, Duration::from_millis(20));
        let (ing, _) = ingestor(pipeline, 1 << 30);
        let app = router(ing, 1 << 20, 1, crate::auth::Auth::disabled());
        tokio::spawn(async move {
            rx.recv()
                .await
                .unwrap()
                .finish(Err("No space left on device".into()));
        });
        let r = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("No space left"));
        let r = app.oneshot(request()).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "store gone");
    }

    #[tokio::test]
    async fn over_the_memory_limit_is_503_with_retry_after_and_recovers() {
        let (pipeline, mut rx) = Pipeline::bounded(4, Duration::from_millis(20));
        let (ing, stats) = ingestor(pipeline, 1 << 20);
        let memory = ing.memory().clone();
        let app = router(ing, 1 << 20, 3, crate::auth::Auth::disabled());
        tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                c.finish(Ok(()));
            }
        });
        let hog = memory.try_reserve((1 << 20) - 100).unwrap();
        let r = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert_eq!(
            stats.refused_count(
                crate::Signal::Traces,
                Transport::Http,
                crate::stats::RefusalKind::MemoryLimit
            ),
            1
        );
        drop(hog);
        assert_eq!(
            app.oneshot(request()).await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(memory.used(), 0, "nothing held once the store dropped it");
    }

    /// A router whose ingestor has `memory` bytes and whose store accepts
    /// every commit.
    fn accepting_app(memory: u64) -> axum::Router {
        let (pipeline, mut rx) = Pipeline::bounded(4, Duration::from_millis(20));
        let (ing, _) = ingestor(pipeline, memory);
        tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                c.finish(Ok(()));
            }
        });
        router(ing, 1 << 20, 3, crate::auth::Auth::disabled())
    }

    #[tokio::test]
    async fn what_json_decodes_to_is_reserved_before_decoding() {
        let app = accepting_app(8 << 20);
        // 300 KB of empty spans: 100,000 structs (about 26 MB) if decoded,
        // over the 8 MiB limit even as reserved (12.8 MB).
        let spans = vec!["{}"; 100_000].join(",");
        let body = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#);
        let bomb = Request::post("/v1/traces")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let r = app.clone().oneshot(bomb).await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            app.oneshot(request()).await.unwrap().status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn what_protobuf_metrics_decode_to_is_reserved_before_decoding() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            metric, ExponentialHistogram, ExponentialHistogramDataPoint, Metric, ResourceMetrics,
            ScopeMetrics,
        };
        use prost::Message;
        let app = accepting_app(8 << 20);
        let metrics = |points: usize| {
            let data = metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint::default(); points],
                ..Default::default()
            });
            let r = ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![Metric {
                            name: "m".into(),
                            data: Some(data),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            Request::post("/v1/metrics")
                .header("content-type", "application/x-protobuf")
                .body(Body::from(r.encode_to_vec()))
                .unwrap()
        };
        // 60,000 empty points: 120 KB on the wire, 60,000 structs of 208
        // bytes (more in their vector) once decoded, over the 8 MiB limit.
        let r = app.clone().oneshot(metrics(60_000)).await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("limits.memory_bytes"));
        assert_eq!(
            app.oneshot(metrics(100)).await.unwrap().status(),
            StatusCode::OK
        );
    }
}
