//! Benchmark: one `compare` over N spans (default 10 million) of one
//! service, two versions, 20 operations, in the hot in-memory store and
//! again after flushing to Parquet.
//!
//! ```sh
//! cargo run --release -p graylens-analyzer --example compare_bench -- --spans 10000000
//! ```

use graylens_analyzer::{compare, By, Policy, Selector, Store, StoreConfig, Tables};
use graylens_collector::ingest::convert_request;
use graylens_collector::Reservation;
use graylens_collector::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::time::Instant;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn request(version: &str, first: u64, n: u64, slow: f64) -> ExportTraceServiceRequest {
    let spans = (first..first + n)
        .map(|i| {
            let x = i.wrapping_mul(0x9E3779B97F4A7C15) >> 40; // pseudo-random 24 bits
            let ms = 5.0 + (x % 100_000) as f64 / 2_000.0 * slow;
            let start = 1_700_000_000_000_000_000 + i * 1_000;
            Span {
                trace_id: [&[7u8; 8][..], &i.to_be_bytes()].concat(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                name: format!("GET /op/{}", i % 20),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + (ms * 1e6) as u64,
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout"),
                    kv("service.version", version),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 = args
        .iter()
        .position(|a| a == "--spans")
        .and_then(|i| args.get(i + 1))
        .map_or(10_000_000, |v| v.parse().expect("--spans N"));
    let dir = std::env::temp_dir().join(format!("graylens-bench-{}", std::process::id()));
    let store = Store::open(StoreConfig {
        data_dir: dir.clone(),
        retention_hours: 0,
        flush_rows: usize::MAX,
        ..Default::default()
    })?;
    let loading = Instant::now();
    let chunk = 50_000;
    let mut i = 0;
    while i < total {
        let n = chunk.min(total - i);
        let (version, slow) = if (i / chunk) % 10 == 9 {
            ("v2", 1.1)
        } else {
            ("v1", 1.0)
        };
        for b in convert_request(&request(version, i, n, slow))?.batches {
            store.append(Signal::Traces, b, Reservation::none());
        }
        i += n;
    }
    eprintln!(
        "loaded {total} spans in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    let tables = Tables::new(store.clone())?;
    let sel = Selector {
        service: "checkout".into(),
        baseline: "v1".into(),
        canary: "v2".into(),
        by: By::Version,
        from: None,
        to: None,
    };
    let mut policy = Policy::default();
    // `--no-explain`: no attribute breakdown (explain_attributes = []), to
    // see what the explanations cost.
    if args.iter().any(|a| a == "--no-explain") {
        policy.explain_attributes.clear();
    }
    for place in ["hot (in memory)", "Parquet"] {
        if place == "Parquet" {
            let t = Instant::now();
            store.flush_now()?;
            eprintln!("flushed to Parquet in {:.1} s", t.elapsed().as_secs_f64());
        }
        // Over Parquet the first comparison reads the segments and keeps
        // each one's part; the repeats reuse them (`compare::partials`),
        // so the first and the repeats are reported apart.
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..3 {
            let t = Instant::now();
            last = Some(compare(&tables, &sel, &policy).await?);
            times.push(t.elapsed().as_secs_f64());
        }
        let first = times[0];
        times.sort_by(f64::total_cmp);
        let c = last.expect("ran");
        println!(
            "compare over {} spans, {place}: first {:.3} s, median of 3 {:.3} s (min {:.3}, max {:.3}); segments reused so far {}; verdict {:?}, requests {} vs {}",
            total,
            first,
            times[1],
            times[0],
            times[2],
            store.partials.hits.load(std::sync::atomic::Ordering::Relaxed),
            c.verdict.decision,
            c.baseline.requests,
            c.canary.requests
        );
    }
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
