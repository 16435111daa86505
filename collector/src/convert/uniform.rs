//! Attribute maps whose rows all have the same keys, held as a column per key.
//!
//! The spans of one instrumentation mostly carry the same attributes in the
//! same order (`http.request.method`, `http.route`, `server.address`, …). A
//! `Map` column stores every entry's key, and each row's offset, although
//! they repeat row after row, and one dictionary for all values, so one
//! attribute of many distinct values (a client address) widens the keys of
//! every value. When every row of a merged hot batch has the same keys in
//! the same order, each key once and no null map or entry, the merge
//! (`convert::merge`) holds the column as a `Struct` instead: a field per
//! key, named by it, holding that attribute's values as a dictionary of its
//! own with keys as narrow as it allows ([`super::keys`]). Ten attributes
//! then cost ten one- or two-byte keys per row instead of a 4-byte offset
//! and twenty keys. [`to_map`] renders the table's `Map` (the same entries
//! in the same order) where SQL or Parquet reads (`convert::to_table`);
//! comparisons read the columns as they are.

use super::dict::{dictionary, entries_fields, map_type, Interner};
use super::keys::Keys;
use datafusion::arrow::array::{
    new_empty_array, Array, ArrayRef, AsArray, DictionaryArray, Int32Array, MapArray, StringArray,
    StructArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Int32Type};
use datafusion::arrow::error::ArrowError;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

/// `m` as a column per key when its rows all have the same keys (see the
/// module); `None` when they do not, or when it has no rows or no entries.
pub(super) fn columns(m: &MapArray) -> Option<ArrayRef> {
    let offsets = m.value_offsets();
    let rows = m.len();
    if rows == 0 || m.null_count() > 0 {
        return None;
    }
    let n = (offsets[1] - offsets[0]) as usize;
    if n == 0 || offsets.windows(2).any(|w| (w[1] - w[0]) as usize != n) {
        return None;
    }
    let entries = m.entries();
    if entries.null_count() > 0 {
        return None;
    }
    let (keys, names) = Keys::of(entries.column(0).as_ref())?;
    let (values, texts) = Keys::of(entries.column(1).as_ref())?;
    let (names, texts) = (names.as_string_opt::<i32>()?, texts.as_string_opt::<i32>()?);
    let base = offsets[0] as usize;
    let first: Vec<usize> = (0..n).map(|p| keys.key(base + p)).collect();
    let distinct: HashSet<&str> = first.iter().map(|&k| names.value(k)).collect();
    if distinct.len() != n || (0..rows * n).any(|j| keys.key(base + j) != first[j % n]) {
        return None;
    }
    let mut fields = Vec::with_capacity(n);
    let mut columns = Vec::with_capacity(n);
    for (p, &name) in first.iter().enumerate() {
        let column = one_key(&values, texts, base + p, n, rows).ok()?;
        let field = Field::new(names.value(name), column.data_type().clone(), true);
        fields.push(field.with_metadata(MARK.clone()));
        columns.push(column);
    }
    let array = StructArray::try_new(Fields::from(fields), columns, None).ok()?;
    Some(Arc::new(array))
}

/// The values of one key: entries `first`, `first + n`, … (`rows` of them),
/// interned in a dictionary of their own.
fn one_key(
    values: &Keys<'_>,
    texts: &StringArray,
    first: usize,
    n: usize,
    rows: usize,
) -> Result<ArrayRef, ArrowError> {
    let mut interned = Interner::default();
    // The new key of each value of `texts`, interned when first seen.
    let mut renumber: Vec<Option<i32>> = vec![None; texts.len()];
    let mut keys = Vec::with_capacity(rows);
    let mut valid = Vec::with_capacity(rows);
    for r in 0..rows {
        match values.get(first + r * n) {
            Some(v) => {
                let k = *renumber[v].get_or_insert_with(|| interned.intern(texts.value(v)));
                keys.push(k);
                valid.push(true);
            }
            None => {
                keys.push(0);
                valid.push(false);
            }
        }
    }
    let nulls = valid.contains(&false).then(|| NullBuffer::from(valid));
    super::dict::narrow_dictionary(interned, keys, nulls)
}

