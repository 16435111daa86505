//! A watched rollout as graylens keeps it: its spec, where the state machine
//! stands, what it saw at each evaluation, and every action with its
//! delivery attempts. One rollout is one JSON file under
//! `{data_dir}/alerts/rollouts/`, rewritten atomically on every change, so
//! its pending deliveries (the outbox) survive a restart.

use crate::machine::Phase;
use crate::spec::RolloutSpec;
use chrono::{DateTime, Utc};
use graylens_analyzer::Decision;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Evaluations kept per rollout (six minutes of looks at the default 1 s
/// interval; transitions, with their reasons, are kept apart).
pub const HISTORY_LIMIT: usize = 360;
/// Flagger hook calls kept per rollout.
pub const CALLS_LIMIT: usize = 200;
/// State transitions kept per rollout (oldest dropped first, counted).
pub const TRANSITIONS_LIMIT: usize = 200;
/// Finished deliveries kept per rollout (pending ones are never dropped).
pub const DELIVERIES_LIMIT: usize = 100;

/// Where a rollout was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `POST /api/v1/rollouts`.
    Api,
    /// `[[rollouts]]` in the config file.
    Config,
    /// Created by the first Flagger hook call for an unknown canary.
    Flagger,
}

/// One look at the rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub at: DateTime<Utc>,
    pub decision: Decision,
    pub score: f64,
    pub reasons: Vec<String>,
    pub requests: SideCounts,
    /// The sample-ratio-mismatch guard fired.
    #[serde(default)]
    pub sample_ratio_mismatch: bool,
    /// The service and versions compared (resolved from telemetry for Flagger rollouts).
    pub service: String,
    pub baseline: String,
    pub canary: String,
    /// Set when graylens could not judge (the evaluation counts as inconclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideCounts {
    pub baseline: u64,
    pub canary: u64,
}

/// A change of phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub from: Phase,
    pub to: Phase,
    pub reason: String,
}

/// What an action asks of the controller (DESIGN.md webhook `action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Rollback,
    Pause,
    Resume,
    Promote,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Rollback => "rollback",
            ActionKind::Pause => "pause",
            ActionKind::Resume => "resume",
            ActionKind::Promote => "promote",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// In the outbox: not yet acknowledged, retried until it is.
    Pending,
    Delivered,
    /// Refused for good (a 4xx other than 408/429) or given up after the retry limit.
    Failed,
    /// The rollout was deleted first.
    Cancelled,
}

/// One HTTP request of an action, and its attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Also the `Idempotency-Key`, the same on every attempt.
    pub id: String,
    pub action: ActionKind,
    /// Index into the spec's `actions`.
    pub target: usize,
    /// `webhook` or `argo-rollouts`.
    pub target_type: String,
    pub method: String,
    pub url: String,
    pub content_type: String,
    /// The exact bytes sent (and signed).
    pub body: String,
    /// `X-Graylens-Signature` of webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    pub created_at: DateTime<Utc>,
    pub status: DeliveryStatus,
    pub next_attempt_at: DateTime<Utc>,
    pub attempts: Vec<Attempt>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// `delivered`, `retry in 2.1s: HTTP 503`, `refused: HTTP 400`, ...
    pub outcome: String,
}

