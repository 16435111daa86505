//! Many batches of one table as one, with one dictionary per text column.
//!
//! A request's rows become batches of their own, so a service that sends
//! small requests leaves many small batches in the hot store, and each
//! holds its own copy of every distinct value (service, version, attribute
//! keys and values) and its own array structures. The hot store merges them
//! ([`merge`]): each dictionary column of text, at the top level or inside
//! an attribute map, gets one dictionary holding each distinct value once
//! (Arrow's `concat` keeps every input's dictionary while they are smaller
//! than the rows), with keys as narrow as that dictionary allows
//! ([`super::keys`]); integer columns are as narrow as their values allow
//! ([`super::ints`]); other columns are concatenated by Arrow. A merged
//! attribute map whose rows all have the same keys becomes a column per key
//! ([`super::uniform`]). Rows keep their order and their values.

use super::dict::Interner;
use super::keys::{is_key_type, Keys};
use datafusion::arrow::array::{
    make_array, Array, ArrayRef, AsArray, BooleanBufferBuilder, MapArray, StructArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, FieldRef, Fields, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// The rows of `batches` (each of `schema`'s columns), in order, as one
/// batch. Its dictionary columns may have other key types than the parts'.
pub fn merge(schema: &SchemaRef, batches: &[&RecordBatch]) -> Result<RecordBatch, ArrowError> {
    let columns = (0..schema.fields().len())
        .map(|i| {
            let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
            let merged = merge_arrays(&parts)?;
            // Attribute maps whose rows share their keys: a column per key.
            Ok(merged
                .as_map_opt()
                .and_then(super::uniform::columns)
                .unwrap_or(merged))
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let fields = with_types(schema.fields(), &columns);
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    super::tight::batch(schema, columns)
}

/// `fields` with the types of `columns`.
fn with_types(fields: &Fields, columns: &[ArrayRef]) -> Fields {
    fields
        .iter()
        .zip(columns)
        .map(|(f, c)| {
            if f.data_type() == c.data_type() {
                f.clone()
            } else {
                Arc::new(f.as_ref().clone().with_data_type(c.data_type().clone()))
            }
        })
        .collect()
}

/// Whether `a` is a dictionary of text without null values.
fn is_text_dictionary(a: &dyn Array) -> bool {
    Keys::of(a).is_some_and(|(_, v)| *v.data_type() == DataType::Utf8 && v.null_count() == 0)
}

fn merge_arrays(parts: &[&dyn Array]) -> Result<ArrayRef, ArrowError> {
    if parts
        .iter()
        .any(|a| super::uniform::is_columns(a.data_type()))
    {
        // Attributes held as a column per key merge as the maps they are.
        let maps = parts
            .iter()
            .map(|a| {
                if super::uniform::is_columns(a.data_type()) {
                    super::uniform::to_map(*a)
                } else {
                    Ok(make_array(a.to_data()))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        return merge_arrays(&maps.iter().map(|a| a.as_ref()).collect::<Vec<_>>());
    }
    match parts.first().map(|a| a.data_type()) {
        Some(DataType::Dictionary(k, v))
            if is_key_type(k)
                && **v == DataType::Utf8
                && parts.iter().all(|a| is_text_dictionary(*a)) =>
        {
            merge_dictionaries(parts)
        }
        Some(DataType::Map(field, ordered)) => merge_maps(parts, field, *ordered),
        Some(DataType::Dictionary(k, v)) if is_key_type(k) && matches!(**v, DataType::Map(..)) => {
            merge_resources(parts)
        }
        Some(t) if super::ints::is_int(t) => super::ints::merge(parts),
        _ => concat(parts),
    }
}

/// Dictionaries of maps (resource attributes): the parts' maps merged like
/// map columns, each row's key moved past the maps of the parts before it,
/// then equal maps kept once.
fn merge_resources(parts: &[&dyn Array]) -> Result<ArrayRef, ArrowError> {
    let dicts = parts
        .iter()
        .map(|a| {
            Keys::of(*a).ok_or_else(|| {
                ArrowError::InvalidArgumentError(format!(
                    "resource attributes of type {} among dictionaries",
                    a.data_type()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let values: Vec<&dyn Array> = dicts.iter().map(|(_, v)| v.as_ref()).collect();
    let maps = merge_arrays(&values)?;
    let mut keys = Vec::with_capacity(parts.iter().map(|a| a.len()).sum());
    let mut base = 0i32;
    for (k, v) in &dicts {
        keys.extend(k.iter().map(|k| base + k as i32));
        base += v.len() as i32;
    }
    super::resources::dedup(keys, maps)
}

/// One dictionary of the distinct values; each row's key points at its
/// value there. Only the values are hashed, not the rows. Refused when the
/// values could pass the 2 GiB that `i32` offsets address.
fn merge_dictionaries(parts: &[&dyn Array]) -> Result<ArrayRef, ArrowError> {
    let dicts: Vec<_> = parts
        .iter()
        .map(|a| {
            let (k, v) = Keys::of(*a).expect("checked by the caller");
            (k, v.as_string::<i32>())
        })
        .collect();
    let bytes: usize = dicts.iter().map(|(_, v)| v.values().len()).sum();
    if bytes > i32::MAX as usize {
        return Err(ArrowError::InvalidArgumentError(format!(
            "{bytes} bytes of dictionary values would overflow i32 offsets"
        )));
    }
    let rows = parts.iter().map(|a| a.len()).sum();
    let mut values = Interner::default();
    let mut keys = Vec::with_capacity(rows);
    let mut renumber = Vec::new();
    for (k, old) in &dicts {
        renumber.clear();
        renumber.extend(old.iter().map(|v| values.intern(v.unwrap_or_default())));
        // A null row's key may point anywhere: it becomes 0.
        keys.extend(k.iter().map(|k| renumber.get(k).copied().unwrap_or(0)));
    }
    let nulls = concat_nulls(parts.iter().map(|a| (a.logical_nulls(), a.len())), rows);
    super::dict::narrow_dictionary(values, keys, nulls)
}

/// Maps: their entries (keys and values) merged the same way, offsets from
/// each row's length.
fn merge_maps(
    parts: &[&dyn Array],
    field: &FieldRef,
    ordered: bool,
) -> Result<ArrayRef, ArrowError> {
    let maps: Vec<&MapArray> = parts.iter().map(|a| a.as_map()).collect();
    // Only the entries the rows use (a sliced map's entries hold more).
    let entries: Vec<StructArray> = maps
        .iter()
        .map(|m| {
            let o = m.value_offsets();
            let (first, last) = (o[0] as usize, o[o.len() - 1] as usize);
            m.entries().slice(first, last - first)
        })
        .collect();
    let columns = (0..entries[0].num_columns())
        .map(|i| {
            let parts: Vec<&dyn Array> = entries.iter().map(|e| e.column(i).as_ref()).collect();
            merge_arrays(&parts)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fields = with_types(entries[0].fields(), &columns);
    let field = Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(DataType::Struct(fields.clone())),
    );
    let n: usize = entries.iter().map(|e| e.len()).sum();
    let entry_nulls = concat_nulls(entries.iter().map(|e| (e.nulls().cloned(), e.len())), n);
    let entries = StructArray::try_new(fields, columns, entry_nulls)?;
    let offsets =
        OffsetBuffer::<i32>::from_lengths(maps.iter().flat_map(|m| m.offsets().lengths()));
    let rows = parts.iter().map(|a| a.len()).sum();
    let nulls = concat_nulls(maps.iter().map(|m| (m.nulls().cloned(), m.len())), rows);
    Ok(Arc::new(MapArray::try_new(
        field, offsets, entries, nulls, ordered,
    )?))
}

/// The validity of the parts one after the other; `None` when all are valid.
fn concat_nulls(
    parts: impl Iterator<Item = (Option<NullBuffer>, usize)> + Clone,
    rows: usize,
) -> Option<NullBuffer> {
    if parts
        .clone()
        .all(|(n, _)| n.is_none_or(|n| n.null_count() == 0))
    {
        return None;
    }
    let mut b = BooleanBufferBuilder::new(rows);
    for (n, len) in parts {
        match n {
            Some(n) => b.append_buffer(n.inner()),
            None => b.append_n(len, true),
        }
    }
    Some(NullBuffer::new(b.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::dict::{DictBuilder, MapBuilder};
    use datafusion::arrow::array::{DictionaryArray, Int32Array, Int64Array, StringArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::Int32Type;
    use datafusion::arrow::datatypes::{Field, Schema};

    /// A batch of `rows` rows: a text column (every seventh null), an
    /// attribute map (some values null, some rows empty) and a number.
    fn part(first: usize, rows: usize) -> RecordBatch {
        let (mut text, mut map) = (DictBuilder::default(), MapBuilder::default());
        for r in first..first + rows {
            text.push_option((r % 7 != 0).then(|| format!("op{}", r % 3)).as_deref());
            for k in 0..(r % 4) {
                map.entry(
                    &format!("k{k}"),
                    (k != 1).then(|| format!("v{}", r % 5)).as_deref(),
                );
            }
            map.end_row();
        }
        let n: ArrayRef = Arc::new(Int64Array::from_iter(
            (first..first + rows).map(|r| (r % 11 != 0).then_some(r as i64)),
        ));
        RecordBatch::try_new(schema(), vec![text.finish(), map.finish(), n]).unwrap()
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("t", crate::convert::dict::dict_type(), true),
            Field::new("m", crate::convert::dict::map_type(), false),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    /// Each row as text: what SQL would see.
    fn rows(b: &RecordBatch) -> Vec<String> {
        let t = cast(b.column(0), &DataType::Utf8).unwrap();
        let t = t.as_string::<i32>();
        let m = b.column(1).as_map();
        // Merged batches may hold it in fewer bytes (`super::ints`).
        let n = cast(b.column(2), &DataType::Int64).unwrap();
        let n = n.as_any().downcast_ref::<Int64Array>().unwrap();
        (0..b.num_rows())
            .map(|r| {
                format!(
                    "{:?} {:?} {:?}",
                    t.is_valid(r).then(|| t.value(r)),
                    entries(m, r),
                    n.is_valid(r).then(|| n.value(r))
                )
            })
            .collect()
    }

    use crate::convert::dict::{key_type, row_texts as entries};

    fn dictionary_values(a: &ArrayRef) -> usize {
        Keys::of(a.as_ref()).unwrap().1.len()
    }

    #[test]
    fn keys_are_as_narrow_as_each_merged_dictionary_and_render_as_the_table() {
        let parts: Vec<RecordBatch> = (0..40).map(|i| part(i * 50, 50)).collect();
        let refs: Vec<&RecordBatch> = parts.iter().collect();
        let merged = merge(&schema(), &refs).unwrap();
        assert_eq!(key_type(merged.column(0)), DataType::UInt8);
        assert_eq!(
            merged.schema().field(0).data_type(),
            merged.column(0).data_type()
        );
        // 300 distinct values need two bytes per key.
        let mut many = DictBuilder::default();
        for r in 0..600 {
            many.push(&format!("op{}", r % 300));
        }
        let many = many.finish();
        let two = merge_arrays(&[many.as_ref(), merged.column(0).as_ref()]).unwrap();
        assert_eq!(key_type(&two), DataType::UInt16);
        assert_eq!(dictionary_values(&two), 300);
        two.to_data().validate_full().unwrap();
        // A merged batch merges again with batches of Int32 keys.
        let again = merge(&merged.schema(), &[&merged, &parts[3]]).unwrap();
        let expected: Vec<String> = parts.iter().chain([&parts[3]]).flat_map(rows).collect();
        assert_eq!(rows(&again), expected);
        // As the table's types: the same rows.
        let table = crate::convert::to_table(&again, &schema()).unwrap();
        assert_eq!(table.schema(), schema());
        assert_eq!(rows(&table), expected);
    }

    #[test]
    fn rows_are_kept_in_order_and_each_value_is_stored_once() {
        let parts: Vec<RecordBatch> = (0..40).map(|i| part(i * 50, 50)).collect();
        let refs: Vec<&RecordBatch> = parts.iter().collect();
        let merged = merge(&schema(), &refs).unwrap();
        let expected: Vec<String> = parts.iter().flat_map(rows).collect();
        assert_eq!(merged.num_rows(), 2_000);
        assert_eq!(rows(&merged), expected);
        // op0..op2; keys k0..k2; values v0..v4: once each, not once per part.
        assert_eq!(dictionary_values(merged.column(0)), 3);
        let entries = merged.column(1).as_map().entries();
        assert_eq!(dictionary_values(entries.column(0)), 3);
        assert_eq!(dictionary_values(entries.column(1)), 5);
        assert_eq!(merged.column(0).null_count(), 2_000 / 7 + 1);
        assert_eq!(merged.column(2).null_count(), 2_000 / 11 + 1);
        // Arrow's own concatenation keeps the 40 copies.
        let plain = concat(
            &refs
                .iter()
                .map(|b| b.column(0).as_ref())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(dictionary_values(&plain), 120);
        assert!(
            merged.get_array_memory_size()
                < RecordBatch::try_new(
                    schema(),
                    (0..3)
                        .map(|i| concat(
                            &refs
                                .iter()
                                .map(|b| b.column(i).as_ref())
                                .collect::<Vec<_>>()
                        )
                        .unwrap())
                        .collect()
                )
                .unwrap()
                .get_array_memory_size()
        );
    }

    /// [`part`] with every row's map holding the keys k0, k1, k2.
    fn uniform_part(first: usize, rows: usize) -> RecordBatch {
        let b = part(first, rows);
        let mut map = MapBuilder::default();
        for r in first..first + rows {
            for k in 0..3 {
                map.entry(
                    &format!("k{k}"),
                    (r % 9 != k).then(|| format!("v{}", r % 5)).as_deref(),
                );
            }
            map.end_row();
        }
        RecordBatch::try_new(
            schema(),
            vec![b.column(0).clone(), map.finish(), b.column(2).clone()],
        )
        .unwrap()
    }

    #[test]
    fn maps_of_the_same_keys_merge_to_a_column_per_key_and_back() {
        let parts: Vec<RecordBatch> = (0..10).map(|i| uniform_part(i * 50, 50)).collect();
        let refs: Vec<&RecordBatch> = parts.iter().collect();
        let merged = merge(&schema(), &refs).unwrap();
        assert!(matches!(merged.column(1).data_type(), DataType::Struct(_)));
        let expected: Vec<String> = parts.iter().flat_map(rows).collect();
        let table = crate::convert::to_table(&merged, &schema()).unwrap();
        assert_eq!(table.schema(), schema());
        assert_eq!(rows(&table), expected);
        // With a part whose rows differ, a map again, the same rows.
        let other = part(500, 30);
        let again = merge(&merged.schema(), &[&merged, &other]).unwrap();
        assert!(matches!(again.column(1).data_type(), DataType::Map(..)));
        let expected: Vec<String> = expected.into_iter().chain(rows(&other)).collect();
        assert_eq!(rows(&again), expected);
    }

    #[test]
    fn sliced_parts_and_empty_ones_merge_to_their_rows() {
        let a = part(0, 30);
        let b = part(30, 40).slice(7, 20);
        let empty = part(70, 0);
        let merged = merge(&schema(), &[&a, &empty, &b]).unwrap();
        let expected: Vec<String> = [&a, &b].into_iter().flat_map(rows).collect();
        assert_eq!(rows(&merged), expected);
        merged.column(1).to_data().validate_full().unwrap();
    }

    #[test]
    fn a_column_of_nulls_only_keeps_a_value_for_its_keys() {
        let mut d = DictBuilder::default();
        d.push_null();
        let empty_values = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(vec![None::<i32>]),
            Arc::new(StringArray::from(Vec::<&str>::new())),
        )
        .unwrap();
        let parts: Vec<ArrayRef> = vec![d.finish(), Arc::new(empty_values)];
        let merged = merge_arrays(&parts.iter().map(|a| a.as_ref()).collect::<Vec<_>>()).unwrap();
        assert_eq!(merged.null_count(), 2);
        merged.to_data().validate_full().unwrap();
    }

    /// Resource attributes as the hot store holds them: rows of three
    /// resources in runs of ten, each resource's map written once per part.
    fn resources(first: usize, rows: usize) -> ArrayRef {
        let (mut maps, mut seen, mut keys) = (MapBuilder::default(), Vec::new(), Vec::new());
        for r in first..first + rows {
            let id = (r / 10) % 3;
            let key = match seen.iter().position(|&s| s == id) {
                Some(k) => k,
                None => {
                    maps.entry("host", Some(&format!("h{id}")));
                    maps.entry("pod", (id != 2).then(|| format!("p{id}")).as_deref());
                    maps.end_row();
                    seen.push(id);
                    seen.len() - 1
                }
            };
            keys.push(key as i32);
        }
        Arc::new(
            DictionaryArray::<Int32Type>::try_new(Int32Array::from(keys), maps.finish()).unwrap(),
        )
    }

    fn resource_rows(a: &ArrayRef) -> Vec<Vec<String>> {
        let m = crate::convert::resources::expand(a.as_ref()).unwrap();
        let m = m.as_map();
        (0..m.len()).map(|r| entries(m, r)).collect()
    }

    #[test]
    fn resources_merge_to_one_map_each() {
        let mut parts: Vec<ArrayRef> = (0..40).map(|i| resources(i * 25, 25)).collect();
        parts.push(resources(1_000, 40).slice(5, 30));
        parts.push(resources(1_040, 0));
        let held: usize = parts.iter().map(dictionary_values).sum();
        assert!(held > 80, "{held} maps before");
        let merged = merge_arrays(&parts.iter().map(|a| a.as_ref()).collect::<Vec<_>>()).unwrap();
        merged.to_data().validate_full().unwrap();
        assert_eq!(dictionary_values(&merged), 3);
        let expected: Vec<Vec<String>> = parts.iter().flat_map(resource_rows).collect();
        assert_eq!(expected.len(), 1_030);
        assert_eq!(resource_rows(&merged), expected);
        // Row 1,034 of the sliced part, and a resource without a pod.
        assert_eq!(expected[1_029], ["host=Some(\"h1\")", "pod=Some(\"p1\")"]);
        assert!(expected.contains(&vec!["host=Some(\"h2\")".into(), "pod=None".into()]));
    }
}
