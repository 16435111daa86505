//! OTLP export requests → Arrow record batches of the [`schema`](crate::schema).
//!
//! Each converter walks resource → scope → record once, resolves
//! attribution per resource, and rejects (counts, with a reason) only the
//! records it cannot store; the rest of the request is kept. Traces and logs
//! are read straight from the protobuf bytes ([`crate::wire`]); metrics,
//! with their many point types, from prost's structs. Text columns are
//! dictionary-encoded ([`dict`]) and every batch holds one service.

mod columns;
pub mod dict;
mod envelope;
mod ids;
pub mod ints;
pub mod keys;
mod logs;
mod merge;
mod metrics;
mod render;
mod resources;
mod spans;
mod tight;
pub mod uniform;

pub use columns::{Ctx, MAX_IDENTITY_BYTES};
pub use logs::logs_from_protobuf;
pub use merge::merge;
pub use metrics::metrics_to_batches;
pub use render::to_table;
pub use resources::resource_type;
pub use spans::spans_from_protobuf;

use datafusion::arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;

/// The outcome of converting one request.
#[derive(Debug, Default)]
pub struct Converted {
    /// The accepted rows, one batch per service; empty when there were none.
    pub batches: Vec<RecordBatch>,
    pub rejections: Rejections,
    /// Attribute values (and names, scopes, messages) cut to
    /// `limits.max_attribute_value_bytes`.
    pub truncated: u64,
}

impl Converted {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// Bytes the batches hold in memory.
    pub fn memory_bytes(&self) -> usize {
        self.batches.iter().map(|b| b.get_array_memory_size()).sum()
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
