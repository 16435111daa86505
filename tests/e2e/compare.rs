//! Comparison and verdict end to end: spans of a regressed canary and of an
//! A/A pair sent as OTLP/HTTP protobuf, judged through `/api/v1/compare`,
//! `/api/v1/verdict` and offline `graylens compare`.

use crate::harness::{now_ns, Server};
use crate::traffic::{get, kv, requests, send, Gen};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;
use std::process::Command;

#[test]
fn regressed_canary_fails_and_identical_versions_pass() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    let mut g = Gen(42);
    for _ in 0..4 {
        send(&s, requests(&mut g, "checkout", "v1", 1000, 20.0, 0.005));
        send(&s, requests(&mut g, "checkout", "v2", 1000, 32.0, 0.06));
        // Identical versions, enough requests for every interval to
        // exclude its pass margin.
        send(&s, requests(&mut g, "cart", "a", 2500, 15.0, 0.0));
        send(&s, requests(&mut g, "cart", "b", 2500, 15.0, 0.0));
    }
    send(&s, requests(&mut g, "search", "v1", 1000, 10.0, 0.0));
    send(&s, requests(&mut g, "search", "v2", 40, 10.0, 0.0));
    s.wait_count("SELECT count(*) FROM spans", 29_040);

    let (status, c) = get(&s, "/api/v1/compare?service=checkout&baseline=v1&canary=v2");
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["verdict"]["decision"], "fail", "{:#}", c["verdict"]);
    assert_eq!(c["baseline"]["requests"], 4000);
    assert_eq!(c["canary"]["version"], "v2");
    let p50 = c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "latency_p50")
        .unwrap();
    assert_eq!(p50["classification"], "fail", "{p50:#}");
    let (b, k) = (
        p50["baseline"].as_f64().unwrap(),
        p50["canary"].as_f64().unwrap(),
    );
    assert!(
        (b - 20.0).abs() < 1.5 && (k - 32.0).abs() < 2.0,
        "p50 {b} vs {k}"
    );
    assert!(p50["ci"][0].as_f64().unwrap() > 0.0, "{p50:#}");
    for key in [
        "delta",
        "relative_delta",
        "test",
        "p_value",
        "adjusted_p_value",
        "samples",
    ] {
        assert!(!p50[key].is_null(), "{key} missing in {p50:#}");
    }
    assert_eq!(c["operations"].as_array().unwrap().len(), 2);
    // Per-side intervals bracket the estimates.
    for side in ["baseline", "canary"] {
        let s = &c[side];
        for (q, iv) in [("p50", "p50_ms"), ("p99", "p99_ms")] {
            let (v, iv) = (s["latency_ms"][q].as_f64().unwrap(), &s["intervals"][iv]);
            assert!(iv[0].as_f64().unwrap() <= v, "{side} {q}: {iv} vs {v}");
            assert!(
                iv[1].as_f64().is_none_or(|hi| v <= hi),
                "{side} {q}: {iv} vs {v}"
            );
        }
        let rate = s["error_rate"].as_f64().unwrap();
        let iv = &s["intervals"]["error_rate"];
        assert!(
            iv[0].as_f64().unwrap() <= rate && rate <= iv[1].as_f64().unwrap(),
            "{iv} vs {rate}"
        );
    }
    assert!(c["report"]["mann_whitney"]["p_value"].as_f64().unwrap() < 1e-6);

    // The same comparison as Kayenta's judge result.
    let (status, k) = get(
        &s,
        "/api/v1/compare?service=checkout&baseline=v1&canary=v2&format=kayenta",
    );
    assert_eq!(status, 200, "{k}");
    assert_eq!(k["score"]["classification"], "Fail");
    let r = k["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "latency_p50")
        .unwrap();
    assert_eq!(r["classification"], "High");
    assert_eq!(r["controlMetadata"]["stats"]["count"], 4000);
    assert!(r["resultMetadata"]["ratio"].as_f64().unwrap() > 1.3);

    let (status, v) = get(
        &s,
        "/api/v1/verdict?service=cart&baseline=a&canary=b&by=version",
    );
    assert_eq!(status, 200);
    assert_eq!(v["verdict"], "pass", "{v:#}");

    let (status, list) = get(&s, "/api/v1/services");
    assert_eq!(status, 200);
    let checkout = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["service"] == "checkout")
        .unwrap();
    assert_eq!(checkout["requests"], 8000);
    let versions: Vec<&str> = checkout["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert_eq!(versions.len(), 2);
    assert!(versions.contains(&"v1") && versions.contains(&"v2"));

    // Too few canary requests: inconclusive, never pass or fail.
    let (_, v) = get(&s, "/api/v1/verdict?service=search&baseline=v1&canary=v2");
    assert_eq!(v["verdict"], "inconclusive", "{v:#}");

    // Unknown version: /verdict still answers 200 (Argo), /compare says 404 and what exists.
    let (status, v) = get(&s, "/api/v1/verdict?service=checkout&baseline=v1&canary=v9");
    assert_eq!(status, 200);
    assert_eq!(v["verdict"], "inconclusive");
    assert!(v["reasons"][0].as_str().unwrap().contains("\"v9\""), "{v}");
    let (status, e) = get(&s, "/api/v1/compare?service=checkout&baseline=v1&canary=v9");
    assert_eq!(status, 404);
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("\"v9\"") && msg.contains("\"v2\" (4000 requests)"),
        "{msg}"
    );

    // Malformed requests: 400 with every problem named.
    let (status, e) = get(
        &s,
        "/api/v1/compare?baseline=v1&canary=v1&by=colour&from=yesterday",
    );
    assert_eq!(status, 400);
    let msg = e["error"].as_str().unwrap();
    for needle in [
        "`service` is required",
        "colour",
        "`from` must be an RFC 3339",
        "baseline and canary are the same",
    ] {
        assert!(msg.contains(needle), "{needle} not in {msg}");
    }
    let (status, _) = get(&s, "/api/v1/verdict?service=cart");
    assert_eq!(status, 400);
    let (status, e) = get(
        &s,
        "/api/v1/charts?service=checkout&baseline=v1&canary=v2&step_secs=10000000000",
    );
    assert_eq!(status, 400, "{e}");

    // A window that holds nothing: no data, inconclusive.
    let (status, c) = get(
        &s,
        "/api/v1/compare?service=checkout&baseline=v1&canary=v2&to=2000-01-01T00:00:00Z",
    );
    assert_eq!(status, 200);
    assert_eq!(c["verdict"]["decision"], "inconclusive");
    assert_eq!(c["metrics"][0]["classification"], "nodata");
    s.stop();

    // Offline, over the Parquet files the server flushed at shutdown.
    let out = Command::new(env!("CARGO_BIN_EXE_graylens"))
        .args([
            "compare",
            "--service",
            "checkout",
            "--baseline",
            "v1",
            "--canary",
            "v2",
            "--format",
            "json",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline["verdict"]["decision"], "fail");
    assert_eq!(offline["canary"]["requests"], 4000);
    let out = Command::new(env!("CARGO_BIN_EXE_graylens"))
        .args([
            "compare",
            "--service",
            "cart",
            "--baseline",
            "a",
            "--canary",
            "b",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("verdict: pass"),
        "{text}"
    );
}

/// Traces gateway → cart; the colored ones ("gray") spend 30 ms more in cart.
fn lane_traces(first: u64, n: u64, colored: bool) -> Vec<u8> {
    let start = now_ns() - 30_000_000_000;
    let lane = if colored { "gray" } else { "" };
    let mut gateway = Vec::new();
    let mut cart = Vec::new();
    for i in first..first + n {
        let t = start + i * 1_000_000;
        let cart_ms = if colored { 50 } else { 20 } + i % 7;
        let trace_id = [&[9u8; 8][..], &i.to_be_bytes()].concat();
        let attrs = if colored {
            vec![kv("traffic.lane", lane)]
        } else {
            vec![]
        };
        gateway.push(Span {
            trace_id: trace_id.clone(),
            span_id: (2 * i + 1).to_be_bytes().to_vec(),
            name: "GET /checkout".into(),
            kind: 2,
            start_time_unix_nano: t,
            end_time_unix_nano: t + (cart_ms + 5) * 1_000_000,
            attributes: attrs.clone(),
            ..Default::default()
        });
        cart.push(Span {
            trace_id,
            span_id: (2 * i + 2).to_be_bytes().to_vec(),
            parent_span_id: (2 * i + 1).to_be_bytes().to_vec(),
            name: "GET /cart".into(),
            kind: 2,
            start_time_unix_nano: t + 2_000_000,
            end_time_unix_nano: t + (cart_ms + 2) * 1_000_000,
            attributes: attrs,
            ..Default::default()
        });
    }
    let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", service), kv("service.version", "1")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![resource("gateway", gateway), resource("cart", cart)],
    }
    .encode_to_vec()
}

#[test]
fn colored_traces_are_compared_end_to_end_and_the_slow_hop_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    send(&s, lane_traces(0, 2000, false));
    send(&s, lane_traces(2000, 1000, true));
    s.wait_count("SELECT count(*) FROM spans", 6000);
    let (status, c) = get(
        &s,
        "/api/v1/compare?service=gateway&by=lane&baseline=&canary=gray",
    );
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["verdict"]["decision"], "fail", "{:#}", c["verdict"]);
    let lanes = &c["lanes"];
    assert_eq!(lanes["baseline"]["traces"], 2000);
    assert_eq!(lanes["canary"]["traces"], 1000);
    let top = &lanes["contributors"][0];
    assert_eq!(top["service"], "cart", "{lanes:#}");
    let delta = top["delta_ms_per_trace"].as_f64().unwrap();
    assert!((delta - 30.0).abs() < 1.0, "{lanes:#}");
    // The gateway's own time did not change.
    let gw = lanes["contributors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["service"] == "gateway")
        .unwrap();
    assert!(
        gw["delta_ms_per_trace"].as_f64().unwrap().abs() < 0.5,
        "{gw}"
    );
}
