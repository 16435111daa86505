//! The judge as deployed, on simulated streams: how often it rolls back a
//! good canary, and how fast it catches a bad one.
//!
//! Traffic arrives at `rps` requests per second, a share of it to the
//! canary; every `--tick` seconds (1, the default `alerts.interval_secs`)
//! the judge (default policy, whole rollout as window) gives a verdict on
//! everything seen so far, for up to `--hours` (1). A run
//! "fails" at its first `fail` verdict. Latencies are log-normal (median
//! 20 ms, σ = 0.5) rounded to whole milliseconds (ties); errors 1%.
//!
//! ```sh
//! cargo run --release -p graylens-analyzer --example simulate -- --seed 1 --runs-aa 1000 --runs 200 --threads 2
//! ```

use graylens_analyzer::compare::{Observations, Side};
use graylens_analyzer::judge::judge;
use graylens_analyzer::stats::fisher::fisher_exact;
use graylens_analyzer::stats::mann_whitney::mann_whitney_binned;
use graylens_analyzer::stats::Alternative;
use graylens_analyzer::{Decision, Policy};
use statrs::distribution::{Beta, ContinuousCDF};

struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

const MEDIAN_MS: f64 = 20.0;
const SIGMA: f64 = 0.5;
/// z of the 95th and 99th percentiles.
const Z95: f64 = 1.644_853_626_951_472_2;
const Z99: f64 = 2.326_347_874_040_841;

/// What differs in the canary.
#[derive(Clone, Copy)]
enum Change {
    None,
    /// Error probability 1% → this.
    Errors(f64),
    /// Every latency times this.
    Latency(f64),
    /// Latencies above the p95 stretched so that p99 grows by this factor.
    Tail(f64),
    /// No change, but both versions' latency drifts ±50% over a day-like
    /// cycle compressed into the hour.
    Drift,
}

fn request(rng: &mut Rng, side: &mut Side, change: Change, canary: bool, t_secs: f64) {
    let mut ms = MEDIAN_MS * (SIGMA * rng.normal()).exp();
    let mut p_err = 0.01;
    match (change, canary) {
        (Change::Drift, _) => {
            ms *= 1.0 + 0.5 * (2.0 * std::f64::consts::PI * t_secs / 3600.0).sin()
        }
        (Change::Errors(p), true) => p_err = p,
        (Change::Latency(f), true) => ms *= f,
        (Change::Tail(f), true) => {
            let (p95, p99) = (
                MEDIAN_MS * (SIGMA * Z95).exp(),
                MEDIAN_MS * (SIGMA * Z99).exp(),
            );
            if ms > p95 {
                ms = p95 + (ms - p95) * (p99 * f - p95) / (p99 - p95);
            }
        }
        _ => {}
    }
    let ms = ms.round().max(1.0);
    let t = &mut side.total;
    t.requests += 1;
    t.latency.record(ms * 1e6);
    if rng.uniform() < p_err {
        t.errors += 1;
    }
}

/// Seconds until the first `fail` (None within the horizon), seconds until
/// the first `pass` before any fail, and whether the naive rule — single-look Mann–Whitney or Fisher p < 0.05 at any
/// look — fired (checked only when `naive`).
fn run(
    seed: u64,
    change: Change,
    rps: u64,
    share: f64,
    (horizon_s, tick_s): (u64, u64),
    policy: &Policy,
    naive: bool,
) -> (Option<u64>, Option<u64>, bool) {
    let mut rng = Rng(seed);
    let mut passed = None;
    let mut obs = Observations::default();
    let mut naive_fired = false;
    for tick in 1..=horizon_s / tick_s {
        for i in 0..rps * tick_s {
            let t = (tick - 1) as f64 * tick_s as f64 + i as f64 / rps as f64;
            let canary = rng.uniform() < share;
            let side = if canary {
                &mut obs.canary
            } else {
                &mut obs.baseline
            };
            request(&mut rng, side, change, canary, t);
        }
        if naive && !naive_fired {
            let (b, c) = (&obs.baseline.total, &obs.canary.total);
            let (cb, cc, _) = b.latency.aligned(&c.latency);
            let mwu = mann_whitney_binned(&cc, &cb, Alternative::TwoSided, true)
                .map_or(1.0, |r| r.p_value);
            let fisher = fisher_exact(
                [
                    [c.errors, c.requests - c.errors],
                    [b.errors, b.requests - b.errors],
                ],
                Alternative::TwoSided,
            )
            .p_value;
            naive_fired = mwu < 0.05 || fisher < 0.05;
        }
        match judge(policy, &obs, ("baseline", "canary")).verdict.decision {
            Decision::Fail => return (Some(tick * tick_s), passed, naive_fired),
            Decision::Pass if passed.is_none() => passed = Some(tick * tick_s),
            _ => {}
        }
    }
    (None, passed, naive_fired)
}

