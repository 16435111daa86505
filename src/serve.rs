//! `graylens serve`: wires receivers → queue → store → API, and shuts down
//! stage by stage: stop accepting, finish requests in flight, drain the
//! queue, flush to Parquet.

use crate::config::Config;
use anyhow::Context;
use graylens_analyzer::{run_writer, Store, Tables};
use graylens_collector::attribution::Attributor;
use graylens_collector::ingest::Ingestor;
use graylens_collector::{grpc, http, IngestStats, Pipeline, Signal, Transport};
use graylens_dashboards::ApiState;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = Runtimes::new(&cfg)?;
    let query = rt.query.handle().clone();
    rt.run(serve(cfg, query, wait_for_signal(), None))
}

/// The two runtimes of a server: ingestion, and queries apart from it.
pub struct Runtimes {
    pub ingest: tokio::runtime::Runtime,
    pub query: tokio::runtime::Runtime,
}

impl Runtimes {
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        Ok(Runtimes {
            ingest: tokio::runtime::Builder::new_multi_thread()
                .thread_name("graylens-ingest")
                .enable_all()
                .build()?,
            query: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cfg.http.query_threads)
                .thread_name("graylens-query")
                .enable_all()
                .build()?,
        })
    }

    /// Runs `main` on the ingest runtime, then stops the query runtime.
    pub fn run<T>(self, main: impl std::future::Future<Output = T>) -> T {
        let out = self.ingest.block_on(main);
        self.query.shutdown_timeout(Duration::from_secs(2));
        out
    }
}

/// Where a started server listens.
#[derive(Clone, Copy, Debug)]
pub struct Listening {
    pub otlp_grpc: std::net::SocketAddr,
    pub otlp_http: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
}

