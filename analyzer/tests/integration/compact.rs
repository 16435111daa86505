//! Compaction (issue #14): a node's small segments of one table, service
//! and hour are merged into one while queries and comparisons run, locally
//! and in a shared object store; no count ever changes.

use crate::common;

use common::{append, kv, request_in_one_hour as request};
use graylens_analyzer::compare::explain::default_attributes;
use graylens_analyzer::remote::Remote;
use graylens_analyzer::{compare, Policy, Store, StoreConfig, Subscription, Tables};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// A store alone over `dir`, keeping everything.
fn local(dir: &std::path::Path) -> Arc<Store> {
    Store::open(StoreConfig {
        data_dir: dir.to_path_buf(),
        retention_hours: 0,
        ..Default::default()
    })
    .unwrap()
}

fn sel() -> graylens_analyzer::Selector {
    common::checkout()
}

fn parquet_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += parquet_files(&p);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            n += 1;
        }
    }
    n
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_never_change_while_files_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(dir.path());
    let tables = Tables::new(store.clone()).unwrap();
    for seed in 0..6 {
        append(&store, &request(seed, 300, "1.0", 1.0, 50));
        append(&store, &request(seed + 100, 300, "1.1", 1.3, 12));
        store.flush_now().unwrap();
    }
    assert_eq!(parquet_files(dir.path()), 6);
    let facets: Arc<[String]> = default_attributes().into();
    let sub = Subscription::start(&store, sel(), facets.clone())
        .await
        .unwrap();
    let want = 6 * 600;
    // Queries and comparisons in a loop while compaction runs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (tables, stop) = (tables.clone(), stop.clone());
        tokio::spawn(async move {
            let mut looks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || looks < 3 {
                let n = tables
                    .query("SELECT count(*) FROM spans")
                    .await
                    .unwrap()
                    .rows[0][0]
                    .clone();
                assert_eq!(n, serde_json::json!(want), "SQL during compaction");
                let c = compare(&tables, &sel(), &Policy::default()).await.unwrap();
                assert_eq!(
                    c.baseline.requests + c.canary.requests,
                    want as u64,
                    "compare during compaction"
                );
                looks += 1;
            }
            looks
        })
    };
    let s = store.clone();
    let merged = blocking(move || s.compact_with_grace(Duration::ZERO).unwrap()).await;
    assert_eq!(merged, 6);
    // The inputs are still on disk (until the next pass), hidden by the merge.
    assert_eq!(parquet_files(dir.path()), 7);
    assert_eq!(
        tables
            .query("SELECT count(*) FROM spans")
            .await
            .unwrap()
            .rows[0][0],
        serde_json::json!(want)
    );
    let c = compare(&tables, &sel(), &Policy::default()).await.unwrap();
    assert_eq!(c.baseline.requests + c.canary.requests, want as u64);
    let s = store.clone();
    assert_eq!(
        blocking(move || s.compact_with_grace(Duration::ZERO).unwrap()).await,
        0
    );
    assert_eq!(
        parquet_files(dir.path()),
        1,
        "inputs deleted after the grace period"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.unwrap() >= 3);
    assert_eq!(sub.requests(), (1800, 1800));
    assert_eq!(
        store
            .stats
            .segments_merged
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    // A restart finds one segment, and replays nothing twice.
    drop((tables, sub));
    let again = local(dir.path());
    let t = Tables::new(again).unwrap();
    assert_eq!(
        t.query("SELECT count(*) FROM spans").await.unwrap().rows[0][0],
        serde_json::json!(want)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_counts_a_merge_once() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Arc::new(Remote::in_memory().unwrap());
    let open = |id: &str| {
        Store::open_shared(
            StoreConfig {
                data_dir: dir.path().join(id),
                retention_hours: 0,
                node_id: id.into(),
                ..Default::default()
            },
            remote.clone(),
        )
        .unwrap()
    };
    let (a, b) = (open("node-a"), open("node-b"));
    for seed in 0..5 {
        append(&a, &request(seed, 200, "1.0", 1.0, 50));
        append(&a, &request(seed + 100, 200, "1.1", 1.3, 12));
        let s = a.clone();
        blocking(move || s.flush_now().unwrap()).await;
    }
    let sync = |s: &Arc<Store>| {
        let s = s.clone();
        blocking(move || s.sync_cluster().unwrap())
    };
    sync(&b).await;
    let sub = Subscription::start(&b, sel(), default_attributes().into())
        .await
        .unwrap();
    assert_eq!(sub.requests(), (1000, 1000));
    let tb = Tables::new(b.clone()).unwrap();
    let count =
        || async { tb.query("SELECT count(*) FROM spans").await.unwrap().rows[0][0].clone() };
    // A merges: B lists the merge and its inputs together, then the merge alone.
    let s = a.clone();
    assert_eq!(
        blocking(move || s.compact_with_grace(Duration::ZERO).unwrap()).await,
        5
    );
    sync(&b).await;
    assert_eq!(sub.requests(), (1000, 1000));
    assert_eq!(count().await, serde_json::json!(2000));
    let s = a.clone();
    blocking(move || s.compact_with_grace(Duration::ZERO).unwrap()).await;
    sync(&b).await;
    assert_eq!(remote.list("spans").unwrap().len(), 1);
    assert_eq!(sub.requests(), (1000, 1000));
    assert_eq!(count().await, serde_json::json!(2000));
    // New rows after the merge still reach B's running comparison.
    append(&a, &request(9, 200, "1.0", 1.0, 50));
    let s = a.clone();
    blocking(move || s.flush_now().unwrap()).await;
    sync(&b).await;
    assert_eq!(sub.requests(), (1200, 1000));
}

/// `n` spans of `service` in hour `hour` after the fixed base time.
fn spans_of(service: &str, hour: u64, seed: u64) -> ExportTraceServiceRequest {
    let mut r = request(seed, 100, "1.0", 1.0, 50);
    let rs = &mut r.resource_spans[0];
    rs.resource.as_mut().unwrap().attributes[0] = kv("service.name", service);
    for s in &mut rs.scope_spans[0].spans {
        s.start_time_unix_nano += hour * 3_600_000_000_000;
        s.end_time_unix_nano += hour * 3_600_000_000_000;
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_opens_only_the_segments_of_the_service_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(dir.path());
    for (i, (svc, hour)) in [("checkout", 0), ("checkout", 1), ("cart", 0), ("cart", 1)]
        .into_iter()
        .enumerate()
    {
        append(&store, &spans_of(svc, hour, i as u64));
        store.flush_now().unwrap();
    }
    // Hot rows too: one more batch of each service, in hour 1.
    append(&store, &spans_of("checkout", 1, 10));
    append(&store, &spans_of("cart", 1, 11));
    let tables = Tables::new(store.clone()).unwrap();
    // The base time is 2026-05-28T20:26:40Z; hour 1 starts at 21:26:40.
    let cases = [
        ("", 4, 600),
        ("WHERE service_name = 'checkout'", 2, 300),
        ("WHERE service_name IN ('cart')", 2, 300),
        (
            "WHERE service_name = 'checkout' AND time >= '2026-05-28T21:00:00Z'",
            1,
            200,
        ),
        ("WHERE time < '2026-05-28T21:00:00Z'", 2, 200),
        ("WHERE service_name = 'nobody'", 0, 0),
    ];
    for (filter, files, rows) in cases {
        let sql = format!("SELECT count(*) FROM spans {filter}");
        let n = tables.query(&sql).await.unwrap().rows[0][0].clone();
        assert_eq!(n, serde_json::json!(rows), "{sql}");
        // (A plain count may come from statistics: list rows to see the scan.)
        let plan = tables
            .query(&format!("EXPLAIN SELECT span_name FROM spans {filter}"))
            .await
            .unwrap();
        let text = serde_json::to_string(&plan.rows).unwrap();
        assert_eq!(text.matches(".parquet").count(), files, "{sql}: {text}");
    }
    // Comparisons are pruned the same way, and count what they open (a
    // canary, in memory, to compare with). The second comparison's one
    // segment lies wholly in both windows: its part is reused, not opened.
    append(&store, &request(20, 100, "1.1", 1.0, 50));
    let hour1 = "2026-05-28T21:00:00Z".parse().unwrap();
    let counts = || {
        let read = store.stats.segments_read.load(Relaxed);
        (read, store.partials.hits.load(Relaxed))
    };
    for (from, opened, reused) in [(None, 2, 0), (Some(hour1), 0, 1)] {
        let sel = graylens_analyzer::Selector { from, ..sel() };
        let before = counts();
        compare(&tables, &sel, &Policy::default()).await.unwrap();
        let after = counts();
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (opened, reused),
            "compare from {from:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_segment_stops_only_its_own_merge() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(dir.path());
    let as_cart = |mut r: ExportTraceServiceRequest| {
        for rs in &mut r.resource_spans {
            let res = rs.resource.as_mut().unwrap();
            res.attributes.retain(|a| a.key != "service.name");
            res.attributes.push(kv("service.name", "cart"));
        }
        r
    };
    for seed in 0..4 {
        append(&store, &request(seed, 100, "1.0", 1.0, 50));
        append(&store, &as_cart(request(seed + 10, 100, "1.0", 1.0, 50)));
        store.flush_now().unwrap();
    }
    let (cart, checkout) = (
        dir.path().join("spans/service=cart"),
        dir.path().join("spans/service=checkout"),
    );
    assert_eq!((parquet_files(&cart), parquet_files(&checkout)), (4, 4));
    // One of cart's files is damaged; cart's directory comes first.
    fn first_file(d: &std::path::Path) -> std::path::PathBuf {
        let p = std::fs::read_dir(d)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        if p.is_dir() {
            first_file(&p)
        } else {
            p
        }
    }
    std::fs::write(first_file(&cart), b"not parquet").unwrap();
    let s = store.clone();
    assert!(blocking(move || s.compact_with_grace(Duration::ZERO))
        .await
        .is_err());
    assert_eq!(
        (parquet_files(&cart), parquet_files(&checkout)),
        (4, 5),
        "checkout's four files merged into one beside them"
    );
    let tables = Tables::new(store.clone()).unwrap();
    let n = tables
        .query("SELECT count(*) FROM spans WHERE service_name = 'checkout'")
        .await
        .unwrap()
        .rows;
    assert_eq!(n, vec![vec![serde_json::json!(400)]]);
}
