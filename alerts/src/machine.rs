//! The rollout state machine, as a pure function of the previous phase and
//! the newest evaluation, so every rule is unit-tested without a clock.
//!
//! ```text
//!  waiting_for_data ──both sides have requests──► analyzing ──pass──► passed
//!        │                                            │                  │
//!        └──── inconclusive ≥ pause_after, or SRM ────┴──► paused ──pass──┘ (resume)
//!  any phase but rolled_back ──fail──► rolled_back (terminal)
//! ```
//!
//! Actions fire on a transition only, never on a tick that keeps the
//! phase: `rollback` on entering `rolled_back`, `pause` on entering
//! `paused`, `resume` on leaving `paused` for `passed`, and `promote` on
//! entering `passed` (after `resume` when leaving `paused`) when the
//! rollout asks for it. `passed` is not final:
//! the tests are anytime-valid, so a regression that shows up later still
//! rolls the canary back.

use crate::rollout::{ActionKind, Evaluation};
use chrono::{DateTime, Utc};
use graylens_analyzer::Decision;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    WaitingForData,
    Analyzing,
    Passed,
    Paused,
    RolledBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::WaitingForData => "waiting_for_data",
            Phase::Analyzing => "analyzing",
            Phase::Passed => "passed",
            Phase::Paused => "paused",
            Phase::RolledBack => "rolled_back",
        }
    }

    pub fn is_terminal(self) -> bool {
        self == Phase::RolledBack
    }
}

/// Knobs of the machine (config `[alerts]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rules {
    /// Pause once the verdict has stayed inconclusive this long; `None` never.
    pub pause_after_inconclusive: Option<Duration>,
    /// Pause on a sample-ratio mismatch.
    pub pause_on_srm: bool,
}

/// What the newest evaluation does to the rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub to: Phase,
    /// What to send, in order (none for most transitions).
    pub actions: Vec<ActionKind>,
    pub reason: String,
}

