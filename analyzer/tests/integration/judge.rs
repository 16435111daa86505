//! The judge on synthetic observations: regressions fail with evidence, an
//! A/A pair passes, too little data is inconclusive, and the sample-ratio
//! guard distrusts a skewed split.

use graylens_analyzer::compare::{assemble, Observations, Side, Traffic};
use graylens_analyzer::judge::Classification;
use graylens_analyzer::{By, Decision, Policy, Selector};

/// Deterministic log-normal-ish latencies (ns) and errors.
struct Gen(u64);
impl Gen {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    /// `n` requests with median `median_ms`, log-sd 0.5, error probability `p_err`.
    fn side(&mut self, n: u64, median_ms: f64, p_err: f64) -> Side {
        let mut t = Traffic::default();
        for _ in 0..n {
            let ns = median_ms * 1e6 * (0.5 * self.normal()).exp();
            t.latency.record(ns);
            t.requests += 1;
            t.ln_sum += ns.ln();
            t.ln_sq_sum += ns.ln() * ns.ln();
            t.ln_count += 1;
            if self.uniform() < p_err {
                t.errors += 1;
            }
        }
        let mut s = Side {
            total: t.clone(),
            ..Default::default()
        };
        s.operations.insert("GET /cart".into(), t);
        s
    }
}

fn selector() -> Selector {
    Selector {
        service: "checkout".into(),
        baseline: "v1".into(),
        canary: "v2".into(),
        by: By::Version,
        from: None,
        to: None,
    }
}

fn metric<'a>(
    c: &'a graylens_analyzer::Comparison,
    name: &str,
) -> &'a graylens_analyzer::judge::MetricResult {
    c.metrics.iter().find(|m| m.name == name).unwrap()
}

#[test]
fn latency_and_error_regression_fails_with_reasons() {
    let mut g = Gen(1);
    let obs = Observations {
        baseline: g.side(5000, 20.0, 0.005),
        canary: g.side(5000, 30.0, 0.05),
    };
    let c = assemble(&selector(), &Policy::default(), &obs);
    assert_eq!(c.verdict.decision, Decision::Fail, "{:#?}", c.verdict);
    let p50 = metric(&c, "latency_p50");
    assert_eq!(p50.classification, Classification::Fail);
    let [lo, hi] = p50.ci.unwrap();
    assert!(
        lo.unwrap() > 0.0 && hi.unwrap() > p50.delta.unwrap(),
        "{p50:?}"
    );
    assert!(p50.adjusted_p_value.unwrap() <= 0.05 && p50.adjusted_p_value >= p50.p_value);
    assert_eq!(
        metric(&c, "error_rate").classification,
        Classification::Fail
    );
    assert!(
        c.verdict
            .reasons
            .iter()
            .any(|r| r.starts_with("error_rate: worse beyond tolerance")),
        "{:?}",
        c.verdict.reasons
    );
    // The single-look report agrees on the direction of the shift.
    let hl = c.report.hodges_lehmann_ms.as_ref().unwrap();
    assert!(hl["estimate"].as_f64().unwrap() > 5.0, "{hl}");
    assert!(
        c.report.mann_whitney.as_ref().unwrap()["p_value"]
            .as_f64()
            .unwrap()
            < 1e-10
    );
    assert_eq!(c.operations.len(), 1);
}

#[test]
fn identical_versions_pass_once_the_intervals_exclude_the_margins() {
    let mut g = Gen(2);
    let obs = Observations {
        baseline: g.side(60_000, 20.0, 0.01),
        canary: g.side(60_000, 20.0, 0.01),
    };
    let c = assemble(&selector(), &Policy::default(), &obs);
    assert_eq!(c.verdict.decision, Decision::Pass, "{:#?}", c.verdict);
    assert_eq!(c.verdict.score, 100.0);
    for m in &c.metrics {
        assert!(m.p_value.unwrap() > 0.05, "{m:?}");
        let d = m.detectable_change.expect("bounded");
        assert!(d <= m.pass_margin, "{m:?}");
        assert!(
            m.reason.contains("the interval excludes a regression of"),
            "{}",
            m.reason
        );
    }
    // The same versions with a twelfth of the data: no regression seen, but
    // the error rate's interval still allows one beyond its margin.
    let obs = Observations {
        baseline: g.side(5000, 20.0, 0.01),
        canary: g.side(5000, 20.0, 0.01),
    };
    let c = assemble(&selector(), &Policy::default(), &obs);
    let err = metric(&c, "error_rate");
    assert_eq!(err.classification, Classification::Inconclusive, "{err:?}");
    assert!(err.detectable_change.unwrap() > err.pass_margin);
    assert!(
        err.reason.contains("more requests per side"),
        "{}",
        err.reason
    );
    println!("{}", err.reason);
    assert_eq!(c.verdict.decision, Decision::Inconclusive);
}

