//! What the three converters share: the conversion context and its limits,
//! the attribution columns, attribute maps, id columns, and the routing of
//! rows into one batch per service.

use super::dict::{DictBuilder, MapBuilder};
use crate::attribution::{any_value_to_string, AttributionRef, Attributor, ResourceAttribution};
use crate::config::LimitsConfig;
use crate::wire::Kv;
use datafusion::arrow::array::{ArrayRef, StringArray, TimestampNanosecondArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest service name or version kept; longer ones reject their records.
pub const MAX_IDENTITY_BYTES: usize = 256;

/// Everything a conversion needs besides the request.
#[derive(Clone, Copy)]
pub struct Ctx<'c> {
    pub attributor: &'c Attributor,
    pub limits: &'c LimitsConfig,
    /// When the request arrived (ns since the epoch): the time of log
    /// records without one, and the reference for future timestamps.
    pub received_ns: i64,
}

impl Ctx<'_> {
    /// Timestamps after this are too far in the future.
    pub fn latest_ns(&self) -> i64 {
        let skew = self
            .limits
            .max_future_skew_secs
            .saturating_mul(1_000_000_000);
        self.received_ns
            .saturating_add(i64::try_from(skew).unwrap_or(i64::MAX))
    }

    pub fn max_value(&self) -> usize {
        self.limits.max_attribute_value_bytes
    }

    pub fn max_services(&self) -> usize {
        self.limits.max_services_per_request
    }
}

/// `s` cut to at most `max` bytes on a character boundary; counts the cut.
pub(crate) fn truncate<'s>(s: &'s str, max: usize, cuts: &mut u64) -> &'s str {
    if s.len() <= max {
        return s;
    }
    *cuts += 1;
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The same for text that may be owned.
pub(crate) fn truncate_cow<'s>(s: Cow<'s, str>, max: usize, cuts: &mut u64) -> Cow<'s, str> {
    if s.len() <= max {
        return s;
    }
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(truncate(b, max, cuts)),
        Cow::Owned(o) => Cow::Owned(truncate(&o, max, cuts).to_string()),
    }
}

/// A resource, resolved once: its attribution and its attributes as text
/// (truncated), for the rows of every record under it.
pub(crate) struct ResourceView<'a> {
    /// Distinguishes resources of one request, for the per-batch caches.
    pub id: u32,
    pub attribution: ResourceAttribution,
    pub attrs: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
    /// Resource attribute entries its records may still repeat (see
    /// [`ResourceView::charge`]).
    entries_left: std::cell::Cell<usize>,
}

/// Why a record is refused when its resource's attributes, repeated on
/// every record, would outgrow the request.
pub const RESOURCE_TOO_WIDE: &str = "whose resource attributes, repeated on every record, exceed 8 per byte of the resource's message plus 4096 (send fewer resource attributes per record)";

/// Resource attribute entries (9 bytes each in memory) its records may
/// repeat: 8 per byte of the resource's message (72 bytes of memory per
/// byte received), plus 4096. A real record is tens of bytes for each few
/// resource attributes; 16,384 empty records under 16,384 attributes
/// (65 KB) would otherwise need 2.3 GB.
fn entry_budget(message_bytes: usize) -> usize {
    message_bytes.saturating_mul(8).saturating_add(4096)
}

impl<'a> ResourceView<'a> {
    /// Takes one record's share of the budget: `false` when the record
    /// must be refused ([`RESOURCE_TOO_WIDE`]). Call before pushing any of
    /// its columns.
    pub fn charge(&self) -> bool {
        let (k, left) = (self.attrs.len(), self.entries_left.get());
        if k > left {
            return false;
        }
        self.entries_left.set(left - k);
        true
    }

    /// `message_bytes`: the size of the resource's message (the resource
    /// and every record under it) on the wire.
    pub fn from_wire(
        id: u32,
        kvs: &[Kv<'a>],
        message_bytes: usize,
        ctx: &Ctx<'_>,
        cuts: &mut u64,
    ) -> Self {
        let max = ctx.max_value();
        ResourceView {
            entries_left: entry_budget(message_bytes).into(),
            id,
            attribution: ctx.attributor.resource(kvs),
            attrs: kvs
                .iter()
                .map(|kv| {
                    (
                        Cow::Borrowed(truncate(kv.key, max, cuts)),
                        kv.value.map(|v| truncate_cow(v.text(), max, cuts)),
                    )
                })
                .collect(),
        }
    }

    pub fn from_prost(
        id: u32,
        kvs: &'a [KeyValue],
        message_bytes: usize,
        ctx: &Ctx<'_>,
        cuts: &mut u64,
    ) -> Self {
        let max = ctx.max_value();
        ResourceView {
            entries_left: entry_budget(message_bytes).into(),
            id,
            attribution: ctx.attributor.resource(kvs),
            attrs: kvs
                .iter()
                .map(|kv| {
                    (
                        Cow::Borrowed(truncate(&kv.key, max, cuts)),
                        kv.value
                            .as_ref()
                            .map(|v| truncate_cow(prost_text(v), max, cuts)),
                    )
                })
                .collect(),
        }
    }
}

/// A prost value as text, borrowing strings.
pub(crate) fn prost_text(v: &opentelemetry_proto::tonic::common::v1::AnyValue) -> Cow<'_, str> {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Cow::Borrowed(s),
        _ => Cow::Owned(any_value_to_string(v)),
    }
}

