//! The store's side of the ingest queue: the write-ahead log with group
//! commit, the flusher and the merger of small batches.
//!
//! ```text
//!  queue ─► writer thread: take every commit waiting (a group)
//!             write their records to the log, one fsync for the group
//!             append their batches to the hot store, answer each request
//!             when a flush is due: close the log's generation, seal it ─┐
//!                                                                       ▼
//!           flusher thread: write sealed generations to Parquet, oldest
//!             first, then delete their log; retried while failing
//!           merger thread: merge a service's small open batches (woken
//!             by the writer when a group is ready, see `store::coalesce`)
//! ```
//!
//! The writer is one thread, so records reach the log and the store in
//! the same order, and one fsync covers everyone who arrived while the
//! previous one ran. A write that fails (disk full) answers the group with
//! a retryable error; nothing of it was acknowledged.

use crate::store::Store;
use crate::wal::{frame, log::Log, WalConfig};
use graylens_collector::{Commit, IngestBatch};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

/// Most commits written with one fsync.
const MAX_GROUP: usize = 512;
/// Most bytes written with one fsync.
const MAX_GROUP_BYTES: usize = 64 << 20;
/// Wait before retrying a failed flush.
const FLUSH_RETRY: Duration = Duration::from_secs(5);

enum FlushMsg {
    Sealed,
    Stop,
}

/// The running writer and flusher threads.
#[derive(Debug)]
pub struct Writer {
    writer: JoinHandle<()>,
}

impl Writer {
    /// Starts the writer, flusher and merger threads. `flush_bytes`: hot bytes that trigger a flush
    /// before `flush_rows` or the interval (so memory pressure flushes).
    pub fn start(
        store: Arc<Store>,
        wal: WalConfig,
        rx: Receiver<Commit>,
        stop: CancellationToken,
        flush_bytes: u64,
    ) -> std::io::Result<Writer> {
        let log = Log::create(&store.wal_dir(), store.generation(), &wal)?;
        let (ftx, frx) = std_mpsc::channel();
        let flush_store = store.clone();
        let flusher = std::thread::Builder::new()
            .name("graylens-flush".into())
            .spawn(move || fatal_on_panic("flusher", || flusher(flush_store, frx)))?;
        let (mtx, mrx) = std_mpsc::sync_channel(1);
        let merge_store = store.clone();
        let merger = std::thread::Builder::new()
            .name("graylens-merge".into())
            .spawn(move || {
                fatal_on_panic("hot batch merger", || {
                    crate::store::coalesce::run(merge_store, mrx)
                })
            })?;
        let writer = std::thread::Builder::new()
            .name("graylens-wal".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a current-thread runtime");
                let w = Loop {
                    store,
                    wal,
                    log,
                    flush: ftx,
                    merge: mtx,
                    flush_bytes,
                    frames: Vec::new(),
                };
                fatal_on_panic("write-ahead log writer", || rt.block_on(w.run(rx, stop)));
                let _ = flusher.join();
                let _ = merger.join();
            })?;
        Ok(Writer { writer })
    }

    /// Waits until the queue is drained, the last generation flushed (or
    /// left in the log if it could not be) and all three threads stopped.
    pub async fn join(self) {
        let h = self.writer;
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
}

/// Without the writer nothing can be acknowledged, and without the flusher
/// memory would only grow: a panic in either ends the process non-zero (so
/// does one in the merger outside the merge itself, whose panics it
/// catches, see `store::coalesce`).
/// Nothing acknowledged is lost by that — it is in the log, replayed at the
/// next start (by the orchestrator's restart).
fn fatal_on_panic(what: &str, f: impl FnOnce()) {
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let why = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(task = what, panic = %why, "fatal: a storage task panicked; exiting so the process is restarted and replays its log");
        std::process::exit(70);
    }
}

struct Loop {
    store: Arc<Store>,
    wal: WalConfig,
    log: Log,
    flush: std_mpsc::Sender<FlushMsg>,
    /// Wakes the thread that merges small hot batches (`store::coalesce`).
    merge: std_mpsc::SyncSender<()>,
    flush_bytes: u64,
    frames: Vec<u8>,
}

