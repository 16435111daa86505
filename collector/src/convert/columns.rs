//! Column builders shared by the three converters.

use crate::attribution::{any_value_to_string, Attribution};
use datafusion::arrow::array::{ArrayRef, MapBuilder, StringBuilder, TimestampNanosecondBuilder};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use std::sync::Arc;

/// Builds a `Map<Utf8, Utf8>` attributes column.
pub(crate) struct AttrsBuilder(MapBuilder<StringBuilder, StringBuilder>);

impl AttrsBuilder {
    pub fn new() -> Self {
        Self(MapBuilder::new(
            None,
            StringBuilder::new(),
            StringBuilder::new(),
        ))
    }

    pub fn append(&mut self, attrs: &[KeyValue]) {
        for kv in attrs {
            self.0.keys().append_value(&kv.key);
            match &kv.value {
                Some(v) => self.0.values().append_value(any_value_to_string(v)),
                None => self.0.values().append_null(),
            }
        }
        self.0
            .append(true)
            .expect("keys and values appended in pairs");
    }

    pub fn finish(mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

/// The five attribution columns.
pub(crate) struct AttributionBuilder {
    service: StringBuilder,
    version: StringBuilder,
    env: StringBuilder,
    role: StringBuilder,
    lane: StringBuilder,
}

impl AttributionBuilder {
    pub fn new() -> Self {
        Self {
            service: StringBuilder::new(),
            version: StringBuilder::new(),
            env: StringBuilder::new(),
            role: StringBuilder::new(),
            lane: StringBuilder::new(),
        }
    }

    pub fn append(&mut self, a: &Attribution) {
        self.service.append_value(&a.service_name);
        self.version.append_value(&a.service_version);
        self.env.append_value(&a.deployment_environment);
        self.role.append_value(a.rollout_role);
        self.lane.append_value(&a.traffic_lane);
    }

    pub fn finish(mut self) -> [ArrayRef; 5] {
        [
            Arc::new(self.service.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.env.finish()),
            Arc::new(self.role.finish()),
            Arc::new(self.lane.finish()),
        ]
    }
}

pub(crate) fn utc(b: TimestampNanosecondBuilder) -> ArrayRef {
    let mut b = b;
    Arc::new(b.finish().with_timezone("UTC"))
}

/// OTLP nanosecond timestamps are u64; Arrow's are i64 (good until 2262).
pub(crate) fn ns(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

pub(crate) fn hex_id(b: &[u8]) -> String {
    hex::encode(b)
}
