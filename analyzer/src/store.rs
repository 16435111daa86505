//! The embedded store: hot in-memory segments, Parquet segments on disk.
//!
//! Only the writer task appends and flushes, so a flush can write a copy of
//! the hot batches without a lock held and then, in one step, swap them for
//! the new file: a query sees every acknowledged row exactly once.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, TimestampNanosecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use graylens_collector::schema::{Signal, TIME_COLUMN};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Storage settings (`[store]` in the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where Parquet segments live; created if missing.
    pub data_dir: PathBuf,
    /// Hot data older than this is written to Parquet.
    pub flush_interval_secs: u64,
    /// A table whose hot segment reaches this many rows is flushed at once.
    pub flush_rows: usize,
    /// Parquet segments whose newest row is older than this are deleted; 0 keeps all.
    pub retention_hours: u64,
    /// Oldest segments are deleted while all segments exceed this; 0 = no limit.
    pub max_disk_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("graylens-data"),
            flush_interval_secs: 30,
            flush_rows: 500_000,
            retention_hours: 72,
            max_disk_bytes: 0,
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
        out
    }
}

/// One Parquet segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: PathBuf,
    pub min_ns: i64,
    pub max_ns: i64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct TableState {
    hot: Vec<RecordBatch>,
    hot_rows: usize,
    segments: Vec<Segment>,
}

/// What `/metrics` and the logs report about the store.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub flushes: AtomicU64,
    pub flush_errors: AtomicU64,
    pub last_flush_micros: AtomicU64,
    pub rows_flushed: AtomicU64,
    pub segments_deleted: AtomicU64,
}

#[derive(Debug)]
pub struct Store {
    cfg: StoreConfig,
    tables: [RwLock<TableState>; 3],
    seq: AtomicU64,
    last_flush: RwLock<Instant>,
    pub stats: StoreStats,
}

/// A consistent view of one table for a query.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub hot: Vec<RecordBatch>,
    pub segments: Vec<Segment>,
}

fn idx(s: Signal) -> usize {
    s as usize
}

impl Store {
    /// Opens `data_dir`, loading the Parquet segments already there.
    pub fn open(cfg: StoreConfig) -> Result<Arc<Self>> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| Error::io(&cfg.data_dir, e))?;
        let store = Store {
            tables: Default::default(),
            seq: AtomicU64::new(0),
            last_flush: RwLock::new(Instant::now()),
            stats: StoreStats::default(),
            cfg,
        };
        let mut max_seq = 0;
        for s in Signal::ALL {
            let dir = store.cfg.data_dir.join(s.table());
            let mut segs = Vec::new();
            scan_segments(&dir, &mut segs, &mut max_seq)?;
            segs.sort_by_key(|g| g.max_ns);
            tracing::info!(
                table = s.table(),
                segments = segs.len(),
                "loaded Parquet segments"
            );
            store.tables[idx(s)].write().expect("lock").segments = segs;
        }
        store.seq.store(max_seq + 1, Relaxed);
        Ok(Arc::new(store))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Adds an accepted batch to the hot segment; visible to the next query.
    pub fn append(&self, signal: Signal, batch: RecordBatch) {
        let mut t = self.tables[idx(signal)].write().expect("lock");
        t.hot_rows += batch.num_rows();
        t.hot.push(batch);
    }

    pub fn hot_rows(&self, signal: Signal) -> usize {
        self.tables[idx(signal)].read().expect("lock").hot_rows
    }

    pub fn snapshot(&self, signal: Signal) -> Snapshot {
        let t = self.tables[idx(signal)].read().expect("lock");
        Snapshot {
            hot: t.hot.clone(),
            segments: t.segments.clone(),
        }
    }

    /// Whether a periodic or size-triggered flush is due.
    pub fn flush_due(&self) -> bool {
        let interval = Duration::from_secs(self.cfg.flush_interval_secs);
        self.last_flush.read().expect("lock").elapsed() >= interval
            || Signal::ALL
                .iter()
                .any(|s| self.hot_rows(*s) >= self.cfg.flush_rows)
    }

    /// Writes every table's hot segment to Parquet. Blocking: call it from a
    /// blocking thread. On error the hot data stays in memory and the next
    /// flush tries again.
    pub fn flush(&self) -> Result<()> {
        let start = Instant::now();
        *self.last_flush.write().expect("lock") = Instant::now();
        let mut first_err = None;
        let mut rows = 0;
        for s in Signal::ALL {
            match self.flush_table(s) {
                Ok(n) => rows += n,
                Err(e) => {
                    self.stats.flush_errors.fetch_add(1, Relaxed);
                    tracing::error!(table = s.table(), error = %e, "flush failed; data kept in memory");
                    first_err.get_or_insert(e);
                }
            }
        }
        let micros = start.elapsed().as_micros() as u64;
        self.stats.flushes.fetch_add(1, Relaxed);
        self.stats.last_flush_micros.store(micros, Relaxed);
        if rows > 0 {
            tracing::debug!(rows, micros, "flushed hot segments to Parquet");
        }
        self.apply_retention();
        first_err.map_or(Ok(()), Err)
    }

    fn flush_table(&self, s: Signal) -> Result<usize> {
        let batches = self.tables[idx(s)].read().expect("lock").hot.clone();
        if batches.is_empty() {
            return Ok(0);
        }
        let n = batches.len();
        let (min_ns, max_ns) = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(time_range)
            .fold((i64::MAX, i64::MIN), |(lo, hi), (a, b)| {
                (lo.min(a), hi.max(b))
            });
        let seq = self.seq.fetch_add(1, Relaxed);
        let when = DateTime::<Utc>::from_timestamp_nanos(min_ns);
        let dir = self
            .cfg
            .data_dir
            .join(s.table())
            .join(when.format("%Y-%m-%d").to_string())
            .join(when.format("%H").to_string());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(format!("{min_ns}_{max_ns}_{seq}.parquet"));
        let bytes = write_parquet(&path, &s.schema(), &batches)?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let mut t = self.tables[idx(s)].write().expect("lock");
        t.hot.drain(..n);
        t.hot_rows -= rows;
        t.segments.push(Segment {
            path,
            min_ns,
            max_ns,
            bytes,
        });
        self.stats.rows_flushed.fetch_add(rows as u64, Relaxed);
        Ok(rows)
    }

    /// Deletes segments past the age limit, then the oldest while over the size limit.
    pub fn apply_retention(&self) {
        let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let min_keep = match self.cfg.retention_hours {
            0 => i64::MIN,
            h => now.saturating_sub((h as i64).saturating_mul(3_600_000_000_000)),
        };
        let mut doomed = Vec::new();
        {
            let mut tables: Vec<_> = self
                .tables
                .iter()
                .map(|t| t.write().expect("lock"))
                .collect();
            for t in tables.iter_mut() {
                t.segments.retain(|g| {
                    let keep = g.max_ns >= min_keep;
                    if !keep {
                        doomed.push(g.path.clone());
                    }
                    keep
                });
            }
            if self.cfg.max_disk_bytes > 0 {
                let mut total: u64 = tables
                    .iter()
                    .flat_map(|t| &t.segments)
                    .map(|g| g.bytes)
                    .sum();
                while total > self.cfg.max_disk_bytes {
                    let oldest = tables
                        .iter()
                        .enumerate()
                        .filter_map(|(i, t)| t.segments.first().map(|g| (g.max_ns, i)))
                        .min();
                    let Some((_, i)) = oldest else { break };
                    let g = tables[i].segments.remove(0);
                    total -= g.bytes;
                    doomed.push(g.path);
                }
            }
        }
        for p in doomed {
            match std::fs::remove_file(&p) {
                Ok(()) => {
                    self.stats.segments_deleted.fetch_add(1, Relaxed);
                    tracing::info!(path = %p.display(), "retention: deleted segment");
                }
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "retention: delete failed")
                }
            }
        }
    }

    /// Bytes of Parquet segments on disk.
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
}

