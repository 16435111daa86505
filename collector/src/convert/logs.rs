//! Logs → the `logs` table.

use super::columns::{hex_id, ns, utc, AttributionBuilder, AttrsBuilder};
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
                attribution.append(&attributor.record(&res, &log.attributes));
                sev_num.append_value(log.severity_number);
                sev_text.append_value(&log.severity_text);
                body.append_option(log.body.as_ref().map(any_value_to_string));
                trace_id.append_option((!log.trace_id.is_empty()).then(|| hex_id(&log.trace_id)));
                span_id.append_option((!log.span_id.is_empty()).then(|| hex_id(&log.span_id)));
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
