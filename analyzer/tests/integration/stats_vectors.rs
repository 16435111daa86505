//! Every statistic against SciPy 1.17.1 reference values
//! (`data/stats-vectors.json`, a copy of `shared/reference/stats-vectors.json`),
//! to 1e-9 relative.

use graylens_analyzer::stats::{
    adjust, fisher::fisher_exact, hodges_lehmann, mann_whitney, sequential, welch, Alternative,
};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/stats-vectors.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[track_caller]
fn close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-9 * expected.abs().max(f64::MIN_POSITIVE);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual:e}, SciPy {expected:e}, relative error {:e}",
        ((actual - expected) / expected).abs()
    );
}

const ALTERNATIVES: [(&str, Alternative); 3] = [
    ("two-sided", Alternative::TwoSided),
    ("less", Alternative::Less),
    ("greater", Alternative::Greater),
];

#[test]
fn mann_whitney_exact_and_asymptotic() {
    let all = vectors();
    for case in ["mwu_noties", "mwu_ties"] {
        let v = &all[case];
        let (x, y) = (floats(&v["x"]), floats(&v["y"]));
        for (name, alt) in ALTERNATIVES {
            for (key, method) in [
                (
                    "asymptotic_cc",
                    mann_whitney::Method::Asymptotic { continuity: true },
                ),
                (
                    "asymptotic_nocc",
                    mann_whitney::Method::Asymptotic { continuity: false },
                ),
                ("exact", mann_whitney::Method::Exact),
            ] {
                let Some(expected) = v[format!("{key}_{name}")].as_f64() else {
                    continue;
                };
                let r = mann_whitney::mann_whitney(&x, &y, alt, method).unwrap();
                close(r.u, v["U"].as_f64().unwrap(), &format!("{case} U"));
                close(r.p_value, expected, &format!("{case} {key} {name}"));
            }
        }
    }
}

#[test]
fn mann_whitney_on_histograms_matches_the_tie_corrected_reference() {
    let v = &vectors()["mwu_ties"];
    let (x, y) = (floats(&v["x"]), floats(&v["y"]));
    let mut values: Vec<f64> = x.iter().chain(&y).copied().collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let bucket = |s: &[f64]| {
        values
            .iter()
            .map(|b| s.iter().filter(|v| *v == b).count() as u64)
            .collect::<Vec<_>>()
    };
    for (name, alt) in ALTERNATIVES {
        for (key, cc) in [("asymptotic_cc", true), ("asymptotic_nocc", false)] {
            let r = mann_whitney::mann_whitney_binned(&bucket(&x), &bucket(&y), alt, cc).unwrap();
            close(r.u, v["U"].as_f64().unwrap(), "binned U");
            close(
                r.p_value,
                v[format!("{key}_{name}")].as_f64().unwrap(),
                &format!("binned {key} {name}"),
            );
        }
    }
}

#[test]
fn hodges_lehmann_median_of_differences() {
    let v = &vectors()["mwu_noties"];
    let x = hodges_lehmann::Weighted::from_values(&floats(&v["x"]));
    let y = hodges_lehmann::Weighted::from_values(&floats(&v["y"]));
    let median = hodges_lehmann::median_of_differences(&x, &y).unwrap();
    close(
        median,
        v["hl_median_of_differences"].as_f64().unwrap(),
        "HL",
    );
}

#[test]
fn fisher_exact_test() {
    let all = vectors();
    for case in ["fisher_1", "fisher_2"] {
        let v = &all[case];
        let t = &v["table"];
        let cell = |r: usize, c: usize| t[r][c].as_u64().unwrap();
        let table = [[cell(0, 0), cell(0, 1)], [cell(1, 0), cell(1, 1)]];
        for (name, alt) in ALTERNATIVES {
            let r = fisher_exact(table, alt);
            close(
                r.p_value,
                v[name].as_f64().unwrap(),
                &format!("{case} {name}"),
            );
            close(
                r.odds_ratio,
                v["odds_ratio"].as_f64().unwrap(),
                &format!("{case} odds ratio"),
            );
        }
    }
}

#[test]
fn welch_t_test() {
    let all = vectors();
    for case in ["welch_1", "welch_2"] {
        let v = &all[case];
        let (x, y) = (floats(&v["x"]), floats(&v["y"]));
        let two = welch::welch(&x, &y, Alternative::TwoSided, 0.95).unwrap();
        close(two.t, v["t"].as_f64().unwrap(), &format!("{case} t"));
        close(two.df, v["df"].as_f64().unwrap(), &format!("{case} df"));
        close(
            two.p_value,
            v["p_two_sided"].as_f64().unwrap(),
            &format!("{case} p two-sided"),
        );
        let less = welch::welch(&x, &y, Alternative::Less, 0.95).unwrap();
        close(
            less.p_value,
            v["p_less"].as_f64().unwrap(),
            &format!("{case} p less"),
        );
    }
}

#[test]
fn holm_and_benjamini_hochberg() {
    let v = &vectors()["multiple"];
    let p = floats(&v["p"]);
    for (got, want) in adjust::holm(&p).iter().zip(floats(&v["holm"])) {
        close(*got, want, "holm");
    }
    for (got, want) in adjust::benjamini_hochberg(&p).iter().zip(floats(&v["bh"])) {
        close(*got, want, "bh");
    }
}

#[test]
fn dirichlet_multinomial_bayes_factor() {
    let all = vectors();
    for case in ["dirichlet_1", "dirichlet_2"] {
        let v = &all[case];
        let nc = v["n_canary"].as_u64().unwrap();
        let nb = v["n_baseline"].as_u64().unwrap();
        let rho = v["rho_canary"].as_f64().unwrap();
        let k = v["k"].as_f64().unwrap();
        let two = sequential::dirichlet_multinomial(nc, nb, rho, k, Alternative::TwoSided).unwrap();
        close(
            two.log_bf,
            v["log_bf"].as_f64().unwrap(),
            &format!("{case} log BF"),
        );
        close(
            two.p_value,
            v["p_two_sided"].as_f64().unwrap(),
            &format!("{case} p"),
        );
        let one = sequential::dirichlet_multinomial(nc, nb, rho, k, Alternative::Greater).unwrap();
        close(
            one.log_bf,
            v["log_bf_one_sided"].as_f64().unwrap(),
            &format!("{case} log BF one-sided"),
        );
        close(
            one.p_value,
            v["p_one_sided"].as_f64().unwrap(),
            &format!("{case} p one-sided"),
        );
    }
}
