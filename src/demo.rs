//! `graylens demo`: the whole product in one command.
//!
//! Starts graylens on a temporary data directory, a stand-in for the
//! rollout controller (an HTTP receiver that verifies the signed webhook),
//! and two versions of a `checkout` service that send real OTLP/gRPC
//! traces, metrics and logs. A rollout watches them; after a while the
//! canary regresses (slower, more errors), graylens judges it failed and
//! the controller stand-in receives the rollback, after which the canary's
//! traffic stops as a controller would make it. Each step is printed.

use crate::cli::DemoArgs;
use crate::config::Config;
use crate::serve::{serve, Listening, Runtimes};
use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::{
    logs_service_client::LogsServiceClient, ExportLogsServiceRequest,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    metrics_service_client::MetricsServiceClient, ExportMetricsServiceRequest,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "checkout";
const BASELINE: &str = "1.4.2";
const CANARY: &str = "1.5.0";
const SECRET: &str = "demo-secret";

/// `90s`, `2m`, `1h30m`.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("{v:?} is not a duration such as 90s, 2m or 1h30m");
    let (mut secs, mut rest) = (0u64, v.trim());
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        secs += n * match &rest[..unit_end] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(bad()),
        };
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_parse() {
        use super::parse_duration as p;
        use std::time::Duration;
        assert_eq!(p("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(p("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "5", "2 m", "1.5m", "3d"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}

/// What the demo saw, for its steps and its summary.
#[derive(Default)]
struct Shared {
    regressed: AtomicBool,
    /// The controller rolled back: the canary gets no more traffic.
    canary_stopped: AtomicBool,
    requests: [AtomicU64; 2],
    /// Seconds since start at which the rollback webhook arrived, verified.
    rollback_at: Mutex<Option<f64>>,
    bad_signatures: AtomicU64,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let duration = args
        .duration
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let regress_after = parse_duration(&args.regress_after).map_err(anyhow::Error::msg)?;
    if args.rps == 0 {
        bail!("--rps must be at least 1");
    }
    let data_dir = std::env::temp_dir().join(format!(
        "graylens-demo-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    ));
    let mut cfg = Config::default();
    cfg.store.data_dir = data_dir.clone();
    cfg.alerts.interval_secs = 1.0;
    // The rollout is registered through the API; its target is the demo's
    // own controller stand-in on loopback.
    cfg.alerts.allowed_targets = vec!["http://127.0.0.1:".into()];
    if let Some(a) = args.otlp_grpc_addr {
        cfg.otlp.grpc_addr = a;
    }
    if let Some(a) = args.otlp_http_addr {
        cfg.otlp.http_addr = a;
    }
    if let Some(a) = args.http_addr {
        cfg.http.addr = a;
    }
    let problems = cfg.problems();
    if !problems.is_empty() {
        bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
    }
    let rt = Runtimes::new(&cfg)?;
    let handles = rt.handles();
    let dir = data_dir.clone();
    let result = rt.run(async move {
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let until = {
            let stop = stop.clone();
            async move { stop.cancelled().await }
        };
        let server = tokio::spawn(serve(cfg, handles, until, Some(ready_tx)));
        let outcome = match ready_rx.await {
            Ok(addrs) => tour(addrs, &dir, duration, regress_after, args.rps).await,
            Err(_) => Err(anyhow::anyhow!("graylens did not start")),
        };
        stop.cancel();
        let served = server.await.context("server task")?;
        served.and(outcome)
    });
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

async fn tour(
    addrs: Listening,
    data_dir: &std::path::Path,
    duration: Option<Duration>,
    regress_after: Duration,
    rps: u32,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let shared = Arc::new(Shared::default());
    let say = move |msg: String| println!("[{:>5.1}s] {msg}", start.elapsed().as_secs_f64());
    let api = format!("http://{}", addrs.http);
    let ui = format!("{api}/compare?service={SERVICE}&baseline={BASELINE}&canary={CANARY}");
    println!("graylens demo: open {ui}");
    say(format!(
        "graylens is up: OTLP/gRPC {}, OTLP/HTTP {}, UI and API {api}; data in {}",
        addrs.otlp_grpc,
        addrs.otlp_http,
        data_dir.display()
    ));

    let hook = controller(shared.clone(), start).await?;
    say(format!("the rollout controller stand-in listens on {hook}"));
    let http = reqwest::Client::new();
    let body = json!({"name": "checkout-1.5.0", "service": SERVICE, "baseline": BASELINE, "canary": CANARY,
                      "actions": [{"type": "webhook", "url": hook, "secret": SECRET}]});
    let r = http
        .post(format!("{api}/api/v1/rollouts"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = r.status();
    let created: Value = serde_json::from_slice(&r.bytes().await?)?;
    if status != reqwest::StatusCode::CREATED {
        bail!("registering the rollout failed: {status} {created}");
    }
    let id = created["id"].as_str().unwrap_or_default().to_string();
    say(format!(
        "rollout {id} registered: {SERVICE} {BASELINE} (baseline) → {CANARY} (canary), rollback webhook signed with HMAC-SHA256"
    ));

    let traffic_stop = CancellationToken::new();
    let traffic = tokio::spawn(traffic(
        format!("http://{}", addrs.otlp_grpc),
        rps,
        shared.clone(),
        traffic_stop.clone(),
    ));
    say(format!(
        "traffic flowing: {SERVICE} {BASELINE} and {CANARY} at {rps} requests/s each, sent as OTLP/gRPC traces, metrics and logs"
    ));

    let end = async {
        match duration {
            Some(d) => tokio::time::sleep(d.saturating_sub(start.elapsed())).await,
            None => crate::serve::wait_for_signal().await,
        }
    };
    tokio::pin!(end);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let (mut last_decision, mut last_phase) = (String::new(), String::new());
    let mut delivered = std::collections::HashSet::new();
    let mut regressed_at = None;
    loop {
        tokio::select! {
            _ = &mut end => break,
            _ = tick.tick() => {}
        }
        if regressed_at.is_none() && start.elapsed() >= regress_after {
            shared.regressed.store(true, Ordering::Relaxed);
            regressed_at = Some(start.elapsed().as_secs_f64());
            say(format!(
                "regression injected into {CANARY}: latency ×1.6 and errors 0.5% → 6%"
            ));
        }
        let Ok(r) = http.get(format!("{api}/api/v1/rollouts/{id}")).send().await else {
            continue;
        };
        let Ok(r) = serde_json::from_slice::<Value>(&r.bytes().await.unwrap_or_default()) else {
            continue;
        };
        let last = r["history"]
            .as_array()
            .and_then(|h| h.last())
            .cloned()
            .unwrap_or(Value::Null);
        let decision = last["decision"].as_str().unwrap_or("").to_string();
        if !decision.is_empty() && decision != last_decision {
            let first = last["reasons"][0].as_str().unwrap_or("").to_string();
            say(format!(
                "verdict {decision} (score {:.1}, {} baseline / {} canary requests): {first}",
                last["score"].as_f64().unwrap_or(0.0) + 0.0,
                last["requests"]["baseline"],
                last["requests"]["canary"]
            ));
            last_decision = decision;
        }
        let phase = r["phase"].as_str().unwrap_or("").to_string();
        if phase != last_phase {
            if !last_phase.is_empty() {
                say(format!("rollout state {last_phase} → {phase}"));
            }
            last_phase = phase;
        }
        let deliveries = r["deliveries"].as_array().cloned().unwrap_or_default();
        for d in &deliveries {
            let id = d["id"].as_str().unwrap_or("").to_string();
            if d["status"] == "delivered" && delivered.insert(id) {
                say(format!(
                    "graylens delivered the {} webhook (Idempotency-Key {}) after {} attempt(s)",
                    d["action"].as_str().unwrap_or(""),
                    d["id"].as_str().unwrap_or(""),
                    d["attempts"].as_array().map_or(0, Vec::len)
                ));
            }
        }
    }
    traffic_stop.cancel();
    let _ = traffic.await;
    let sent = [0, 1].map(|i| shared.requests[i].load(Ordering::Relaxed));
    let rollback_at = *shared.rollback_at.lock().unwrap_or_else(|p| p.into_inner());
    println!(
        "summary: {} baseline and {} canary requests sent with their metrics and logs; regression at {}; rollback {}; final state {}; UI was {ui}",
        sent[0],
        sent[1],
        regressed_at.map_or("not reached".into(), |t| format!("{t:.1}s")),
        match (rollback_at, regressed_at) {
            (Some(r), Some(g)) => format!("received at {r:.1}s, {:.1}s after the regression, signature verified", r - g),
            (Some(r), None) => format!("received at {r:.1}s"),
            (None, _) => "not received".into(),
        },
        if last_phase.is_empty() { "unknown" } else { &last_phase },
    );
    if duration.is_some() {
        match (rollback_at, regressed_at) {
            (Some(r), Some(g)) if r >= g => {}
            (Some(_), _) => {
                bail!("the canary was rolled back before any regression: a false rollback")
            }
            (None, Some(_)) => bail!("the regression was not caught within the demo's duration"),
            (None, None) => {}
        }
        if shared.bad_signatures.load(Ordering::Relaxed) > 0 {
            bail!("the controller stand-in received a webhook whose signature did not verify");
        }
    }
    Ok(())
}

/// The rollout controller stand-in: verifies the signature of each webhook,
/// and on a rollback stops the canary's traffic.
async fn controller(shared: Arc<Shared>, start: Instant) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/hooks/graylens",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let shared = shared.clone();
            async move {
                let at = start.elapsed().as_secs_f64();
                let sig = headers
                    .get("x-graylens-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !graylens_alerts::actions::signature::verify(SECRET.as_bytes(), &body, sig) {
                    shared.bad_signatures.fetch_add(1, Ordering::Relaxed);
                    println!("[{at:>5.1}s] controller: refused a webhook whose signature does not verify");
                    return StatusCode::UNAUTHORIZED;
                }
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let action = v["action"].as_str().unwrap_or("");
                println!(
                    "[{at:>5.1}s] controller: received {action} for {} {} (signature verified, Idempotency-Key {}); reasons: {}",
                    v["service"].as_str().unwrap_or(""),
                    v["canary"].as_str().unwrap_or(""),
                    headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or(""),
                    v["reasons"][0].as_str().unwrap_or("")
                );
                if action == "rollback" {
                    shared.canary_stopped.store(true, Ordering::Relaxed);
                    shared
                        .rollback_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(at);
                    println!("[{at:>5.1}s] controller: rolled back; all traffic goes to the baseline again");
                }
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "demo controller stopped");
        }
    });
    Ok(format!("http://{addr}/hooks/graylens"))
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn resource(version: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", SERVICE),
            kv("service.version", version),
            kv("deployment.environment.name", "demo"),
        ],
        ..Default::default()
    })
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// A lognormal latency in nanoseconds around `median_ms`.
fn latency_ns(median_ms: f64) -> u64 {
    let (u, v) = (fastrand::f64().max(1e-12), fastrand::f64());
    let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
    (median_ms * 1e6 * (0.35 * z).exp()) as u64
}

/// Latency bucket bounds of the request-duration histogram, in seconds.
const BOUNDS: [f64; 10] = [0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0];

/// Sends both versions' telemetry every 100 ms until `stop`.
async fn traffic(endpoint: String, rps: u32, shared: Arc<Shared>, stop: CancellationToken) {
    let (mut traces, mut metrics, mut logs) = match tokio::try_join!(
        TraceServiceClient::connect(endpoint.clone()),
        MetricsServiceClient::connect(endpoint.clone()),
        LogsServiceClient::connect(endpoint.clone()),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "demo traffic could not connect");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut owed = 0.0;
    while !stop.is_cancelled() {
        tokio::select! { _ = tick.tick() => {}, _ = stop.cancelled() => break }
        owed += rps as f64 / 10.0;
        let n = owed.floor() as usize;
        owed -= n as f64;
        let (mut rs, mut rm, mut rl) = (Vec::new(), Vec::new(), Vec::new());
        for (i, version) in [BASELINE, CANARY].into_iter().enumerate() {
            if i == 1 && shared.canary_stopped.load(Ordering::Relaxed) {
                continue;
            }
            let bad = i == 1 && shared.regressed.load(Ordering::Relaxed);
            let (median, p_err) = if bad { (32.0, 0.06) } else { (20.0, 0.005) };
            let (mut spans, mut records) = (Vec::new(), Vec::new());
            let mut buckets = vec![0u64; BOUNDS.len() + 1];
            let (mut count, mut sum) = (0u64, 0.0);
            let end = now_ns();
            for k in 0..n {
                let dur = latency_ns(median);
                let error = fastrand::f64() < p_err;
                let trace_id = fastrand::u128(..).to_be_bytes().to_vec();
                let (root, child) = (fastrand::u64(1..), fastrand::u64(1..));
                let start = end - dur - (k as u64) * 1_000;
                let route = if k % 3 == 0 {
                    "POST /checkout"
                } else {
                    "GET /cart"
                };
                spans.push(Span {
                    trace_id: trace_id.clone(),
                    span_id: root.to_be_bytes().to_vec(),
                    name: route.into(),
                    kind: 2,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + dur,
                    attributes: vec![kv("http.route", route.split(' ').nth(1).unwrap_or(""))],
                    status: error.then(|| Status {
                        code: status::StatusCode::Error as i32,
                        message: "payment backend timeout".into(),
                    }),
                    ..Default::default()
                });
                spans.push(Span {
                    trace_id: trace_id.clone(),
                    span_id: child.to_be_bytes().to_vec(),
                    parent_span_id: root.to_be_bytes().to_vec(),
                    name: "SELECT orders".into(),
                    kind: 3,
                    start_time_unix_nano: start + dur / 10,
                    end_time_unix_nano: start + dur / 2,
                    ..Default::default()
                });
                let secs = dur as f64 / 1e9;
                buckets[BOUNDS
                    .iter()
                    .position(|b| secs <= *b)
                    .unwrap_or(BOUNDS.len())] += 1;
                count += 1;
                sum += secs;
                if error {
                    records.push(LogRecord {
                        time_unix_nano: start + dur,
                        observed_time_unix_nano: start + dur,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!(
                                "{route} failed: payment backend timeout"
                            ))),
                        }),
                        trace_id: trace_id.clone(),
                        span_id: root.to_be_bytes().to_vec(),
                        ..Default::default()
                    });
                }
            }
            shared.requests[i].fetch_add(n as u64, Ordering::Relaxed);
            rs.push(ResourceSpans {
                resource: resource(version),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            });
            rm.push(ResourceMetrics {
                resource: resource(version),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "http.server.request.duration".into(),
                        unit: "s".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                start_time_unix_nano: end - 100_000_000,
                                time_unix_nano: end,
                                count,
                                sum: Some(sum),
                                bucket_counts: buckets,
                                explicit_bounds: BOUNDS.to_vec(),
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            });
            rl.push(ResourceLogs {
                resource: resource(version),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        let sent = tokio::try_join!(
            traces.export(ExportTraceServiceRequest { resource_spans: rs }),
            metrics.export(ExportMetricsServiceRequest {
                resource_metrics: rm
            }),
            logs.export(ExportLogsServiceRequest { resource_logs: rl }),
        );
        if let Err(e) = sent {
            tracing::warn!(error = %e, "demo export failed");
        }
    }
}
