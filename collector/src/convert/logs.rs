//! Logs → the `logs` table, straight from the protobuf bytes of an
//! `ExportLogsServiceRequest` (same walk as [`super::spans`]).
//!
//! `time` is the record's timestamp, else its observed timestamp, else the
//! time the request arrived (the OTLP spec makes both optional). Records
//! with malformed trace or span ids, or dated too far in the future, are
//! rejected.

use super::columns::{
    identity_problem, ns, truncate, truncate_cow, utc, utc_opt, AttributionCols, AttrsCol, Columns,
    Ctx, IdCol, PerService, ResourceView, RESOURCE_TOO_WIDE, TOO_MANY_SERVICES,
};
use super::dict::DictBuilder;
use super::envelope::{each_child, read_resource, read_scope, Envelope};
use super::{Converted, Rejections};
use crate::schema::LOGS;
use crate::wire::{any_value, key_value, AnyRef, Fields, Kv, WireError};
use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;

#[derive(Default)]
pub(crate) struct LogCols {
    time: Vec<i64>,
    observed: Vec<Option<i64>>,
    attribution: AttributionCols,
    sev_num: Vec<i32>,
    sev_text: DictBuilder,
    body: Vec<Option<String>>,
    trace_id: IdCol,
    span_id: IdCol,
    event: DictBuilder,
    scope: DictBuilder,
    attrs: AttrsCol,
    res_attrs: AttrsCol,
}

impl Columns for LogCols {
    fn rows(&self) -> usize {
        self.time.len()
    }

    fn finish(self) -> Result<RecordBatch, ArrowError> {
        let [svc, ver, env, role, lane] = self.attribution.finish();
        let columns: Vec<ArrayRef> = vec![
            utc(self.time),
            utc_opt(self.observed),
            svc,
            ver,
            env,
            role,
            lane,
            Arc::new(Int32Array::from(self.sev_num)),
            self.sev_text.finish(),
            Arc::new(StringArray::from(self.body)),
            self.trace_id.finish(),
            self.span_id.finish(),
            self.event.finish(),
            self.scope.finish(),
            self.attrs.finish(),
            self.res_attrs.finish(),
        ];
        super::tight::batch(LOGS.clone(), columns)
    }
}

#[derive(Default)]
struct LogRef<'a> {
    time: u64,
    observed: u64,
    severity_number: i32,
    severity_text: &'a str,
    body: Option<AnyRef<'a>>,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    event_name: &'a str,
}

/// Converts the protobuf bytes of a logs export request.
pub fn logs_from_protobuf(buf: &[u8], ctx: &Ctx<'_>) -> Result<Converted, WireError> {
    let mut w = Walk {
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
            w.resource_logs(v.bytes("resource_logs")?)?;
        }
    }
    let batches = w
        .batches
        .finish()
        .map_err(|e| WireError(format!("building Arrow columns: {e}")))?;
    Ok(Converted {
        batches,
        rejections: w.rej,
        truncated: w.cuts,
    })
}

struct Walk<'c, 'a> {
    ctx: &'c Ctx<'c>,
    rej: Rejections,
    cuts: u64,
    batches: PerService<LogCols>,
    attrs: Vec<Kv<'a>>,
    resources: u32,
}

/// Field names of the log envelope, for errors.
const NAMES: Envelope = Envelope {
    resource: "ResourceLogs.resource",
    resource_schema: "ResourceLogs.schema_url",
    scopes: "ResourceLogs.scope_logs",
    scope: "ScopeLogs.scope",
    scope_schema: "ScopeLogs.schema_url",
    records: "ScopeLogs.log_records",
};

impl<'c, 'a> Walk<'c, 'a> {
    fn resource_logs(&mut self, buf: &'a [u8]) -> Result<(), WireError> {
        let mut kvs = Vec::new();
        read_resource(buf, &NAMES, &mut kvs)?;
        self.resources += 1;
        let res =
            ResourceView::from_wire(self.resources, &kvs, buf.len(), self.ctx, &mut self.cuts);
        each_child(buf, NAMES.scopes, |scope| self.scope_logs(scope, &res))
    }

    fn scope_logs(&mut self, buf: &'a [u8], res: &ResourceView<'_>) -> Result<(), WireError> {
        let scope = read_scope(buf, &NAMES)?;
        each_child(buf, NAMES.records, |record| self.record(record, scope, res))
    }

