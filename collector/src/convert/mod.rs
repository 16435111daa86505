//! OTLP export requests → Arrow record batches of the [`schema`](crate::schema).
//!
//! Each converter walks resource → scope → record once, resolves
//! attribution per resource, and rejects (counts, with a reason) only the
//! records it cannot store; the rest of the request is kept.

mod columns;
mod logs;
mod metrics;
mod spans;

pub use logs::logs_to_batch;
pub use metrics::metrics_to_batch;
pub use spans::spans_to_batch;

use datafusion::arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;

/// The outcome of converting one request.
#[derive(Debug)]
pub struct Converted {
    /// The accepted rows; `None` when there were none.
    pub batch: Option<RecordBatch>,
    pub rejections: Rejections,
}

impl Converted {
    pub fn rows(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.num_rows())
    }
}

/// Rejected records by reason, for OTLP `partial_success`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejections {
    by_reason: BTreeMap<&'static str, u64>,
}

impl Rejections {
    pub fn add(&mut self, reason: &'static str, n: u64) {
        if n > 0 {
            *self.by_reason.entry(reason).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_reason.values().sum()
    }

    /// English message naming every reason, e.g.
    /// `rejected 3 spans: 2 with invalid trace_id length (want 16 bytes); 1 missing start_time_unix_nano`.
    pub fn message(&self, noun: &str) -> Option<String> {
        if self.by_reason.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .by_reason
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        Some(format!(
            "rejected {} {noun}: {}",
            self.total(),
            parts.join("; ")
        ))
    }
}
