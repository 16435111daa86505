//! Incremental judging (issue #12): a live subscription, started over data
//! already stored (Parquet and hot) and then fed batch by batch as new data
//! arrives, gives exactly the observations — and so the verdict, metrics
//! and explanations — of a from-scratch `compare` over the same data.

use crate::common;

use common::{append, checkout, request};
use graylens_analyzer::compare::{assemble, explain::default_attributes};
use graylens_analyzer::{compare, Policy, Subscription, Tables};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_verdict_equals_a_from_scratch_compare() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_keeping_all(dir.path());
    let tables = Tables::new(store.clone()).unwrap();
    let sel = checkout();
    let policy = Policy::default();
    // Before the subscription: some data flushed to Parquet, some hot.
    for seed in 0..3 {
        append(&store, &request(seed, 400, "1.0", 1.0, 100));
        append(&store, &request(seed + 100, 400, "1.1", 1.3, 12));
    }
    store.flush_now().unwrap();
    append(&store, &request(7, 300, "1.0", 1.0, 100));
    append(&store, &request(107, 300, "1.1", 1.3, 12));

    let sub = Subscription::start(&store, sel.clone(), default_attributes().into())
        .await
        .unwrap();
    assert!(sub.files_scanned > 0, "the initial scan read Parquet");
    // After: batches fed as they are appended, with a flush in between.
    for seed in 10..16 {
        append(&store, &request(seed, 250, "1.0", 1.0, 100));
        append(&store, &request(seed + 100, 250, "1.1", 1.3, 12));
        if seed == 12 {
            store.flush_now().unwrap();
        }
    }

    let incremental = assemble(&sel, &policy, &sub.observations());
    let scratch = compare(&tables, &sel, &policy).await.unwrap();
    assert_eq!(incremental.baseline.requests, 400 * 3 + 300 + 250 * 6);
    let json = common::comparison_json;
    assert_eq!(json(&incremental), json(&scratch));
    assert_eq!(scratch.verdict.decision, graylens_analyzer::Decision::Fail);
}
