//! Who may read and who may act: the scope each API route needs, checked
//! before the handler runs (see `graylens_collector::auth`).
//!
//! - open: `GET /api/v1/health` and the UI's pages and assets (they hold no
//!   data; the data comes from the API, which asks for a token);
//! - `read`: every other `GET` under `/api/`, `GET /metrics`, `POST /api/v1/sql`
//!   and `POST /api/v1/query` (Prometheus's form-encoded query);
//! - `write`: everything else under `/api/` (`POST`/`DELETE` rollouts);
//! - Flagger hooks check in their handler, because Flagger cannot set
//!   headers on webhooks: a bearer header or `metadata.token` in the body.
//!
//! Every write is logged (the audit trail) with the token's name.

use super::ApiState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use graylens_collector::auth::{Denied, Scope};
use serde_json::json;

/// The scope `method path` needs; `None` when open or checked by the handler.
pub(crate) fn scope_of(method: &Method, path: &str) -> Option<Scope> {
    if path == "/api/v1/health" || path.starts_with("/api/v1/flagger/") {
        return None;
    }
    let api = path.starts_with("/api/") || path == "/metrics";
    match *method {
        _ if !api => None,
        Method::GET | Method::HEAD => Some(Scope::Read),
        Method::POST if path == "/api/v1/sql" || path == "/api/v1/query" => Some(Scope::Read),
        _ => Some(Scope::Write),
    }
}

/// The refusal of `denied`, as the API's `{"error"}` JSON.
pub(crate) fn refusal(denied: &Denied) -> Response {
    let status = match denied {
        Denied::Forbidden { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut r = (status, Json(json!({"error": denied.to_string()}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// Whether `host` (a `Host` header or URI authority) names the machine
/// itself or an address: what a browser sends for pages of 127.0.0.1 or
/// localhost, never for a page of a rebound DNS name.
pub(crate) fn local_host(host: &str) -> bool {
    if host.starts_with('[') {
        return true; // an IPv6 literal
    }
    let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
    let name = name.trim_end_matches('.');
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
}

pub(crate) async fn require(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let guarded = (path.starts_with("/api/") && path != "/api/v1/health") || path == "/metrics";
    if st.local_only && guarded {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        if let Some(host) = host.filter(|h| !local_host(h)) {
            tracing::warn!(
                host,
                path,
                "API request for another host name refused (no auth tokens)"
            );
            return (
                StatusCode::FORBIDDEN,
                Json(json!({"error": format!(
                    "host {host:?} refused: without auth tokens the API answers only requests addressed to localhost \
                     or an IP address (protection against DNS rebinding); configure auth.tokens to serve it by name"
                )})),
            )
                .into_response();
        }
    }
    let Some(scope) = scope_of(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match st.auth.check(authorization, scope) {
        Ok(caller) => {
            if scope == Scope::Write {
                tracing::info!(
                    target: "graylens::audit",
                    token = caller.as_deref().unwrap_or("-"),
                    method = %req.method(),
                    path = %req.uri().path(),
                    "write request"
                );
            }
            next.run(req).await
        }
        Err(denied) => {
            tracing::warn!(method = %req.method(), path = %req.uri().path(), reason = %denied, "API request refused");
            refusal(&denied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_scope() {
        let cases = [
            (Method::GET, "/api/v1/health", None),
            (Method::GET, "/", None),
            (Method::GET, "/compare", None),
            (Method::GET, "/app.js", None),
            (Method::GET, "/api/v1/compare", Some(Scope::Read)),
            (Method::GET, "/api/v1/rollouts/x", Some(Scope::Read)),
            (Method::GET, "/metrics", Some(Scope::Read)),
            (Method::POST, "/api/v1/sql", Some(Scope::Read)),
            (Method::POST, "/api/v1/query", Some(Scope::Read)),
            (Method::POST, "/api/v1/rollouts", Some(Scope::Write)),
            (Method::DELETE, "/api/v1/rollouts/x", Some(Scope::Write)),
            (Method::POST, "/api/v1/flagger/rollback", None),
        ];
        for (m, p, want) in cases {
            assert_eq!(scope_of(&m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn local_hosts_are_addresses_and_localhost() {
        for h in [
            "127.0.0.1:4319",
            "localhost:4319",
            "LOCALHOST",
            "[::1]:4319",
            "10.0.0.7",
            "app.localhost:80",
            "localhost.",
        ] {
            assert!(local_host(h), "{h}");
        }
        for h in [
            "evil.example:4319",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io:4319",
        ] {
            assert!(!local_host(h), "{h}");
        }
    }
}
