//! Flagger webhooks: `POST /api/v1/flagger/{hook}`.
//!
//! Flagger has no push API to abort a canary; it polls its webhooks and
//! treats a status above 202 as "no" (fluxcd/flagger `pkg/controller/webhook.go`).
//! So graylens keeps the gate state and answers each call from the rollout
//! that stands for the canary:
//!
//! | hook | 200 when | otherwise |
//! |---|---|---|
//! | `confirm-rollout`, `pre-rollout`, `post-rollout`, `event` | always (recorded) | |
//! | `rollout` | the canary has not failed | 403: halt, failed check + 1 |
//! | `confirm-traffic-increase` | not failed and not paused | 403: hold the weight |
//! | `confirm-promotion` | the verdict is `pass` | 403: wait |
//! | `rollback` | the canary has failed (roll back now) | 403: carry on |
//!
//! The rollout is the one whose `flagger` names the canary, or else one
//! created at the first call. Its versions come from telemetry: the
//! `k8s.deployment.name` resource attribute is `{name}-primary` for the
//! baseline and `{name}` for the canary, within `k8s.namespace.name` =
//! `{namespace}` (`pkg/controller/scheduler.go`). A new `checksum` is a new
//! canary revision: the rollout starts over.

use crate::engine::{transition, Alerts};
use crate::machine::Phase;
use crate::rollout::{Evaluation, HookCall, Origin, Rollout};
use crate::spec::{FlaggerTarget, RolloutSpec};
use chrono::{DateTime, Utc};
use graylens_analyzer::{By, Decision};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// Flagger's webhook body (`flaggerv1.CanaryWebhookPayload`).
#[derive(Clone, Debug, Deserialize)]
pub struct HookRequest {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub checksum: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Flagger's hook types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    ConfirmRollout,
    PreRollout,
    Rollout,
    ConfirmTrafficIncrease,
    ConfirmPromotion,
    PostRollout,
    Rollback,
    Event,
}

impl Hook {
    pub const ALL: [Hook; 8] = [
        Hook::ConfirmRollout,
        Hook::PreRollout,
        Hook::Rollout,
        Hook::ConfirmTrafficIncrease,
        Hook::ConfirmPromotion,
        Hook::PostRollout,
        Hook::Rollback,
        Hook::Event,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::ConfirmRollout => "confirm-rollout",
            Hook::PreRollout => "pre-rollout",
            Hook::Rollout => "rollout",
            Hook::ConfirmTrafficIncrease => "confirm-traffic-increase",
            Hook::ConfirmPromotion => "confirm-promotion",
            Hook::PostRollout => "post-rollout",
            Hook::Rollback => "rollback",
            Hook::Event => "event",
        }
    }

    pub fn parse(s: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// The gate: the status and message answering `hook` for a rollout in `phase`.
pub fn answer(hook: Hook, phase: Phase, last: Option<&Evaluation>) -> (u16, String) {
    let verdict = last.map_or("no verdict yet".to_string(), |e| {
        let why = e
            .reasons
            .first()
            .map_or(String::new(), |r| format!(": {r}"));
        format!("verdict {}{why}", e.decision.as_str())
    });
    let failed = phase == Phase::RolledBack;
    let (ok, what) = match hook {
        Hook::ConfirmRollout | Hook::PreRollout | Hook::PostRollout | Hook::Event => {
            (true, "recorded")
        }
        Hook::Rollout => (
            !failed,
            if failed {
                "halt: the canary failed"
            } else {
                "proceed"
            },
        ),
        Hook::ConfirmTrafficIncrease => match phase {
            Phase::RolledBack => (false, "hold: the canary failed"),
            Phase::Paused => (false, "hold: graylens paused the rollout"),
            _ => (true, "increase traffic"),
        },
        Hook::ConfirmPromotion => {
            let pass = last.is_some_and(|e| e.decision == Decision::Pass) && !failed;
            (
                pass,
                if pass {
                    "promote"
                } else {
                    "wait: the verdict is not pass"
                },
            )
        }
        Hook::Rollback => (
            failed,
            if failed {
                "roll back now"
            } else {
                "no rollback"
            },
        ),
    };
    (
        if ok { 200 } else { 403 },
        format!("{what} ({}; {verdict})", phase.as_str()),
    )
}

/// Fills the service and versions of a Flagger rollout from telemetry, or
/// says what is missing.
pub(crate) async fn resolve(
    alerts: &Alerts,
    f: &FlaggerTarget,
    since: DateTime<Utc>,
    eval: &mut Evaluation,
) -> Result<(), String> {
    if !eval.service.is_empty() && !eval.baseline.is_empty() && !eval.canary.is_empty() {
        return Ok(());
    }
    let primary = format!("{}-primary", f.name);
    let seen = graylens_analyzer::deployments(
        &alerts.inner.tables,
        &f.namespace,
        &[&primary, &f.name],
        Some(since),
    )
    .await
    .map_err(|e| format!("graylens could not look up the deployments: {e}"))?;
    let top = |d: &str| seen.iter().find(|t| t.deployment == d);
    let (b, c) = (top(&primary), top(&f.name));
    eval.requests.baseline = b.map_or(0, |t| t.requests);
    eval.requests.canary = c.map_or(0, |t| t.requests);
    let missing: Vec<&str> = [(&b, primary.as_str()), (&c, f.name.as_str())]
        .iter()
        .filter(|(t, _)| t.is_none())
        .map(|(_, n)| *n)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "waiting for data: no requests yet from deployment {} in namespace {} (resource attributes k8s.deployment.name, k8s.namespace.name)",
            missing.join(" and "),
            f.namespace
        ));
    }
    let (b, c) = (b.expect("checked"), c.expect("checked"));
    if eval.service.is_empty() {
        eval.service = c.service.clone();
    }
    if eval.baseline.is_empty() {
        eval.baseline = b.version.clone();
    }
    if eval.canary.is_empty() {
        eval.canary = c.version.clone();
    }
    if eval.baseline == eval.canary {
        return Err(format!(
            "{primary} and {} both report version {:?}; set service.version per revision to compare them",
            f.name, eval.baseline
        ));
    }
    Ok(())
}