fn time_range(b: &RecordBatch) -> (i64, i64) {
    let col = b.column(TIME_COLUMN);
    let t = col
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .expect("time column");
    let min = datafusion::arrow::compute::min(t).unwrap_or(0);
    let max = datafusion::arrow::compute::max(t).unwrap_or(0);
    debug_assert_eq!(t.null_count(), 0);
    (min, max)
}

/// Writes to `path.tmp` then renames, so a crash never leaves half a file
/// under a name that is loaded at start. The hot batches are written one
/// after the other (no concatenated copy). Statistics are kept per column
/// chunk (enough to prune by time), not per page, and the ids, unique per
/// row, skip dictionary encoding: both save CPU at every flush.
fn write_parquet(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<u64> {
    use datafusion::parquet::file::properties::EnabledStatistics;
    use datafusion::parquet::schema::types::ColumnPath;
    let tmp = path.with_extension("parquet.tmp");
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Chunk);
    for id in ["trace_id", "span_id", "parent_span_id"] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(id), false);
    }
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props.build()))
        .map_err(|e| Error::Internal(format!("parquet writer: {e}")))?;
    for batch in batches {
        w.write(batch)
            .map_err(|e| Error::Internal(format!("parquet write: {e}")))?;
    }
    let file = w
        .into_inner()
        .map_err(|e| Error::Internal(format!("parquet close: {e}")))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    let bytes = file.metadata().map_err(|e| Error::io(&tmp, e))?.len();
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// Finds `{min}_{max}_{seq}.parquet` files below `dir`; removes leftover `.tmp` files.
fn scan_segments(dir: &Path, out: &mut Vec<Segment>, max_seq: &mut u64) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            scan_segments(&path, out, max_seq)?;
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".parquet.tmp") {
            tracing::warn!(path = %path.display(), "removing unfinished segment");
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(stem) = name.strip_suffix(".parquet") else {
            continue;
        };
        let parts: Vec<&str> = stem.split('_').collect();
        let parsed = match parts.as_slice() {
            [a, b, c] => a
                .parse::<i64>()
                .ok()
                .zip(b.parse::<i64>().ok())
                .zip(c.parse::<u64>().ok()),
            _ => None,
        };
        let Some(((min_ns, max_ns), seq)) = parsed else {
            tracing::warn!(path = %path.display(), "ignoring Parquet file not written by graylens");
            continue;
        };
        *max_seq = (*max_seq).max(seq);
        out.push(Segment {
            path,
            min_ns,
            max_ns,
            bytes: meta.len(),
        });
    }
    Ok(())
}
