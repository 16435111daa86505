//! Several graylens nodes sharing one bucket of a real S3-compatible server
//! (moto, from PyPI, installed by `.ci/run` and started here on a free
//! loopback port): segments written by one node are read by the others.

use crate::harness::{now_ns, Server};
use crate::receiver::Receiver;
use crate::traffic::{get, requests, requests_at, send, Gen};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto S3 server on 127.0.0.1, stopped on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// Starts moto with the test virtualenv's Python, or says why not.
    pub fn start(why: &str) -> Option<Moto> {
        let Ok(python) = std::env::var("GRAYLENS_TEST_PYTHON") else {
            eprintln!("GRAYLENS_TEST_PYTHON is not set: skipping {why} (.ci/run sets it)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (pip install 'moto[server]'; .ci/run does)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::blocking::get(format!("{endpoint}/moto-api/")).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on {endpoint}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Moto { child, endpoint })
    }

    pub fn create_bucket(&self, name: &str) {
        let r = reqwest::blocking::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// Keys under `prefix` in `bucket` (ListObjectsV2, first page).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = reqwest::blocking::get(format!(
            "{}/{bucket}?list-type=2&prefix={prefix}",
            self.endpoint
        ))
        .unwrap()
        .text()
        .unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .map(String::from)
            .collect()
    }

    /// The environment a graylens node needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts node `id` over `data_dir`, sharing `url`.
pub fn node(moto: &Moto, data_dir: &std::path::Path, url: &str, id: &str) -> Server {
    node_with(moto, data_dir, url, id, "")
}

/// [`node`] with more config (a `[store]` section replaces the harness's
/// one-second flush interval).
pub fn node_with(
    moto: &Moto,
    data_dir: &std::path::Path,
    url: &str,
    id: &str,
    toml: &str,
) -> Server {
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_env(
        data_dir,
        &format!(
            "{toml}[storage]\nurl = \"{url}\"\n[cluster]\nnode_id = \"{id}\"\nlease_secs = 3\n"
        ),
        "127.0.0.1:0",
        &env,
    )
}

