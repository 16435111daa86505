//! Hot batches as their tables see them.
//!
//! The hot store holds some span columns in a cheaper form than the table's
//! (see [`crate::schema::SPANS_HOT`]): ids as their bytes ([`super::ids`])
//! and resource attributes once per resource ([`super::resources`]), and
//! merged batches' dictionaries with narrow keys ([`super::keys`]) and
//! attributes as a column per key ([`super::uniform`]).
//! [`to_table`] renders them where a table is read: SQL over hot batches
//! (only the columns a query projects, one batch at a time as the query
//! pulls it) and the Parquet flush (one batch at a time).

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

/// `batch` with its binary id columns as the hex text of `table`, its
/// resource dictionary as a map per row and narrow dictionary keys cast to
/// the table's (`table`: a schema with the same columns, or the same
/// projection of them); other columns are shared, not copied.
pub fn to_table(batch: &RecordBatch, table: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let names = batch.schema_ref().fields().iter().map(|f| f.name());
    if !names.eq(table.fields().iter().map(|f| f.name())) {
        return Err(ArrowError::SchemaError(
            "a batch of other columns than its table".into(),
        ));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(table.fields())
        .map(|(c, f)| {
            let c = match (c.data_type(), f.data_type()) {
                (DataType::FixedSizeBinary(_), DataType::Utf8) => {
                    super::ids::hex(c.as_fixed_size_binary())?
                }
                (DataType::Dictionary(_, v), DataType::Map(..))
                    if matches!(**v, DataType::Map(..)) =>
                {
                    super::resources::expand(c.as_ref())?
                }
                (DataType::Struct(_), DataType::Map(..)) => super::uniform::to_map(c.as_ref())?,
                _ => c.clone(),
            };
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                cast(&c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The row count too: a projection of no columns (`count(*)`) has rows.
    let rows = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(table.clone(), columns, &rows)
}
