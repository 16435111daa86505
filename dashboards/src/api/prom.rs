//! `GET /api/v1/query?query=...`: the shape of Prometheus's instant-query
//! API, so Flagger's and Argo Rollouts' Prometheus providers can read
//! graylens directly. Not PromQL: it answers
//!
//! - `vector(N)`: Flagger's provider check at canary start (`vector(1)` must be 1);
//! - `graylens_requests`, `graylens_errors`, `graylens_error_rate` and
//!   `graylens_latency_ms` (label `quantile` 0.5, 0.9 or 0.99, default all
//!   three), one series per service and version, over entry spans of the
//!   last `window` (a label, default `5m`);
//! - with `=` matchers on `service`, `version`, `role`, `lane`,
//!   `namespace` and `deployment` (the `k8s.namespace.name` and
//!   `k8s.deployment.name` resource attributes, Flagger's `{{ namespace }}`
//!   and `{{ target }}`).
//!
//! A series without requests is left out, so "no data" reaches Flagger as
//! "no values found" (it halts) rather than as a zero that would pass.
//! Errors use Prometheus's `{"status":"error","errorType":"bad_data",...}`.

use super::{on_query_runtime, ApiState};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use graylens_analyzer::{version_series, SeriesFilter};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) const METRICS: [&str; 4] = [
    "graylens_requests",
    "graylens_errors",
    "graylens_error_rate",
    "graylens_latency_ms",
];
const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];
/// Longest `window` answered.
const MAX_WINDOW_SECS: u64 = 366 * 86_400;

/// A parsed query.
#[derive(Debug, PartialEq)]
pub(crate) enum PromQuery {
    Vector(f64),
    Series {
        name: String,
        filter: SeriesFilter,
        quantiles: Vec<f64>,
        window: Duration,
    },
}

/// Parses `window` values such as `30s`, `5m`, `1h` or Go's `1m30s`
/// (Flagger renders `{{ interval }}` as written in the Canary).
fn parse_window(v: &str) -> Result<Duration, String> {
    let bad = || format!("window {v:?} must look like 30s, 5m, 1h or 1m30s");
    let (mut secs, mut rest) = (0u64, v);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let per = match &rest[..unit] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return Err(bad()),
        };
        secs = secs.saturating_add(n.saturating_mul(per));
        rest = &rest[unit..];
    }
    if secs == 0 {
        return Err("window must be positive".into());
    }
    if secs > MAX_WINDOW_SECS {
        return Err(format!("window {v:?} is longer than 366 days"));
    }
    Ok(Duration::from_secs(secs))
}

pub(crate) fn parse(q: &str) -> Result<PromQuery, String> {
    let q = q.trim();
    if let Some(inner) = q.strip_prefix("vector(").and_then(|r| r.strip_suffix(')')) {
        let v: f64 = inner
            .trim()
            .parse()
            .map_err(|_| format!("vector() takes a number, not {:?}", inner.trim()))?;
        return Ok(PromQuery::Vector(v));
    }
    let name_end = q
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(q.len());
    let (name, rest) = q.split_at(name_end);
    if !METRICS.contains(&name) {
        return Err(format!(
            "graylens answers vector(N) and the series {}; not {q:?}",
            METRICS.join(", ")
        ));
    }
    let rest = rest.trim();
    let body = if rest.is_empty() {
        ""
    } else {
        rest.strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| {
                format!("expected {{label=\"value\", ...}} after {name}, got {rest:?}")
            })?
    };
    let mut filter = SeriesFilter::default();
    let (mut quantiles, mut window) = (QUANTILES.to_vec(), Duration::from_secs(300));
    for (label, value) in matchers(body)? {
        let slot = match label.as_str() {
            "service" => &mut filter.service,
            "version" => &mut filter.version,
            "role" => &mut filter.role,
            "lane" => &mut filter.lane,
            "namespace" => &mut filter.namespace,
            "deployment" => &mut filter.deployment,
            "window" => {
                window = parse_window(&value)?;
                continue;
            }
            "quantile" if name == "graylens_latency_ms" => {
                let v: f64 = value
                    .parse()
                    .ok()
                    .filter(|v| QUANTILES.contains(v))
                    .ok_or_else(|| format!("quantile must be 0.5, 0.9 or 0.99, not {value:?}"))?;
                quantiles = vec![v];
                continue;
            }
            other => {
                return Err(format!(
                    "unknown label {other:?}; graylens filters on service, version, role, lane, namespace, deployment, window{}",
                    if name == "graylens_latency_ms" { ", quantile" } else { "" }
                ))
            }
        };
        *slot = Some(value);
    }
    Ok(PromQuery::Series {
        name: name.to_string(),
        filter,
        quantiles,
        window,
    })
}

