//! What a comparison read from each Parquet segment, kept for the next one.
//!
//! A segment never changes once written (compaction writes a new one under
//! a new key), so its contribution to a comparison depends only on the
//! segment and on what the comparison counts: the service, the two sides
//! and how they are told apart, and the explained attributes. When the
//! segment lies wholly inside the comparison's window the time bounds do
//! not matter either, and the partial [`Accumulator`] read from it is kept
//! here. The dashboards, Flagger's metric queries and `/api/v1/verdict`
//! compare the same service again every few seconds: each repeat then reads
//! only the hot data and the segments written since, and merges the rest.
//!
//! Bounded by an estimate of the bytes held (`store.compare_cache_mib`,
//! [`CAPACITY_BYTES`] by default; 0 keeps nothing); the least recently used
//! partials go first. Partials of segments deleted by
//! retention or compaction are never asked for again and age out the same way;
//! a merge by this node's compaction gets the merge of its inputs' parts
//! ([`Partials::carry`]), so compaction costs no re-read. (A merge written by
//! another node is read once: its exact inputs are not known here.)

use super::scan::Accumulator;
use super::selector::Selector;
use graylens_collector::Signal;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// The default bound: at most this many bytes of partials (estimated).
pub const CAPACITY_BYTES: usize = 64 << 20;

/// Identifies one segment's contribution to one kind of comparison.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    signal: Signal,
    /// The segment's path or object key.
    segment: String,
    service: String,
    sides: [String; 2],
    by: super::By,
    facets: Arc<[String]>,
}

impl Key {
    pub(crate) fn new(
        signal: Signal,
        segment: String,
        sel: &Selector,
        facets: &Arc<[String]>,
    ) -> Key {
        Key {
            signal,
            segment,
            service: sel.service.clone(),
            sides: [sel.baseline.clone(), sel.canary.clone()],
            by: sel.by,
            facets: facets.clone(),
        }
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<Key>()
            + self.segment.len()
            + self.service.len()
            + self.sides.iter().map(String::len).sum::<usize>()
    }
}

struct Entry {
    partial: Arc<Accumulator>,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    bytes: usize,
    clock: u64,
}

/// The kept partials, shared by every comparison of a store.
pub struct Partials {
    inner: Mutex<Inner>,
    capacity: usize,
    /// Segments whose partial was reused instead of read.
    pub hits: AtomicU64,
}

impl Default for Partials {
    fn default() -> Self {
        Self::with_capacity(CAPACITY_BYTES)
    }
}