/// Why a record's attribution cannot be stored, if it cannot.
pub(crate) fn identity_problem(a: &AttributionRef<'_>) -> Option<&'static str> {
    (a.service_name.len() > MAX_IDENTITY_BYTES || a.service_version.len() > MAX_IDENTITY_BYTES)
        .then_some("with service.name or service.version longer than 256 bytes")
}

/// The five attribution columns.
#[derive(Default)]
pub(crate) struct AttributionCols {
    service: DictBuilder,
    version: DictBuilder,
    env: DictBuilder,
    role: DictBuilder,
    lane: DictBuilder,
}

impl AttributionCols {
    pub fn push(&mut self, a: &AttributionRef<'_>, max: usize, cuts: &mut u64) {
        self.service.push(&a.service_name);
        self.version.push(&a.service_version);
        self.env
            .push(truncate(&a.deployment_environment, max, cuts));
        self.role.push(a.rollout_role);
        self.lane.push(truncate(&a.traffic_lane, max, cuts));
    }

    pub fn finish(self) -> [ArrayRef; 5] {
        [
            self.service.finish(),
            self.version.finish(),
            self.env.finish(),
            self.role.finish(),
            self.lane.finish(),
        ]
    }
}

/// Interned (key, value) entries of one attribute list.
type Interned = Vec<(i32, Option<i32>)>;

/// An attributes map column that also repeats resource attributes cheaply.
#[derive(Default)]
pub(crate) struct AttrsCol {
    map: MapBuilder,
    /// Interned entries of the last resource written by `push_resource`.
    resource: Option<(u32, Interned)>,
    /// The key and value last seen at each attribute position: records of
    /// one instrumentation mostly repeat them in order, so a comparison
    /// replaces a hash lookup.
    near: Interned,
}

impl AttrsCol {
    /// A row of borrowed wire attributes.
    pub fn push_wire(&mut self, kvs: &[Kv<'_>], max: usize, cuts: &mut u64) {
        for (i, kv) in kvs.iter().enumerate() {
            let (hk, hv) = match self.near.get(i) {
                Some(&(k, v)) => (Some(k), v),
                None => (None, None),
            };
            let k = self.map.key_near(hk, truncate(kv.key, max, cuts));
            let v = kv.value.map(|v| {
                let text = v.text();
                self.map.value_near(hv, truncate(&text, max, cuts))
            });
            match self.near.get_mut(i) {
                Some(slot) => *slot = (k, v.or(hv)),
                None => self.near.push((k, v)),
            }
            self.map.entry_keys(k, v);
        }
        self.map.end_row();
    }

    /// A row of prost attributes.
    pub fn push_prost(&mut self, kvs: &[KeyValue], max: usize, cuts: &mut u64) {
        for kv in kvs {
            let k = truncate(&kv.key, max, cuts);
            match &kv.value {
                Some(v) => {
                    let text = prost_text(v);
                    self.map.entry(k, Some(truncate(&text, max, cuts)));
                }
                None => self.map.entry(k, None),
            }
        }
        self.map.end_row();
    }

    /// A row holding the resource's attributes: interned once per resource
    /// and batch, then only keys are written per row.
    pub fn push_resource(&mut self, res: &ResourceView<'_>) {
        if self.resource.as_ref().is_none_or(|(id, _)| *id != res.id) {
            let entries = res
                .attrs
                .iter()
                .map(|(k, v)| {
                    let k = self.map.intern_key(k);
                    (k, v.as_deref().map(|v| self.map.intern_value(v)))
                })
                .collect();
            self.resource = Some((res.id, entries));
        }
        let (_, entries) = self.resource.as_ref().expect("set above");
        self.map.row_of(entries);
    }

    pub fn finish(self) -> ArrayRef {
        self.map.finish()
    }
}

/// Ids as lowercase hex text (`trace_id` 32 characters, `span_id` 16).
#[derive(Default)]
pub(crate) struct IdCol {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    valid: Option<Vec<bool>>,
}

impl IdCol {
    pub fn push(&mut self, id: &[u8]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let start = self.bytes.len();
        self.bytes.resize(start + 2 * id.len(), 0);
        hex::encode_to_slice(id, &mut self.bytes[start..]).expect("sized above");
        self.offsets.push(self.bytes.len() as i32);
        if let Some(v) = &mut self.valid {
            v.push(true);
        }
    }

    pub fn push_null(&mut self) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let n = self.offsets.len() - 1;
        self.valid.get_or_insert_with(|| vec![true; n]).push(false);
        self.offsets.push(self.bytes.len() as i32);
    }

    /// A null for an empty id, else the id.
    pub fn push_optional(&mut self, id: &[u8]) {
        if id.is_empty() {
            self.push_null()
        } else {
            self.push(id)
        }
    }

    pub fn finish(mut self) -> ArrayRef {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        // Hex digits only: valid UTF-8.
        Arc::new(StringArray::new(
            offsets,
            self.bytes.into(),
            self.valid.map(NullBuffer::from),
        ))
    }
}

pub(crate) fn utc(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
}

pub(crate) fn utc_built(mut b: datafusion::arrow::array::TimestampNanosecondBuilder) -> ArrayRef {
    Arc::new(b.finish().with_timezone("UTC"))
}

pub(crate) fn utc_opt(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
}

/// OTLP nanosecond timestamps are u64; Arrow's are i64 (good until 2262).
pub(crate) fn ns(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// Columns of one table that rows are appended to.
pub(crate) trait Columns: Default {
    fn rows(&self) -> usize;
    fn finish(self) -> Result<RecordBatch, ArrowError>;
}

/// Partial-success reason for records past `limits.max_services_per_request`.
pub(crate) const TOO_MANY_SERVICES: &str =
    "of services beyond the limits.max_services_per_request distinct services one request may carry";

/// One set of columns per service, so every batch holds one service: the
/// store and the comparisons skip whole batches of other services.
pub(crate) struct PerService<C> {
    index: HashMap<String, usize>,
    cols: Vec<C>,
    /// The service of each set of columns.
    names: Vec<String>,
    /// The last record's columns: the records of a resource come in a run,
    /// so comparing its service's name replaces a hash lookup.
    last: Option<usize>,
}

impl<C: Columns> Default for PerService<C> {
    fn default() -> Self {
        Self {
            index: HashMap::new(),
            cols: Vec::new(),
            names: Vec::new(),
            last: None,
        }
    }
}

impl<C: Columns> PerService<C> {
    /// The columns of `service`; `None` when it would be service number
    /// `max + 1` of the request (reject its records with [`TOO_MANY_SERVICES`]).
    pub fn get(&mut self, service: &str, max: usize) -> Option<&mut C> {
        let i = match self.last {
            Some(i) if self.names[i] == service => i,
            _ => match self.index.get(service) {
                Some(&i) => i,
                None if self.cols.len() >= max => return None,
                None => {
                    self.cols.push(C::default());
                    self.names.push(service.to_string());
                    self.index.insert(service.to_string(), self.cols.len() - 1);
                    self.cols.len() - 1
                }
            },
        };
        self.last = Some(i);
        Some(&mut self.cols[i])
    }

    pub fn finish(self) -> Result<Vec<RecordBatch>, ArrowError> {
        self.cols
            .into_iter()
            .filter(|c| c.rows() > 0)
            .map(C::finish)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;

    #[test]
    fn truncation_respects_characters_and_counts() {
        let mut cuts = 0;
        assert_eq!(truncate("abc", 8, &mut cuts), "abc");
        assert_eq!(cuts, 0);
        assert_eq!(truncate("ééé", 3, &mut cuts), "é");
        assert_eq!(truncate("abcdef", 4, &mut cuts), "abcd");
        assert_eq!(cuts, 2);
        let owned = truncate_cow(Cow::Owned("x".repeat(10)), 4, &mut cuts);
        assert_eq!(owned, "xxxx");
    }

    #[test]
    fn hex_ids_of_any_length_and_nulls() {
        let mut b = IdCol::default();
        for id in [
            &[0xABu8; 16][..],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &[0xFF; 20],
            &[],
        ] {
            b.push_optional(id);
        }
        let a = b.finish();
        let got: Vec<Option<&str>> = a.as_string::<i32>().iter().collect();
        assert_eq!(got[0], Some("ab".repeat(16).as_str()));
        assert_eq!(got[1], Some("0102030405060708"));
        assert_eq!(got[2], Some("ff".repeat(20).as_str()));
        assert_eq!(got[3], None);
    }
}
