//! Data survives a restart: flushed on SIGTERM, reloaded from Parquet.

use crate::harness::{now_ns, Server};
use reqwest::blocking::Client;
use serde_json::json;

fn spans_json(service: &str, version: &str, n: usize) -> serde_json::Value {
    let t = now_ns();
    let spans: Vec<_> = (0..n)
        .map(|i| json!({
            "traceId": format!("{:032x}", i + 1), "spanId": format!("{:016x}", i + 1),
            "name": "GET /cart", "kind": 2,
            "startTimeUnixNano": (t + i as u64).to_string(), "endTimeUnixNano": (t + i as u64 + 5_000_000).to_string(),
        }))
        .collect();
    json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "service.version", "value": {"stringValue": version}}]},
        "scopeSpans": [{"spans": spans}]}]})
}

#[test]
fn counts_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    for (v, n) in [("1.4.0", 120), ("1.5.0", 30)] {
        let r = Client::new()
            .post(format!("{}/v1/traces", s.otlp_http))
            .json(&spans_json("checkout", v, n))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let q = "SELECT count(*) FROM spans WHERE service_name = 'checkout'";
    s.wait_count(q, 150);
    s.stop();

    let parquet = walk(&data.join("spans"));
    assert!(
        !parquet.is_empty(),
        "no Parquet segment written on shutdown"
    );

    let s = Server::start(&data);
    assert_eq!(s.count(q), 150);
    let by_version = s.rows("SELECT service_version, count(*) FROM spans GROUP BY 1 ORDER BY 1");
    assert_eq!(
        by_version,
        vec![
            vec![json!("1.4.0"), json!(120)],
            vec![json!("1.5.0"), json!(30)]
        ]
    );
    // New data lands beside the reloaded segments.
    let r = Client::new()
        .post(format!("{}/v1/traces", s.otlp_http))
        .json(&spans_json("checkout", "1.5.0", 5))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    s.wait_count(q, 155);
    s.stop();

    // Offline query over the same directory.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_graylens"))
        .args(["query", "--format", "json", "--data-dir"])
        .arg(&data)
        .arg("SELECT count(*) AS n FROM spans")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"][0][0], json!(155));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}