/// `a="x", b='y'` → pairs. Only equality matchers.
fn matchers(body: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut s = body.trim();
    while !s.is_empty() {
        let eq = s
            .find('=')
            .ok_or_else(|| format!("expected label=\"value\" in {s:?}"))?;
        let label = s[..eq].trim();
        if label.ends_with('!') || s[eq + 1..].starts_with('~') {
            return Err("only equality matchers (=) are supported".into());
        }
        let after = s[eq + 1..].trim_start();
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| format!("the value of {label} must be quoted"))?;
        let mut value = String::new();
        let mut chars = after[1..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next().map(|(_, c)| c).unwrap_or('\\')),
                c if c == quote => {
                    end = Some(i + 2);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("unterminated value of {label}"))?;
        out.push((label.to_string(), value));
        s = after[end..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s).trim_start();
    }
    Ok(out)
}

#[derive(Deserialize)]
pub(crate) struct Params {
    query: Option<String>,
    /// Accepted for compatibility; graylens answers at the current time.
    #[allow(dead_code)]
    time: Option<String>,
    #[allow(dead_code)]
    timeout: Option<String>,
}

fn bad_data(msg: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "errorType": "bad_data", "error": msg})),
    )
        .into_response()
}

fn sample(metric: Value, ts: f64, v: f64) -> Value {
    json!({"metric": metric, "value": [ts, crate::metrics::number(v)]})
}

pub(crate) async fn query(
    State(st): State<ApiState>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return bad_data("malformed query string".into());
    };
    answer(st, p).await
}

/// The same query as a form body: Prometheus accepts both, and its Go
/// client (Argo Rollouts' provider) POSTs first, falling back to GET only
/// on 405.
pub(crate) async fn query_form(
    State(st): State<ApiState>,
    params: Result<Form<Params>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(p)) = params else {
        return bad_data("malformed form body (application/x-www-form-urlencoded expected)".into());
    };
    answer(st, p).await
}

async fn answer(st: ApiState, p: Params) -> Response {
    let Some(q) = p.query.filter(|q| !q.trim().is_empty()) else {
        return bad_data("`query` is required".into());
    };
    let parsed = match parse(&q) {
        Ok(p) => p,
        Err(e) => return bad_data(e),
    };
    let now = Utc::now();
    let ts = now.timestamp_millis() as f64 / 1000.0;
    let result = match parsed {
        PromQuery::Vector(v) => vec![sample(json!({}), ts, v)],
        PromQuery::Series {
            name,
            filter,
            quantiles,
            window,
        } => {
            let tables = st.tables.clone();
            let from = now - chrono::Duration::from_std(window).unwrap_or_default();
            let run = on_query_runtime(&st, async move {
                version_series(&tables, &filter, Some(from)).await
            })
            .await;
            let series = match run {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "prometheus query failed");
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Json(json!({"status": "error", "errorType": "internal", "error": e.to_string()})),
                    )
                        .into_response();
                }
                Err(e) => return e.into_response(),
            };
            let mut out = Vec::new();
            for s in series.iter().filter(|s| s.requests > 0) {
                let labels = |extra: Option<f64>| {
                    let mut m =
                        json!({"__name__": name, "service": s.service, "version": s.version});
                    if let Some(q) = extra {
                        m["quantile"] = json!(q.to_string());
                    }
                    m
                };
                match name.as_str() {
                    "graylens_requests" => out.push(sample(labels(None), ts, s.requests as f64)),
                    "graylens_errors" => out.push(sample(labels(None), ts, s.errors as f64)),
                    "graylens_error_rate" => {
                        out.extend(s.error_rate().map(|r| sample(labels(None), ts, r)))
                    }
                    _ => {
                        for q in &quantiles {
                            out.extend(s.latency_ms(*q).map(|v| sample(labels(Some(*q)), ts, v)));
                        }
                    }
                }
            }
            out
        }
    };
    Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_and_series_parse() {
        assert_eq!(parse(" vector(1) ").unwrap(), PromQuery::Vector(1.0));
        let PromQuery::Series {
            name,
            filter,
            quantiles,
            window,
        } = parse(r#"graylens_latency_ms{service="checkout", version='v2', quantile="0.99", window="10m", namespace="shop\"s"}"#)
            .unwrap()
        else {
            panic!("not a series")
        };
        assert_eq!(name, "graylens_latency_ms");
        assert_eq!(filter.service.as_deref(), Some("checkout"));
        assert_eq!(filter.version.as_deref(), Some("v2"));
        assert_eq!(filter.namespace.as_deref(), Some("shop\"s"));
        assert_eq!(quantiles, vec![0.99]);
        assert_eq!(window, Duration::from_secs(600));
        assert!(matches!(
            parse("graylens_error_rate").unwrap(),
            PromQuery::Series { .. }
        ));
    }

    #[test]
    fn what_is_not_supported_says_so() {
        for bad in [
            "sum(rate(http_requests_total[5m]))",
            "vector(x)",
            r#"graylens_error_rate{service!="a"}"#,
            r#"graylens_error_rate{service=~"a"}"#,
            r#"graylens_error_rate{pod="a"}"#,
            r#"graylens_error_rate{quantile="0.5"}"#,
            r#"graylens_latency_ms{quantile="0.75"}"#,
            r#"graylens_requests{window="5 minutes"}"#,
            r#"graylens_requests{service=a}"#,
            r#"graylens_requests{service="a}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
