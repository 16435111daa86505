//! The OpenTelemetry JS SDK exporters (gRPC, HTTP protobuf, HTTP JSON)
//! against graylens. `.ci/run` installs them (`npm ci` in `tests/node`) and
//! sets `GRAYLENS_TEST_NODE`; without it this test says so and does nothing.

use crate::harness::{run_client, Server};
use serde_json::json;

#[test]
fn node_sdk_grpc_http_proto_and_json() {
    let Ok(node) = std::env::var("GRAYLENS_TEST_NODE") else {
        eprintln!("GRAYLENS_TEST_NODE is not set: skipping the Node SDK test (.ci/run sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/send.mjs");
    run_client(&node, &[script, &s.grpc, &s.otlp_http]);
    s.wait_count(
        "SELECT count(*) FROM spans WHERE service_name = 'js-cart'",
        120,
    );
    let rows = s.rows(
        "SELECT service_version, rollout_role, count(*), min(http_status_code) FROM spans \
         WHERE service_name = 'js-cart' AND http_route = '/cart' GROUP BY 1, 2 ORDER BY 1",
    );
    assert_eq!(
        rows,
        vec![
            vec![json!("4.1.0"), json!("baseline"), json!(60), json!(200)],
            vec![json!("4.2.0"), json!("canary"), json!(60), json!(200)],
        ]
    );
    s.stop();
}
