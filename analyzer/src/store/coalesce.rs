//! Small hot batches merged into larger ones.
//!
//! Every request's rows arrive as batches of their own (one per service),
//! so a service sending small requests fills the open generation with small
//! batches, each with its own dictionaries and array structures: on this
//! machine 128-span requests held 491 bytes per span in the hot store and
//! 780–810 in the resident set, 4,096-span requests 304 and 417
//! (`bench/memory.sh`, README "Memory per hot span"). The small batches of
//! one service and hour (the file a flush writes them to, `flush::groups`)
//! are noted as they are appended; once they hold [`ROWS`] rows (or
//! [`MAX_PARTS`] batches), a thread of their own merges them with one
//! dictionary per text column (`graylens_collector::convert::merge`) and
//! puts the merged batch in their place, under the table's lock, if they
//! are all still open (a generation sealed meanwhile keeps its batches as
//! they are). What is not merged: a group still short of both bounds when
//! its generation is sealed (a service sending fewer than 128 small
//! requests per flush), sealed generations, and rows replayed from the log.
//! The merge's own working memory is not reserved; the merged batch is
//! reserved even past the limit (it replaces reserved parts, which are given
//! back when the last reader drops them).
//!
//! What readers see does not change: a view holds either the parts or the
//! merge, never both, with the same rows. Running comparisons were fed the
//! parts as they arrived and are not fed the merge (it is not new data); a
//! comparison that starts later reads the merge in its view.

use super::{idx, Hot, Store};
use graylens_collector::schema::Signal;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};

/// Rows a merged batch reaches (DataFusion's batch size).
pub(crate) const ROWS: usize = 8192;
/// Batches of at least this many rows are left as they are.
const SMALL: usize = ROWS / 2;
/// A group is merged at this many batches even if it holds fewer rows (a
/// service sending a few spans at a time).
pub(crate) const MAX_PARTS: usize = 128;

/// Small batches of one service and hour, and their rows.
#[derive(Debug, Default)]
struct Group {
    rows: usize,
    parts: Vec<Arc<Hot>>,
}

/// The open generation's small batches not merged yet, per service and hour.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    groups: HashMap<(Arc<str>, i64), Group>,
    ready: Vec<Vec<Arc<Hot>>>,
}

impl Pending {
    /// Notes an appended batch; true when its group became ready to merge.
    pub(crate) fn note(&mut self, h: &Arc<Hot>) -> bool {
        let rows = h.batch.num_rows();
        if rows >= SMALL {
            return false;
        }
        let key = (h.service.clone(), crate::flush::hour(h.min_ns));
        let group = self.groups.entry(key).or_default();
        group.rows += rows;
        group.parts.push(h.clone());
        if group.rows < ROWS && group.parts.len() < MAX_PARTS {
            return false;
        }
        let parts = std::mem::take(&mut group.parts);
        group.rows = 0;
        self.ready.push(parts);
        true
    }

    /// The generation was sealed: its batches stay as they are.
    pub(crate) fn clear(&mut self) {
        self.groups.clear();
        self.ready.clear();
    }
}

impl Store {
    /// Merges every group of small batches that is ready; returns how many
    /// batches were merged (the parts, each group becoming one batch).
    pub fn coalesce(&self) -> usize {
        let mut merged = 0;
        for s in Signal::ALL {
            let ready =
                std::mem::take(&mut self.tables[idx(s)].write().expect("lock").pending.ready);
            for parts in ready {
                merged += self.merge_parts(s, &parts);
            }
        }
        merged
    }

