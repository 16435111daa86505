//! `POST/GET /api/v1/rollouts`, `GET/DELETE /api/v1/rollouts/{id}`: what
//! the alert engine watches; `GET /api/v1/candidates`: services running two
//! versions at once.

use super::{on_query_runtime, ApiError, ApiState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use graylens_alerts::{Error, RolloutSpec};
use serde::Deserialize;
use serde_json::{json, Value};

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(_) => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            Error::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            Error::Io(m) => {
                tracing::error!(error = %m, "rollout store");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "could not store the rollout; see the graylens log".into(),
                )
            }
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(v)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    redact(&mut v);
    Ok(v)
}

/// Secrets in URLs (userinfo, query values) are never shown; signatures and
/// action secrets are already gone (`Rollout::redacted`).
fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match (k.as_str(), &*x) {
                    ("url" | "api_server", Value::String(u)) => {
                        *x = Value::String(graylens_alerts::spec::redact_url(u))
                    }
                    _ => redact(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

pub(crate) async fn create(
    State(st): State<ApiState>,
    body: Result<Json<RolloutSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(spec) = body.map_err(ApiError::body)?;
    let paths: Vec<String> = spec
        .actions
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            a.file_paths()
                .into_iter()
                .map(move |k| format!("actions[{i}].{k}"))
        })
        .collect();
    if !paths.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{}: filesystem paths are accepted in the config file only; send the token or CA inline (token, ca) or declare the rollout in the config",
                paths.join(", ")
            ),
        ));
    }
    let r = st.alerts.create(spec)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": r.id, "rollout": to_json(&r)?})),
    ))
}

pub(crate) async fn list(State(st): State<ApiState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"rollouts": to_json(&st.alerts.list())?})))
}

pub(crate) async fn get(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = st
        .alerts
        .get(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no rollout {id:?}")))?;
    Ok(Json(to_json(&r)?))
}

pub(crate) async fn delete(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = st.alerts.delete(&id)?;
    Ok(Json(json!({"deleted": r.id, "rollout": to_json(&r)?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CandidateParams {
    /// Seconds of recent traffic to look at (default 300).
    window_secs: Option<u64>,
}

pub(crate) async fn candidates(
    State(st): State<ApiState>,
    params: Result<Query<CandidateParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let secs = p.window_secs.unwrap_or(300);
    if !(1..=366 * 86_400).contains(&secs) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`window_secs` must be between 1 and 31622400 (366 days)".into(),
        ));
    }
    let window = std::time::Duration::from_secs(secs);
    let alerts = st.alerts.clone();
    let list = on_query_runtime(&st, async move { alerts.candidates(window).await }).await??;
    Ok(Json(json!({"candidates": to_json(&list)?})))
}
