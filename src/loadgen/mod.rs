//! `graylens loadgen`: an OTLP trace load generator and ingest benchmark.
//!
//! It sends the same realistic payload (several resources and versions, 10
//! attributes per span) over OTLP/gRPC and OTLP/HTTP to a running server
//! and reports spans per CPU-second *of the server* (read from
//! `/proc/<pid>/stat`, all threads), plus the rate at which prost alone
//! decodes the payload on one core: the ceiling for any Rust receiver.
//!
//! Given several nodes (comma-separated endpoints and PIDs), each request
//! is split by service as a router by service would, every part going to
//! its node at once; the CPU is that of all the nodes.
//!
//! - [`payload`]: the request, and its split by service.
//! - [`drive`]: sending, with an SDK's retries.

mod drive;
pub mod payload;

use crate::cli::LoadgenArgs;
use anyhow::{bail, Context};
use drive::{drive, Variant};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn now_ns() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64)
}

fn cpu_of_all(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

fn spans_in(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .map(|r| r.scope_spans[0].spans.len())
        .sum()
}

/// One node's share: its endpoints, the variants of its part of the
/// request, and its services.
struct Node {
    grpc: String,
    http: String,
    variants: Arc<Vec<Variant>>,
    spans_per_req: usize,
    services: Vec<String>,
}

/// The nodes of `args`, each with its part of every variant of the request:
/// one variant, or with `--spread-hours H`, one per quarter hour of the last
/// H hours (request `i` ends `i mod 4H` quarter hours ago); each of them
/// `--distinct-requests` times with other random values.
fn nodes(args: &LoadgenArgs) -> anyhow::Result<Vec<Node>> {
    let n = args.grpc.len();
    if args.http.len() != n
        || args.server_pid.len() != n
        || !(args.api.is_empty() || args.api.len() == n)
    {
        bail!(
            "--grpc, --http, --server-pid (and --api, when given) name one entry per node: got {}, {}, {}, {}",
            n, args.http.len(), args.server_pid.len(), args.api.len()
        );
    }
    if let Some(s) = args.services {
        if s == 0 || args.resources != 2 * s {
            bail!("--services {s} needs --resources {} (a baseline and a canary resource per service)", 2 * s);
        }
    }
    let now = now_ns()?;
    let quarters = (args.spread_hours * 4).max(1) as u64;
    if args.distinct_requests * quarters > 4096 {
        bail!(
            "--distinct-requests {} over {quarters} quarter hours would build {} requests up front; at most 4096",
            args.distinct_requests,
            args.distinct_requests * quarters
        );
    }
    let mut out: Vec<Node> = Vec::new();
    // Variant v * quarters + q: request i keeps its quarter i mod quarters.
    let variants = (0..args.distinct_requests).flat_map(|v| (0..quarters).map(move |q| (v, q)));
    for (v, q) in variants {
        let end = now - q * 15 * 60 * 1_000_000_000;
        let req = payload::payload(
            args.resources,
            args.spans_per_request,
            7 + q + 1_000_000 * v,
            args.services,
            end,
        );
        for (k, (part, services)) in payload::split(&req, n).into_iter().enumerate() {
            let bytes = part.encode_to_vec();
            if out.len() == k {
                out.push(Node {
                    grpc: args.grpc[k].clone(),
                    http: args.http[k].clone(),
                    variants: Arc::new(Vec::new()),
                    spans_per_req: spans_in(&part),
                    services,
                });
            }
            Arc::get_mut(&mut out[k].variants)
                .expect("not shared yet")
                .push((part, bytes));
        }
    }
    Ok(out)
}

pub fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let nodes = nodes(&args)?;
    // The whole request, for its size and the decode-only ceiling.
    let whole = payload::payload(
        args.resources,
        args.spans_per_request,
        7,
        args.services,
        now_ns()?,
    );
    let bytes = whole.encode_to_vec();
    let spans_per_req = spans_in(&whole);
    println!(
        "payload: {spans_per_req} spans/request in {} resources, {} bytes protobuf, {} requests per transport, concurrency {}{}",
        args.resources, bytes.len(), args.requests, args.concurrency,
        if nodes.len() > 1 { format!(" per node; split by service over {} nodes", nodes.len()) } else { String::new() }
    );
    if args.spread_hours > 0 {
        println!(
            "time: requests spread over the last {} h, a quarter hour apart",
            args.spread_hours
        );
    }
    if args.distinct_requests > 1 {
        println!(
            "values: {} requests with their own random values, sent in turn",
            args.distinct_requests
        );
    }

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

    let mut sent_per_node = vec![0usize; nodes.len()];
    for transport in ["grpc", "http"] {
        let cpu0 = cpu_of_all(&args.server_pid)?;
        let wall = Instant::now();
        let runs = nodes.iter().map(|node| {
            let url = match transport {
                "grpc" => node.grpc.clone(),
                _ => format!("{}/v1/traces", node.http),
            };
            drive(
                transport,
                url,
                node.variants.clone(),
                args.requests,
                args.concurrency,
            )
        });
        let results = rt.block_on(futures_join_all(runs));
        let wall = wall.elapsed().as_secs_f64();
        let cpu = cpu_of_all(&args.server_pid)? - cpu0;
        let (mut spans, mut latencies, mut refused) = (0usize, Vec::new(), 0usize);
        for (k, r) in results.into_iter().enumerate() {
            let (sent, lat, re) = r?;
            spans += sent * nodes[k].spans_per_req;
            sent_per_node[k] += sent * nodes[k].spans_per_req;
            latencies.extend(lat);
            refused += re;
        }
        let spans = spans as f64;
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
    }
    for (k, api) in args.api.iter().enumerate() {
        rt.block_on(verify_stored(api, &nodes[k].services, sent_per_node[k]))?;
    }
    for pid in &args.server_pid {
        if let Some(mb) = peak_rss_mb(*pid) {
            println!("server peak RSS:        {mb} MB (pid {pid})");
        }
    }
    Ok(())
}

/// Runs `futs` concurrently; their results in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("a load task panicked"));
    }
    out
}

/// The server's peak resident set so far (`VmHWM`), in MB.
fn peak_rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

/// Waits until the server's SQL counts every span sent of `services` (none
/// lost; a node's services are its own, whoever flushed them).
async fn verify_stored(api: &str, services: &[String], sent: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let list: Vec<String> = services.iter().map(|s| format!("'{s}'")).collect();
    let sql = format!(
        "SELECT count(*) FROM spans WHERE service_name IN ({})",
        list.join(", ")
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: serde_json::Value = client
            .post(format!("{api}/api/v1/sql"))
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await?
            .json()
            .await?;
        let n = v["rows"][0][0].as_u64().unwrap_or(0) as usize;
        if n == sent {
            println!("stored:                 {n} spans on {api}, every span sent");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{api} stores {n} spans of {services:?}, {sent} were acknowledged");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
