//! One pass over Arrow batches into what a comparison needs: per side and
//! operation, requests, errors and a latency histogram of the service's
//! entry spans; per side, log records and error logs.
//!
//! This is the comparison's engine, shared by `compare` over stored data
//! (hot batches and Parquet segments, see [`super::source`]) and by the
//! alert engine's incremental looks (fed batch by batch as they arrive, see
//! [`crate::live`]): both add the same rows through the same code, so an
//! incremental verdict equals a from-scratch one.
//!
//! Text columns are dictionary-encoded, so the service and the two sides
//! are matched once per dictionary value, not once per row; a batch whose
//! dictionary lacks the service is skipped whole.

use super::observe::{Observations, Side, Traffic};
use super::selector::Selector;
use crate::histogram::{ln_gamma, LogHistogram};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Int32Type, TimestampNanosecondType};
use std::collections::HashMap;

/// Bucketed latency of one operation on one side, while scanning.
#[derive(Clone, Debug, Default)]
struct OpAcc {
    requests: u64,
    errors: u64,
    /// bucket → (count, min, max); `None` key = values ≤ 0.
    buckets: hashbrown::HashMap<Option<i32>, (u64, f64, f64)>,
    sum: f64,
    ln_sum: f64,
    ln_sq: f64,
    ln_n: u64,
}

impl OpAcc {
    #[inline]
    fn add(&mut self, duration_ns: i64, error: bool) {
        self.requests += 1;
        self.errors += error as u64;
        let v = duration_ns as f64;
        self.sum += v;
        let key = if v > 0.0 {
            let ln = v.ln();
            self.ln_sum += ln;
            self.ln_sq += ln * ln;
            self.ln_n += 1;
            Some((ln / ln_gamma()).ceil() as i32)
        } else {
            None
        };
        let e = self.buckets.entry(key).or_insert((0, v, v));
        e.0 += 1;
        if v < e.1 {
            e.1 = v;
        }
        if v > e.2 {
            e.2 = v;
        }
    }

    fn merge(&mut self, o: &OpAcc) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.sum += o.sum;
        self.ln_sum += o.ln_sum;
        self.ln_sq += o.ln_sq;
        self.ln_n += o.ln_n;
        for (k, (n, lo, hi)) in &o.buckets {
            let e = self.buckets.entry(*k).or_insert((0, *lo, *hi));
            e.0 += n;
            e.1 = e.1.min(*lo);
            e.2 = e.2.max(*hi);
        }
    }

    fn traffic(&self) -> Traffic {
        let mut latency = LogHistogram::new();
        let mut keys: Vec<_> = self.buckets.iter().collect();
        keys.sort_by_key(|(k, _)| **k);
        for (k, (n, lo, hi)) in keys {
            // The histogram keeps only the total sum: add it with the first bucket.
            latency.add(*k, *n, 0.0, *lo, *hi);
        }
        latency.add_sum(self.sum);
        Traffic {
            requests: self.requests,
            errors: self.errors,
            latency,
            ln_sum: self.ln_sum,
            ln_sq_sum: self.ln_sq,
            ln_count: self.ln_n,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct SideAcc {
    ops: HashMap<String, OpAcc>,
    log_records: u64,
    log_errors: u64,
}

/// The running totals of one comparison: add batches in any order, any
/// number of times split any way; the result is the same.
#[derive(Clone, Debug)]
pub struct Accumulator {
    sel: Selector,
    from_ns: Option<i64>,
    to_ns: Option<i64>,
    sides: [SideAcc; 2],
}

/// A text column as stored (dictionary) or as a legacy file gives it (plain).
enum Text<'a> {
    Dict(&'a Int32Array, &'a StringArray),
    Plain(&'a StringArray),
}

impl<'a> Text<'a> {
    fn of(a: &'a ArrayRef) -> Option<Self> {
        match a.data_type() {
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let d = a.as_dictionary::<Int32Type>();
                Some(Text::Dict(d.keys(), d.values().as_string::<i32>()))
            }
            DataType::Utf8 => Some(Text::Plain(a.as_string::<i32>())),
            _ => None,
        }
    }

    /// Per row, `Some(i)` when the row's value is `targets[i]`.
    fn classify(&self, targets: &[&str]) -> Classifier<'a> {
        match *self {
            Text::Dict(keys, values) => {
                let table: Vec<Option<u8>> = values
                    .iter()
                    .map(|v| {
                        let v = v.unwrap_or("");
                        targets.iter().position(|t| *t == v).map(|i| i as u8)
                    })
                    .collect();
                Classifier::Dict(keys, table)
            }
            Text::Plain(a) => Classifier::Plain(a, targets.iter().map(|t| t.to_string()).collect()),
        }
    }
}

