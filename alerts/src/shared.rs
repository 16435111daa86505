//! Rollouts shared by the nodes of a cluster (`storage.url`): one registry
//! in the object store, and one actor per rollout chosen by a lease.
//!
//! ```text
//!  {prefix}/rollouts/{id}.json   the rollout: spec, state, outbox (the registry),
//!                                or its tombstone once deleted (kept 7 days)
//!  {prefix}/leases/{id}.json     {"node", "until_ms"}: the node that acts for it
//!
//!  every lease/3, and when a rollout changed here (Alerts::sync_registry):
//!    push    rollouts changed here, if the registry still has the version read
//!            (a conflict: the registry's is adopted, the change here dropped)
//!    delete  rollouts deleted here: their tombstone replaces them
//!    adopt   rollouts new or changed elsewhere; drop those with a tombstone
//!            (a holder still judging one, or a node that loads it from its
//!            disk after being down, would otherwise write it back)
//!    leases  keep; renew with a third left; take one that expired — each a
//!            conditional write (create-if-absent, update-if-ETag-matches)
//!  acting:   only the holder applies verdicts and sends deliveries, and only once
//!            the rollout holding them is in the registry, so an old holder whose
//!            write fails never sends what it could not record
//! ```
//!
//! Every node judges every rollout (so a new holder's comparison is warm);
//! a holder that dies is replaced once its lease has expired, within about
//! one and a third lease periods; the new holder sends the outbox it
//! adopted, under the same `Idempotency-Key`s. Leases compare wall clocks:
//! nodes' clocks must agree to well within a lease period (NTP).

