//! Flagger's webhooks end to end (`/api/v1/flagger/*`): `pre-rollout`,
//! `confirm-rollout`, `confirm-traffic-increase`, `confirm-promotion`,
//! `rollback` and `event` answer per Flagger's contract as the evidence
//! about a canary builds up.

use crate::alerts::{post, FAST};
use crate::harness::{now_ns, Server};
use crate::traffic::{get, requests_at, send, Gen};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn flagger(s: &Server, hook: &str, name: &str, checksum: &str) -> (u16, Value) {
    post(
        s,
        &format!("/api/v1/flagger/{hook}"),
        &json!({"name": name, "namespace": "test", "phase": "Progressing", "checksum": checksum, "metadata": {"k": "v"}}),
    )
}

fn wait_hook(s: &Server, hook: &str, name: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = flagger(s, hook, name, "c1");
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{hook} for {name}: still {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn flagger_hooks_answer_per_their_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(&dir.path().join("data"), FAST);
    // Before any evidence: proceed, but neither roll back nor promote.
    for (hook, want) in [
        ("confirm-rollout", 200),
        ("pre-rollout", 200),
        ("rollout", 200),
        ("confirm-traffic-increase", 200),
        ("confirm-promotion", 403),
        ("rollback", 403),
        ("event", 200),
    ] {
        for name in ["podinfo", "frontend"] {
            let (status, body) = flagger(&s, hook, name, "c1");
            assert_eq!(status, want, "{hook}: {body}");
        }
    }
    let (status, _) = flagger(&s, "rolback", "podinfo", "c1");
    assert_eq!(status, 404);
    let (status, _) = post(&s, "/api/v1/flagger/rollout", &json!({"namespace": "test"}));
    assert_eq!(status, 400);

    // podinfo's canary is bad; frontend's is as good as its primary, with
    // enough requests (and no errors) for its intervals to earn a pass.
    let mut g = Gen(11);
    let dep = |d: &'static str| [("k8s.namespace.name", "test"), ("k8s.deployment.name", d)];
    for _ in 0..4 {
        let t = now_ns();
        send(
            &s,
            requests_at(
                &mut g,
                "podinfo",
                "6.0.0",
                1000,
                20.0,
                0.005,
                t,
                &dep("podinfo-primary"),
            ),
        );
        send(
            &s,
            requests_at(
                &mut g,
                "podinfo",
                "6.1.0",
                1000,
                32.0,
                0.06,
                t,
                &dep("podinfo"),
            ),
        );
        send(
            &s,
            requests_at(
                &mut g,
                "frontend",
                "2.0.0",
                2500,
                15.0,
                0.0,
                t,
                &dep("frontend-primary"),
            ),
        );
        send(
            &s,
            requests_at(
                &mut g,
                "frontend",
                "2.1.0",
                2500,
                15.0,
                0.0,
                t,
                &dep("frontend"),
            ),
        );
    }
    wait_hook(&s, "rollback", "podinfo", 200);
    for (hook, want) in [
        ("rollout", 403),
        ("confirm-traffic-increase", 403),
        ("confirm-promotion", 403),
        ("post-rollout", 200),
        ("rollback", 200),
    ] {
        assert_eq!(
            flagger(&s, hook, "podinfo", "c1").0,
            want,
            "{hook} after failure"
        );
    }
    wait_hook(&s, "confirm-promotion", "frontend", 200);
    assert_eq!(flagger(&s, "rollback", "frontend", "c1").0, 403);
    assert_eq!(flagger(&s, "rollout", "frontend", "c1").0, 200);

    // Versions were found from the deployments; every call is on the rollout.
    let (_, list) = get(&s, "/api/v1/rollouts");
    let podinfo = list["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["spec"]["flagger"]["name"] == "podinfo")
        .unwrap()
        .clone();
    assert_eq!(podinfo["origin"], "flagger");
    let last = podinfo["history"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (
            last["service"].as_str(),
            last["baseline"].as_str(),
            last["canary"].as_str()
        ),
        (Some("podinfo"), Some("6.0.0"), Some("6.1.0"))
    );
    let calls = podinfo["hook_calls"].as_array().unwrap();
    assert!(
        calls
            .iter()
            .any(|c| c["hook"] == "rollback" && c["status"] == 200),
        "{calls:#?}"
    );
    assert!(calls
        .iter()
        .any(|c| c["hook"] == "event" && c["checksum"] == "c1"));

    // A new revision of the canary starts over: no rollback for it yet.
    let (status, body) = flagger(&s, "rollback", "podinfo", "c2");
    assert_eq!(status, 403, "{body}");
    let (_, r) = get(
        &s,
        &format!("/api/v1/rollouts/{}", podinfo["id"].as_str().unwrap()),
    );
    assert_eq!(r["phase"], "waiting_for_data", "{r:#}");
    s.stop();
}
