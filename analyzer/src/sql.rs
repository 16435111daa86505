//! SQL over the three tables, with results as JSON, within bounds: a
//! memory pool, a time limit, a row limit and a limit on queries running
//! at once (`[query]`). A query whose caller goes away is dropped, which
//! stops its work.

use crate::error::{Error, Result};
use crate::store::Store;
use crate::table::StoreTable;
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{SessionConfig, SessionContext};
use graylens_collector::Signal;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// Bounds on SQL (`[query]` in the config file).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// A query running longer is stopped.
    pub timeout_secs: u64,
    /// Memory DataFusion's operators (aggregates, sorts, joins) may hold
    /// across all queries; a query needing more fails. 0 = a quarter of
    /// `limits.memory_bytes`, at most 1 GiB.
    pub memory_bytes: u64,
    /// Rows returned at most; longer answers carry `"truncated": true`.
    pub max_rows: usize,
    /// Bytes of values returned at most (text by its length, numbers as 8),
    /// so a few wide rows cannot fill the memory either; longer answers
    /// carry `"truncated": true`.
    pub max_result_bytes: u64,
    /// Queries running at once; more wait up to a second, then get 429.
    pub max_concurrent: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 30,
            memory_bytes: 0,
            max_rows: 100_000,
            max_result_bytes: 64 << 20,
            max_concurrent: 4,
        }
    }
}

impl QueryConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(1..=3600).contains(&self.timeout_secs) {
            p.push(format!(
                "query.timeout_secs must be between 1 and 3600, not {}",
                self.timeout_secs
            ));
        }
        if self.max_rows == 0 {
            p.push("query.max_rows must be at least 1".into());
        }
        if self.max_result_bytes < 64 << 10 {
            p.push(format!(
                "query.max_result_bytes = {} is below the minimum of 64 KiB",
                self.max_result_bytes
            ));
        }
        if self.max_concurrent == 0 {
            p.push("query.max_concurrent must be at least 1".into());
        }
        if self.memory_bytes != 0 && self.memory_bytes < 16 << 20 {
            p.push(format!(
                "query.memory_bytes = {} is below the minimum of 16 MiB",
                self.memory_bytes
            ));
        }
        p
    }

    /// The pool size, with 0 resolved against the ingest memory limit.
    pub fn pool_bytes(&self, memory_limit: u64) -> u64 {
        match self.memory_bytes {
            0 => (memory_limit / 4).min(1 << 30),
            n => n,
        }
    }
}

/// The `spans`, `logs` and `metrics` tables in one DataFusion session.
#[derive(Clone)]
pub struct Tables {
    ctx: SessionContext,
    store: Arc<Store>,
    limits: Arc<Limits>,
}

struct Limits {
    timeout: std::time::Duration,
    max_rows: usize,
    max_bytes: u64,
    running: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tables")
    }
}