/// The counts of issue #13: 4 of 400 baseline requests failed, 32 of 400
/// canary ones, latency equal. The count test alone must fail it.
#[test]
fn eight_times_the_errors_fails_at_400_requests_per_side() {
    let mut g = Gen(21);
    let mut obs = Observations {
        baseline: g.side(400, 20.0, 0.0),
        canary: g.side(400, 20.0, 0.0),
    };
    obs.baseline.total.errors = 4;
    obs.canary.total.errors = 32;
    let c = assemble(&selector(), &Policy::default(), &obs);
    let err = metric(&c, "error_rate");
    assert_eq!(err.classification, Classification::Fail, "{err:?}");
    assert!(err.adjusted_p_value.unwrap() < 0.01, "{err:?}");
    println!("{}", err.reason);
    assert_eq!(c.verdict.decision, Decision::Fail, "{:#?}", c.verdict);
    // With k = 100 alone (the earlier test) the same counts did not fail.
    let single = Policy {
        count_prior_mixture: vec![graylens_analyzer::judge::policy::PriorComponent {
            k: 100.0,
            weight: 1.0,
        }],
        ..Policy::default()
    };
    let c = assemble(&selector(), &single, &obs);
    assert_ne!(
        metric(&c, "error_rate").classification,
        Classification::Fail
    );
}

/// 400 requests per side cannot bound p99 from above: inconclusive, with
/// how many more requests it needs — never a pass on an unbounded interval.
#[test]
fn an_unbounded_p99_is_inconclusive_with_what_is_missing() {
    let mut g = Gen(22);
    let obs = Observations {
        baseline: g.side(400, 20.0, 0.0),
        canary: g.side(400, 20.0, 0.0),
    };
    let c = assemble(&selector(), &Policy::default(), &obs);
    let p99 = metric(&c, "latency_p99");
    assert_eq!(p99.classification, Classification::Inconclusive, "{p99:?}");
    assert_eq!(p99.detectable_change, None);
    println!("{}", p99.reason);
    assert!(
        p99.reason.contains("cannot be bounded yet: about ")
            && p99.reason.contains("more requests per side"),
        "{}",
        p99.reason
    );
    assert_ne!(c.verdict.decision, Decision::Pass);
    // The estimate is about right: that many more requests bound it.
    let more: u64 = p99
        .reason
        .split("about ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let obs = Observations {
        baseline: g.side(400 + more, 20.0, 0.0),
        canary: g.side(400 + more, 20.0, 0.0),
    };
    let c = assemble(&selector(), &Policy::default(), &obs);
    assert!(metric(&c, "latency_p99").detectable_change.is_some());
}

#[test]
fn a_regression_inside_tolerance_passes() {
    let mut g = Gen(3);
    // +2.5% on the median, tolerance 5%: detectable with this much data, tolerated.
    let obs = Observations {
        baseline: g.side(200_000, 20.0, 0.0),
        canary: g.side(200_000, 20.5, 0.0),
    };
    let c = assemble(&selector(), &Policy::default(), &obs);
    let p50 = metric(&c, "latency_p50");
    assert_eq!(p50.classification, Classification::Pass, "{p50:?}");
    assert_eq!(c.verdict.decision, Decision::Pass);
}

#[test]
fn too_little_data_is_inconclusive_and_no_data_is_named() {
    let mut g = Gen(4);
    let obs = Observations {
        baseline: g.side(5000, 20.0, 0.01),
        canary: g.side(50, 60.0, 0.5),
    };
    let c = assemble(&selector(), &Policy::default(), &obs);
    assert_eq!(c.verdict.decision, Decision::Inconclusive);
    assert!(c
        .metrics
        .iter()
        .all(|m| m.classification == Classification::Inconclusive && m.p_value.is_none()));
    assert!(
        c.verdict.reasons[0].contains("needs at least 200 requests per side"),
        "{:?}",
        c.verdict.reasons
    );

    let obs = Observations {
        baseline: g.side(5000, 20.0, 0.01),
        canary: Side::default(),
    };
    let c = assemble(&selector(), &Policy::default(), &obs);
    assert_eq!(c.verdict.decision, Decision::Inconclusive);
    assert!(c
        .metrics
        .iter()
        .all(|m| m.classification == Classification::Nodata));
    assert!(
        c.verdict.reasons[0].contains("no requests from the canary (\"v2\")"),
        "{:?}",
        c.verdict.reasons
    );
    assert_eq!(c.canary.requests, 0);
}

