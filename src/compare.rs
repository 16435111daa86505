//! `graylens compare`: offline canary analysis over a data directory.

use crate::cli::{CompareArgs, Format};
use crate::config::load_policy;
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use graylens_analyzer::{compare, Comparison, Selector, Tables};

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let store = crate::query::open_offline(&args.data_dir)?;
    let policy = load_policy(args.policy.as_deref()).map_err(|e| anyhow!(e))?;
    let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<DateTime<Utc>>> {
        v.as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| anyhow!("{flag} {s:?} is not an RFC 3339 time: {e}"))
            })
            .transpose()
    };
    let sel = Selector {
        service: args.service.clone(),
        baseline: args.baseline.clone(),
        canary: args.canary.clone(),
        by: args.by.parse().map_err(|e: String| anyhow!(e))?,
        from: time("--from", &args.from)?,
        to: time("--to", &args.to)?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let c = rt.block_on(async {
        let bytes = store.disk_bytes();
        let tables = Tables::new(store)?;
        with_progress(compare(&tables, &sel, &policy), bytes).await
    })?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&c)?),
        Format::Table => print!("{}", render(&c)),
    }
    Ok(())
}

/// Runs `work`, showing on a terminal's stderr what is being scanned and
/// for how long (DataFusion reports no fraction done, so this is a live
/// elapsed-time line rather than a percentage).
async fn with_progress<T>(work: impl std::future::Future<Output = T>, bytes: u64) -> T {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let start = std::time::Instant::now();
    let mut work = std::pin::pin!(work);
    let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    let mut i = 0;
    loop {
        tokio::select! {
            out = &mut work => {
                eprint!("\r\x1b[2K");
                return out;
            }
            _ = tick.tick() => {
                if start.elapsed().as_millis() >= 500 {
                    eprint!(
                        "\r{} comparing over {:.1} MB of Parquet segments … {:.1} s",
                        frames[i % frames.len()],
                        bytes as f64 / 1e6,
                        start.elapsed().as_secs_f64()
                    );
                    let _ = std::io::stderr().flush();
                    i += 1;
                }
            }
        }
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.4}"))
}

/// The comparison as text: sides, metrics, verdict and reasons.
pub fn render(c: &Comparison) -> String {
    let mut out = format!(
        "service {} — {} {:?} (baseline) vs {:?} (canary), policy {}\n\n",
        c.service,
        c.by.as_str(),
        c.baseline.version,
        c.canary.version,
        c.policy
    );
    out += &format!(
        "{:<10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "side", "requests", "errors", "err rate", "p50 ms", "p90 ms", "p99 ms", "mean ms"
    );
    for (name, s) in [("baseline", &c.baseline), ("canary", &c.canary)] {
        out += &format!(
            "{:<10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            name,
            s.requests,
            s.errors,
            num(s.error_rate),
            num(s.latency_ms.p50),
            num(s.latency_ms.p90),
            num(s.latency_ms.p99),
            num(s.latency_ms.mean)
        );
    }
    out += &format!(
        "\n{:<16} {:>12} {:>12} {:>12} {:>10} {:>10}  {}\n",
        "metric", "baseline", "canary", "delta", "p", "adj. p", "classification"
    );
    for m in &c.metrics {
        out += &format!(
            "{:<16} {:>12} {:>12} {:>12} {:>10} {:>10}  {}\n",
            m.name,
            num(m.baseline),
            num(m.canary),
            num(m.delta),
            num(m.p_value),
            num(m.adjusted_p_value),
            serde_json::to_value(m.classification)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        );
    }
    out += &format!(
        "\nverdict: {} (score {})\n",
        c.verdict.decision.as_str(),
        c.verdict.score
    );
    for r in &c.verdict.reasons {
        out += &format!("  - {r}\n");
    }
    out
}