enum Classifier<'a> {
    Dict(&'a Int32Array, Vec<Option<u8>>),
    Plain(&'a StringArray, Vec<String>),
}

impl Classifier<'_> {
    /// Whether no row can match.
    fn none(&self) -> bool {
        match self {
            Classifier::Dict(_, t) => t.iter().all(Option::is_none),
            Classifier::Plain(..) => false,
        }
    }

    #[inline]
    fn get(&self, row: usize) -> Option<u8> {
        match self {
            Classifier::Dict(keys, t) => {
                if keys.is_null(row) {
                    return None;
                }
                t.get(keys.value(row) as usize).copied().flatten()
            }
            Classifier::Plain(a, targets) => {
                let v = if a.is_null(row) { "" } else { a.value(row) };
                targets.iter().position(|t| t == v).map(|i| i as u8)
            }
        }
    }
}

fn col<'b>(b: &'b RecordBatch, name: &str) -> Option<&'b ArrayRef> {
    b.column_by_name(name)
}

impl Accumulator {
    pub fn new(sel: &Selector) -> Self {
        let ns = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.timestamp_nanos_opt().unwrap_or(i64::MAX))
        };
        Accumulator {
            from_ns: ns(sel.from),
            to_ns: ns(sel.to),
            sel: sel.clone(),
            sides: Default::default(),
        }
    }

    pub fn selector(&self) -> &Selector {
        &self.sel
    }

    fn in_window(&self, t: i64) -> bool {
        self.from_ns.is_none_or(|f| t >= f) && self.to_ns.is_none_or(|e| t < e)
    }

    /// Rows of the service of the two sides, or `None` to skip the batch.
    fn sides<'b>(&self, b: &'b RecordBatch) -> Option<(Classifier<'b>, Classifier<'b>)> {
        let svc = Text::of(col(b, "service_name")?)?.classify(&[&self.sel.service]);
        if svc.none() {
            return None;
        }
        let side = Text::of(col(b, self.sel.by.column())?)?
            .classify(&[&self.sel.baseline, &self.sel.canary]);
        if side.none() {
            return None;
        }
        Some((svc, side))
    }

    /// Adds the entry spans (SERVER or CONSUMER kind, or roots) of a
    /// `spans` batch.
    pub fn add_spans(&mut self, b: &RecordBatch) {
        let Some((svc, side)) = self.sides(b) else {
            return;
        };
        let (Some(time), Some(dur), Some(kind), Some(parent), Some(err), Some(name)) = (
            col(b, "time"),
            col(b, "duration_ns"),
            col(b, "span_kind"),
            col(b, "parent_span_id"),
            col(b, "is_error"),
            col(b, "span_name").and_then(Text::of),
        ) else {
            return;
        };
        let time = time.as_primitive::<TimestampNanosecondType>();
        let dur: &Int64Array = dur.as_primitive();
        let kind: &Int32Array = kind.as_primitive();
        let err: &BooleanArray = err.as_boolean();
        // Operation of each dictionary value, resolved once per batch.
        let mut dict_ops: Vec<Option<[usize; 2]>> = match &name {
            Text::Dict(_, v) => vec![None; v.len()],
            Text::Plain(_) => Vec::new(),
        };
        // Slots into per-side op lists, so rows do not hash strings.
        let mut slots: Vec<(usize, String)> = Vec::new();
        let mut local: Vec<OpAcc> = Vec::new();
        let mut plain_ops: HashMap<(u8, String), usize> = HashMap::new();
        for r in 0..b.num_rows() {
            if svc.get(r).is_none() {
                continue;
            }
            let Some(s) = side.get(r) else { continue };
            let k = kind.value(r);
            if !(k == 2 || k == 5 || parent.is_null(r)) {
                continue;
            }
            if !self.in_window(time.value(r)) {
                continue;
            }
            let slot = match &name {
                Text::Dict(keys, values) => {
                    let key = if keys.is_null(r) {
                        0
                    } else {
                        keys.value(r) as usize
                    };
                    let entry = dict_ops.get_mut(key);
                    match entry {
                        Some(Some(pair)) => pair[s as usize],
                        Some(e) => {
                            let op = values.value(key).to_string();
                            let pair = [0, 1].map(|side_i| {
                                slots.push((side_i, op.clone()));
                                local.push(OpAcc::default());
                                local.len() - 1
                            });
                            *e = Some(pair);
                            pair[s as usize]
                        }
                        None => continue,
                    }
                }
                Text::Plain(a) => {
                    let op = if a.is_null(r) { "" } else { a.value(r) };
                    *plain_ops.entry((s, op.to_string())).or_insert_with(|| {
                        slots.push((s as usize, op.to_string()));
                        local.push(OpAcc::default());
                        local.len() - 1
                    })
                }
            };
            local[slot].add(dur.value(r), err.value(r));
        }
        for ((side_i, op), acc) in slots.into_iter().zip(local) {
            if acc.requests > 0 {
                self.sides[side_i].ops.entry(op).or_default().merge(&acc);
            }
        }
    }

    /// Adds the records of a `logs` batch (error = severity ≥ 17, ERROR).
    pub fn add_logs(&mut self, b: &RecordBatch) {
        let Some((svc, side)) = self.sides(b) else {
            return;
        };
        let (Some(time), Some(sev)) = (col(b, "time"), col(b, "severity_number")) else {
            return;
        };
        let time = time.as_primitive::<TimestampNanosecondType>();
        let sev: &Int32Array = sev.as_primitive();
        for r in 0..b.num_rows() {
            if svc.get(r).is_none() || !self.in_window(time.value(r)) {
                continue;
            }
            let Some(s) = side.get(r) else { continue };
            let acc = &mut self.sides[s as usize];
            acc.log_records += 1;
            acc.log_errors += (sev.value(r) >= 17) as u64;
        }
    }

    /// Adds another accumulator of the same selector.
    pub fn merge(&mut self, other: &Accumulator) {
        for (mine, theirs) in self.sides.iter_mut().zip(&other.sides) {
            for (op, acc) in &theirs.ops {
                mine.ops.entry(op.clone()).or_default().merge(acc);
            }
            mine.log_records += theirs.log_records;
            mine.log_errors += theirs.log_errors;
        }
    }

    /// Requests seen so far on each side (baseline, canary).
    pub fn requests(&self) -> (u64, u64) {
        let n = |s: &SideAcc| s.ops.values().map(|o| o.requests).sum();
        (n(&self.sides[0]), n(&self.sides[1]))
    }

    /// The observations so far (OTLP metrics not included).
    pub fn observations(&self) -> Observations {
        let side = |s: &SideAcc| {
            let mut out = Side {
                log_records: s.log_records,
                log_errors: s.log_errors,
                ..Default::default()
            };
            for (op, acc) in &s.ops {
                out.operations.insert(op.clone(), acc.traffic());
            }
            out.total = Traffic::total_of(out.operations.values());
            out
        };
        Observations {
            baseline: side(&self.sides[0]),
            canary: side(&self.sides[1]),
        }
    }
}
