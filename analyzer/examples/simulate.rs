//! How often does the judge roll back a good canary, and how fast does it
//! catch a bad one, when the rollout controller asks again and again?
//!
//! Each run streams requests (90% baseline, 10% canary) and judges after
//! every `--step` requests, up to `--requests`, with the default policy.
//! A run "fails" at its first `fail` verdict. For contrast, the same looks
//! are judged by the naive rule "single-look Mann–Whitney or Fisher p < 0.05"
//! (what a fixed-horizon test gives when peeked at).
//!
//! ```sh
//! cargo run --release -p graylens-analyzer --example simulate -- --runs 200
//! ```

use graylens_analyzer::compare::{assemble, Observations, Side};
use graylens_analyzer::{By, Decision, Policy, Selector};

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
}

/// How one version behaves.
#[derive(Clone, Copy)]
struct Behaviour {
    median_ms: f64,
    error_rate: f64,
    /// Share of requests that take `tail_ms` more.
    tail_share: f64,
    tail_ms: f64,
}

const GOOD: Behaviour = Behaviour {
    median_ms: 20.0,
    error_rate: 0.01,
    tail_share: 0.0,
    tail_ms: 0.0,
};

fn serve(g: &mut Gen, side: &mut Side, b: Behaviour) {
    let mut ms = b.median_ms * (0.5 * g.normal()).exp();
    if g.uniform() < b.tail_share {
        ms += b.tail_ms;
    }
    let ns = ms * 1e6;
    let t = &mut side.total;
    t.requests += 1;
    t.latency.record(ns);
    t.ln_sum += ns.ln();
    t.ln_sq_sum += ns.ln() * ns.ln();
    t.ln_count += 1;
    if g.uniform() < b.error_rate {
        t.errors += 1;
    }
}

struct Outcome {
    failed_at: Option<u64>,
    naive_failed: bool,
}

fn run(seed: u64, canary: Behaviour, total: u64, step: u64, policy: &Policy) -> Outcome {
    let sel = Selector {
        service: "s".into(),
        baseline: "v1".into(),
        canary: "v2".into(),
        by: By::Version,
        from: None,
        to: None,
    };
    let mut g = Gen(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    let mut obs = Observations::default();
    let mut out = Outcome {
        failed_at: None,
        naive_failed: false,
    };
    for n in 1..=total {
        if g.uniform() < 0.1 {
            serve(&mut g, &mut obs.canary, canary);
        } else {
            serve(&mut g, &mut obs.baseline, GOOD);
        }
        if n % step != 0 {
            continue;
        }
        let c = assemble(&sel, policy, &obs);
        if c.verdict.decision == Decision::Fail && out.failed_at.is_none() {
            out.failed_at = Some(obs.canary.total.requests);
        }
        let p = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .and_then(|v| v["p_value"].as_f64())
                .unwrap_or(1.0)
        };
        if p(&c.report.mann_whitney) < 0.05 || p(&c.report.fisher_errors) < 0.05 {
            out.naive_failed = true;
        }
        if out.failed_at.is_some() && out.naive_failed {
            break;
        }
    }
    out
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    let runs = arg("--runs", 100);
    let total = arg("--requests", 40_000);
    let step = arg("--step", 1_000);
    let policy = Policy::default();
    // The same metrics with no tolerance at all: any detected change fails,
    // so A/A runs show the false-alarm rate of the tests themselves.
    let mut strict = Policy::default();
    for m in &mut strict.metrics {
        m.tolerance_relative = 0.0;
        m.tolerance_absolute = 0.0;
    }
    let scenarios: [(&str, Behaviour, &Policy); 7] = [
        ("A/A (canary = baseline)", GOOD, &policy),
        ("A/A, zero tolerance", GOOD, &strict),
        (
            "p50 +30%",
            Behaviour {
                median_ms: 26.0,
                ..GOOD
            },
            &policy,
        ),
        (
            "error rate 1% → 3%",
            Behaviour {
                error_rate: 0.03,
                ..GOOD
            },
            &policy,
        ),
        (
            "5% of requests +200 ms (p99)",
            Behaviour {
                tail_share: 0.05,
                tail_ms: 200.0,
                ..GOOD
            },
            &policy,
        ),
        (
            "p50 +5% (inside tolerance)",
            Behaviour {
                median_ms: 21.0,
                ..GOOD
            },
            &policy,
        ),
        (
            "p50 +5%, zero tolerance",
            Behaviour {
                median_ms: 21.0,
                ..GOOD
            },
            &strict,
        ),
    ];
    println!("{runs} runs per scenario, {total} requests per run (10% canary), a verdict every {step} requests\n");
    println!("| scenario | graylens: runs failed | median canary requests at failure | naive peeking: runs failed |");
    println!("|---|---|---|---|");
    for (name, canary, policy) in scenarios {
        let outcomes: Vec<Outcome> = (0..runs)
            .map(|r| run(r + 1, canary, total, step, policy))
            .collect();
        let mut at: Vec<u64> = outcomes.iter().filter_map(|o| o.failed_at).collect();
        at.sort_unstable();
        let median = at
            .get(at.len() / 2)
            .map_or("-".to_string(), |v| v.to_string());
        let naive = outcomes.iter().filter(|o| o.naive_failed).count();
        println!(
            "| {name} | {}/{runs} | {median} | {naive}/{runs} |",
            at.len()
        );
    }
}