#[test]
fn sample_ratio_mismatch_makes_the_verdict_inconclusive() {
    let mut g = Gen(5);
    let policy = Policy {
        canary_weight: Some(0.1),
        ..Policy::default()
    };
    // 10% expected, 30% observed.
    let obs = Observations {
        baseline: g.side(7000, 20.0, 0.01),
        canary: g.side(3000, 20.0, 0.01),
    };
    let c = assemble(&selector(), &policy, &obs);
    assert!(c.sample_ratio.as_ref().unwrap().mismatch);
    assert_eq!(c.verdict.decision, Decision::Inconclusive);
    assert!(c.verdict.reasons[0].starts_with("sample ratio mismatch"));
    // The expected split passes the guard.
    let obs = Observations {
        baseline: g.side(90_000, 20.0, 0.0),
        canary: g.side(10_000, 20.0, 0.0),
    };
    let c = assemble(&selector(), &policy, &obs);
    assert!(!c.sample_ratio.as_ref().unwrap().mismatch);
    assert_eq!(c.verdict.decision, Decision::Pass, "{:#?}", c.verdict);
}

#[test]
fn decrease_is_bad_when_the_policy_says_so() {
    let mut g = Gen(6);
    let policy = Policy::from_toml(
        r#"[[metrics]]
           name = "latency_p50"
           kind = "latency"
           quantile = 0.5
           direction = "decrease"
           tolerance_relative = 0.1"#,
    )
    .unwrap();
    let obs = Observations {
        baseline: g.side(5000, 20.0, 0.0),
        canary: g.side(5000, 10.0, 0.0),
    };
    assert_eq!(
        assemble(&selector(), &policy, &obs).verdict.decision,
        Decision::Fail
    );
    let obs = Observations {
        baseline: g.side(5000, 20.0, 0.0),
        canary: g.side(5000, 40.0, 0.0),
    };
    assert_eq!(
        assemble(&selector(), &policy, &obs).verdict.decision,
        Decision::Pass
    );
}

#[test]
fn the_example_policy_file_loads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policy.example.toml"
    ))
    .unwrap();
    let p = Policy::from_toml(&text).unwrap();
    assert_eq!(p.metrics.len(), 4);
}

#[test]
fn error_logs_outnumbering_requests_never_pass_a_regression() {
    // Three error logs per request on the baseline, four on the canary:
    // the canary's own-rate bound, meant for errors (a share of requests),
    // wrapped around below zero and passed it.
    let policy = Policy::from_toml(
        r#"
        [[metrics]]
        name = "log_errors"
        kind = "log_error_rate"
        tolerance_absolute = 0.5
        "#,
    )
    .unwrap();
    let mut g = Gen(9);
    for (b, c) in [(3, 4), (3, 30)] {
        let mut obs = Observations {
            baseline: g.side(1000, 20.0, 0.01),
            canary: g.side(1000, 20.0, 0.01),
        };
        obs.baseline.log_errors = 1000 * b;
        obs.canary.log_errors = 1000 * c;
        let verdict = assemble(&selector(), &policy, &obs);
        let m = metric(&verdict, "log_errors");
        assert_eq!(m.classification, Classification::Fail, "{b} vs {c}: {m:?}");
        assert_eq!(verdict.verdict.decision, Decision::Fail);
    }
}

#[test]
fn a_policy_without_critical_metrics_does_not_pass_on_no_data() {
    let policy = Policy::from_toml(
        r#"
        [[metrics]]
        name = "errors"
        kind = "error_rate"
        critical = false
        "#,
    )
    .unwrap();
    let c = assemble(&selector(), &policy, &Observations::default());
    assert_eq!(
        c.verdict.decision,
        Decision::Inconclusive,
        "{:?}",
        c.verdict
    );
    assert!(!c.verdict.reasons.is_empty());
    // With data that settles it, it passes.
    let mut g = Gen(5);
    let obs = Observations {
        baseline: g.side(40_000, 20.0, 0.01),
        canary: g.side(40_000, 20.0, 0.01),
    };
    let c = assemble(&selector(), &policy, &obs);
    assert_eq!(c.verdict.decision, Decision::Pass, "{:?}", c.verdict);
}
