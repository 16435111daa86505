//! The alert engine end to end: rollouts registered through the API or the
//! config, judged on OTLP traffic, acting through real HTTP receivers on
//! 127.0.0.1 (a webhook receiver, a fake Kubernetes API for Argo Rollouts),
//! and the Prometheus query shape; Flagger's webhooks are in `flagger.rs`.

use crate::harness::{now_ns, Server};
use crate::receiver::{Received, Receiver};
use crate::traffic::{get, requests_at, send, Gen};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::path::Path;
use std::time::{Duration, Instant};

/// Fast looks and retries, so the tests take seconds.
pub const FAST: &str =
    "[alerts]\ninterval_secs = 0.5\nretry_initial_secs = 0.2\nretry_max_secs = 1.0\nallowed_targets = [\"http://127.0.0.1:\"]\n";

pub fn post(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}{path}", s.api))
        .json(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn delete(s: &Server, path: &str) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .delete(format!("{}{path}", s.api))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

/// Polls rollout `id` until `pred` holds.
pub fn wait_rollout(s: &Server, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, r) = get(s, &format!("/api/v1/rollouts/{id}"));
        assert_eq!(status, 200, "{r}");
        if pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "rollout {id}: timed out waiting for {what}: {r:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Good baseline and bad canary (slower, 6% errors) of `service`, timestamped now.
fn bad_canary(s: &Server, g: &mut Gen, service: &str, extra: &[(&str, &str)], versions: [&str; 2]) {
    for _ in 0..4 {
        let t = now_ns();
        send(
            s,
            requests_at(g, service, versions[0], 1000, 20.0, 0.005, t, extra),
        );
        send(
            s,
            requests_at(g, service, versions[1], 1000, 32.0, 0.06, t, extra),
        );
    }
}

fn signature_ok(secret: &str, r: &Received) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&r.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    r.header("x-graylens-signature") == want
}

