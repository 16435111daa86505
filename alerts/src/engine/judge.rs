//! One look at a rollout: its comparison from the incremental
//! subscription, the verdict as an evaluation with its evidence, and the
//! timing recorded for `graylens_rollout_evaluation_seconds`.

use super::*;

impl Alerts {
    /// Judges every live rollout once.
    pub async fn evaluate_all(&self) {
        let live: Vec<(String, RolloutSpec, DateTime<Utc>)> = self
            .lock()
            .values()
            .filter(|r| !r.phase.is_terminal())
            .map(|r| (r.id.clone(), r.spec.clone(), r.judged_since))
            .collect();
        {
            let ids: Vec<&String> = live.iter().map(|(id, _, _)| id).collect();
            self.inner
                .subs
                .lock()
                .await
                .retain(|id, _| ids.contains(&id));
        }
        for (id, spec, since) in live {
            self.look(&id, &spec, since).await;
        }
    }

    /// Judges rollout `id` once and applies the verdict; returns how long
    /// the judging took.
    pub(super) async fn look(
        &self,
        id: &str,
        spec: &RolloutSpec,
        since: DateTime<Utc>,
    ) -> Duration {
        let started = Instant::now();
        let fed = self.inner.subs.lock().await.get(id).map_or(0, |s| s.fed());
        let (eval, evidence) = self.evaluate(id, spec, since).await;
        let s = &self.inner.stats;
        let took = started.elapsed();
        arrival::looked(self, id, fed, started);
        s.evaluations.fetch_add(1, Ordering::Relaxed);
        s.evaluation_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let bucket = EVALUATION_BUCKETS
            .iter()
            .position(|le| took.as_secs_f64() <= *le)
            .unwrap_or(EVALUATION_BUCKETS.len());
        s.evaluation_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        if eval.error.is_some() {
            s.evaluation_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.apply(id, since, eval, evidence);
        took
    }

    /// The comparison of `sel` for rollout `id`: from its incremental
    /// subscription (started, with one scan of what is stored, at the first
    /// look or when the sides change), so a look costs the new data only.
    async fn compare(
        &self,
        id: &str,
        sel: &Selector,
        policy: &Policy,
    ) -> graylens_analyzer::Result<Comparison> {
        let sub = {
            let mut subs = self.inner.subs.lock().await;
            match subs.get(id) {
                Some(s)
                    if s.selector() == sel
                        && *s.facets() == *policy.explain_attributes
                        && !s.is_stale() =>
                {
                    s.clone()
                }
                _ => {
                    let s = Arc::new(
                        Subscription::start(
                            self.inner.tables.store(),
                            sel.clone(),
                            policy.explain_attributes.clone().into(),
                        )
                        .await?,
                    );
                    subs.insert(id.to_string(), s.clone());
                    s
                }
            }
        };
        let mut obs = sub.observations();
        let names: Vec<String> = policy
            .metrics
            .iter()
            .filter_map(|m| m.metric.clone())
            .collect();
        if !names.is_empty() {
            let [b, c] = observe_metrics(&self.inner.tables, sel, &names).await?;
            obs.baseline.metrics = b;
            obs.canary.metrics = c;
        }
        let mut c = assemble(sel, policy, &obs);
        graylens_analyzer::compare::hold_until_covered(&mut c, self.inner.tables.store());
        Ok(c)
    }

    /// One comparison for one rollout, as an evaluation and its evidence.
    async fn evaluate(
        &self,
        id: &str,
        spec: &RolloutSpec,
        since: DateTime<Utc>,
    ) -> (Evaluation, Value) {
        let now = Utc::now();
        let mut eval = Evaluation {
            at: now,
            decision: Decision::Inconclusive,
            score: 0.0,
            reasons: Vec::new(),
            requests: SideCounts::default(),
            sample_ratio_mismatch: false,
            service: spec.service.clone(),
            baseline: spec.baseline.clone(),
            canary: spec.canary.clone(),
            error: None,
        };
        let policy = match self.policy(spec.policy.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                eval.reasons.push(e.clone());
                eval.error = Some(e);
                return (eval, Value::Null);
            }
        };
        if let Some(f) = &spec.flagger {
            if let Err(why) = crate::flagger::resolve(self, f, since, &mut eval).await {
                eval.reasons.push(why);
                return (eval, Value::Null);
            }
        }
        let sel = Selector {
            service: eval.service.clone(),
            baseline: eval.baseline.clone(),
            canary: eval.canary.clone(),
            by: spec.by,
            from: Some(since),
            to: None,
        };
        match self.compare(id, &sel, &policy).await {
            Ok(c) => {
                eval.decision = c.verdict.decision;
                eval.score = c.verdict.score;
                eval.reasons = c.verdict.reasons.clone();
                eval.requests = SideCounts {
                    baseline: c.baseline.requests,
                    canary: c.canary.requests,
                };
                eval.sample_ratio_mismatch = c.sample_ratio.as_ref().is_some_and(|s| s.mismatch);
                let evidence = json!({
                    "policy": c.policy,
                    "score": c.verdict.score,
                    "window": c.window,
                    "requests": eval.requests,
                    "error_rate": {"baseline": c.baseline.error_rate, "canary": c.canary.error_rate},
                    "latency_ms": {"baseline": c.baseline.latency_ms, "canary": c.canary.latency_ms},
                    "metrics": c.metrics,
                    "sample_ratio": c.sample_ratio,
                    "explanations": c.explanations,
                });
                (eval, evidence)
            }
            Err(graylens_analyzer::Error::NotFound(m)) => {
                eval.reasons.push(format!("waiting for data: {m}"));
                (eval, Value::Null)
            }
            Err(e) => {
                tracing::error!(service = %sel.service, error = %e, "rollout evaluation failed");
                eval.reasons.push(format!("graylens could not judge: {e}"));
                eval.error = Some(e.to_string());
                (eval, Value::Null)
            }
        }
    }
}