/// Marks the fields of [`columns`]: no other struct is taken for one.
static MARK: LazyLock<HashMap<String, String>> =
    LazyLock::new(|| HashMap::from([("graylens.attribute".to_string(), String::new())]));

/// `a` as the struct [`columns`] gives, `None` for anything else.
pub fn as_columns(a: &dyn Array) -> Option<&StructArray> {
    a.as_struct_opt().filter(|_| is_columns(a.data_type()))
}

/// Whether `t` is the type [`columns`] gives.
pub fn is_columns(t: &DataType) -> bool {
    match t {
        DataType::Struct(fields) => {
            !fields.is_empty() && fields.iter().all(|f| *f.metadata() == *MARK)
        }
        _ => false,
    }
}

/// The table's `Map` (`Map<Dictionary(Int32, Utf8), Dictionary(Int32, Utf8)>`)
/// of a column per key: each row's entries in the order of the fields.
pub fn to_map(a: &dyn Array) -> Result<ArrayRef, ArrowError> {
    let s = as_columns(a).ok_or_else(|| {
        ArrowError::InvalidArgumentError(format!("attributes of type {}", a.data_type()))
    })?;
    let (rows, n) = (s.len(), s.num_columns());
    if rows == 0 {
        return Ok(new_empty_array(&map_type()));
    }
    // The values of every column one after the other (a value of two
    // attributes is there twice: no hashing), each column's keys moved past
    // the values of the columns before it.
    let mut texts: Vec<&dyn Array> = Vec::with_capacity(n);
    let mut columns = Vec::with_capacity(n);
    let mut base = 0usize;
    for c in s.columns() {
        let (keys, values) = Keys::of(c.as_ref()).ok_or_else(|| {
            ArrowError::InvalidArgumentError(format!("an attribute of type {}", c.data_type()))
        })?;
        if values.data_type() != &DataType::Utf8 {
            return Err(ArrowError::InvalidArgumentError(
                "attribute values that are not text".into(),
            ));
        }
        columns.push((keys, base as i32, values.len().saturating_sub(1)));
        base += values.len();
        texts.push(values.as_ref());
    }
    let mut names = Interner::default();
    for f in s.fields() {
        names.intern(f.name());
    }
    let entry_keys: Vec<i32> = (0..rows).flat_map(|_| 0..n as i32).collect();
    // Column by column into every n-th entry: each column is read in order.
    let mut value_keys = vec![0i32; rows * n];
    let mut valid: Option<Vec<bool>> = None;
    for (p, ((keys, base, last), c)) in columns.iter().zip(s.columns()).enumerate() {
        let slots = value_keys[p..].iter_mut().step_by(n);
        for (slot, k) in slots.zip(keys.iter()) {
            // A null row's key may point anywhere: its entry is null below.
            *slot = base + k.min(*last) as i32;
        }
        if let Some(nulls) = c.logical_nulls().filter(|n| n.null_count() > 0) {
            let valid = valid.get_or_insert_with(|| vec![true; rows * n]);
            for (r, ok) in nulls.iter().enumerate() {
                if !ok {
                    valid[r * n + p] = false;
                }
            }
        }
    }
    let nulls = valid.map(NullBuffer::from);
    let entries = StructArray::try_new(
        entries_fields(),
        vec![
            Arc::new(dictionary(names, entry_keys, None)?),
            Arc::new(DictionaryArray::<Int32Type>::try_new(
                Int32Array::new(ScalarBuffer::from(value_keys), nulls),
                concat(&texts)?,
            )?),
        ],
        None,
    )?;
    if i32::try_from(rows * n).is_err() {
        return Err(ArrowError::InvalidArgumentError(format!(
            "{rows} rows of {n} attributes overflow i32 offsets"
        )));
    }
    let offsets: Vec<i32> = (0..=rows).map(|r| (r * n) as i32).collect();
    let DataType::Map(field, ordered) = map_type() else {
        unreachable!("map_type is a map")
    };
    Ok(Arc::new(MapArray::try_new(
        field,
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        entries,
        None,
        ordered,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::dict::{key_type, row_texts, MapBuilder};

    /// A row's entries: (key, value).
    type Row = Vec<(&'static str, Option<String>)>;

    /// A map column of `rows`.
    fn map(rows: &[Row]) -> MapArray {
        let mut b = MapBuilder::default();
        for row in rows {
            for (k, v) in row {
                b.entry(k, v.as_deref());
            }
            b.end_row();
        }
        b.finish().as_map().clone()
    }

    /// Each row as `key=value` texts: what SQL sees.
    fn texts(m: &MapArray) -> Vec<Vec<String>> {
        (0..m.len()).map(|r| row_texts(m, r)).collect()
    }

    /// 600 spans of one instrumentation: a method of two values, a client
    /// address of 300 (null every seventh row) and a count.
    fn spans() -> Vec<Row> {
        (0..600)
            .map(|r| {
                vec![
                    (
                        "http.request.method",
                        Some(["GET", "POST"][r % 2].to_string()),
                    ),
                    (
                        "client.address",
                        (r % 7 != 3).then(|| format!("10.0.0.{}", r % 300)),
                    ),
                    ("app.cart.items", Some((r % 20).to_string())),
                ]
            })
            .collect()
    }

    #[test]
    fn rows_with_the_same_keys_become_a_column_per_key_and_render_back() {
        let m = map(&spans());
        let c = columns(&m).expect("every row has the same keys");
        let s = c.as_struct();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["http.request.method", "client.address", "app.cart.items"]
        );
        // Each attribute's own dictionary: one-byte keys but for the addresses.
        let widths: Vec<DataType> = s.columns().iter().map(key_type).collect();
        assert_eq!(widths, [DataType::UInt8, DataType::UInt16, DataType::UInt8]);
        assert_eq!(s.column(1).null_count(), 86);
        assert!(c.get_array_memory_size() * 2 < m.get_array_memory_size());
        // As the table's map: the same entries in the same order, nulls kept.
        let back = to_map(c.as_ref()).unwrap();
        assert_eq!(back.data_type(), &map_type());
        back.to_data().validate_full().unwrap();
        assert_eq!(texts(back.as_map()), texts(&m));
        assert_eq!(texts(&m)[3][1], "client.address=None");
        // A slice of the map too, and of the columns, empty ones included.
        let sliced = m.slice(5, 100);
        let back = to_map(columns(&sliced).unwrap().as_ref()).unwrap();
        assert_eq!(texts(back.as_map()), texts(&sliced));
        let back = to_map(c.slice(5, 100).as_ref()).unwrap();
        assert_eq!(texts(back.as_map()), texts(&sliced));
        assert_eq!(to_map(c.slice(7, 0).as_ref()).unwrap().len(), 0);
        // A struct that is not attributes as columns is not taken for one.
        assert!(is_columns(c.data_type()));
        let other = StructArray::from(vec![(
            Arc::new(Field::new("x", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
        )]);
        assert!(!is_columns(other.data_type()));
        assert!(to_map(&other).is_err());
    }

    #[test]
    fn maps_whose_rows_differ_stay_maps() {
        let v = |s: &str| Some(s.to_string());
        let differ: [Vec<Row>; 5] = [
            // Another key in one row.
            vec![vec![("a", v("1"))], vec![("b", v("1"))]],
            // The same keys in another order.
            vec![
                vec![("a", v("1")), ("b", v("2"))],
                vec![("b", v("2")), ("a", v("1"))],
            ],
            // One more entry.
            vec![vec![("a", v("1"))], vec![("a", v("1")), ("b", v("2"))]],
            // A key twice.
            vec![
                vec![("a", v("1")), ("a", v("2"))],
                vec![("a", v("1")), ("a", v("2"))],
            ],
            // No entries.
            vec![vec![], vec![]],
        ];
        for rows in differ {
            assert!(columns(&map(&rows)).is_none(), "{rows:?}");
        }
        assert!(columns(&map(&[])).is_none(), "no rows");
    }
}
