//! The embedded store: hot in-memory batches, Parquet segments on disk.
//!
//! ```text
//!  writer (after the log is fsynced) ──append──► hot (open generation G)
//!  writer rotates the log ──seal(G)──► sealed[G]   (still queried)
//!  flusher ──flush(G)──► Parquet segments per table, service, hour
//!                        └─► sealed[G] dropped, memory given back, log ≤ G deleted
//! ```
//!
//! A query takes a view: hot, sealed and segments under one lock per
//! table, so it sees every acknowledged row exactly once. Each hot batch
//! holds one service (see `graylens_collector::convert`) and keeps its
//! memory reservation until its rows are in Parquet, or until it is merged
//! with other small batches of its service (`coalesce`; the merge then
//! holds a reservation of its own).
//!
//! Also here: `generations` (sealing, flushing, how much of the log can
//! go), `retention` (age and size limits; deleting a segment) and
//! `scan` (the local directory's segments at start).

pub(crate) mod coalesce;
mod generations;
mod retention;
mod scan;

use crate::cluster::ClusterView;
use crate::error::{Error, Result};
use crate::remote::Remote;
use crate::segment::{self, Segment};
use crate::wal;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::TimestampNanosecondType;
use graylens_collector::schema::{Signal, TIME_COLUMN};
use graylens_collector::Reservation;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Storage settings (`[store]` in the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where the write-ahead log and Parquet segments live; created if missing.
    pub data_dir: PathBuf,
    /// Hot data older than this is written to Parquet.
    pub flush_interval_secs: u64,
    /// A table whose hot data reaches this many rows is flushed at once.
    pub flush_rows: usize,
    /// Segments that arrived longer ago than this are deleted; 0 keeps all.
    pub retention_hours: u64,
    /// Oldest segments are deleted while all segments exceed this; 0 = no limit.
    pub max_disk_bytes: u64,
    /// How often this node's small segments are merged (see `compact`); 0 = never.
    pub compact_interval_secs: u64,
    /// MiB of per-segment comparison parts kept for repeated comparisons
    /// (see `compare::partials`); 0 keeps none.
    pub compare_cache_mib: u64,
    /// Names this node's segments (`cluster.node_id`; `local` alone).
    #[serde(skip)]
    pub node_id: String,
    /// `storage.url`: empty keeps segments under `data_dir`; `s3://bucket/prefix`
    /// puts them in an object store (the log stays under `data_dir`).
    #[serde(skip)]
    pub storage_url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("graylens-data"),
            flush_interval_secs: 30,
            flush_rows: 500_000,
            retention_hours: 72,
            max_disk_bytes: 0,
            compact_interval_secs: 60,
            compare_cache_mib: 64,
            node_id: "local".into(),
            storage_url: String::new(),
        }
    }
}

impl StoreConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.flush_interval_secs == 0 {
            out.push("store.flush_interval_secs must be at least 1".into());
        }
        if self.flush_rows == 0 {
            out.push("store.flush_rows must be at least 1".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            out.push("store.data_dir must not be empty".into());
        }
        if self.compare_cache_mib > 1 << 20 {
            out.push(format!(
                "store.compare_cache_mib must be at most {} (1 TiB), not {}",
                1u64 << 20,
                self.compare_cache_mib
            ));
        }
        out
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }
}

/// One accepted batch in memory: one service, its time range, its memory.
#[derive(Debug)]
pub(crate) struct Hot {
    /// Order of arrival within its table (for incremental comparisons).
    pub seq: u64,
    /// Of the table's columns; span ids as bytes and resource attributes
    /// once per resource (`schema::SPANS_HOT`), and once merged narrower
    /// keys and integers and attributes as columns, rendered as the table's
    /// by `convert::to_table` where SQL or Parquet reads.
    pub batch: RecordBatch,
    pub service: Arc<str>,
    pub min_ns: i64,
    pub max_ns: i64,
    pub memory: Reservation,
}

#[derive(Debug, Default)]
pub(crate) struct TableState {
    next_seq: u64,
    hot: Vec<Arc<Hot>>,
    hot_rows: usize,
    sealed: BTreeMap<u64, Vec<Arc<Hot>>>,
    pub(crate) segments: Vec<Segment>,
    /// The open generation's small batches, until merged (`coalesce`).
    pending: coalesce::Pending,
}

