//! # graylens-collector
//!
//! The front of the pipeline: OTLP in, attributed Arrow record batches out.
//!
//! ```text
//!  OTLP/gRPC :4317 (grpc.rs: raw message bytes) ─┐
//!                                                ├─ memory.rs: reserve ─ wire/ + convert/: bytes → Arrow ─┐
//!  OTLP/HTTP :4318 (http.rs: read, inflate) ─────┘   (attribution.rs: service, version, role, lane)      │
//!                     ingest.rs: commit through the bounded queue (pipeline.rs) to the log ◄─────────────┘
//!                     and answer once durable (reply.rs maps every outcome)
//! ```
//!
//! - [`config`]: receiver, attribution and limit settings (serde, documented, validated).
//! - [`attribution`]: service, version, rollout role and traffic lane of every record.
//! - [`schema`]: the Arrow schemas of the `spans`, `logs` and `metrics` tables.
//! - [`wire`]: the OTLP protobuf wire format read in place.
//! - [`convert`]: OTLP export requests → [`RecordBatch`](datafusion::arrow::record_batch::RecordBatch)es, with per-record rejection reasons.
//! - [`memory`]: the memory limiter every request and hot batch is admitted against.
//! - [`ingest`]: admission, conversion and commit, shared by both transports.
//! - [`pipeline`]: the bounded hand-off to the store, answered once durable.
//! - [`stats`]: accepted / refused counters per signal and transport.
//! - [`fuzz`]: generated and mutated requests for robustness tests.
//! - [`grpc`], [`http`]: the two OTLP transports, built from bound listeners
//!   (`http::serve` also serves the API).
//! - [`tls`]: TLS and mTLS for the listeners, certificates reloaded when their files change.
//!
//! The consumer of the queue (the write-ahead log and the store) lives in
//! `graylens-analyzer`.

pub mod attribution;
pub mod auth;
pub mod config;
pub mod convert;
pub mod fuzz;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod memory;
pub mod pipeline;
mod reply;
pub mod schema;
pub mod stats;
pub mod tls;
pub mod wire;

pub use attribution::{Attribution, RoleHints};
pub use auth::{Auth, AuthConfig, Scope};
pub use config::{AttributionConfig, LimitsConfig, ReceiverConfig};
pub use memory::{MemoryLimiter, Reservation};
pub use pipeline::{Commit, IngestBatch, Pipeline, QueueGauge};
pub use schema::Signal;
pub use stats::{IngestStats, Transport};
