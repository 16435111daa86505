//! Properties every test must have on many pseudo-random inputs: p-values in
//! [0, 1], symmetry when the samples are swapped, invariance under relabelling
//! and under monotone transforms where the method is rank-based.

use graylens_analyzer::stats::{
    fisher::fisher_exact,
    hodges_lehmann::{median_of_differences, Weighted},
    mann_whitney::{mann_whitney, Method},
    sequential::dirichlet_multinomial,
    welch::welch,
    Alternative,
};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn sample(&mut self, n: usize, scale: f64, round: bool) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let v = (1.0 + self.next() * 9.0) * scale;
                if round {
                    v.round()
                } else {
                    v
                }
            })
            .collect()
    }
}

fn in_unit(p: f64) -> bool {
    (0.0..=1.0).contains(&p)
}

#[test]
fn mann_whitney_is_symmetric_and_rank_invariant() {
    let mut rng = Lcg(1);
    for round in 0..60 {
        let (m, n) = (
            1 + (rng.next() * 30.0) as usize,
            1 + (rng.next() * 30.0) as usize,
        );
        let ties = round % 2 == 0;
        let x = rng.sample(m, 1.0, ties);
        let y = rng.sample(n, 1.1, ties);
        for method in [Method::Auto, Method::Asymptotic { continuity: true }] {
            let Ok(xy) = mann_whitney(&x, &y, Alternative::TwoSided, method) else {
                continue;
            };
            let yx = mann_whitney(&y, &x, Alternative::TwoSided, method).unwrap();
            assert!(in_unit(xy.p_value));
            assert!((xy.u + yx.u - (m * n) as f64).abs() < 1e-9);
            assert!((xy.p_value - yx.p_value).abs() < 1e-12);
            let less = mann_whitney(&x, &y, Alternative::Less, method).unwrap();
            let greater_swapped = mann_whitney(&y, &x, Alternative::Greater, method).unwrap();
            assert!((less.p_value - greater_swapped.p_value).abs() < 1e-12);
            // Ranks do not change under a monotone transform.
            let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
            let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
            let logged = mann_whitney(&lx, &ly, Alternative::TwoSided, method).unwrap();
            assert_eq!(logged.u, xy.u);
            assert!((logged.p_value - xy.p_value).abs() < 1e-12);
        }
    }
}

#[test]
fn exact_and_asymptotic_agree_for_moderate_samples() {
    let mut rng = Lcg(2);
    let x = rng.sample(60, 1.0, false);
    let y = rng.sample(70, 1.05, false);
    let exact = mann_whitney(&x, &y, Alternative::TwoSided, Method::Exact).unwrap();
    let normal = mann_whitney(
        &x,
        &y,
        Alternative::TwoSided,
        Method::Asymptotic { continuity: true },
    )
    .unwrap();
    assert!(
        (exact.p_value - normal.p_value).abs() < 0.01,
        "{exact:?} {normal:?}"
    );
}

#[test]
fn hodges_lehmann_is_antisymmetric_and_equivariant() {
    let mut rng = Lcg(3);
    for _ in 0..40 {
        let n = 1 + (rng.next() * 50.0) as usize;
        let x = rng.sample(n, 1.0, false);
        let n = 1 + (rng.next() * 50.0) as usize;
        let y = rng.sample(n, 1.0, false);
        let xy =
            median_of_differences(&Weighted::from_values(&x), &Weighted::from_values(&y)).unwrap();
        let yx =
            median_of_differences(&Weighted::from_values(&y), &Weighted::from_values(&x)).unwrap();
        assert!((xy + yx).abs() < 1e-12);
        let shifted: Vec<f64> = x.iter().map(|v| v + 3.0).collect();
        let s = median_of_differences(&Weighted::from_values(&shifted), &Weighted::from_values(&y))
            .unwrap();
        assert!((s - xy - 3.0).abs() < 1e-9);
    }
}

#[test]
fn fisher_is_invariant_under_transposition_and_row_swap() {
    let mut rng = Lcg(4);
    for _ in 0..100 {
        let mut cell = || (rng.next() * 30.0) as u64;
        let (a, b, c, d) = (cell(), cell(), cell(), cell());
        let two = fisher_exact([[a, b], [c, d]], Alternative::TwoSided).p_value;
        assert!(in_unit(two));
        let transposed = fisher_exact([[a, c], [b, d]], Alternative::TwoSided).p_value;
        assert!((two - transposed).abs() < 1e-9 * two.max(1e-300));
        let greater = fisher_exact([[a, b], [c, d]], Alternative::Greater).p_value;
        let swapped_less = fisher_exact([[c, d], [a, b]], Alternative::Less).p_value;
        assert!((greater - swapped_less).abs() < 1e-9 * greater.max(1e-300));
    }
}

