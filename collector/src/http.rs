//! OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with
//! protobuf or JSON bodies, optionally gzip-compressed.

use crate::ingest::{ExportRequest, IngestError, Ingestor};
use crate::reply::{failure, success, Format};
use crate::stats::Transport;
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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct HttpState {
    ingestor: Ingestor,
    max_bytes: usize,
    retry_after_secs: u32,
}

/// The OTLP/HTTP routes, testable without a socket.
pub fn router(ingestor: Ingestor, max_message_bytes: usize, retry_after_secs: u32) -> Router {
    let st = HttpState {
        ingestor,
        max_bytes: max_message_bytes,
        retry_after_secs,
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
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "OTLP/HTTP listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
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
    let Some(fmt) = Format::from_content_type(ct) else {
        let err = IngestError::Unsupported(format!(
            "unsupported Content-Type {ct:?}: use application/x-protobuf or application/json"
        ));
        st.ingestor.refused(R::SIGNAL, Transport::Http, &err);
        return failure(Format::Json, &err, st.retry_after_secs);
    };
    match decode::<R>(fmt, &headers, body, st.max_bytes).await {
        Ok(req) => match st.ingestor.ingest(&req, Transport::Http).await {
            Ok(acc) => success::<R>(fmt, &acc),
            Err(e) => failure(fmt, &e, st.retry_after_secs),
        },
        Err(e) => {
            st.ingestor.refused(R::SIGNAL, Transport::Http, &e);
            failure(fmt, &e, st.retry_after_secs)
        }
    }
}

async fn decode<R: ExportRequest>(
    fmt: Format,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<R, IngestError> {
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
    let raw = axum::body::to_bytes(body, max).await.map_err(|e| {
        if is_length_limit(&e) {
            too_large("request body")
        } else {
            IngestError::Malformed(format!("reading request body: {e}"))
        }
    })?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "" | "identity" => raw,
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            // Read one byte past the limit to tell "exactly max" from a bomb.
            flate2::read::MultiGzDecoder::new(&raw[..])
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| IngestError::Malformed(format!("invalid gzip body: {e}")))?;
            if out.len() > max {
                return Err(too_large("inflated gzip body"));
            }
            Bytes::from(out)
        }
        other => {
            return Err(IngestError::Unsupported(format!(
                "unsupported Content-Encoding {other:?}: use gzip or none"
            )))
        }
    };
    match fmt {
        Format::Protobuf => R::decode(bytes).map_err(|e| {
            IngestError::Malformed(format!("invalid protobuf {}: {e}", R::SIGNAL.name()))
        }),
        Format::Json => serde_json::from_slice(&bytes).map_err(|e| {
            IngestError::Malformed(format!("invalid OTLP/JSON {}: {e}", R::SIGNAL.name()))
        }),
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

    #[tokio::test]
    async fn full_queue_answers_503_with_retry_after_and_counts_it() {
        let (pipeline, mut rx) = Pipeline::bounded(1, Duration::from_millis(20));
        let stats = std::sync::Arc::new(crate::IngestStats::default());
        let ing = Ingestor::new(Attributor::new(Default::default()), pipeline, stats.clone());
        let app = router(ing, 1 << 20, 7);
        assert_eq!(
            app.clone().oneshot(request()).await.unwrap().status(),
            StatusCode::OK
        );
        // Nobody drains the queue: the second request cannot be handed off.
        let r = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        let s = crate::Signal::Traces;
        assert_eq!(
            stats.refused_count(s, Transport::Http, crate::stats::RefusalKind::Unavailable),
            1
        );
        assert_eq!(stats.accepted_count(s, Transport::Http), 1);
        // The accepted one is in the queue, intact.
        assert_eq!(rx.recv().await.unwrap().batch.num_rows(), 1);
        assert_eq!(
            app.oneshot(request()).await.unwrap().status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn closed_pipeline_is_retryable_too() {
        let (pipeline, rx) = Pipeline::bounded(4, Duration::from_millis(20));
        drop(rx);
        let ing = Ingestor::new(
            Attributor::new(Default::default()),
            pipeline,
            Default::default(),
        );
        let r = router(ing, 1 << 20, 1).oneshot(request()).await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
