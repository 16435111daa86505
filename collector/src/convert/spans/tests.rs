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

/// A column as SQL sees it (ids as hex text).
fn text(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
    let b = crate::convert::to_table(b, &crate::schema::SPANS).unwrap();
    let c = cast(b.column_by_name(col).unwrap(), &DataType::Utf8).unwrap();
    c.as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

#[test]
fn errors_are_status_error_or_server_5xx() {
    let mut as_double = span(SPAN_KIND_SERVER, None, 0);
    as_double.attributes = vec![kv("http.response.status_code", Value::DoubleValue(500.0))];
    let spans = vec![
        span(SPAN_KIND_SERVER, Some(503), 0),
        span(3, Some(503), 0), // client span: the callee failed, not us
        span(SPAN_KIND_SERVER, Some(404), 0),
        span(1, None, StatusCode::Error as i32),
        as_double,
    ];
    let out = convert(&req(spans));
    let b = &out.batches[0];
    let err = b.column_by_name("is_error").unwrap().as_boolean();
    assert_eq!(
        err.iter().flatten().collect::<Vec<_>>(),
        vec![true, false, false, true, true]
    );
    let d = b
        .column_by_name("duration_ns")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(d.value(0), 15);
    assert_eq!(out.rejections.total(), 0);
    assert_eq!(b.schema(), crate::schema::SPANS_HOT.clone());
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
    let mut no_end = span(1, None, 0);
    no_end.end_time_unix_nano = 0;
    let mut endless = span(1, None, 0);
    endless.end_time_unix_nano = u64::MAX;
    let out = convert(&req(vec![
        short_trace,
        zero_span,
        no_start,
        backwards,
        bad_parent,
        future,
        no_end,
        endless,
        span(1, None, 0),
    ]));
    assert_eq!(out.rows(), 1);
    assert_eq!(out.rejections.total(), 8);
    let msg = out.rejections.message("spans").unwrap();
    for want in [
        "rejected 8 spans",
        "invalid trace_id",
        "invalid span_id",
        "missing start_time_unix_nano",
        "missing end_time_unix_nano",
        "ending before they start",
        "parent_span_id",
        "starting further in the future than limits.max_future_skew_secs",
        "ending further in the future than limits.max_future_skew_secs",
    ] {
        assert!(msg.contains(want), "{msg}");
    }
}

#[test]
fn an_all_zero_parent_id_is_a_root() {
    let mut zero_parent = span(1, None, 0);
    zero_parent.parent_span_id = vec![0; 8];
    let mut child = span(1, None, 0);
    child.parent_span_id = vec![7; 8];
    let out = convert(&req(vec![zero_parent, child]));
    assert_eq!((out.rows(), out.rejections.total()), (2, 0));
    let parent = text(&out.batches[0], "parent_span_id");
    assert_eq!(
        parent,
        vec![None, Some("07".repeat(8))],
        "a root, then a child"
    );
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
    // Held once per resource (the two "a" resources of the request).
    let held = a
        .column_by_name("resource_attributes")
        .unwrap()
        .as_dictionary::<datafusion::arrow::datatypes::Int32Type>();
    assert_eq!(held.values().len(), 2, "a map per resource, not per row");
    let held_keys: Vec<i32> = held.keys().values().to_vec();
    assert_eq!(held_keys, [vec![0; 50], vec![1; 50]].concat());
    let maps = held.values().as_map();
    let keys = maps
        .keys()
        .as_dictionary::<datafusion::arrow::datatypes::Int32Type>();
    assert_eq!(keys.values().len(), 2, "resource keys interned once");
    // As SQL sees it: a map per row.
    let table = crate::convert::to_table(a, &crate::schema::SPANS).unwrap();
    let res_attrs = table
        .column_by_name("resource_attributes")
        .unwrap()
        .as_map();
    assert_eq!(res_attrs.len(), 100);
    assert!((0..100).all(|r| res_attrs.value_length(r) == 2));
    let svc = cast(&res_attrs.value(99).column(1).clone(), &DataType::Utf8).unwrap();
    assert!(svc.as_string::<i32>().iter().any(|v| v == Some("a")));
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
