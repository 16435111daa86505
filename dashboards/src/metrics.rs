//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of graylens's
//! own health and of per-version comparison gauges.
//!
//! Health: records accepted and rejected, requests refused by reason, the
//! ingest queue, the store's flushes, the alert engine's evaluations,
//! deliveries by outcome and Flagger calls. Comparison: requests, error
//! rate and latency quantiles of every service version over the last five
//! minutes of entry spans (`service`, `version` labels), and each
//! rollout's phase, verdict and score.

use crate::api::{on_query_runtime, ApiState};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use graylens_analyzer::{version_series, SeriesFilter, Store};
use graylens_collector::stats::RefusalKind;
use graylens_collector::{IngestStats, MemoryLimiter, QueueGauge, Signal, Transport};
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What `/metrics` reads besides the alert engine.
#[derive(Clone, Debug)]
pub struct SelfTelemetry {
    pub ingest: Arc<IngestStats>,
    pub queue: QueueGauge,
    pub store: Arc<Store>,
    pub memory: Arc<MemoryLimiter>,
    /// TLS reload and handshake counters, when TLS is on.
    pub tls: Option<Arc<graylens_collector::tls::Tls>>,
    /// Addresses listened on beyond loopback with no token required
    /// (`auth.allow_unauthenticated`); empty otherwise.
    pub unauthenticated_listeners: Arc<[String]>,
}

/// Window of the per-version gauges.
const WINDOW_MINUTES: i64 = 5;

/// A text exposition being written.
#[derive(Default)]
pub(crate) struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }
}

