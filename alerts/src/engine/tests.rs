use super::*;
use crate::machine::Phase;
use graylens_analyzer::{Store, StoreConfig};

fn open(dir: &Path, declared: &[RolloutSpec]) -> Alerts {
    let store = Store::open(StoreConfig {
        data_dir: dir.join("store"),
        ..Default::default()
    })
    .unwrap();
    let cfg = AlertsConfig {
        interval: Duration::from_secs(10),
        rules: Rules {
            pause_after_inconclusive: None,
            pause_on_srm: true,
        },
        retry: RetryPolicy {
            timeout: Duration::from_secs(1),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(2),
            give_up_after: Duration::from_secs(60),
        },
        max_rollouts: 10,
        lease: Duration::from_secs(15),
        allowed_targets: crate::targets::AllowedTargets(vec!["http://127.0.0.1:9/".into()]),
    };
    let policies = BTreeMap::from([("default".to_string(), Arc::new(Policy::default()))]);
    Alerts::open(
        dir,
        Tables::new(store).unwrap(),
        policies,
        cfg,
        declared,
        RoleHints::default(),
    )
    .unwrap()
}

fn spec(urls: &[&str]) -> RolloutSpec {
    let actions: Vec<Value> = urls
        .iter()
        .map(|u| json!({"type": "webhook", "url": u, "secret": "s"}))
        .collect();
    serde_json::from_value(json!({"name": "shop", "service": "shop", "baseline": "1", "canary": "2", "actions": actions}))
        .unwrap()
}

#[test]
fn a_changed_declaration_keeps_pending_deliveries_of_unchanged_actions() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), &[spec(&["http://127.0.0.1:1/a"])]);
    {
        let mut map = a.lock();
        let r = map.get_mut("config-shop").unwrap();
        let d = deliveries(
            r,
            ActionKind::Rollback,
            "fail",
            &[],
            Value::Null,
            Utc::now(),
        );
        r.deliveries.extend(d);
        persist::save(&a.inner.dir, r).unwrap();
    }
    drop(a);
    // An action added: the pending rollback to the first target survives.
    let a = open(
        tmp.path(),
        &[spec(&["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"])],
    );
    let r = a.get("config-shop").unwrap();
    assert_eq!(r.deliveries.len(), 1);
    assert_eq!(r.deliveries[0].status, DeliveryStatus::Pending);
    drop(a);
    // The first action changed: its pending delivery is dropped.
    let a = open(tmp.path(), &[spec(&["http://127.0.0.1:1/c"])]);
    assert!(a.get("config-shop").unwrap().deliveries.is_empty());
}

#[test]
fn a_rollback_cancels_pending_pauses() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), &[spec(&["http://127.0.0.1:1/a"])]);
    let mut map = a.lock();
    let r = map.get_mut("config-shop").unwrap();
    let pause = deliveries(
        r,
        ActionKind::Pause,
        "inconclusive",
        &[],
        Value::Null,
        Utc::now(),
    );
    r.deliveries.extend(pause);
    supersede(r, Utc::now());
    assert_eq!(r.deliveries[0].status, DeliveryStatus::Cancelled);
    assert!(r.deliveries[0].attempts[0].outcome.contains("superseded"));
}

#[test]
fn a_rollback_waits_for_the_answer_to_a_request_already_sent_to_its_target() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), &[spec(&["http://127.0.0.1:1/a"])]);
    let now = Utc::now();
    let pause_id = {
        let mut map = a.lock();
        let r = map.get_mut("config-shop").unwrap();
        let pause = deliveries(r, ActionKind::Pause, "inconclusive", &[], Value::Null, now);
        r.deliveries.extend(pause);
        r.deliveries[0].id.clone()
    };
    let none = std::collections::HashSet::new();
    let (due, _) = crate::deliver::due(&a, now, &none);
    assert_eq!(due.len(), 1);
    // The pause is on the wire when the verdict turns to fail.
    let sending = std::collections::HashSet::from([pause_id]);
    {
        let mut map = a.lock();
        let r = map.get_mut("config-shop").unwrap();
        supersede(r, now);
        let rollback = deliveries(r, ActionKind::Rollback, "fail", &[], Value::Null, now);
        r.deliveries.extend(rollback);
    }
    let (due, _) = crate::deliver::due(&a, now, &sending);
    assert!(due.is_empty(), "the rollback overtook the pause being sent");
    let (due, _) = crate::deliver::due(&a, now, &none);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].1.action, ActionKind::Rollback);
}

