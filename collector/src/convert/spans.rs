//! Traces → the `spans` table, straight from the protobuf bytes of an
//! `ExportTraceServiceRequest`: one walk over the wire format, strings
//! borrowed from the request, resource-level values resolved and interned
//! once per resource, rows appended to one batch per service.
//!
//! Fields may come in any order (a resource after its spans, say), so a
//! `ResourceSpans` or `ScopeSpans` is read in two passes over its bytes:
//! first the resource or scope, then the records.

use super::columns::{
    identity_problem, ns, truncate, utc, AttributionCols, AttrsCol, Columns, Ctx, PerService,
    ResourceView, RESOURCE_TOO_WIDE, TOO_MANY_SERVICES,
};
use super::dict::DictBuilder;
use super::envelope::{each_child, read_resource, read_scope, Envelope};
use super::ids::FixedIdCol;
use super::resources::ResourceCol;
use super::{Converted, Rejections};
use crate::attribution::Attrs;
use crate::schema::SPANS_HOT;
use crate::wire::{key_value, AnyRef, Fields, Kv, WireError};
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, Int64Array};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;

const SPAN_KIND_SERVER: i32 = 2;
const STATUS_ERROR: i32 = 2;

#[derive(Default)]
pub(crate) struct SpanCols {
    time: Vec<i64>,
    duration: Vec<i64>,
    trace_id: FixedIdCol<16>,
    span_id: FixedIdCol<8>,
    parent: FixedIdCol<8>,
    attribution: AttributionCols,
    name: DictBuilder,
    kind: Vec<i32>,
    status: Vec<i32>,
    status_msg: DictBuilder,
    is_error: Vec<bool>,
    http_status: Vec<Option<i32>>,
    route: DictBuilder,
    scope: DictBuilder,
    exception: DictBuilder,
    attrs: AttrsCol,
    res_attrs: ResourceCol,
}

impl Columns for SpanCols {
    fn rows(&self) -> usize {
        self.time.len()
    }

    fn finish(self) -> Result<RecordBatch, ArrowError> {
        let [svc, ver, env, role, lane] = self.attribution.finish();
        let columns: Vec<ArrayRef> = vec![
            utc(self.time),
            Arc::new(Int64Array::from(self.duration)),
            self.trace_id.finish(),
            self.span_id.finish(),
            self.parent.finish(),
            svc,
            ver,
            env,
            role,
            lane,
            self.name.finish(),
            Arc::new(Int32Array::from(self.kind)),
            Arc::new(Int32Array::from(self.status)),
            self.status_msg.finish(),
            Arc::new(BooleanArray::from(self.is_error)),
            Arc::new(Int32Array::from(self.http_status)),
            self.route.finish(),
            self.scope.finish(),
            self.exception.finish(),
            self.attrs.finish(),
            self.res_attrs.finish(),
        ];
        super::tight::batch(SPANS_HOT.clone(), columns)
    }
}

/// One span's fields, borrowed.
#[derive(Default)]
struct SpanRef<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent: &'a [u8],
    name: &'a str,
    kind: i32,
    start: u64,
    end: u64,
    status_code: i32,
    status_msg: &'a str,
    exception: Option<&'a str>,
}

/// Converts the protobuf bytes of a trace export request; invalid spans are
/// counted in [`Converted::rejections`] and left out, malformed bytes are an
/// error for the whole request.
pub fn spans_from_protobuf(buf: &[u8], ctx: &Ctx<'_>) -> Result<Converted, WireError> {
    let mut out = Walk {
        ctx,
        rej: Rejections::default(),
        cuts: 0,
        batches: PerService::default(),
        attrs: Vec::new(),
        resources: 0,
    };
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        if n == 1 {
            out.resource_spans(v.bytes("resource_spans")?)?;
        }
    }
    let batches = out
        .batches
        .finish()
        .map_err(|e| WireError(format!("building Arrow columns: {e}")))?;
    Ok(Converted {
        batches,
        rejections: out.rej,
        truncated: out.cuts,
    })
}

struct Walk<'c, 'a> {
    ctx: &'c Ctx<'c>,
    rej: Rejections,
    cuts: u64,
    batches: PerService<SpanCols>,
    /// Scratch for one span's attributes, reused.
    attrs: Vec<Kv<'a>>,
    resources: u32,
}

