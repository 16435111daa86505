//! The alert engine: the registry of watched rollouts, and the loop that
//! judges each of them every `interval`, and as its data arrives (see
//! `arrival`), with the analyzer's anytime-valid tests and moves its state
//! machine.
//!
//! The engine runs on the query runtime the binary hands it, never on the
//! ingest runtime, so a slow comparison cannot stall ingestion. Every change
//! to a rollout is written to its file before anything is sent (see
//! [`crate::persist`]), so an action decided is an action delivered, even
//! across a crash.
//!
//! Also here: `judge` (one look at a rollout: its incremental comparison
//! and verdict), `arrival` (looks as data arrives), `state` (phase
//! transitions, a rollback superseding pending actions, role hints for the
//! collector).

mod arrival;
mod judge;
mod state;

use state::supersede;
pub(crate) use state::{refresh_hints, transition};

use crate::actions::{deliveries, RetryPolicy};
use crate::error::{Error, Result};
use crate::machine::{self, Rules};
use crate::persist;
use crate::rollout::{ActionKind, DeliveryStatus, Evaluation, Origin, Rollout, SideCounts};
use crate::spec::{PolicyRef, RolloutSpec};
use chrono::{DateTime, Utc};
use graylens_analyzer::compare::{assemble, observe_metrics};
use graylens_analyzer::{Comparison, Decision, Policy, Selector, Subscription, Tables};
use graylens_collector::RoleHints;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Settings of the engine (config `[alerts]`).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertsConfig {
    /// How often each rollout is judged.
    pub interval: Duration,
    pub rules: Rules,
    pub retry: RetryPolicy,
    /// Most rollouts kept at once (finished ones count until deleted).
    pub max_rollouts: usize,
    /// Where actions of API-registered rollouts may go.
    pub allowed_targets: crate::targets::AllowedTargets,
    /// In a cluster: how long a node's claim to act for a rollout lasts
    /// (`cluster.lease_secs`).
    pub lease: Duration,
}

/// Upper bounds, in seconds, of the buckets of evaluation durations.
pub const EVALUATION_BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
];

/// Counters for logs and `/metrics`.
#[derive(Debug, Default)]
pub struct AlertStats {
    pub evaluations: AtomicU64,
    pub evaluation_errors: AtomicU64,
    /// Sum of evaluation durations, in microseconds.
    pub evaluation_micros: AtomicU64,
    /// Evaluations per duration bucket: those that took at most
    /// [`EVALUATION_BUCKETS`]`[i]` seconds and more than the bound before
    /// (the last counts the rest).
    pub evaluation_buckets: [AtomicU64; EVALUATION_BUCKETS.len() + 1],
    pub deliveries_delivered: AtomicU64,
    pub deliveries_retried: AtomicU64,
    pub deliveries_failed: AtomicU64,
    pub hook_calls: AtomicU64,
    /// Times the engine panicked and was restarted.
    pub restarts: AtomicU64,
}

/// The handle shared by the engine loop, the delivery loop and the API.
#[derive(Clone)]
pub struct Alerts {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) rollouts: Mutex<BTreeMap<String, Rollout>>,
    pub(crate) dir: PathBuf,
    pub(crate) tables: Tables,
    pub(crate) policies: BTreeMap<String, Arc<Policy>>,
    pub(crate) cfg: AlertsConfig,
    /// Wakes the delivery loop when something was queued.
    pub(crate) wake: Notify,
    pub(crate) stats: AlertStats,
    /// Roles for the collector: the versions of the rollouts being watched.
    pub(crate) hints: RoleHints,
    /// Per rollout, its incremental comparison (see `graylens_analyzer::live`).
    pub(crate) subs: tokio::sync::Mutex<BTreeMap<String, Arc<Subscription>>>,
    /// In a cluster: the shared registry and leases (see [`crate::shared`]).
    pub(crate) shared: Option<Arc<crate::shared::Shared>>,
    /// Wakes the registry exchange when a rollout changed here.
    pub(crate) registry_wake: Notify,
    /// When each rollout's file was last written after a look.
    pub(crate) saved: Mutex<std::collections::HashMap<String, Instant>>,
    /// Wakes the engine to give a new rollout its first look at once.
    pub(crate) look_wake: Notify,
    /// Looks as data arrives: what each rollout's last look saw, and the
    /// time they may take (see `arrival`).
    pub(crate) arrivals: Mutex<arrival::Arrivals>,
}

/// A look that changes nothing but the rollout's evaluation history is
/// written at most this often (a write is a sync of the file and its
/// directory, which with hundreds of rollouts costs more than the looks):
/// a crash forgets at most this much history, never a transition, an action
/// or the start of an inconclusive stretch.
pub const HISTORY_SAVE_EVERY: Duration = Duration::from_secs(30);

