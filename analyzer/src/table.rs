//! One DataFusion table over the hot segment and the Parquet segments.

use crate::store::Store;
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use graylens_collector::Signal;
use std::sync::Arc;

/// Reads a fresh view of its table at every scan, skipping the segments
/// and hot batches the pushed-down filters rule out (see [`crate::prune`]).
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
        let (hot, segments, _) = self.store.view(self.signal);
        // Only the segments and batches the WHERE clause can match.
        let b = crate::prune::bounds(filters);
        let segments: Vec<_> = segments
            .into_iter()
            .filter(|g| b.allows_service(g.service.as_deref()) && b.allows_time(g.min_ns, g.max_ns))
            .collect();
        let schema = self.schema();
        // Only the projected columns of the hot batches are kept (no copy).
        let hot: Vec<RecordBatch> = hot
            .iter()
            .filter(|h| b.allows_service(Some(&h.service)) && b.allows_time(h.min_ns, h.max_ns))
            .map(|h| match projection {
                Some(p) => h.batch.project(p),
                None => Ok(h.batch.clone()),
            })
            .collect::<std::result::Result<_, _>>()?;
        let mut inputs = Vec::new();
        if !segments.is_empty() {
            let urls = segments
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
        if !hot.is_empty() || inputs.is_empty() {
            // Two partitions so both cores work on a large hot segment.
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema.clone(),
            };
            let mid = hot.len() / 2;
            let parts: Vec<Arc<dyn PartitionStream>> = [&hot[..mid], &hot[mid..]]
                .into_iter()
                .map(|batches| {
                    Arc::new(HotPartition {
                        schema: projected.clone(),
                        batches: batches.to_vec(),
                    }) as _
                })
                .collect();
            let exec = StreamingTableExec::try_new(projected, parts, None, [], false, limit)?;
            inputs.push(Arc::new(exec));
        }
        UnionExec::try_new(inputs)
    }
}

/// One partition of hot batches (already projected), read batch by batch:
/// span ids and resource attributes among their columns are rendered as
/// the table's (hex text, a map per row) only when the query pulls the
/// batch (so a `LIMIT` stops early and at most one rendered batch per
/// partition exists at a time). Unlike a `MemTable`, it
/// reports no row-count statistics: `count(*)` is counted, and joins keep
/// their written order.
#[derive(Debug)]
struct HotPartition {
    /// The table's schema, projected.
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl PartitionStream for HotPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = self.schema.clone();
        let batches = self
            .batches
            .clone()
            .into_iter()
            .map(move |b| Ok(graylens_collector::convert::to_table(&b, &schema)?));
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(batches),
        ))
    }
}
