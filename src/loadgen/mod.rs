//! `graylens loadgen`: an OTLP trace load generator and ingest benchmark.
//!
//! It sends the same realistic payload (several resources and versions, 10
//! attributes per span) over OTLP/gRPC and OTLP/HTTP to a running server
//! and reports spans per CPU-second *of the server* (read from
//! `/proc/<pid>/stat`, all threads), plus the rate at which prost alone
//! decodes the payload on one core: the ceiling for any Rust receiver.

use crate::cli::LoadgenArgs;
use anyhow::{bail, Context};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}
fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

/// One export request: `resources` resources (alternating baseline and
/// canary versions) with `spans` spans in total.
pub fn payload(resources: usize, spans: usize, seed: u64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let per = spans / resources.max(1);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let resource_spans = (0..resources)
        .map(|r| {
            let canary = r % 2 == 1;
            let attrs = vec![
                kv("service.name", s(["checkout", "cart", "payments"][r % 3])),
                kv("service.version", s(if canary { "1.5.0" } else { "1.4.0" })),
                kv("deployment.environment.name", s("prod")),
                kv(
                    "k8s.pod.label.role",
                    s(if canary { "canary" } else { "stable" }),
                ),
                kv("k8s.namespace.name", s("shop")),
                kv("k8s.pod.name", s(&format!("checkout-{r}-7d9f8"))),
                kv("host.name", s(&format!("node-{r}"))),
            ];
            let spans = (0..per)
                .map(|i| {
                    let start = now - 1_000_000_000 + (i as u64) * 1000;
                    let dur = 1_000_000 + rnd() % 50_000_000;
                    Span {
                        trace_id: rnd()
                            .to_be_bytes()
                            .into_iter()
                            .chain(rnd().to_be_bytes())
                            .collect(),
                        span_id: rnd().to_be_bytes().to_vec(),
                        parent_span_id: if i % 4 == 0 {
                            vec![]
                        } else {
                            rnd().to_be_bytes().to_vec()
                        },
                        name: ["GET /cart", "POST /checkout", "GET /items/{id}"][i % 3].into(),
                        kind: 2,
                        start_time_unix_nano: start,
                        end_time_unix_nano: start + dur,
                        attributes: vec![
                            kv("http.request.method", s("GET")),
                            kv("http.route", s("/cart")),
                            kv(
                                "http.response.status_code",
                                Value::IntValue(if rnd() % 100 == 0 { 500 } else { 200 }),
                            ),
                            kv("url.scheme", s("https")),
                            kv("server.address", s("checkout.shop.svc")),
                            kv("server.port", Value::IntValue(8080)),
                            kv("user_agent.original", s("Mozilla/5.0 (X11; Linux x86_64)")),
                            kv("network.protocol.version", s("1.1")),
                            kv(
                                "client.address",
                                s(&format!("10.0.{}.{}", rnd() % 255, rnd() % 255)),
                            ),
                            kv("app.cart.items", Value::IntValue((rnd() % 20) as i64)),
                        ],
                        ..Default::default()
                    }
                })
                .collect();
            ResourceSpans {
                resource: Some(Resource {
                    attributes: attrs,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// CPU seconds (user + system, all threads) used so far by `pid`.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / 100.0) // USER_HZ is 100 on Linux
}

pub fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let req = payload(args.resources, args.spans_per_request, 7);
    let bytes = Arc::new(req.encode_to_vec());
    let spans_per_req = req
        .resource_spans
        .iter()
        .map(|r| r.scope_spans[0].spans.len())
        .sum::<usize>();
    println!(
        "payload: {spans_per_req} spans/request in {} resources, {} bytes protobuf, {} requests per transport, concurrency {}",
        args.resources, bytes.len(), args.requests, args.concurrency
    );

    // Decode-only ceiling: prost on one core, same bytes.
    let t = Instant::now();
    let mut n = 0usize;
    while t.elapsed() < Duration::from_secs(2) {
        let r = ExportTraceServiceRequest::decode(bytes.as_slice())?;
        n += r.resource_spans.len();
    }
    let decode_rate =
        (n / args.resources) as f64 * spans_per_req as f64 / t.elapsed().as_secs_f64();
    println!("prost decode only:      {:>12.0} spans/CPU-s", decode_rate);

    let mut total_sent = 0usize;
    for transport in ["grpc", "http"] {
        let url = match transport {
            "grpc" => args.grpc.clone(),
            _ => format!("{}/v1/traces", args.http),
        };
        let cpu0 = cpu_seconds(args.server_pid)?;
        let wall = Instant::now();
        let (sent, mut latencies, refused) = rt.block_on(drive(
            transport,
            url,
            req.clone(),
            bytes.clone(),
            args.requests,
            args.concurrency,
        ))?;
        let wall = wall.elapsed().as_secs_f64();
        let cpu = cpu_seconds(args.server_pid)? - cpu0;
        let spans = (sent * spans_per_req) as f64;
        let rate = spans / cpu.max(0.01);
        latencies.sort();
        let pct = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        println!(
            "{transport:<5} end to end:       {:>12.0} spans/CPU-s of the server ({:.0} spans/s wall, server CPU {:.2} s, {:.2}x of decode-only; request latency p50 {:.1} ms, p99 {:.1} ms)",
            rate, spans / wall, cpu, rate / decode_rate, pct(0.5), pct(0.99)
        );
        if refused > 0 {
            println!(
                "{transport:<5} refused and retried:  {refused} (503 + Retry-After / UNAVAILABLE)"
            );
        }
        total_sent += sent * spans_per_req;
    }
    if let Some(api) = &args.api {
        rt.block_on(verify_stored(api, total_sent))?;
    }
    if let Some(mb) = peak_rss_mb(args.server_pid) {
        println!("server peak RSS:        {mb} MB");
    }
    Ok(())
}

/// The server's peak resident set so far (`VmHWM`), in MB.
fn peak_rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

/// Waits until the server's SQL counts every span sent (none lost).
async fn verify_stored(api: &str, sent: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: serde_json::Value = client
            .post(format!("{api}/api/v1/sql"))
            .json(&serde_json::json!({"sql": "SELECT count(*) FROM spans"}))
            .send()
            .await?
            .json()
            .await?;
        let n = v["rows"][0][0].as_u64().unwrap_or(0) as usize;
        if n == sent {
            println!("stored:                 {n} spans, every span sent");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server stores {n} spans, {sent} were acknowledged");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn drive(
    transport: &str,
    url: String,
    req: ExportTraceServiceRequest,
    bytes: Arc<Vec<u8>>,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<(usize, Vec<Duration>, usize)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let (url, req, bytes) = (url.clone(), req.clone(), bytes.clone());
        let grpc = transport == "grpc";
        tasks.push(tokio::spawn(async move {
            let mut client = if grpc {
                Some(TraceServiceClient::connect(url.clone()).await?)
            } else {
                None
            };
            let http = reqwest::Client::new();
            let mut done = 0;
            let mut lat = Vec::new();
            let mut refused = 0usize;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let t0 = Instant::now();
                // Like an SDK: a refusal that says "retry" (503 with
                // Retry-After, UNAVAILABLE) is retried after the wait it names.
                loop {
                    let wait = match client.as_mut() {
                        Some(c) => match c.export(req.clone()).await {
                            Ok(_) => None,
                            Err(st) if st.code() == tonic::Code::Unavailable => {
                                Some(Duration::from_secs(1))
                            }
                            Err(st) => bail!("gRPC {st}"),
                        },
                        None => {
                            let r = http
                                .post(&url)
                                .header("content-type", "application/x-protobuf")
                                .body(bytes.as_ref().clone())
                                .send()
                                .await?;
                            if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                                let secs = r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                                    .context("503 without a Retry-After header")?;
                                Some(Duration::from_secs(secs))
                            } else if !r.status().is_success() {
                                bail!("HTTP {}", r.status());
                            } else {
                                None
                            }
                        }
                    };
                    match wait {
                        None => break,
                        Some(w) => {
                            refused += 1;
                            tokio::time::sleep(w).await;
                        }
                    }
                }
                lat.push(t0.elapsed());
                done += 1;
            }
            anyhow::Ok((done, lat, refused))
        }));
    }
    let (mut total, mut all, mut refused) = (0, Vec::new(), 0);
    for t in tasks {
        let (n, lat, r) = t.await??;
        total += n;
        all.extend(lat);
        refused += r;
    }
    Ok((total, all, refused))
}
