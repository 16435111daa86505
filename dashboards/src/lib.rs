//! # graylens-dashboards
//!
//! The HTTP face of graylens on `--http-addr`:
//!
//! - [`api`]: the JSON API (DESIGN.md "HTTP API"): health, SQL, services,
//!   compare, verdict, charts, rollouts, candidates, Flagger hooks and the
//!   Prometheus query shape.
//! - [`metrics`]: `GET /metrics`, Prometheus text of graylens's own health
//!   and per-version comparison gauges.
//! - [`ui`]: the web UI (home, comparison, rollout pages), embedded in the
//!   binary: no CDN, no build step.
//!
//! Queries run on a separate runtime handed in by the binary, so heavy SQL
//! never stalls ingestion.

pub mod api;
pub mod metrics;
pub mod ui;

pub use api::{router, ApiState};
pub use metrics::SelfTelemetry;
