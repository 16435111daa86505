//! Nothing acknowledged is lost, nothing grows without bound: SIGKILL at
//! random moments while OTLP/HTTP and OTLP/gRPC clients send numbered
//! requests, a torn log tail, the memory limit under load, a hostile
//! payload, and runaway SQL while a rollout is judged.

use crate::harness::{now_ns, Server};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// Request `n` of a sender: `per` spans whose span ids encode (sender, n, i).
fn numbered(sender: u64, n: u64, per: u64, service: &str) -> ExportTraceServiceRequest {
    let t = now_ns();
    let spans = (0..per)
        .map(|i| Span {
            trace_id: [sender.to_be_bytes(), n.to_be_bytes()].concat(),
            span_id: ((sender << 48) | (n << 12) | i).to_be_bytes().to_vec(),
            name: "GET /cart".into(),
            kind: 2,
            start_time_unix_nano: t,
            end_time_unix_nano: t + 1_000_000,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("service.version", "1.0")],
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

fn span_ids(sender: u64, n: u64, per: u64) -> impl Iterator<Item = String> {
    (0..per).map(move |i| format!("{:016x}", (sender << 48) | (n << 12) | i))
}

/// Sends numbered requests until `stop`; records the acknowledged ones.
fn http_sender(
    url: String,
    sender: u64,
    first: u64,
    acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut n = first;
    while !stop.load(Ordering::Relaxed) {
        let body = numbered(sender, n, 50, "crash").encode_to_vec();
        let r = client
            .post(format!("{url}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send();
        match r {
            Ok(r) if r.status() == 200 => acked.lock().unwrap().push(n),
            Ok(_) => {}
            Err(_) => break, // the server is gone
        }
        n += 1;
    }
    n
}

fn grpc_sender(
    url: String,
    sender: u64,
    first: u64,
    acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut n = first;
        let Ok(mut c) = TraceServiceClient::connect(url).await else {
            return n;
        };
        while !stop.load(Ordering::Relaxed) {
            match c.export(numbered(sender, n, 50, "crash")).await {
                Ok(_) => acked.lock().unwrap().push(n),
                Err(s) if s.code() == tonic::Code::Unavailable && s.message().contains("retry") => {
                }
                Err(_) => break,
            }
            n += 1;
        }
        n
    })
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked_http = Arc::new(Mutex::new(Vec::new()));
    let acked_grpc = Arc::new(Mutex::new(Vec::new()));
    let (mut next_http, mut next_grpc) = (0u64, 0u64);
    let mut rng = fastrand::Rng::with_seed(20261203);
    let cycles = 20;
    let mut torn_cut = false;
    for cycle in 0..cycles {
        let s = Server::start_with(&data, "[store]\nflush_rows = 700\n");
        let stop = Arc::new(AtomicBool::new(false));
        let h = {
            let (u, a, st, f) = (
                s.otlp_http.clone(),
                acked_http.clone(),
                stop.clone(),
                next_http,
            );
            std::thread::spawn(move || http_sender(u, 1, f, a, st))
        };
        let g = {
            let (u, a, st, f) = (s.grpc.clone(), acked_grpc.clone(), stop.clone(), next_grpc);
            std::thread::spawn(move || grpc_sender(u, 2, f, a, st))
        };
        std::thread::sleep(Duration::from_millis(rng.u64(150..900)));
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        next_http = h.join().unwrap() + 1;
        next_grpc = g.join().unwrap() + 1;
        if cycle == cycles / 2 {
            // A crash mid-write: half a record at the log's tail.
            let wal = data.join("wal");
            let newest = std::fs::read_dir(&wal)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .max()
                .unwrap();
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(newest)
                .unwrap();
            std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3]).unwrap();
            torn_cut = true;
        }
    }
    assert!(torn_cut);
    let s = Server::start_with(&data, "[query]\nmax_rows = 10000000\n");
    let http = acked_http.lock().unwrap().clone();
    let grpc = acked_grpc.lock().unwrap().clone();
    assert!(
        http.len() > 20 && grpc.len() > 20,
        "too little traffic: {} / {}",
        http.len(),
        grpc.len()
    );
    let dups = s.rows("SELECT span_id FROM spans WHERE service_name = 'crash' GROUP BY span_id HAVING count(*) > 1");
    assert!(dups.is_empty(), "rows stored twice: {dups:?}");
    let stored: HashSet<String> = s
        .rows("SELECT span_id FROM spans WHERE service_name = 'crash'")
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    let mut missing = 0;
    for (sender, acked) in [(1, &http), (2, &grpc)] {
        for &n in acked.iter() {
            missing += span_ids(sender, n, 50)
                .filter(|id| !stored.contains(id))
                .count();
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} acknowledged spans lost ({} + {} requests acknowledged over {cycles} SIGKILLs)",
        http.len(),
        grpc.len()
    );
    eprintln!(
        "crash test: {} HTTP and {} gRPC requests acknowledged across {cycles} SIGKILLs, all {} spans stored once",
        http.len(),
        grpc.len(),
        (http.len() + grpc.len()) * 50
    );
    s.stop();
}