    fn record(
        &mut self,
        buf: &'a [u8],
        scope: &str,
        res: &ResourceView<'_>,
    ) -> Result<(), WireError> {
        let mut l = LogRef::default();
        self.attrs.clear();
        let mut f = Fields::new(buf);
        while let Some((n, v)) = f.next_field()? {
            match n {
                1 => l.time = v.fixed64("LogRecord.time_unix_nano")?,
                11 => l.observed = v.fixed64("LogRecord.observed_time_unix_nano")?,
                2 => l.severity_number = v.varint("LogRecord.severity_number")? as i32,
                3 => l.severity_text = v.str("LogRecord.severity_text")?,
                5 => l.body = Some(any_value(v.bytes("LogRecord.body")?, 0)?),
                6 => self
                    .attrs
                    .push(key_value(v.bytes("LogRecord.attributes")?, 0)?),
                7 => {
                    v.varint("LogRecord.dropped_attributes_count")?;
                }
                8 => {
                    v.fixed32("LogRecord.flags")?;
                }
                9 => l.trace_id = v.bytes("LogRecord.trace_id")?,
                10 => l.span_id = v.bytes("LogRecord.span_id")?,
                12 => l.event_name = v.str("LogRecord.event_name")?,
                _ => {}
            }
        }
        if !(l.trace_id.is_empty() || l.trace_id.len() == 16) {
            self.rej
                .add("with invalid trace_id length (want 0 or 16 bytes)", 1);
            return Ok(());
        }
        if !(l.span_id.is_empty() || l.span_id.len() == 8) {
            self.rej
                .add("with invalid span_id length (want 0 or 8 bytes)", 1);
            return Ok(());
        }
        let t = [l.time, l.observed]
            .into_iter()
            .find(|t| *t != 0)
            .map(ns)
            .unwrap_or(self.ctx.received_ns);
        if t > self.ctx.latest_ns() {
            self.rej.add(
                "dated further in the future than limits.max_future_skew_secs",
                1,
            );
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
        c.time.push(t);
        c.observed.push((l.observed != 0).then(|| ns(l.observed)));
        c.attribution.push(&who, max, cuts);
        c.sev_num.push(l.severity_number);
        c.sev_text.push(truncate(l.severity_text, max, cuts));
        c.body.push(
            l.body
                .map(|b| truncate_cow(b.text(), max, cuts).into_owned()),
        );
        c.trace_id.push_optional(l.trace_id);
        c.span_id.push_optional(l.span_id);
        c.event.push(truncate(l.event_name, max, cuts));
        c.scope.push(truncate(scope, max, cuts));
        c.attrs.push_wire(attrs, max, cuts);
        c.res_attrs.push_resource(res);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Attributor;
    use crate::config::{AttributionConfig, LimitsConfig};
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimestampNanosecondType;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    fn req(records: Vec<LogRecord>) -> Vec<u8> {
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
        .encode_to_vec()
    }

    #[test]
    fn time_falls_back_to_observed_then_received_and_bad_ids_are_rejected() {
        let a = Attributor::new(AttributionConfig::default());
        let limits = LimitsConfig::default();
        let ctx = Ctx {
            attributor: &a,
            limits: &limits,
            received_ns: 99,
        };
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
            LogRecord {
                time_unix_nano: 99 + 301_000_000_000,
                ..Default::default()
            },
        ];
        let out = logs_from_protobuf(&req(recs), &ctx).unwrap();
        assert_eq!(out.rejections.total(), 3);
        assert!(out
            .rejections
            .message("log records")
            .unwrap()
            .contains("future"));
        let b = &out.batches[0];
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
        let svc = datafusion::arrow::compute::cast(
            b.column_by_name("service_name").unwrap(),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        assert_eq!(svc.as_string::<i32>().value(2), "api");
        let body = b.column_by_name("body").unwrap();
        assert!(body.is_null(0), "absent body is NULL, not empty");
    }

    #[test]
    fn resource_attributes_repeated_beyond_the_request_refuse_records() {
        let a = Attributor::new(AttributionConfig::default());
        let limits = LimitsConfig::default();
        let ctx = Ctx {
            attributor: &a,
            limits: &limits,
            received_ns: 99,
        };
        // `req`'s request, its resource given `attrs` more attributes.
        let with_resource = |attrs: usize, records: Vec<LogRecord>| {
            let mut r = ExportLogsServiceRequest::decode(req(records).as_slice()).unwrap();
            let res = r.resource_logs[0].resource.as_mut().unwrap();
            res.attributes.extend((0..attrs).map(|i| KeyValue {
                key: format!("k{i}"),
                ..Default::default()
            }));
            r.encode_to_vec()
        };
        // 4,000 attributes on 4,000 empty records (about 40 KB): 16 million
        // entries (144 MB) unbounded; within the budget only a few records.
        let body = with_resource(4000, vec![LogRecord::default(); 4000]);
        let out = logs_from_protobuf(&body, &ctx).unwrap();
        let kept = out.rows() as u64;
        assert_eq!(kept + out.rejections.total(), 4000);
        assert!(kept * 4001 <= 8 * body.len() as u64 + 4096, "{kept} kept");
        assert!(kept > 0);
        assert!(out
            .rejections
            .message("log records")
            .unwrap()
            .contains("resource attributes, repeated on every record"));
        // What SDKs and Collectors send is far inside it: 40 attributes
        // on 512 records of nothing but a timestamp.
        let stamped = LogRecord {
            time_unix_nano: 5,
            ..Default::default()
        };
        let out = logs_from_protobuf(&with_resource(40, vec![stamped; 512]), &ctx).unwrap();
        assert_eq!((out.rows(), out.rejections.total()), (512, 0));
    }

    #[test]
    fn bodies_are_cut_to_the_value_limit_and_counted() {
        let a = Attributor::new(AttributionConfig::default());
        let limits = LimitsConfig {
            max_attribute_value_bytes: 64,
            ..Default::default()
        };
        let ctx = Ctx {
            attributor: &a,
            limits: &limits,
            received_ns: 99,
        };
        let body = |s: &str| LogRecord {
            time_unix_nano: 5,
            body: Some(AnyValue {
                value: Some(Value::StringValue(s.into())),
            }),
            ..Default::default()
        };
        let out =
            logs_from_protobuf(&req(vec![body("short"), body(&"é".repeat(40))]), &ctx).unwrap();
        assert_eq!(out.truncated, 1);
        let b = out.batches[0]
            .column_by_name("body")
            .unwrap()
            .as_string::<i32>();
        assert_eq!((b.value(0), b.value(1)), ("short", "é".repeat(32).as_str()));
    }
}