#[test]
fn a_new_flagger_revision_cancels_what_the_old_one_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(&["http://127.0.0.1:1/a"]);
    s.flagger = Some(crate::spec::FlaggerTarget {
        namespace: "test".into(),
        name: "shop".into(),
    });
    let a = open(tmp.path(), &[s]);
    let hook = |checksum: &str| crate::flagger::HookRequest {
        name: "shop".into(),
        namespace: "test".into(),
        phase: "Progressing".into(),
        checksum: checksum.into(),
        metadata: Default::default(),
    };
    a.flagger_hook(crate::flagger::Hook::Event, &hook("c1"), None);
    {
        let mut map = a.lock();
        let r = map.get_mut("config-shop").unwrap();
        let rollback = deliveries(
            r,
            ActionKind::Rollback,
            "fail",
            &[],
            Value::Null,
            Utc::now(),
        );
        r.deliveries.extend(rollback);
    }
    a.flagger_hook(crate::flagger::Hook::Event, &hook("c1"), None);
    assert_eq!(
        a.get("config-shop").unwrap().deliveries[0].status,
        DeliveryStatus::Pending,
        "same revision"
    );
    a.flagger_hook(crate::flagger::Hook::Event, &hook("c2"), None);
    let d = &a.get("config-shop").unwrap().deliveries[0];
    assert_eq!(d.status, DeliveryStatus::Cancelled);
    assert!(d.attempts[0].outcome.contains("new canary revision c2"));
}

#[test]
fn every_node_names_a_flagger_canary_s_rollout_alike() {
    let hook = |namespace: &str| crate::flagger::HookRequest {
        name: "shop".into(),
        namespace: namespace.into(),
        phase: "Progressing".into(),
        checksum: "c1".into(),
        metadata: Default::default(),
    };
    let ids = |namespace: &str| -> Vec<String> {
        let tmp = tempfile::tempdir().unwrap();
        let a = open(tmp.path(), &[]);
        a.flagger_hook(crate::flagger::Hook::Event, &hook(namespace), None);
        a.flagger_hook(crate::flagger::Hook::Event, &hook(namespace), None);
        a.list().into_iter().map(|r| r.id).collect()
    };
    // Two nodes (two engines) seeing the same canary first: one id, so the
    // registry holds one rollout for it; another canary gets another.
    let (node_a, node_b) = (ids("test"), ids("test"));
    assert_eq!(node_a.len(), 1, "{node_a:?}");
    assert_eq!(node_a, node_b);
    assert!(node_a[0].starts_with("flagger-") && node_a[0].len() == 8 + 32);
    assert_ne!(ids("prod"), node_a);
}

fn eval(decision: Decision, canary: u64) -> Evaluation {
    Evaluation {
        at: Utc::now(),
        decision,
        score: 0.0,
        reasons: vec![],
        requests: SideCounts {
            baseline: 100,
            canary,
        },
        sample_ratio_mismatch: false,
        service: "shop".into(),
        baseline: "1".into(),
        canary: "2".into(),
        error: None,
    }
}

/// The rollout as its file holds it.
fn on_disk(a: &Alerts) -> Rollout {
    let body = std::fs::read(persist::file(&a.inner.dir, "config-shop")).unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn looks_that_change_only_the_history_are_written_at_most_every_half_minute() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), &[spec(&["http://127.0.0.1:1/a"])]);
    let since = a.get("config-shop").unwrap().judged_since;
    // The first look is written (the sides are new: analyzing, inconclusive).
    a.apply(
        "config-shop",
        since,
        eval(Decision::Inconclusive, 100),
        Value::Null,
    );
    assert_eq!(on_disk(&a).history.len(), 1);
    // Another inconclusive look changes only the history: not written yet.
    a.apply(
        "config-shop",
        since,
        eval(Decision::Inconclusive, 120),
        Value::Null,
    );
    assert_eq!(a.get("config-shop").unwrap().history.len(), 2);
    assert_eq!(on_disk(&a).history.len(), 1);
    // A failing look is a transition with an action: written at once.
    a.apply("config-shop", since, eval(Decision::Fail, 140), Value::Null);
    let r = on_disk(&a);
    assert_eq!(r.history.len(), 3);
    assert_eq!(r.phase, Phase::RolledBack);
    assert_eq!(r.deliveries.len(), 1);
}
