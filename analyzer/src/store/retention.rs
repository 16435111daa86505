//! Retention: segments older than `store.retention_hours` (by arrival)
//! are deleted, then the oldest while over `store.max_disk_bytes`; and the
//! one way to delete a segment, shared with compaction.

use super::Store;
use crate::error::{Error, Result};
use std::sync::atomic::Ordering::Relaxed;

impl Store {
    /// Deletes segments that arrived before the retention, then the oldest
    /// while over the size limit.
    pub fn apply_retention(&self) {
        self.apply_retention_at(chrono::Utc::now().timestamp_millis());
    }

    /// [`Store::apply_retention`] as if it were `now_ms`.
    pub fn apply_retention_at(&self, now_ms: i64) {
        if self.read_only {
            return;
        }
        let min_keep = match self.cfg.retention_hours {
            0 => i64::MIN,
            h => now_ms.saturating_sub((h as i64).saturating_mul(3_600_000)),
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
                    let keep = g.arrival_ms >= min_keep;
                    if !keep {
                        doomed.push(g.key.clone());
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
                        .flat_map(|(i, t)| {
                            t.segments
                                .iter()
                                .enumerate()
                                .map(move |(j, g)| ((g.arrival_ms, g.max_ns), i, j))
                        })
                        .min();
                    let Some((_, i, j)) = oldest else { break };
                    let g = tables[i].segments.remove(j);
                    total -= g.bytes;
                    doomed.push(g.key);
                }
            }
        }
        for key in doomed {
            match self.delete_segment(&key) {
                Ok(()) => {
                    self.stats.segments_deleted.fetch_add(1, Relaxed);
                    tracing::info!(segment = %key, "retention: deleted segment");
                }
                Err(e) => {
                    tracing::warn!(segment = %key, error = %e, "retention: delete failed")
                }
            }
        }
    }

    /// Deletes the segment at `key`, in the object store or under `data_dir`.
    pub(crate) fn delete_segment(&self, key: &str) -> Result<()> {
        match &self.remote {
            Some(r) => r.delete(key),
            None => {
                let p = self.cfg.data_dir.join(key);
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))
            }
        }
    }
}
