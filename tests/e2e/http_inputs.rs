//! Hand-written OTLP/HTTP requests: the JSON mapping, gzip, and every bad
//! input with its exact status; the server stays up and keeps what it took.

use crate::harness::{now_ns, Server};
use flate2::{write::GzEncoder, Compression};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use std::io::Write;

fn post(url: &str, ct: &str, enc: Option<&str>, body: Vec<u8>) -> Response {
    let mut r = Client::new()
        .post(url)
        .header("content-type", ct)
        .body(body);
    if let Some(e) = enc {
        r = r.header("content-encoding", e);
    }
    r.send().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Shaped like opentelemetry-proto's examples/trace.json, with upper-case
/// hex ids, numeric and string int64s, and an unknown field.
fn trace_example(t: u64) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "my.service"}},
            {"key": "service.version", "value": {"stringValue": "2.0.0"}},
            {"key": "k8s.pod.label.role", "value": {"stringValue": "canary"}},
            {"key": "k8s.pod.label.team", "value": {"stringValue": "payments"}}]},
        "scopeSpans": [{
            "scope": {"name": "my.library", "version": "1.0.0",
                      "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
            "spans": [{
                "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
                "parentSpanId": "EEE19B7EC3C1B173", "name": "I'm a server span",
                "startTimeUnixNano": t.to_string(), "endTimeUnixNano": t + 1_000_000_000,
                "kind": 2, "someFutureField": {"x": 1},
                "attributes": [
                    {"key": "my.span.attr", "value": {"stringValue": "some value"}},
                    {"key": "http.response.status_code", "value": {"intValue": "503"}},
                    {"key": "traffic.lane", "value": {"stringValue": "gray"}}],
                "status": {"code": 2, "message": "boom"}
            }]
        }]
    }]})
}

fn metrics_example(t: u64) -> Value {
    let res = json!({"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}},
                                    {"key": "service.version", "value": {"stringValue": "2.0.0"}}]});
    let ts = t.to_string();
    json!({"resourceMetrics": [{"resource": res, "scopeMetrics": [{"scope": {"name": "my.library"}, "metrics": [
        {"name": "my.counter", "unit": "1", "sum": {"aggregationTemporality": 1, "isMonotonic": true,
            "dataPoints": [{"asDouble": 5, "startTimeUnixNano": ts, "timeUnixNano": ts,
                            "attributes": [{"key": "my.counter.attr", "value": {"stringValue": "some value"}}]}]}},
        {"name": "my.gauge", "unit": "1", "gauge": {"dataPoints": [{"asInt": "10", "timeUnixNano": ts}]}},
        {"name": "my.histogram", "unit": "ms", "histogram": {"aggregationTemporality": 1, "dataPoints": [{
            "startTimeUnixNano": ts, "timeUnixNano": ts, "count": 2, "sum": 2, "bucketCounts": [1, 1],
            "explicitBounds": [1], "min": 0, "max": 2}]}},
        {"name": "my.exponential.histogram", "unit": "ms", "exponentialHistogram": {"aggregationTemporality": 1,
            "dataPoints": [{"startTimeUnixNano": ts, "timeUnixNano": ts, "count": 3, "sum": 10, "scale": 0,
                            "zeroCount": 1, "positive": {"offset": 1, "bucketCounts": [0, 2]}, "min": 0, "max": 5}]}},
        {"name": "my.summary", "unit": "ms", "summary": {"dataPoints": [{"timeUnixNano": ts, "count": "4", "sum": 8.5,
            "quantileValues": [{"quantile": 0.5, "value": 2}, {"quantile": 0.99, "value": 3.5}]}]}},
        {"name": "my.gauge", "gauge": {"dataPoints": [{"asInt": "1"}]}}
    ]}]}]})
}

fn logs_example(t: u64) -> Value {
    json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "my.service"}},
        {"key": "rollout.role", "value": {"stringValue": "stable"}}]},
    "scopeLogs": [{"scope": {"name": "my.library"}, "logRecords": [
        {"timeUnixNano": t.to_string(), "observedTimeUnixNano": t.to_string(), "severityNumber": 17,
         "severityText": "Error", "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
         "body": {"stringValue": "Example log record"},
         "attributes": [{"key": "bool.attribute", "value": {"boolValue": true}},
                        {"key": "int.attribute", "value": {"intValue": "10"}}]},
        {"severityNumber": 9, "body": {"stringValue": "no timestamps at all"}},
        {"traceId": "abcd", "body": {"stringValue": "bad trace id"}}
    ]}]}]})
}

