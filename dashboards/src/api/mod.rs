//! JSON API. Errors are `{"error": "..."}` with a 4xx/5xx status.
//!
//! - `GET /api/v1/health`, `POST /api/v1/sql` (this file)
//! - `GET /api/v1/services`, `GET /api/v1/compare`, `GET /api/v1/verdict` ([`compare`])
//! - `POST/GET /api/v1/rollouts`, `GET/DELETE /api/v1/rollouts/{id}`, `GET /api/v1/candidates` ([`rollouts`])
//! - `POST /api/v1/flagger/{hook}` ([`flagger`])
//! - `GET /api/v1/query` ([`prom`]: the Prometheus query API's shape)

mod auth;
mod compare;
mod flagger;
mod prom;
mod rollouts;

use axum::extract::{rejection::JsonRejection, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use graylens_alerts::Alerts;
use graylens_analyzer::{Error, Policy, Tables};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tokio::runtime::Handle;

/// What the API handlers share.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub tables: Tables,
    /// Runtime for queries, apart from the ingest runtime.
    pub query_runtime: Handle,
    /// Policy of `/compare` and `/verdict` when the request names none.
    pub policy: Arc<Policy>,
    /// The alert engine: rollouts, actions, Flagger gates.
    pub alerts: Alerts,
    /// Counters of ingestion and storage, for `/metrics`.
    pub telemetry: crate::metrics::SelfTelemetry,
    /// Bearer tokens; disabled admits everyone.
    pub auth: graylens_collector::Auth,
    /// No tokens and the API on loopback: the API answers only requests
    /// addressed to `localhost` or an IP address, so a web page that points
    /// its own name at 127.0.0.1 (DNS rebinding) cannot use it.
    pub local_only: bool,
}

/// The largest request body the API reads (256 KiB): 413 beyond.
pub const API_BODY_LIMIT: usize = 256 << 10;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/sql", post(sql))
        .route("/api/v1/services", get(compare::services))
        .route("/api/v1/compare", get(compare::compare))
        .route("/api/v1/verdict", get(compare::verdict))
        .route("/api/v1/charts", get(compare::charts))
        .route(
            "/api/v1/rollouts",
            post(rollouts::create).get(rollouts::list),
        )
        .route(
            "/api/v1/rollouts/{id}",
            get(rollouts::get).delete(rollouts::delete),
        )
        .route("/api/v1/candidates", get(rollouts::candidates))
        .route("/api/v1/flagger/{hook}", post(flagger::hook))
        .route("/api/v1/query", get(prom::query).post(prom::query_form))
        .route("/metrics", get(crate::metrics::metrics))
        .merge(crate::ui::router())
        // Rollouts, SQL and hook bodies are small; axum's default is 2 MB.
        .layer(axum::extract::DefaultBodyLimit::max(API_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .with_state(state)
}

/// Open to all (probes): the status, and the listeners nobody authenticates
/// on when `auth.allow_unauthenticated` exposes some (the UI warns of them).
async fn health(State(st): State<ApiState>) -> Json<serde_json::Value> {
    let open = &st.telemetry.unauthenticated_listeners;
    if open.is_empty() {
        Json(json!({"status": "ok"}))
    } else {
        Json(json!({"status": "ok", "unauthenticated_listeners": open.as_ref()}))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

/// An API error mapped to its status in one place.
pub(crate) struct ApiError(StatusCode, String);

impl ApiError {
    /// A JSON body that could not be read: 413 past `API_BODY_LIMIT`, 400
    /// for anything else (wrong content type, bad JSON, unknown fields).
    pub(crate) fn body(e: JsonRejection) -> Self {
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({"error": self.1}))).into_response();
        if self.0 == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        r
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Query(m) => ApiError(StatusCode::BAD_REQUEST, m),
            Error::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            Error::Limit(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, m),
            Error::Busy(m) => ApiError(StatusCode::TOO_MANY_REQUESTS, m),
            Error::Storage(m) => {
                tracing::error!(error = %m, "object store failed");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("object store: {m}"),
                )
            }
            other => {
                tracing::error!(error = %other, "query failed");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the graylens log".into(),
                )
            }
        }
    }
}

async fn sql(
    State(st): State<ApiState>,
    body: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(ApiError::body)?;
    let tables = st.tables.clone();
    let out = on_query_runtime(&st, async move { tables.query(&req.sql).await }).await??;
    Ok(Json(out).into_response())
}

/// Runs analysis work on the query runtime, away from ingestion. If the
/// caller goes away (the client disconnected), the work is aborted.
pub(crate) async fn on_query_runtime<T: Send + 'static>(
    st: &ApiState,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(st.query_runtime.spawn(work));
    (&mut task.0).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("query task: {e}"),
        )
    })
}
