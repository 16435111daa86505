//! Incremental comparisons: a [`Subscription`] keeps the running
//! [`Accumulator`] of one selector (a watched rollout), so a look costs
//! the histograms' size, not a re-read of the window.
//!
//! ```text
//!  subscribe(sel):  under the registry lock, take a view of each table
//!                   (hot batches, segments, next sequence number S) and
//!                   register; then scan that view (as compare would)
//!  writer, per appended batch (sequence s, one service):
//!                   every subscription of that service with s ≥ S adds it
//!  look:            the accumulator's observations, then judge
//! ```
//!
//! A batch is either in the view (s < S) or fed (s ≥ S), never both and
//! never neither, so a look sees exactly the rows a from-scratch `compare`
//! of the same selector would (a test checks that the verdicts agree).
//! Flushes and compaction move rows between memory and Parquet without
//! changing them, so they need no bookkeeping here; retention deleting rows
//! inside a watched window is not subtracted.
//!
//! In a cluster, segments other nodes wrote reach this node by listing
//! ([`add_listed`]): each is either in a subscription's initial view or read
//! into it when first listed, never both (both happen under the registry lock).

use crate::compare::source::{items, scan_items};
use crate::compare::{Accumulator, Observations, Selector};
use crate::error::Result;
use crate::remote::Remote;
use crate::segment::Segment;
use crate::store::{Hot, Store};
use graylens_collector::Signal;
use std::sync::{Arc, Mutex, Weak};

#[derive(Debug)]
struct State {
    acc: Accumulator,
    /// Per table, the first sequence number not in the initial view.
    from_seq: [u64; 3],
    /// Batches of the service added since the initial view.
    fed: u64,
    /// A new segment of another node could not be read into it: it misses
    /// rows, and its user must start it again (`Subscription::is_stale`).
    stale: bool,
}

/// The running comparisons, fed by the store's appends.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    subs: Mutex<Vec<Weak<Mutex<State>>>>,
    /// Notified when a batch reached a running comparison, so the alert
    /// engine can judge as data arrives (one wake-up is kept while nobody
    /// waits).
    pub(crate) arrived: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    pub(crate) fn feed(&self, signal: Signal, hots: &[Arc<Hot>]) {
        if signal == Signal::Metrics || hots.is_empty() {
            return;
        }
        let mut subs = lock(&self.subs);
        subs.retain(|w| w.strong_count() > 0);
        let mut fed = false;
        for w in subs.iter() {
            let Some(st) = w.upgrade() else { continue };
            let mut st = lock(&st);
            let from = st.from_seq[signal as usize];
            for h in hots {
                if h.seq < from || *h.service != *st.acc.selector().service {
                    continue;
                }
                match signal {
                    Signal::Logs => st.acc.add_logs(&h.batch),
                    _ => st.acc.add_spans(&h.batch),
                }
                st.fed += 1;
                fed = true;
            }
        }
        drop(subs);
        if fed {
            self.arrived.notify_one();
        }
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.subs)
            .iter()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

/// One selector's running comparison; dropping it stops the feed.
#[derive(Debug)]
pub struct Subscription {
    state: Arc<Mutex<State>>,
    sel: Selector,
    /// Parquet files read by the initial scan.
    pub files_scanned: u64,
}

