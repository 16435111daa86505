//! # graylens-analyzer
//!
//! Where telemetry rests and is queried.
//!
//! ```text
//!  ingest queue ──► writer.rs: write-ahead log (wal/, group commit) ──► store.rs: hot batches per table
//!                   recover.rs: the log replayed at start                 │  small batches merged (store/coalesce.rs)
//!                                                                         │  flush.rs (interval / size / memory):
//!                                                                         │  Parquet per table, service, hour (segment.rs)
//!                                                                         │  retention by arrival and size
//!                                    ▼
//!                  table.rs: StoreTable = hot snapshot ∪ Parquet files (one DataFusion table each)
//!                                    ▼
//!                  sql.rs: SessionContext with `spans`, `logs`, `metrics`; SQL → JSON rows
//!                                    ▼
//!                  compare/: one service, baseline vs canary (by version, role or lane):
//!                            aggregate queries → histogram.rs (mergeable log buckets, ≤ 1% error)
//!                                    ▼
//!                  judge/: policy → per-metric anytime-valid decisions (stats/) → verdict with reasons
//! ```
//!
//! `stats/` holds the tests themselves (Mann–Whitney, Hodges–Lehmann, Fisher,
//! Welch, Holm/BH, Lindon–Malek count tests, quantile confidence sequences),
//! each checked against SciPy reference values.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use graylens_analyzer::{Store, StoreConfig, Tables};
//! let store = Store::open(StoreConfig { data_dir: "/tmp/graylens".into(), ..Default::default() })?;
//! let tables = Tables::new(store.clone())?;
//! let out = tables.query("SELECT service_version, count(*) FROM spans GROUP BY 1").await?;
//! println!("{:?}", out.rows);
//! # Ok(()) }
//! ```

mod cluster;
pub mod compact;
pub mod compare;
mod error;
mod flush;
pub mod histogram;
pub mod judge;
pub mod live;
mod prune;
pub mod recover;
pub mod remote;
mod remote_reader;
pub mod segment;
pub mod series;
pub mod services;
pub mod sql;
pub mod stats;
pub mod store;
mod table;
pub mod wal;
pub mod writer;

pub use cluster::{ClusterView, NODE_GONE_MS};
pub use compare::{compare, By, Comparison, Selector};
pub use error::{Error, Result};
pub use judge::{Decision, Policy};
pub use live::Subscription;
pub use recover::{recover, Recovered};
pub use segment::Segment;
pub use series::{charts, version_series, Point, SeriesFilter, SideCharts, VersionSeries};
pub use services::{deployments, services, DeploymentTraffic, ServiceInfo};
pub use sql::{QueryConfig, QueryOutput, Tables};
pub use store::{Store, StoreConfig, StoreStats};
pub use wal::{SyncMode, WalConfig};
pub use writer::Writer;
