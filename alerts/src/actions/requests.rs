//! The HTTP requests an action turns into, built once when the transition
//! happens and stored in the rollout's outbox, so every retry sends the
//! same bytes under the same `Idempotency-Key`.

use super::signature::sign;
use crate::rollout::{ActionKind, Delivery, DeliveryStatus, Rollout};
use crate::spec::ActionSpec;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// The API group path of Argo Rollouts (argoproj/argo-rollouts
/// `pkg/kubectl-argo-rollouts/cmd/{abort,pause,promote}`).
const ARGO_PATH: &str = "apis/argoproj.io/v1alpha1";

/// The deliveries of `action` for every target of `rollout`.
pub fn deliveries(
    rollout: &Rollout,
    action: ActionKind,
    decision: &str,
    reasons: &[String],
    evidence: Value,
    now: DateTime<Utc>,
) -> Vec<Delivery> {
    let spec_sides = || {
        let s = &rollout.spec;
        (s.service.as_str(), s.baseline.as_str(), s.canary.as_str())
    };
    let (service, baseline, canary) = rollout.last().map_or_else(spec_sides, |e| {
        (e.service.as_str(), e.baseline.as_str(), e.canary.as_str())
    });
    let mut out = Vec::new();
    for (target, spec) in rollout.spec.actions.iter().enumerate() {
        let mut push = |method: &str, url: String, content_type: &str, body: String, signature| {
            out.push(Delivery {
                id: uuid::Uuid::new_v4().to_string(),
                action,
                target,
                target_type: spec.kind().into(),
                method: method.into(),
                url,
                content_type: content_type.into(),
                body,
                signature,
                created_at: now,
                status: DeliveryStatus::Pending,
                next_attempt_at: now,
                attempts: Vec::new(),
            });
        };
        match spec {
            ActionSpec::Webhook { url, secret } => {
                let id = uuid::Uuid::new_v4().to_string();
                let body = json!({
                    "id": id,
                    "rollout_id": rollout.id,
                    "action": action.as_str(),
                    "service": service,
                    "baseline": baseline,
                    "canary": canary,
                    "decision": decision,
                    "reasons": reasons,
                    "evidence": evidence,
                    "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                })
                .to_string();
                let sig = sign(secret.as_bytes(), body.as_bytes());
                push("POST", url.clone(), "application/json", body, Some(sig));
                out.last_mut().expect("just pushed").id = id;
            }
            ActionSpec::ArgoRollouts {
                api_server,
                namespace,
                name,
                ..
            } => {
                let base = format!(
                    "{}/{ARGO_PATH}/namespaces/{namespace}/rollouts/{name}",
                    api_server.trim_end_matches('/')
                );
                let mut patch = |url: String, body: Value| {
                    push(
                        "PATCH",
                        url,
                        "application/merge-patch+json",
                        body.to_string(),
                        None,
                    )
                };
                match action {
                    // abort goes through the status subresource.
                    ActionKind::Rollback => {
                        patch(format!("{base}/status"), json!({"status": {"abort": true}}))
                    }
                    ActionKind::Pause => patch(base, json!({"spec": {"paused": true}})),
                    ActionKind::Resume => patch(base, json!({"spec": {"paused": false}})),
                    ActionKind::Promote => {
                        patch(
                            format!("{base}/status"),
                            json!({"status": {"pauseConditions": null}}),
                        );
                        patch(base, json!({"spec": {"paused": false}}));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Origin;
    use crate::spec::RolloutSpec;

    fn rollout() -> Rollout {
        let spec: RolloutSpec = serde_json::from_str(
            r#"{"service":"shop","baseline":"v1","canary":"v2","actions":[
                {"type":"webhook","url":"http://127.0.0.1:1/h","secret":"s"},
                {"type":"argo-rollouts","api_server":"https://k8s:6443/","namespace":"ns","name":"shop"}]}"#,
        )
        .unwrap();
        Rollout::new("r1".into(), Origin::Api, spec, Utc::now())
    }

    #[test]
    fn rollback_is_a_signed_webhook_and_an_abort_on_the_status_subresource() {
        let r = rollout();
        let d = deliveries(
            &r,
            ActionKind::Rollback,
            "fail",
            &["p99 up".into()],
            json!({"score": 0}),
            Utc::now(),
        );
        assert_eq!(d.len(), 2);
        let body: Value = serde_json::from_str(&d[0].body).unwrap();
        assert_eq!(body["id"], d[0].id.as_str());
        assert_eq!(body["rollout_id"], "r1");
        assert_eq!(body["action"], "rollback");
        assert_eq!(body["canary"], "v2");
        assert_eq!(body["reasons"][0], "p99 up");
        assert!(super::super::signature::verify(
            b"s",
            d[0].body.as_bytes(),
            d[0].signature.as_deref().unwrap()
        ));
        assert_eq!(d[1].method, "PATCH");
        assert_eq!(
            d[1].url,
            "https://k8s:6443/apis/argoproj.io/v1alpha1/namespaces/ns/rollouts/shop/status"
        );
        assert_eq!(d[1].content_type, "application/merge-patch+json");
        assert_eq!(d[1].body, r#"{"status":{"abort":true}}"#);
    }

    #[test]
    fn pause_and_promote_patch_the_rollout() {
        let r = rollout();
        let d = deliveries(
            &r,
            ActionKind::Pause,
            "inconclusive",
            &[],
            json!({}),
            Utc::now(),
        );
        assert_eq!(d[1].body, r#"{"spec":{"paused":true}}"#);
        assert!(d[1].url.ends_with("/rollouts/shop"));
        let d = deliveries(&r, ActionKind::Promote, "pass", &[], json!({}), Utc::now());
        assert_eq!(d.len(), 3);
        assert_eq!(d[1].body, r#"{"status":{"pauseConditions":null}}"#);
        assert_eq!(d[2].body, r#"{"spec":{"paused":false}}"#);
    }
}
