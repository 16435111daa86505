//! Security (issue #10): bearer tokens with scopes on OTLP/HTTP, OTLP/gRPC
//! and every API route, token rotation, Flagger's `metadata.token`, file
//! paths refused in API-registered actions, and the refusal to listen beyond
//! loopback with nobody authenticated.

use crate::harness::{run_client_env, Server};
use crate::traffic::{requests, Gen};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const INGEST: &str = "ingest-7f3a9c";
const READ: &str = "read-51b2e8";
const OPS: &str = "ops-c0ffee";

fn config(dir: &Path) -> String {
    for (f, t) in [("ingest", INGEST), ("read", READ), ("ops", OPS)] {
        std::fs::write(dir.join(f), format!("{t}\n")).unwrap();
    }
    let tok = |name: &str, scopes: &str| {
        format!(
            "[[auth.tokens]]\nname = \"{name}\"\ntoken_file = \"{}\"\nscopes = [{scopes}]\n",
            dir.join(name).display()
        )
    };
    [
        "[alerts]\nallowed_targets = [\"http://127.0.0.1:9/\"]\n".to_string(),
        tok("ingest", "\"ingest\""),
        tok("read", "\"read\""),
        tok("ops", "\"read\", \"write\""),
    ]
    .concat()
}

fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::blocking::Response) {
    let c = reqwest::blocking::Client::new();
    let mut r = match method {
        "GET" => c.get(url),
        "DELETE" => c.delete(url),
        _ => c.post(url),
    };
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp)
}

fn otlp_http(s: &Server, token: Option<&str>) -> (u16, reqwest::blocking::Response) {
    let mut r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", s.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(requests(&mut Gen(1), "svc", "v1", 5, 10.0, 0.0));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp)
}

