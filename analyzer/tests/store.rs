//! The store on its own: flush, reload, retention, SQL over hot ∪ Parquet.

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, MapBuilder, StringArray, StringBuilder,
    TimestampNanosecondArray,
};
use datafusion::arrow::record_batch::RecordBatch;
use graylens_analyzer::{Store, StoreConfig, Tables};
use graylens_collector::schema::SPANS;
use graylens_collector::Signal;
use serde_json::json;
use std::sync::Arc;

fn spans(n: usize, t0: i64, version: &str) -> RecordBatch {
    let s = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
    let attrs = || {
        let mut m = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for _ in 0..n {
            m.keys().append_value("k");
            m.values().append_value("v");
            m.append(true).unwrap();
        }
        Arc::new(m.finish()) as ArrayRef
    };
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampNanosecondArray::from((0..n as i64).map(|i| t0 + i).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(Int64Array::from(vec![1_000_000; n])),
        s("0102030405060708090a0b0c0d0e0f10"),
        s("0102030405060708"),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        s("checkout"),
        s(version),
        s("prod"),
        s("canary"),
        s(""),
        s("GET /"),
        Arc::new(Int32Array::from(vec![2; n])),
        Arc::new(Int32Array::from(vec![0; n])),
        s(""),
        Arc::new(BooleanArray::from(vec![false; n])),
        Arc::new(Int32Array::from(vec![Some(200); n])),
        Arc::new(StringArray::from(vec![Some("/"); n])),
        s("scope"),
        attrs(),
        attrs(),
    ];
    RecordBatch::try_new(SPANS.clone(), cols).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[tokio::test]
async fn hot_and_flushed_rows_are_each_seen_once_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let store = Store::open(cfg.clone()).unwrap();
    let tables = Tables::new(store.clone()).unwrap();
    store.append(Signal::Traces, spans(10, now(), "1.0"));
    store.flush().unwrap();
    store.append(Signal::Traces, spans(5, now(), "2.0"));
    let q =
        "SELECT service_version, count(*), max(attributes['k']) FROM spans GROUP BY 1 ORDER BY 1";
    let want = vec![
        vec![json!("1.0"), json!(10), json!("v")],
        vec![json!("2.0"), json!(5), json!("v")],
    ];
    assert_eq!(tables.query(q).await.unwrap().rows, want);
    store.flush().unwrap();
    assert_eq!(store.hot_rows(Signal::Traces), 0);
    assert_eq!(tables.query(q).await.unwrap().rows, want);

    let reopened = Store::open(cfg).unwrap();
    let t2 = Tables::new(reopened).unwrap();
    assert_eq!(t2.query(q).await.unwrap().rows, want);
}

#[tokio::test]
async fn retention_by_age_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000_000_000i64;
    let cfg = StoreConfig {
        data_dir: dir.path().to_path_buf(),
        retention_hours: 2,
        ..Default::default()
    };
    let store = Store::open(cfg).unwrap();
    store.append(Signal::Traces, spans(10, now() - 5 * hour, "old"));
    store.flush().unwrap(); // written, then deleted by the age limit
    store.append(Signal::Traces, spans(10, now(), "new"));
    store.flush().unwrap();
    let tables = Tables::new(store.clone()).unwrap();
    let rows = tables
        .query("SELECT service_version, count(*) FROM spans GROUP BY 1")
        .await
        .unwrap()
        .rows;
    assert_eq!(rows, vec![vec![json!("new"), json!(10)]]);

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    for i in 0..3 {
        store.append(Signal::Traces, spans(100, now() + i, &format!("v{i}")));
        store.flush().unwrap();
    }
    let total = store.disk_bytes();
    let one = total / 3;
    let limited = StoreConfig {
        data_dir: dir.path().to_path_buf(),
        max_disk_bytes: total - one / 2,
        ..Default::default()
    };
    let store = Store::open(limited).unwrap();
    store.apply_retention();
    let tables = Tables::new(store).unwrap();
    let rows = tables
        .query("SELECT service_version FROM spans GROUP BY 1 ORDER BY 1")
        .await
        .unwrap()
        .rows;
    assert_eq!(
        rows,
        vec![vec![json!("v1")], vec![json!("v2")]],
        "the oldest segment goes first"
    );
}

#[tokio::test]
async fn ddl_is_refused_and_bad_sql_is_a_query_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let tables = Tables::new(store).unwrap();
    for sql in ["DROP TABLE spans", "SELEC 1", "SELECT missing FROM spans"] {
        let e = tables.query(sql).await.unwrap_err();
        assert!(
            matches!(e, graylens_analyzer::Error::Query(_)),
            "{sql}: {e}"
        );
    }
    assert_eq!(
        tables
            .query("SELECT count(*) FROM spans")
            .await
            .unwrap()
            .rows,
        vec![vec![json!(0)]]
    );
}
