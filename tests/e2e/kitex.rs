//! The Kitex full-link gray release example (issue #15), end to end:
//! `examples/kitex/run.sh` builds the Kitex services (Kitex v0.15.2,
//! obs-opentelemetry v0.2.9), starts graylens (this build) and the services,
//! drives 2,000 requests with 30% colored gray, and prints graylens's lane
//! comparison. Checked here: every span of every hop arrived with the right
//! lane and version, the gray inventory's slow method is named first, and
//! the verdict is fail. Skipped, with the reason printed, without Go.

use crate::gotools;
use std::process::Command;

/// The number after `key` in `text` (e.g. "gray 603 traces" with key "gray").
fn number_after(text: &str, key: &str) -> u64 {
    let i = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"));
    text[i + key.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in:\n{text}"))
}

#[test]
fn kitex_gray_lane_is_compared_and_its_slow_method_named() {
    let Some(_) = gotools::go("the Kitex example") else {
        return;
    };
    let mut c = Command::new("bash");
    gotools::go_env(&mut c);
    let out = c
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/kitex/run.sh"
        ))
        .arg(env!("CARGO_BIN_EXE_graylens"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "run.sh failed:\n{text}");
    println!("{text}");

    let gray = number_after(&text, "2000 requests sent,");
    assert!(
        text.contains(&format!("{gray} colored gray, 0 failed")),
        "{text}"
    );
    assert!((400..=800).contains(&gray), "{gray} of 2000 colored at 30%");
    // Every trace arrived, split by lane as the frontend colored them.
    assert_eq!(
        number_after(&text, "whole traces: (uncolored)"),
        2000 - gray
    );
    assert_eq!(number_after(&text, ", gray"), gray);
    // Every hop: two inventory calls per request (Stock from the frontend,
    // Reserve from cart), the gray ones on the gray version only.
    let row = |service: &str, version: &str, lane: &str| {
        text.lines()
            .find(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() == 4 && w[0] == service && w[1] == version && w[2] == lane
            })
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert_eq!(
        row("inventory", "1.5.0-gray", "gray"),
        Some(2 * gray),
        "{text}"
    );
    assert_eq!(
        row("inventory", "1.4.0", "(uncolored)"),
        Some(2 * (2000 - gray)),
        "{text}"
    );
    assert_eq!(row("inventory", "1.4.0", "gray"), None, "{text}");
    assert_eq!(
        row("inventory", "1.5.0-gray", "(uncolored)"),
        None,
        "{text}"
    );
    assert_eq!(row("cart", "2.1.0", "gray"), Some(2 * gray), "{text}");
    assert_eq!(row("frontend", "3.0.0", "gray"), Some(3 * gray), "{text}");
    // The slow method, named first; the verdict.
    let first = text
        .lines()
        .skip_while(|l| !l.contains("where the delta comes from"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        first
            .trim_start()
            .starts_with("inventory shop.Inventory/Stock: +"),
        "{text}"
    );
    assert!(text.contains("\nverdict: fail"), "{text}");
}