use crate::engine::{refresh_hints, Alerts};
use crate::persist;
use crate::rollout::Rollout;
use graylens_analyzer::remote::{Remote, UpdateVersion};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What `leases/{id}.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    node: String,
    until_ms: i64,
}

/// What `rollouts/{id}.json` holds once the rollout was deleted, for
/// `TOMBSTONE_TTL_MS`: a node still holding the rollout (judging it, or
/// loading it from its disk after being down) drops it instead of writing
/// it back, which a removed object would have let it do.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tombstone {
    id: String,
    deleted_at_ms: i64,
}

/// How long a deleted rollout's tombstone stays in the registry (7 days);
/// a node down for longer brings back, from its disk, rollouts deleted
/// meanwhile.
const TOMBSTONE_TTL_MS: i64 = 7 * 24 * 3_600_000;

/// What this node knows of a lease.
#[derive(Debug, Clone)]
struct LeaseView {
    node: String,
    until_ms: i64,
    version: Option<UpdateVersion>,
}

#[derive(Debug, Default)]
struct State {
    leases: HashMap<String, LeaseView>,
    /// The registry version of each rollout as last read or written here.
    versions: HashMap<String, UpdateVersion>,
    /// Changed here, not yet in the registry.
    dirty: HashSet<String>,
    /// Deleted here, still in the registry.
    tombstones: HashSet<String>,
    /// Tombstones seen in the registry, and when they were written (ms):
    /// removed from it once older than `TOMBSTONE_TTL_MS`.
    deleted: HashMap<String, i64>,
}

/// This node's side of the shared registry.
pub(crate) struct Shared {
    remote: Arc<Remote>,
    node: String,
    lease: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared({})", self.node)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rollout_key(id: &str) -> String {
    format!("rollouts/{id}.json")
}

fn lease_key(id: &str) -> String {
    format!("leases/{id}.json")
}

impl Shared {
    pub fn new(remote: Arc<Remote>, node: String, lease: Duration) -> Self {
        Shared {
            remote,
            node,
            lease,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How often leases and the registry are looked at.
    pub fn period(&self) -> Duration {
        self.lease / 3
    }

    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    /// Whether this node may act for `id` now: it holds the lease with at
    /// least a third of it left (so it stops before anyone may take over).
    pub fn holds(&self, id: &str) -> bool {
        self.state()
            .leases
            .get(id)
            .is_some_and(|l| l.node == self.node && l.until_ms - now_ms() > self.lease_ms() / 3)
    }

    /// The node holding `id`'s lease, as last seen here. Another node's
    /// lease is re-read only once it has expired here, at this node's next
    /// look (within one period, later on a busy node or a slow object
    /// store), and a live holder has renewed it by then: so a lease seen
    /// expired for less than two periods is still reported (not "no actor"
    /// between a holder's renewal and this node's re-read).
    pub fn holder(&self, id: &str) -> Option<String> {
        let grace = 2 * self.period().as_millis() as i64;
        self.state()
            .leases
            .get(id)
            .filter(|l| l.until_ms + grace > now_ms())
            .map(|l| l.node.clone())
    }

    pub fn mark_dirty(&self, id: &str) {
        self.state().dirty.insert(id.to_string());
    }

    pub fn is_dirty(&self, id: &str) -> bool {
        self.state().dirty.contains(id)
    }

    pub fn tombstone(&self, id: &str) {
        let mut s = self.state();
        s.dirty.remove(id);
        s.tombstones.insert(id.to_string());
    }

    /// Writes `r` if the registry still has the version this node last saw
    /// (or creates it). `Ok(false)`: someone else wrote first.
    async fn push(&self, r: &Rollout) -> graylens_analyzer::Result<bool> {
        let version = self.state().versions.get(&r.id).cloned();
        let body = serde_json::to_vec(r).expect("a rollout serializes");
        match self
            .remote
            .put_if(&rollout_key(&r.id), body, version)
            .await?
        {
            Some(v) => {
                self.state().versions.insert(r.id.clone(), v);
                Ok(true)
            }
            None => {
                self.state().versions.remove(&r.id);
                Ok(false)
            }
        }
    }

    /// Gives up this node's leases (at a graceful stop): another node takes
    /// over at its next look instead of waiting for them to expire.
    pub async fn release(&self) {
        let mine: Vec<(String, Option<UpdateVersion>)> = self
            .state()
            .leases
            .iter()
            .filter(|(_, l)| l.node == self.node)
            .map(|(id, l)| (id.clone(), l.version.clone()))
            .collect();
        for (id, version) in mine {
            let gone = Lease {
                node: self.node.clone(),
                until_ms: 0,
            };
            let body = serde_json::to_vec(&gone).expect("a lease serializes");
            if self
                .remote
                .put_if(&lease_key(&id), body, version)
                .await
                .is_ok()
            {
                self.state().leases.remove(&id);
            }
        }
    }

    /// Keeps, renews or takes the lease of each of `ids`; forgets others.
    async fn maintain_leases(&self, ids: &[String]) {
        self.state()
            .leases
            .retain(|id, _| ids.iter().any(|i| i == id));
        for id in ids {
            let now = now_ms();
            let known = self.state().leases.get(id).cloned();
            match &known {
                Some(l) if l.node == self.node && l.until_ms - now > self.lease_ms() * 2 / 3 => {
                    continue
                }
                Some(l) if l.node != self.node && l.until_ms > now => continue,
                _ => {}
            }
            if let Err(e) = self.claim(id, known).await {
                tracing::warn!(rollout = %id, error = %e, "lease: object store unavailable; not acting until it answers");
            }
        }
    }

    /// Renews this node's lease of `id`, or takes it if absent or expired.
    async fn claim(&self, id: &str, known: Option<LeaseView>) -> graylens_analyzer::Result<()> {
        let key = lease_key(id);
        let now = now_ms();
        // Renewing: a write conditional on the version this node wrote.
        let (current, version) = match known.filter(|l| l.node == self.node && l.version.is_some())
        {
            Some(mine) => (
                Some(Lease {
                    node: mine.node,
                    until_ms: mine.until_ms,
                }),
                mine.version,
            ),
            None => match self.remote.get_versioned(&key).await? {
                None => (None, None),
                Some((body, v)) => match serde_json::from_slice::<Lease>(&body) {
                    Ok(l) => (Some(l), Some(v)),
                    Err(_) => (None, Some(v)),
                },
            },
        };
        if let Some(l) = &current {
            if l.node != self.node && l.until_ms > now {
                self.state().leases.insert(
                    id.to_string(),
                    LeaseView {
                        node: l.node.clone(),
                        until_ms: l.until_ms,
                        version: None,
                    },
                );
                return Ok(());
            }
        }
        let mine = Lease {
            node: self.node.clone(),
            until_ms: now + self.lease_ms(),
        };
        let body = serde_json::to_vec(&mine).expect("a lease serializes");
        let taking = current.as_ref().is_none_or(|l| l.node != self.node);
        match self.remote.put_if(&key, body, version).await? {
            Some(v) => {
                if taking {
                    tracing::info!(rollout = %id, node = %self.node, "lease: this node now acts for the rollout");
                }
                self.state().leases.insert(
                    id.to_string(),
                    LeaseView {
                        node: mine.node,
                        until_ms: mine.until_ms,
                        version: Some(v),
                    },
                );
            }
            // Someone else wrote it first: look again next period.
            None => {
                self.state().leases.remove(id);
            }
        }
        Ok(())
    }
}

impl Alerts {
    /// One exchange with the registry (see the module doc). Never fails:
    /// problems are logged and retried next period.
    pub(crate) async fn sync_registry(&self) {
        let Some(sh) = self.inner.shared.clone() else {
            return;
        };
        if let Err(e) = self.exchange(&sh).await {
            tracing::warn!(error = %e, "rollout registry: object store unavailable; retried next period");
        }
        // Rollouts still judged, or with actions still to send.
        let live: Vec<String> = self
            .lock()
            .values()
            .filter(|r| {
                !r.phase.is_terminal()
                    || r.deliveries
                        .iter()
                        .any(|d| d.status == crate::rollout::DeliveryStatus::Pending)
            })
            .map(|r| r.id.clone())
            .collect();
        sh.maintain_leases(&live).await;
    }

    async fn exchange(&self, sh: &Shared) -> graylens_analyzer::Result<()> {
        // Push what changed here.
        let dirty: Vec<String> = sh.state().dirty.iter().cloned().collect();
        for id in dirty {
            let Some(r) = self.lock().get(&id).cloned() else {
                sh.state().dirty.remove(&id);
                continue;
            };
            let pushed = sh.push(&r).await?;
            sh.state().dirty.remove(&id);
            if pushed {
                self.inner.wake.notify_one();
            } else {
                tracing::warn!(rollout = %id, "rollout registry: changed elsewhere meanwhile; the registry's version is adopted and this change dropped");
            }
        }
        let tombstones: Vec<String> = sh.state().tombstones.iter().cloned().collect();
        for id in tombstones {
            let gone = Tombstone {
                id: id.clone(),
                deleted_at_ms: now_ms(),
            };
            let body = serde_json::to_vec(&gone).expect("a tombstone serializes");
            sh.remote.put_async(&rollout_key(&id), body).await?;
            sh.remote.delete_async(&lease_key(&id)).await?;
            let mut s = sh.state();
            s.tombstones.remove(&id);
            s.versions.remove(&id);
        }
        // Adopt what changed elsewhere.
        let listed: HashMap<String, Option<String>> = sh
            .remote
            .list_tags("rollouts")
            .await?
            .into_iter()
            .filter_map(|(k, tag)| {
                let id = k.strip_prefix("rollouts/")?.strip_suffix(".json")?;
                Some((id.to_string(), tag))
            })
            .collect();
        for (id, tag) in &listed {
            let seen = {
                let s = sh.state();
                // Changed here since the version read: pushed next time.
                // Without a version (a push that failed) it is read again.
                let changed_here = s.dirty.contains(id) && s.versions.contains_key(id);
                s.tombstones.contains(id)
                    || changed_here
                    || (tag.is_some()
                        && s.versions.get(id).and_then(|v| v.e_tag.as_ref()) == tag.as_ref())
            };
            if seen {
                continue;
            }
            let Some((body, v)) = sh.remote.get_versioned(&rollout_key(id)).await? else {
                continue;
            };
            if let Ok(gone) = serde_json::from_slice::<Tombstone>(&body) {
                self.drop_deleted(sh, id, &gone, v).await?;
                continue;
            }
            let theirs: Rollout = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(rollout = %id, error = %e, "rollout registry: unreadable rollout; ignored");
                    continue;
                }
            };
            self.adopt(sh, theirs, v);
        }
        self.expire_tombstones(sh, &listed).await?;
        // Deleted elsewhere (was in the registry), or never pushed (push it).
        let local: Vec<String> = self.lock().keys().cloned().collect();
        for id in local.into_iter().filter(|id| !listed.contains_key(id)) {
            let was_shared = sh.state().versions.remove(&id).is_some();
            if was_shared {
                tracing::info!(rollout = %id, "rollout registry: deleted on another node");
                let mut map = self.lock();
                map.remove(&id);
                let _ = persist::remove(&self.inner.dir, &id);
                refresh_hints(&self.inner.hints, &map);
            } else {
                sh.mark_dirty(&id);
            }
        }
        Ok(())
    }

    /// A rollout deleted on some node: gone here too (its pending
    /// deliveries with it), unless the rollout here was created after the
    /// delete (declared again in a config file, say): then it is a new one,
    /// written over the tombstone.
    async fn drop_deleted(
        &self,
        sh: &Shared,
        id: &str,
        gone: &Tombstone,
        v: UpdateVersion,
    ) -> graylens_analyzer::Result<()> {
        let newer = {
            let mut map = self.lock();
            let newer = map
                .get(id)
                .is_some_and(|r| r.created_at.timestamp_millis() > gone.deleted_at_ms);
            let mut s = sh.state();
            s.versions.insert(id.to_string(), v);
            if newer {
                s.dirty.insert(id.to_string());
            } else {
                s.dirty.remove(id);
                s.deleted.insert(id.to_string(), gone.deleted_at_ms);
            }
            drop(s);
            if !newer && map.remove(id).is_some() {
                tracing::info!(rollout = %id, "rollout registry: deleted on another node");
                if let Err(e) = persist::remove(&self.inner.dir, id) {
                    tracing::error!(rollout = %id, error = %e, "could not remove the rollout file");
                }
                refresh_hints(&self.inner.hints, &map);
            }
            newer
        };
        if newer {
            self.inner.registry_wake.notify_one();
        }
        Ok(())
    }

    /// Removes the tombstones older than `TOMBSTONE_TTL_MS` from the
    /// registry, and forgets those no longer listed.
    async fn expire_tombstones(
        &self,
        sh: &Shared,
        listed: &HashMap<String, Option<String>>,
    ) -> graylens_analyzer::Result<()> {
        let now = now_ms();
        let old: Vec<String> = {
            let mut s = sh.state();
            s.deleted.retain(|id, _| listed.contains_key(id));
            s.deleted
                .iter()
                .filter(|(_, at)| now - **at > TOMBSTONE_TTL_MS)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in old {
            sh.remote.delete_async(&rollout_key(&id)).await?;
            let mut s = sh.state();
            s.deleted.remove(&id);
            s.versions.remove(&id);
        }
        Ok(())
    }

    /// Takes the registry's version of a rollout. A rollout declared in this
    /// node's config whose declaration differs keeps the local one and
    /// writes it (the config file is the source of truth for those).
    fn adopt(&self, sh: &Shared, theirs: Rollout, v: UpdateVersion) {
        let mut map = self.lock();
        let id = theirs.id.clone();
        sh.state().versions.insert(id.clone(), v);
        if let Some(mine) = map.get(&id) {
            if mine.origin == crate::rollout::Origin::Config && mine.spec != theirs.spec {
                sh.mark_dirty(&id);
                return;
            }
        }
        if let Err(e) = persist::save(&self.inner.dir, &theirs) {
            tracing::error!(rollout = %id, error = %e, "could not write the rollout file");
        }
        map.insert(id, theirs);
        refresh_hints(&self.inner.hints, &map);
    }
}