/// Field names of the trace envelope, for errors.
const NAMES: Envelope = Envelope {
    resource: "ResourceSpans.resource",
    resource_schema: "ResourceSpans.schema_url",
    scopes: "ResourceSpans.scope_spans",
    scope: "ScopeSpans.scope",
    scope_schema: "ScopeSpans.schema_url",
    records: "ScopeSpans.spans",
};

impl<'c, 'a> Walk<'c, 'a> {
    fn resource_spans(&mut self, buf: &'a [u8]) -> Result<(), WireError> {
        let mut kvs = Vec::new();
        read_resource(buf, &NAMES, &mut kvs)?;
        self.resources += 1;
        let res =
            ResourceView::from_wire(self.resources, &kvs, buf.len(), self.ctx, &mut self.cuts);
        each_child(buf, NAMES.scopes, |scope| self.scope_spans(scope, &res))
    }

    fn scope_spans(&mut self, buf: &'a [u8], res: &ResourceView<'_>) -> Result<(), WireError> {
        let scope = read_scope(buf, &NAMES)?;
        each_child(buf, NAMES.records, |span| self.span(span, scope, res))
    }

    fn span(
        &mut self,
        buf: &'a [u8],
        scope: &str,
        res: &ResourceView<'_>,
    ) -> Result<(), WireError> {
        let mut s = SpanRef::default();
        self.attrs.clear();
        let mut f = Fields::new(buf);
        while let Some((n, v)) = f.next_field()? {
            match n {
                1 => s.trace_id = v.bytes("Span.trace_id")?,
                2 => s.span_id = v.bytes("Span.span_id")?,
                3 => {
                    v.str("Span.trace_state")?;
                }
                4 => s.parent = v.bytes("Span.parent_span_id")?,
                5 => s.name = v.str("Span.name")?,
                6 => s.kind = v.varint("Span.kind")? as i32,
                7 => s.start = v.fixed64("Span.start_time_unix_nano")?,
                8 => s.end = v.fixed64("Span.end_time_unix_nano")?,
                9 => self.attrs.push(key_value(v.bytes("Span.attributes")?, 0)?),
                10 | 12 | 14 => {
                    v.varint("Span dropped count")?;
                }
                11 => {
                    let ex = exception_type(v.bytes("Span.events")?)?;
                    s.exception = s.exception.or(ex);
                }
                13 => check_link(v.bytes("Span.links")?)?,
                15 => status(v.bytes("Span.status")?, &mut s)?,
                16 => {
                    v.fixed32("Span.flags")?;
                }
                _ => {}
            }
        }
        if let Some(reason) = invalid(&s, self.ctx) {
            self.rej.add(reason, 1);
            return Ok(());
        }
        let attrs: &[Kv<'a>] = &self.attrs;
        let who = self.ctx.attributor.record_ref(&res.attribution, attrs);
        if let Some(reason) = identity_problem(&who) {
            self.rej.add(reason, 1);
            return Ok(());
        }
        if !res.charge() {
            self.rej.add(RESOURCE_TOO_WIDE, 1);
            return Ok(());
        }
        let max = self.ctx.max_value();
        let cuts = &mut self.cuts;
        let Some(c) = self.batches.get(&who.service_name, self.ctx.max_services()) else {
            self.rej.add(TOO_MANY_SERVICES, 1);
            return Ok(());
        };
        c.time.push(ns(s.start));
        c.duration.push(ns(s.end - s.start));
        c.trace_id.push(s.trace_id);
        c.span_id.push(s.span_id);
        // An all-zero parent id is no parent (the id is invalid): a root.
        let root = s.parent.iter().all(|b| *b == 0);
        c.parent.push_optional(if root { &[] } else { s.parent });
        c.attribution.push(&who, max, cuts);
        c.name.push(truncate(s.name, max, cuts));
        c.kind.push(s.kind);
        c.status.push(s.status_code);
        c.status_msg.push(truncate(s.status_msg, max, cuts));
        let http = http_status_code(attrs);
        c.http_status.push(http);
        c.is_error.push(
            s.status_code == STATUS_ERROR
                || (s.kind == SPAN_KIND_SERVER && http.is_some_and(|c| c >= 500)),
        );
        match attrs.text_of("http.route") {
            Some(r) => c.route.push(truncate(&r, max, cuts)),
            None => c.route.push_null(),
        }
        c.scope.push(truncate(scope, max, cuts));
        c.exception
            .push_option(s.exception.map(|e| truncate(e, max, cuts)));
        c.attrs.push_wire(attrs, max, cuts);
        c.res_attrs.push(res);
        Ok(())
    }
}

/// Why a span cannot be stored, in the words of the partial-success message.
fn invalid(s: &SpanRef<'_>, ctx: &Ctx<'_>) -> Option<&'static str> {
    if s.trace_id.len() != 16 || s.trace_id.iter().all(|b| *b == 0) {
        return Some("with invalid trace_id (want 16 bytes, not all zero)");
    }
    if s.span_id.len() != 8 || s.span_id.iter().all(|b| *b == 0) {
        return Some("with invalid span_id (want 8 bytes, not all zero)");
    }
    if !(s.parent.is_empty() || s.parent.len() == 8) {
        return Some("with invalid parent_span_id length (want 0 or 8 bytes)");
    }
    if s.start == 0 {
        return Some("missing start_time_unix_nano");
    }
    if s.end == 0 {
        return Some("missing end_time_unix_nano");
    }
    if s.end < s.start {
        return Some("ending before they start");
    }
    if ns(s.start) > ctx.latest_ns() {
        return Some("starting further in the future than limits.max_future_skew_secs");
    }
    // Else one span's duration (up to 584 years) would stand for its
    // version's latency.
    if ns(s.end) > ctx.latest_ns() {
        return Some("ending further in the future than limits.max_future_skew_secs");
    }
    None
}

