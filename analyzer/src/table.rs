//! One DataFusion table over the hot segment and the Parquet segments.

use crate::store::Store;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use graylens_collector::Signal;
use std::sync::Arc;

/// Reads a fresh [`Snapshot`](crate::store::Snapshot) of its table at every scan.
#[derive(Debug)]
pub(crate) struct StoreTable {
    store: Arc<Store>,
    signal: Signal,
}

impl StoreTable {
    pub fn new(store: Arc<Store>, signal: Signal) -> Self {
        Self { store, signal }
    }
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.signal.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Parquet prunes row groups with them; DataFusion still applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snap = self.store.snapshot(self.signal);
        let schema = self.schema();
        let mut inputs = Vec::new();
        if !snap.segments.is_empty() {
            let urls = snap
                .segments
                .iter()
                .map(|g| ListingTableUrl::parse(self.store.url_of(g)))
                .collect::<Result<Vec<_>>>()?;
            let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let cfg = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(opts)
                .with_schema(schema.clone());
            let cold = ListingTable::try_new(cfg)?;
            inputs.push(cold.scan(state, projection, filters, limit).await?);
        }
        if !snap.hot.is_empty() || inputs.is_empty() {
            // Two partitions so both cores work on a large hot segment.
            let mid = snap.hot.len() / 2;
            let parts = vec![snap.hot[..mid].to_vec(), snap.hot[mid..].to_vec()];
            let hot = MemTable::try_new(schema, parts)?;
            inputs.push(hot.scan(state, projection, filters, limit).await?);
        }
        UnionExec::try_new(inputs)
    }
}
