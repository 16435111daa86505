//! Generations: the open one takes appends; `seal` closes it when the
//! writer rotates the log, `flush_generation` writes a sealed one to
//! Parquet, and `durable_through` tells the writer how much of the log
//! can go.

use super::{idx, now_ms, Store};
use crate::error::Result;
use graylens_collector::schema::Signal;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Store {
    /// Whether a periodic or size-triggered flush is due.
    pub fn flush_due(&self) -> bool {
        let any = Signal::ALL.iter().any(|s| self.hot_rows(*s) > 0);
        let interval = Duration::from_secs(self.cfg.flush_interval_secs);
        any && (self.last_flush.read().expect("lock").elapsed() >= interval
            || Signal::ALL
                .iter()
                .any(|s| self.hot_rows(*s) >= self.cfg.flush_rows))
    }

    /// Seals the open generation `gen` (the writer just closed its log
    /// segment): its batches wait for the flusher, still queried; new
    /// appends belong to `gen + 1`.
    pub fn seal(&self, gen: u64) {
        let mut starts = self.gen_starts.lock().expect("lock");
        starts.insert(gen + 1, now_ms());
        *self.last_flush.write().expect("lock") = Instant::now();
        for s in Signal::ALL {
            let mut t = self.tables[idx(s)].write().expect("lock");
            let hot = std::mem::take(&mut t.hot);
            t.hot_rows = 0;
            t.pending.clear();
            if !hot.is_empty() {
                t.sealed.insert(gen, hot);
            }
        }
        // Release: whoever reads the new generation sees the sealed rows
        // (`durable_through`).
        self.gen.store(gen + 1, Release);
        drop(starts);
        self.forget_flushed_starts();
    }

    /// [`Store::seal`] for rows replayed from the log: they arrived before
    /// this process started, at times not kept. `oldest` is the oldest log
    /// generation they came from: all of them are sealed as `gen`, so the
    /// log from `oldest` on stays until `gen` is in Parquet.
    pub(crate) fn seal_replayed(&self, gen: u64, oldest: Option<u64>) {
        *self.replayed.lock().expect("lock") = oldest.map(|o| (gen, o.min(gen)));
        self.seal(gen);
        self.gen_starts.lock().expect("lock").remove(&gen);
    }

    /// Sealed generations not yet in Parquet, oldest first.
    pub fn sealed_generations(&self) -> Vec<u64> {
        let mut gens: Vec<u64> = Signal::ALL
            .iter()
            .flat_map(|s| {
                self.tables[idx(*s)]
                    .read()
                    .expect("lock")
                    .sealed
                    .keys()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        gens.sort();
        gens.dedup();
        gens
    }

    /// The newest generation whose every row is in Parquet (or was never
    /// written): the log up to it can go.
    pub fn durable_through(&self) -> u64 {
        // The open generation first: a seal between the two reads then shows
        // as a sealed generation, never as a newer open one with nothing
        // sealed (which would give away the log of the generation just sealed).
        let open = self.gen.load(Acquire);
        let Some(&oldest) = self.sealed_generations().first() else {
            return open.saturating_sub(1);
        };
        let from = match *self.replayed.lock().expect("lock") {
            Some((gen, from)) if gen == oldest => from,
            _ => oldest,
        };
        from.saturating_sub(1)
    }

    /// Writes the sealed generation `gen` of every table to Parquet, file
    /// by file. Blocking: call it from a blocking thread. On error what is
    /// written stays written and leaves memory; the rest stays in memory
    /// (and in the log) for a retry.
    pub fn flush_generation(&self, gen: u64) -> Result<usize> {
        let start = Instant::now();
        let mut rows = 0;
        let mut first_err = None;
        // When `gen` was sealed (= when `gen + 1` opened): the arrival time
        // in its segments' keys, the same at every attempt, so a retry after
        // a write that did land (a rename whose directory fsync failed, an
        // object-store PUT that timed out) replaces that file instead of
        // adding a second copy of its rows. `gen_starts` keeps it while `gen`
        // is sealed (`flushed_through_ms` prunes only older generations).
        let arrival_ms = {
            let mut starts = self.gen_starts.lock().expect("lock");
            *starts.entry(gen + 1).or_insert_with(now_ms)
        };
        for s in Signal::ALL {
            let batches = self.tables[idx(s)]
                .read()
                .expect("lock")
                .sealed
                .get(&gen)
                .cloned()
                .unwrap_or_default();
            for group in crate::flush::groups(&batches) {
                let remote = self.remote.as_deref();
                match crate::flush::write_group(&self.cfg, remote, s, gen, arrival_ms, &group) {
                    Ok(written) => {
                        let n: usize = group.iter().map(|h| h.batch.num_rows()).sum();
                        let freed: u64 = group.iter().map(|h| h.memory.bytes()).sum();
                        let mut t = self.tables[idx(s)].write().expect("lock");
                        if let Some(left) = t.sealed.get_mut(&gen) {
                            left.retain(|h| !group.iter().any(|g| Arc::ptr_eq(g, h)));
                            if left.is_empty() {
                                t.sealed.remove(&gen);
                            }
                        }
                        t.segments.push(written);
                        drop(t);
                        rows += n;
                        self.stats.hot_bytes.fetch_sub(freed, Relaxed);
                        self.stats.rows_flushed.fetch_add(n as u64, Relaxed);
                    }
                    Err(e) => {
                        self.stats.flush_errors.fetch_add(1, Relaxed);
                        tracing::error!(table = s.table(), generation = gen, error = %e,
                            "flush failed; the rows stay in memory and in the write-ahead log");
                        first_err.get_or_insert(e);
                        break;
                    }
                }
            }
        }
        self.forget_flushed_starts();
        let micros = start.elapsed().as_micros() as u64;
        self.stats.flushes.fetch_add(1, Relaxed);
        self.stats.last_flush_micros.store(micros, Relaxed);
        if rows > 0 {
            tracing::debug!(rows, micros, generation = gen, "flushed to Parquet");
        }
        first_err.map_or(Ok(rows), Err)
    }

    /// Drops the start times of generations wholly in Parquet: what is
    /// kept is the start of the oldest generation still in memory (see
    /// `flushed_through_ms`) and of every newer one (a sealed generation's
    /// arrival time is when the next one started).
    fn forget_flushed_starts(&self) {
        // Under the lock `seal` holds throughout (then the tables', as
        // there): a seal cannot fall between reading the oldest generation
        // and dropping what is older.
        let mut starts = self.gen_starts.lock().expect("lock");
        let oldest = self
            .sealed_generations()
            .first()
            .copied()
            .unwrap_or_else(|| self.generation());
        starts.retain(|&g, _| g >= oldest);
    }

    /// Seals the open generation and writes every sealed one: for tools and
    /// tests that append without a log writer. Blocking.
    pub fn flush_now(&self) -> Result<usize> {
        self.seal(self.generation());
        let mut rows = 0;
        for gen in self.sealed_generations() {
            rows += self.flush_generation(gen)?;
        }
        self.apply_retention();
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Store, StoreConfig};

    #[test]
    fn start_times_of_flushed_generations_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig {
            data_dir: dir.path().into(),
            ..Default::default()
        })
        .unwrap();
        for _ in 0..100 {
            store.flush_now().unwrap();
        }
        let starts = store.gen_starts.lock().unwrap();
        assert_eq!(
            starts.keys().copied().collect::<Vec<_>>(),
            vec![store.generation()],
            "only the open generation's start is kept"
        );
    }
}
