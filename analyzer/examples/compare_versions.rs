//! Compare two versions of a service end to end, in process: OTLP spans →
//! Arrow (collector) → store → `compare` → verdict.
//!
//! ```sh
//! cargo run -p graylens-analyzer --example compare_versions
//! ```

use graylens_analyzer::{compare, By, Policy, Selector, Store, StoreConfig, Tables};
use graylens_collector::ingest::convert_request;
use graylens_collector::Reservation;
use graylens_collector::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// `n` server spans of `version` whose latency cycles around `median_ms`.
fn request(version: &str, n: u64, median_ms: f64) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| {
            let spread = 0.5 + (i * 7919 % 1000) as f64 / 1000.0; // 0.5 … 1.5
            let start = 1_700_000_000_000_000_000 + i * 1_000_000;
            Span {
                trace_id: [&[1u8; 8][..], &i.to_be_bytes()].concat(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                name: "GET /cart".into(),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + (median_ms * spread * 1e6) as u64,
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
    let dir = std::env::temp_dir().join(format!("graylens-example-{}", std::process::id()));
    let store = Store::open(StoreConfig {
        data_dir: dir.clone(),
        ..Default::default()
    })?;
    for (version, median) in [("v1", 20.0), ("v2", 26.0)] {
        for b in convert_request(&request(version, 5_000, median))?.batches {
            store.append(Signal::Traces, b, Reservation::none());
        }
    }
    let tables = Tables::new(store)?;
    let sel = Selector {
        service: "checkout".into(),
        baseline: "v1".into(),
        canary: "v2".into(),
        by: By::Version,
        from: None,
        to: None,
    };
    let c = compare(&tables, &sel, &Policy::default()).await?;
    println!(
        "verdict: {:?} (score {})",
        c.verdict.decision, c.verdict.score
    );
    for r in &c.verdict.reasons {
        println!("  - {r}");
    }
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