/// Label value escaping of the text format: `\`, `"` and newlines.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus's text for a sample value (also the values of `/api/v1/query`).
pub(crate) fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn health(out: &mut Exposition, t: &SelfTelemetry) {
    let per =
        |out: &mut Exposition, name: &str, help: &str, f: &dyn Fn(Signal, Transport) -> u64| {
            out.family(name, "counter", help);
            for s in Signal::ALL {
                for tr in Transport::ALL {
                    out.sample(
                        name,
                        &[("signal", s.name()), ("transport", tr.name())],
                        f(s, tr) as f64,
                    );
                }
            }
        };
    per(
        out,
        "graylens_records_accepted_total",
        "Records stored, by signal and transport.",
        &|s, tr| t.ingest.accepted_count(s, tr),
    );
    per(
        out,
        "graylens_records_rejected_total",
        "Records refused one by one (OTLP partial success).",
        &|s, tr| t.ingest.rejected_count(s, tr),
    );
    out.family(
        "graylens_requests_refused_total",
        "counter",
        "Whole OTLP requests refused, by reason.",
    );
    for s in Signal::ALL {
        for tr in Transport::ALL {
            for k in RefusalKind::ALL {
                let n = t.ingest.refused_count(s, tr, k);
                out.sample(
                    "graylens_requests_refused_total",
                    &[
                        ("signal", s.name()),
                        ("transport", tr.name()),
                        ("reason", k.name()),
                    ],
                    n as f64,
                );
            }
        }
    }
    out.family(
        "graylens_queue_depth",
        "gauge",
        "Converted requests waiting for the store.",
    );
    out.sample("graylens_queue_depth", &[], t.queue.depth() as f64);
    out.family(
        "graylens_queue_capacity",
        "gauge",
        "Capacity of the ingest queue.",
    );
    out.sample("graylens_queue_capacity", &[], t.queue.capacity() as f64);
    let st = &t.store.stats;
    out.family(
        "graylens_store_hot_rows",
        "gauge",
        "Rows in memory not yet in Parquet, by signal.",
    );
    for s in Signal::ALL {
        out.sample(
            "graylens_store_hot_rows",
            &[("signal", s.name())],
            t.store.hot_rows(s) as f64,
        );
    }
    for (name, help, v) in [
        (
            "graylens_store_flushes_total",
            "Flushes of memory to Parquet.",
            st.flushes.load(Relaxed),
        ),
        (
            "graylens_store_flush_errors_total",
            "Flushes that failed (the rows stay in memory).",
            st.flush_errors.load(Relaxed),
        ),
        (
            "graylens_store_rows_flushed_total",
            "Rows written to Parquet.",
            st.rows_flushed.load(Relaxed),
        ),
        (
            "graylens_store_segments_deleted_total",
            "Parquet segments removed by retention.",
            st.segments_deleted.load(Relaxed),
        ),
        (
            "graylens_store_segments_merged_total",
            "Parquet segments merged into larger ones by compaction.",
            st.segments_merged.load(Relaxed),
        ),
        (
            "graylens_store_batches_merged_total",
            "Small hot batches merged into larger ones (one dictionary per text column).",
            st.batches_merged.load(Relaxed),
        ),
        (
            "graylens_store_segments_read_total",
            "Parquet segments opened by comparisons (after pruning by service and time).",
            st.segments_read.load(Relaxed),
        ),
        (
            "graylens_store_segments_reused_total",
            "Parquet segments whose part of a comparison was reused from an earlier one instead of read.",
            t.store.partials.hits.load(Relaxed),
        ),
        (
            "graylens_wal_records_total",
            "Requests written to the write-ahead log.",
            st.wal_records.load(Relaxed),
        ),
        (
            "graylens_wal_syncs_total",
            "Group commits (one fsync each in wal.sync = always).",
            st.wal_syncs.load(Relaxed),
        ),
        (
            "graylens_wal_errors_total",
            "Failed writes or fsyncs of the write-ahead log (the requests were refused, retryable).",
            st.wal_errors.load(Relaxed),
        ),
        (
            "graylens_wal_replayed_records_total",
            "Requests replayed from the write-ahead log at the last start.",
            st.wal_replayed.load(Relaxed),
        ),
        (
            "graylens_wal_torn_records_total",
            "Torn records cut from the log's tail at the last start.",
            st.wal_torn.load(Relaxed),
        ),
        (
            "graylens_memory_refusals_total",
            "Reservations refused by the memory limiter (each a 503 / UNAVAILABLE).",
            t.memory.refusals(),
        ),
        (
            "graylens_values_truncated_total",
            "Attribute values cut to limits.max_attribute_value_bytes.",
            t.ingest.values_truncated.load(Relaxed),
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[], v as f64);
    }
    if let Some(tls) = &t.tls {
        for (name, help, v) in [
            (
                "graylens_tls_handshake_failures_total",
                "TLS handshakes that failed: no or untrusted client certificate, plain text on a TLS port, timeouts.",
                &tls.handshake_failures,
            ),
            (
                "graylens_tls_reloads_total",
                "Certificate files that changed and were loaded.",
                &tls.reloads,
            ),
            (
                "graylens_tls_reload_errors_total",
                "Certificate files that changed but did not load (the previous certificates stay in use).",
                &tls.reload_errors,
            ),
        ] {
            out.family(name, "counter", help);
            out.sample(name, &[], v.load(Relaxed) as f64);
        }
    }
    out.family(
        "graylens_unauthenticated_listeners",
        "gauge",
        "Listeners reachable beyond loopback with no token required (auth.allow_unauthenticated); 0 is the safe value.",
    );
    out.sample(
        "graylens_unauthenticated_listeners",
        &[],
        t.unauthenticated_listeners.len() as f64,
    );
    for (name, help, v) in [
        (
            "graylens_memory_used_bytes",
            "Bytes held for ingestion: requests in flight and data not yet in Parquet.",
            t.memory.used(),
        ),
        (
            "graylens_memory_limit_bytes",
            "The memory limiter's budget (limits.memory_bytes less the query pool).",
            t.memory.limit(),
        ),
        (
            "graylens_store_memory_bytes",
            "Bytes of batches in memory (open and sealed generations).",
            st.hot_bytes.load(Relaxed),
        ),
        (
            "graylens_compare_partials_bytes",
            "Bytes (estimated) of per-segment comparison parts kept for the next comparison.",
            t.store.partials.size().1 as u64,
        ),
    ] {
        out.family(name, "gauge", help);
        out.sample(name, &[], v as f64);
    }
    out.family(
        "graylens_store_last_flush_seconds",
        "gauge",
        "Duration of the last flush.",
    );
    out.sample(
        "graylens_store_last_flush_seconds",
        &[],
        st.last_flush_micros.load(Relaxed) as f64 / 1e6,
    );
    out.family(
        "graylens_store_disk_bytes",
        "gauge",
        "Bytes of Parquet segments on disk.",
    );
    out.sample(
        "graylens_store_disk_bytes",
        &[],
        t.store.disk_bytes() as f64,
    );
}