#[test]
fn a_torn_log_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start_with(&data, "[store]\nflush_interval_secs = 3600\n");
    let url = s.otlp_http.clone();
    for n in 0..3 {
        let r = reqwest::blocking::Client::new()
            .post(format!("{url}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(numbered(9, n, 10, "torn").encode_to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    s.kill9();
    let wal = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .unwrap();
    let len = std::fs::metadata(&wal).unwrap().len();
    // Garbage where a fourth record was being written.
    let mut f = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
    std::io::Write::write_all(&mut f, &[0x40, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 1]).unwrap();
    drop(f);
    let s = Server::start(&data);
    assert_eq!(
        s.count("SELECT count(*) FROM spans WHERE service_name = 'torn'"),
        30
    );
    assert_eq!(s.metric("graylens_wal_torn_records_total"), 1.0);
    assert_eq!(s.metric("graylens_wal_replayed_records_total"), 3.0);
    assert!(std::fs::metadata(&wal)
        .map(|m| m.len() <= len)
        .unwrap_or(true));
    s.stop();
}

fn peak_rss_mb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[test]
fn the_hostile_71_kb_request_gets_a_precise_answer_in_bounded_memory() {
    use flate2::{write::GzEncoder, Compression};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let t = now_ns();
    let spans: Vec<_> = (0..2100)
        .map(|i| serde_json::json!({"traceId": format!("{:032x}", i + 1), "spanId": format!("{:016x}", i + 1),
            "name": "x", "kind": 2, "startTimeUnixNano": t.to_string(), "endTimeUnixNano": (t + 1).to_string()}))
        .collect();
    let body = serde_json::json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "s".repeat(1 << 20)}},
        {"key": "note", "value": {"stringValue": "n".repeat(1 << 20)}}]},
        "scopeSpans": [{"spans": spans}]},
        {"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "ok"}},
        {"key": "note", "value": {"stringValue": "n".repeat(1 << 20)}}]},
        "scopeSpans": [{"spans": [{"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708",
            "name": "x", "kind": 2, "startTimeUnixNano": t.to_string(), "endTimeUnixNano": (t + 1).to_string()}]}]}]});
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    std::io::Write::write_all(&mut e, body.to_string().as_bytes()).unwrap();
    let gz = e.finish().unwrap();
    assert!(gz.len() < 100_000, "{} bytes gzipped", gz.len());
    let before = peak_rss_mb(s.pid());
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", s.otlp_http))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "2100");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("longer than 256 bytes"),
        "{v}"
    );
    s.wait_count("SELECT count(*) FROM spans WHERE service_name = 'ok'", 1);
    let note = s.rows("SELECT CAST(length(resource_attributes['note']) AS BIGINT) FROM spans WHERE service_name = 'ok'");
    assert_eq!(note[0][0], 8192, "cut to limits.max_attribute_value_bytes");
    assert!(s.metric("graylens_values_truncated_total") >= 1.0);
    let after = peak_rss_mb(s.pid());
    assert!(
        after < before + 200,
        "peak RSS grew from {before} MB to {after} MB"
    );
    assert!(s.healthy());
    s.stop();
}