/// A query result: column names and rows of JSON values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueryOutput {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// More rows than `query.max_rows` (or more bytes than
    /// `query.max_result_bytes`) matched; only the first ones are here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl Tables {
    /// The tables with the default bounds (1 GiB of query memory).
    pub fn new(store: Arc<Store>) -> Result<Self> {
        Self::with_limits(store, &QueryConfig::default(), 4 << 30)
    }

    /// The tables bounded by `cfg`; `memory_limit` is `limits.memory_bytes`.
    pub fn with_limits(store: Arc<Store>, cfg: &QueryConfig, memory_limit: u64) -> Result<Self> {
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(cfg.pool_bytes(memory_limit) as usize, 1.0)
            .build_arc()?;
        let session = SessionConfig::new().with_information_schema(true);
        if let Some(r) = store.remote() {
            runtime.register_object_store(r.base(), r.store());
        }
        let ctx = SessionContext::new_with_config_rt(session, runtime);
        for s in Signal::ALL {
            ctx.register_table(s.table(), Arc::new(StoreTable::new(store.clone(), s)))?;
        }
        Ok(Self {
            ctx,
            store,
            limits: Arc::new(Limits {
                timeout: std::time::Duration::from_secs(cfg.timeout_secs),
                max_rows: cfg.max_rows,
                max_bytes: cfg.max_result_bytes,
                running: tokio::sync::Semaphore::new(cfg.max_concurrent),
            }),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs a query graylens itself wrote, within the time limit:
    /// failures are internal errors.
    pub(crate) async fn internal(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let run = async { self.ctx.sql(sql).await?.collect().await };
        match tokio::time::timeout(self.limits.timeout, run).await {
            Ok(r) => r.map_err(|e| Error::Internal(format!("{e} (query: {sql})"))),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> Error {
        Error::Limit(format!(
            "the query ran longer than {} s (query.timeout_secs) and was stopped",
            self.limits.timeout.as_secs()
        ))
    }

    /// Runs one SQL statement. Only queries: DDL and DML are refused.
    pub async fn query(&self, sql: &str) -> Result<QueryOutput> {
        let _running = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.limits.running.acquire(),
        )
        .await
        .map_err(|_| {
            Error::Busy(format!(
                "{} queries are running (query.max_concurrent); retry later",
                self.limits.running.available_permits().max(1)
            ))
        })?
        .map_err(|_| Error::Internal("query limiter closed".into()))?;
        match tokio::time::timeout(self.limits.timeout, self.run(sql)).await {
            Ok(r) => r,
            Err(_) => Err(self.timed_out()),
        }
    }

    async fn run(&self, sql: &str) -> Result<QueryOutput> {
        use futures::StreamExt;
        let opts = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self.ctx.sql_with_options(sql, opts).await?;
        let schema = df.schema().as_arrow().clone();
        let mut stream = df.execute_stream().await?;
        let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut rows = Vec::new();
        let max = self.limits.max_rows;
        let mut bytes = Budget {
            left: self.limits.max_bytes,
            over: false,
        };
        let mut truncated = false;
        while let Some(b) = stream.next().await {
            let b = b?;
            let room = max - rows.len();
            let whole = b.num_rows() <= room;
            append_rows(&b.slice(0, b.num_rows().min(room)), &mut rows, &mut bytes)?;
            if !whole || bytes.over {
                truncated = true;
                break;
            }
        }
        Ok(QueryOutput {
            columns,
            rows,
            truncated,
        })
    }
}

/// What is left of `query.max_result_bytes`.
struct Budget {
    left: u64,
    over: bool,
}

impl Budget {
    /// Takes a row's bytes; `false` (and `over`) when they do not fit.
    fn take(&mut self, row: &[Value]) -> bool {
        let n: u64 = row
            .iter()
            .map(|v| match v {
                Value::String(s) => s.len() as u64 + 2,
                _ => 8,
            })
            .sum();
        self.over = n > self.left;
        self.left = self.left.saturating_sub(n);
        !self.over
    }
}

fn append_rows(b: &RecordBatch, rows: &mut Vec<Vec<Value>>, budget: &mut Budget) -> Result<()> {
    let opts = FormatOptions::default();
    let fmts = b
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(e.to_string()))?;
    for r in 0..b.num_rows() {
        let row: Vec<Value> = b
            .columns()
            .iter()
            .zip(&fmts)
            .map(|(c, f)| cell(c, f, r))
            .collect();
        if !budget.take(&row) {
            break;
        }
        rows.push(row);
    }
    Ok(())
}

/// Numbers and booleans stay JSON numbers and booleans; the rest is text
/// in Arrow's display form (timestamps as RFC 3339).
fn cell(col: &ArrayRef, f: &ArrayFormatter<'_>, r: usize) -> Value {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::*;
    if col.is_null(r) {
        return Value::Null;
    }
    match col.data_type() {
        DataType::Boolean => Value::Bool(col.as_boolean().value(r)),
        DataType::Int8 => col.as_primitive::<Int8Type>().value(r).into(),
        DataType::Int16 => col.as_primitive::<Int16Type>().value(r).into(),
        DataType::Int32 => col.as_primitive::<Int32Type>().value(r).into(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(r).into(),
        DataType::UInt8 => col.as_primitive::<UInt8Type>().value(r).into(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().value(r).into(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(r).into(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(r).into(),
        DataType::Float32 => float(col.as_primitive::<Float32Type>().value(r) as f64),
        DataType::Float64 => float(col.as_primitive::<Float64Type>().value(r)),
        _ => Value::String(f.value(r).to_string()),
    }
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number)
}
