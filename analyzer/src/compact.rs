//! Compaction: this node's small segments of one table, service and hour
//! merged into one, in the background, without a reader ever seeing a row
//! twice or missing one.
//!
//! ```text
//!  every pass (the flusher, each store.compact_interval_secs):
//!    1. this node's segments a merge replaces, seen for GRACE or longer: deleted
//!    2. per table, service and hour: MIN_INPUTS or more visible segments under
//!       TARGET_BYTES ─► read one by one, written as one segment (same directory,
//!       log generations lo..hi of its inputs, newest arrival of its inputs)
//!  readers: segment::visible() hides a segment once a merge of it is listed,
//!    so a listing with both, or with either alone, reads every row once
//! ```
//!
//! Inputs stay for `GRACE` after the merge appears, so a query or comparison
//! that listed them before has read them by then. Each node merges only its
//! own segments, so nodes never coordinate; a crash between writing a merge
//! and deleting its inputs leaves both, and the next passes delete the inputs.

use crate::error::{Error, Result};
use crate::segment::{self, Segment};
use crate::store::Store;
use bytes::Bytes;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use graylens_collector::Signal;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How long a merged segment's inputs stay readable after the merge.
pub const GRACE: Duration = Duration::from_secs(600);
/// Segments this large are left alone; merges stop growing near it.
pub const TARGET_BYTES: u64 = 64 << 20;
/// Fewest segments of one table, service and hour worth merging.
pub const MIN_INPUTS: usize = 4;

/// One merge's inputs among the visible segments of one directory of this
/// node, when it has `MIN_INPUTS` or more under `TARGET_BYTES`: the oldest
/// run of two or more such segments that are next to each other in log
/// generations, within the target size. A merge claims every generation
/// from its first input's to its last's (`segment::supersedes`), so a run
/// never steps over a segment it leaves out: readers would stop seeing that
/// segment, and after `GRACE` it would be deleted.
fn pick(mut dir: Vec<Segment>) -> Option<Vec<Segment>> {
    let small = |g: &Segment| g.bytes < TARGET_BYTES;
    if dir.iter().filter(|g| small(g)).count() < MIN_INPUTS {
        return None;
    }
    dir.sort_by_key(|g| (g.gen_lo, g.gen_hi));
    let mut take: Vec<Segment> = Vec::new();
    let mut bytes = 0;
    for g in dir {
        // The first two always fit (each is under the target).
        let fits = bytes + g.bytes <= TARGET_BYTES || take.len() < 2;
        if small(&g) && fits {
            bytes += g.bytes;
            take.push(g);
        } else if take.len() >= 2 {
            break;
        } else {
            // A big segment ends a run too short to merge: start again after it.
            take.clear();
            bytes = 0;
        }
    }
    (take.len() >= 2).then_some(take)
}

/// Superseded segments of this node and since when they are known to be.
#[derive(Debug, Default)]
pub(crate) struct Doomed(HashMap<String, Instant>);

impl Store {
    /// One compaction pass (blocking); returns how many segments were merged.
    pub fn compact(&self) -> Result<usize> {
        self.compact_with_grace(GRACE)
    }