impl Subscription {
    /// Registers `sel` and reads what is already stored; from then on every
    /// new batch of its service is added as it arrives.
    /// `facets`: the attributes counted for explanations.
    pub async fn start(
        store: &Arc<Store>,
        sel: Selector,
        facets: Arc<[String]>,
    ) -> Result<Subscription> {
        let mut work = Vec::new();
        let state = {
            let mut subs = lock(&store.live.subs);
            let mut from_seq = [0; 3];
            for signal in [Signal::Traces, Signal::Logs] {
                let (hot, segments, next) = store.view(signal);
                from_seq[signal as usize] = next;
                items(store, signal, (hot, segments), &sel, &mut work);
            }
            let state = Arc::new(Mutex::new(State {
                acc: Accumulator::with_facets(&sel, facets.clone()),
                from_seq,
                fed: 0,
                stale: false,
            }));
            subs.push(Arc::downgrade(&state));
            state
        };
        let (base, files_scanned) = scan_items(work, &sel, facets, &store.partials).await?;
        store
            .stats
            .segments_read
            .fetch_add(files_scanned, std::sync::atomic::Ordering::Relaxed);
        lock(&state).acc.merge(&base);
        Ok(Subscription {
            state,
            sel,
            files_scanned,
        })
    }

    pub fn selector(&self) -> &Selector {
        &self.sel
    }

    /// The attributes counted for explanations.
    pub fn facets(&self) -> Arc<[String]> {
        lock(&self.state).acc.facet_keys().clone()
    }

    /// Batches of the service added since the start (a look that read this
    /// many has seen everything fed before it).
    pub fn fed(&self) -> u64 {
        lock(&self.state).fed
    }

    /// Everything seen so far (spans and logs; OTLP metrics are read apart).
    pub fn observations(&self) -> Observations {
        lock(&self.state).acc.observations()
    }

    /// Requests seen so far (baseline, canary).
    pub fn requests(&self) -> (u64, u64) {
        lock(&self.state).acc.requests()
    }

    /// Whether a segment another node wrote could not be read into this
    /// comparison (a failed read from the object store): it misses those
    /// rows for good, so start a new one.
    pub fn is_stale(&self) -> bool {
        lock(&self.state).stale
    }
}

/// Adds segments other nodes wrote, found by a listing: `update` puts them
/// in the store's view and pushes those new to this node. Under the
/// registry lock, so each running comparison either had a segment in its
/// initial view or reads it here, never both. Reads on the calling
/// (blocking) thread, through the object-store runtime.
pub(crate) fn add_listed(
    store: &Store,
    r: &Arc<Remote>,
    update: impl FnOnce(&mut Vec<(Signal, Segment)>),
) {
    let mut fresh = Vec::new();
    let work: Vec<_> = {
        let mut subs = lock(&store.live.subs);
        update(&mut fresh);
        subs.retain(|w| w.strong_count() > 0);
        subs.iter()
            .filter_map(Weak::upgrade)
            .filter_map(|st| {
                let (sel, facets) = {
                    let s = lock(&st);
                    (s.acc.selector().clone(), s.acc.facet_keys().clone())
                };
                let mut work = Vec::new();
                for (signal, g) in &fresh {
                    if matches!(signal, Signal::Traces | Signal::Logs) {
                        items(
                            store,
                            *signal,
                            (Vec::new(), vec![g.clone()]),
                            &sel,
                            &mut work,
                        );
                    }
                }
                (!work.is_empty()).then_some((st, sel, facets, work))
            })
            .collect()
    };
    let fed = !work.is_empty();
    for (st, sel, facets, work) in work {
        let partials = store.partials.clone();
        let service = sel.service.clone();
        match r.block_on(async move { scan_items(work, &sel, facets, &partials).await }) {
            Ok((acc, files)) => {
                store
                    .stats
                    .segments_read
                    .fetch_add(files, std::sync::atomic::Ordering::Relaxed);
                let mut st = lock(&st);
                st.acc.merge(&acc);
                st.fed += 1;
            }
            // The listing already counts the segment as known: this
            // comparison would never get it, so it starts over instead.
            Err(e) => {
                tracing::warn!(%service, error = %e,
                    "a running comparison could not read another node's new segment; it starts again at its next look");
                lock(&st).stale = true;
            }
        }
    }
    if fed {
        store.live.arrived.notify_one();
    }
}

impl Store {
    /// Incremental comparisons registered now.
    pub fn subscriptions(&self) -> usize {
        self.live.len()
    }
}
