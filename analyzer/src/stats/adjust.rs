//! Multiple-testing adjustments, as R's `p.adjust` and SciPy's `false_discovery_control`.
//!
//! Holm controls the family-wise error rate under any dependence between the
//! tests; Benjamini–Hochberg controls the false discovery rate for independent
//! or positively dependent tests. Both return adjusted p-values in the order
//! of their input.

/// Holm's step-down adjustment.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let order = ascending(p);
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Benjamini–Hochberg step-up adjustment.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let order = ascending(p);
    let mut adjusted = vec![0.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(m as f64 / (rank + 1) as f64 * p[i]).min(1.0);
        adjusted[i] = running;
    }
    adjusted
}

fn ascending(p: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_input_is_kept() {
        let p = [0.04, 0.01, 0.03];
        assert_eq!(holm(&p), vec![0.06, 0.03, 0.06]);
        let bh = benjamini_hochberg(&p);
        assert!(
            (bh[0] - 0.04).abs() < 1e-15
                && (bh[1] - 0.03).abs() < 1e-15
                && (bh[2] - 0.04).abs() < 1e-15
        );
        assert!(holm(&[]).is_empty());
    }
}
