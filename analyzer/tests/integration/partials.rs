//! A comparison keeps what it read from each segment (issue #12, item 5):
//! a repeated comparison reads only the segments written since, a segment
//! cut by the window is read again, and every answer equals that of a store
//! that kept nothing.

use crate::common;

use common::{append, checkout, request_at};
use graylens_analyzer::{compare, Comparison, Policy, Selector, Store, StoreConfig, Tables};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// 2026-05-28T20:26:40Z; request `seed` starts `seed` seconds later and
/// spans 400 µs.
const BASE: u64 = 1_780_000_000_000_000_000;

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        retention_hours: 0,
        compact_interval_secs: 0,
        ..Default::default()
    }
}

/// One segment: 400 baseline and 400 slower, more failing canary spans.
fn segment(store: &Store, seed: u64) {
    let t0 = BASE + seed * 1_000_000_000;
    append(store, &request_at(seed, 400, "1.0", 1.0, 100, t0));
    append(store, &request_at(seed + 100, 400, "1.1", 1.3, 12, t0));
    store.flush_now().unwrap();
}

fn json(c: &Comparison) -> serde_json::Value {
    serde_json::json!({
        "metrics": c.metrics, "verdict": c.verdict, "explanations": c.explanations,
        "operations": c.operations, "baseline": c.baseline, "canary": c.canary,
        "report": c.report,
    })
}

/// `a` equals `b`, numbers within 1e-9 relative: the per-segment sums of
/// ln latency are added in another order than a single scan adds them
/// (the single-look Welch test of the report differs by 1e-13 in t, 1e-11 in
/// its p-value of 2e-33).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::{Array, Number, Object};
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Object(x), Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Segments opened and segments reused by `store` so far.
fn counts(store: &Store) -> (u64, u64) {
    (
        store.stats.segments_read.load(Relaxed),
        store.partials.hits.load(Relaxed),
    )
}

/// The same comparison on a store over the same directory that has kept nothing.
async fn from_scratch(dir: &std::path::Path, sel: &Selector) -> serde_json::Value {
    let fresh = Store::open_read_only(config(dir)).unwrap();
    let tables = Tables::new(fresh.clone()).unwrap();
    let c = compare(&tables, sel, &Policy::default()).await.unwrap();
    assert_eq!(fresh.partials.hits.load(Relaxed), 0);
    json(&c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_comparison_reads_only_what_is_new_and_answers_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<Store> = Store::open(config(dir.path())).unwrap();
    for seed in 0..3 {
        segment(&store, seed);
    }
    let tables = Tables::new(store.clone()).unwrap();
    let (sel, policy) = (checkout(), Policy::default());

    let first = compare(&tables, &sel, &policy).await.unwrap();
    assert_eq!(
        counts(&store),
        (3, 0),
        "the first comparison reads every segment"
    );
    assert_eq!(first.baseline.requests, 1200);
    let again = compare(&tables, &sel, &policy).await.unwrap();
    assert_eq!(counts(&store), (3, 3), "the repeat reads none");
    assert_eq!(
        json(&again),
        json(&first),
        "the same parts, merged the same way"
    );

    // A new segment is read; the kept ones are not.
    segment(&store, 3);
    let third = compare(&tables, &sel, &policy).await.unwrap();
    assert_eq!(counts(&store), (4, 6));
    assert_eq!(third.baseline.requests, 1600);
    let scratch = from_scratch(dir.path(), &sel).await;
    assert!(
        same(&json(&third), &scratch),
        "{:#}\n{scratch:#}",
        json(&third)
    );

    // A window from the middle of segment 1: segment 0 is pruned, segment
    // 1 is cut by the window and read again, segments 2 and 3 are reused.
    let from = chrono::DateTime::from_timestamp_nanos((BASE + 1_000_000_000 + 200_000) as i64);
    let windowed = Selector {
        from: Some(from),
        ..sel.clone()
    };
    let cut = compare(&tables, &windowed, &policy).await.unwrap();
    assert_eq!(counts(&store), (5, 8));
    assert_eq!(cut.baseline.requests, 200 + 800);
    let scratch = from_scratch(dir.path(), &windowed).await;
    assert!(same(&json(&cut), &scratch), "{:#}\n{scratch:#}", json(&cut));
    // The cut segment was not kept under the whole-segment key.
    compare(&tables, &sel, &policy).await.unwrap();
    assert_eq!(counts(&store), (5, 12));

    // Other sides are other partials.
    let swapped = Selector {
        baseline: "1.1".into(),
        canary: "1.0".into(),
        ..sel.clone()
    };
    compare(&tables, &swapped, &policy).await.unwrap();
    assert_eq!(counts(&store), (9, 12));
    let (entries, bytes) = store.partials.size();
    assert_eq!(entries, 8);
    assert!(bytes > 0 && bytes <= graylens_analyzer::compare::partials::CAPACITY_BYTES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_told_to_keep_nothing_reads_every_segment_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        compare_cache_mib: 0,
        ..config(dir.path())
    })
    .unwrap();
    for seed in 0..2 {
        segment(&store, seed);
    }
    let tables = Tables::new(store.clone()).unwrap();
    for n in 1..=2 {
        compare(&tables, &checkout(), &Policy::default())
            .await
            .unwrap();
        assert_eq!(counts(&store), (2 * n, 0));
    }
    assert_eq!(store.partials.size(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_by_compaction_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    for seed in 0..4 {
        segment(&store, seed);
    }
    let tables = Tables::new(store.clone()).unwrap();
    let (sel, policy) = (checkout(), Policy::default());
    let before = compare(&tables, &sel, &policy).await.unwrap();
    assert_eq!(counts(&store), (4, 0));
    let s = store.clone();
    let merged = tokio::task::spawn_blocking(move || s.compact_with_grace(Duration::ZERO))
        .await
        .unwrap()
        .unwrap();
    assert!(merged > 0, "the four segments were merged");
    let after = compare(&tables, &sel, &policy).await.unwrap();
    assert_eq!(
        counts(&store),
        (4, 1),
        "the merge's part came from its inputs'"
    );
    assert_eq!(after.baseline.requests, 1600);
    assert!(same(&json(&after), &json(&before)));
    let scratch = from_scratch(dir.path(), &sel).await;
    assert!(
        same(&json(&after), &scratch),
        "{:#}\n{scratch:#}",
        json(&after)
    );
}