/// Clopper–Pearson 95% interval for `x` successes in `n`.
fn clopper_pearson(x: u64, n: u64) -> (f64, f64) {
    let (xf, nf) = (x as f64, n as f64);
    let lo = if x == 0 {
        0.0
    } else {
        Beta::new(xf, nf - xf + 1.0).unwrap().inverse_cdf(0.025)
    };
    let hi = if x == n {
        1.0
    } else {
        Beta::new(xf + 1.0, nf - xf).unwrap().inverse_cdf(0.975)
    };
    (lo, hi)
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
    let seed = arg("--seed", 1);
    let runs_aa = arg("--runs-aa", 1000);
    let runs = arg("--runs", 200);
    let horizon = arg("--hours", 1) * 3600;
    let threads = arg("--threads", 2).max(1);
    let tick = arg("--tick", 1).max(1);
    let mut policy = Policy::default();
    // Experiments: `--k N` sets the prior concentration, `--only TEXT` keeps
    // the scenarios whose name contains TEXT, `--at RPS` one traffic level.
    let text = |name: &str| {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    // `--k 2:0.25,100:0.75` sets the count tests' prior mixture (k:weight).
    if let Some(k) = text("--k") {
        policy.count_prior_mixture = k
            .split(',')
            .map(|c| {
                let (k, w) = c.split_once(':').unwrap_or((c, "1"));
                graylens_analyzer::judge::policy::PriorComponent {
                    k: k.parse().expect("--k takes k:weight,…"),
                    weight: w.parse().expect("--k takes k:weight,…"),
                }
            })
            .collect();
    }
    // `--margin-lat X --margin-err Y` set the pass margins.
    for (flag, latency) in [("--margin-lat", true), ("--margin-err", false)] {
        if let Some(v) = text(flag) {
            for m in policy.metrics.iter_mut() {
                if (m.kind == graylens_analyzer::judge::MetricKind::Latency) == latency {
                    m.pass_margin = Some(v.parse().expect("a number"));
                }
            }
        }
    }
    if let Some(t) = text("--err-tol") {
        for m in policy.metrics.iter_mut().filter(|m| m.name == "error_rate") {
            m.tolerance_relative = t.parse().expect("--err-tol takes a number");
        }
    }
    if let Some(t) = text("--err-abs") {
        for m in policy.metrics.iter_mut().filter(|m| m.name == "error_rate") {
            m.tolerance_absolute = t.parse().expect("--err-abs takes a number");
        }
    }
    let only = text("--only").unwrap_or_default();
    let at = arg("--at", 0);
    // The policy as run: the default, or the default with the flags given.
    let changed: Vec<String> = [
        "--k",
        "--margin-lat",
        "--margin-err",
        "--err-tol",
        "--err-abs",
    ]
    .into_iter()
    .filter_map(|flag| text(flag).map(|v| format!("{flag} {v}")))
    .collect();
    let policy_text = if changed.is_empty() {
        "default policy".to_string()
    } else {
        format!("default policy with {}", changed.join(", "))
    };
    println!(
        "seed {seed}; a verdict every {tick} s for up to {horizon} s; {policy_text}; lognormal latency (median 20 ms, sigma 0.5) rounded to ms; 1% errors\n"
    );
    println!("| scenario | rps | canary share | runs | runs failed (95% Clopper–Pearson) | median time to fail | p90 time to fail | runs reaching pass (before any fail) | median time to pass | naive peeking: runs failed |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut rows: Vec<(&str, Change, u64, f64, u64)> = Vec::new();
    for (rps, share) in [(100, 0.05), (100, 0.5), (1000, 0.05), (1000, 0.5)] {
        // At 1000 rps an A/A run is 3.6 million requests: `--runs` of them.
        rows.push((
            "A/A",
            Change::None,
            rps,
            share,
            if rps == 1000 { runs } else { runs_aa },
        ));
    }
    rows.push(("A/A with diurnal drift", Change::Drift, 100, 0.5, runs_aa));
    // A small canary with a large regression: 20 requests/s per version.
    rows.push(("errors 1% → 8%", Change::Errors(0.08), 40, 0.5, runs));
    for (name, change) in [
        ("errors 1% → 1.5%", Change::Errors(0.015)),
        ("latency +10% everywhere", Change::Latency(1.1)),
        (
            "p99 +10% only (tail above p95 stretched)",
            Change::Tail(1.1),
        ),
    ] {
        for (rps, share) in [(100, 0.05), (100, 0.5), (1000, 0.05), (1000, 0.5)] {
            rows.push((name, change, rps, share, runs));
        }
    }
    for (i, (name, change, rps, share, n)) in rows.into_iter().enumerate() {
        if !name.contains(only.as_str()) || (at != 0 && rps != at) {
            continue;
        }
        // Runs are independent: spread them over `--threads` workers.
        let run_seed = |r: u64| {
            seed.wrapping_mul(1_000_003)
                .wrapping_add((i as u64) << 32)
                .wrapping_add(r)
        };
        let naive = matches!(change, Change::None | Change::Drift);
        let outcomes: Vec<(Option<u64>, Option<u64>, bool)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|w| {
                    let policy = &policy;
                    scope.spawn(move || {
                        (w..n)
                            .step_by(threads as usize)
                            .map(|r| {
                                run(
                                    run_seed(r),
                                    change,
                                    rps,
                                    share,
                                    (horizon, tick),
                                    policy,
                                    naive,
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|h| h.join().expect("worker"))
                .collect()
        });
        let mut times: Vec<u64> = outcomes.iter().filter_map(|o| o.0).collect();
        let naive_failed = outcomes.iter().filter(|o| o.2).count();
        let mut passes: Vec<u64> = outcomes.iter().filter_map(|o| o.1).collect();
        passes.sort_unstable();
        let naive_text = if naive {
            format!("{naive_failed}/{n}")
        } else {
            "-".into()
        };
        times.sort_unstable();
        let failed = times.len() as u64;
        let (lo, hi) = clopper_pearson(failed, n);
        // Quantiles over all runs; a run that never failed counts as "not within the horizon".
        let q = |p: f64| {
            let k = ((p * n as f64).ceil() as usize).max(1);
            times
                .get(k - 1)
                .map_or(format!("> {horizon} s"), |t| format!("{t} s"))
        };
        // Median time to the first pass over all runs (never: "> horizon").
        let pass_median = passes
            .get(((0.5 * n as f64).ceil() as usize).max(1) - 1)
            .map_or(format!("> {horizon} s"), |t| format!("{t} s"));
        println!(
            "| {name} | {rps} | {:.0}% | {n} | {failed} ({:.2}%, [{:.2}%, {:.2}%]) | {} | {} | {} | {pass_median} | {naive_text} |",
            share * 100.0,
            100.0 * failed as f64 / n as f64,
            100.0 * lo,
            100.0 * hi,
            q(0.5),
            q(0.9),
            passes.len(),
        );
    }
}