    fn merge_parts(&self, signal: Signal, parts: &[Arc<Hot>]) -> usize {
        let Some(first) = parts.first() else { return 0 };
        let batches: Vec<_> = parts.iter().map(|h| &h.batch).collect();
        let schema = first.batch.schema();
        // Merging only saves memory: a failure (or a panic in Arrow) keeps
        // the parts as they are, and ingest goes on.
        let merge = || graylens_collector::convert::merge(&schema, &batches);
        let batch = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(merge)) {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!(table = signal.table(), error = %e, "could not merge small hot batches; they stay as they are");
                return 0;
            }
            Err(_) => {
                tracing::error!(
                    table = signal.table(),
                    "merging small hot batches panicked; they stay as they are"
                );
                return 0;
            }
        };
        let memory = first.memory.alike(batch.get_array_memory_size());
        let merged = Arc::new(Hot {
            seq: parts.iter().map(|h| h.seq).max().unwrap_or(first.seq),
            service: first.service.clone(),
            min_ns: parts.iter().map(|h| h.min_ns).min().unwrap_or(first.min_ns),
            max_ns: parts.iter().map(|h| h.max_ns).max().unwrap_or(first.max_ns),
            batch,
            memory,
        });
        let added = merged.memory.bytes();
        // Counted before it is visible, as `append_quiet` does: a flush of
        // the merge subtracts it.
        self.stats.hot_bytes.fetch_add(added, Relaxed);
        let mut t = self.tables[idx(signal)].write().expect("lock");
        let ids: HashSet<*const Hot> = parts.iter().map(Arc::as_ptr).collect();
        let is_part = |h: &Arc<Hot>| ids.contains(&Arc::as_ptr(h));
        if t.hot.iter().filter(|h| is_part(h)).count() != parts.len() {
            // Sealed while merging: the sealed generation keeps its parts.
            drop(t);
            self.stats.hot_bytes.fetch_sub(added, Relaxed);
            return 0;
        }
        let last = t.hot.iter().rposition(is_part).expect("counted above");
        let old = std::mem::take(&mut t.hot);
        t.hot.reserve(old.len() + 1 - parts.len());
        for (i, h) in old.into_iter().enumerate() {
            if i == last {
                t.hot.push(merged.clone());
            } else if !is_part(&h) {
                t.hot.push(h);
            }
        }
        drop(t);
        let freed: u64 = parts.iter().map(|h| h.memory.bytes()).sum();
        self.stats.hot_bytes.fetch_sub(freed, Relaxed);
        self.stats
            .batches_merged
            .fetch_add(parts.len() as u64, Relaxed);
        parts.len()
    }
}

/// The merging thread: merges whatever is ready each time it is woken,
/// until every sender is gone.
pub(crate) fn run(store: Arc<Store>, wake: mpsc::Receiver<()>) {
    while wake.recv().is_ok() {
        store.coalesce();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;
    use datafusion::arrow::array::RecordBatch;
    use graylens_collector::Reservation;

    /// A one-service span batch of `rows` spans.
    fn batch(rows: usize) -> RecordBatch {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        // 2026-05-28T20:26:40Z: every batch in one hour, so one group.
        let t0 = 1_780_000_000_000_000_000;
        let spans = (0..rows as u64)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: (i + 1).to_be_bytes().to_vec(),
                name: "GET /".into(),
                start_time_unix_nano: t0,
                end_time_unix_nano: t0 + 1_000,
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut out = graylens_collector::ingest::convert_request(&req)
            .unwrap()
            .batches;
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    fn open_batches(store: &Store) -> usize {
        store.tables[idx(Signal::Traces)].read().unwrap().hot.len()
    }

    #[test]
    fn a_merge_finished_after_its_generation_was_sealed_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        for _ in 0..MAX_PARTS {
            store.append(Signal::Traces, batch(3), Reservation::none());
        }
        assert!(store.merge_wanted.load(Relaxed));
        let ready = std::mem::take(
            &mut store.tables[idx(Signal::Traces)]
                .write()
                .unwrap()
                .pending
                .ready,
        );
        assert_eq!(ready.len(), 1);
        // Sealed between taking the group and putting its merge in place.
        store.seal(store.generation());
        assert_eq!(store.merge_parts(Signal::Traces, &ready[0]), 0);
        let (view, _, _) = store.view(Signal::Traces);
        assert_eq!(view.len(), MAX_PARTS, "the sealed parts, unmerged");
        assert_eq!(open_batches(&store), 0);

        // The same in the open generation: one batch in place of the parts.
        for _ in 0..MAX_PARTS {
            store.append(Signal::Traces, batch(3), Reservation::none());
        }
        store.append(Signal::Traces, batch(SMALL), Reservation::none());
        assert_eq!(store.coalesce(), MAX_PARTS);
        assert_eq!(open_batches(&store), 2, "the merge and the large batch");
        assert_eq!(store.hot_rows(Signal::Traces), MAX_PARTS * 3 + SMALL);
    }
}