/// The comparison at `path` once it waits for no other node (a node new to
/// a service waits for the others' next markers, a few seconds).
pub fn settled(s: &Server, path: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, c) = get(s, path);
        assert_eq!(status, 200, "{c}");
        if c.get("waiting_for").is_none() {
            return c;
        }
        assert!(Instant::now() < deadline, "still waiting: {c:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `sql` on `s` until it returns `want`, for up to 30 s (another
/// node's rows arrive with its flush and this node's next listing).
fn wait_count(s: &Server, sql: &str, want: i64) {
    s.wait_count_for(sql, want, Duration::from_secs(30));
}

#[test]
fn any_node_answers_for_every_service_from_the_shared_bucket() {
    let Some(moto) = Moto::start("the cluster test") else {
        return;
    };
    moto.create_bucket("graylens");
    let url = "s3://graylens/team a/prod";
    let dir = tempfile::tempdir().unwrap();
    let a = node(&moto, &dir.path().join("a"), url, "node-a");
    let b = node(&moto, &dir.path().join("b"), url, "node-b");

    // Routed as the Collector's loadbalancing exporter would (by service):
    // checkout to A, cart to B.
    let mut g = Gen(7);
    for _ in 0..3 {
        send(&a, requests(&mut g, "checkout", "v1", 1000, 20.0, 0.005));
        send(&a, requests(&mut g, "checkout", "v2", 1000, 32.0, 0.06));
        send(&b, requests(&mut g, "cart", "a", 500, 15.0, 0.0));
    }
    let count = |svc: &str| format!("SELECT count(*) FROM spans WHERE service_name = '{svc}'");
    a.wait_count(&count("checkout"), 6000);
    b.wait_count(&count("cart"), 1500);
    // Each node sees the other's service once it is flushed and listed.
    wait_count(&b, &count("checkout"), 6000);
    wait_count(&a, &count("cart"), 1500);
    wait_count(&b, "SELECT count(*) FROM spans", 7500);

    // The segments are in the bucket under the prefix, named by node.
    let keys = moto.keys("graylens", "team a/prod/spans/");
    assert!(keys.iter().any(|k| k.contains("_node-a_")), "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("_node-b_")), "{keys:?}");
    let marks = moto.keys("graylens", "team a/prod/nodes/");
    assert_eq!(marks.len(), 2, "{marks:?}");

    // B compares A's service with A's counts, and says how fresh that is.
    let path = "/api/v1/compare?service=checkout&baseline=v1&canary=v2";
    let ca = settled(&a, path);
    let cb = settled(&b, path);
    for side in ["baseline", "canary"] {
        assert_eq!(cb[side]["requests"], 3000, "{side}: {cb:#}");
        assert_eq!(cb[side]["requests"], ca[side]["requests"]);
        assert_eq!(cb[side]["errors"], ca[side]["errors"]);
    }
    assert_eq!(cb["verdict"]["decision"], ca["verdict"]["decision"]);
    assert_eq!(cb["verdict"]["decision"], "fail", "{:#}", cb["verdict"]);
    let as_of = cb["as_of"].as_str().expect("as_of in a cluster");
    let as_of = chrono::DateTime::parse_from_rfc3339(as_of).unwrap();
    let lag = chrono::Utc::now().signed_duration_since(as_of);
    assert!(lag.num_seconds() < 30, "as_of {as_of} lags by {lag}");

    // A node started later over an empty data directory sees everything.
    let c = node(&moto, &dir.path().join("c"), url, "node-c");
    wait_count(&c, "SELECT count(*) FROM spans", 7500);
    drop(c);
    a.stop();
    b.stop();
}

#[test]
fn a_service_moving_to_another_node_is_inconclusive_until_the_old_node_stores_it() {
    let Some(moto) = Moto::start("the ownership-move test") else {
        return;
    };
    moto.create_bucket("moves");
    let url = "s3://moves/g";
    let dir = tempfile::tempdir().unwrap();
    // Neither node flushes by itself during the test: A's rows of checkout
    // stay in its memory until it stops.
    let hold = "[store]\nflush_interval_secs = 3600\n";
    let a = node_with(&moto, &dir.path().join("a"), url, "node-a", hold);
    let b = node_with(&moto, &dir.path().join("b"), url, "node-b", hold);
    let mut g = Gen(11);
    for _ in 0..2 {
        send(&a, requests(&mut g, "checkout", "v1", 1000, 20.0, 0.005));
        send(&a, requests(&mut g, "checkout", "v2", 1000, 32.0, 0.06));
    }
    // The ring changes: checkout now goes to B.
    for _ in 0..2 {
        send(&b, requests(&mut g, "checkout", "v1", 1000, 20.0, 0.005));
        send(&b, requests(&mut g, "checkout", "v2", 1000, 32.0, 0.06));
    }
    let path = "/api/v1/compare?service=checkout&baseline=v1&canary=v2";
    // Once B has read A's marker (A writes it every few seconds), B knows
    // A holds rows of checkout: inconclusive, naming A, on B's half.
    let deadline = Instant::now() + Duration::from_secs(30);
    let moving = loop {
        let (status, c) = get(&b, path);
        assert_eq!(status, 200, "{c}");
        if c["waiting_for"].as_array().is_some_and(|w| !w.is_empty()) {
            break c;
        }
        assert!(Instant::now() < deadline, "B never saw A's marker: {c:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(moving["waiting_for"], serde_json::json!(["node-a"]));
    assert_eq!(
        moving["verdict"]["decision"], "inconclusive",
        "{:#}",
        moving["verdict"]
    );
    assert_eq!(moving["baseline"]["requests"], 2000);
    // A stops: its last flush stores its rows and its marker says so.
    a.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    let covered = loop {
        let (_, c) = get(&b, path);
        if c["baseline"]["requests"] == 4000 && c.get("waiting_for").is_none() {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "B never covered the window: {c:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(covered["canary"]["requests"], 4000);
    assert_eq!(
        covered["verdict"]["decision"], "fail",
        "{:#}",
        covered["verdict"]
    );
    b.stop();
}

/// Fast looks and retries (as in the alerts tests), webhooks to loopback.
const ALERTS: &str = "[alerts]\ninterval_secs = 0.5\nretry_initial_secs = 0.2\nretry_max_secs = 1.0\nallowed_targets = [\"http://127.0.0.1:\"]\n";

fn register(s: &Server, service: &str, url: &str) -> String {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/rollouts", s.api))
        .json(
            &json!({"service": service, "baseline": "v1", "canary": "v2",
                      "actions": [{"type": "webhook", "url": url, "secret": "s3cret"}]}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().unwrap();
    body["id"].as_str().unwrap().to_string()
}

/// Polls rollout `id` on `s` until `pred` holds (404 counts as not yet).
fn wait_rollout(s: &Server, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, r) = get(s, &format!("/api/v1/rollouts/{id}"));
        if status == 200 && pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "rollout {id}: timed out waiting for {what}: {r:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Good baseline, bad canary (slower, 6% errors) of `service`, now.
fn bad_canary(s: &Server, g: &mut Gen, service: &str) {
    for _ in 0..4 {
        let t = now_ns();
        send(s, requests_at(g, service, "v1", 1000, 20.0, 0.005, t, &[]));
        send(s, requests_at(g, service, "v2", 1000, 32.0, 0.06, t, &[]));
    }
}

/// The distinct Idempotency-Keys the receiver got on `path`, and how many requests.
fn keys(hook: &Receiver, path: &str) -> (std::collections::BTreeSet<String>, usize) {
    let got: Vec<_> = hook
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect();
    let keys = got
        .iter()
        .map(|r| r.header("idempotency-key").to_string())
        .collect();
    (keys, got.len())
}

#[test]
fn one_node_acts_for_a_rollout_and_another_takes_over_when_it_dies() {
    let Some(moto) = Moto::start("the cluster rollout test") else {
        return;
    };
    moto.create_bucket("acts");
    let url = "s3://acts/c";
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<(String, Server)> = ["node-a", "node-b"]
        .iter()
        .map(|id| {
            (
                id.to_string(),
                node_with(&moto, &dir.path().join(id), url, id, ALERTS),
            )
        })
        .collect();
    let hook = Receiver::start(200);

    // A rollout registered on A is in the registry: B shows it, and one
    // node holds its lease.
    let r1 = register(&nodes[0].1, "checkout", &hook.url("/r1"));
    let on_b = wait_rollout(&nodes[1].1, &r1, "B to see it", |r| r["actor"].is_string());
    assert_eq!(on_b["spec"]["service"], "checkout");
    // Both nodes name the same actor all along, across lease renewals
    // (two lease periods, looked at every 100 ms).
    wait_rollout(&nodes[0].1, &r1, "A to name the actor", |r| {
        r["actor"] == on_b["actor"]
    });
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        for (id, s) in &nodes {
            let (_, r) = get(s, &format!("/api/v1/rollouts/{r1}"));
            assert_eq!(r["actor"], on_b["actor"], "the actor as {id} shows it");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A bad canary (received by A): rolled back once across the cluster.
    let mut g = Gen(21);
    bad_canary(&nodes[0].1, &mut g, "checkout");
    for (_, s) in &nodes {
        wait_rollout(s, &r1, "rolled_back", |r| r["phase"] == "rolled_back");
    }
    hook.wait_for(30, "the rollback webhook", |l| {
        l.iter().any(|r| r.path == "/r1")
    });
    std::thread::sleep(Duration::from_secs(3));
    let (k, n) = keys(&hook, "/r1");
    assert_eq!((k.len(), n), (1, 1), "one delivery of one action: {k:?}");

    // A rollout still judged (no data yet), deleted on the node that does
    // not act for it: gone on both, and its actor does not write it back.
    let idle = register(&nodes[0].1, "idle", &hook.url("/idle"));
    let shown = wait_rollout(&nodes[1].1, &idle, "B to see it", |r| {
        r["actor"].is_string()
    });
    let other = nodes
        .iter()
        .find(|(id, _)| shown["actor"] != id.as_str())
        .map(|(_, s)| s)
        .unwrap();
    let r = reqwest::blocking::Client::new()
        .delete(format!("{}/api/v1/rollouts/{idle}", other.api))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let gone_everywhere = || {
        nodes
            .iter()
            .all(|(_, s)| get(s, &format!("/api/v1/rollouts/{idle}")).0 == 404)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gone_everywhere() {
        assert!(Instant::now() < deadline, "deleted rollout still shown");
        std::thread::sleep(Duration::from_millis(200));
    }
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert!(gone_everywhere(), "a deleted rollout came back");
        std::thread::sleep(Duration::from_millis(250));
    }

    // The actor dies with the rollback decided but not delivered (the
    // receiver is down): the other node takes over and delivers it, under
    // the same Idempotency-Key.
    let mut hook2 = Receiver::start(503);
    let r2 = register(&nodes[1].1, "cart", &hook2.url("/r2"));
    wait_rollout(&nodes[0].1, &r2, "A to see it", |r| r["actor"].is_string());
    bad_canary(&nodes[0].1, &mut g, "cart");
    hook2.wait_for(40, "a first attempt", |l| l.iter().any(|r| r.path == "/r2"));
    let (_, shown) = get(&nodes[0].1, &format!("/api/v1/rollouts/{r2}"));
    let actor = shown["actor"].as_str().unwrap().to_string();
    let i = nodes.iter().position(|(id, _)| *id == actor).unwrap();
    let (_, dead) = nodes.remove(i);
    dead.kill9();
    hook2.set_status(200);
    // Only the survivor is left to deliver it (and, the rollout finished,
    // nobody acts for it any more).
    let survivor = &nodes[0].1;
    let r = wait_rollout(survivor, &r2, "the survivor to deliver", |r| {
        r["deliveries"][0]["status"] == "delivered"
    });
    assert_eq!(r["phase"], "rolled_back");
    let attempts = r["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["http_status"], 200, "{attempts:?}");
    std::thread::sleep(Duration::from_secs(2));
    let got: Vec<_> = hook2
        .requests()
        .into_iter()
        .filter(|r| r.path == "/r2")
        .collect();
    let (k, _) = keys(&hook2, "/r2");
    assert_eq!(k.len(), 1, "one action, one Idempotency-Key: {k:?}");
    assert!(
        got.iter().filter(|r| r.answered == 200).count() == 1,
        "delivered once"
    );
    hook2.down();
}

#[test]
fn merging_segments_in_the_bucket_changes_no_count() {
    let Some(moto) = Moto::start("the compaction test") else {
        return;
    };
    moto.create_bucket("merge");
    let url = "s3://merge/m";
    let dir = tempfile::tempdir().unwrap();
    let fast = "[store]\nflush_interval_secs = 1\ncompact_interval_secs = 1\n";
    let a = node_with(&moto, &dir.path().join("a"), url, "node-a", fast);
    let b = node(&moto, &dir.path().join("b"), url, "node-b");
    // Five flushes of one service and hour: five segments, then a merge.
    let mut g = Gen(31);
    let t = now_ns();
    for i in 0..5u64 {
        send(
            &a,
            requests_at(&mut g, "checkout", "v1", 200, 20.0, 0.01, t + i, &[]),
        );
        a.wait_count("SELECT count(*) FROM spans", 200 * (i as i64 + 1));
        std::thread::sleep(Duration::from_millis(1500));
    }
    let merged = |k: &String| {
        // {min}_{max}_{node}_{lo}-{hi}_{arrival}.parquet with lo < hi
        let gens = k
            .rsplit('/')
            .next()
            .unwrap()
            .split('_')
            .nth(3)
            .unwrap_or("");
        gens.split_once('-').is_some_and(|(lo, hi)| lo != hi)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    // Counts hold on both nodes, before, during and after the merge: A has
    // every row; B, reading the bucket, whole segments only and never fewer.
    let mut seen_on_b = 0;
    loop {
        assert_eq!(a.count("SELECT count(*) FROM spans"), 1000);
        let n = b.count("SELECT count(*) FROM spans");
        assert!(
            n % 200 == 0 && n <= 1000 && n >= seen_on_b,
            "B counted {n} after {seen_on_b}"
        );
        seen_on_b = n;
        if moto.keys("merge", "m/spans/").iter().any(merged)
            && a.metric("graylens_store_segments_merged_total") >= 4.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no merge: {:?}",
            moto.keys("merge", "m/spans/")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_count(&b, "SELECT count(*) FROM spans", 1000);
    for _ in 0..20 {
        assert_eq!(a.count("SELECT count(*) FROM spans"), 1000);
        assert_eq!(b.count("SELECT count(*) FROM spans"), 1000);
        std::thread::sleep(Duration::from_millis(100));
    }
    a.stop();
    b.stop();
}
