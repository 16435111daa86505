//! Several graylens nodes sharing one bucket of a real S3-compatible server
//! (moto, from PyPI, installed by `.ci/run` and started here on a free
//! loopback port): segments written by one node are read by the others.

use crate::harness::Server;
use crate::traffic::{get, requests, send, Gen};
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
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_env(
        data_dir,
        &format!("[storage]\nurl = \"{url}\"\n[cluster]\nnode_id = \"{id}\"\n"),
        "127.0.0.1:0",
        &env,
    )
}

/// Polls `sql` on `s` until it returns `want`, for up to 30 s.
fn wait_count(s: &Server, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = s.count(sql);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: got {got}, want {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
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
    let (sa, ca) = get(&a, path);
    let (sb, cb) = get(&b, path);
    assert_eq!((sa, sb), (200, 200), "{ca}\n{cb}");
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
