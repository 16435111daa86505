//! # graylens-analyzer
//!
//! Where telemetry rests and is queried.
//!
//! ```text
//!  ingest queue ──► writer.rs ──► store.rs: hot in-memory segments per table
//!                                    │  flush (interval / size) → Parquet under data_dir/{table}/{date}/{hour}/
//!                                    │  retention by age and size; reload at start
//!                                    ▼
//!                  table.rs: StoreTable = hot snapshot ∪ Parquet files (one DataFusion table each)
//!                                    ▼
//!                  sql.rs: SessionContext with `spans`, `logs`, `metrics`; SQL → JSON rows
//! ```
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

mod error;
pub mod sql;
pub mod store;
mod table;
pub mod writer;

pub use error::{Error, Result};
pub use sql::{QueryOutput, Tables};
pub use store::{Store, StoreConfig, StoreStats};
pub use writer::run_writer;
