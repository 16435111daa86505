//! A node among others sharing one object store (`[storage] url`).
//!
//! ```text
//!  flusher, every few seconds:  put nodes/{me}.json (flushed_through_ms)
//!                               read every nodes/*.json, then list segments
//!                               other nodes' segments: replaced by the listing;
//!                               those new here are added to running comparisons
//!  answers:                     as_of = min over live other nodes of flushed_through_ms
//! ```
//!
//! This node's own segments are kept as it knows them (it wrote them). A
//! marker is read before the listing, so the listing holds every segment
//! its node had written when it wrote the marker.

use crate::error::Result;
use crate::remote::{NodeMark, Remote};
use crate::segment::{self, Segment};
use crate::store::{idx, now_ms, Store};
use graylens_collector::Signal;
use std::sync::Arc;

/// What this node knows of the others sharing its object store.
#[derive(Debug, Default, Clone)]
pub struct ClusterView {
    /// When segments were last listed (ms); 0 = never.
    pub listed_ms: i64,
    /// The nodes' markers read just before that listing (this node's too).
    pub marks: Vec<NodeMark>,
}

/// A node whose marker is older than this is taken as gone: its rows not
/// yet stored reach the store when it restarts and replays its log.
pub const NODE_GONE_MS: i64 = 60_000;

/// A pause in a service's traffic longer than this, and its next rows
/// start a new run of receipts (its traffic may have been elsewhere).
pub const RECEIVING_GAP_MS: i64 = 30_000;

/// The segments of `table` in the object store.
pub(crate) fn list_remote(r: &Remote, table: Signal) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    for (key, bytes, mtime_ms) in r.list(table.table())? {
        match segment::parse(&key, bytes, mtime_ms) {
            Some(s) => out.push(s),
            None => tracing::warn!(key, "ignoring an object not written by graylens"),
        }
    }
    Ok(out)
}

impl Store {
    /// Every row this node acknowledged before this instant (ms) is in
    /// Parquet: the start of the oldest generation still in memory, or now.
    pub fn flushed_through_ms(&self) -> i64 {
        // Under the lock `seal` holds throughout; what is older than the
        // oldest generation in memory is already gone (each seal and flush
        // drops it).
        let starts = self.gen_starts.lock().expect("lock");
        let open = self.generation();
        let oldest = match self.sealed_generations().first() {
            Some(&g) => g,
            None if self.memory_rows_open() > 0 => open,
            None => return now_ms(),
        };
        starts.get(&oldest).copied().unwrap_or(0)
    }

    /// What this node knows of the others (empty without an object store).
    pub fn cluster(&self) -> ClusterView {
        self.cluster.read().expect("lock").clone()
    }

    /// How fresh the other nodes' part of an answer is: every row another
    /// live node acknowledged before this instant (ms) is included. `None`
    /// without an object store; now when no other node is known.
    pub fn as_of_ms(&self) -> Option<i64> {
        self.remote.as_ref()?;
        let view = self.cluster.read().expect("lock");
        let now = now_ms();
        let others = view.marks.iter().filter(|m| {
            m.node != self.cfg.node_id && view.listed_ms - m.written_ms <= NODE_GONE_MS
        });
        Some(
            others
                .map(|m| m.flushed_through_ms.min(view.listed_ms))
                .min()
                .unwrap_or(now),
        )
    }

    /// Notes that rows of `service` arrived now (a pause longer than
    /// [`RECEIVING_GAP_MS`] starts a new run).
    pub(crate) fn note_receipt(&self, service: &Arc<str>) {
        let now = now_ms();
        let mut r = self.receiving.lock().expect("lock");
        match r.get_mut(service) {
            Some((first, last)) => {
                if now - *last > RECEIVING_GAP_MS {
                    *first = now;
                }
                *last = now;
            }
            None => {
                r.insert(service.clone(), (now, now));
            }
        }
    }

    /// Since when this node has been receiving `service` without a long
    /// pause, if it is receiving it.
    fn receiving_since(&self, service: &str) -> Option<i64> {
        let now = now_ms();
        let mut r = self.receiving.lock().expect("lock");
        r.retain(|_, (_, last)| now - *last <= RECEIVING_GAP_MS);
        r.get(service).map(|(first, _)| *first)
    }

    /// The other live nodes that may still hold rows of `service` not yet
    /// stored, when that means an answer here would miss part of its
    /// window. While this node receives the service: nodes whose marker
    /// lists it as pending, and nodes whose marker is older than this run
    /// of receipts (they may have had it until the ring changed). While it
    /// does not: nodes listing it as pending if there are two or more (its
    /// traffic moving between them); one alone is the usual lag of an
    /// answer for a service received elsewhere (see `as_of`). Empty without
    /// an object store.
    pub fn waiting_for(&self, service: &str) -> Vec<String> {
        if self.remote.is_none() {
            return Vec::new();
        }
        let since = self.receiving_since(service);
        let view = self.cluster.read().expect("lock");
        let others = view.marks.iter().filter(|m| {
            m.node != self.cfg.node_id && view.listed_ms - m.written_ms <= NODE_GONE_MS
        });
        let holding = |m: &&NodeMark| m.pending.iter().any(|s| s == service);
        let out: Vec<String> = match since {
            Some(first) => others
                .filter(|m| holding(m) || m.written_ms < first)
                .map(|m| m.node.clone())
                .collect(),
            None => {
                let pending: Vec<String> = others.filter(holding).map(|m| m.node.clone()).collect();
                if pending.len() >= 2 {
                    pending
                } else {
                    Vec::new()
                }
            }
        };
        out
    }

    /// With an object store: writes this node's marker, reads every node's,
    /// then lists the segments. This node's segments are kept as it knows
    /// them (it wrote them); the others' are replaced by the listing, and
    /// those new to this node are added to the running comparisons.
    /// Blocking.
    pub fn sync_cluster(&self) -> Result<()> {
        let Some(r) = self.remote.clone() else {
            return Ok(());
        };
        r.put_mark(&NodeMark {
            node: self.cfg.node_id.clone(),
            flushed_through_ms: self.flushed_through_ms(),
            written_ms: now_ms(),
            pending: self.pending_services().into_iter().collect(),
        })?;
        let listed_ms = now_ms();
        let marks = r.marks()?;
        let mut listed = Vec::new();
        for s in Signal::ALL {
            listed.push(list_remote(&r, s)?);
        }
        crate::live::add_listed(self, &r, |fresh| {
            for (s, found) in Signal::ALL.into_iter().zip(listed) {
                let mut t = self.tables[idx(s)].write().expect("lock");
                let before = std::mem::take(&mut t.segments);
                let known: std::collections::HashSet<&str> =
                    before.iter().map(|g| g.key.as_str()).collect();
                let theirs: Vec<Segment> = found
                    .into_iter()
                    .filter(|g| g.node != self.cfg.node_id)
                    .collect();
                // Running comparisons get new rows only: a merge of files
                // known before (or listed with it) adds none. So no row is
                // counted twice; a listing stalled for longer than
                // compact::GRACE can leave out the rows of merged inputs it
                // never listed.
                for g in &theirs {
                    let merge = theirs
                        .iter()
                        .chain(&before)
                        .any(|o| segment::supersedes(g, o));
                    if !known.contains(g.key.as_str()) && !merge {
                        fresh.push((s, g.clone()));
                    }
                }
                t.segments = before
                    .into_iter()
                    .filter(|g| g.node == self.cfg.node_id)
                    .chain(theirs)
                    .collect();
            }
        });
        *self.cluster.write().expect("lock") = ClusterView { listed_ms, marks };
        Ok(())
    }
}
