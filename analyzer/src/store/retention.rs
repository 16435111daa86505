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
                // Oldest first, sorted once (not searched again for each
                // segment removed, which was quadratic after a lower limit).
                let mut by_age: Vec<((i64, i64), usize, &str, u64)> = tables
                    .iter()
                    .enumerate()
                    .flat_map(|(i, t)| {
                        t.segments
                            .iter()
                            .map(move |g| ((g.arrival_ms, g.max_ns), i, g.key.as_str(), g.bytes))
                    })
                    .collect();
                by_age.sort_unstable();
                let mut over: Vec<std::collections::HashSet<String>> =
                    vec![Default::default(); tables.len()];
                for (_, i, key, bytes) in by_age {
                    if total <= self.cfg.max_disk_bytes {
                        break;
                    }
                    total -= bytes;
                    over[i].insert(key.to_string());
                }
                for (t, over) in tables.iter_mut().zip(over) {
                    if !over.is_empty() {
                        t.segments.retain(|g| !over.contains(&g.key));
                        doomed.extend(over);
                    }
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
