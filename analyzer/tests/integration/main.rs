//! The analyzer's integration tests, one binary: each module was its own
//! test target, and each of those linked DataFusion again (about 8 s of a
//! cold `.ci/run` apiece). Run one part with
//! `cargo test -p graylens-analyzer --test integration -- store::`.

mod cluster;
mod coalesce;
mod common;
mod compact;
mod judge;
mod live;
mod otlp_metrics;
mod partials;
mod stats_properties;
mod stats_vectors;
mod store;
