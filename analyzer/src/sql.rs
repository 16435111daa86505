//! SQL over the three tables, with results as JSON.

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

/// The `spans`, `logs` and `metrics` tables in one DataFusion session.
#[derive(Clone)]
pub struct Tables {
    ctx: SessionContext,
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
}

impl Tables {
    pub fn new(store: Arc<Store>) -> Result<Self> {
        let cfg = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config(cfg);
        for s in Signal::ALL {
            ctx.register_table(s.table(), Arc::new(StoreTable::new(store.clone(), s)))?;
        }
        Ok(Self { ctx })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs a query graylens itself wrote: failures are internal errors.
    pub(crate) async fn internal(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let run = async { self.ctx.sql(sql).await?.collect().await };
        run.await
            .map_err(|e| Error::Internal(format!("{e} (query: {sql})")))
    }

    /// Runs one SQL statement. Only queries: DDL and DML are refused.
    pub async fn query(&self, sql: &str) -> Result<QueryOutput> {
        let opts = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self.ctx.sql_with_options(sql, opts).await?;
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await?;
        let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut rows = Vec::new();
        for b in &batches {
            append_rows(b, &mut rows)?;
        }
        Ok(QueryOutput { columns, rows })
    }
}

fn append_rows(b: &RecordBatch, rows: &mut Vec<Vec<Value>>) -> Result<()> {
    let opts = FormatOptions::default();
    let fmts = b
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(e.to_string()))?;
    for r in 0..b.num_rows() {
        rows.push(
            b.columns()
                .iter()
                .zip(&fmts)
                .map(|(c, f)| cell(c, f, r))
                .collect(),
        );
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
