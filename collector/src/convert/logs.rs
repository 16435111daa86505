//! Logs → the `logs` table.

use super::columns::{append_hex_id, ns, utc, AttributionBuilder, AttrsBuilder};
use super::{Converted, Rejections};
use crate::attribution::{any_value_to_string, Attributor};
use crate::schema::LOGS;
use datafusion::arrow::array::{ArrayRef, Int32Builder, StringBuilder, TimestampNanosecondBuilder};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use std::sync::Arc;

/// Converts a logs export request. `time` is the record's timestamp, else
/// its observed timestamp, else `received_ns` (the OTLP spec makes both
/// optional). Records with malformed trace or span ids are rejected.
pub fn logs_to_batch(
    req: &ExportLogsServiceRequest,
    attributor: &Attributor,
    received_ns: i64,
) -> Result<Converted, ArrowError> {
    let mut rej = Rejections::default();
    let mut time = TimestampNanosecondBuilder::new();
    let mut observed = TimestampNanosecondBuilder::new();
    let mut attribution = AttributionBuilder::new();
    let mut sev_num = Int32Builder::new();
    let mut sev_text = StringBuilder::new();
    let mut body = StringBuilder::new();
    let mut trace_id = StringBuilder::new();
    let mut span_id = StringBuilder::new();
    let mut event = StringBuilder::new();
    let mut scope_name = StringBuilder::new();
    let mut attrs = AttrsBuilder::new();
    let mut res_attrs = AttrsBuilder::new();
    let mut rows = 0usize;

    for rl in &req.resource_logs {
        let resource = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let res = attributor.resource(resource);
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
            for log in &sl.log_records {
                if !(log.trace_id.is_empty() || log.trace_id.len() == 16) {
                    rej.add("with invalid trace_id length (want 0 or 16 bytes)", 1);
                    continue;
                }
                if !(log.span_id.is_empty() || log.span_id.len() == 8) {
                    rej.add("with invalid span_id length (want 0 or 8 bytes)", 1);
                    continue;
                }
                rows += 1;
                let t = [log.time_unix_nano, log.observed_time_unix_nano]
                    .into_iter()
                    .find(|t| *t != 0)
                    .map(ns)
                    .unwrap_or(received_ns);
                time.append_value(t);
                match log.observed_time_unix_nano {
                    0 => observed.append_null(),
                    o => observed.append_value(ns(o)),
                }
                attribution.append_ref(&attributor.record_ref(&res, &log.attributes));
                sev_num.append_value(log.severity_number);
                sev_text.append_value(&log.severity_text);
                body.append_option(log.body.as_ref().map(any_value_to_string));
                for (out, id) in [(&mut trace_id, &log.trace_id), (&mut span_id, &log.span_id)] {
                    if id.is_empty() {
                        out.append_null();
                    } else {
                        append_hex_id(out, id);
                    }
                }
                event.append_value(&log.event_name);
                scope_name.append_value(scope);
                attrs.append(&log.attributes);
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
        utc(observed),
        svc,
        ver,
        env,
        role,
        lane,
        Arc::new(sev_num.finish()),
        Arc::new(sev_text.finish()),
        Arc::new(body.finish()),
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(event.finish()),
        Arc::new(scope_name.finish()),
        attrs.finish(),
        res_attrs.finish(),
    ];
    let batch = RecordBatch::try_new(LOGS.clone(), columns)?;
    Ok(Converted {
        batch: Some(batch),
        rejections: rej,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttributionConfig;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimestampNanosecondType;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn req(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        let svc = KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("api".into())),
            }),
            ..Default::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![svc],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn time_falls_back_to_observed_then_received_and_bad_ids_are_rejected() {
        let a = Attributor::new(AttributionConfig::default());
        let recs = vec![
            LogRecord {
                time_unix_nano: 5,
                observed_time_unix_nano: 6,
                severity_number: 17,
                ..Default::default()
            },
            LogRecord {
                observed_time_unix_nano: 7,
                trace_id: vec![9; 16],
                span_id: vec![8; 8],
                ..Default::default()
            },
            LogRecord::default(),
            LogRecord {
                trace_id: vec![1; 5],
                ..Default::default()
            },
            LogRecord {
                span_id: vec![1; 3],
                ..Default::default()
            },
        ];
        let out = logs_to_batch(&req(recs), &a, 99).unwrap();
        assert_eq!(out.rejections.total(), 2);
        let b = out.batch.unwrap();
        let t = b
            .column_by_name("time")
            .unwrap()
            .as_primitive::<TimestampNanosecondType>();
        assert_eq!(t.values().to_vec(), vec![5, 7, 99]);
        let obs = b.column_by_name("observed_time").unwrap();
        assert!(obs.is_null(2));
        let tid = b.column_by_name("trace_id").unwrap().as_string::<i32>();
        assert!(tid.is_null(0));
        assert_eq!(tid.value(1), "09".repeat(16));
        let svc = b.column_by_name("service_name").unwrap().as_string::<i32>();
        assert_eq!(svc.value(2), "api");
        let body = b.column_by_name("body").unwrap();
        assert!(body.is_null(0), "absent body is NULL, not empty");
    }
}