/// What `/metrics` and the logs report about the store.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
    pub last_flush_micros: AtomicU64,
    pub rows_flushed: AtomicU64,
    pub segments_deleted: AtomicU64,
    /// Records written to the write-ahead log.
    pub wal_records: AtomicU64,
    /// fsyncs of the log (each covers a group of requests).
    pub wal_syncs: AtomicU64,
    pub wal_errors: AtomicU64,
    /// Records replayed from the log at start, and torn tails cut.
    pub wal_replayed: AtomicU64,
    pub wal_torn: AtomicU64,
    /// Bytes of batches held in memory (hot and sealed).
    pub hot_bytes: AtomicU64,
    /// Segments merged into larger ones by compaction.
    pub segments_merged: AtomicU64,
    /// Small hot batches merged into larger ones (`store::coalesce`).
    pub batches_merged: AtomicU64,
    /// Parquet segments opened by comparisons (verdicts, rollouts, the
    /// compare API): how well they are pruned by service and time.
    pub segments_read: AtomicU64,
}

#[derive(Debug)]
pub struct Store {
    pub(crate) cfg: StoreConfig,
    pub(crate) tables: [RwLock<TableState>; 3],
    /// The open generation (the log segment being written).
    gen: AtomicU64,
    /// Per (table, service, hour): the newest generation already in this
    /// node's Parquet, so replay never adds a row twice. Per hour because a
    /// generation's rows of one service are written as one file per hour
    /// (`flush::groups`): a crash between two of those files leaves the
    /// later hours of that generation to replay.
    covered: HashMap<(Signal, String, i64), u64>,
    /// After a replay: the sealed generation holding the replayed rows and
    /// the oldest log generation they came from. The log from there on
    /// stays until that generation is in Parquet.
    replayed: Mutex<Option<(u64, u64)>>,
    last_flush: RwLock<Instant>,
    read_only: bool,
    /// Incremental comparisons fed by every append.
    pub(crate) live: crate::live::Registry,
    /// Set when a group of small hot batches is ready to merge; the writer
    /// then wakes the merging thread.
    pub(crate) merge_wanted: std::sync::atomic::AtomicBool,
    /// What comparisons read from each segment, for the next comparison.
    pub partials: Arc<crate::compare::partials::Partials>,
    pub stats: StoreStats,
    /// Where segments live when not under `data_dir`.
    pub(crate) remote: Option<Arc<Remote>>,
    /// When each generation became the open one (ms; absent = before this
    /// process, e.g. replayed): what `flushed_through_ms` is computed from.
    pub(crate) gen_starts: Mutex<BTreeMap<u64, i64>>,
    /// The other nodes' markers, read before the last listing.
    pub(crate) cluster: RwLock<ClusterView>,
    /// With an object store: per service, since when this node has been
    /// receiving it (ms) and when it last did.
    pub(crate) receiving: Mutex<HashMap<Arc<str>, (i64, i64)>>,
    /// This node's segments replaced by merges, waiting to be deleted.
    pub(crate) doomed: Mutex<crate::compact::Doomed>,
}

pub(crate) fn idx(s: Signal) -> usize {
    s as usize
}

/// The time range of a batch (its `time` column, first in every table).
pub fn time_range(b: &RecordBatch) -> (i64, i64) {
    let t = b
        .column(TIME_COLUMN)
        .as_primitive::<TimestampNanosecondType>();
    let min = datafusion::arrow::compute::min(t).unwrap_or(0);
    let max = datafusion::arrow::compute::max(t).unwrap_or(0);
    (min, max)
}

/// The service of a one-service batch.
pub fn batch_service(b: &RecordBatch) -> String {
    let Some(col) = b.column_by_name("service_name") else {
        return String::new();
    };
    if b.num_rows() == 0 {
        return String::new();
    }
    match graylens_collector::convert::keys::Keys::of(col.as_ref()) {
        Some((keys, values)) => values.as_string::<i32>().value(keys.key(0)).to_string(),
        None => col.as_string::<i32>().value(0).to_string(),
    }
}

impl Store {
    /// Opens `data_dir` for serving: finds the Parquet segments already
    /// there and removes files a crash left half-written.
    pub fn open(cfg: StoreConfig) -> Result<Arc<Self>> {
        let remote = match cfg.storage_url.as_str() {
            "" => None,
            url => Some(Arc::new(Remote::open(url)?)),
        };
        Self::open_mode(cfg, false, remote)
    }

