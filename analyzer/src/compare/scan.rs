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

use super::buckets::{absorb, Buckets};
use super::explain::{count_signature, facet_entry, log_signature, Facet};
use super::observe::{Observations, Side, Traffic};
use super::selector::Selector;
use crate::histogram::{key_of_ln, LogHistogram};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, TimestampNanosecondType};
use graylens_collector::convert::{ints::Ints, keys::Keys, uniform};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Bucketed latency of one operation on one side, while scanning.
#[derive(Clone, Debug, Default)]
struct OpAcc {
    requests: u64,
    errors: u64,
    buckets: Buckets,
    sum: f64,
    ln_sum: f64,
    ln_sq: f64,
    ln_n: u64,
}

impl OpAcc {
    /// Adds latency `v` (ns) whose logarithm is known (`None` when `v ≤ 0`).
    #[inline]
    fn add_ln(&mut self, v: f64, ln: Option<f64>, error: bool) {
        self.requests += 1;
        self.errors += error as u64;
        self.sum += v;
        let key = if let Some(ln) = ln {
            self.ln_sum += ln;
            self.ln_sq += ln * ln;
            self.ln_n += 1;
            Some(key_of_ln(ln))
        } else {
            None
        };
        absorb(self.buckets.cell(key), 1, v, v);
    }