impl Loop {
    async fn run(mut self, mut rx: Receiver<Commit>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                biased;
                c = rx.recv() => match c {
                    Some(c) => c,
                    None => break,
                },
                _ = stop.cancelled() => {
                    rx.close();
                    continue;
                }
                _ = tick.tick() => {
                    if let Err(e) = self.log.sync_if_due() {
                        tracing::error!(error = %e, "write-ahead log fsync failed");
                        self.store.stats.wal_errors.fetch_add(1, Relaxed);
                    }
                    self.maybe_seal();
                    continue;
                }
            };
            let mut group = vec![first];
            let mut bytes = group[0].batch.payload.len();
            while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(c) => {
                        bytes += c.batch.payload.len();
                        group.push(c);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
            self.maybe_seal();
            if self.store.merge_wanted.swap(false, Relaxed) {
                // Full: a wake-up is already waiting.
                let _ = self.merge.try_send(());
            }
        }
        // The queue is closed and drained: seal what is left, flush it.
        if self.store.memory_rows_open() > 0 {
            self.seal();
        }
        let _ = self.flush.send(FlushMsg::Stop);
        tracing::info!("write-ahead log writer stopped");
    }

    fn commit(&mut self, group: Vec<Commit>) {
        self.frames.clear();
        for c in &group {
            let b = &c.batch;
            frame::encode(&mut self.frames, b.signal, b.received_ns, &b.payload);
        }
        let stats = &self.store.stats;
        match self.log.append(&self.frames) {
            Ok(()) => {
                stats.wal_records.fetch_add(group.len() as u64, Relaxed);
                stats.wal_syncs.fetch_add(1, Relaxed);
                let mut fed = Vec::new();
                for c in group {
                    let (batch, reply) = c.into_parts();
                    let signal = batch.signal;
                    let hots = self.append(batch);
                    reply.send(Ok(()));
                    fed.push((signal, hots));
                }
                // After the answers: incremental comparisons never delay them.
                for (signal, hots) in fed {
                    self.store.feed(signal, &hots);
                }
            }
            Err(e) => {
                stats.wal_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, requests = group.len(),
                    "write-ahead log write failed; the requests are refused with a retryable status");
                let why = e.to_string();
                for c in group {
                    c.finish(Err(why.clone()));
                }
                if self.log.is_broken() {
                    self.seal();
                }
            }
        }
    }

    /// Moves a logged request's batches into the store, each with the
    /// memory it holds; the payload's share is given back.
    fn append(&self, b: IngestBatch) -> Vec<Arc<crate::store::Hot>> {
        let IngestBatch {
            signal,
            batches,
            mut memory,
            payload,
            ..
        } = b;
        drop(payload);
        batches
            .into_iter()
            .filter_map(|rb| {
                let m = memory.split(rb.get_array_memory_size() as u64);
                self.store.append_quiet(signal, rb, m)
            })
            .collect()
    }

    fn maybe_seal(&mut self) {
        let pressure = self.store.stats.hot_bytes.load(Relaxed) > self.flush_bytes
            && self.store.memory_rows_open() > 0;
        if pressure || self.store.flush_due() {
            self.seal();
        }
    }

    /// Closes the log's generation and hands it to the flusher.
    fn seal(&mut self) {
        match self.log.rotate(&self.wal) {
            Ok(closed) => {
                self.store.seal(closed);
                let _ = self.flush.send(FlushMsg::Sealed);
            }
            Err(e) => {
                self.store.stats.wal_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "could not start a new write-ahead log segment; flush postponed");
            }
        }
    }
}

/// Writes sealed generations to Parquet, oldest first; a failure stops at
/// that generation (so a table's generations reach Parquet in order) and
/// is retried every few seconds. At stop, tries until nothing is sealed or
/// three attempts failed (the rows then stay in the log for the next start).
fn flusher(store: Arc<Store>, rx: std_mpsc::Receiver<FlushMsg>) {
    let mut last_compaction = std::time::Instant::now();
    let mut stopping = false;
    let mut failures_at_stop = 0;
    loop {
        match rx.recv_timeout(FLUSH_RETRY) {
            Ok(FlushMsg::Stop) | Err(std_mpsc::RecvTimeoutError::Disconnected) => stopping = true,
            Ok(FlushMsg::Sealed) | Err(std_mpsc::RecvTimeoutError::Timeout) => {}
        }
        let mut failed = false;
        for gen in store.sealed_generations() {
            if store.flush_generation(gen).is_err() {
                failed = true;
                break;
            }
        }
        store.truncate_log();
        store.apply_retention();
        if let Err(e) = store.sync_cluster() {
            tracing::warn!(error = %e, "could not sync with the object store; answers stay as of the last sync");
        }
        let every = store.config().compact_interval_secs;
        if !stopping && every > 0 && last_compaction.elapsed() >= Duration::from_secs(every) {
            last_compaction = std::time::Instant::now();
            // Failures are logged by compact and retried next pass.
            let _ = store.compact();
        }
        if stopping {
            if !failed {
                break;
            }
            failures_at_stop += 1;
            if failures_at_stop >= 3 {
                tracing::error!("final flush failed; the rows stay in the write-ahead log and are replayed at the next start");
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}
