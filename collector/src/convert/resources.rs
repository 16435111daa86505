//! Resource attributes in hot span batches: held once per resource, rows
//! pointing at them.
//!
//! Every span of a resource has the same resource attributes (a pod's
//! `k8s.*`, `host.*`, `service.*`, the SDK's `telemetry.*`), and a `Map`
//! column cannot share entries between rows: written per row, seven
//! attributes cost about 60 bytes per span. The hot store holds the column
//! as `Dictionary(Int32, Map)` instead ([`crate::schema::SPANS_HOT`]): the
//! dictionary holds each resource's map once, each row 4 bytes of key.
//! [`expand`] renders the table's `Map` column where SQL or Parquet reads it
//! ([`super::to_table`]); comparisons read the dictionary as it is.

use super::columns::ResourceView;
use super::dict::{map_type, MapBuilder};
use super::keys::Keys;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, MapArray, UInt32Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::arrow::error::ArrowError;
use std::collections::HashMap;
use std::sync::Arc;

/// The hot type of `resource_attributes`: `Dictionary(Int32, Map)`.
pub fn resource_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(map_type()))
}

/// Builds the column: one map per resource of the batch, one key per row.
#[derive(Default)]
pub(crate) struct ResourceCol {
    maps: MapBuilder,
    /// The resource last written and its key.
    last: Option<(u32, i32)>,
    keys: Vec<i32>,
}

impl ResourceCol {
    /// A row of resource `res`: its map is written the first time.
    pub fn push(&mut self, res: &ResourceView<'_>) {
        let key = match self.last {
            Some((id, key)) if id == res.id => key,
            _ => {
                for (k, v) in &res.attrs {
                    self.maps.entry(k, v.as_deref());
                }
                self.maps.end_row();
                let key = (self.maps.rows() - 1) as i32;
                self.last = Some((res.id, key));
                key
            }
        };
        self.keys.push(key);
    }

    pub fn finish(self) -> ArrayRef {
        let keys = Int32Array::from(self.keys);
        Arc::new(
            DictionaryArray::<Int32Type>::try_new(keys, self.maps.finish())
                .expect("every key points at a map written before it"),
        )
    }
}

/// The column as the table's `Map`: each row's resource map (its entries'
/// keys and values share the dictionaries of the resource maps). The
/// entries are gathered in one `take` (Arrow's `take` of a map extends row
/// by row, about 3x slower here).
pub(super) fn expand(column: &dyn Array) -> Result<ArrayRef, ArrowError> {
    let (keys, maps) = Keys::of(column).ok_or_else(|| {
        ArrowError::InvalidArgumentError(format!(
            "resource attributes of type {}",
            column.data_type()
        ))
    })?;
    let maps = maps.as_map();
    let o = maps.value_offsets();
    let mut offsets = Vec::with_capacity(keys.len() + 1);
    offsets.push(0i32);
    let mut entries: Vec<u32> = Vec::new();
    for k in keys.iter() {
        entries.extend(o[k] as u32..o[k + 1] as u32);
        offsets.push(i32::try_from(entries.len()).map_err(|_| {
            ArrowError::InvalidArgumentError(
                "too many resource attributes in one batch for i32 offsets".into(),
            )
        })?);
    }
    let entries = take(maps.entries(), &UInt32Array::from(entries), None)?;
    let DataType::Map(field, ordered) = maps.data_type() else {
        unreachable!("a map array has a map type")
    };
    Ok(Arc::new(MapArray::try_new(
        field.clone(),
        OffsetBuffer::new(offsets.into()),
        entries.as_struct().clone(),
        None,
        *ordered,
    )?))
}

/// `values` (a map per resource, keys and values interned in one
/// dictionary each, as a merge leaves them) with equal maps kept once, and
/// `keys` renumbered to match (as narrow as the maps allow,
/// [`super::keys::narrow`]): a merge of a service's small batches would
/// otherwise hold its few resources once per part.
pub(super) fn dedup(keys: Vec<i32>, values: ArrayRef) -> Result<ArrayRef, ArrowError> {
    let maps = values.as_map();
    let entries = maps.entries();
    let interned = |c: usize| {
        Keys::of(entries.column(c).as_ref())
            .map(|(k, _)| k)
            .ok_or_else(|| ArrowError::InvalidArgumentError("resource maps of plain text".into()))
    };
    let (k, v) = (interned(0)?, interned(1)?);
    // Each map as its entries' interned (key, value) pairs; a null value
    // is -1 (interned indices are not negative).
    let pair = |i: usize| (k.key(i) as i32, v.get(i).map_or(-1, |v| v as i32));
    let mut first: HashMap<Vec<(i32, i32)>, i32> = HashMap::new();
    // The maps kept, by their index in `values`.
    let mut unique: Vec<u32> = Vec::new();
    let renumber: Vec<i32> = maps
        .offsets()
        .windows(2)
        .enumerate()
        .map(|(m, w)| {
            let entries: Vec<(i32, i32)> = (w[0] as usize..w[1] as usize).map(pair).collect();
            *first.entry(entries).or_insert_with(|| {
                unique.push(m as u32);
                unique.len() as i32 - 1
            })
        })
        .collect();
    let values = take(values.as_ref(), &UInt32Array::from(unique), None)?;
    let keys = keys.into_iter().map(|k| renumber[k as usize]).collect();
    super::keys::narrow(keys, None, values)
}
