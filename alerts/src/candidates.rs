//! Candidate rollouts: services that served traffic from two versions at
//! once in the recent window. Shown to users, never acted on until someone
//! registers a rollout.

use crate::engine::Alerts;
use chrono::Utc;
use graylens_analyzer::By;
use serde::Serialize;
use std::time::Duration;

/// Two versions of one service seen together.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    pub service: String,
    /// The busier version: usually the stable one.
    pub baseline: String,
    pub canary: String,
    pub requests: CandidateRequests,
    /// Ids of rollouts that already watch this pair.
    pub watched_by: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CandidateRequests {
    pub baseline: u64,
    pub canary: u64,
}

impl Alerts {
    /// Services with two or more versions in the last `window` (the two busiest).
    pub async fn candidates(&self, window: Duration) -> graylens_analyzer::Result<Vec<Candidate>> {
        let from = Utc::now() - chrono::Duration::from_std(window).unwrap_or_default();
        let seen = graylens_analyzer::services(&self.inner.tables, Some(from), None).await?;
        let rollouts = self.list();
        Ok(seen
            .into_iter()
            .filter_map(|s| {
                let mut v = s
                    .versions
                    .into_iter()
                    .filter(|t| !t.value.is_empty() && t.requests > 0);
                let (b, c) = (v.next()?, v.next()?);
                let watched_by = rollouts
                    .iter()
                    .filter(|r| {
                        let (rb, rc) = r.last().map_or((&r.spec.baseline, &r.spec.canary), |e| {
                            (&e.baseline, &e.canary)
                        });
                        r.spec.by == By::Version
                            && r.last().map_or(&r.spec.service, |e| &e.service) == &s.service
                            && [rb, rc].contains(&&b.value)
                            && [rb, rc].contains(&&c.value)
                    })
                    .map(|r| r.id.clone())
                    .collect();
                Some(Candidate {
                    service: s.service,
                    requests: CandidateRequests {
                        baseline: b.requests,
                        canary: c.requests,
                    },
                    baseline: b.value,
                    canary: c.value,
                    watched_by,
                })
            })
            .collect())
    }
}