impl Alerts {
    /// Loads the rollouts kept under `data_dir` and reconciles them with
    /// the ones `declared` in the config (identified by name: a changed
    /// declaration starts over, a removed one is dropped). `policies` maps
    /// names to policies and must hold `default`. `hints` receives the
    /// versions of the watched rollouts (the last rule of the rollout role).
    pub fn open(
        data_dir: &Path,
        tables: Tables,
        policies: BTreeMap<String, Arc<Policy>>,
        cfg: AlertsConfig,
        declared: &[RolloutSpec],
        hints: RoleHints,
    ) -> Result<Self> {
        let dir = persist::dir(data_dir);
        let (loaded, problems) =
            persist::load_all(&dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        for p in problems {
            tracing::error!(problem = %p, "unreadable rollout file");
        }
        let mut map: BTreeMap<String, Rollout> =
            loaded.into_iter().map(|r| (r.id.clone(), r)).collect();
        let now = Utc::now();
        let declared_ids: Vec<String> = declared.iter().map(config_id).collect();
        map.retain(|id, r| {
            let keep = r.origin != Origin::Config || declared_ids.contains(id);
            if !keep {
                tracing::info!(rollout = %id, "rollout no longer in the config; dropped");
                let _ = persist::remove(&dir, id);
            }
            keep
        });
        for (spec, id) in declared.iter().zip(declared_ids) {
            let same = map.get(&id).is_some_and(|r| r.spec == *spec);
            if !same {
                let mut r = Rollout::new(id.clone(), Origin::Config, spec.clone(), now);
                // A changed declaration starts over, but what was decided
                // still goes out: pending deliveries whose target is
                // unchanged are kept; the others are reported.
                if let Some(old) = map.get(&id) {
                    for d in old
                        .deliveries
                        .iter()
                        .filter(|d| d.status == DeliveryStatus::Pending)
                    {
                        if spec.actions.get(d.target) == old.spec.actions.get(d.target) {
                            r.deliveries.push(d.clone());
                            r.bound();
                        } else {
                            tracing::warn!(rollout = %id, delivery = %d.id, action = d.action.as_str(), url = %crate::spec::redact_url(&d.url), "pending delivery dropped: its action was changed in the config");
                        }
                    }
                }
                persist::save(&dir, &r).map_err(|e| Error::Io(e.to_string()))?;
                tracing::info!(rollout = %id, service = %spec.service, "rollout declared in the config");
                map.insert(id, r);
            }
        }
        let pending: usize = map
            .values()
            .flat_map(|r| &r.deliveries)
            .filter(|d| d.status == DeliveryStatus::Pending)
            .count();
        tracing::info!(
            rollouts = map.len(),
            pending_deliveries = pending,
            "alert engine loaded"
        );
        refresh_hints(&hints, &map);
        let store = tables.store();
        let shared = store.remote().map(|r| {
            Arc::new(crate::shared::Shared::new(
                r.clone(),
                store.config().node_id.clone(),
                cfg.lease,
            ))
        });
        Ok(Alerts {
            inner: Arc::new(Inner {
                shared,
                registry_wake: Notify::new(),
                rollouts: Mutex::new(map),
                dir,
                tables,
                policies,
                cfg,
                wake: Notify::new(),
                stats: AlertStats::default(),
                hints,
                subs: Default::default(),
                saved: Default::default(),
                look_wake: Notify::new(),
                arrivals: Default::default(),
            }),
        })
    }

    pub fn stats(&self) -> &AlertStats {
        &self.inner.stats
    }

    pub fn config(&self) -> &AlertsConfig {
        &self.inner.cfg
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Rollout>> {
        self.inner
            .rollouts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `r`; a failure is logged (the rollout stays in memory and the
    /// next change writes it again).
    pub(crate) fn save(&self, r: &Rollout) {
        if let Err(e) = persist::save(&self.inner.dir, r) {
            tracing::error!(rollout = %r.id, error = %e, "could not write the rollout file");
        }
        self.share(&r.id);
    }

    /// In a cluster: `id` changed here and goes to the registry.
    fn share(&self, id: &str) {
        if let Some(sh) = &self.inner.shared {
            sh.mark_dirty(id);
            self.inner.registry_wake.notify_one();
        }
    }

    /// Whether this node sends `id`'s deliveries now: always alone; in a
    /// cluster, when it holds the lease and the registry has the rollout
    /// as it is here.
    pub(crate) fn may_send(&self, id: &str) -> bool {
        self.inner
            .shared
            .as_ref()
            .is_none_or(|sh| sh.holds(id) && !sh.is_dirty(id))
    }

    /// A rollout as the API shows it: secrets redacted, and in a cluster the
    /// node acting for it.
    fn shown(&self, r: &Rollout) -> Rollout {
        let mut out = r.redacted();
        out.actor = self.inner.shared.as_ref().and_then(|sh| sh.holder(&r.id));
        out
    }

    /// The policy a rollout names, or why it cannot be used.
    pub fn policy(&self, r: Option<&PolicyRef>) -> std::result::Result<Arc<Policy>, String> {
        match r {
            None => Ok(self.inner.policies["default"].clone()),
            Some(PolicyRef::Inline(p)) => Ok(Arc::new((**p).clone())),
            Some(PolicyRef::Name(n)) => self
                .inner
                .policies
                .get(n)
                .or_else(|| self.inner.policies.values().find(|p| &p.name == n))
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<&str> = self.inner.policies.keys().map(String::as_str).collect();
                    format!("unknown policy {n:?}; known: {}", known.join(", "))
                }),
        }
    }

    /// Registers a rollout from the API.
    pub fn create(&self, spec: RolloutSpec) -> Result<Rollout> {
        let mut problems = spec.problems();
        for (i, a) in spec.actions.iter().enumerate() {
            if let Some(why) = self.inner.cfg.allowed_targets.refuse(a.target_url()) {
                problems.push(format!("actions[{i}]: {why}"));
            }
        }
        if let Err(e) = self.policy(spec.policy.as_ref()) {
            problems.push(e);
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let mut map = self.lock();
        if map.len() >= self.inner.cfg.max_rollouts {
            return Err(Error::Invalid(vec![format!(
                "graylens already watches {} rollouts (alerts.max_rollouts); delete finished ones first",
                map.len()
            )]));
        }
        let r = Rollout::new(
            uuid::Uuid::new_v4().to_string(),
            Origin::Api,
            spec,
            Utc::now(),
        );
        persist::save(&self.inner.dir, &r).map_err(|e| Error::Io(e.to_string()))?;
        tracing::info!(rollout = %r.id, service = %r.spec.service, baseline = %r.spec.baseline, canary = %r.spec.canary, "rollout registered");
        map.insert(r.id.clone(), r.clone());
        refresh_hints(&self.inner.hints, &map);
        drop(map);
        self.share(&r.id);
        self.inner.look_wake.notify_one();
        Ok(r.redacted())
    }

    /// Every rollout, oldest first, secrets redacted.
    pub fn list(&self) -> Vec<Rollout> {
        let mut v: Vec<Rollout> = self.lock().values().map(|r| self.shown(r)).collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }

    pub fn get(&self, id: &str) -> Option<Rollout> {
        self.lock().get(id).map(|r| self.shown(r))
    }

    /// Stops watching `id`; its pending deliveries are cancelled.
    pub fn delete(&self, id: &str) -> Result<Rollout> {
        let removed = {
            let mut map = self.lock();
            if !map.contains_key(id) {
                return Err(Error::NotFound(format!("no rollout {id:?}")));
            }
            // Its file first: if that fails, the rollout stays (in memory
            // and on disk) instead of coming back, with its pending
            // deliveries, at the next start.
            persist::remove(&self.inner.dir, id).map_err(|e| Error::Io(e.to_string()))?;
            let r = map.remove(id);
            refresh_hints(&self.inner.hints, &map);
            r
        };
        let mut r = removed.ok_or_else(|| Error::NotFound(format!("no rollout {id:?}")))?;
        self.inner
            .saved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(sh) = &self.inner.shared {
            sh.tombstone(id);
            self.inner.registry_wake.notify_one();
        }
        for d in &mut r.deliveries {
            if d.status == DeliveryStatus::Pending {
                d.status = DeliveryStatus::Cancelled;
            }
        }
        tracing::info!(rollout = %id, "rollout deleted");
        Ok(r.redacted())
    }

    /// Records `eval` on rollout `id` and moves its state machine; queues
    /// the transition's action. Skipped when the rollout was deleted or
    /// restarted (a new Flagger revision) while it was being judged.
    fn apply(&self, id: &str, since: DateTime<Utc>, eval: Evaluation, evidence: Value) {
        let rules = self.inner.cfg.rules;
        // In a cluster only the lease holder moves a rollout.
        if self.inner.shared.as_ref().is_some_and(|sh| !sh.holds(id)) {
            return;
        }
        let mut map = self.lock();
        let Some(r) = map.get_mut(id) else { return };
        if r.judged_since != since || r.phase.is_terminal() {
            return;
        }
        let inconclusive_before = r.inconclusive_since;
        if eval.decision == Decision::Inconclusive {
            r.inconclusive_since.get_or_insert(eval.at);
        } else {
            r.inconclusive_since = None;
        }
        let step = machine::step(
            r.phase,
            &eval,
            r.inconclusive_since,
            r.spec.promote_on_pass,
            &rules,
        );
        let (decision, reasons, at) = (eval.decision, eval.reasons.clone(), eval.at);
        let service = eval.service.clone();
        let sides_changed = r.last().is_none_or(|l| {
            (&l.service, &l.baseline, &l.canary) != (&eval.service, &eval.baseline, &eval.canary)
        });
        // Kept to undo the transition if it cannot be written: nothing is
        // sent before it is on disk, and the next look decides again.
        let before = step.as_ref().map(|_| r.clone());
        r.record(eval);
        let step_taken = step.is_some();
        let mut queued = false;
        if let Some(s) = step {
            tracing::info!(rollout = %r.id, service = %service, from = r.phase.as_str(), to = s.to.as_str(), reason = %s.reason, "rollout transition");
            transition(r, s.to, s.reason, at);
            for action in s.actions {
                if action == ActionKind::Rollback {
                    supersede(r, at);
                }
                let new = deliveries(r, action, decision.as_str(), &reasons, evidence.clone(), at);
                if !new.is_empty() {
                    tracing::info!(rollout = %r.id, action = action.as_str(), deliveries = new.len(), "action queued");
                    r.deliveries.extend(new);
                    r.bound();
                    queued = true;
                }
            }
        }
        let mut saved = self.inner.saved.lock().unwrap_or_else(|p| p.into_inner());
        let due = step_taken
            || sides_changed
            || r.inconclusive_since != inconclusive_before
            || saved
                .get(id)
                .is_none_or(|t| t.elapsed() >= HISTORY_SAVE_EVERY);
        if due {
            if let Err(e) = persist::save(&self.inner.dir, r) {
                tracing::error!(rollout = %r.id, error = %e, "could not write the rollout file; the transition is undone and will be decided again");
                if let Some(old) = before {
                    *r = old;
                }
                return;
            }
            saved.insert(id.to_string(), Instant::now());
        }
        drop(saved);
        if sides_changed || step_taken {
            refresh_hints(&self.inner.hints, &map);
        }
        drop(map);
        // In a cluster its deliveries go once the registry has them.
        self.share(id);
        if queued {
            self.inner.wake.notify_one();
        }
    }

    /// Judges every rollout each `interval` and as data arrives until
    /// `stop`, and delivers actions meanwhile.
    pub async fn run(self, stop: CancellationToken) {
        let mut deliver = tokio::spawn(crate::deliver::run(self.clone(), stop.clone()));
        // A panic in the judging path unwinds through here and the
        // supervisor starts `run` again, with a delivery loop of its own:
        // this one must not live on beside it (every delivery twice).
        let _deliver_guard = AbortOnDrop(deliver.abort_handle());
        let mut tick = tokio::time::interval(self.inner.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let period = self
            .inner
            .shared
            .as_ref()
            .map_or(Duration::from_secs(3600), |sh| sh.period());
        let mut registry = tokio::time::interval(period);
        registry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let store = self.inner.tables.store().clone();
        let arrivals = store.arrivals();
        let mut settle: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = registry.tick() => self.sync_registry().await,
                _ = self.inner.registry_wake.notified() => self.sync_registry().await,
                _ = tick.tick() => self.evaluate_all().await,
                // New data or a new rollout: look once it settled, without
                // holding up the registry exchange meanwhile.
                _ = arrivals.notified(), if settle.is_none() => settle = Some(arrival::settled()),
                _ = self.inner.look_wake.notified(), if settle.is_none() => settle = Some(arrival::settled()),
                _ = tokio::time::sleep_until(settle.unwrap_or_else(arrival::settled)), if settle.is_some() => {
                    settle = None;
                    self.evaluate_arrived().await;
                }
                _ = stop.cancelled() => break,
                // The delivery loop only ends at stop: anything else is a
                // panic, raised here so the supervisor restarts both.
                r = &mut deliver => match r {
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    _ => break,
                },
            }
        }
        if !deliver.is_finished() {
            let _ = deliver.await;
        }
        for r in self.lock().values() {
            self.save(r);
        }
        if let Some(sh) = self.inner.shared.clone() {
            // The last changes to the registry, then the leases to the others.
            self.sync_registry().await;
            sh.release().await;
        }
        tracing::info!("alert engine stopped; pending deliveries stay in the outbox");
    }
}

/// The id of a rollout declared in the config.
pub fn config_id(spec: &RolloutSpec) -> String {
    let name = spec.name.as_deref().unwrap_or(&spec.service);
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("config-{safe}")
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