#[test]
fn every_endpoint_answers_each_credential_with_the_exact_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(&dir.path().join("data"), &config(dir.path()));
    s.token = Some(READ.into());

    // OTLP/HTTP: 401 with WWW-Authenticate and a google.rpc.Status body, 403, 200.
    let (status, r) = otlp_http(&s, None);
    assert_eq!(status, 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let body = r.bytes().unwrap();
    // google.rpc.Status: field 1 = code (16, UNAUTHENTICATED).
    assert_eq!(&body[..2], &[0x08, 16], "{body:?}");
    assert_eq!(otlp_http(&s, Some("not-a-token")).0, 401);
    assert_eq!(otlp_http(&s, Some(READ)).0, 403);
    assert_eq!(otlp_http(&s, Some(OPS)).0, 403);
    assert_eq!(otlp_http(&s, Some(INGEST)).0, 200);
    s.wait_count("SELECT count(*) FROM spans", 5);

    // OTLP/gRPC: UNAUTHENTICATED, PERMISSION_DENIED, OK.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let grpc = |token: Option<&str>| {
        rt.block_on(async {
            let mut c = TraceServiceClient::connect(s.grpc.clone()).await.unwrap();
            let msg = ExportTraceServiceRequest::decode(
                requests(&mut Gen(2), "svc", "v2", 3, 10.0, 0.0).as_slice(),
            )
            .unwrap();
            let mut req = tonic::Request::new(msg);
            if let Some(t) = token {
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {t}").parse().unwrap());
            }
            c.export(req).await.map(|_| ()).map_err(|e| e.code())
        })
    };
    assert_eq!(grpc(None), Err(tonic::Code::Unauthenticated));
    assert_eq!(grpc(Some("nope")), Err(tonic::Code::Unauthenticated));
    assert_eq!(grpc(Some(READ)), Err(tonic::Code::PermissionDenied));
    assert_eq!(grpc(Some(INGEST)), Ok(()));
    s.wait_count("SELECT count(*) FROM spans", 8);

    // The API: each route with no token, an unknown one, and each scope.
    let api = |p: &str| format!("{}{p}", s.api);
    let reads: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", api("/api/v1/services"), None),
        (
            "GET",
            api("/api/v1/compare?service=svc&baseline=v1&canary=v2"),
            None,
        ),
        (
            "GET",
            api("/api/v1/verdict?service=svc&baseline=v1&canary=v2"),
            None,
        ),
        (
            "GET",
            api("/api/v1/charts?service=svc&baseline=v1&canary=v2"),
            None,
        ),
        ("GET", api("/api/v1/rollouts"), None),
        ("GET", api("/api/v1/candidates"), None),
        ("GET", api("/api/v1/query?query=vector(1)"), None),
        ("GET", api("/metrics"), None),
        ("POST", api("/api/v1/sql"), Some(json!({"sql": "SELECT 1"}))),
    ];
    for (m, url, body) in &reads {
        assert_eq!(call(m, url, None, body.clone()).0, 401, "{m} {url}");
        assert_eq!(call(m, url, Some("nope"), body.clone()).0, 401, "{m} {url}");
        assert_eq!(call(m, url, Some(INGEST), body.clone()).0, 403, "{m} {url}");
        assert_eq!(call(m, url, Some(READ), body.clone()).0, 200, "{m} {url}");
        assert_eq!(call(m, url, Some(OPS), body.clone()).0, 200, "{m} {url}");
    }
    let rollout = json!({"service": "svc", "baseline": "v1", "canary": "v2",
        "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "x"}]});
    let create = api("/api/v1/rollouts");
    for (token, want) in [
        (None, 401),
        (Some("nope"), 401),
        (Some(INGEST), 403),
        (Some(READ), 403),
    ] {
        assert_eq!(
            call("POST", &create, token, Some(rollout.clone())).0,
            want,
            "{token:?}"
        );
    }
    // Targets: only under alerts.allowed_targets, never the metadata address.
    for url in [
        "http://127.0.0.1:10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/hook",
    ] {
        let mut other = rollout.clone();
        other["actions"][0]["url"] = json!(url);
        let (status, r) = call("POST", &create, Some(OPS), Some(other));
        assert_eq!(status, 400, "{url}");
        let err = r.json::<Value>().unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(err.contains("allowed_targets"), "{url}: {err}");
    }
    let (status, r) = call("POST", &create, Some(OPS), Some(rollout.clone()));
    assert_eq!(status, 201);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let one = api(&format!("/api/v1/rollouts/{id}"));
    assert_eq!(call("GET", &one, Some(READ), None).0, 200);
    assert_eq!(call("DELETE", &one, Some(READ), None).0, 403);
    assert_eq!(call("DELETE", &one, None, None).0, 401);
    assert_eq!(call("DELETE", &one, Some(OPS), None).0, 200);

    // Flagger: a header, or metadata.token in the body (Flagger cannot set headers).
    let hook = api("/api/v1/flagger/confirm-rollout");
    let body = |token: Option<&str>| {
        let mut b = json!({"name": "svc", "namespace": "test", "metadata": {"k": "v"}});
        if let Some(t) = token {
            b["metadata"]["token"] = json!(t);
        }
        b
    };
    assert_eq!(call("POST", &hook, None, Some(body(None))).0, 401);
    assert_eq!(call("POST", &hook, None, Some(body(Some(READ)))).0, 403);
    assert_eq!(call("POST", &hook, None, Some(body(Some("nope")))).0, 401);
    assert_eq!(call("POST", &hook, Some(OPS), Some(body(None))).0, 200);
    assert_eq!(call("POST", &hook, None, Some(body(Some(OPS)))).0, 200);
    // Bounded input: an oversized canary name is refused, not stored.
    let mut long = body(None);
    long["name"] = json!("x".repeat(300));
    assert_eq!(call("POST", &hook, Some(OPS), Some(long)).0, 400);
    // The token given in the body is never kept or shown.
    let (_, r) = call("GET", &api("/api/v1/rollouts"), Some(READ), None);
    let shown = r.text().unwrap();
    assert!(!shown.contains(OPS), "token shown: {shown}");
    // ...but the name of the token that created the Flagger rollout, and
    // that called each hook, is.
    let listed: Value = serde_json::from_str(&shown).unwrap();
    let flagger = listed["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["origin"] == "flagger")
        .unwrap_or_else(|| panic!("no Flagger rollout in {listed}"));
    assert_eq!(flagger["created_by"], "ops", "{flagger}");
    let callers: Vec<&Value> = flagger["hook_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["token"])
        .collect();
    assert!(
        !callers.is_empty() && callers.iter().all(|t| *t == "ops"),
        "{callers:?}"
    );

    // Prometheus's query as its Go client sends it first (Argo Rollouts'
    // provider): a form POST, which a read token may make.
    let form = |token: Option<&str>| {
        let mut r = reqwest::blocking::Client::new()
            .post(api("/api/v1/query"))
            .form(&[("query", "vector(1)"), ("time", "1700000000")]);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap()
    };
    assert_eq!(form(None).status().as_u16(), 401);
    let r = form(Some(READ));
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");

    // Open: health and the UI's pages.
    assert_eq!(call("GET", &api("/api/v1/health"), None, None).0, 200);
    assert_eq!(call("GET", &api("/"), None, None).0, 200);

    // Rotation: rewrite the ingest token's file; the old token stops
    // working and the new one works, without a restart.
    std::fs::write(dir.path().join("ingest"), "rotated-ingest-token\n").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(otlp_http(&s, Some(INGEST)).0, 401);
    assert_eq!(otlp_http(&s, Some("rotated-ingest-token")).0, 200);
    assert!(s.metric_with_token("graylens_requests_refused_total{signal=\"traces\",transport=\"http\",reason=\"unauthorized\"}", READ) >= 5.0);
    s.stop();
}

/// The Python SDK's exporters (gRPC and HTTP) authenticate through the
/// standard `OTEL_EXPORTER_OTLP_HEADERS`.
#[test]
fn the_python_sdk_sends_its_token_through_otel_exporter_otlp_headers() {
    let Ok(python) = std::env::var("GRAYLENS_TEST_PYTHON") else {
        eprintln!(
            "GRAYLENS_TEST_PYTHON is not set: skipping the Python SDK auth test (.ci/run sets it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(&dir.path().join("data"), &config(dir.path()));
    s.token = Some(READ.into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send.py");
    let headers = format!("authorization=Bearer%20{INGEST}");
    run_client_env(
        &python,
        &[script, "--grpc", &s.grpc, "--http", &s.otlp_http],
        &[("OTEL_EXPORTER_OTLP_HEADERS", &headers)],
    );
    s.wait_count(
        "SELECT count(*) FROM spans WHERE service_name = 'py-checkout'",
        180,
    );
    s.wait_count(
        "SELECT count(*) FROM logs WHERE service_name = 'py-checkout'",
        10,
    );
    s.stop();
}

/// With no tokens, graylens will not listen beyond loopback unless told to.
#[test]
fn no_tokens_and_a_non_loopback_address_refuse_to_start_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    let run = |extra: &str| {
        std::fs::write(&cfg, extra).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_graylens"))
            .args([
                "serve",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
            ])
            .args(["--http-addr", "0.0.0.0:0", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = run("").wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http.addr = 0.0.0.0:0 is not a loopback address")
            && err.contains("Securing graylens")
            && err.contains("auth.allow_unauthenticated"),
        "{err}"
    );
    // The override: starts (with a warning), then stops cleanly.
    let mut child = run("[auth]\nallow_unauthenticated = true\n");
    // The reader stays open until the process exits: a closed stdout would
    // fail its last writes.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.starts_with("graylens ready"), "{line}");
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
    assert!(status.success(), "{status}: {err}");
    assert!(
        err.contains("auth.allow_unauthenticated"),
        "no warning at start: {err}"
    );
    drop(out);
}

/// A client that opens a connection and never finishes its request's headers
/// (slowloris) is disconnected after the header-read timeout on both HTTP
/// listeners, while a well-behaved client is served.
#[test]
fn connections_that_never_finish_their_headers_are_closed() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &dir.path().join("data"),
        "[otlp]\nheader_read_timeout_secs = 1\n[http]\nheader_read_timeout_secs = 1\n",
    );
    let host = |a: &str| {
        let a = a.trim_start_matches("http://");
        a.split('/').next().unwrap_or(a).to_string()
    };
    for (addr, path) in [
        (host(&s.otlp_http), "/v1/traces"),
        (host(&s.api), "/api/v1/health"),
    ] {
        let addr = addr.as_str();
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n").unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        // The server answers (408) or just closes: either way the read ends.
        let ended = conn.read_to_end(&mut buf);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(15),
            "{addr}: ended after {waited:?} with {ended:?}"
        );
        let answer = String::from_utf8_lossy(&buf);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{addr}: {answer}"
        );
    }
    // A kept-alive connection that goes quiet after a request is closed too.
    let mut conn = std::net::TcpStream::connect(host(&s.api)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(conn, "GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    conn.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let ended = conn.read_to_end(&mut rest);
    let idle = started.elapsed();
    assert!(
        idle < Duration::from_secs(15),
        "idle keep-alive connection still open after {idle:?}: {ended:?}"
    );
    // A complete request is still served.
    let health = reqwest::blocking::get(format!("http://{}/api/v1/health", host(&s.api))).unwrap();
    assert_eq!(health.status(), 200);
    s.stop();
}

/// Without tokens on loopback (the default), the API answers only requests
/// addressed to localhost or an IP address: a web page whose DNS name was
/// rebound to 127.0.0.1 cannot read data or change rollouts.
#[test]
fn without_tokens_the_api_answers_only_requests_for_local_names() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let addr = s.api.trim_start_matches("http://").to_string();
    let status = |host: &str, path: &str| -> u16 {
        let mut c = std::net::TcpStream::connect(addr.as_str()).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(status("rebound.example:4319", "/api/v1/rollouts"), 403);
    assert_eq!(status("rebound.example", "/metrics"), 403);
    assert_eq!(status("rebound.example", "/api/v1/health"), 200, "probes");
    assert_eq!(status("localhost:4319", "/api/v1/rollouts"), 200);
    assert_eq!(status(&addr, "/api/v1/rollouts"), 200);
    s.stop();
}
