//! Small hot batches merged into larger ones (`store::coalesce`): the same
//! answers from SQL, from a from-scratch comparison and from a running one,
//! before and after the merge and after the flush; less memory held.

use crate::common;

use common::{checkout, comparison_json as comparison, request_in_one_hour as request};
use graylens_analyzer::compare::{assemble, explain::default_attributes};
use graylens_analyzer::{compare, Policy, Store, Subscription, Tables};
use graylens_collector::ingest::convert_request;
use graylens_collector::{MemoryLimiter, Signal};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Appends `req` as the writer does: each batch with its own reservation.
fn append(store: &Store, limiter: &Arc<MemoryLimiter>, req: &ExportTraceServiceRequest) {
    for b in convert_request(req).unwrap().batches {
        let m = limiter.try_reserve(b.get_array_memory_size()).unwrap();
        store.append(Signal::Traces, b, m);
    }
}

const QUERIES: [&str; 4] = [
    "SELECT service_version, span_name, count(*), sum(duration_ns), sum(CAST(is_error AS INT)) \
     FROM spans GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT resource_attributes['k8s.pod.name'] AS pod, attributes['http.route'] AS route, count(*) \
     FROM spans GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT trace_id, span_id, parent_span_id, duration_ns FROM spans ORDER BY span_id LIMIT 5",
    "SELECT count(*), count(parent_span_id), min(length(trace_id)), max(length(span_id)) FROM spans",
];

async fn answers(tables: &Tables) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for q in QUERIES {
        out.push(serde_json::json!(tables.query(q).await.unwrap().rows));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_small_batches_give_the_same_answers_in_less_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_keeping_all(dir.path());
    let tables = Tables::new(store.clone()).unwrap();
    let limiter = MemoryLimiter::new(1 << 32);
    let (sel, policy) = (checkout(), Policy::default());
    let sub = Subscription::start(&store, sel.clone(), default_attributes().into())
        .await
        .unwrap();
    // 300 requests of 30 spans per version: groups of 128 batches are ready.
    for seed in 0..300 {
        append(&store, &limiter, &request(seed, 30, "1.0", 1.0, 100));
        append(&store, &limiter, &request(seed + 1000, 30, "1.1", 1.3, 12));
    }
    let before = answers(&tables).await;
    // Three pods per version, from the resource attributes.
    let pods: std::collections::BTreeSet<String> = before[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pods.len(), 6, "{}", before[1]);
    // Ids as hex text (the hot store holds their bytes); no parents here.
    assert_eq!(before[3], serde_json::json!([[18_000, 0, 32, 16]]));
    let scratch_before = comparison(&compare(&tables, &sel, &policy).await.unwrap());
    let (bytes_before, used_before) = (store.stats.hot_bytes.load(Relaxed), limiter.used());
    assert_eq!(bytes_before, used_before);

    let merged = store.coalesce();
    assert_eq!(merged, 512, "four groups of 128 of the 600 batches");
    assert_eq!(store.stats.batches_merged.load(Relaxed), 512);
    assert_eq!(store.coalesce(), 0, "nothing more is ready");
    let (bytes_after, used_after) = (store.stats.hot_bytes.load(Relaxed), limiter.used());
    // The parts' reservations went back with them.
    assert_eq!(bytes_after, used_after);
    // One dictionary per column: 46% of the parts' bytes with 4-byte keys,
    // 33% with keys and small integers narrowed, 32% with the attributes
    // (the same keys in every span) as a column per key.
    assert!(
        bytes_after * 5 < bytes_before * 2,
        "{bytes_before} -> {bytes_after} bytes"
    );
    assert_eq!(store.hot_rows(Signal::Traces), 18_000);

    assert_eq!(answers(&tables).await, before);
    let scratch = comparison(&compare(&tables, &sel, &policy).await.unwrap());
    assert_eq!(scratch, scratch_before);
    // The running comparison was fed the parts once, and not the merge.
    assert_eq!(
        comparison(&assemble(&sel, &policy, &sub.observations())),
        scratch
    );
    assert_eq!(sub.observations().baseline.total.requests, 9_000);
    // Pods from resource attributes, routes from span attributes (held as a
    // column per key once merged: every span here has the same keys).
    let facets = |o: &graylens_analyzer::compare::Observations| {
        let values = |s: &graylens_analyzer::compare::Side| {
            ["http.route", "k8s.pod.name"]
                .iter()
                .flat_map(|k| {
                    s.facets[*k]
                        .iter()
                        .map(move |(v, f)| (format!("{k}={v}"), f.requests))
                })
                .collect::<Vec<_>>()
        };
        (values(&o.baseline), values(&o.canary))
    };
    let keys = default_attributes();
    let from_merged = graylens_analyzer::compare::observe(&tables, &sel, &[], &keys)
        .await
        .unwrap();
    assert_eq!(facets(&from_merged), facets(&sub.observations()));
    assert_eq!(
        facets(&from_merged).0[0],
        ("http.route=/cart".into(), 4_500)
    );

    store.flush_now().unwrap();
    assert_eq!(store.stats.hot_bytes.load(Relaxed), 0);
    assert_eq!(limiter.used(), 0);
    assert_eq!(answers(&tables).await, before);
    // Resource attributes (held once per resource in memory, a map per row
    // in Parquet) explain the same way from both.
    assert_eq!(
        comparison(&compare(&tables, &sel, &policy).await.unwrap()),
        scratch
    );
    let running = facets(&sub.observations());
    assert_eq!(running.1.len(), 5, "{running:?}");
    assert_eq!(running.1[4].0, "k8s.pod.name=1.1-pod-2");
    let from_parquet = graylens_analyzer::compare::observe(&tables, &sel, &[], &keys)
        .await
        .unwrap();
    assert_eq!(facets(&from_parquet), running);

    // Hot rows and Parquet in one scan: ids as the same hex text in both.
    append(&store, &limiter, &request(5000, 30, "1.0", 1.0, 100));
    let q =
        "SELECT count(*), count(DISTINCT trace_id), min(length(span_id)), max(length(span_id)) \
             FROM spans WHERE trace_id > '0'";
    let rows = tables.query(q).await.unwrap().rows;
    assert_eq!(
        serde_json::json!(rows),
        serde_json::json!([[18_030, 18_030, 16, 16]])
    );
    // No column (`count(*)`) and a LIMIT, over both.
    let count = tables
        .query("SELECT count(*) FROM spans")
        .await
        .unwrap()
        .rows;
    assert_eq!(serde_json::json!(count), serde_json::json!([[18_030]]));
    let few = tables
        .query("SELECT span_id, parent_span_id FROM spans LIMIT 3")
        .await
        .unwrap();
    assert_eq!(few.rows.len(), 3);
    assert!(few
        .rows
        .iter()
        .all(|r| r[0].as_str().is_some_and(|id| id.len() == 16) && r[1].is_null()));
}

#[tokio::test]
async fn batches_sealed_before_their_merge_stay_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_keeping_all(dir.path());
    let tables = Tables::new(store.clone()).unwrap();
    let limiter = MemoryLimiter::new(1 << 32);
    for seed in 0..128 {
        append(&store, &limiter, &request(seed, 10, "1.0", 1.0, 100));
    }
    // The group is ready, but its generation is sealed (and flushed) first.
    store.flush_now().unwrap();
    assert_eq!(store.coalesce(), 0);
    let q = "SELECT count(*) FROM spans";
    assert_eq!(
        tables.query(q).await.unwrap().rows,
        vec![vec![serde_json::json!(1280)]]
    );
    assert_eq!(limiter.used(), 0);
}
