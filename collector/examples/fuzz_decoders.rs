//! Robustness run: generated and mutated OTLP requests (protobuf, JSON,
//! gzip) through every decoder; asserts no panic, bounded Arrow per input
//! byte, and a bounded peak RSS for the whole run.
//!
//! `cargo run --release -p graylens-collector --example fuzz_decoders -- --cases 10000000 [--seed N] [--threads 2] [--max-rss-mb 1024]`

use std::time::Instant;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse().unwrap_or_else(|_| panic!("{name} N"))
        })
}

fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn main() {
    let cases = arg("--cases", 1_000_000);
    let seed = arg("--seed", 1);
    let threads = arg("--threads", 2).max(1);
    let max_rss = arg("--max-rss-mb", 1024);
    let start = Instant::now();
    let per = cases / threads;
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let n = if i == threads - 1 {
                cases - per * (threads - 1)
            } else {
                per
            };
            std::thread::spawn(move || {
                graylens_collector::fuzz::run(seed.wrapping_add(i * 0x9e37_79b9), n)
            })
        })
        .collect();
    let mut total = graylens_collector::fuzz::Tally::default();
    for h in handles {
        let t = h.join().expect("no panic in any case");
        total.cases += t.cases;
        total.accepted += t.accepted;
        total.refused += t.refused;
        total.rows += t.rows;
        total.worst_ratio_milli = total.worst_ratio_milli.max(t.worst_ratio_milli);
    }
    let rss = peak_rss_mb();
    println!(
        "{} cases in {:.0} s: {} converted ({} rows), {} refused with an error, no panic; \
         worst Arrow/input ratio {:.1}; peak RSS {rss} MB",
        total.cases,
        start.elapsed().as_secs_f64(),
        total.accepted,
        total.rows,
        total.refused,
        total.worst_ratio_milli as f64 / 1000.0
    );
    assert!(
        rss <= max_rss,
        "peak RSS {rss} MB above --max-rss-mb {max_rss}"
    );
}