/// `Status`: message (2) and code (3); repeated occurrences merge.
fn status<'a>(buf: &'a [u8], s: &mut SpanRef<'a>) -> Result<(), WireError> {
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            2 => s.status_msg = v.str("Status.message")?,
            3 => s.status_code = v.varint("Status.code")? as i32,
            _ => {}
        }
    }
    Ok(())
}

/// The `exception.type` of an event named `exception` (semantic
/// conventions for exceptions); the event is checked either way.
fn exception_type(buf: &[u8]) -> Result<Option<&str>, WireError> {
    let mut f = Fields::new(buf);
    let (mut name, mut ty) = ("", None);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => {
                v.fixed64("Event.time_unix_nano")?;
            }
            2 => name = v.str("Event.name")?,
            3 => {
                let kv = key_value(v.bytes("Event.attributes")?, 0)?;
                if kv.key == "exception.type" {
                    ty = ty.or(kv.value.and_then(|v| v.as_str()));
                }
            }
            4 => {
                v.varint("Event.dropped_attributes_count")?;
            }
            _ => {}
        }
    }
    Ok(ty.filter(|_| name == "exception"))
}

fn check_link(buf: &[u8]) -> Result<(), WireError> {
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 | 2 => {
                v.bytes("Link id")?;
            }
            3 => {
                v.str("Link.trace_state")?;
            }
            4 => {
                key_value(v.bytes("Link.attributes")?, 0)?;
            }
            5 => {
                v.varint("Link.dropped_attributes_count")?;
            }
            6 => {
                v.fixed32("Link.flags")?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// `http.response.status_code` (semantic conventions ≥ 1.21), else the older
/// `http.status_code`; integer or numeric string.
fn http_status_code(attrs: &[Kv<'_>]) -> Option<i32> {
    ["http.response.status_code", "http.status_code"]
        .iter()
        .find_map(|k| match attrs.iter().find(|kv| kv.key == *k)?.value? {
            AnyRef::Int(i) => i32::try_from(i).ok(),
            AnyRef::Str(s) => s.parse().ok(),
            // Senders whose numbers are all doubles (JavaScript) send 500.0.
            AnyRef::Double(d) if d.fract() == 0.0 && (0.0..=999.0).contains(&d) => Some(d as i32),
            _ => None,
        })
}

#[cfg(test)]
mod tests;
