//! # graylens-dashboards
//!
//! The HTTP face of graylens on `--http-addr`:
//!
//! - [`api`]: `GET /api/v1/health`, `POST /api/v1/sql` (DESIGN.md "HTTP API").
//!
//! Queries run on a separate runtime handed in by the binary, so heavy SQL
//! never stalls ingestion.

pub mod api;

pub use api::{router, ApiState};