#[test]
fn bad_canary_is_rolled_back_once_and_an_aa_pair_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(200);
    let s = Server::start_with(&dir.path().join("data"), FAST);

    // Every problem of a bad registration at once.
    let (status, e) = post(
        &s,
        "/api/v1/rollouts",
        &json!({"service": "", "baseline": "v1", "canary": "v1", "policy": "nope",
                "actions": [{"type": "webhook", "url": "ftp://x", "secret": ""}]}),
    );
    assert_eq!(status, 400, "{e}");
    let msg = e["error"].as_str().unwrap();
    for part in [
        "`service` is required",
        "same",
        "ftp",
        "secret",
        "unknown policy \"nope\"",
    ] {
        assert!(msg.contains(part), "{part} missing from {msg}");
    }
    let (status, _) = post(
        &s,
        "/api/v1/rollouts",
        &json!({"service": "a", "canary": 3}),
    );
    assert_eq!(status, 400);

    let webhook =
        |path: &str| json!([{"type": "webhook", "url": hook.url(path), "secret": "s3cret"}]);
    let (status, bad) = post(
        &s,
        "/api/v1/rollouts",
        &json!({"service": "checkout", "baseline": "v1", "canary": "v2", "actions": webhook("/bad")}),
    );
    assert_eq!(status, 201, "{bad}");
    assert!(!bad.to_string().contains("s3cret"), "secret shown: {bad}");
    let bad = bad["id"].as_str().unwrap().to_string();
    let (status, aa) = post(
        &s,
        "/api/v1/rollouts",
        &json!({"service": "cart", "baseline": "a", "canary": "b", "by": "version", "policy": "default", "actions": webhook("/aa")}),
    );
    assert_eq!(status, 201, "{aa}");
    let aa = aa["id"].as_str().unwrap().to_string();
    let (_, list) = get(&s, "/api/v1/rollouts");
    assert_eq!(list["rollouts"].as_array().unwrap().len(), 2);

    let mut g = Gen(7);
    bad_canary(&s, &mut g, "checkout", &[], ["v1", "v2"]);
    // The A/A pair: enough requests (and no errors) for every interval to
    // exclude its pass margin, so the pass is earned.
    for _ in 0..4 {
        let t = now_ns();
        send(
            &s,
            requests_at(&mut g, "cart", "a", 2500, 15.0, 0.0, t, &[]),
        );
        send(
            &s,
            requests_at(&mut g, "cart", "b", 2500, 15.0, 0.0, t, &[]),
        );
    }

    // Records that name no role get the one of their version in a watched
    // rollout. Judged as the data arrives, the bad canary may be rolled back
    // before its last requests are stored; a rolled-back rollout is no
    // longer watched, so those name no role ("unknown"), never another one.
    let roles = s.rows("SELECT service_version, rollout_role, count(*) FROM spans WHERE service_name = 'checkout' GROUP BY 1, 2 ORDER BY 1, 2");
    let mut attributed = [0, 0];
    for row in &roles {
        let (version, role, n) = (&row[0], &row[1], row[2].as_u64().unwrap());
        match (version.as_str().unwrap(), role.as_str().unwrap()) {
            ("v1", "baseline") => attributed[0] += n,
            ("v2", "canary") => attributed[1] += n,
            (_, "unknown") => {}
            _ => panic!("a wrong role: {roles:?}"),
        }
    }
    let total: u64 = roles.iter().map(|r| r[2].as_u64().unwrap()).sum();
    assert_eq!(total, 8000, "{roles:?}");
    // The first export of each side arrived while the rollout was watched.
    assert!(attributed.iter().all(|n| *n >= 1000), "{roles:?}");
    let r = wait_rollout(&s, &bad, "rolled_back", |r| r["phase"] == "rolled_back");
    let last = r["transitions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["to"], "rolled_back");
    assert!(last["reason"].as_str().unwrap().contains("fail"), "{last}");
    wait_rollout(&s, &aa, "passed", |r| r["phase"] == "passed");
    hook.wait_for(10, "the rollback webhook", |l| !l.is_empty());
    // The API shows the delivery and its Idempotency-Key, never its signature.
    let (_, shown) = get(&s, &format!("/api/v1/rollouts/{bad}"));
    let d = &shown["deliveries"][0];
    assert!(d["id"].is_string() && d.get("signature").is_none(), "{d:#}");
    // Many more looks: still exactly one delivery, and none for the A/A pair.
    std::thread::sleep(Duration::from_secs(3));
    let got = hook.requests();
    assert_eq!(got.len(), 1, "{got:#?}");
    let d = &got[0];
    assert_eq!((d.method.as_str(), d.path.as_str()), ("POST", "/bad"));
    assert_eq!(d.header("content-type"), "application/json");
    assert!(
        signature_ok("s3cret", d),
        "signature does not verify: {d:?}"
    );
    let body = d.json();
    assert_eq!(d.header("idempotency-key"), body["id"].as_str().unwrap());
    assert_eq!(body["rollout_id"], bad.as_str());
    assert_eq!(body["action"], "rollback");
    assert_eq!(body["decision"], "fail");
    assert!(body["evidence"]["explanations"].is_array(), "{body:#}");
    assert_eq!(
        (
            body["service"].as_str(),
            body["baseline"].as_str(),
            body["canary"].as_str()
        ),
        (Some("checkout"), Some("v1"), Some("v2"))
    );
    assert!(!body["reasons"].as_array().unwrap().is_empty());
    assert!(
        body["evidence"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["classification"] == "fail"),
        "{body:#}"
    );
    let r = wait_rollout(&s, &bad, "delivered status", |r| {
        r["deliveries"][0]["status"] == "delivered"
    });
    assert_eq!(r["deliveries"][0]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(r["spec"]["actions"][0]["secret"], "<redacted>");

    // Both pairs are candidates, each watched by its rollout.
    let (status, c) = get(&s, "/api/v1/candidates?window_secs=3600");
    assert_eq!(status, 200, "{c}");
    let checkout = c["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "checkout")
        .expect("checkout candidate");
    assert_eq!(checkout["watched_by"][0], bad.as_str());

    // The Prometheus query shape.
    let (status, v) = get(&s, "/api/v1/query?query=vector(1)");
    assert_eq!(status, 200);
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
    let (_, v) = get(
        &s,
        "/api/v1/query?query=graylens_error_rate%7Bservice%3D%22checkout%22%7D",
    );
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{v}");
    let rate = |ver: &str| -> f64 {
        series
            .iter()
            .find(|s| s["metric"]["version"] == ver)
            .unwrap()["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(rate("v1") < 0.02 && rate("v2") > 0.04, "{v}");
    let (_, v) = get(
        &s,
        "/api/v1/query?query=graylens_latency_ms%7Bservice%3D%22checkout%22%2Cversion%3D%22v2%22%2Cquantile%3D%220.5%22%7D",
    );
    let p50: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((p50 - 32.0).abs() < 2.5, "{v}");
    let (_, v) = get(
        &s,
        "/api/v1/query?query=graylens_requests%7Bservice%3D%22nobody%22%7D",
    );
    assert_eq!(
        v["data"]["result"],
        json!([]),
        "no data is no series, not zero"
    );
    let (status, v) = get(&s, "/api/v1/query?query=rate(x%5B5m%5D)");
    assert_eq!(
        (status, v["status"].as_str(), v["errorType"].as_str()),
        (400, Some("error"), Some("bad_data"))
    );

    let (status, _) = delete(&s, &format!("/api/v1/rollouts/{aa}"));
    assert_eq!(status, 200);
    assert_eq!(get(&s, &format!("/api/v1/rollouts/{aa}")).0, 404);
    assert_eq!(delete(&s, &format!("/api/v1/rollouts/{aa}")).0, 404);

    // Strings a rollout copies into every look are bounded, and so is the body.
    let (status, v) = post(
        &s,
        "/api/v1/rollouts",
        &json!({"service": "s".repeat(2000), "baseline": "v1", "canary": "v2"}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("2000 bytes long"),
        "{v}"
    );
    let huge = json!({"service": "s".repeat(300 << 10), "baseline": "v1", "canary": "v2"});
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/rollouts", s.api))
        .json(&huge)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    s.stop();
}

fn config_rollout(hook: &Receiver) -> String {
    format!(
        "{FAST}[[rollouts]]\nname = \"checkout\"\nservice = \"checkout\"\nbaseline = \"v1\"\ncanary = \"v2\"\n\
         since = \"2020-01-01T00:00:00Z\"\n\
         actions = [{{ type = \"webhook\", url = \"{}\", secret = \"k\" }}]\n",
        hook.url("/hook")
    )
}

#[test]
fn a_delivery_survives_a_receiver_outage_and_a_graylens_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut hook = Receiver::start(503);
    let s = Server::start_with(&data, &config_rollout(&hook));
    let (_, list) = get(&s, "/api/v1/rollouts");
    assert_eq!(list["rollouts"][0]["id"], "config-checkout", "{list}");
    bad_canary(&s, &mut Gen(3), "checkout", &[], ["v1", "v2"]);

    // The receiver fails, then is down altogether.
    hook.wait_for(20, "two refused attempts", |l| l.len() >= 2);
    hook.down();
    wait_rollout(&s, "config-checkout", "a connection error", |r| {
        r["deliveries"][0]["attempts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["http_status"].is_null()))
    });
    // graylens dies with the delivery pending...
    drop(s);
    // ...and comes back with the receiver healthy again.
    hook.set_status(200);
    hook.restart();
    let s = Server::start_with(&data, &config_rollout(&hook));
    hook.wait_for(20, "the delivery", |l| l.iter().any(|r| r.answered == 200));
    std::thread::sleep(Duration::from_secs(2));
    let got = hook.requests();
    let key = got[0].header("idempotency-key").to_string();
    assert!(!key.is_empty());
    assert!(
        got.iter().all(|r| r.header("idempotency-key") == key),
        "keys differ: {got:#?}"
    );
    assert!(got.iter().all(|r| r.body == got[0].body), "bodies differ");
    assert_eq!(
        got.iter().filter(|r| r.answered == 200).count(),
        1,
        "{got:#?}"
    );
    assert!(signature_ok("k", &got[0]));
    let r = wait_rollout(&s, "config-checkout", "delivered", |r| {
        r["deliveries"][0]["status"] == "delivered"
    });
    assert_eq!(r["phase"], "rolled_back");
    assert_eq!(
        r["deliveries"].as_array().unwrap().len(),
        1,
        "one action for one transition"
    );
    let attempts = r["deliveries"][0]["attempts"].as_array().unwrap();
    assert!(
        attempts.len() >= 4,
        "attempts before the crash are kept: {attempts:#?}"
    );
    s.stop();
}

#[test]
fn argo_rollouts_receive_the_kubectl_patches() {
    let dir = tempfile::tempdir().unwrap();
    let argo = Receiver::start(200);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token\n").unwrap();
    // A rollout with no traffic at all, declared in the config file: only
    // there may an action name a token file.
    let s = Server::start_with(
        &dir.path().join("data"),
        &format!(
            "{FAST}pause_after_inconclusive_secs = 1\n\n[[rollouts]]\nname = \"ghost\"\nservice = \"ghost\"\n\
             baseline = \"v1\"\ncanary = \"v2\"\nactions = [{{ type = \"argo-rollouts\", api_server = \"{}\", \
             namespace = \"shop\", name = \"ghost\", token_file = \"{}\" }}]\n",
            argo.url("/"),
            token_file.display()
        ),
    );
    let action = |name: &str, token: Value| {
        let mut a = json!({"type": "argo-rollouts", "api_server": argo.url("/"), "namespace": "shop", "name": name});
        a.as_object_mut()
            .unwrap()
            .extend(token.as_object().unwrap().clone());
        json!([a])
    };
    bad_canary(&s, &mut Gen(5), "checkout", &[], ["v1", "v2"]);
    s.wait_count(
        "SELECT count(*) FROM spans WHERE service_name = 'checkout'",
        8000,
    );
    let (status, _) = post(
        &s,
        "/api/v1/rollouts",
        &json!({"service": "checkout", "baseline": "v1", "canary": "v2",
        "since": "2020-01-01T00:00:00Z", "actions": action("checkout", json!({"token": "tok"}))}),
    );
    assert_eq!(status, 201);
    // Through the API, a filesystem path is refused: graylens would read a
    // local file and send it to a server of the caller's choosing.
    let (status, body) = post(
        &s,
        "/api/v1/rollouts",
        &json!({"service": "ghost2", "baseline": "v1", "canary": "v2",
        "actions": action("ghost2", json!({"token_file": token_file}))}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("actions[0].token_file"),
        "{body}"
    );
    // The config's ghost rollout: no traffic at all, inconclusive for longer
    // than a second → pause.
    argo.wait_for(30, "abort and pause", |l| l.len() >= 2);
    std::thread::sleep(Duration::from_secs(2));
    let got = argo.requests();
    assert_eq!(got.len(), 2, "{got:#?}");
    let find = |suffix: &str| {
        got.iter()
            .find(|r| r.path.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix}: {got:#?}"))
    };
    let abort = find("/rollouts/checkout/status");
    assert_eq!(
        abort.path,
        "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/checkout/status"
    );
    assert_eq!(abort.method, "PATCH");
    assert_eq!(abort.header("content-type"), "application/merge-patch+json");
    assert_eq!(abort.header("authorization"), "Bearer tok");
    assert_eq!(abort.json(), json!({"status": {"abort": true}}));
    let pause = find("/rollouts/ghost");
    assert_eq!(pause.method, "PATCH");
    assert_eq!(pause.header("content-type"), "application/merge-patch+json");
    assert_eq!(pause.header("authorization"), "Bearer file-token");
    assert_eq!(pause.json(), json!({"spec": {"paused": true}}));
    s.stop();
}

/// Rollouts registered through the API are kept across a clean restart.
#[test]
fn registered_rollouts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start_with(&data, FAST);
    let (status, r) = post(
        &s,
        "/api/v1/rollouts",
        &json!({"service": "api", "baseline": "1", "canary": "2"}),
    );
    assert_eq!(status, 201);
    let id = r["id"].as_str().unwrap().to_string();
    s.stop();
    assert!(Path::new(&data)
        .join("alerts/rollouts")
        .join(format!("{id}.json"))
        .exists());
    let s = Server::start_with(&data, FAST);
    let (status, r) = get(&s, &format!("/api/v1/rollouts/{id}"));
    assert_eq!((status, r["spec"]["service"].as_str()), (200, Some("api")));
    s.stop();
}
