//! Traces → the `spans` table, straight from the protobuf bytes of an
//! `ExportTraceServiceRequest`: one walk over the wire format, strings
//! borrowed from the request, resource-level values resolved and interned
//! once per resource, rows appended to one batch per service.
//!
//! Fields may come in any order (a resource after its spans, say), so a
//! `ResourceSpans` or `ScopeSpans` is read in two passes over its bytes:
//! first the resource or scope, then the records.

use super::columns::{
    identity_problem, ns, truncate, utc, AttributionCols, AttrsCol, Columns, Ctx, IdCol,
    PerService, ResourceView, TOO_MANY_SERVICES,
};
use super::dict::DictBuilder;
use super::envelope::{each_child, read_resource, read_scope, Envelope};
use super::{Converted, Rejections};
use crate::attribution::Attrs;
use crate::schema::SPANS;
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
    trace_id: IdCol,
    span_id: IdCol,
    parent: IdCol,
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
    res_attrs: AttrsCol,
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
        super::tight::batch(SPANS.clone(), columns)
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
        let res = ResourceView::from_wire(self.resources, &kvs, self.ctx, &mut self.cuts);
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
        c.parent.push_optional(s.parent);
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
        c.res_attrs.push_resource(res);
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
    if s.end < s.start {
        return Some("ending before they start");
    }
    if ns(s.start) > ctx.latest_ns() {
        return Some("starting further in the future than limits.max_future_skew_secs");
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
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Attributor;
    use crate::config::{AttributionConfig, LimitsConfig};
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{
        span::Event, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
    };
    use prost::Message;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn span(kind: i32, http: Option<i64>, status: i32) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            start_time_unix_nano: 10,
            end_time_unix_nano: 25,
            kind,
            status: Some(Status {
                code: status,
                message: String::new(),
            }),
            attributes: http
                .map(|c| kv("http.response.status_code", Value::IntValue(c)))
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    fn req_with(resources: Vec<(Vec<KeyValue>, Vec<Span>)>) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: resources
                .into_iter()
                .map(|(attrs, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: attrs,
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
        .encode_to_vec()
    }

    fn req(spans: Vec<Span>) -> Vec<u8> {
        req_with(vec![(vec![], spans)])
    }

    fn convert(buf: &[u8]) -> Converted {
        convert_with(buf, LimitsConfig::default())
    }

    fn convert_with(buf: &[u8], limits: LimitsConfig) -> Converted {
        let a = Attributor::new(AttributionConfig::default());
        let ctx = Ctx {
            attributor: &a,
            limits: &limits,
            received_ns: 1_000,
        };
        spans_from_protobuf(buf, &ctx).unwrap()
    }

    fn text(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
        let c = cast(b.column_by_name(col).unwrap(), &DataType::Utf8).unwrap();
        c.as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect()
    }

    #[test]
    fn errors_are_status_error_or_server_5xx() {
        let spans = vec![
            span(SPAN_KIND_SERVER, Some(503), 0),
            span(3, Some(503), 0), // client span: the callee failed, not us
            span(SPAN_KIND_SERVER, Some(404), 0),
            span(1, None, StatusCode::Error as i32),
        ];
        let out = convert(&req(spans));
        let b = &out.batches[0];
        let err = b.column_by_name("is_error").unwrap().as_boolean();
        assert_eq!(
            err.iter().flatten().collect::<Vec<_>>(),
            vec![true, false, false, true]
        );
        let d = b
            .column_by_name("duration_ns")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(d.value(0), 15);
        assert_eq!(out.rejections.total(), 0);
        assert_eq!(b.schema(), SPANS.clone());
    }

    #[test]
    fn invalid_spans_are_rejected_with_reasons_and_the_rest_kept() {
        let mut short_trace = span(1, None, 0);
        short_trace.trace_id = vec![1; 3];
        let mut zero_span = span(1, None, 0);
        zero_span.span_id = vec![0; 8];
        let mut no_start = span(1, None, 0);
        no_start.start_time_unix_nano = 0;
        let mut backwards = span(1, None, 0);
        backwards.end_time_unix_nano = 1;
        let mut bad_parent = span(1, None, 0);
        bad_parent.parent_span_id = vec![1; 4];
        let mut future = span(1, None, 0);
        future.start_time_unix_nano = 1_000 + 301 * 1_000_000_000;
        future.end_time_unix_nano = future.start_time_unix_nano;
        let out = convert(&req(vec![
            short_trace,
            zero_span,
            no_start,
            backwards,
            bad_parent,
            future,
            span(1, None, 0),
        ]));
        assert_eq!(out.rows(), 1);
        assert_eq!(out.rejections.total(), 6);
        let msg = out.rejections.message("spans").unwrap();
        for want in [
            "rejected 6 spans",
            "invalid trace_id",
            "invalid span_id",
            "missing start_time_unix_nano",
            "ending before they start",
            "parent_span_id",
            "limits.max_future_skew_secs",
        ] {
            assert!(msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn nothing_valid_means_no_batch() {
        let out = convert(&req(vec![]));
        assert!(out.batches.is_empty());
        assert!(out.rejections.message("spans").is_none());
    }

    #[test]
    fn one_batch_per_service_with_resource_values_stored_once() {
        let res = |svc: &str| {
            vec![
                kv("service.name", Value::StringValue(svc.into())),
                kv("k8s.pod.name", Value::StringValue("pod-1".into())),
            ]
        };
        let many = (0..50).map(|_| span(2, Some(200), 0)).collect::<Vec<_>>();
        let out = convert(&req_with(vec![
            (res("a"), many.clone()),
            (res("b"), vec![span(2, None, 0)]),
            (res("a"), many),
        ]));
        assert_eq!(out.batches.len(), 2);
        let a = &out.batches[0];
        assert_eq!(a.num_rows(), 100);
        assert_eq!(text(a, "service_name")[99].as_deref(), Some("a"));
        let svc = a
            .column_by_name("service_name")
            .unwrap()
            .as_dictionary::<datafusion::arrow::datatypes::Int32Type>();
        assert_eq!(svc.values().len(), 1, "one value for 100 rows");
        let res_attrs = a.column_by_name("resource_attributes").unwrap().as_map();
        let keys = res_attrs
            .keys()
            .as_dictionary::<datafusion::arrow::datatypes::Int32Type>();
        assert_eq!(keys.values().len(), 2, "resource keys interned once");
        assert_eq!(res_attrs.value_length(0), 2);
    }

    #[test]
    fn long_values_are_cut_and_long_identities_rejected() {
        let limits = LimitsConfig {
            max_attribute_value_bytes: 64,
            ..Default::default()
        };
        let long = "é".repeat(100);
        let mut s = span(2, None, 0);
        s.attributes
            .push(kv("note", Value::StringValue(long.clone())));
        s.name = long.clone();
        let out = convert_with(
            &req_with(vec![
                (
                    vec![kv("service.name", Value::StringValue("x".repeat(300)))],
                    vec![span(2, None, 0)],
                ),
                (
                    vec![kv("service.name", Value::StringValue("ok".into()))],
                    vec![s],
                ),
            ]),
            limits,
        );
        assert_eq!(out.rows(), 1);
        assert!(out
            .rejections
            .message("spans")
            .unwrap()
            .contains("longer than 256 bytes"));
        // The 300-byte service name (a resource value, cut once per resource), the
        // attribute and the span name.
        assert_eq!(out.truncated, 3);
        let b = &out.batches[0];
        assert_eq!(
            text(b, "span_name")[0].as_deref(),
            Some("é".repeat(32).as_str())
        );
    }

    #[test]
    fn exception_types_come_from_exception_events() {
        let mut s = span(2, None, 2);
        s.events = vec![
            Event {
                name: "log".into(),
                attributes: vec![kv("exception.type", Value::StringValue("NotThis".into()))],
                ..Default::default()
            },
            Event {
                name: "exception".into(),
                attributes: vec![kv(
                    "exception.type",
                    Value::StringValue("TimeoutError".into()),
                )],
                ..Default::default()
            },
        ];
        let out = convert(&req(vec![s, span(2, None, 0)]));
        assert_eq!(
            text(&out.batches[0], "exception_type"),
            vec![Some("TimeoutError".into()), None]
        );
    }

    #[test]
    fn fields_in_any_order_and_malformed_bytes() {
        // A ResourceSpans whose resource comes after its spans.
        let spans = ScopeSpans {
            spans: vec![span(2, None, 0)],
            ..Default::default()
        }
        .encode_to_vec();
        let resource = Resource {
            attributes: vec![kv("service.name", Value::StringValue("late".into()))],
            ..Default::default()
        }
        .encode_to_vec();
        let mut rs = Vec::new();
        prost::encoding::bytes::encode(2, &spans, &mut rs);
        prost::encoding::bytes::encode(1, &resource, &mut rs);
        let mut request = Vec::new();
        prost::encoding::bytes::encode(1, &rs, &mut request);
        let out = convert(&request);
        assert_eq!(
            text(&out.batches[0], "service_name")[0].as_deref(),
            Some("late")
        );
        let a = Attributor::new(AttributionConfig::default());
        let limits = LimitsConfig::default();
        let ctx = Ctx {
            attributor: &a,
            limits: &limits,
            received_ns: 0,
        };
        let mut bad = request.clone();
        bad.truncate(bad.len() - 3);
        assert!(spans_from_protobuf(&bad, &ctx).is_err());
        assert!(ExportTraceServiceRequest::decode(&bad[..]).is_err());
    }

    #[test]
    fn ids_are_hex_and_roots_have_null_parents() {
        let mut child = span(1, None, 0);
        child.parent_span_id = vec![0xab; 8];
        let out = convert(&req(vec![span(2, None, 0), child]));
        let b = &out.batches[0];
        assert_eq!(
            text(b, "trace_id")[0].as_deref(),
            Some("01".repeat(16).as_str())
        );
        let parent = b.column_by_name("parent_span_id").unwrap();
        assert!(parent.is_null(0));
        assert_eq!(
            text(b, "parent_span_id")[1].as_deref(),
            Some("ab".repeat(8).as_str())
        );
    }
}