    fn merge(&mut self, o: &OpAcc) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.sum += o.sum;
        self.ln_sum += o.ln_sum;
        self.ln_sq += o.ln_sq;
        self.ln_n += o.ln_n;
        self.buckets.merge(&o.buckets);
    }

    fn traffic(&self) -> Traffic {
        let mut latency = LogHistogram::new();
        for (k, &(n, lo, hi)) in self.buckets.iter() {
            // The histogram keeps only the total sum, added below.
            latency.add(k, n, 0.0, lo, hi);
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
    /// Per explained attribute (by index), per value.
    facets: Vec<BTreeMap<String, Facet>>,
    /// Error signatures (`exception: T`, `log: body`), see [`super::explain`].
    signatures: BTreeMap<String, u64>,
}

/// The running totals of one comparison: add batches in any order, any
/// number of times split any way; the result is the same.
#[derive(Clone, Debug)]
pub struct Accumulator {
    sel: Selector,
    from_ns: Option<i64>,
    to_ns: Option<i64>,
    sides: [SideAcc; 2],
    /// Attributes whose values are counted for explanations.
    facet_keys: Arc<[String]>,
}

/// A text column as stored (dictionary, with keys of any width the hot
/// store writes) or as a legacy file gives it (plain).
enum Text<'a> {
    Dict(Keys<'a>, &'a StringArray),
    Plain(&'a StringArray),
}

impl<'a> Text<'a> {
    fn of(a: &'a ArrayRef) -> Option<Self> {
        match a.data_type() {
            DataType::Dictionary(_, v) if **v == DataType::Utf8 => {
                let (keys, values) = Keys::of(a.as_ref())?;
                Some(Text::Dict(keys, values.as_string::<i32>()))
            }
            DataType::Utf8 => Some(Text::Plain(a.as_string::<i32>())),
            _ => None,
        }
    }

    /// The row's text (`""` when null).
    #[inline(always)]
    fn str(&self, row: usize) -> &'a str {
        match *self {
            Text::Dict(keys, values) => keys.get(row).map_or("", |k| values.value(k)),
            Text::Plain(a) => {
                if a.is_null(row) {
                    ""
                } else {
                    a.value(row)
                }
            }
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
    Dict(Keys<'a>, Vec<Option<u8>>),
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

    #[inline(always)]
    fn get(&self, row: usize) -> Option<u8> {
        match self {
            Classifier::Dict(keys, t) => t.get(keys.get(row)?).copied().flatten(),
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

/// An attributes map column: entries of row `r` are `offsets[m]..offsets[m+1]`,
/// where `m` is `r`, or the row's key when the maps are the values of a
/// dictionary (resource attributes in the hot store, one map per resource).
struct MapView<'a> {
    offsets: &'a [i32],
    rows: Option<Keys<'a>>,
    keys: Classifier<'a>,
    values: Text<'a>,
}

impl<'a> MapView<'a> {
    fn of(a: &'a ArrayRef, targets: &[&str]) -> Option<Self> {
        let (m, rows) = match Keys::of(a.as_ref()) {
            Some((rows, maps)) => (maps.as_map_opt()?, Some(rows)),
            None => (a.as_map_opt()?, None),
        };
        let keys = Text::of(m.keys())?.classify(targets);
        if keys.none() {
            return None;
        }
        Some(MapView {
            offsets: m.value_offsets(),
            rows,
            keys,
            values: Text::of(m.values())?,
        })
    }

    /// The entries of row `r`.
    #[inline(always)]
    fn entries(&self, r: usize) -> std::ops::Range<usize> {
        let m = self.rows.map_or(r, |k| k.key(r));
        self.offsets[m] as usize..self.offsets[m + 1] as usize
    }
}

/// The explained attributes of an attributes column: read from its entries
/// (a map, or a dictionary of maps), or from its columns when the hot store
/// holds it as a column per key (`graylens_collector::convert::uniform`).
enum Attrs<'a> {
    Map(MapView<'a>),
    /// Per explained attribute present, its index and its column.
    Columns(Vec<(usize, Text<'a>)>),
}

impl<'a> Attrs<'a> {
    fn of(a: &'a ArrayRef, targets: &[&str]) -> Option<Self> {
        let Some(s) = uniform::as_columns(a.as_ref()) else {
            return MapView::of(a, targets).map(Attrs::Map);
        };
        let columns: Vec<(usize, Text<'a>)> = s
            .fields()
            .iter()
            .zip(s.columns())
            .filter_map(|(f, c)| {
                let i = targets.iter().position(|t| t == f.name())?;
                Some((i, Text::of(c)?))
            })
            .collect();
        (!columns.is_empty()).then_some(Attrs::Columns(columns))
    }

    /// Calls `f` with the index and value of each explained attribute of row
    /// `r`, in the row's order.
    #[inline(always)]
    fn each(&self, r: usize, mut f: impl FnMut(usize, &'a str)) {
        match self {
            Attrs::Map(m) => {
                for j in m.entries(r) {
                    if let Some(i) = m.keys.get(j) {
                        f(i as usize, m.values.str(j));
                    }
                }
            }
            Attrs::Columns(columns) => {
                for (i, c) in columns {
                    f(*i, c.str(r));
                }
            }
        }
    }
}

impl Accumulator {
    /// An accumulator counting the default explained attributes.
    pub fn new(sel: &Selector) -> Self {
        Self::with_facets(sel, super::explain::default_attributes().into())
    }

    /// An accumulator counting the values of `facet_keys` for explanations.
    pub fn with_facets(sel: &Selector, facet_keys: Arc<[String]>) -> Self {
        let ns = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(super::selector::nanos);
        Accumulator {
            from_ns: ns(sel.from),
            to_ns: ns(sel.to),
            sel: sel.clone(),
            sides: [0, 1].map(|_| SideAcc {
                facets: vec![BTreeMap::new(); facet_keys.len()],
                ..Default::default()
            }),
            facet_keys,
        }
    }

    pub fn facet_keys(&self) -> &Arc<[String]> {
        &self.facet_keys
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
        let Some(dur) = Ints::of(dur.as_ref()) else {
            return;
        };
        let Some(kind) = Ints::of(kind.as_ref()) else {
            return;
        };
        // Not nullable; the bits, read without a call per row.
        let err = err.as_boolean().values();
        // Operation of each dictionary value, resolved once per batch.
        let mut dict_ops: Vec<Option<[usize; 2]>> = match &name {
            Text::Dict(_, v) => vec![None; v.len()],
            Text::Plain(_) => Vec::new(),
        };
        // Slots into per-side op lists, so rows do not hash strings.
        let mut slots: Vec<(usize, String)> = Vec::new();
        let mut local: Vec<OpAcc> = Vec::new();
        let mut plain_ops: HashMap<(u8, String), usize> = HashMap::new();
        let keys: Vec<&str> = self.facet_keys.iter().map(String::as_str).collect();
        let maps: Vec<Attrs> = ["attributes", "resource_attributes"]
            .into_iter()
            .filter_map(|c| Attrs::of(col(b, c)?, &keys))
            .collect();
        let exception = col(b, "exception_type").and_then(Text::of);
        let exception_facet = keys.iter().position(|k| *k == "exception.type");
        let mut found = vec![false; keys.len()];
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
                    let key = keys.get(r).unwrap_or(0);
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
            let (d, e) = (dur.value(r), err.value(r));
            // One logarithm per span, for its operation and its facets.
            let v = d as f64;
            let ln = (v > 0.0).then(|| v.ln());
            local[slot].add_ln(v, ln, e);
            // Explained attributes: the span's own attributes first, then
            // its resource's.
            let acc = &mut self.sides[s as usize];
            found.iter_mut().for_each(|f| *f = false);
            for m in &maps {
                m.each(r, |fi, value| {
                    if !std::mem::replace(&mut found[fi], true) {
                        facet_add(&mut acc.facets[fi], value, v, ln, e);
                    }
                });
            }
            if let Some(x) = &exception {
                let t = x.str(r);
                if !t.is_empty() {
                    if let Some(fi) = exception_facet {
                        facet_add(&mut acc.facets[fi], t, v, ln, e);
                    }
                    count_signature(&mut acc.signatures, format!("exception: {t}"), 1);
                }
            }
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
        let Some(sev) = Ints::of(sev.as_ref()) else {
            return;
        };
        let body = col(b, "body").and_then(Text::of);
        for r in 0..b.num_rows() {
            if svc.get(r).is_none() || !self.in_window(time.value(r)) {
                continue;
            }
            let Some(s) = side.get(r) else { continue };
            let acc = &mut self.sides[s as usize];
            acc.log_records += 1;
            let error = sev.value(r) >= 17;
            acc.log_errors += error as u64;
            if let (true, Some(body)) = (error, &body) {
                let sig = log_signature(body.str(r));
                count_signature(&mut acc.signatures, format!("log: {sig}"), 1);
            }
        }
    }

    /// About how many bytes this accumulator holds (for the bound of
    /// [`super::partials::Partials`]): map entries, their keys and the
    /// tables' own overhead, not allocator rounding.
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let mut n = size_of::<Accumulator>();
        for s in &self.sides {
            for (op, acc) in &s.ops {
                n += op.len() + size_of::<String>() + size_of::<OpAcc>() + 16;
                n += acc.buckets.capacity_bytes();
            }
            for f in &s.facets {
                n += size_of::<BTreeMap<String, Facet>>();
                n += f
                    .keys()
                    .map(|v| v.len() + size_of::<String>() + size_of::<Facet>() + 16)
                    .sum::<usize>();
            }
            n += s
                .signatures
                .keys()
                .map(|v| v.len() + size_of::<String>() + 8 + 16)
                .sum::<usize>();
        }
        n
    }

    /// Adds another accumulator of the same selector.
    pub fn merge(&mut self, other: &Accumulator) {
        for (mine, theirs) in self.sides.iter_mut().zip(&other.sides) {
            for (op, acc) in &theirs.ops {
                mine.ops.entry(op.clone()).or_default().merge(acc);
            }
            mine.log_records += theirs.log_records;
            mine.log_errors += theirs.log_errors;
            for (m, t) in mine.facets.iter_mut().zip(&theirs.facets) {
                for (v, f) in t {
                    facet_entry(m, v).merge(f);
                }
            }
            for (sig, n) in &theirs.signatures {
                count_signature(&mut mine.signatures, sig.clone(), *n);
            }
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
            for (k, values) in self.facet_keys.iter().zip(&s.facets) {
                if !values.is_empty() {
                    out.facets.insert(k.clone(), values.clone());
                }
            }
            out.signatures = s.signatures.clone();
            out
        };
        Observations {
            baseline: side(&self.sides[0]),
            canary: side(&self.sides[1]),
        }
    }
}

/// Counts one request of `value`, latency `v` with logarithm `ln` (without
/// allocating when the value is known).
#[inline]
fn facet_add(map: &mut BTreeMap<String, Facet>, value: &str, v: f64, ln: Option<f64>, error: bool) {
    match map.get_mut(value) {
        Some(f) => f.add_ln(v, ln, error),
        None => facet_entry(map, value).add_ln(v, ln, error),
    }
}
