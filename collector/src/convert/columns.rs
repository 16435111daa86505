//! Column builders shared by the three converters.

use crate::attribution::{any_value_to_string, Attribution, AttributionRef};
use datafusion::arrow::array::{ArrayRef, MapBuilder, StringBuilder, TimestampNanosecondBuilder};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
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
                // Strings (most attributes) are copied in without a temporary.
                Some(v) => match &v.value {
                    Some(any_value::Value::StringValue(s)) => self.0.values().append_value(s),
                    _ => self.0.values().append_value(any_value_to_string(v)),
                },
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

    pub fn append_ref(&mut self, a: &AttributionRef<'_>) {
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

/// Appends the lowercase hex of an id; ids of up to 16 bytes (all valid
/// trace and span ids) without a temporary allocation.
pub(crate) fn append_hex_id(out: &mut StringBuilder, b: &[u8]) {
    let mut buf = [0u8; 32];
    let n = 2 * b.len();
    if n > buf.len() || hex::encode_to_slice(b, &mut buf[..n]).is_err() {
        out.append_value(hex_id(b));
        return;
    }
    match std::str::from_utf8(&buf[..n]) {
        Ok(text) => out.append_value(text),
        Err(_) => out.append_value(hex_id(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_of_any_length() {
        let mut b = StringBuilder::new();
        for id in [
            &[0xABu8; 16][..],
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &[0xFF; 20],
            &[],
        ] {
            append_hex_id(&mut b, id);
        }
        let a = b.finish();
        let got: Vec<&str> = a.iter().map(|v| v.unwrap()).collect();
        assert_eq!(got[0], "ab".repeat(16));
        assert_eq!(got[1], "0102030405060708");
        assert_eq!(got[2], "ff".repeat(20));
        assert_eq!(got[3], "");
    }
}
