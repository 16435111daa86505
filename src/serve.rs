//! `graylens serve`: wires receivers → queue → store → API, and shuts down
//! stage by stage: stop accepting, finish requests in flight, drain the
//! queue, flush to Parquet.

use crate::config::Config;
use anyhow::Context;
use graylens_analyzer::{recover, Store, Tables, Writer};
use graylens_collector::attribution::Attributor;
use graylens_collector::ingest::Ingestor;
use graylens_collector::{grpc, http, IngestStats, MemoryLimiter, Pipeline, Signal, Transport};
use graylens_dashboards::ApiState;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = Runtimes::new(&cfg)?;
    let handles = rt.handles();
    rt.run(async move {
        // Handlers first: a SIGTERM right after the ready line must shut down
        // gracefully, not kill the process.
        let stop = wait_for_signal();
        serve(cfg, handles, stop, None).await
    })
}

/// The three runtimes of a server: ingestion; queries apart from it; and
/// the alert engine apart from both, so no query load can keep a rollout
/// from being judged.
pub struct Runtimes {
    pub ingest: tokio::runtime::Runtime,
    pub query: tokio::runtime::Runtime,
    pub judge: tokio::runtime::Runtime,
}

/// Where `serve` runs analysis work.
#[derive(Clone, Debug)]
pub struct Handles {
    pub query: tokio::runtime::Handle,
    pub judge: tokio::runtime::Handle,
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
            judge: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(4)
                .thread_name("graylens-judge")
                .enable_all()
                .build()?,
        })
    }

    pub fn handles(&self) -> Handles {
        Handles {
            query: self.query.handle().clone(),
            judge: self.judge.handle().clone(),
        }
    }

    /// Runs `main` on the ingest runtime, then stops the runtimes, waiting
    /// at most 2 s for each: dropping a runtime would wait for its blocking
    /// tasks without end (a final flush to an object store that does not
    /// answer), past the grace period `main` already gave them.
    pub fn run<T>(self, main: impl std::future::Future<Output = T>) -> T {
        let out = self.ingest.block_on(main);
        self.ingest.shutdown_timeout(Duration::from_secs(2));
        self.query.shutdown_timeout(Duration::from_secs(2));
        self.judge.shutdown_timeout(Duration::from_secs(2));
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
    rt: Handles,
    until: impl std::future::Future<Output = ()>,
    ready: Option<tokio::sync::oneshot::Sender<Listening>>,
) -> anyhow::Result<()> {
    let store = Store::open(cfg.store.clone())?;
    let memory_limit = cfg.limits.memory_limit();
    let tables = Tables::with_limits(store.clone(), &cfg.query, memory_limit)?;
    let memory =
        MemoryLimiter::new(memory_limit.saturating_sub(cfg.query.pool_bytes(memory_limit)));
    let stats = Arc::new(IngestStats::default());
    let hints = graylens_collector::RoleHints::default();
    let policies = cfg
        .analysis
        .policies()
        .map_err(|p| anyhow::anyhow!(p.join("; ")))?;
    // Rollouts first: their versions name roles of replayed records too.
    let alerts = graylens_alerts::Alerts::open(
        &cfg.store.data_dir,
        tables.clone(),
        policies.clone(),
        cfg.alerts_engine(),
        &cfg.rollouts,
        hints.clone(),
    )
    .context("alert engine")?;
    let attributor = Attributor::with_hints(cfg.attribution.clone(), hints);
    let recovered = recover(&store, &attributor, &cfg.limits, &memory)
        .context("replaying the write-ahead log")?;
    let (pipeline, rx) = Pipeline::bounded(cfg.pipeline.queue_capacity, cfg.otlp.queue_wait());
    let writer_stop = CancellationToken::new();
    let writer = Writer::start(
        store.clone(),
        cfg.wal.clone(),
        rx,
        writer_stop.clone(),
        memory.limit() / 2,
    )
    .context("starting the write-ahead log")?;
    let ingestor = Ingestor::new(
        attributor,
        cfg.limits.clone(),
        pipeline,
        stats.clone(),
        memory.clone(),
    );
    tracing::info!(
        memory_limit_bytes = memory.limit(),
        wal_sync = ?cfg.wal.sync,
        replayed_records = recovered.log.records,
        replayed_rows = recovered.rows,
        "ingest path ready"
    );

    let auth = graylens_collector::Auth::new(&cfg.auth)
        .map_err(|p| anyhow::anyhow!("auth: {}", p.join("; ")))?;
    if auth.enabled() {
        tracing::info!(
            tokens = cfg.auth.tokens.len(),
            "bearer tokens required on OTLP and the API"
        );
    }
    let tls =
        graylens_collector::tls::Tls::new(&cfg.tls).map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    if let Some(t) = &tls {
        tracing::info!(
            client_certificates = t.mutual(),
            "TLS on OTLP/gRPC, OTLP/HTTP and the API"
        );
    }
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
    // Listeners beyond loopback that nobody authenticates on (only with
    // auth.allow_unauthenticated): warned here, in /metrics, health and the UI.
    let exposed: Vec<String> = if auth.enabled() {
        Vec::new()
    } else {
        [grpc_a, otlp_http_a, api_a]
            .iter()
            .filter(|a| !a.ip().is_loopback())
            .map(|a| a.to_string())
            .collect()
    };
    if !exposed.is_empty() {
        tracing::warn!(
            addresses = %exposed.join(", "),
            "auth.allow_unauthenticated: no tokens, listening beyond loopback; anyone who reaches these addresses can send telemetry and change rollouts"
        );
    }

    let shutdown = CancellationToken::new();
    let grpc_task = tokio::spawn(grpc::serve(
        grpc_l,
        ingestor.clone(),
        cfg.otlp.max_message_bytes,
        auth.clone(),
        shutdown.clone(),
        tls.clone(),
    ));
    let http_router = http::router(
        ingestor.clone(),
        cfg.otlp.max_message_bytes,
        cfg.otlp.retry_after_secs,
        auth.clone(),
    );
    let http_task = tokio::spawn(http::serve(
        otlp_http_l,
        http_router,
        shutdown.clone(),
        cfg.otlp.header_read_timeout(),
        tls.clone()
            .map(|t| (t, graylens_collector::tls::Listener::OtlpHttp)),
    ));
    // The engine judges on its own runtime, never on the ingest or query one.
    let alerts_stop = CancellationToken::new();
    let engine = rt.judge.spawn(supervise_alerts(
        alerts.clone(),
        rt.judge.clone(),
        alerts_stop.clone(),
    ));
    let api = graylens_dashboards::router(ApiState {
        tables,
        query_runtime: rt.query,
        policy: policies["default"].clone(),
        alerts,
        telemetry: graylens_dashboards::SelfTelemetry {
            ingest: stats.clone(),
            queue: ingestor.pipeline().gauge(),
            store: store.clone(),
            memory: memory.clone(),
            tls: tls.clone(),
            unauthenticated_listeners: exposed.into(),
        },
        local_only: !auth.enabled() && api_a.ip().is_loopback(),
        auth,
    });
    let api_task = tokio::spawn(http::serve(
        api_l,
        api,
        shutdown.clone(),
        std::time::Duration::from_secs(cfg.http.header_read_timeout_secs),
        tls.map(|t| (t, graylens_collector::tls::Listener::Api)),
    ));
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
    let deadline = tokio::time::Instant::now() + grace;
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
    if tokio::time::timeout_at(deadline, servers).await.is_err() {
        tracing::warn!("requests still in flight after {grace:?}; closing the queue anyway");
    }
    let _ = reporter.await;
    // Drain ingest and flush first (the writer answers what is queued, then
    // writes the last generation), then stop judging.
    writer_stop.cancel();
    let flushed = tokio::time::timeout_at(deadline, writer.join())
        .await
        .is_ok();
    alerts_stop.cancel();
    if tokio::time::timeout_at(deadline + Duration::from_secs(2), engine)
        .await
        .is_err()
    {
        tracing::warn!("alert engine still busy at the end of the grace period");
    }
    if flushed {
        tracing::info!(
            disk_bytes = store.disk_bytes(),
            "graylens stopped; all accepted data flushed"
        );
    } else {
        tracing::warn!(
            "the final flush did not finish within pipeline.shutdown_grace_secs; \
             what it did not write is in the write-ahead log and is replayed at the next start"
        );
    }
    Ok(())
}

/// Runs the alert engine until `stop`; a panic is logged, counted
/// (`graylens_task_restarts_total`) and the engine restarted a second
/// later: rollouts and their outboxes are on disk, so nothing is lost.
async fn supervise_alerts(
    alerts: graylens_alerts::Alerts,
    judge: tokio::runtime::Handle,
    stop: CancellationToken,
) {
    loop {
        let run = judge.spawn(alerts.clone().run(stop.clone()));
        match run.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                alerts
                    .stats()
                    .restarts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "the alert engine panicked; restarting it");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "alert engine task ended");
                return;
            }
        }
    }
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

/// SIGINT or SIGTERM. The handlers are installed when this is called (inside
/// the runtime), not when the future is first polled.
pub fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    async move {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    }
}