    /// [`Store::compact`] with another grace period (tests).
    pub fn compact_with_grace(&self, grace: Duration) -> Result<usize> {
        if self.is_read_only() {
            return Ok(0);
        }
        self.delete_replaced(grace);
        let mut merged = 0;
        let mut first_err = None;
        for s in Signal::ALL {
            for inputs in self.merge_candidates(s) {
                match self.merge(s, &inputs) {
                    Ok(true) => merged += inputs.len(),
                    Ok(false) => {}
                    // Other directories go on: one unreadable segment must
                    // not stop every merge.
                    Err(e) => {
                        tracing::warn!(table = s.table(), error = %e, "compaction: merge failed; the segments stay as they are");
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(merged)
    }

    /// The inputs of this pass's merges: at most one per table, service and
    /// hour directory of this node's visible segments (see [`pick`]).
    fn merge_candidates(&self, s: Signal) -> Vec<Vec<Segment>> {
        let me = &self.config().node_id;
        let visible = segment::visible(
            &self.tables[crate::store::idx(s)]
                .read()
                .expect("lock")
                .segments,
        );
        let mut by_dir: BTreeMap<String, Vec<Segment>> = BTreeMap::new();
        for g in visible {
            if &g.node == me && g.service.is_some() {
                let dir = g.key.rsplit_once('/').map_or("", |(d, _)| d).to_string();
                by_dir.entry(dir).or_default().push(g);
            }
        }
        by_dir.into_values().filter_map(pick).collect()
    }

    /// Writes one segment holding every row of `inputs`. `false` when an
    /// input is gone (retention deleted it meanwhile): nothing written.
    fn merge(&self, s: Signal, inputs: &[Segment]) -> Result<bool> {
        let cfg = self.config();
        let mut buf = Vec::new();
        let schema = s.schema();
        let props = crate::flush::writer_properties(&schema);
        let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props))
            .map_err(|e| Error::Internal(format!("parquet writer: {e}")))?;
        for g in inputs {
            let Some(bytes) = self.read_segment(g)? else {
                return Ok(false);
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.with_batch_size(64 * 1024).build())
                .map_err(|e| Error::Internal(format!("compaction: reading {}: {e}", g.key)))?;
            for b in reader {
                let b =
                    b.map_err(|e| Error::Internal(format!("compaction: reading {}: {e}", g.key)))?;
                w.write(&b)
                    .map_err(|e| Error::Internal(format!("parquet write: {e}")))?;
            }
        }
        w.close()
            .map_err(|e| Error::Internal(format!("parquet close: {e}")))?;
        let first = &inputs[0];
        let service = first.service.clone().unwrap_or_default();
        let min_ns = inputs.iter().map(|g| g.min_ns).min().unwrap_or(0);
        let max_ns = inputs.iter().map(|g| g.max_ns).max().unwrap_or(0);
        let gen_lo = inputs.iter().map(|g| g.gen_lo).min().unwrap_or(0);
        let gen_hi = inputs.iter().map(|g| g.gen_hi).max().unwrap_or(0);
        let arrival_ms = inputs.iter().map(|g| g.arrival_ms).max().unwrap_or(0);
        let key = segment::key(
            s,
            &service,
            min_ns,
            max_ns,
            &cfg.node_id,
            gen_lo,
            gen_hi,
            arrival_ms,
        );
        let bytes = crate::flush::put(cfg, self.remote().map(|r| &**r), &key, buf)?;
        let merged = Segment {
            key,
            table: s,
            service: Some(service),
            min_ns,
            max_ns,
            node: cfg.node_id.clone(),
            gen_lo,
            gen_hi,
            arrival_ms,
            bytes,
        };
        tracing::debug!(table = s.table(), segment = %merged.key, inputs = inputs.len(), bytes, "compaction: merged");
        let name = |g: &Segment| crate::compare::source::Loc::of(self, g).name();
        let names: Vec<String> = inputs.iter().map(name).collect();
        self.partials.carry(&names, &name(&merged));
        self.tables[crate::store::idx(s)]
            .write()
            .expect("lock")
            .segments
            .push(merged);
        self.stats
            .segments_merged
            .fetch_add(inputs.len() as u64, Relaxed);
        Ok(true)
    }

    /// A whole segment, or `None` if it is gone.
    fn read_segment(&self, g: &Segment) -> Result<Option<Bytes>> {
        match self.remote() {
            Some(r) => r.get(&g.key),
            None => {
                let path = self.root().join(&g.key);
                match std::fs::read(&path) {
                    Ok(b) => Ok(Some(Bytes::from(b))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io(&path, e)),
                }
            }
        }
    }

    /// Deletes this node's segments that a merge has replaced for `grace`
    /// or longer, and starts the clock on those replaced since the last pass.
    fn delete_replaced(&self, grace: Duration) {
        let me = self.config().node_id.clone();
        let now = Instant::now();
        let mut doomed = self.doomed.lock().expect("lock");
        let mut due: Vec<(Signal, String)> = Vec::new();
        let mut replaced = std::collections::HashSet::new();
        for s in Signal::ALL {
            // A copy of this node's segments: the lock that appends and
            // flushes need is not held while they are compared.
            let mine: Vec<Segment> = self.tables[crate::store::idx(s)]
                .read()
                .expect("lock")
                .segments
                .iter()
                .filter(|g| g.node == me)
                .cloned()
                .collect();
            for g in segment::superseded(&mine) {
                let since = *doomed.0.entry(g.key.clone()).or_insert(now);
                replaced.insert(g.key.clone());
                if now.duration_since(since) >= grace {
                    due.push((s, g.key.clone()));
                }
            }
        }
        // Inputs deleted otherwise (retention) are forgotten.
        doomed.0.retain(|k, _| replaced.contains(k));
        for (s, key) in due {
            let gone = match self.delete_segment(&key) {
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    Ok(())
                }
                other => other,
            };
            match gone {
                Ok(()) => {
                    doomed.0.remove(&key);
                    self.tables[crate::store::idx(s)]
                        .write()
                        .expect("lock")
                        .segments
                        .retain(|g| g.key != key);
                    tracing::debug!(segment = %key, "compaction: deleted a merged segment's input");
                }
                Err(e) => {
                    tracing::warn!(segment = %key, error = %e, "compaction: could not delete a merged input; retried next pass")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(gen: u64, mib: u64) -> Segment {
        Segment {
            key: format!("spans/checkout/2026-12-07/04/{gen}.parquet"),
            table: Signal::Traces,
            service: Some("checkout".into()),
            min_ns: 0,
            max_ns: 1,
            node: "n1".into(),
            gen_lo: gen,
            gen_hi: gen,
            arrival_ms: gen as i64,
            bytes: mib << 20,
        }
    }

    fn gens(p: Option<Vec<Segment>>) -> Vec<u64> {
        p.unwrap_or_default().iter().map(|g| g.gen_lo).collect()
    }

    #[test]
    fn a_merge_never_spans_a_segment_it_leaves_out() {
        // Generation 4 is one large flush: merging 1, 2, 3 and 5 would claim
        // generations 1–5 and hide it.
        let dir = vec![seg(5, 1), seg(4, 64), seg(1, 1), seg(2, 1), seg(3, 1)];
        assert_eq!(gens(pick(dir)), vec![1, 2, 3]);
        let dir = vec![seg(1, 1), seg(2, 64), seg(3, 1), seg(4, 1), seg(5, 1)];
        assert_eq!(gens(pick(dir)), vec![3, 4, 5]);
        // No run of two small neighbours.
        let dir = vec![
            seg(1, 1),
            seg(2, 64),
            seg(3, 1),
            seg(4, 64),
            seg(5, 1),
            seg(6, 1),
        ];
        assert_eq!(gens(pick(dir)), vec![5, 6]);
        let dir = vec![
            seg(1, 1),
            seg(2, 64),
            seg(3, 1),
            seg(4, 64),
            seg(5, 1),
            seg(6, 64),
            seg(7, 1),
        ];
        assert_eq!(gens(pick(dir)), Vec::<u64>::new());
    }

    #[test]
    fn a_merge_stops_near_the_target_size_and_needs_enough_small_segments() {
        let dir = vec![seg(1, 30), seg(2, 30), seg(3, 30), seg(4, 1)];
        assert_eq!(gens(pick(dir)), vec![1, 2]);
        let dir = vec![seg(1, 1), seg(2, 1), seg(3, 1)];
        assert_eq!(gens(pick(dir)), Vec::<u64>::new());
        let dir = vec![seg(1, 1), seg(2, 1), seg(3, 1), seg(4, 1)];
        assert_eq!(gens(pick(dir)), vec![1, 2, 3, 4]);
    }
}