/// A Flagger hook call and graylens's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HookCall {
    pub at: DateTime<Utc>,
    pub hook: String,
    pub phase: String,
    pub checksum: String,
    pub status: u16,
    pub answer: String,
    /// Name of the token the call came with (auth on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Everything graylens knows about one rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub origin: Origin,
    pub spec: RolloutSpec,
    pub created_at: DateTime<Utc>,
    /// Name of the token that created the rollout (auth on), and of the one
    /// that last reset it to a new Flagger revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_by: Option<String>,
    /// Telemetry from this instant on is judged: the spec's `since`, else
    /// the registration, reset when Flagger starts a new canary revision.
    pub judged_since: DateTime<Utc>,
    pub phase: Phase,
    pub phase_since: DateTime<Utc>,
    /// Start of the current run of inconclusive verdicts (for the pause timer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_since: Option<DateTime<Utc>>,
    /// The Flagger revision being judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagger_checksum: Option<String>,
    pub transitions: Vec<Transition>,
    pub history: VecDeque<Evaluation>,
    pub deliveries: Vec<Delivery>,
    #[serde(default)]
    pub hook_calls: VecDeque<HookCall>,
    /// Transitions and finished deliveries dropped by the limits above.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
    /// In a cluster, in API answers: the node that acts for the rollout
    /// (holds its lease), as the answering node last saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Rollout {
    pub fn new(id: String, origin: Origin, spec: RolloutSpec, now: DateTime<Utc>) -> Self {
        Rollout {
            id,
            origin,
            judged_since: spec.since.unwrap_or(now),
            spec,
            created_at: now,
            created_by: None,
            reset_by: None,
            phase: Phase::WaitingForData,
            phase_since: now,
            inconclusive_since: None,
            flagger_checksum: None,
            transitions: Vec::new(),
            history: VecDeque::new(),
            deliveries: Vec::new(),
            hook_calls: VecDeque::new(),
            dropped: 0,
            actor: None,
        }
    }

    /// Drops the oldest transitions and finished deliveries beyond the limits.
    pub fn bound(&mut self) {
        if self.transitions.len() > TRANSITIONS_LIMIT {
            let n = self.transitions.len() - TRANSITIONS_LIMIT;
            self.transitions.drain(..n);
            self.dropped += n as u64;
        }
        let finished = |d: &Delivery| d.status != DeliveryStatus::Pending;
        let mut excess = self.deliveries.len().saturating_sub(DELIVERIES_LIMIT);
        if excess > 0 {
            let before = self.deliveries.len();
            self.deliveries.retain(|d| {
                if excess > 0 && finished(d) {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
            self.dropped += (before - self.deliveries.len()) as u64;
        }
    }

    /// The latest evaluation.
    pub fn last(&self) -> Option<&Evaluation> {
        self.history.back()
    }

    pub fn record(&mut self, e: Evaluation) {
        if self.history.len() == HISTORY_LIMIT {
            self.history.pop_front();
        }
        self.history.push_back(e);
    }

    pub fn record_call(&mut self, c: HookCall) {
        if self.hook_calls.len() == CALLS_LIMIT {
            self.hook_calls.pop_front();
        }
        self.hook_calls.push_back(c);
    }

    /// The rollout as the API shows it: secrets replaced, and no delivery
    /// signatures (with the body, one would allow an offline search for a
    /// weak secret).
    pub fn redacted(&self) -> Rollout {
        let mut deliveries = self.deliveries.clone();
        for d in &mut deliveries {
            d.signature = None;
        }
        Rollout {
            spec: self.spec.redacted(),
            deliveries,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    #[test]
    fn transitions_and_finished_deliveries_are_bounded_and_counted() {
        let spec: crate::RolloutSpec = serde_json::from_value(serde_json::json!({
            "service": "s", "baseline": "a", "canary": "b"
        }))
        .unwrap();
        let now = Utc::now();
        let mut r = Rollout::new("r".into(), Origin::Api, spec, now);
        for _ in 0..TRANSITIONS_LIMIT + 5 {
            r.transitions.push(Transition {
                at: now,
                from: Phase::WaitingForData,
                to: Phase::Analyzing,
                reason: String::new(),
            });
        }
        let d = |status| Delivery {
            id: "d".into(),
            action: ActionKind::Pause,
            target: 0,
            target_type: "webhook".into(),
            method: "POST".into(),
            url: "http://x/".into(),
            content_type: "application/json".into(),
            body: String::new(),
            signature: None,
            created_at: now,
            status,
            next_attempt_at: now,
            attempts: Vec::new(),
        };
        r.deliveries.push(d(DeliveryStatus::Pending));
        for _ in 0..DELIVERIES_LIMIT + 10 {
            r.deliveries.push(d(DeliveryStatus::Delivered));
        }
        r.bound();
        assert_eq!(r.transitions.len(), TRANSITIONS_LIMIT);
        assert_eq!(r.deliveries.len(), DELIVERIES_LIMIT);
        assert_eq!(
            r.deliveries[0].status,
            DeliveryStatus::Pending,
            "pending kept"
        );
        assert_eq!(r.dropped, 5 + 11);
    }
}
