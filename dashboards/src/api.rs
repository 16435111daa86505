//! JSON API. Errors are `{"error": "..."}` with a 4xx/5xx status.

use axum::extract::{rejection::JsonRejection, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use graylens_analyzer::{Error, Tables};
use serde::Deserialize;
use serde_json::json;
use tokio::runtime::Handle;

/// What the API handlers share.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub tables: Tables,
    /// Runtime for queries, apart from the ingest runtime.
    pub query_runtime: Handle,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/sql", post(sql))
        .with_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

/// An API error mapped to its status in one place.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Query(m) => ApiError(StatusCode::BAD_REQUEST, m),
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
    let Json(req) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let tables = st.tables.clone();
    let out = st
        .query_runtime
        .spawn(async move { tables.query(&req.sql).await })
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("query task: {e}"),
            )
        })??;
    Ok(Json(out).into_response())
}
