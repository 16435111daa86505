//! `POST /api/v1/flagger/{hook}`: Flagger's webhooks, answered from the
//! alert engine's gate state (see `graylens_alerts::flagger` for the table
//! of answers). Flagger reads any status above 202 as "no".

use super::{ApiError, ApiState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use graylens_alerts::flagger::{Hook, HookRequest};
use serde_json::{json, Value};

pub(crate) async fn hook(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<HookRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let hook = Hook::parse(&name).ok_or_else(|| {
        let known: Vec<&str> = Hook::ALL.iter().map(|h| h.as_str()).collect();
        ApiError(
            StatusCode::NOT_FOUND,
            format!("unknown Flagger hook {name:?}; known: {}", known.join(", ")),
        )
    })?;
    let Json(req) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    if req.name.is_empty() || req.namespace.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`name` and `namespace` of the canary are required".into(),
        ));
    }
    let (status, message, rollout) = st.alerts.flagger_hook(hook, &req);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok((
        code,
        Json(
            json!({"hook": hook.as_str(), "status": status, "message": message, "rollout_id": rollout}),
        ),
    ))
}
