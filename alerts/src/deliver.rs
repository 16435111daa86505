//! The delivery loop: sends the pending deliveries of the outbox, one at a
//! time per target of a rollout (so a pause is not overtaken by the
//! rollback that follows it), retries with backoff, and records every
//! attempt on the rollout before the next one.
//!
//! Delivery is at least once: a crash between the receiver's answer and
//! the write of the outcome repeats the request, under the same
//! `Idempotency-Key`, after the restart.

use crate::actions::{attempt, Outcome};
use crate::engine::Alerts;
use crate::rollout::{Attempt, Delivery, DeliveryStatus};
use crate::spec::ActionSpec;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Longest sleep between looks at the outbox.
const POLL: Duration = Duration::from_millis(500);

pub(crate) async fn run(alerts: Alerts, stop: CancellationToken) {
    let mut in_flight: HashSet<String> = HashSet::new();
    // Which delivery each task sends, so a task that panicked frees its target.
    let mut sending: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut tasks: JoinSet<(String, String, Outcome)> = JoinSet::new();
    let retry = alerts.inner.cfg.retry;
    loop {
        let now = Utc::now();
        let (due, next) = due(&alerts, now, &in_flight);
        for (rollout, d, target, trusted) in due {
            in_flight.insert(d.id.clone());
            let id = d.id.clone();
            let attempts = d.attempts.len() as u32 + 1;
            // API-registered rollouts connect only where allowed_targets says.
            let guard = (!trusted).then(|| alerts.inner.cfg.allowed_targets.clone());
            let task = tasks.spawn(async move {
                let out = attempt(&d, &target, attempts, &retry, guard.as_ref()).await;
                (rollout, d.id, out)
            });
            sending.insert(task.id(), id);
        }
        let sleep = next
            .map(|t| (t - now).to_std().unwrap_or_default())
            .unwrap_or(POLL)
            .min(POLL);
        tokio::select! {
            Some(done) = tasks.join_next_with_id() => match done {
                Ok((task, (rollout, id, out))) => {
                    sending.remove(&task);
                    settle(&alerts, &rollout, &id, out, Utc::now());
                    in_flight.remove(&id);
                }
                Err(e) => {
                    // The delivery stays pending and is tried again.
                    tracing::error!(error = %e, "delivery task failed");
                    if let Some(id) = sending.remove(&e.id()) {
                        in_flight.remove(&id);
                    }
                }
            },
            _ = alerts.inner.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.cancelled() => {
                tasks.shutdown().await;
                return;
            }
        }
    }
}

/// A delivery to attempt: its rollout, itself, and where it goes.
/// (rollout id, delivery, target, whether the rollout is trusted: from the config file).
type Due = (String, Delivery, ActionSpec, bool);

/// The deliveries to attempt now (the oldest pending one of each target),
/// and when the next one falls due.
pub(crate) fn due(
    alerts: &Alerts,
    now: DateTime<Utc>,
    in_flight: &HashSet<String>,
) -> (Vec<Due>, Option<DateTime<Utc>>) {
    let map = alerts.lock();
    let (mut out, mut next) = (Vec::new(), None::<DateTime<Utc>>);
    for r in map.values() {
        // In a cluster, only the node acting for the rollout sends.
        if !alerts.may_send(&r.id) {
            continue;
        }
        // A target with a request on the wire gets no other one: a rollback
        // cancels the pending promote it supersedes, but one already being
        // sent must be answered before the rollback goes.
        let mut seen_targets: HashSet<usize> = r
            .deliveries
            .iter()
            .filter(|d| in_flight.contains(&d.id))
            .map(|d| d.target)
            .collect();
        for d in r
            .deliveries
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
        {
            if !seen_targets.insert(d.target) {
                continue;
            }
            let Some(target) = r.spec.actions.get(d.target) else {
                continue;
            };
            if d.next_attempt_at <= now {
                let trusted = r.origin == crate::rollout::Origin::Config;
                out.push((r.id.clone(), d.clone(), target.clone(), trusted));
            } else {
                next = Some(next.map_or(d.next_attempt_at, |n| n.min(d.next_attempt_at)));
            }
        }
    }
    (out, next)
}

/// Records the outcome of one attempt.
fn settle(alerts: &Alerts, rollout: &str, id: &str, out: Outcome, now: DateTime<Utc>) {
    let give_up = alerts.inner.cfg.retry.give_up_after;
    let stats = &alerts.inner.stats;
    let mut map = alerts.lock();
    let Some(r) = map.get_mut(rollout) else {
        return; // deleted meanwhile: cancelled
    };
    let Some(d) = r.deliveries.iter_mut().find(|d| d.id == id) else {
        return;
    };
    let n = d.attempts.len() + 1;
    let (http_status, outcome) = match out {
        Outcome::Delivered { status } => {
            d.status = DeliveryStatus::Delivered;
            stats.deliveries_delivered.fetch_add(1, Ordering::Relaxed);
            tracing::info!(rollout, delivery = id, action = d.action.as_str(), url = %crate::spec::redact_url(&d.url), status, attempts = n, "action delivered");
            (Some(status), "delivered".to_string())
        }
        Outcome::Retry { status, after, why } => {
            let age = (now - d.created_at).to_std().unwrap_or_default();
            if age >= give_up {
                d.status = DeliveryStatus::Failed;
                stats.deliveries_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(rollout, delivery = id, url = %crate::spec::redact_url(&d.url), attempts = n, "gave up delivering: {why}");
                (status, format!("gave up after {}s: {why}", age.as_secs()))
            } else {
                d.next_attempt_at = now
                    + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::seconds(60));
                stats.deliveries_retried.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(rollout, delivery = id, url = %crate::spec::redact_url(&d.url), attempts = n, retry_in_ms = after.as_millis() as u64, "delivery failed, will retry: {why}");
                (
                    status,
                    format!("retry in {:.1}s: {why}", after.as_secs_f64()),
                )
            }
        }
        Outcome::Refused { status, why } => {
            d.status = DeliveryStatus::Failed;
            stats.deliveries_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(rollout, delivery = id, url = %crate::spec::redact_url(&d.url), attempts = n, "delivery refused: {why}");
            (status, format!("refused: {why}"))
        }
    };
    d.attempts.push(Attempt {
        at: now,
        http_status,
        outcome,
    });
    alerts.save(r);
    if d_is_done(r, id) {
        alerts.inner.wake.notify_one();
    }
}

/// Whether the delivery left the outbox (the next one of its target may go).
fn d_is_done(r: &crate::rollout::Rollout, id: &str) -> bool {
    r.deliveries
        .iter()
        .any(|d| d.id == id && d.status != DeliveryStatus::Pending)
}
