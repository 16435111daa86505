use super::*;
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
