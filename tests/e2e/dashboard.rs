//! The web UI in real headless Chromium, and `/metrics`: a bad canary is
//! streamed, a rollout registered and rolled back, then the home,
//! comparison and rollout pages are rendered (DOM after the scripts ran)
//! and screenshotted under `target/tmp/ui-screenshots/`.

use crate::browser::{dom, screenshot};
use crate::harness::{now_ns, Server};
use crate::receiver::Receiver;
use crate::traffic::{get, requests_at, send, Gen};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn pages_render_versions_charts_verdict_and_actions_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(200);
    let s = Server::start_with(
        &dir.path().join("data"),
        "[alerts]\ninterval_secs = 0.5\nallowed_targets = [\"http://127.0.0.1:\"]\n",
    );
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/rollouts", s.api))
        .json(&json!({"name": "checkout-1.5", "service": "checkout", "baseline": "1.4.2", "canary": "1.5.0", "since": "2020-01-01T00:00:00Z",
                      "actions": [{"type": "webhook", "url": hook.url("/hook"), "secret": "s"}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut g = Gen(21);
    // Two minutes of history in bins, the canary slower and failing more.
    for i in 0..6u64 {
        let t = now_ns() - (6 - i) * 20_000_000_000;
        send(
            &s,
            requests_at(&mut g, "checkout", "1.4.2", 600, 20.0, 0.005, t, &[]),
        );
        send(
            &s,
            requests_at(&mut g, "checkout", "1.5.0", 600, 30.0, 0.05, t, &[]),
        );
    }
    // Full-link gray release: colored and uncolored requests of another service.
    let t = now_ns() - 30_000_000_000;
    send(
        &s,
        requests_at(&mut g, "search", "3.0", 300, 10.0, 0.0, t, &[]),
    );
    send(
        &s,
        requests_at(
            &mut g,
            "search",
            "3.0",
            300,
            14.0,
            0.0,
            t,
            &[("traffic.lane", "gray")],
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&s, &format!("/api/v1/rollouts/{id}")).1["phase"] != "rolled_back" {
        assert!(Instant::now() < deadline, "not rolled back");
        std::thread::sleep(Duration::from_millis(200));
    }
    hook.wait_for(10, "the rollback", |l| !l.is_empty());

    let profile = dir.path().join("chromium");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let home = dom(&profile, &format!("{}/", s.api));
    for want in [
        "Services and rollouts",
        "checkout-1.5",
        "1.4.2 → 1.5.0",
        "rolled back",
        "compare 1.4.2 → 1.5.0",
    ] {
        assert!(home.contains(want), "home page lacks {want:?}:\n{home}");
    }

    let url = format!(
        "{}/compare?service=checkout&baseline=1.4.2&canary=1.5.0",
        s.api
    );
    let page = dom(&profile, &url);
    for want in [
        "baseline: 1.4.2",
        "canary: 1.5.0",
        r#"class="decision fail""#,
        "Latency distribution (cumulative)",
        "p99 latency over time",
        "Error rate over time",
        "latency_p50",
        "error_rate",
        "GET /cart",
        "webhook: rollback",
        "delivered",
        "What explains it",
    ] {
        assert!(
            page.contains(want),
            "comparison page lacks {want:?}:\n{page}"
        );
    }
    let charts = page.matches(r#"<svg class="chart""#).count();
    assert!(charts >= 6, "{charts} charts drawn");
    let lines = page.matches(r#"class="series""#).count();
    assert!(
        lines >= 10,
        "{lines} series drawn: both versions in each chart"
    );
    assert!(
        !page.contains("no data in the window yet"),
        "an empty chart:\n{page}"
    );

    let rollout = dom(&profile, &format!("{}/rollouts/{id}", s.api));
    for want in [
        "Rollout checkout-1.5",
        "State history",
        "rolled back",
        "POST http://",
        "Verdict score at each look",
    ] {
        assert!(
            rollout.contains(want),
            "rollout page lacks {want:?}:\n{rollout}"
        );
    }
    let lanes = dom(
        &profile,
        &format!(
            "{}/compare?service=search&baseline=&canary=gray&by=lane",
            s.api
        ),
    );
    for want in [
        "Whole traces by lane",
        "(uncolored)",
        "gray",
        "Where the delta comes from",
        "by lane",
    ] {
        assert!(
            lanes.contains(want),
            "lane comparison lacks {want:?}:\n{lanes}"
        );
    }
    let empty = dom(
        &profile,
        &format!(
            "{}/compare?service=checkout&baseline=1.4.2&canary=9.9.9",
            s.api
        ),
    );
    assert!(
        empty.contains(r#"class="error""#) && empty.contains("9.9.9"),
        "{empty}"
    );

    screenshot(&profile, &format!("{}/", s.api), &shots.join("home.png"));
    screenshot(&profile, &url, &shots.join("compare.png"));
    screenshot(
        &profile,
        &format!("{}/rollouts/{id}", s.api),
        &shots.join("rollout.png"),
    );
    println!("screenshots in {}", shots.display());

    // /metrics: health and per-version gauges, as Prometheus reads them.
    let r = reqwest::blocking::get(format!("{}/metrics", s.api)).unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().unwrap();
    for want in [
        "graylens_records_accepted_total{signal=\"traces\",transport=\"http\"} 7800",
        "graylens_queue_depth 0",
        "graylens_action_attempts_total{outcome=\"delivered\"} 1",
        "graylens_version_requests{service=\"checkout\",version=\"1.5.0\"}",
        "graylens_version_latency_ms{service=\"checkout\",version=\"1.5.0\",quantile=\"0.99\"}",
        "graylens_rollout_verdict{rollout=",
        "# TYPE graylens_rollout_evaluation_seconds histogram",
        "graylens_rollout_evaluation_seconds_bucket{le=\"0.005\"}",
        "graylens_rollout_evaluation_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(text.contains(want), "/metrics lacks {want:?}:\n{text}");
    }
    // The look-time histogram: cumulative buckets, +Inf equal to the count.
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series}"))
    };
    let buckets: Vec<f64> = ["0.001", "0.01", "0.1", "1", "+Inf"]
        .iter()
        .map(|le| {
            value(&format!(
                "graylens_rollout_evaluation_seconds_bucket{{le=\"{le}\"}}"
            ))
        })
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    let count = value("graylens_rollout_evaluation_seconds_count");
    assert!(count >= 1.0 && buckets[4] == count, "{buckets:?} {count}");
    // Every series the Grafana dashboard queries is exposed.
    let grafana: serde_json::Value = serde_json::from_str(include_str!(
        "../../dashboards/grafana/graylens-version-comparison.json"
    ))
    .unwrap();
    let used = grafana.to_string();
    let mut names: Vec<&str> = used
        .match_indices("graylens_")
        .map(|(i, _)| {
            let rest = &used[i..];
            &rest[..rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())]
        })
        .filter(|n| *n != "graylens_version_comparison")
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for n in names {
        assert!(
            text.contains(&format!("\n{n}")),
            "the Grafana dashboard queries {n}, which /metrics lacks"
        );
    }
    s.stop();
}
