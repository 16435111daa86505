//! Time to act (issue #12): how long after the request that makes a
//! rollout's verdict `fail` its rollback webhook leaves. The figure is
//! printed (README, "Time to act"); the tests fail only if the action takes
//! far longer. With the default look interval (1 s), and with a minute
//! between ticks, which only the looks as data arrives can beat.

use crate::alerts::{post, wait_rollout};
use crate::harness::{now_ns, Server};
use crate::receiver::Receiver;
use crate::traffic::{requests_at, send, Gen};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn the_rollback_leaves_within_a_look_of_the_request_that_makes_it_fail() {
    // The default look interval (1 s).
    let took = time_to_act("");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn the_rollback_leaves_as_the_data_arrives_not_at_the_next_tick() {
    // The tick never comes within the test: the first look, the healthy
    // look and the failing look all happen on arrival.
    let took = time_to_act("interval_secs = 60\n");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// Registers a rollout, sends healthy then failing requests, and returns
/// how long after the failing request was sent the webhook arrived.
/// `alerts`: more lines of the `[alerts]` table.
fn time_to_act(alerts: &str) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(200);
    // Only the webhook target is allowed.
    let s = Server::start_with(
        &dir.path().join("data"),
        &format!("[alerts]\nallowed_targets = [\"http://127.0.0.1:\"]\n{alerts}"),
    );
    let (status, r) = post(
        &s,
        "/api/v1/rollouts",
        &json!({"service": "checkout", "baseline": "v1", "canary": "v2",
                "actions": [{"type": "webhook", "url": hook.url("/act"), "secret": "k"}]}),
    );
    assert_eq!(status, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_string();

    // A few healthy requests on both sides: judged, inconclusive.
    let mut g = Gen(5);
    let t = now_ns();
    send(
        &s,
        requests_at(&mut g, "checkout", "v1", 200, 20.0, 0.0, t, &[]),
    );
    send(
        &s,
        requests_at(&mut g, "checkout", "v2", 200, 20.0, 0.0, t, &[]),
    );
    let r = wait_rollout(&s, &id, "a look at the healthy requests", |r| {
        r["history"]
            .as_array()
            .and_then(|h| h.last())
            .is_some_and(|e| e["requests"]["canary"] == 200)
    });
    assert_ne!(r["phase"], "rolled_back", "{r:#}");
    assert!(hook.requests().is_empty());

    // The baseline's next requests, then the canary's, a third of them
    // errors: the canary's request makes the verdict fail.
    let t = now_ns();
    send(
        &s,
        requests_at(&mut g, "checkout", "v1", 2000, 20.0, 0.005, t, &[]),
    );
    let sent = Instant::now();
    send(
        &s,
        requests_at(&mut g, "checkout", "v2", 2000, 20.0, 0.3, t, &[]),
    );
    let deadline = sent + Duration::from_secs(30);
    let arrived = loop {
        if hook.requests().iter().any(|r| r.path == "/act") {
            break sent.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no rollback 30 s after the failing requests"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    eprintln!(
        "time to act ([alerts] {alerts:?}): the rollback webhook arrived {} ms after the request that made the verdict fail was sent",
        arrived.as_millis()
    );
    let r = wait_rollout(&s, &id, "rolled_back", |r| r["phase"] == "rolled_back");
    assert_eq!(
        r["history"].as_array().unwrap().last().unwrap()["decision"],
        "fail"
    );
    s.stop();
    arrived
}
