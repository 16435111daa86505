//! The memory limiter: every byte graylens holds for ingestion — request
//! bodies while they are read, inflated and converted, and hot data until
//! it is in Parquet — is reserved against `limits.memory_bytes` first.
//! A reservation that does not fit is refused, and the OTLP receivers turn
//! that into a retryable 503 / `UNAVAILABLE` with `Retry-After`; memory is
//! given back when the reservation is dropped, so the limiter recovers by
//! itself as data is flushed.
//!
//! Like the Collector's `memory_limiter`, but counting bytes graylens knows
//! rather than sampling RSS: allocator overhead, query buffers and thread
//! stacks come on top (see the README for the margin measured).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The shared budget.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: u64,
    used: AtomicU64,
    refusals: AtomicU64,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("memory limit reached: {used} of {limit} bytes (limits.memory_bytes) in use, {wanted} more wanted; retry later")]
pub struct Exhausted {
    pub used: u64,
    pub limit: u64,
    pub wanted: u64,
}

impl MemoryLimiter {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Reservations refused so far.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    fn take(&self, n: u64) -> Result<(), Exhausted> {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur.saturating_add(n) > self.limit {
                self.refusals.fetch_add(1, Ordering::Relaxed);
                return Err(Exhausted {
                    used: cur,
                    limit: self.limit,
                    wanted: n,
                });
            }
            match self.used.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Reserves `n` bytes, or refuses.
    pub fn try_reserve(self: &Arc<Self>, n: usize) -> Result<Reservation, Exhausted> {
        self.take(n as u64)?;
        Ok(Reservation {
            limiter: Some(self.clone()),
            bytes: n as u64,
        })
    }

    /// Reserves `n` bytes even past the limit: for data that must be held
    /// whatever the load (the write-ahead log replayed at start).
    pub fn force_reserve(self: &Arc<Self>, n: usize) -> Reservation {
        self.used.fetch_add(n as u64, Ordering::Relaxed);
        Reservation {
            limiter: Some(self.clone()),
            bytes: n as u64,
        }
    }
}

/// Bytes held against the limiter, given back on drop.
#[derive(Debug, Default)]
pub struct Reservation {
    limiter: Option<Arc<MemoryLimiter>>,
    bytes: u64,
}

impl Reservation {
    /// A reservation of nothing, tied to no limiter (tests, tools).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The limit of the limiter this reservation draws on (`None`: unlimited).
    pub fn limit(&self) -> Option<u64> {
        self.limiter.as_ref().map(|l| l.limit())
    }

    /// Changes the reserved size to `n`: shrinking always works, growing
    /// may be refused (then nothing changes).
    pub fn resize(&mut self, n: usize) -> Result<(), Exhausted> {
        let n = n as u64;
        let Some(l) = &self.limiter else {
            self.bytes = n;
            return Ok(());
        };
        if n > self.bytes {
            l.take(n - self.bytes)?;
        } else {
            l.used.fetch_sub(self.bytes - n, Ordering::Relaxed);
        }
        self.bytes = n;
        Ok(())
    }

    /// A new reservation of `n` bytes on the same limiter, granted even past
    /// the limit: for data built from rows already held (the hot store's
    /// merge of small batches, which then gives their reservations back).
    pub fn alike(&self, n: usize) -> Reservation {
        match &self.limiter {
            Some(l) => l.force_reserve(n),
            None => Reservation {
                limiter: None,
                bytes: n as u64,
            },
        }
    }

    /// Moves `other`'s bytes into this reservation.
    pub fn merge(&mut self, mut other: Reservation) {
        match (&self.limiter, other.limiter.take()) {
            (None, theirs) => self.limiter = theirs,
            (Some(ours), Some(theirs)) => debug_assert!(Arc::ptr_eq(ours, &theirs)),
            (Some(_), None) => {}
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Splits `n` bytes off into a reservation of their own.
    pub fn split(&mut self, n: u64) -> Reservation {
        let n = n.min(self.bytes);
        self.bytes -= n;
        Reservation {
            limiter: self.limiter.clone(),
            bytes: n,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(l) = &self.limiter {
            l.used.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// The memory available to this process: the cgroup limit (v2, then v1)
/// when one is set, else the machine's total memory.
pub fn available_memory() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        // v1 reports "no limit" as a huge number.
        .filter(|&n| n < (1 << 60));
    let total = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    match (cgroup, total) {
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_refused_past_the_limit_and_given_back() {
        let l = MemoryLimiter::new(100);
        let a = l.try_reserve(60).unwrap();
        assert!(l.try_reserve(50).is_err());
        assert_eq!(l.refusals(), 1);
        let mut b = l.try_reserve(40).unwrap();
        assert_eq!(l.used(), 100);
        assert!(b.resize(41).is_err());
        b.resize(10).unwrap();
        assert_eq!(l.used(), 70);
        let c = b.split(4);
        assert_eq!((b.bytes(), c.bytes()), (6, 4));
        b.merge(c);
        assert_eq!(b.bytes(), 10);
        drop(a);
        drop(b);
        assert_eq!(l.used(), 0);
        let f = l.force_reserve(500);
        assert_eq!(l.used(), 500);
        drop(f);
        assert_eq!(l.used(), 0);
    }

    #[test]
    fn this_machine_reports_its_memory() {
        assert!(available_memory().is_some_and(|n| n > 1 << 20));
    }
}
