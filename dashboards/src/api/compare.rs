//! `GET /api/v1/compare` (the full comparison) and `GET /api/v1/verdict`
//! (the decision only, for the Argo Rollouts `web` metric provider).
//!
//! Argo marks any non-2xx answer as a measurement *error* and aborts after
//! `consecutiveErrorLimit` of them (argo-rollouts `metricproviders/webmetric/webmetric.go`),
//! so `/verdict` answers 200 with `inconclusive` for everything but a
//! malformed request: unknown versions, no data and internal failures alike.

use super::{on_query_runtime, ApiError, ApiState};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use graylens_analyzer::{compare as run_compare, By, Comparison, Error, Selector};
use serde::Deserialize;
use serde_json::{json, Value};

/// The longest chart bin (`step_secs`): a year.
const MAX_STEP_SECS: u64 = 366 * 86_400;

/// Query parameters shared by both endpoints.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Params {
    service: Option<String>,
    baseline: Option<String>,
    canary: Option<String>,
    by: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// `/compare` only: `graylens` (default) or `kayenta` (Kayenta's judge result).
    format: Option<String>,
    /// `/charts` only: seconds per time bin (default: the window in 120 bins).
    step_secs: Option<u64>,
}

impl Params {
    /// The selector, or every problem with the parameters at once.
    fn selector(self) -> Result<Selector, ApiError> {
        let mut problems = Vec::new();
        let by = match self.by.as_deref() {
            None | Some("") => By::Version,
            Some(b) => b.parse().unwrap_or_else(|e: String| {
                problems.push(e);
                By::Version
            }),
        };
        let mut time = |name: &str, v: Option<String>| -> Option<DateTime<Utc>> {
            let v = v.filter(|v| !v.is_empty())?;
            match DateTime::parse_from_rfc3339(&v) {
                Ok(t) => Some(t.with_timezone(&Utc)),
                Err(e) => {
                    problems.push(format!(
                        "`{name}` must be an RFC 3339 time such as 2026-11-29T10:00:00Z: {e}"
                    ));
                    None
                }
            }
        };
        let (from, to) = (time("from", self.from), time("to", self.to));
        let required = |name: &str, v: Option<String>, problems: &mut Vec<String>| {
            v.unwrap_or_else(|| {
                problems.push(format!("`{name}` is required"));
                String::new()
            })
        };
        let service = required("service", self.service, &mut problems);
        // For lanes the uncolored side is the empty lane, so an empty value is meaningful.
        let baseline = required("baseline", self.baseline, &mut problems);
        let canary = required("canary", self.canary, &mut problems);
        let sel = Selector {
            service,
            baseline,
            canary,
            by,
            from,
            to,
        };
        // Every problem at once, each named once.
        for p in sel.problems() {
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
        if problems.is_empty() {
            Ok(sel)
        } else {
            Err(ApiError(StatusCode::BAD_REQUEST, problems.join("; ")))
        }
    }
}

async fn run(st: &ApiState, sel: Selector) -> Result<Result<Comparison, Error>, ApiError> {
    let tables = st.tables.clone();
    let policy = st.policy.clone();
    on_query_runtime(st, async move { run_compare(&tables, &sel, &policy).await }).await
}

pub(crate) async fn compare(
    State(st): State<ApiState>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(mut params) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    if params.step_secs.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`step_secs` is for /charts".into(),
        ));
    }
    let kayenta = match params.format.take().as_deref() {
        None | Some("") | Some("graylens") => false,
        Some("kayenta") => true,
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("`format` must be graylens or kayenta, not {other:?}"),
            ))
        }
    };
    let sel = params.selector()?;
    let c = run(&st, sel).await??;
    let body = if kayenta {
        graylens_analyzer::compare::kayenta(&c)
    } else {
        serde_json::to_value(&c)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    Ok(Json(body))
}