/// Serves until `until` completes, then shuts down stage by stage. With
/// `ready`, the addresses are sent there instead of printed on stdout.
pub async fn serve(
    cfg: Config,
    query_rt: tokio::runtime::Handle,
    until: impl std::future::Future<Output = ()>,
    ready: Option<tokio::sync::oneshot::Sender<Listening>>,
) -> anyhow::Result<()> {
    let store = Store::open(cfg.store.clone())?;
    let tables = Tables::new(store.clone())?;
    let (pipeline, rx) = Pipeline::bounded(cfg.pipeline.queue_capacity, cfg.otlp.queue_wait());
    let stats = Arc::new(IngestStats::default());
    let hints = graylens_collector::RoleHints::default();
    let ingestor = Ingestor::new(
        Attributor::with_hints(cfg.attribution.clone(), hints.clone()),
        pipeline,
        stats.clone(),
    );

    let bind = |a| async move {
        TcpListener::bind(a)
            .await
            .with_context(|| format!("binding {a}"))
    };
    let grpc_l = bind(cfg.otlp.grpc_addr).await?;
    let otlp_http_l = bind(cfg.otlp.http_addr).await?;
    let api_l = bind(cfg.http.addr).await?;
    let (grpc_a, otlp_http_a, api_a) = (
        grpc_l.local_addr()?,
        otlp_http_l.local_addr()?,
        api_l.local_addr()?,
    );

    let shutdown = CancellationToken::new();
    let writer_stop = CancellationToken::new();
    let writer = tokio::spawn(run_writer(store.clone(), rx, writer_stop.clone()));
    let grpc_task = tokio::spawn(grpc::serve(
        grpc_l,
        ingestor.clone(),
        cfg.otlp.max_message_bytes,
        shutdown.clone(),
    ));
    let http_router = http::router(
        ingestor.clone(),
        cfg.otlp.max_message_bytes,
        cfg.otlp.retry_after_secs,
    );
    let http_task = tokio::spawn(http::serve(otlp_http_l, http_router, shutdown.clone()));
    let policies = cfg
        .analysis
        .policies()
        .map_err(|p| anyhow::anyhow!(p.join("; ")))?;
    let alerts = graylens_alerts::Alerts::open(
        &cfg.store.data_dir,
        tables.clone(),
        policies.clone(),
        cfg.alerts.engine(),
        &cfg.rollouts,
        hints,
    )
    .context("alert engine")?;
    // The engine judges on the query runtime, never on the ingest one.
    let alerts_stop = CancellationToken::new();
    let engine = query_rt.spawn(alerts.clone().run(alerts_stop.clone()));
    let api = graylens_dashboards::router(ApiState {
        tables,
        query_runtime: query_rt,
        policy: policies["default"].clone(),
        alerts,
        telemetry: graylens_dashboards::SelfTelemetry {
            ingest: stats.clone(),
            queue: ingestor.pipeline().gauge(),
            store: store.clone(),
        },
    });
    let api_task = tokio::spawn(http::serve(api_l, api, shutdown.clone()));
    let reporter = tokio::spawn(report(ingestor.clone(), store.clone(), shutdown.clone()));
    drop(ingestor);

    tracing::info!(data_dir = %cfg.store.data_dir.display(), "graylens serving; UI at http://{api_a}/, API at http://{api_a}/api/v1/health");
    match ready {
        Some(tx) => {
            let _ = tx.send(Listening {
                otlp_grpc: grpc_a,
                otlp_http: otlp_http_a,
                http: api_a,
            });
        }
        // One machine-readable line on stdout: scripts and tests read the ports from it.
        None => println!(
            "graylens ready otlp_grpc={grpc_a} otlp_http={otlp_http_a} http=http://{api_a}"
        ),
    }

    until.await;
    tracing::info!("shutting down: no new requests, finishing those in flight");
    shutdown.cancel();
    let grace = Duration::from_secs(cfg.pipeline.shutdown_grace_secs);
    let servers = async {
        let (g, h, a) = tokio::join!(grpc_task, http_task, api_task);
        for (name, r) in [
            ("otlp grpc", g.map(|r| r.map_err(anyhow::Error::from))),
            ("otlp http", h.map(|r| r.map_err(anyhow::Error::from))),
            ("api", a.map(|r| r.map_err(anyhow::Error::from))),
        ] {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(server = name, error = %e, "server error"),
                Err(e) => tracing::error!(server = name, error = %e, "server task failed"),
            }
        }
    };
    if tokio::time::timeout(grace, servers).await.is_err() {
        tracing::warn!("requests still in flight after {grace:?}; closing the queue anyway");
    }
    alerts_stop.cancel();
    if let Err(e) = engine.await {
        tracing::error!(error = %e, "alert engine task failed");
    }
    writer_stop.cancel();
    writer.await.context("store writer")?;
    let _ = reporter.await;
    tracing::info!(
        disk_bytes = store.disk_bytes(),
        "graylens stopped; all accepted data flushed"
    );
    Ok(())
}

/// Logs what came in every minute, and once more at shutdown.
async fn report(ingestor: Ingestor, store: Arc<Store>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        let done = tokio::select! { _ = tick.tick() => false, _ = stop.cancelled() => true };
        let s = ingestor.stats();
        for sig in Signal::ALL {
            let acc: u64 = Transport::ALL
                .iter()
                .map(|t| s.accepted_count(sig, *t))
                .sum();
            let rej: u64 = Transport::ALL
                .iter()
                .map(|t| s.rejected_count(sig, *t))
                .sum();
            tracing::info!(
                signal = sig.name(),
                accepted = acc,
                rejected = rej,
                hot_rows = store.hot_rows(sig),
                "ingest totals"
            );
        }
        tracing::info!(
            queue_depth = ingestor.pipeline().depth(),
            disk_bytes = store.disk_bytes(),
            flushes = store
                .stats
                .flushes
                .load(std::sync::atomic::Ordering::Relaxed),
            "store"
        );
        if done {
            return;
        }
    }
}

/// SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
