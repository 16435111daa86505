//! Traces → the `spans` table.

use super::columns::{append_hex_id, ns, utc, AttributionBuilder, AttrsBuilder};
use super::{Converted, Rejections};
use crate::attribution::Attributor;
use crate::schema::SPANS;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use std::sync::Arc;

const SPAN_KIND_SERVER: i32 = 2;
const STATUS_ERROR: i32 = 2;

/// Converts a trace export request; invalid spans are counted in
/// [`Converted::rejections`] and left out.
pub fn spans_to_batch(
    req: &ExportTraceServiceRequest,
    attributor: &Attributor,
) -> Result<Converted, ArrowError> {
    let mut rej = Rejections::default();
    let mut time = TimestampNanosecondBuilder::new();
    let mut duration = Int64Builder::new();
    let mut trace_id = StringBuilder::new();
    let mut span_id = StringBuilder::new();
    let mut parent = StringBuilder::new();
    let mut attribution = AttributionBuilder::new();
    let mut name = StringBuilder::new();
    let mut kind = Int32Builder::new();
    let mut status = Int32Builder::new();
    let mut status_msg = StringBuilder::new();
    let mut is_error = BooleanBuilder::new();
    let mut http_status = Int32Builder::new();
    let mut route = StringBuilder::new();
    let mut scope_name = StringBuilder::new();
    let mut attrs = AttrsBuilder::new();
    let mut res_attrs = AttrsBuilder::new();
    let mut rows = 0usize;

    for rs in &req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let res = attributor.resource(resource);
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
            for span in &ss.spans {
                if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
                    rej.add("with invalid trace_id (want 16 bytes, not all zero)", 1);
                    continue;
                }
                if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
                    rej.add("with invalid span_id (want 8 bytes, not all zero)", 1);
                    continue;
                }
                if !(span.parent_span_id.is_empty() || span.parent_span_id.len() == 8) {
                    rej.add("with invalid parent_span_id length (want 0 or 8 bytes)", 1);
                    continue;
                }
                if span.start_time_unix_nano == 0 {
                    rej.add("missing start_time_unix_nano", 1);
                    continue;
                }
                if span.end_time_unix_nano < span.start_time_unix_nano {
                    rej.add("ending before they start", 1);
                    continue;
                }
                rows += 1;
                time.append_value(ns(span.start_time_unix_nano));
                duration.append_value(ns(span.end_time_unix_nano - span.start_time_unix_nano));
                append_hex_id(&mut trace_id, &span.trace_id);
                append_hex_id(&mut span_id, &span.span_id);
                if span.parent_span_id.is_empty() {
                    parent.append_null();
                } else {
                    append_hex_id(&mut parent, &span.parent_span_id);
                }
                attribution.append_ref(&attributor.record_ref(&res, &span.attributes));
                name.append_value(&span.name);
                kind.append_value(span.kind);
                let (code, msg) = span
                    .status
                    .as_ref()
                    .map(|s| (s.code, s.message.as_str()))
                    .unwrap_or((0, ""));
                status.append_value(code);
                status_msg.append_value(msg);
                let http = http_status_code(&span.attributes);
                http_status.append_option(http);
                is_error.append_value(
                    code == STATUS_ERROR
                        || (span.kind == SPAN_KIND_SERVER && http.is_some_and(|c| c >= 500)),
                );
                route.append_option(string_attr(&span.attributes, "http.route"));
                scope_name.append_value(scope);
                attrs.append(&span.attributes);
                res_attrs.append(resource);
            }
        }
    }
    if rows == 0 {
        return Ok(Converted {
            batch: None,
            rejections: rej,
        });
    }
    let [svc, ver, env, role, lane] = attribution.finish();
    let columns: Vec<ArrayRef> = vec![
        utc(time),
        Arc::new(duration.finish()),
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent.finish()),
        svc,
        ver,
        env,
        role,
        lane,
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        Arc::new(status.finish()),
        Arc::new(status_msg.finish()),
        Arc::new(is_error.finish()),
        Arc::new(http_status.finish()),
        Arc::new(route.finish()),
        Arc::new(scope_name.finish()),
        attrs.finish(),
        res_attrs.finish(),
    ];
    let batch = RecordBatch::try_new(SPANS.clone(), columns)?;
    Ok(Converted {
        batch: Some(batch),
        rejections: rej,
    })
}

/// `http.response.status_code` (semantic conventions ≥ 1.21), else the older
/// `http.status_code`; integer or numeric string.
fn http_status_code(attrs: &[KeyValue]) -> Option<i32> {
    ["http.response.status_code", "http.status_code"]
        .iter()
        .find_map(|k| {
            let v = attrs
                .iter()
                .find(|kv| kv.key == *k)?
                .value
                .as_ref()?
                .value
                .as_ref()?;
            match v {
                Value::IntValue(i) => i32::try_from(*i).ok(),
                Value::StringValue(s) => s.parse().ok(),
                _ => None,
            }
        })
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(crate::attribution::any_value_to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttributionConfig;
    use datafusion::arrow::array::{AsArray, BooleanArray};
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::trace::v1::{
        status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
    };

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
                .map(|c| KeyValue {
                    key: "http.response.status_code".into(),
                    value: Some(AnyValue {
                        value: Some(Value::IntValue(c)),
                    }),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    fn req(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn errors_are_status_error_or_server_5xx() {
        let a = Attributor::new(AttributionConfig::default());
        let spans = vec![
            span(SPAN_KIND_SERVER, Some(503), 0),
            span(3, Some(503), 0), // client span: the callee failed, not us
            span(SPAN_KIND_SERVER, Some(404), 0),
            span(1, None, StatusCode::Error as i32),
        ];
        let out = spans_to_batch(&req(spans), &a).unwrap();
        let b = out.batch.unwrap();
        let err: &BooleanArray = b.column_by_name("is_error").unwrap().as_boolean();
        assert_eq!(
            err.iter().flatten().collect::<Vec<_>>(),
            vec![true, false, false, true]
        );
        let d = b
            .column_by_name("duration_ns")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(d.value(0), 15);
        assert_eq!(out.rejections.total(), 0);
    }

    #[test]
    fn invalid_spans_are_rejected_with_reasons_and_the_rest_kept() {
        let a = Attributor::new(AttributionConfig::default());
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
        let out = spans_to_batch(
            &req(vec![
                short_trace,
                zero_span,
                no_start,
                backwards,
                bad_parent,
                span(1, None, 0),
            ]),
            &a,
        )
        .unwrap();
        assert_eq!(out.rows(), 1);
        assert_eq!(out.rejections.total(), 5);
        let msg = out.rejections.message("spans").unwrap();
        for want in [
            "rejected 5 spans",
            "invalid trace_id",
            "invalid span_id",
            "missing start_time_unix_nano",
            "ending before they start",
            "parent_span_id",
        ] {
            assert!(msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn nothing_valid_means_no_batch() {
        let a = Attributor::new(AttributionConfig::default());
        let out = spans_to_batch(&req(vec![]), &a).unwrap();
        assert!(out.batch.is_none());
        assert!(out.rejections.message("spans").is_none());
    }
}
