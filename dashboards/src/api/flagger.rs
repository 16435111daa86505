//! `POST /api/v1/flagger/{hook}`: Flagger's webhooks, answered from the
//! alert engine's gate state (see `graylens_alerts::flagger` for the table
//! of answers). Flagger reads any status above 202 as "no".

use super::{ApiError, ApiState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use graylens_alerts::flagger::{Hook, HookRequest};
use graylens_collector::auth::{Denied, Scope};
use serde_json::{json, Value};

pub(crate) async fn hook(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<HookRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Response> {
    // Flagger cannot set headers on webhooks: a bearer header, or the token
    // as `metadata.token` in the body, with the `write` scope.
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let by_header = st.auth.check(authorization, Scope::Write);
    let caller = match (&by_header, &body) {
        (Err(Denied::Missing), Ok(Json(req))) => match req.metadata.get("token") {
            Some(t) => st.auth.check_token(t, Scope::Write),
            None => by_header.clone(),
        },
        _ => by_header.clone(),
    }
    .map_err(|d| {
        tracing::warn!(hook = %name, reason = %d, "Flagger hook refused");
        super::auth::refusal(&d)
    })?;
    let mut body = body;
    if let Ok(Json(req)) = &mut body {
        // Never kept or shown.
        req.metadata.remove("token");
    }
    inner(st, name, caller, body)
        .await
        .map_err(|e| e.into_response())
}

async fn inner(
    st: ApiState,
    name: String,
    caller: Option<String>,
    body: Result<Json<HookRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let hook = Hook::parse(&name).ok_or_else(|| {
        let known: Vec<&str> = Hook::ALL.iter().map(|h| h.as_str()).collect();
        ApiError(
            StatusCode::NOT_FOUND,
            format!("unknown Flagger hook {name:?}; known: {}", known.join(", ")),
        )
    })?;
    let Json(req) = body.map_err(ApiError::body)?;
    // Bounded: names as Kubernetes allows them, a checksum, a few metadata entries.
    let too_long = [
        ("name", &req.name, 253),
        ("namespace", &req.namespace, 253),
        ("phase", &req.phase, 64),
        ("checksum", &req.checksum, 256),
    ]
    .into_iter()
    .filter(|(_, v, max)| v.len() > *max)
    .map(|(k, _, max)| format!("`{k}` is longer than {max} bytes"))
    .chain((req.metadata.len() > 32).then(|| "`metadata` has more than 32 entries".to_string()))
    .chain(
        req.metadata
            .iter()
            .filter(|(k, v)| k.len() > 256 || v.len() > 4096)
            .map(|(k, _)| {
                format!(
                    "metadata entry {:?} is longer than 256 bytes (key) or 4096 (value)",
                    k.chars().take(64).collect::<String>()
                )
            }),
    )
    .collect::<Vec<_>>();
    if !too_long.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, too_long.join("; ")));
    }
    if req.name.is_empty() || req.namespace.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`name` and `namespace` of the canary are required".into(),
        ));
    }
    tracing::info!(
        target: "graylens::audit",
        token = caller.as_deref().unwrap_or("-"),
        hook = hook.as_str(),
        canary = %format_args!("{}/{}", req.namespace, req.name),
        "Flagger hook call"
    );
    let (status, message, rollout) = st.alerts.flagger_hook(hook, &req, caller.as_deref());
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok((
        code,
        Json(
            json!({"hook": hook.as_str(), "status": status, "message": message, "rollout_id": rollout}),
        ),
    ))
}