/// The transition caused by `eval` in `phase`, if any. `inconclusive_since`
/// is the start of the current run of inconclusive verdicts, including this one.
pub fn step(
    phase: Phase,
    eval: &Evaluation,
    inconclusive_since: Option<DateTime<Utc>>,
    promote_on_pass: bool,
    rules: &Rules,
) -> Option<Step> {
    if phase.is_terminal() {
        return None;
    }
    let reasons = || eval.reasons.join("; ");
    if eval.decision == Decision::Fail {
        return Some(Step {
            to: Phase::RolledBack,
            actions: vec![ActionKind::Rollback],
            reason: format!("verdict fail: {}", reasons()),
        });
    }
    let has_data = eval.requests.baseline > 0 && eval.requests.canary > 0;
    let to = |to: Phase, actions: Vec<ActionKind>, reason: String| {
        Some(Step {
            to,
            actions,
            reason,
        })
    };
    let promote = || promote_on_pass.then_some(ActionKind::Promote);
    match (phase, eval.decision) {
        (Phase::Paused, Decision::Pass) => to(
            Phase::Passed,
            std::iter::once(ActionKind::Resume)
                .chain(promote())
                .collect(),
            format!("verdict pass: {}", reasons()),
        ),
        (Phase::Paused, _) | (Phase::Passed, Decision::Pass) => None,
        (_, Decision::Pass) => to(
            Phase::Passed,
            promote().into_iter().collect(),
            format!("verdict pass: {}", reasons()),
        ),
        _ if rules.pause_on_srm && eval.sample_ratio_mismatch => to(
            Phase::Paused,
            vec![ActionKind::Pause],
            format!("sample ratio mismatch: {}", reasons()),
        ),
        (Phase::Passed, _) => None,
        _ => {
            if let (Some(limit), Some(since)) = (rules.pause_after_inconclusive, inconclusive_since)
            {
                let long = (eval.at - since).to_std().unwrap_or_default();
                if long >= limit {
                    return to(
                        Phase::Paused,
                        vec![ActionKind::Pause],
                        format!(
                            "inconclusive for {}s (limit {}s): {}",
                            long.as_secs(),
                            limit.as_secs(),
                            reasons()
                        ),
                    );
                }
            }
            (phase == Phase::WaitingForData && has_data).then(|| Step {
                to: Phase::Analyzing,
                actions: Vec::new(),
                reason: format!(
                    "traffic on both sides: {} baseline and {} canary requests",
                    eval.requests.baseline, eval.requests.canary
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::SideCounts;

    fn eval(decision: Decision, b: u64, c: u64, secs: i64) -> Evaluation {
        Evaluation {
            at: DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(),
            decision,
            score: 0.0,
            reasons: vec!["why".into()],
            requests: SideCounts {
                baseline: b,
                canary: c,
            },
            sample_ratio_mismatch: false,
            service: "s".into(),
            baseline: "v1".into(),
            canary: "v2".into(),
            error: None,
        }
    }

    fn t0() -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(1_800_000_000, 0)
    }

    const RULES: Rules = Rules {
        pause_after_inconclusive: Some(Duration::from_secs(600)),
        pause_on_srm: true,
    };

    #[test]
    fn fail_rolls_back_from_every_live_phase_and_rolled_back_is_final() {
        for p in [
            Phase::WaitingForData,
            Phase::Analyzing,
            Phase::Passed,
            Phase::Paused,
        ] {
            let s = step(p, &eval(Decision::Fail, 9, 9, 0), None, false, &RULES).unwrap();
            assert_eq!(
                (s.to, s.actions),
                (Phase::RolledBack, vec![ActionKind::Rollback])
            );
        }
        assert_eq!(
            step(
                Phase::RolledBack,
                &eval(Decision::Pass, 9, 9, 0),
                None,
                false,
                &RULES
            ),
            None
        );
    }

    #[test]
    fn data_starts_the_analysis_without_an_action() {
        let e = eval(Decision::Inconclusive, 0, 5, 10);
        assert_eq!(step(Phase::WaitingForData, &e, t0(), false, &RULES), None);
        let s = step(
            Phase::WaitingForData,
            &eval(Decision::Inconclusive, 3, 5, 10),
            t0(),
            false,
            &RULES,
        )
        .unwrap();
        assert_eq!((s.to, s.actions), (Phase::Analyzing, vec![]));
        assert_eq!(
            step(
                Phase::Analyzing,
                &eval(Decision::Inconclusive, 3, 5, 20),
                t0(),
                false,
                &RULES
            ),
            None
        );
    }

    #[test]
    fn pass_fires_promote_only_when_asked_and_only_once() {
        let e = eval(Decision::Pass, 500, 500, 30);
        let s = step(Phase::Analyzing, &e, None, false, &RULES).unwrap();
        assert_eq!((s.to, s.actions), (Phase::Passed, vec![]));
        let s = step(Phase::Analyzing, &e, None, true, &RULES).unwrap();
        assert_eq!(s.actions, vec![ActionKind::Promote]);
        assert_eq!(step(Phase::Passed, &e, None, true, &RULES), None);
    }

    #[test]
    fn long_inconclusive_pauses_once_and_pass_resumes() {
        let e = eval(Decision::Inconclusive, 5, 5, 599);
        assert_eq!(step(Phase::Analyzing, &e, t0(), false, &RULES), None);
        let e = eval(Decision::Inconclusive, 5, 5, 600);
        let s = step(Phase::Analyzing, &e, t0(), false, &RULES).unwrap();
        assert_eq!((s.to, s.actions), (Phase::Paused, vec![ActionKind::Pause]));
        assert_eq!(step(Phase::Paused, &e, t0(), false, &RULES), None);
        let never = Rules {
            pause_after_inconclusive: None,
            ..RULES
        };
        assert_eq!(step(Phase::Analyzing, &e, t0(), false, &never), None);
        let s = step(
            Phase::Paused,
            &eval(Decision::Pass, 9, 9, 700),
            None,
            false,
            &RULES,
        )
        .unwrap();
        assert_eq!((s.to, s.actions), (Phase::Passed, vec![ActionKind::Resume]));
        let s = step(
            Phase::Paused,
            &eval(Decision::Pass, 9, 9, 700),
            None,
            true,
            &RULES,
        )
        .unwrap();
        assert_eq!(s.actions, vec![ActionKind::Resume, ActionKind::Promote]);
    }

    #[test]
    fn no_data_waits_and_then_pauses_like_any_inconclusive_verdict() {
        let e = eval(Decision::Inconclusive, 0, 0, 900);
        let s = step(Phase::WaitingForData, &e, t0(), false, &RULES).unwrap();
        assert_eq!(s.to, Phase::Paused);
    }

    #[test]
    fn sample_ratio_mismatch_pauses_when_configured() {
        let mut e = eval(Decision::Inconclusive, 900, 10, 20);
        e.sample_ratio_mismatch = true;
        let s = step(Phase::Analyzing, &e, t0(), false, &RULES).unwrap();
        assert_eq!((s.to, s.actions), (Phase::Paused, vec![ActionKind::Pause]));
        let s = step(Phase::Passed, &e, t0(), false, &RULES).unwrap();
        assert_eq!(s.to, Phase::Paused);
        let off = Rules {
            pause_on_srm: false,
            ..RULES
        };
        assert_eq!(step(Phase::Analyzing, &e, t0(), false, &off), None);
    }
}