/// The id of the rollout graylens creates for a Flagger canary: the same
/// on every node, so when a canary's first hooks reach two nodes of a
/// cluster at once, their rollouts are one in the registry (the second
/// write finds the first and adopts it) instead of two.
fn flagger_id(namespace: &str, name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{namespace}/{name}").as_bytes());
    format!("flagger-{}", hex::encode(&digest[..16]))
}

impl Alerts {
    /// Answers one Flagger hook call and records it on the rollout, with the
    /// name of the token it came with (`token`, auth on).
    pub fn flagger_hook(
        &self,
        hook: Hook,
        req: &HookRequest,
        token: Option<&str>,
    ) -> (u16, String, String) {
        self.inner.stats.hook_calls.fetch_add(1, Ordering::Relaxed);
        let target = FlaggerTarget {
            namespace: req.namespace.clone(),
            name: req.name.clone(),
        };
        let now = Utc::now();
        let mut map = self.lock();
        let id = map
            .values()
            .filter(|r| r.spec.flagger.as_ref() == Some(&target))
            .max_by_key(|r| r.created_at)
            .map(|r| r.id.clone());
        let id = match id {
            Some(id) => id,
            None if map.len() >= self.inner.cfg.max_rollouts => {
                tracing::error!(namespace = %req.namespace, name = %req.name, "Flagger canary not watched: alerts.max_rollouts reached");
                return (
                    503,
                    format!(
                        "graylens already watches {} rollouts (alerts.max_rollouts); delete finished ones",
                        map.len()
                    ),
                    String::new(),
                );
            }
            None => {
                let spec = RolloutSpec {
                    name: Some(format!("{}/{}", req.namespace, req.name)),
                    service: String::new(),
                    baseline: String::new(),
                    canary: String::new(),
                    by: By::Version,
                    policy: None,
                    actions: Vec::new(),
                    since: None,
                    flagger: Some(target),
                    promote_on_pass: false,
                };
                let id = flagger_id(&req.namespace, &req.name);
                let mut r = Rollout::new(id, Origin::Flagger, spec, now);
                r.created_by = token.map(str::to_string);
                tracing::info!(rollout = %r.id, namespace = %req.namespace, name = %req.name, "Flagger canary seen: watching it");
                let id = r.id.clone();
                map.insert(id.clone(), r);
                id
            }
        };
        let r = map.get_mut(&id).expect("found or inserted");
        if !req.checksum.is_empty() && r.flagger_checksum.as_deref() != Some(&req.checksum) {
            // A new revision starts over; so does the first one Flagger names
            // for a rollout registered before it (unless the user fixed `since`).
            let restart = r.flagger_checksum.is_some()
                || (r.origin != Origin::Flagger && r.spec.since.is_none());
            if restart {
                tracing::info!(rollout = %r.id, checksum = %req.checksum, "new Flagger canary revision: judging from now");
                let by = token.map_or(String::new(), |t| format!(" (token {t})"));
                transition(
                    r,
                    Phase::WaitingForData,
                    format!("new canary revision {}{by}", req.checksum),
                    now,
                );
                r.reset_by = token.map(str::to_string);
                r.judged_since = now;
                r.inconclusive_since = None;
                r.history.clear();
                // What the old revision's verdicts asked for is not for this one.
                for d in r
                    .deliveries
                    .iter_mut()
                    .filter(|d| d.status == crate::rollout::DeliveryStatus::Pending)
                {
                    d.status = crate::rollout::DeliveryStatus::Cancelled;
                    d.attempts.push(crate::rollout::Attempt {
                        at: now,
                        http_status: None,
                        outcome: format!("cancelled: new canary revision {}", req.checksum),
                    });
                }
            }
            r.flagger_checksum = Some(req.checksum.clone());
        }
        let (status, message) = answer(hook, r.phase, r.last());
        r.record_call(HookCall {
            at: now,
            hook: hook.as_str().into(),
            phase: req.phase.clone(),
            checksum: req.checksum.clone(),
            status,
            answer: message.clone(),
            token: token.map(str::to_string),
        });
        tracing::debug!(rollout = %r.id, hook = hook.as_str(), status, "Flagger hook answered");
        self.save(r);
        (status, message, r.id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(decision: Decision) -> Evaluation {
        Evaluation {
            at: Utc::now(),
            decision,
            score: 0.0,
            reasons: vec!["because".into()],
            requests: Default::default(),
            sample_ratio_mismatch: false,
            service: "s".into(),
            baseline: "1".into(),
            canary: "2".into(),
            error: None,
        }
    }

    #[test]
    fn every_hook_answers_per_the_contract() {
        let pass = eval(Decision::Pass);
        let fail = eval(Decision::Fail);
        let inc = eval(Decision::Inconclusive);
        let code = |h, p, e: Option<&Evaluation>| answer(h, p, e).0;
        for h in [
            Hook::ConfirmRollout,
            Hook::PreRollout,
            Hook::PostRollout,
            Hook::Event,
        ] {
            assert_eq!(code(h, Phase::RolledBack, Some(&fail)), 200);
        }
        assert_eq!(code(Hook::Rollout, Phase::Analyzing, Some(&inc)), 200);
        assert_eq!(code(Hook::Rollout, Phase::RolledBack, Some(&fail)), 403);
        assert_eq!(code(Hook::Rollback, Phase::Analyzing, Some(&inc)), 403);
        assert_eq!(code(Hook::Rollback, Phase::WaitingForData, None), 403);
        assert_eq!(code(Hook::Rollback, Phase::RolledBack, Some(&fail)), 200);
        assert_eq!(
            code(Hook::ConfirmPromotion, Phase::Passed, Some(&pass)),
            200
        );
        assert_eq!(
            code(Hook::ConfirmPromotion, Phase::Analyzing, Some(&inc)),
            403
        );
        assert_eq!(
            code(Hook::ConfirmPromotion, Phase::WaitingForData, None),
            403
        );
        assert_eq!(
            code(Hook::ConfirmTrafficIncrease, Phase::Analyzing, Some(&inc)),
            200
        );
        assert_eq!(
            code(Hook::ConfirmTrafficIncrease, Phase::Paused, Some(&inc)),
            403
        );
        assert!(answer(Hook::Rollback, Phase::RolledBack, Some(&fail))
            .1
            .contains("because"));
    }

    #[test]
    fn hook_names_round_trip() {
        for h in Hook::ALL {
            assert_eq!(Hook::parse(h.as_str()), Some(h));
        }
        assert_eq!(Hook::parse("rolback"), None);
    }
}