#[test]
fn welch_is_antisymmetric() {
    let mut rng = Lcg(5);
    for _ in 0..40 {
        let n = 2 + (rng.next() * 30.0) as usize;
        let x = rng.sample(n, 1.0, false);
        let n = 2 + (rng.next() * 30.0) as usize;
        let y = rng.sample(n, 1.2, false);
        let xy = welch(&x, &y, Alternative::TwoSided, 0.95).unwrap();
        let yx = welch(&y, &x, Alternative::TwoSided, 0.95).unwrap();
        assert!(in_unit(xy.p_value));
        assert!((xy.t + yx.t).abs() < 1e-12 && (xy.p_value - yx.p_value).abs() < 1e-12);
        assert!(xy.ci.0 <= xy.mean_difference && xy.mean_difference <= xy.ci.1);
    }
}

#[test]
fn dirichlet_multinomial_is_symmetric_in_the_versions() {
    let mut rng = Lcg(6);
    for _ in 0..100 {
        let nc = (rng.next() * 500.0) as u64;
        let nb = (rng.next() * 500.0) as u64;
        let rho = 0.05 + rng.next() * 0.9;
        let a = dirichlet_multinomial(nc, nb, rho, 100.0, Alternative::TwoSided).unwrap();
        let b = dirichlet_multinomial(nb, nc, 1.0 - rho, 100.0, Alternative::TwoSided).unwrap();
        assert!((a.log_bf - b.log_bf).abs() < 1e-9 * a.log_bf.abs().max(1.0));
        assert!(in_unit(a.p_value));
        let g = dirichlet_multinomial(nc, nb, rho, 100.0, Alternative::Greater).unwrap();
        let l = dirichlet_multinomial(nb, nc, 1.0 - rho, 100.0, Alternative::Less).unwrap();
        assert!(
            (g.log_bf - l.log_bf).abs() < 1e-6 * g.log_bf.abs().max(1.0),
            "{g:?} {l:?}"
        );
    }
}

/// A mixture of Bayes factors is an e-process: under the null, the chance
/// that its p-value ever reaches alpha over repeated looks is at most alpha
/// (Ville's inequality). Simulated A/A streams of events split 30/70, a look
/// every 10 events, 2,000 events each.
#[test]
fn the_prior_mixture_stays_anytime_valid_under_repeated_looks() {
    use graylens_analyzer::stats::sequential::dirichlet_multinomial_mixture;
    let mixture = [(2.0, 0.25), (100.0, 0.75)];
    let (runs, events, rho, alpha) = (1000, 2000, 0.3, 0.05);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut uniform = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut rejected = 0;
    for _ in 0..runs {
        let (mut nc, mut nb) = (0u64, 0u64);
        for i in 1..=events {
            if uniform() < rho {
                nc += 1
            } else {
                nb += 1
            }
            if i % 10 != 0 {
                continue;
            }
            let t =
                dirichlet_multinomial_mixture(nc, nb, rho, &mixture, Alternative::Greater).unwrap();
            if t.p_value <= alpha {
                rejected += 1;
                break;
            }
        }
    }
    // Ville: P(ever ≤ alpha) ≤ alpha; allow 3 binomial standard errors.
    let bound = alpha + 3.0 * (alpha * (1.0 - alpha) / runs as f64).sqrt();
    let rate = rejected as f64 / runs as f64;
    assert!(rate <= bound, "{rejected} of {runs} runs rejected");
    // And it is not vacuous: a 30% → 40% shift is found in most runs.
    let mut found = 0;
    for _ in 0..200 {
        let (mut nc, mut nb) = (0u64, 0u64);
        for _ in 0..events {
            if uniform() < 0.4 {
                nc += 1
            } else {
                nb += 1
            }
        }
        let t = dirichlet_multinomial_mixture(nc, nb, rho, &mixture, Alternative::Greater).unwrap();
        found += (t.p_value <= alpha) as usize;
    }
    assert!(found > 180, "{found} of 200");
}
