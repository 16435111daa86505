//! Start-up recovery: what the write-ahead log holds beyond this node's
//! Parquet segments goes back into the store before the listeners open.
//!
//! Each record is converted again exactly as when it arrived (same bytes,
//! same arrival time, the limits configured now; roles from the rollouts
//! watched now). A batch is added only if its table, service and hour have
//! no segment of its generation or a later one, so a crash between writing
//! Parquet and deleting the log never doubles a row. The recovered rows are
//! sealed as the newest logged generation and flushed by the flusher like
//! any other; the log from the oldest generation they came from stays until
//! that flush is done (`Store::durable_through`).

use crate::store::Store;
use crate::wal::replay::{replay, Replayed};
use graylens_collector::attribution::Attributor;
use graylens_collector::convert::Ctx;
use graylens_collector::ingest::convert;
use graylens_collector::{LimitsConfig, MemoryLimiter};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub log: Replayed,
    /// Rows added back to the store.
    pub rows: u64,
    /// Rows skipped because their generation was already in Parquet.
    pub rows_already_stored: u64,
    /// Records that no longer convert (kept out; counted).
    pub records_failed: u64,
}

/// Replays the log into `store`. With a read-only store (offline queries)
/// the log is read but not cut, and nothing is sealed.
pub fn recover(
    store: &Store,
    attributor: &Attributor,
    limits: &LimitsConfig,
    memory: &Arc<MemoryLimiter>,
) -> std::io::Result<Recovered> {
    let mut out = Recovered::default();
    // The oldest log generation with a row replayed into memory.
    let mut oldest: Option<u64> = None;
    let each = |gen: u64, rec: &crate::wal::frame::Record<'_>| {
        let ctx = Ctx {
            attributor,
            limits,
            received_ns: rec.received_ns,
        };
        match convert(rec.signal, rec.payload, &ctx) {
            Ok(c) => {
                for b in c.batches {
                    let n = b.num_rows() as u64;
                    if store.covers(rec.signal, &b, gen) {
                        out.rows_already_stored += n;
                        continue;
                    }
                    let m = memory.force_reserve(b.get_array_memory_size());
                    store.append(rec.signal, b, m);
                    out.rows += n;
                    oldest = Some(oldest.map_or(gen, |o| o.min(gen)));
                }
            }
            Err(e) => {
                out.records_failed += 1;
                tracing::error!(generation = gen, error = %e, "a logged request no longer converts; skipped");
            }
        }
    };
    out.log = if store.is_read_only() {
        crate::wal::replay::read_only(&store.wal_dir(), each)?
    } else {
        replay(&store.wal_dir(), each)?
    };
    store.stats.wal_replayed.store(out.log.records, Relaxed);
    store.stats.wal_torn.store(out.log.torn, Relaxed);
    if let Some(last) = out.log.last_gen {
        if !store.is_read_only() {
            store.seal_replayed(last, oldest);
        }
        store.set_generation(store.generation().max(last + 1));
    }
    if out.log.records > 0 {
        tracing::info!(
            records = out.log.records,
            rows = out.rows,
            already_in_parquet = out.rows_already_stored,
            torn = out.log.torn,
            "write-ahead log replayed"
        );
    }
    Ok(out)
}
