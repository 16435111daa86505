//! How OTLP/HTTP answers: success bodies with `partial_success`, and
//! `google.rpc.Status` error bodies, each in the request's encoding
//! (OTLP spec 1.x, "OTLP/HTTP Response").

use crate::ingest::{Accepted, ExportRequest, IngestError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From a `Content-Type` value; MIME parameters such as `charset` are ignored.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        })
    }
}

/// `google.rpc.Status` (details are never sent).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

pub(crate) fn success<R: ExportRequest>(fmt: Format, acc: &Accepted) -> Response {
    let body = match fmt {
        Format::Protobuf => R::response(acc).encode_to_vec(),
        Format::Json => {
            let v = match &acc.message {
                // int64 fields are strings in the protobuf JSON mapping.
                Some(m) => serde_json::json!({"partialSuccess": {
                    R::REJECTED_FIELD: acc.rejected.to_string(),
                    "errorMessage": m,
                }}),
                None => serde_json::json!({}),
            };
            serde_json::to_vec(&v).expect("JSON of plain values")
        }
    };
    ([(header::CONTENT_TYPE, fmt.content_type())], body).into_response()
}

/// Maps a refusal to its HTTP status and a Status body.
pub(crate) fn failure(fmt: Format, err: &IngestError, retry_after_secs: u32) -> Response {
    let (status, code) = match err {
        IngestError::Malformed(_) => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
        IngestError::TooLarge(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
        ),
        IngestError::Unsupported(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
        ),
        IngestError::Unavailable(_) | IngestError::Overloaded(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable)
        }
        IngestError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, tonic::Code::Internal),
        IngestError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, tonic::Code::Unauthenticated),
        IngestError::PermissionDenied(_) => (StatusCode::FORBIDDEN, tonic::Code::PermissionDenied),
    };
    let st = RpcStatus {
        code: code as i32,
        message: err.to_string(),
    };
    let body = match fmt {
        Format::Protobuf => st.encode_to_vec(),
        Format::Json => {
            serde_json::to_vec(&serde_json::json!({"code": st.code, "message": st.message}))
                .expect("JSON of plain values")
        }
    };
    let mut resp = (status, [(header::CONTENT_TYPE, fmt.content_type())], body).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    }
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_with_parameters() {
        assert_eq!(
            Format::from_content_type("application/json; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type("Application/X-Protobuf"),
            Some(Format::Protobuf)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
        assert_eq!(Format::from_content_type(""), None);
    }
}
