//! The OpenTelemetry Collector as a gateway (issue #15): the Rust SDK →
//! a real Collector (built with the Collector builder v0.161.0) configured
//! by `deploy/examples/collector/gateway.yaml` → graylens, over gRPC and
//! over HTTP. Kubernetes attributes are added on the way as `k8sattributes`
//! would (by a `resource` processor: there is no cluster), and graylens
//! attributes version and role from them; graylens over its memory limit
//! answers 503 / UNAVAILABLE and the Collector's retries lose nothing.
//! Skipped, with the reason printed, without Go.

use crate::gotools;
use crate::harness::Server;
use crate::traffic::{requests, Gen};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INGEST: &str = "gw-ingest-0c1d";
const READ: &str = "gw-read-77ae";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running Collector, killed on drop.
pub struct Collector {
    child: Child,
    pub grpc: String,
    pub http: String,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the Collector `bin` with `configs` (merged in order, relative to
/// the repository) and `env`, its OTLP receivers on free loopback ports
/// (`TEST_RECEIVER_GRPC_PORT`, `TEST_RECEIVER_HTTP_PORT`), logging to
/// `log`; returns once its OTLP/HTTP receiver answers.
pub fn spawn(
    bin: &std::path::Path,
    configs: &[&str],
    env: &[(&str, String)],
    log: &std::path::Path,
) -> Collector {
    let (grpc, http) = (free_port(), free_port());
    let root = env!("CARGO_MANIFEST_DIR");
    let child = Command::new(bin)
        .args(configs.iter().map(|c| format!("--config={root}/{c}")))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("TEST_RECEIVER_GRPC_PORT", grpc.to_string())
        .env("TEST_RECEIVER_HTTP_PORT", http.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let c = Collector {
        child,
        grpc: format!("http://127.0.0.1:{grpc}"),
        http: format!("http://127.0.0.1:{http}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(format!("{}/v1/traces", c.http)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the Collector did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c
}

/// Starts the Collector with the gateway config and the test's overrides,
/// exporting to `s` with `exporter`; the Kubernetes attributes it adds.
fn start_collector(
    bin: &std::path::Path,
    s: &Server,
    exporter: &str,
    deployment: &str,
    label: (&str, &str),
    log: &std::path::Path,
) -> Collector {
    spawn(
        bin,
        &[
            "deploy/examples/collector/gateway.yaml",
            "tests/collector/test.yaml",
        ],
        &[
            (
                "GRAYLENS_OTLP_GRPC_ENDPOINT",
                s.grpc.trim_start_matches("http://").to_string(),
            ),
            ("GRAYLENS_OTLP_HTTP_ENDPOINT", s.otlp_http.clone()),
            ("GRAYLENS_INGEST_TOKEN", INGEST.to_string()),
            ("TEST_EXPORTER", exporter.to_string()),
            ("TEST_K8S_DEPLOYMENT", deployment.to_string()),
            ("TEST_POD_LABEL_KEY", label.0.to_string()),
            ("TEST_POD_LABEL_VALUE", label.1.to_string()),
        ],
        log,
    )
}

/// `n` spans of checkout `version` through the Rust SDK to the Collector.
fn rust_sdk(collector: &Collector, version: &str, n: usize) {
    use opentelemetry::trace::{Span, Tracer, TracerProvider};
    use opentelemetry_otlp::WithExportConfig;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let provider = rt.block_on(async {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&collector.grpc)
            .build()
            .unwrap();
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("checkout")
                    .with_attributes([opentelemetry::KeyValue::new(
                        "service.version",
                        version.to_string(),
                    )])
                    .build(),
            )
            .build()
    });
    let tracer = provider.tracer("gateway");
    for _ in 0..n {
        let mut span = tracer.start("GET /cart");
        span.set_attribute(opentelemetry::KeyValue::new("http.route", "/cart"));
        span.end();
    }
    provider.force_flush().expect("exported to the Collector");
    provider.shutdown().unwrap();
}

fn gateway(exporter: &str, deployment: &str, label: (&str, &str), version: &str, role: &str) {
    let why = "the Collector gateway test";
    let Some(bin) = gotools::collector(why) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut toml = String::from(
        "[limits]\nmemory_bytes = 100000000\n[query]\nmemory_bytes = 20000000\n[otlp]\nmax_message_bytes = 16000000\n",
    );
    for (name, token, scope) in [("collector", INGEST, "ingest"), ("test", READ, "read")] {
        let f = dir.path().join(name);
        std::fs::write(&f, token).unwrap();
        toml.push_str(&format!(
            "[[auth.tokens]]\nname = \"{name}\"\ntoken_file = {:?}\nscopes = [\"{scope}\"]\n",
            f.display().to_string()
        ));
    }
    let mut s = Server::start_with(&data, &toml);
    s.token = Some(READ.into());
    let log = dir.path().join("collector.log");
    let c = start_collector(&bin, &s, exporter, deployment, label, &log);

    // Attribution on the way: version from the SDK, role from what the
    // Collector added, the namespace kept.
    rust_sdk(&c, version, 50);
    let sql = format!(
        "SELECT count(*) FROM spans WHERE service_name = 'checkout' AND service_version = '{version}' \
         AND rollout_role = '{role}' AND resource_attributes['k8s.namespace.name'] = 'shop' \
         AND resource_attributes['k8s.deployment.name'] = '{deployment}'"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.count(&sql) != 50 {
        assert!(
            Instant::now() < deadline,
            "{sql}: {:?}\n{}",
            s.rows("SELECT service_version, rollout_role, count(*) FROM spans GROUP BY 1, 2"),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // graylens over its limit: the disk "fails" (the spans table's directory
    // is moved away and a file put in its place), memory fills, OTLP answers
    // 503 / UNAVAILABLE. Everything the Collector acknowledged to its client
    // arrives once the disk is back.
    let (table, aside) = (data.join("spans"), data.join("spans.aside"));
    std::fs::rename(&table, &aside).unwrap();
    std::fs::write(&table, b"not a directory").unwrap();
    let client = reqwest::blocking::Client::new();
    let mut acknowledged = 0i64;
    let mut g = Gen(17);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut i = 0;
    while s.metric_with_token("graylens_memory_refusals_total", READ) < 3.0 {
        assert!(
            Instant::now() < deadline,
            "graylens never reached its memory limit ({acknowledged} spans acknowledged)"
        );
        for _ in 0..5 {
            let r = client
                .post(format!("{}/v1/traces", c.http))
                .header("content-type", "application/x-protobuf")
                .body(requests(&mut g, "gw-load", "1", 4000, 10.0, 0.0))
                .send()
                .unwrap();
            if r.status() == 200 {
                acknowledged += 4000;
            }
            i += 1;
        }
    }
    eprintln!("{exporter}: {i} requests, {acknowledged} spans acknowledged by the Collector before graylens refused 3");
    std::fs::remove_file(&table).unwrap();
    std::fs::rename(&aside, &table).unwrap();
    let sql = "SELECT count(*) FROM spans WHERE service_name = 'gw-load'";
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = s.count(sql);
        if got == acknowledged {
            break;
        }
        assert!(
            got < acknowledged,
            "{got} spans stored, more than the {acknowledged} sent: a retry was stored twice"
        );
        assert!(
            Instant::now() < deadline,
            "{got} of {acknowledged} spans arrived\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(c);
    s.stop();
}

#[test]
fn sdk_to_collector_to_graylens_over_grpc() {
    // Flagger's naming: the "-primary" Deployment is the baseline.
    gateway(
        "otlp/graylens",
        "checkout-primary",
        ("k8s.pod.label.team", "shop"),
        "1.0",
        "baseline",
    );
}

#[test]
fn sdk_to_collector_to_graylens_over_http() {
    // A pod label says canary.
    gateway(
        "otlphttp/graylens",
        "checkout",
        ("k8s.pod.label.role", "canary"),
        "1.1",
        "canary",
    );
}
