//! The Python OpenTelemetry SDK exporters (gRPC and HTTP) against graylens.
//! `.ci/run` installs them into a virtualenv and sets `GRAYLENS_TEST_PYTHON`
//! to its interpreter; without it this test says so and does nothing.

use crate::harness::{run_client, Server};

#[test]
fn python_sdk_grpc_and_http() {
    let Ok(python) = std::env::var("GRAYLENS_TEST_PYTHON") else {
        eprintln!(
            "GRAYLENS_TEST_PYTHON is not set: skipping the Python SDK test (.ci/run sets it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send.py");
    run_client(
        &python,
        &[script, "--grpc", &s.grpc, "--http", &s.otlp_http],
    );
    s.wait_count(
        "SELECT count(*) FROM spans WHERE service_name = 'py-checkout'",
        180,
    );
    let rows = s.rows(
        "SELECT service_version, rollout_role, count(*) FROM spans WHERE service_name = 'py-checkout' GROUP BY 1, 2 ORDER BY 1",
    );
    assert_eq!(
        rows,
        vec![
            vec![
                serde_json::json!("3.1.0"),
                serde_json::json!("baseline"),
                serde_json::json!(100)
            ],
            vec![
                serde_json::json!("3.2.0"),
                serde_json::json!("canary"),
                serde_json::json!(80)
            ],
        ]
    );
    s.wait_count(
        "SELECT count(*) FROM logs WHERE service_name = 'py-checkout'",
        10,
    );
    // Cumulative counter: every export (flush, then shutdown) repeats the total of 3.
    s.wait_count(
        "SELECT CAST(max(value) AS BIGINT) FROM metrics WHERE service_name = 'py-checkout' AND metric_name = 'py.orders' \
         AND metric_type = 'sum' AND is_monotonic",
        3,
    );
    s.stop();
}
