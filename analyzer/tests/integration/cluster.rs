//! Nodes sharing one object store (issue #14), on `object_store`'s
//! in-memory store: a node reads the segments another wrote, running
//! comparisons get each of them exactly once, and answers say how fresh
//! the other nodes' part is.

use crate::common;

use common::{append, checkout, request};
use graylens_analyzer::compare::{assemble, explain::default_attributes};
use graylens_analyzer::remote::Remote;
use graylens_analyzer::{compare, Policy, Store, StoreConfig, Subscription, Tables};
use std::sync::Arc;

fn node(dir: &std::path::Path, id: &str, remote: &Arc<Remote>) -> Arc<Store> {
    Store::open_shared(
        StoreConfig {
            data_dir: dir.join(id),
            retention_hours: 0,
            node_id: id.into(),
            ..Default::default()
        },
        remote.clone(),
    )
    .unwrap()
}

async fn sync(store: &Arc<Store>) {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.sync_cluster())
        .await
        .unwrap()
        .unwrap();
}

async fn flush(store: &Arc<Store>) {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.flush_now())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reads_what_another_wrote_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Arc::new(Remote::in_memory().unwrap());
    let a = node(dir.path(), "node-a", &remote);
    let b = node(dir.path(), "node-b", &remote);
    let (ta, tb) = (
        Tables::new(a.clone()).unwrap(),
        Tables::new(b.clone()).unwrap(),
    );
    let sel = checkout();
    let policy = Policy::default();
    let facets: Arc<[String]> = default_attributes().into();

    // A stores some of checkout in the object store; B knows nothing yet.
    for seed in 0..3 {
        append(&a, &request(seed, 400, "1.0", 1.0, 100));
        append(&a, &request(seed + 100, 400, "1.1", 1.3, 12));
    }
    flush(&a).await;
    assert!(b.as_of_ms().is_some());
    // One comparison on B starts before B lists the store, one after.
    let early = Subscription::start(&b, sel.clone(), facets.clone())
        .await
        .unwrap();
    assert_eq!(early.requests(), (0, 0));
    sync(&b).await;
    let late = Subscription::start(&b, sel.clone(), facets.clone())
        .await
        .unwrap();
    assert_eq!(late.requests(), (1200, 1200));
    assert_eq!(early.requests(), (1200, 1200), "fed when first listed");
    // More on A, some of it still in A's memory; B lists again (twice: a
    // segment already known is not added again).
    append(&a, &request(7, 300, "1.0", 1.0, 100));
    append(&a, &request(107, 300, "1.1", 1.3, 12));
    flush(&a).await;
    append(&a, &request(8, 250, "1.0", 1.0, 100));
    sync(&a).await;
    sync(&b).await;
    sync(&b).await;
    for sub in [&early, &late] {
        assert_eq!(sub.requests(), (1500, 1500));
    }
    let on_b = compare(&tb, &sel, &policy).await.unwrap();
    assert_eq!((on_b.baseline.requests, on_b.canary.requests), (1500, 1500));
    let on_a = compare(&ta, &sel, &policy).await.unwrap();
    assert_eq!(
        on_a.baseline.requests, 1750,
        "A's own rows are all in its answer"
    );
    let json = |c: &graylens_analyzer::Comparison| {
        serde_json::json!({
            "metrics": c.metrics, "verdict": c.verdict, "explanations": c.explanations,
            "operations": c.operations, "baseline": c.baseline, "canary": c.canary,
        })
    };
    assert_eq!(
        json(&assemble(&sel, &policy, &late.observations())),
        json(&on_b)
    );
    assert_eq!(
        json(&assemble(&sel, &policy, &early.observations())),
        json(&on_b)
    );
    assert_eq!(
        tb.query("SELECT count(*) AS n FROM spans")
            .await
            .unwrap()
            .rows[0][0],
        serde_json::json!(3000),
        "SQL on B reads A's segments"
    );

    // B's answer is as fresh as A's marker: A still holds rows in memory,
    // so its flushed-through instant is before now; once flushed, it moves on.
    let before = a.flushed_through_ms();
    assert!(before <= chrono::Utc::now().timestamp_millis());
    let as_of = on_b.as_of.expect("as_of in a cluster").timestamp_millis();
    assert!(as_of <= before, "{as_of} vs {before}");
    flush(&a).await;
    sync(&a).await;
    sync(&b).await;
    assert!(b.as_of_ms().unwrap() >= before);
    assert_eq!(
        compare(&tb, &sel, &policy).await.unwrap().baseline.requests,
        1750
    );
    assert_eq!(b.cluster().marks.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_traffic_moves_the_verdict_waits_for_the_old_node() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Arc::new(Remote::in_memory().unwrap());
    let a = node(dir.path(), "node-a", &remote);
    let b = node(dir.path(), "node-b", &remote);
    let tb = Tables::new(b.clone()).unwrap();
    let sel = checkout();
    let policy = Policy::default();
    // checkout went to A; A stored part of it and holds the rest in memory.
    for seed in 0..3 {
        append(&a, &request(seed, 400, "1.0", 1.0, 100));
        append(&a, &request(seed + 100, 400, "1.1", 1.3, 12));
    }
    flush(&a).await;
    append(&a, &request(7, 300, "1.0", 1.0, 100));
    append(&a, &request(107, 300, "1.1", 1.3, 12));
    sync(&a).await;
    // B, answering for a service it does not receive: A's stored part, no hold.
    sync(&b).await;
    let before = compare(&tb, &sel, &policy).await.unwrap();
    assert!(before.waiting_for.is_empty());
    assert_eq!(before.baseline.requests, 1200);
    // The ring moves checkout to B: B now holds rows of it too.
    append(&b, &request(8, 300, "1.0", 1.0, 100));
    append(&b, &request(108, 300, "1.1", 1.3, 12));
    sync(&b).await;
    let moving = compare(&tb, &sel, &policy).await.unwrap();
    assert_eq!(moving.waiting_for, vec!["node-a".to_string()]);
    assert_eq!(
        moving.verdict.decision,
        graylens_analyzer::Decision::Inconclusive,
        "{:?}",
        moving.verdict
    );
    assert!(
        moving.verdict.reasons[0].contains("node-a"),
        "{:?}",
        moving.verdict
    );
    let live = Subscription::start(&b, sel.clone(), default_attributes().into())
        .await
        .unwrap();
    // A's next flush covers the window: B's verdict is on all of it.
    flush(&a).await;
    sync(&a).await;
    sync(&b).await;
    let covered = compare(&tb, &sel, &policy).await.unwrap();
    assert!(covered.waiting_for.is_empty(), "{:?}", covered.waiting_for);
    assert_eq!(
        (covered.baseline.requests, covered.canary.requests),
        (1800, 1800)
    );
    assert_eq!(covered.verdict.decision, graylens_analyzer::Decision::Fail);
    assert_eq!(live.requests(), (1800, 1800));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_comparison_that_could_not_read_a_new_segment_asks_to_start_again() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Arc::new(Remote::in_memory().unwrap());
    let a = node(dir.path(), "node-a", &remote);
    let b = node(dir.path(), "node-b", &remote);
    let sub = Subscription::start(&b, checkout(), default_attributes().into())
        .await
        .unwrap();
    append(&a, &request(1, 400, "1.0", 1.0, 100));
    append(&a, &request(101, 400, "1.1", 1.3, 12));
    flush(&a).await;
    // Beside A's segment, one B cannot read (as a failed GET would be).
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let bad = graylens_analyzer::segment::key(
        graylens_collector::Signal::Traces,
        "checkout",
        now_ns,
        now_ns + 1,
        "node-a",
        90,
        90,
        now_ns / 1_000_000,
    );
    let (r, k) = (remote.clone(), bad.clone());
    tokio::task::spawn_blocking(move || r.put(&k, b"not parquet".to_vec()))
        .await
        .unwrap()
        .unwrap();
    sync(&b).await;
    assert!(
        sub.is_stale(),
        "the listing counts both segments as known: without a restart the comparison misses A's rows"
    );
    let (r, k) = (remote.clone(), bad);
    tokio::task::spawn_blocking(move || r.delete(&k))
        .await
        .unwrap()
        .unwrap();
    sync(&b).await;
    let again = Subscription::start(&b, checkout(), default_attributes().into())
        .await
        .unwrap();
    assert!(!again.is_stale());
    assert_eq!(again.requests(), (400, 400));
}
