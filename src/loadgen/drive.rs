//! Sending the benchmark's requests, retrying refusals like an SDK.

use anyhow::{bail, Context};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request: the message (for gRPC) and its encoding (for HTTP).
pub type Variant = (ExportTraceServiceRequest, Vec<u8>);

/// Sends `requests` requests to `url` over `transport`, `concurrency` at a
/// time, request `i` being `variants[i % len]`. Returns how many were
/// accepted, their latencies, and how many refusals were retried.
pub async fn drive(
    transport: &str,
    url: String,
    variants: Arc<Vec<Variant>>,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<(usize, Vec<Duration>, usize)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let (url, variants) = (url.clone(), variants.clone());
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
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let (req, bytes) = &variants[i % variants.len()];
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
                                .body(bytes.clone())
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
