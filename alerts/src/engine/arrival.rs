//! Looks as data arrives. Besides the look at every rollout each
//! `interval`, a rollout is judged as soon as new data of its service has
//! reached its incremental comparison, and a new rollout as soon as it is
//! registered, so the time to act is set by the evidence and a short settle
//! delay, not by the tick. The tests are anytime-valid, so the extra looks
//! cost no false rollbacks.
//!
//! The extra looks are bounded: a round starts [`SETTLE`] after the first
//! wake-up (a burst of batches — an export split by service, pods exporting
//! together — is judged once; the engine's other work goes on meanwhile), rollouts that waited longest first, and all of them
//! together within [`BUDGET`] of one core (a token bucket over one second);
//! past the budget, the tick judges the rest. In a cluster only the lease
//! holder of a rollout looks at it on arrival.

use super::Alerts;
use crate::spec::RolloutSpec;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Wait after a wake-up before looking.
pub const SETTLE: Duration = Duration::from_millis(50);
/// Time per second that looks on arrival may take (5% of one core).
pub const BUDGET: Duration = Duration::from_millis(50);

/// What each rollout's last look saw, and the time left in the budget.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    /// Per rollout: batches fed to its comparison when its last look began,
    /// and when that was.
    seen: HashMap<String, (u64, Instant)>,
    /// Seconds left for looks on arrival, refilled at [`BUDGET`] per second
    /// up to one second's worth. A look may overdraw it: the debt is paid
    /// back before the next one (otherwise the refill during a look would
    /// always leave a little, and the budget would never bind).
    left: f64,
    refilled: Option<Instant>,
}

impl Arrivals {
    /// Refills the budget for the time since the last refill; whether any is left.
    fn refill(&mut self, now: Instant) -> bool {
        let since = self
            .refilled
            .map_or(1.0, |t| now.duration_since(t).as_secs_f64());
        self.refilled = Some(now);
        let budget = BUDGET.as_secs_f64();
        self.left = (self.left + budget * since).min(budget);
        self.left > 0.0
    }

    fn spend(&mut self, took: Duration) {
        self.left -= took.as_secs_f64();
    }
}

/// When a round woken now may start: [`SETTLE`] from now.
pub(super) fn settled() -> tokio::time::Instant {
    tokio::time::Instant::now() + SETTLE
}

/// Records a look at `id` that began at `at` with `fed` batches fed.
pub(super) fn looked(alerts: &Alerts, id: &str, fed: u64, at: Instant) {
    let mut a = alerts
        .inner
        .arrivals
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    a.seen.insert(id.to_string(), (fed, at));
}

impl Alerts {
    /// Judges, within the budget, every live rollout with data its last
    /// look did not see, and every rollout not judged yet.
    pub(super) async fn evaluate_arrived(&self) {
        let live: Vec<(String, RolloutSpec, DateTime<Utc>)> = self
            .lock()
            .values()
            .filter(|r| !r.phase.is_terminal())
            .filter(|r| self.inner.shared.as_ref().is_none_or(|sh| sh.holds(&r.id)))
            .map(|r| (r.id.clone(), r.spec.clone(), r.judged_since))
            .collect();
        let fed: HashMap<String, u64> = {
            let subs = self.inner.subs.lock().await;
            live.iter()
                .filter_map(|(id, _, _)| Some((id.clone(), subs.get(id)?.fed())))
                .collect()
        };
        let mut due: Vec<(Option<Instant>, String, RolloutSpec, DateTime<Utc>)> = {
            let mut a = self
                .inner
                .arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let ids: HashSet<&str> = live.iter().map(|(id, _, _)| id.as_str()).collect();
            a.seen.retain(|id, _| ids.contains(id.as_str()));
            live.into_iter()
                .filter_map(|(id, spec, since)| {
                    let last = a.seen.get(&id).copied();
                    let new = match (last, fed.get(&id)) {
                        (None, _) => true,
                        (Some((seen, _)), Some(now)) => *now > seen,
                        // Its comparison restarts at its next look (the
                        // sides changed): the tick takes it.
                        (Some(_), None) => false,
                    };
                    new.then(|| (last.map(|l| l.1), id, spec, since))
                })
                .collect()
        };
        // Never judged first, then the longest waiting.
        due.sort_by_key(|d| d.0);
        for (_, id, spec, since) in due {
            let now = Instant::now();
            if !self
                .inner
                .arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .refill(now)
            {
                break;
            }
            let took = self.look(&id, &spec, since).await;
            self.inner
                .arrivals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .spend(took);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refills_at_its_rate_and_a_look_may_overdraw_it() {
        let ms = |n: u64| Duration::from_millis(n);
        let mut a = Arrivals::default();
        let t0 = Instant::now();
        assert!(a.refill(t0));
        assert_eq!(a.left, BUDGET.as_secs_f64());
        // 80 ms of looks against 50: 30 ms of debt.
        a.spend(ms(80));
        assert!(!a.refill(t0));
        // Looks 1 ms apart each refill 0.05 ms: not enough to look again.
        assert!(!a.refill(t0 + ms(1)));
        // The debt is paid after 600 ms (30 ms at 5%), then it fills again.
        assert!(!a.refill(t0 + ms(590)));
        assert!(a.refill(t0 + ms(700)));
        assert!((a.left - 0.005).abs() < 1e-9, "{}", a.left);
        // Never more than one second's worth.
        assert!(a.refill(t0 + Duration::from_secs(60)));
        assert_eq!(a.left, BUDGET.as_secs_f64());
    }

    #[test]
    fn looks_one_after_another_stay_within_the_budget() {
        // Looks of 0.6 ms each, back to back for 10 s: the budget allows
        // 5% of the time, about 830 of them, not 16,000.
        let mut a = Arrivals::default();
        let mut t = Instant::now();
        let look = Duration::from_micros(600);
        let end = t + Duration::from_secs(10);
        let mut looks = 0;
        while t < end {
            if a.refill(t) {
                a.spend(look);
                looks += 1;
                t += look;
            } else {
                t += Duration::from_millis(1);
            }
        }
        assert!((800..=920).contains(&looks), "{looks}");
    }
}
