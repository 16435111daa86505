//! Receiver and attribution settings. They are part of the single graylens
//! config file (`[otlp]` and `[attribution]` tables); see the README.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The largest `limits.max_attribute_value_bytes` (1 MiB): selectors naming
/// a lane may be as long.
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1 << 20;

/// How the OTLP receivers listen and what they accept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiverConfig {
    /// OTLP/gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address.
    pub http_addr: SocketAddr,
    /// Largest accepted message after decompression, in bytes. Larger
    /// requests get 413 / RESOURCE_EXHAUSTED and are not read further.
    pub max_message_bytes: usize,
    /// How long a request may wait for room in the ingest queue before it is
    /// refused with a retryable status (503 + Retry-After / UNAVAILABLE).
    pub queue_wait_ms: u64,
    /// Seconds advertised in `Retry-After` when the pipeline is full.
    pub retry_after_secs: u32,
    /// OTLP/HTTP connections that have not sent a request's headers
    /// within this many seconds are closed (slow or idle clients).
    pub header_read_timeout_secs: u64,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            grpc_addr: ([127, 0, 0, 1], 4317).into(),
            http_addr: ([127, 0, 0, 1], 4318).into(),
            max_message_bytes: 64 * 1024 * 1024,
            queue_wait_ms: 2000,
            retry_after_secs: 1,
            header_read_timeout_secs: 10,
        }
    }
}

impl ReceiverConfig {
    pub fn queue_wait(&self) -> Duration {
        Duration::from_millis(self.queue_wait_ms)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// Every problem with these settings, for the config validator.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_message_bytes < 1024 {
            out.push(format!(
                "otlp.max_message_bytes = {} is below the minimum of 1024",
                self.max_message_bytes
            ));
        }
        if !(1..=3600).contains(&self.header_read_timeout_secs) {
            out.push(format!(
                "otlp.header_read_timeout_secs = {} is outside 1..=3600",
                self.header_read_timeout_secs
            ));
        }
        if self.grpc_addr == self.http_addr && self.grpc_addr.port() != 0 {
            out.push(format!(
                "otlp.grpc_addr and otlp.http_addr are both {}",
                self.grpc_addr
            ));
        }
        out
    }
}

/// Which attribute keys name the service, version, environment, rollout role
/// and traffic lane. Each list is tried in order, resource attributes first,
/// then the record's own attributes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributionConfig {
    pub service_keys: Vec<String>,
    pub version_keys: Vec<String>,
    pub environment_keys: Vec<String>,
    /// Keys whose value names the role (`stable`, `baseline`, `primary` →
    /// baseline; `canary`, `gray` → canary).
    pub role_keys: Vec<String>,
    /// Key holding the Kubernetes deployment name; a name ending in
    /// `-primary` (Flagger's baseline) makes the record baseline.
    pub deployment_name_key: String,
    pub lane_keys: Vec<String>,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        let v = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect();
        Self {
            service_keys: v(&["service.name"]),
            version_keys: v(&["service.version", "deployment.version"]),
            environment_keys: v(&["deployment.environment.name", "deployment.environment"]),
            role_keys: v(&["k8s.pod.label.role", "rollout.role"]),
            deployment_name_key: "k8s.deployment.name".into(),
            lane_keys: v(&["traffic.lane", "x-gray-tag"]),
        }
    }
}

impl AttributionConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, keys) in [
            ("service_keys", &self.service_keys),
            ("version_keys", &self.version_keys),
            ("role_keys", &self.role_keys),
            ("lane_keys", &self.lane_keys),
        ] {
            if keys.iter().any(|k| k.trim().is_empty()) {
                out.push(format!("attribution.{name} contains an empty key"));
            }
        }
        if self.service_keys.is_empty() {
            out.push("attribution.service_keys must name at least one key".into());
        }
        out
    }
}

/// Bounds on what ingestion may hold and store (`[limits]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Bytes graylens may hold for ingestion: requests being read, inflated
    /// and converted, and hot data not yet in Parquet. Above it OTLP answers
    /// 503 / UNAVAILABLE with Retry-After. 0 = half of the memory available
    /// to the process (cgroup-aware).
    pub memory_bytes: u64,
    /// Attribute values (and keys, span names, status messages, scope
    /// names) longer than this are cut, and counted.
    pub max_attribute_value_bytes: usize,
    /// Records dated more than this into the future are rejected (partial
    /// success), so a clock gone wrong cannot pin data forever.
    pub max_future_skew_secs: u64,
    /// Distinct services one request may carry. Every service's records
    /// become an Arrow batch of their own, which costs a few KB even for
    /// one record, so records of services beyond this are rejected
    /// (partial success) instead of amplifying a small request.
    pub max_services_per_request: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 0,
            max_attribute_value_bytes: 8192,
            max_future_skew_secs: 300,
            max_services_per_request: 1000,
        }
    }
}

impl LimitsConfig {
    /// The memory limit in bytes, with 0 resolved to half the memory available.
    pub fn memory_limit(&self) -> u64 {
        if self.memory_bytes > 0 {
            return self.memory_bytes;
        }
        crate::memory::available_memory().map_or(1 << 30, |n| n / 2)
    }

    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.memory_bytes != 0 && self.memory_bytes < 64 << 20 {
            out.push(format!(
                "limits.memory_bytes = {} is below the minimum of 67108864 (64 MiB)",
                self.memory_bytes
            ));
        }
        if !(64..=MAX_ATTRIBUTE_VALUE_BYTES).contains(&self.max_attribute_value_bytes) {
            out.push(format!(
                "limits.max_attribute_value_bytes = {} is outside 64..={MAX_ATTRIBUTE_VALUE_BYTES}",
                self.max_attribute_value_bytes
            ));
        }
        if self.max_services_per_request == 0 || self.max_services_per_request > 100_000 {
            out.push(format!(
                "limits.max_services_per_request = {} is outside 1..=100000",
                self.max_services_per_request
            ));
        }
        out
    }
}
