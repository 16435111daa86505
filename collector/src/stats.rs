//! The collector's own telemetry: what was accepted and refused, per signal
//! and transport. Lock-free counters read by `/metrics` and the logs.

use crate::schema::Signal;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Grpc, Transport::Http];
    pub fn name(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// Why a whole request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Undecodable protobuf or JSON, or a bad gzip stream.
    Malformed,
    /// Over `max_message_bytes` (before or after inflation).
    TooLarge,
    /// Content type or encoding not spoken.
    Unsupported,
    /// Queue full, log not writable, or shutting down: the client should retry.
    Unavailable,
    /// Over `limits.memory_bytes`: the client should retry.
    MemoryLimit,
    Internal,
    /// No token, an unknown one, or one without the `ingest` scope.
    Unauthorized,
}

impl RefusalKind {
    pub const ALL: [RefusalKind; 7] = [
        RefusalKind::Malformed,
        RefusalKind::TooLarge,
        RefusalKind::Unsupported,
        RefusalKind::Unavailable,
        RefusalKind::MemoryLimit,
        RefusalKind::Internal,
        RefusalKind::Unauthorized,
    ];
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::Malformed => "malformed",
            RefusalKind::TooLarge => "too_large",
            RefusalKind::Unsupported => "unsupported",
            RefusalKind::Unavailable => "unavailable",
            RefusalKind::MemoryLimit => "memory_limit",
            RefusalKind::Internal => "internal",
            RefusalKind::Unauthorized => "unauthorized",
        }
    }
}

const S: usize = 3;
const T: usize = 2;
const R: usize = RefusalKind::ALL.len();

fn si(s: Signal) -> usize {
    s as usize
}
fn ti(t: Transport) -> usize {
    t as usize
}

/// Counters, shared by both transports.
#[derive(Debug, Default)]
pub struct IngestStats {
    accepted: [[AtomicU64; T]; S],
    rejected: [[AtomicU64; T]; S],
    refused_requests: [[[AtomicU64; R]; T]; S],
    /// Values cut to `limits.max_attribute_value_bytes`.
    pub values_truncated: AtomicU64,
}

impl IngestStats {
    pub fn accepted(&self, s: Signal, t: Transport, n: u64) {
        self.accepted[si(s)][ti(t)].fetch_add(n, Relaxed);
    }
    pub fn rejected(&self, s: Signal, t: Transport, n: u64) {
        self.rejected[si(s)][ti(t)].fetch_add(n, Relaxed);
    }
    pub fn refused(&self, s: Signal, t: Transport, k: RefusalKind) {
        self.refused_requests[si(s)][ti(t)][k as usize].fetch_add(1, Relaxed);
    }

    /// Records stored.
    pub fn accepted_count(&self, s: Signal, t: Transport) -> u64 {
        self.accepted[si(s)][ti(t)].load(Relaxed)
    }
    /// Records refused one by one (OTLP partial success).
    pub fn rejected_count(&self, s: Signal, t: Transport) -> u64 {
        self.rejected[si(s)][ti(t)].load(Relaxed)
    }
    /// Whole requests refused, by reason.
    pub fn refused_count(&self, s: Signal, t: Transport, k: RefusalKind) -> u64 {
        self.refused_requests[si(s)][ti(t)][k as usize].load(Relaxed)
    }
}