#[test]
fn a_failing_flush_keeps_data_and_turns_into_503_at_the_memory_limit_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start_with(
        &data,
        "[limits]\nmemory_bytes = 100000000\n[query]\nmemory_bytes = 20000000\n[otlp]\nmax_message_bytes = 16000000\n",
    );
    // The disk "fails": the spans table cannot be created.
    std::fs::write(data.join("spans"), b"not a directory").unwrap();
    let client = reqwest::blocking::Client::new();
    let (mut ok, mut refused, mut retry_after) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut n = 0;
    while refused < 3 && start.elapsed() < Duration::from_secs(60) {
        let r = client
            .post(format!("{}/v1/traces", s.otlp_http))
            .header("content-type", "application/x-protobuf")
            .body(numbered(5, n, 4000, "load").encode_to_vec())
            .send()
            .unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            503 => {
                refused += 1;
                retry_after += r.headers().contains_key("retry-after") as u64;
            }
            other => panic!("unexpected status {other}"),
        }
        n += 1;
    }
    assert!(refused >= 3, "the limit was never reached ({ok} accepted)");
    assert_eq!(retry_after, refused, "every 503 carries Retry-After");
    assert!(s.metric("graylens_memory_refusals_total") >= refused as f64);
    assert!(s.metric("graylens_store_flush_errors_total") >= 1.0);
    assert!(s.metric("graylens_memory_used_bytes") <= 80_000_000.0);
    // Everything acknowledged is still queryable from memory.
    s.wait_count(
        "SELECT count(*) FROM spans WHERE service_name = 'load'",
        ok as i64 * 4000,
    );
    // The disk comes back: the flusher's retry frees memory, ingest recovers.
    std::fs::remove_file(data.join("spans")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client
            .post(format!("{}/v1/traces", s.otlp_http))
            .header("content-type", "application/x-protobuf")
            .body(numbered(6, 0, 100, "after").encode_to_vec())
            .send()
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(250));
    }
    s.stop();
    // All of it reached Parquet.
    let s = Server::start(&data);
    assert_eq!(
        s.count("SELECT count(*) FROM spans WHERE service_name = 'load'"),
        ok as i64 * 4000
    );
    s.stop();
}

#[test]
fn runaway_sql_is_stopped_and_judging_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &dir.path().join("data"),
        "[query]\ntimeout_secs = 2\nmax_rows = 1000\n[alerts]\ninterval_secs = 0.5\n",
    );
    let client = reqwest::blocking::Client::new();
    for v in ["1", "2"] {
        let mut req = numbered(7, v.parse().unwrap(), 300, "judged");
        req.resource_spans[0].resource.as_mut().unwrap().attributes[1] = kv("service.version", v);
        let r = client
            .post(format!("{}/v1/traces", s.otlp_http))
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r: serde_json::Value = client
        .post(format!("{}/api/v1/rollouts", s.api))
        .json(
            &serde_json::json!({"service": "judged", "baseline": "1", "canary": "2",
            "since": "2020-01-01T00:00:00Z"}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = r["id"].as_str().unwrap().to_string();
    let looks = |c: &reqwest::blocking::Client| -> usize {
        let r: serde_json::Value = c
            .get(format!("{}/api/v1/rollouts/{id}", s.api))
            .send()
            .unwrap()
            .json()
            .unwrap();
        r["history"].as_array().map_or(0, |h| h.len())
    };
    std::thread::sleep(Duration::from_secs(1));
    let before = looks(&client);
    let started = Instant::now();
    let runaway: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("{}/api/v1/sql", s.api);
            std::thread::spawn(move || {
                let r = reqwest::blocking::Client::new()
                    .post(url)
                    .json(&serde_json::json!({"sql": "SELECT sum(value) FROM range(100000000000000)"}))
                    .send()
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.text().unwrap())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let during = looks(&client);
    for h in runaway {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("query.timeout_secs"), "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        during > before,
        "no look while the queries ran ({before} → {during})"
    );
    let rows: serde_json::Value = client
        .post(format!("{}/api/v1/sql", s.api))
        .json(&serde_json::json!({"sql": "SELECT value FROM range(5000)"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(rows["rows"].as_array().unwrap().len(), 1000);
    assert_eq!(rows["truncated"], true);
    s.stop();
}
