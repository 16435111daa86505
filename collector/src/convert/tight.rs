//! Batches without spare capacity. The column builders grow by doubling, so
//! a finished batch holds up to twice the bytes its rows need (the attribute
//! maps' key and value buffers most of all), and the hot store keeps batches
//! until they are flushed. Copying the loose buffers to their exact length
//! once costs a memcpy of the batch; shrinking them in place would not free
//! anything, because the allocator keeps a block that is at least half used.

use datafusion::arrow::array::{make_array, ArrayData, ArrayRef};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

/// Spare bytes a buffer may keep: below this (or an eighth of its length),
/// a copy would save less than the allocator's own rounding.
const SLACK: usize = 256;

/// The batch of `columns`, with every loose buffer copied to its length.
pub(crate) fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch, ArrowError> {
    let columns = columns
        .into_iter()
        .map(|c| {
            let data = c.to_data();
            if loose(&data) {
                drop(c);
                Ok(make_array(tighten(data)?))
            } else {
                Ok(c)
            }
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    RecordBatch::try_new(schema, columns)
}

fn too_big(b: &Buffer) -> bool {
    b.capacity() - b.len() > SLACK.max(b.len() / 8)
}

fn loose(d: &ArrayData) -> bool {
    d.buffers().iter().any(too_big)
        || d.nulls().is_some_and(|n| too_big(n.buffer()))
        || d.child_data().iter().any(loose)
}

fn exact(b: &Buffer) -> Buffer {
    if too_big(b) {
        Buffer::from_slice_ref(b.as_slice())
    } else {
        b.clone()
    }
}

fn tighten(d: ArrayData) -> Result<ArrayData, ArrowError> {
    if !loose(&d) {
        return Ok(d);
    }
    let buffers = d.buffers().iter().map(exact).collect();
    let children = d
        .child_data()
        .iter()
        .cloned()
        .map(tighten)
        .collect::<Result<Vec<_>, _>>()?;
    let nulls = d
        .nulls()
        .map(|n| NullBuffer::new(BooleanBuffer::new(exact(n.buffer()), n.offset(), n.len())));
    d.into_builder()
        .buffers(buffers)
        .child_data(children)
        .nulls(nulls)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::dict::MapBuilder;
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn capacity(d: &ArrayData) -> usize {
        d.buffers().iter().map(Buffer::capacity).sum::<usize>()
            + d.nulls().map_or(0, |n| n.buffer().capacity())
            + d.child_data().iter().map(capacity).sum::<usize>()
    }

    #[test]
    fn loose_buffers_are_copied_and_values_kept() {
        let mut m = MapBuilder::default();
        for row in 0..1_000 {
            for k in 0..(row % 7) {
                m.entry(
                    &format!("k{k}"),
                    (k % 3 != 0).then(|| format!("v{row}")).as_deref(),
                );
            }
            m.end_row();
        }
        let map = m.finish();
        let mut ints = datafusion::arrow::array::Int64Builder::with_capacity(10_000);
        ints.extend((0..1_000).map(|i| (i % 5 != 0).then_some(i)));
        let ints: ArrayRef = Arc::new(ints.finish());
        let schema = Arc::new(Schema::new(vec![
            Field::new("m", map.data_type().clone(), false),
            Field::new("i", DataType::Int64, true),
        ]));
        assert!(loose(&map.to_data()) && loose(&ints.to_data()));
        let before = capacity(&map.to_data()) + capacity(&ints.to_data());
        let b = batch(schema, vec![map.clone(), ints.clone()]).unwrap();
        let after: usize = b.columns().iter().map(|c| capacity(&c.to_data())).sum();
        assert!(b.columns().iter().all(|c| !loose(&c.to_data())));
        // The 10,000-slot integer buffer alone was 80,000 bytes; 8,000 now.
        assert!(after + 70_000 < before, "{before} -> {after}");
        assert_eq!(b.column(0).as_ref(), map.as_ref());
        assert_eq!(b.column(1).as_ref(), ints.as_ref());
        assert_eq!(b.column(1).null_count(), 200);
    }

    #[test]
    fn tight_buffers_are_shared_not_copied() {
        let ints: ArrayRef = Arc::new(Int64Array::from_iter_values(0..1_000));
        let schema = Arc::new(Schema::new(vec![Field::new("i", DataType::Int64, false)]));
        let b = batch(schema, vec![ints.clone()]).unwrap();
        assert_eq!(
            b.column(0).to_data().buffers()[0].as_ptr(),
            ints.to_data().buffers()[0].as_ptr()
        );
    }
}
