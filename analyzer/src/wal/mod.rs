//! The write-ahead log (`data_dir/wal`): an OTLP request is acknowledged
//! only once its records are here, fsynced (`sync = "always"`, the
//! default); requests arriving together share one fsync (group commit, in
//! [`crate::writer`]). At start, whatever the log holds beyond the Parquet
//! segments is replayed before the listeners open; a generation's log is
//! deleted once its rows are in Parquet.
//!
//! - [`frame`]: one record on disk, with its checksum.
//! - [`log`]: the segment files, one per generation.
//! - [`replay`]: reading them back, cutting a torn tail.

pub mod frame;
pub mod log;
pub mod replay;

use serde::{Deserialize, Serialize};

/// When the log is fsynced (`[wal] sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Before every answer (one fsync per group of requests): nothing
    /// acknowledged is lost, whatever happens.
    Always,
    /// Every `sync_interval_ms`: a power loss can lose what was
    /// acknowledged in the last interval; a crash of graylens alone cannot.
    Interval,
    /// Never (the OS writes back when it likes): a crash of graylens loses
    /// nothing, a power loss may lose recent data.
    Off,
}

/// `[wal]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    pub sync: SyncMode,
    /// For `sync = "interval"`.
    pub sync_interval_ms: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            sync: SyncMode::Always,
            sync_interval_ms: 100,
        }
    }
}

impl WalConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.sync == SyncMode::Interval && !(1..=60_000).contains(&self.sync_interval_ms) {
            p.push(format!(
                "wal.sync_interval_ms must be between 1 and 60000, not {}",
                self.sync_interval_ms
            ));
        }
        p
    }
}
