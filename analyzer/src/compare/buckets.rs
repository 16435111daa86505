//! A comparison's latency buckets while it scans: count, min and max per
//! histogram key (see [`crate::histogram`]), in a vector indexed by key.
//! A span's key is within `0..=2184` (1 ns to `i64::MAX` ns), and the keys
//! of one operation cluster, so a short vector grown on demand replaces a
//! hash-table lookup per span (about a quarter of a hot comparison's CPU).

/// One bucket while scanning: count, min, max (empty while the count is 0).
pub(crate) type Cell = (u64, f64, f64);

/// Latency buckets by key, dense over the keys seen (a span's key is in
/// `0..=2184`, so a vector indexed by key beats a hash table per span).
#[derive(Clone, Debug, Default)]
pub(crate) struct Buckets {
    /// Key of `cells[0]`.
    base: i32,
    cells: Vec<Cell>,
    /// Values ≤ 0 (the `None` key).
    zero: Cell,
}

#[inline]
pub(crate) fn absorb(c: &mut Cell, n: u64, lo: f64, hi: f64) {
    if c.0 == 0 {
        *c = (n, lo, hi);
    } else {
        c.0 += n;
        c.1 = c.1.min(lo);
        c.2 = c.2.max(hi);
    }
}

impl Buckets {
    #[inline]
    pub(crate) fn cell(&mut self, key: Option<i32>) -> &mut Cell {
        let Some(k) = key else {
            return &mut self.zero;
        };
        let i = i64::from(k) - i64::from(self.base);
        if i < 0 || i >= self.cells.len() as i64 {
            return self.grow(k);
        }
        &mut self.cells[i as usize]
    }

    /// Widens the range to hold `k` and returns its cell. A range starts at
    /// 5 cells and at least doubles toward `k` each time, so a histogram
    /// of `w` keys is reallocated about log₂ `w` times.
    #[cold]
    fn grow(&mut self, k: i32) -> &mut Cell {
        let k64 = i64::from(k);
        let (lo, hi) = if self.cells.is_empty() {
            (k64 - 2, k64 + 3)
        } else {
            let (b, e) = self.range();
            let more = (e - b).max(4);
            if k64 < b {
                (k64.min(b - more), e)
            } else {
                (b, (k64 + 1).max(e + more))
            }
        };
        self.cover(lo, hi);
        &mut self.cells[(k64 - i64::from(self.base)) as usize]
    }

    /// Keys `[start, end)` this set has cells for.
    fn range(&self) -> (i64, i64) {
        let b = i64::from(self.base);
        (b, b + self.cells.len() as i64)
    }

    /// Makes room for keys `[lo, hi)` (and those held already).
    fn cover(&mut self, lo: i64, hi: i64) {
        let lo = lo.max(i64::from(i32::MIN));
        let hi = hi.min(i64::from(i32::MAX) + 1);
        let (lo, hi) = if self.cells.is_empty() {
            (lo, hi)
        } else {
            let (b, e) = self.range();
            if lo >= b && hi <= e {
                return;
            }
            (lo.min(b), hi.max(e))
        };
        let mut cells = vec![(0, 0.0, 0.0); (hi - lo) as usize];
        if !self.cells.is_empty() {
            let at = (i64::from(self.base) - lo) as usize;
            cells[at..at + self.cells.len()].copy_from_slice(&self.cells);
        }
        self.base = lo as i32;
        self.cells = cells;
    }

    /// Adds every bucket of `other`.
    pub(crate) fn merge(&mut self, other: &Buckets) {
        if !other.cells.is_empty() {
            let (lo, hi) = other.range();
            self.cover(lo, hi);
        }
        for (k, &(n, lo, hi)) in other.iter() {
            absorb(self.cell(k), n, lo, hi);
        }
    }

    /// The buckets holding values, in key order (`None` first).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Option<i32>, &Cell)> {
        let zero = (self.zero.0 > 0).then_some((None, &self.zero));
        let base = i64::from(self.base);
        zero.into_iter().chain(
            self.cells
                .iter()
                .enumerate()
                .filter(|(_, c)| c.0 > 0)
                .map(move |(i, c)| (Some((base + i as i64) as i32), c)),
        )
    }

    pub(crate) fn capacity_bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Cell>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn keys_in_any_order_give_the_buckets_of_a_map() {
        let mut b = Buckets::default();
        let mut want: BTreeMap<Option<i32>, Cell> = BTreeMap::new();
        let keys = [500, 499, 2184, 0, 1000, 7, 499, 2184, -3, 100_000, -100_000];
        for (i, k) in keys.iter().enumerate() {
            let key = (i % 4 != 3).then_some(*k);
            let v = i as f64;
            absorb(b.cell(key), 1, v, v);
            absorb(want.entry(key).or_insert((0, 0.0, 0.0)), 1, v, v);
        }
        let got: BTreeMap<Option<i32>, Cell> = b.iter().map(|(k, c)| (k, *c)).collect();
        assert_eq!(got, want);
        // In key order, `None` first.
        let order: Vec<Option<i32>> = b.iter().map(|(k, _)| k).collect();
        assert_eq!(order, want.keys().copied().collect::<Vec<_>>());
        // Merging into an empty set gives the same buckets.
        let mut m = Buckets::default();
        for (k, &(n, lo, hi)) in b.iter() {
            absorb(m.cell(k), n, lo, hi);
        }
        assert_eq!(
            m.iter().map(|(k, c)| (k, *c)).collect::<BTreeMap<_, _>>(),
            want
        );
    }
}