pub(crate) async fn verdict(
    State(st): State<ApiState>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let sel = params.selector()?;
    let head = json!({"service": sel.service, "baseline": sel.baseline, "canary": sel.canary, "by": sel.by});
    let outcome = run(&st, sel).await;
    let mut body = match outcome {
        Ok(Ok(c)) => json!({
            "verdict": c.verdict.decision,
            "score": c.verdict.score,
            "reasons": c.verdict.reasons,
            "policy": c.policy,
            "requests": {"baseline": c.baseline.requests, "canary": c.canary.requests},
            "metrics": c.metrics.iter().map(|m| json!({
                "name": m.name,
                "classification": m.classification,
                "baseline": m.baseline,
                "canary": m.canary,
                "p_value": m.p_value,
                "adjusted_p_value": m.adjusted_p_value,
            })).collect::<Vec<_>>(),
        }),
        Ok(Err(Error::NotFound(m))) | Ok(Err(Error::Query(m))) => {
            json!({"verdict": "inconclusive", "score": 0.0, "reasons": [m]})
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "verdict failed");
            json!({"verdict": "inconclusive", "score": 0.0, "reasons": [format!("graylens could not judge: {e}")]})
        }
        Err(ApiError(_, m)) => {
            tracing::error!(error = %m, "verdict task failed");
            json!({"verdict": "inconclusive", "score": 0.0, "reasons": [m]})
        }
    };
    if let (Some(b), Value::Object(h)) = (body.as_object_mut(), head) {
        for (k, v) in h {
            b.entry(k).or_insert(v);
        }
    }
    Ok(Json(body))
}

/// `GET /api/v1/charts?...same selectors...[&step_secs=N]`: per side, the
/// requests, errors and latency quantiles per time bin, and the latency
/// distribution of the window. Without `from`, the last hour.
pub(crate) async fn charts(
    State(st): State<ApiState>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(mut params) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let step = params.step_secs.take();
    if params.format.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "`format` is for /compare".into(),
        ));
    }
    let mut sel = params.selector()?;
    let to = sel.to.unwrap_or_else(Utc::now);
    let from = *sel.from.get_or_insert(to - chrono::Duration::hours(1));
    let span = (to - from).num_seconds().max(1) as u64;
    let step = match step {
        Some(0) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "`step_secs` must be at least 1".into(),
            ))
        }
        Some(s) if s > MAX_STEP_SECS => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("`step_secs` = {s} is longer than a year ({MAX_STEP_SECS})"),
            ))
        }
        Some(s) => s,
        None => span.div_ceil(120).max(1),
    };
    if span / step > 5000 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{} bins is too many; raise `step_secs`", span / step),
        ));
    }
    let tables = st.tables.clone();
    let sel2 = sel.clone();
    let [b, c] = on_query_runtime(&st, async move {
        graylens_analyzer::charts(&tables, &sel2, step).await
    })
    .await??;
    Ok(Json(json!({
        "service": sel.service, "by": sel.by, "from": from, "to": sel.to, "step_secs": step,
        "baseline": {"version": sel.baseline, "points": b.points, "distribution": b.distribution},
        "canary": {"version": sel.canary, "points": c.points, "distribution": c.distribution},
    })))
}

/// `GET /api/v1/services[?from=..&to=..]`: services with the versions, roles
/// and lanes seen and their traffic.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Window {
    from: Option<String>,
    to: Option<String>,
}

pub(crate) async fn services(
    State(st): State<ApiState>,
    params: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(w) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let parse = |name: &str, v: Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
        v.filter(|v| !v.is_empty())
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        ApiError(
                            StatusCode::BAD_REQUEST,
                            format!("`{name}` must be an RFC 3339 time: {e}"),
                        )
                    })
            })
            .transpose()
    };
    let (from, to) = (parse("from", w.from)?, parse("to", w.to)?);
    let tables = st.tables.clone();
    let list = on_query_runtime(&st, async move {
        graylens_analyzer::services(&tables, from, to).await
    })
    .await??;
    Ok(Json(json!({ "services": list })))
}
