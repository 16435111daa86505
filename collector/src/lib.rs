//! # graylens-collector
//!
//! The front of the pipeline: OTLP in, attributed Arrow record batches out.
//!
//! ```text
//!  OTLP/gRPC :4317 (grpc.rs) ─┐
//!                             ├─ decode ─ attribute (attribution.rs) ─ Arrow (convert/) ─┐
//!  OTLP/HTTP :4318 (http.rs) ─┘                                                          │
//!                              awaits a place in the bounded queue (pipeline.rs) ◄───────┘
//!                              and only then answers (reply.rs maps every outcome)
//! ```
//!
//! - [`config`]: receiver and attribution settings (serde, documented, validated).
//! - [`attribution`]: service, version, rollout role and traffic lane of every record.
//! - [`schema`]: the Arrow schemas of the `spans`, `logs` and `metrics` tables.
//! - [`convert`]: OTLP export requests → [`RecordBatch`](datafusion::arrow::record_batch::RecordBatch), with per-record rejection reasons.
//! - [`pipeline`]: the bounded hand-off to the store and its backpressure.
//! - [`stats`]: accepted / refused counters per signal and transport.
//! - [`grpc`], [`http`]: the two OTLP transports, built from bound listeners.
//!
//! The consumer of the queue (the store) lives in `graylens-analyzer`.

pub mod attribution;
pub mod config;
pub mod convert;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod pipeline;
mod reply;
pub mod schema;
pub mod stats;

pub use attribution::{Attribution, RoleHints};
pub use config::{AttributionConfig, ReceiverConfig};
pub use pipeline::{IngestBatch, Pipeline, QueueGauge};
pub use schema::Signal;
pub use stats::{IngestStats, Transport};