fn engine(out: &mut Exposition, st: &ApiState) {
    let a = st.alerts.stats();
    out.family(
        "graylens_task_restarts_total",
        "counter",
        "Long-running tasks restarted after a panic.",
    );
    out.sample(
        "graylens_task_restarts_total",
        &[("task", "alerts")],
        a.restarts.load(Relaxed) as f64,
    );
    out.family(
        "graylens_rollout_evaluation_seconds",
        "histogram",
        "Time to judge one rollout (one look).",
    );
    let mut below = 0;
    for (i, le) in graylens_alerts::EVALUATION_BUCKETS.iter().enumerate() {
        below += a.evaluation_buckets[i].load(Relaxed);
        out.sample(
            "graylens_rollout_evaluation_seconds_bucket",
            &[("le", &number(*le))],
            below as f64,
        );
    }
    // The total of the buckets read here, so that no bucket exceeds it.
    let evals =
        below + a.evaluation_buckets[graylens_alerts::EVALUATION_BUCKETS.len()].load(Relaxed);
    out.sample(
        "graylens_rollout_evaluation_seconds_bucket",
        &[("le", "+Inf")],
        evals as f64,
    );
    out.sample(
        "graylens_rollout_evaluation_seconds_sum",
        &[],
        a.evaluation_micros.load(Relaxed) as f64 / 1e6,
    );
    out.sample(
        "graylens_rollout_evaluation_seconds_count",
        &[],
        evals as f64,
    );
    out.family(
        "graylens_rollout_evaluation_errors_total",
        "counter",
        "Evaluations that could not judge.",
    );
    out.sample(
        "graylens_rollout_evaluation_errors_total",
        &[],
        a.evaluation_errors.load(Relaxed) as f64,
    );
    out.family(
        "graylens_action_attempts_total",
        "counter",
        "Attempts to deliver webhooks and Argo patches, by outcome.",
    );
    for (outcome, v) in [
        ("delivered", &a.deliveries_delivered),
        ("retried", &a.deliveries_retried),
        ("failed", &a.deliveries_failed),
    ] {
        out.sample(
            "graylens_action_attempts_total",
            &[("outcome", outcome)],
            v.load(Relaxed) as f64,
        );
    }
    out.family(
        "graylens_flagger_hook_calls_total",
        "counter",
        "Flagger webhook calls answered.",
    );
    out.sample(
        "graylens_flagger_hook_calls_total",
        &[],
        a.hook_calls.load(Relaxed) as f64,
    );
    let rollouts = st.alerts.list();
    out.family(
        "graylens_rollout_verdict",
        "gauge",
        "Latest verdict of each rollout: 0 pass, 1 inconclusive, 2 fail.",
    );
    let mut scores = Vec::new();
    for r in &rollouts {
        let Some(e) = r.last() else { continue };
        let v = match e.decision {
            graylens_analyzer::Decision::Pass => 0.0,
            graylens_analyzer::Decision::Inconclusive => 1.0,
            graylens_analyzer::Decision::Fail => 2.0,
        };
        let labels = [
            ("rollout", r.id.as_str()),
            ("service", e.service.as_str()),
            ("baseline", e.baseline.as_str()),
            ("version", e.canary.as_str()),
            ("phase", r.phase.as_str()),
        ];
        out.sample("graylens_rollout_verdict", &labels, v);
        scores.push((labels, e.score));
    }
    out.family(
        "graylens_rollout_score",
        "gauge",
        "Latest score (0-100) of each rollout.",
    );
    for (labels, s) in scores {
        out.sample("graylens_rollout_score", &labels, s);
    }
}

pub(crate) async fn metrics(State(st): State<ApiState>) -> Response {
    let mut out = Exposition::default();
    health(&mut out, &st.telemetry);
    engine(&mut out, &st);
    let tables = st.tables.clone();
    let from = chrono::Utc::now() - chrono::Duration::minutes(WINDOW_MINUTES);
    let series = on_query_runtime(&st, async move {
        version_series(&tables, &SeriesFilter::default(), Some(from)).await
    })
    .await;
    match series {
        Ok(Ok(series)) => {
            let help = "over entry spans of the last 5 minutes, by service and version.";
            out.family(
                "graylens_version_requests",
                "gauge",
                &format!("Requests {help}"),
            );
            for s in &series {
                out.sample(
                    "graylens_version_requests",
                    &[("service", &s.service), ("version", &s.version)],
                    s.requests as f64,
                );
            }
            out.family(
                "graylens_version_error_rate",
                "gauge",
                &format!("Failed requests per request {help}"),
            );
            for s in &series {
                if let Some(r) = s.error_rate() {
                    out.sample(
                        "graylens_version_error_rate",
                        &[("service", &s.service), ("version", &s.version)],
                        r,
                    );
                }
            }
            out.family(
                "graylens_version_latency_ms",
                "gauge",
                &format!("Latency quantiles in milliseconds {help}"),
            );
            for s in &series {
                for (q, label) in [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")] {
                    if let Some(v) = s.latency_ms(q) {
                        out.sample(
                            "graylens_version_latency_ms",
                            &[
                                ("service", &s.service),
                                ("version", &s.version),
                                ("quantile", label),
                            ],
                            v,
                        );
                    }
                }
            }
        }
        Ok(Err(e)) => tracing::error!(error = %e, "per-version gauges of /metrics"),
        Err(_) => tracing::error!("per-version gauges of /metrics: query task failed"),
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.0,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_escaped_and_numbers_spelled_as_prometheus_does() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "An x.");
        e.sample("x_total", &[("a", "q\"uo\\te\nd")], 1.5);
        e.sample("y", &[], f64::INFINITY);
        e.sample("z", &[("a", "1"), ("b", "2")], f64::NAN);
        assert_eq!(
            e.0,
            "# HELP x_total An x.\n# TYPE x_total counter\nx_total{a=\"q\\\"uo\\\\te\\nd\"} 1.5\ny +Inf\nz{a=\"1\",b=\"2\"} NaN\n"
        );
    }
}
