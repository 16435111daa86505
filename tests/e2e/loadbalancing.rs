//! The OpenTelemetry Collector's `load_balancing` exporter in front of two
//! graylens nodes sharing a bucket (issue #14): a real Collector (built with
//! the Collector builder, contrib v0.161.0) runs
//! `deploy/examples/collector/loadbalancing.yaml` as the README shows it,
//! with a static resolver naming the two nodes instead of the k8s one.
//! Skipped, with the reason printed, without Go or the test virtualenv.

use crate::cluster::{node_with, settled, Moto};
use crate::collector::spawn;
use crate::gotools;
use crate::harness::Server;
use crate::traffic::{requests, Gen};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// service → (versions, spans) as `s` holds them.
fn per_service(s: &Server) -> BTreeMap<String, (i64, i64)> {
    s.rows("SELECT service_name, count(DISTINCT service_version), count(*) FROM spans GROUP BY 1")
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                (r[1].as_i64().unwrap(), r[2].as_i64().unwrap()),
            )
        })
        .collect()
}

#[test]
fn the_collector_sends_each_service_to_one_node_and_any_node_answers() {
    let why = "the load-balancing Collector test";
    let Some(moto) = Moto::start(why) else {
        return;
    };
    let Some(bin) = gotools::collector(why) else {
        return;
    };
    moto.create_bucket("balanced");
    let url = "s3://balanced/cluster";
    let dir = tempfile::tempdir().unwrap();
    // No flush for an hour: until a node stops, what it holds is what the
    // Collector sent it.
    let toml = "[store]\nflush_interval_secs = 3600\n";
    let a = node_with(&moto, &dir.path().join("a"), url, "node-a", toml);
    let b = node_with(&moto, &dir.path().join("b"), url, "node-b", toml);
    let log = dir.path().join("collector.log");
    let c = spawn(
        &bin,
        &[
            "deploy/examples/collector/loadbalancing.yaml",
            "tests/collector/loadbalancing-test.yaml",
        ],
        &[
            ("GRAYLENS_INGEST_TOKEN", "unused-without-auth".to_string()),
            ("TEST_QUEUE_DIR", dir.path().display().to_string()),
            (
                "TEST_NODE_A",
                a.grpc.trim_start_matches("http://").to_string(),
            ),
            (
                "TEST_NODE_B",
                b.grpc.trim_start_matches("http://").to_string(),
            ),
        ],
        &log,
    );

    // Sixteen services, baseline and canary of each, through the Collector.
    let services: Vec<String> = (0..16).map(|i| format!("svc-{i:02}")).collect();
    let client = reqwest::blocking::Client::new();
    let mut g = Gen(41);
    for _ in 0..2 {
        for svc in &services {
            for (version, p_err) in [("v1", 0.005), ("v2", 0.08)] {
                let r = client
                    .post(format!("{}/v1/traces", c.http))
                    .header("content-type", "application/x-protobuf")
                    .body(requests(&mut g, svc, version, 200, 20.0, p_err))
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200, "the Collector refused a batch");
            }
        }
    }
    let sent = 16 * 2 * 2 * 200;

    // Every span arrives, and each service, both versions, is on one node.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (on_a, on_b) = loop {
        let (on_a, on_b) = (per_service(&a), per_service(&b));
        let got: i64 = on_a.values().chain(on_b.values()).map(|v| v.1).sum();
        if got == sent {
            break (on_a, on_b);
        }
        assert!(got < sent, "{got} spans stored, {sent} sent");
        assert!(
            Instant::now() < deadline,
            "{got} of {sent} spans arrived\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for svc in &services {
        let held: Vec<_> = [&on_a, &on_b].iter().filter_map(|m| m.get(svc)).collect();
        assert_eq!(held, [&(2, 800)], "{svc}: A {on_a:?}, B {on_b:?}");
    }
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "both nodes get services: A {on_a:?}, B {on_b:?}"
    );

    // A stops (its rows go to the bucket): B, once it has listed them,
    // answers for A's services with all their requests.
    let svc = on_a.keys().next().unwrap().clone();
    a.stop();
    b.wait_count_for(
        &format!("SELECT count(*) FROM spans WHERE service_name = '{svc}'"),
        800,
        Duration::from_secs(30),
    );
    let cmp = settled(
        &b,
        &format!("/api/v1/compare?service={svc}&baseline=v1&canary=v2"),
    );
    for side in ["baseline", "canary"] {
        assert_eq!(cmp[side]["requests"], 400, "{side}: {cmp:#}");
    }
    b.wait_count_for("SELECT count(*) FROM spans", sent, Duration::from_secs(30));
    drop(c);
    b.stop();
}
