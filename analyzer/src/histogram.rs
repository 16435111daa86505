//! Mergeable log-bucketed histograms with a relative error of at most 1%.
//!
//! A positive value `v` falls in bucket `k = ⌈ln v / ln γ⌉`, covering
//! `(γ^(k−1), γ^k]`, with `γ = (1 + α) / (1 − α)` and `α = 0.01`; the bucket
//! is represented by `2γ^k / (γ + 1)`, within `α` of every value in it (the
//! DDSketch mapping). Values `≤ 0` share a zero bucket. The mapping is fixed,
//! so histograms from any time slice, operation or instance are aligned and
//! merge exactly by adding counts — which also makes every bucket one tie
//! group for the Mann–Whitney test. Buckets can be computed inside DataFusion
//! ([`bucket_sql`]) so only `(key, count)` pairs leave the query engine.
//!
//! `sketches-ddsketch` has the same mapping but no access to its buckets,
//! which the rank tests need; hence this small type.

use crate::stats::hodges_lehmann::Weighted;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Maximum relative error of a quantile read from a histogram.
pub const RELATIVE_ACCURACY: f64 = 0.01;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// `ln γ`, also used by the SQL that buckets values.
pub fn ln_gamma() -> f64 {
    gamma().ln()
}

/// Bucket of a value; `None` for the zero bucket (values ≤ 0 or NaN).
pub fn key_of(value: f64) -> Option<i32> {
    (value > 0.0).then(|| key_of_ln(value.ln()))
}

/// Bucket of a positive value whose natural logarithm is `ln`:
/// `⌈ln / ln γ⌉`, saturating at the ends of `i32`.
#[inline]
pub fn key_of_ln(ln: f64) -> i32 {
    let x = ln / ln_gamma();
    // `f64::ceil` is a libm call on x86-64's baseline (no SSE4.1), once per
    // span in a comparison; this gives the same integer for every `x`.
    let t = x as i32;
    if (t as f64) < x {
        t.saturating_add(1)
    } else {
        t
    }
}

/// A SQL expression computing the bucket key of the numeric column
/// expression `column` (NULL for the zero bucket).
pub fn bucket_sql(column: &str) -> String {
    format!(
        "CASE WHEN {column} > 0 THEN CAST(ceil(ln(CAST({column} AS DOUBLE)) / {:.17}) AS INT) END",
        ln_gamma()
    )
}

fn representative(key: i32) -> f64 {
    2.0 * gamma().powi(key) / (gamma() + 1.0)
}

/// The value standing for a bucket: its representative, kept within the
/// values the bucket actually received.
fn value_of(key: i32, b: &Bucket) -> f64 {
    representative(key).clamp(b.min, b.max)
}

/// One bucket: its count and the smallest and largest value it received.
/// The extremes are exact and merge exactly, so quantile bounds can use
/// them instead of the bucket's 2%-wide edges (with millisecond-rounded
/// latencies a bucket often holds a single value).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Bucket {
    count: u64,
    min: f64,
    max: f64,
}