#[test]
fn json_mapping_gzip_and_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &dir.path().join("data"),
        "[otlp]\nmax_message_bytes = 100000\n",
    );
    let t = now_ns();
    let traces = format!("{}/v1/traces", s.otlp_http);

    // The server runs without transparent huge pages (src/main.rs
    // `no_huge_pages`); kernels before 5.0 do not report the flag.
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    match status.lines().find(|l| l.starts_with("THP_enabled:")) {
        Some(line) => assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}"),
        None => eprintln!("skipped the huge-pages check: this kernel does not report THP_enabled"),
    }

    // JSON trace, charset parameter tolerated; full success is `{}`.
    let r = post(
        &traces,
        "application/json; charset=utf-8",
        None,
        trace_example(t).to_string().into_bytes(),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().unwrap(), json!({}));
    s.wait_count("SELECT count(*) FROM spans", 1);
    let row = &s.rows(
        "SELECT trace_id, span_id, parent_span_id, service_name, service_version, rollout_role, traffic_lane, \
         span_kind, status_code, is_error, http_status_code, duration_ns, attributes['my.span.attr'] \
         FROM spans WHERE service_name = 'my.service'",
    )[0];
    assert_eq!(
        row,
        &vec![
            json!("5b8efff798038103d269b633813fc60c"),
            json!("eee19b7ec3c1b174"),
            json!("eee19b7ec3c1b173"),
            json!("my.service"),
            json!("2.0.0"),
            json!("canary"),
            json!("gray"),
            json!(2),
            json!(2),
            json!(true),
            json!(503),
            json!(1_000_000_000),
            json!("some value"),
        ]
    );
    // A Kubernetes label on the resource is filterable.
    assert_eq!(s.count("SELECT count(*) FROM spans WHERE resource_attributes['k8s.pod.label.team'] = 'payments'"), 1);

    // The same trace, gzip-compressed protobuf; the response is protobuf.
    let pb_req: ExportTraceServiceRequest = serde_json::from_value(trace_example(t)).unwrap();
    let r = post(
        &traces,
        "application/x-protobuf",
        Some("gzip"),
        gzip(&pb_req.encode_to_vec()),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let resp = ExportTraceServiceResponse::decode(r.bytes().unwrap()).unwrap();
    assert!(resp.partial_success.is_none());
    s.wait_count("SELECT count(*) FROM spans", 2);

    // Metrics of every type; the point without a timestamp is rejected with a reason.
    let r = post(
        &format!("{}/v1/metrics", s.otlp_http),
        "application/json",
        None,
        metrics_example(t).to_string().into_bytes(),
    );
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    assert_eq!(body["partialSuccess"]["rejectedDataPoints"], json!("1"));
    assert!(body["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("missing time_unix_nano"));
    // Acknowledged means queued: queryable within a second, not at once.
    s.wait_count("SELECT count(*) FROM metrics", 5);
    let m = s.rows("SELECT metric_type, value, count, sum, bucket_counts, exp_positive_counts, quantile_values \
                    FROM metrics ORDER BY metric_name");
    assert_eq!(m.len(), 5);
    assert_eq!(m[0][0], json!("sum"));
    assert_eq!(m[0][1], json!(5.0));
    assert_eq!(m[1][0], json!("exponential_histogram"));
    assert_eq!(m[1][5], json!("[0, 2]"));
    assert_eq!(m[2][0], json!("gauge"));
    assert_eq!(m[2][1], json!(10.0));
    assert_eq!(m[3][0], json!("histogram"));
    assert_eq!(m[3][4], json!("[1, 1]"));
    assert_eq!(m[4][0], json!("summary"));
    assert_eq!(m[4][6], json!("[2.0, 3.5]"));

    // Logs: a record without timestamps is kept; a bad trace id is rejected.
    let r = post(
        &format!("{}/v1/logs", s.otlp_http),
        "application/json",
        None,
        logs_example(t).to_string().into_bytes(),
    );
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    assert_eq!(body["partialSuccess"]["rejectedLogRecords"], json!("1"));
    s.wait_count("SELECT count(*) FROM logs", 2);
    assert_eq!(
        s.count("SELECT count(*) FROM logs WHERE rollout_role = 'baseline'"),
        2
    );
    assert_eq!(s.count("SELECT count(*) FROM logs WHERE severity_number >= 17 AND attributes['int.attribute'] = '10'"), 1);

    // An empty request is a success.
    let r = post(&traces, "application/x-protobuf", None, Vec::new());
    assert_eq!(r.status(), 200);
    let r = post(&traces, "application/json", None, b"{}".to_vec());
    assert_eq!(r.status(), 200);

    // Undecodable bodies: 400 with a google.rpc.Status in the request's encoding.
    let r = post(
        &traces,
        "application/x-protobuf",
        None,
        vec![0xff, 0xff, 0xff, 0x01],
    );
    assert_eq!(r.status(), 400);
    let st = decode_status(&r.bytes().unwrap());
    assert_eq!(st.0, 3);
    assert!(st.1.contains("invalid protobuf"), "{}", st.1);
    let r = post(
        &traces,
        "application/json",
        None,
        b"{\"resourceSpans\": [".to_vec(),
    );
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert_eq!(v["code"], json!(3));
    assert!(v["message"].as_str().unwrap().contains("invalid OTLP/JSON"));
    let r = post(
        &traces,
        "application/json",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    );
    assert_eq!(r.status(), 400);

    // Wrong content type, encoding and method.
    assert_eq!(
        post(&traces, "text/plain", None, b"hi".to_vec()).status(),
        415
    );
    assert_eq!(
        post(&traces, "application/json", Some("br"), b"{}".to_vec()).status(),
        415
    );
    assert_eq!(Client::new().get(&traces).send().unwrap().status(), 405);

    // Too large: plain, and a gzip bomb that inflates past the limit.
    assert_eq!(
        post(&traces, "application/json", None, vec![b' '; 200_000]).status(),
        413
    );
    let bomb = gzip(&vec![b' '; 50_000_000]);
    assert!(bomb.len() < 100_000);
    let r = post(&traces, "application/json", Some("gzip"), bomb);
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().unwrap()["code"], json!(8));

    // Bad SQL is a 400 with the engine's message.
    let (status, body) = s.sql_raw("SELECT nope FROM spans");
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("nope"));

    // Alive, and nothing accepted was lost.
    assert!(s.healthy());
    assert_eq!(s.count("SELECT count(*) FROM spans"), 2);
    s.stop();
}

fn decode_status(b: &[u8]) -> (i32, String) {
    #[derive(Clone, PartialEq, Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let s = Status::decode(b).unwrap();
    (s.code, s.message)
}