    /// Opens `data_dir` for serving with its segments in `remote` (which
    /// several stores of one process may share: tests of a cluster).
    pub fn open_shared(cfg: StoreConfig, remote: Arc<Remote>) -> Result<Arc<Self>> {
        Self::open_mode(cfg, false, Some(remote))
    }

    /// Opens `data_dir` without changing anything in it (offline queries on
    /// the directory of a running server).
    pub fn open_read_only(cfg: StoreConfig) -> Result<Arc<Self>> {
        Self::open_mode(cfg, true, None)
    }

    fn open_mode(
        cfg: StoreConfig,
        read_only: bool,
        remote: Option<Arc<Remote>>,
    ) -> Result<Arc<Self>> {
        if !read_only {
            std::fs::create_dir_all(&cfg.data_dir).map_err(|e| Error::io(&cfg.data_dir, e))?;
        }
        let mut store = Store {
            remote,
            gen_starts: Mutex::new(BTreeMap::new()),
            cluster: RwLock::new(ClusterView::default()),
            receiving: Mutex::new(HashMap::new()),
            doomed: Mutex::new(Default::default()),
            tables: Default::default(),
            gen: AtomicU64::new(1),
            covered: HashMap::new(),
            replayed: Mutex::new(None),
            last_flush: RwLock::new(Instant::now()),
            read_only,
            live: Default::default(),
            merge_wanted: Default::default(),
            partials: Arc::new(crate::compare::partials::Partials::with_capacity(
                (cfg.compare_cache_mib as usize).saturating_mul(1 << 20),
            )),
            stats: StoreStats::default(),
            cfg,
        };
        let mut newest_gen = 0;
        for s in Signal::ALL {
            let mut segs = Vec::new();
            match &store.remote {
                Some(r) => segs = crate::cluster::list_remote(r, s)?,
                None => scan::scan(&store.cfg.data_dir, s, read_only, &mut segs)?,
            }
            segs.sort_by_key(|g| (g.arrival_ms, g.max_ns));
            for g in &segs {
                if g.node == store.cfg.node_id {
                    if let Some(svc) = &g.service {
                        let hour = crate::flush::hour(g.min_ns);
                        let c = store.covered.entry((s, svc.clone(), hour)).or_default();
                        *c = (*c).max(g.gen_hi);
                    }
                    newest_gen = newest_gen.max(g.gen_hi);
                }
            }
            tracing::info!(
                table = s.table(),
                segments = segs.len(),
                "found Parquet segments"
            );
            store.tables[idx(s)].write().expect("lock").segments = segs;
        }
        store.gen.store(newest_gen + 1, Relaxed);
        store
            .gen_starts
            .lock()
            .expect("lock")
            .insert(newest_gen + 1, now_ms());
        if let Some(r) = &store.remote {
            tracing::info!(storage = ?r, node = %store.cfg.node_id, "segments are kept in the object store");
            // The other nodes as they were before this one received anything.
            let listed_ms = now_ms();
            *store.cluster.get_mut().expect("lock") = ClusterView {
                listed_ms,
                marks: r.marks()?,
            };
        }
        Ok(Arc::new(store))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    pub fn root(&self) -> &Path {
        &self.cfg.data_dir
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Notified when new data reached a running comparison (a
    /// [`crate::Subscription`]); one wake-up is kept while nobody waits.
    pub fn arrivals(&self) -> &tokio::sync::Notify {
        &self.live.arrived
    }

    /// The generation new appends belong to.
    pub fn generation(&self) -> u64 {
        self.gen.load(Relaxed)
    }

    /// Sets the open generation (after replay, to follow the log's newest).
    pub(crate) fn set_generation(&self, gen: u64) {
        self.gen.store(gen, Relaxed);
    }

    /// Whether batch `b` of `signal` from log generation `gen` is already in
    /// this node's Parquet: its service's file of the hour of its oldest row
    /// (where a flush puts it) holds generation `gen` or a newer one.
    pub fn covers(&self, signal: Signal, b: &RecordBatch, gen: u64) -> bool {
        let hour = crate::flush::hour(time_range(b).0);
        self.covered
            .get(&(signal, batch_service(b), hour))
            .is_some_and(|&c| gen <= c)
    }

    /// Adds an accepted one-service batch; visible to the next query, and
    /// fed to the incremental comparisons.
    pub fn append(&self, signal: Signal, batch: RecordBatch, memory: Reservation) {
        if let Some(h) = self.append_quiet(signal, batch, memory) {
            self.live.feed(signal, std::slice::from_ref(&h));
        }
    }

    /// [`Store::append`] without feeding the incremental comparisons: the
    /// writer feeds them after answering the clients.
    pub(crate) fn append_quiet(
        &self,
        signal: Signal,
        batch: RecordBatch,
        memory: Reservation,
    ) -> Option<Arc<Hot>> {
        if batch.num_rows() == 0 {
            return None;
        }
        let (min_ns, max_ns) = time_range(&batch);
        let service: Arc<str> = batch_service(&batch).into();
        if self.remote.is_some() {
            self.note_receipt(&service);
        }
        self.stats.hot_bytes.fetch_add(memory.bytes(), Relaxed);
        let mut t = self.tables[idx(signal)].write().expect("lock");
        let hot = Arc::new(Hot {
            seq: t.next_seq,
            batch,
            service,
            min_ns,
            max_ns,
            memory,
        });
        t.next_seq += 1;
        t.hot_rows += hot.batch.num_rows();
        t.hot.push(hot.clone());
        if t.pending.note(&hot) {
            self.merge_wanted.store(true, Relaxed);
        }
        Some(hot)
    }

    /// Feeds appended batches to the incremental comparisons.
    pub(crate) fn feed(&self, signal: Signal, hots: &[Arc<Hot>]) {
        self.live.feed(signal, hots);
    }

    /// Hot batches (sealed and open), segments, and the sequence number the
    /// next append will get: one consistent view for an incremental start.
    pub(crate) fn view(&self, signal: Signal) -> (Vec<Arc<Hot>>, Vec<Segment>, u64) {
        let t = self.tables[idx(signal)].read().expect("lock");
        (
            t.sealed.values().flatten().chain(&t.hot).cloned().collect(),
            segment::visible(&t.segments),
            t.next_seq,
        )
    }

    /// Services with rows in memory (open or sealed), not yet in Parquet.
    pub fn pending_services(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for t in &self.tables {
            let t = t.read().expect("lock");
            for h in t.sealed.values().flatten().chain(&t.hot) {
                if !out.contains(&*h.service) {
                    out.insert(h.service.to_string());
                }
            }
        }
        out
    }

    /// Rows in the open generation of `signal`.
    pub fn hot_rows(&self, signal: Signal) -> usize {
        self.tables[idx(signal)].read().expect("lock").hot_rows
    }

    /// Rows of every table in the open generation.
    pub fn memory_rows_open(&self) -> usize {
        Signal::ALL.iter().map(|s| self.hot_rows(*s)).sum()
    }

    /// Rows held in memory (open and sealed generations) of `signal`.
    pub fn memory_rows(&self, signal: Signal) -> usize {
        let t = self.tables[idx(signal)].read().expect("lock");
        t.hot_rows
            + t.sealed
                .values()
                .flatten()
                .map(|h| h.batch.num_rows())
                .sum::<usize>()
    }

    /// Bytes of Parquet segments.
    pub fn disk_bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| {
                t.read()
                    .expect("lock")
                    .segments
                    .iter()
                    .map(|g| g.bytes)
                    .sum::<u64>()
            })
            .sum()
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.cfg.wal_dir()
    }

    /// The object store segments are kept in, if not `data_dir`.
    pub fn remote(&self) -> Option<&Arc<Remote>> {
        self.remote.as_ref()
    }

    /// Where DataFusion reads `segment`.
    pub fn url_of(&self, segment: &Segment) -> String {
        match &self.remote {
            Some(r) => r.url_of(&segment.key),
            None => self
                .cfg
                .data_dir
                .join(&segment.key)
                .to_string_lossy()
                .into_owned(),
        }
    }

    /// Deletes the log of generations whose rows are all in Parquet.
    pub fn truncate_log(&self) {
        if self.read_only {
            return;
        }
        let through = self.durable_through();
        if let Err(e) = wal::log::delete_through(&self.wal_dir(), through) {
            tracing::warn!(error = %e, through, "could not delete old write-ahead log segments");
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