impl Bucket {
    fn absorb(&mut self, count: u64, min: f64, max: f64) {
        if self.count == 0 {
            (self.min, self.max) = (min, max);
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.count += count;
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

/// A histogram of non-negative values (latencies in nanoseconds, say).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogHistogram {
    zero: u64,
    buckets: BTreeMap<i32, Bucket>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl LogHistogram {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value.
    pub fn record(&mut self, value: f64) {
        self.add(key_of(value), 1, value, value, value);
    }

    /// Adds `count` values of bucket `key` (from SQL) whose sum, minimum and
    /// maximum are known.
    pub fn add(&mut self, key: Option<i32>, count: u64, sum: f64, min: f64, max: f64) {
        if count == 0 {
            return;
        }
        match key {
            Some(k) => self.buckets.entry(k).or_default().absorb(count, min, max),
            None => self.zero += count,
        }
        if self.count == 0 {
            self.min = min;
            self.max = max;
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.count += count;
        self.sum += sum;
    }

    /// Adds to the sum of the values (when buckets were added without it).
    pub(crate) fn add_sum(&mut self, sum: f64) {
        self.sum += sum;
    }

    /// Adds every value of `other`: exact, because the buckets are aligned.
    pub fn merge(&mut self, other: &LogHistogram) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.zero += other.zero;
        for (k, b) in &other.buckets {
            self.buckets
                .entry(*k)
                .or_default()
                .absorb(b.count, b.min, b.max);
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Standard deviation (population), from bucket representatives.
    pub fn std(&self) -> Option<f64> {
        let mean = self.mean()?;
        let var = self
            .buckets
            .iter()
            .map(|(k, b)| b.count as f64 * (value_of(*k, b) - mean).powi(2))
            .sum::<f64>()
            + self.zero as f64 * mean * mean;
        Some((var / self.count as f64).sqrt())
    }

    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The bucket holding rank `⌈q·n⌉` (1-based): `None` for the zero bucket.
    fn bucket_at_level(&self, q: f64) -> Option<Option<i32>> {
        if self.count == 0 {
            return None;
        }
        self.bucket_at_rank(((q * self.count as f64).ceil() as u64).clamp(1, self.count))
    }

    /// The bucket holding the value of 1-based rank `rank` (clamped to the count).
    fn bucket_at_rank(&self, rank: u64) -> Option<Option<i32>> {
        if self.count == 0 {
            return None;
        }
        let rank = rank.clamp(1, self.count);
        if rank <= self.zero {
            return Some(None);
        }
        let mut seen = self.zero;
        for (k, b) in &self.buckets {
            seen += b.count;
            if seen >= rank {
                return Some(Some(*k));
            }
        }
        Some(self.buckets.keys().next_back().copied())
    }

    /// Smallest and largest value of a bucket (the zero bucket counts as 0).
    fn extent(&self, key: Option<i32>) -> (f64, f64) {
        match key.and_then(|k| self.buckets.get(&k)) {
            Some(b) => (b.min, b.max),
            None => (0.0, 0.0),
        }
    }

    /// The `q`-quantile (smallest value with empirical CDF ≥ q), within 1%.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let key = self.bucket_at_level(q)?;
        let v = match key.and_then(|k| self.buckets.get(&k).map(|b| (k, b))) {
            Some((k, b)) => value_of(k, b),
            None => 0.0,
        };
        Some(v.clamp(self.min, self.max))
    }

    /// Conservative bounds on the true quantile from the empirical quantiles
    /// at levels `lo_level` and `hi_level`: the smallest value of the first
    /// bucket, the largest of the second.
    /// A level `≤ 0` gives 0 (values are non-negative), a level `> 1`
    /// gives +∞ (no upper bound yet).
    pub fn quantile_bounds(&self, lo_level: f64, hi_level: f64) -> Option<(f64, f64)> {
        if self.count == 0 {
            return None;
        }
        let lo = if lo_level <= 0.0 {
            0.0
        } else {
            self.extent(self.bucket_at_level(lo_level)?).0
        };
        let hi = if hi_level > 1.0 {
            f64::INFINITY
        } else {
            self.extent(self.bucket_at_level(hi_level)?).1
        };
        Some((lo, hi))
    }

    /// Conservative bounds on the values of 1-based ranks: the smallest value
    /// of the bucket of rank `lo_rank` (0 when `lo_rank` is 0) and the largest
    /// of the bucket of rank `hi_rank` (+∞ when beyond the count).
    pub fn rank_bounds(&self, lo_rank: u64, hi_rank: u64) -> Option<(f64, f64)> {
        if self.count == 0 {
            return None;
        }
        let lo = if lo_rank == 0 {
            0.0
        } else {
            self.extent(self.bucket_at_rank(lo_rank)?).0
        };
        let hi = if hi_rank > self.count {
            f64::INFINITY
        } else {
            self.extent(self.bucket_at_rank(hi_rank)?).1
        };
        Some((lo, hi))
    }

    /// Bucket counts of `self` and `other` on a shared, increasing grid
    /// (zero bucket first), with each bucket's representative value.
    pub fn aligned(&self, other: &LogHistogram) -> (Vec<u64>, Vec<u64>, Vec<f64>) {
        let mut keys: Vec<i32> = self
            .buckets
            .keys()
            .chain(other.buckets.keys())
            .copied()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut a = vec![self.zero];
        let mut b = vec![other.zero];
        let mut values = vec![0.0];
        for k in keys {
            a.push(self.buckets.get(&k).map_or(0, |b| b.count));
            b.push(other.buckets.get(&k).map_or(0, |b| b.count));
            values.push(representative(k));
        }
        (a, b, values)
    }

    /// The histogram as a weighted sample of bucket representatives.
    pub fn weighted(&self) -> Weighted {
        Weighted::from_pairs(
            std::iter::once((0.0, self.zero))
                .chain(self.buckets.iter().map(|(k, b)| (value_of(*k, b), b.count))),
        )
    }

    /// `(largest value, count)` per non-empty bucket, zero bucket first with 0.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        std::iter::once((0.0, self.zero))
            .filter(|b| b.1 > 0)
            .chain(self.buckets.values().map(|b| (b.max, b.count)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut h = LogHistogram::new();
        let values: Vec<f64> = (1..=100_000).map(|i| (i as f64).powf(1.7)).collect();
        for v in &values {
            h.record(*v);
        }
        for q in [0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let rank = ((q * values.len() as f64).ceil() as usize).max(1);
            let exact = values[rank - 1];
            let got = h.quantile(q).unwrap();
            assert!(
                (got - exact).abs() <= RELATIVE_ACCURACY * exact * (1.0 + 1e-12),
                "q={q} {got} vs {exact}"
            );
        }
        assert_eq!(h.count(), 100_000);
    }

    #[test]
    fn merging_slices_equals_one_histogram() {
        let (mut whole, mut a, mut b) = (
            LogHistogram::new(),
            LogHistogram::new(),
            LogHistogram::new(),
        );
        for i in 0..5000 {
            let v = ((i * 7919) % 1000) as f64 * 0.37;
            whole.record(v);
            if i % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
        }
        a.merge(&b);
        assert_eq!(a.aligned(&whole).0, whole.aligned(&whole).0);
        assert_eq!(
            (a.count(), a.min(), a.max()),
            (whole.count(), whole.min(), whole.max())
        );
        assert!((a.sum() - whole.sum()).abs() < 1e-6);
    }

    #[test]
    fn key_of_ln_is_the_ceiling() {
        // The same keys as `⌈x⌉` (integers, halves, negatives, the ends).
        for x in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            2.5,
            -2.5,
            3.0,
            1e-300,
            -1e-300,
            7e9,
            -7e9,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let ln = x * ln_gamma();
            assert_eq!(key_of_ln(ln), (ln / ln_gamma()).ceil() as i32, "{x}");
        }
        for i in 1..200_000i64 {
            let v = (i * i * 37) as f64;
            assert_eq!(key_of(v), Some((v.ln() / ln_gamma()).ceil() as i32), "{v}");
        }
    }

    #[test]
    fn sql_bucketing_matches_rust() {
        assert!(bucket_sql("duration_ns").contains("ceil(ln("));
        assert_eq!(key_of(0.0), None);
        assert_eq!(key_of(1.0), Some(0));
        assert_eq!(key_of(gamma() * 1.0001), Some(2));
    }

    #[test]
    fn bounds_are_conservative() {
        let mut h = LogHistogram::new();
        for i in 1..=1000 {
            h.record(i as f64);
        }
        let (lo, hi) = h.quantile_bounds(0.45, 0.55).unwrap();
        assert!(lo <= 450.0 && hi >= 550.0);
        assert_eq!(h.quantile_bounds(-0.1, 1.01).unwrap(), (0.0, f64::INFINITY));
    }
}
