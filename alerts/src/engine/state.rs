//! Changes to a rollout's state: phase transitions, a rollback superseding
//! pending actions, and the role hints the collector gets from live rollouts.

use crate::machine::Phase;
use crate::rollout::{ActionKind, DeliveryStatus, Rollout, Transition};
use chrono::{DateTime, Utc};
use graylens_analyzer::By;
use graylens_collector::RoleHints;
use std::collections::BTreeMap;

/// A rollback makes pending pause, resume and promote deliveries moot: they
/// are cancelled so the rollback does not wait behind them.
pub(super) fn supersede(r: &mut Rollout, at: DateTime<Utc>) {
    for d in r
        .deliveries
        .iter_mut()
        .filter(|d| d.status == DeliveryStatus::Pending && d.action != ActionKind::Rollback)
    {
        d.status = DeliveryStatus::Cancelled;
        d.attempts.push(crate::rollout::Attempt {
            at,
            http_status: None,
            outcome: "cancelled: superseded by the rollback".into(),
        });
    }
}

pub(crate) fn transition(r: &mut Rollout, to: Phase, reason: String, at: DateTime<Utc>) {
    r.transitions.push(Transition {
        at,
        from: r.phase,
        to,
        reason,
    });
    r.phase = to;
    r.phase_since = at;
    r.bound();
}

/// Tells the collector the versions of the live rollouts compared by version.
pub(crate) fn refresh_hints(hints: &RoleHints, map: &BTreeMap<String, Rollout>) {
    hints.set(
        map.values()
            .filter(|r| !r.phase.is_terminal() && r.spec.by == By::Version)
            .map(|r| match r.last() {
                Some(e) => (e.service.as_str(), e.baseline.as_str(), e.canary.as_str()),
                None => (
                    r.spec.service.as_str(),
                    r.spec.baseline.as_str(),
                    r.spec.canary.as_str(),
                ),
            }),
    );
}