impl std::fmt::Debug for Partials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, bytes) = self.size();
        f.debug_struct("Partials")
            .field("entries", &entries)
            .field("bytes", &bytes)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Partials {
    pub fn with_capacity(capacity: usize) -> Self {
        Partials {
            inner: Mutex::default(),
            capacity,
            hits: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Partials kept and their estimated bytes.
    pub fn size(&self) -> (usize, usize) {
        let g = self.lock();
        (g.map.len(), g.bytes)
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Arc<Accumulator>> {
        let mut g = self.lock();
        g.clock += 1;
        let now = g.clock;
        let e = g.map.get_mut(key)?;
        e.used = now;
        self.hits.fetch_add(1, Relaxed);
        Some(e.partial.clone())
    }

    /// Keeps `partial` for `key`, evicting the least recently used partials
    /// past the capacity. A partial larger than the whole capacity is not kept.
    pub(crate) fn put(&self, key: Key, partial: Accumulator) {
        let bytes = key.bytes() + partial.approx_bytes();
        if bytes > self.capacity {
            return;
        }
        let mut g = self.lock();
        g.clock += 1;
        let used = g.clock;
        let entry = Entry {
            partial: Arc::new(partial),
            bytes,
            used,
        };
        if let Some(old) = g.map.insert(key, entry) {
            g.bytes -= old.bytes;
        }
        g.bytes += bytes;
        while g.bytes > self.capacity {
            let Some(oldest) = g
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = g.map.remove(&oldest) {
                g.bytes -= e.bytes;
            }
        }
    }
}

impl Partials {
    /// For a segment `output` that holds exactly the rows of the segments
    /// `inputs` (a merge by compaction): keeps the merge of their parts, for
    /// every kind of comparison that has a part of each input, so the merge
    /// is not read again.
    pub(crate) fn carry(&self, inputs: &[String], output: &str) {
        let merged: Vec<(Key, Accumulator)> = {
            let g = self.lock();
            let mut groups: HashMap<Key, Vec<Arc<Accumulator>>> = HashMap::new();
            for (k, e) in &g.map {
                if inputs.contains(&k.segment) {
                    let mut to = k.clone();
                    to.segment = output.to_string();
                    groups.entry(to).or_default().push(e.partial.clone());
                }
            }
            groups
                .into_iter()
                .filter(|(_, parts)| parts.len() == inputs.len())
                .map(|(k, parts)| {
                    let mut acc = (*parts[0]).clone();
                    for p in &parts[1..] {
                        acc.merge(p);
                    }
                    (k, acc)
                })
                .collect()
        };
        for (k, acc) in merged {
            self.put(k, acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(service: &str) -> Selector {
        Selector {
            service: service.into(),
            baseline: "1.0".into(),
            canary: "1.1".into(),
            by: super::super::By::Version,
            from: None,
            to: None,
        }
    }

    #[test]
    fn a_partial_is_found_only_under_its_own_key() {
        let p = Partials::default();
        let facets: Arc<[String]> = vec!["http.route".to_string()].into();
        let key = Key::new(Signal::Traces, "a.parquet".into(), &sel("s"), &facets);
        p.put(
            key.clone(),
            Accumulator::with_facets(&sel("s"), facets.clone()),
        );
        assert!(p.get(&key).is_some());
        let other_service = Key::new(Signal::Traces, "a.parquet".into(), &sel("t"), &facets);
        let other_file = Key::new(Signal::Traces, "b.parquet".into(), &sel("s"), &facets);
        let other_signal = Key::new(Signal::Logs, "a.parquet".into(), &sel("s"), &facets);
        let no_facets = Key::new(
            Signal::Traces,
            "a.parquet".into(),
            &sel("s"),
            &Arc::from([]),
        );
        let by_role = Key::new(
            Signal::Traces,
            "a.parquet".into(),
            &Selector {
                by: super::super::By::Role,
                ..sel("s")
            },
            &facets,
        );
        for k in [other_service, other_file, other_signal, no_facets, by_role] {
            assert!(p.get(&k).is_none(), "{k:?}");
        }
        assert_eq!(p.hits.load(Relaxed), 1);
        // The window is not part of the key: only whole segments are kept.
        let windowed = Selector {
            from: Some("2026-12-01T00:00:00Z".parse().unwrap()),
            ..sel("s")
        };
        assert!(p
            .get(&Key::new(
                Signal::Traces,
                "a.parquet".into(),
                &windowed,
                &facets
            ))
            .is_some());
    }

    #[test]
    fn a_merge_gets_a_part_only_where_every_input_has_one() {
        let p = Partials::default();
        let facets: Arc<[String]> = Arc::from([]);
        let key = |seg: &str, svc: &str| Key::new(Signal::Traces, seg.into(), &sel(svc), &facets);
        let part = |svc: &str| Accumulator::with_facets(&sel(svc), facets.clone());
        p.put(key("a", "s"), part("s"));
        p.put(key("b", "s"), part("s"));
        p.put(key("a", "t"), part("t"));
        p.carry(&["a".into(), "b".into()], "m");
        assert!(p.get(&key("m", "s")).is_some());
        assert!(p.get(&key("m", "t")).is_none(), "b has no part for t");
        assert_eq!(p.size().0, 4);
    }

    #[test]
    fn the_least_recently_used_partials_go_past_the_capacity() {
        let facets: Arc<[String]> = Arc::from([]);
        let key = |i: usize| Key::new(Signal::Traces, format!("{i}.parquet"), &sel("s"), &facets);
        let one =
            key(0).bytes() + Accumulator::with_facets(&sel("s"), facets.clone()).approx_bytes();
        let p = Partials::with_capacity(3 * one);
        for i in 0..3 {
            p.put(key(i), Accumulator::with_facets(&sel("s"), facets.clone()));
        }
        assert_eq!(p.size(), (3, 3 * one));
        assert!(p.get(&key(0)).is_some(), "0 is now the most recently used");
        p.put(key(3), Accumulator::with_facets(&sel("s"), facets.clone()));
        assert_eq!(p.size(), (3, 3 * one));
        assert!(p.get(&key(1)).is_none(), "1 was the least recently used");
        for i in [0, 2, 3] {
            assert!(p.get(&key(i)).is_some(), "{i}");
        }
        // Too large to keep at all.
        let tiny = Partials::with_capacity(one - 1);
        tiny.put(key(0), Accumulator::with_facets(&sel("s"), facets));
        assert_eq!(tiny.size(), (0, 0));
    }
}
