//! Dictionary-encoded text columns: each distinct value is stored once per
//! batch and every row holds a 4-byte key. A value repeated for every record
//! of a resource (service, version, resource attributes) is hashed once per
//! resource, not once per row: [`DictBuilder::intern`] returns its key and
//! [`DictBuilder::push_key`] repeats it.

use datafusion::arrow::array::{
    Array, ArrayRef, DictionaryArray, Int32Array, MapArray, StringArray, StructArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Int32Type};
use datafusion::arrow::error::ArrowError;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::Arc;

/// `Dictionary(Int32, Utf8)`, the type of every dictionary column.
pub fn dict_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// Interned text: the distinct values of a column in this batch.
#[derive(Default)]
pub(crate) struct Interner {
    table: HashTable<i32>,
    hasher: hashbrown::DefaultHashBuilder,
    offsets: Vec<i32>,
    bytes: Vec<u8>,
}

impl Interner {
    fn value(&self, k: i32) -> &[u8] {
        let k = k as usize;
        &self.bytes[self.offsets[k] as usize..self.offsets[k + 1] as usize]
    }

    /// The key of `s`, added if new.
    pub fn intern(&mut self, s: &str) -> i32 {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let h = self.hasher.hash_one(s.as_bytes());
        let Self {
            table,
            hasher,
            offsets,
            bytes,
        } = self;
        let found = table.find(h, |&k| {
            let k = k as usize;
            &bytes[offsets[k] as usize..offsets[k + 1] as usize] == s.as_bytes()
        });
        if let Some(&k) = found {
            return k;
        }
        let k = (offsets.len() - 1) as i32;
        bytes.extend_from_slice(s.as_bytes());
        offsets.push(bytes.len() as i32);
        table.insert_unique(h, k, |&k| {
            let k = k as usize;
            hasher.hash_one(&bytes[offsets[k] as usize..offsets[k + 1] as usize])
        });
        k
    }

    fn finish(mut self) -> StringArray {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        // Every value came from a &str, so the buffer is valid UTF-8.
        StringArray::new(offsets, self.bytes.into(), None)
    }

    /// The values, at least one (`""` when none was interned).
    fn finish_some(self) -> StringArray {
        let values = self.finish();
        if values.is_empty() {
            StringArray::from(vec![""])
        } else {
            values
        }
    }

    #[cfg(test)]
    fn get(&self, k: i32) -> &str {
        std::str::from_utf8(self.value(k)).unwrap()
    }
}

/// A nullable `Dictionary(Int32, Utf8)` column.
#[derive(Default)]
pub(crate) struct DictBuilder {
    values: Interner,
    keys: Vec<i32>,
    /// Row validity, created at the first null.
    valid: Option<Vec<bool>>,
    /// The last value pushed: runs of one value (every record of a
    /// resource) cost a comparison, not a hash lookup.
    last: Option<i32>,
}

impl DictBuilder {
    pub fn intern(&mut self, s: &str) -> i32 {
        self.values.intern(s)
    }

    /// Whether key `k` stands for `s`.
    pub fn is(&self, k: i32, s: &str) -> bool {
        self.values.value(k) == s.as_bytes()
    }

    pub fn push_key(&mut self, k: i32) {
        self.keys.push(k);
        if let Some(v) = &mut self.valid {
            v.push(true);
        }
    }

    pub fn push(&mut self, s: &str) {
        let k = match self.last {
            Some(k) if self.values.value(k) == s.as_bytes() => k,
            _ => {
                let k = self.values.intern(s);
                self.last = Some(k);
                k
            }
        };
        self.push_key(k);
    }

    pub fn push_option(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.push(s),
            None => self.push_null(),
        }
    }

    pub fn push_null(&mut self) {
        let n = self.keys.len();
        let v = self.valid.get_or_insert_with(|| vec![true; n]);
        v.push(false);
        self.keys.push(0);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn finish(self) -> ArrayRef {
        let nulls = self.valid.map(NullBuffer::from);
        Arc::new(
            dictionary(self.values, self.keys, nulls).expect("keys are in range by construction"),
        )
    }
}

/// The dictionary column of `keys` into `values`. Keys of null rows point
/// at 0: a column of nulls only keeps one value so they stay in range.
pub(crate) fn dictionary(
    values: Interner,
    keys: Vec<i32>,
    nulls: Option<NullBuffer>,
) -> Result<DictionaryArray<Int32Type>, ArrowError> {
    let keys = Int32Array::new(ScalarBuffer::from(keys), nulls);
    DictionaryArray::try_new(keys, Arc::new(values.finish_some()))
}

/// [`dictionary`] with the narrowest keys its values allow
/// ([`super::keys::narrow`]).
pub(crate) fn narrow_dictionary(
    values: Interner,
    keys: Vec<i32>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, ArrowError> {
    super::keys::narrow(keys, nulls, Arc::new(values.finish_some()))
}

/// `Map<Dictionary(Int32, Utf8), Dictionary(Int32, Utf8)>`: attributes with
/// keys and values each stored once per batch.
#[derive(Default)]
pub(crate) struct MapBuilder {
    offsets: Vec<i32>,
    keys: DictBuilder,
    values: DictBuilder,
}

/// The type of the `attributes` and `resource_attributes` columns.
pub fn map_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new("entries", entries_struct(), false)),
        false,
    )
}

pub(super) fn entries_fields() -> Fields {
    Fields::from(vec![
        Field::new("keys", dict_type(), false),
        Field::new("values", dict_type(), true),
    ])
}

fn entries_struct() -> DataType {
    DataType::Struct(entries_fields())
}

impl MapBuilder {
    pub fn intern_key(&mut self, k: &str) -> i32 {
        self.keys.intern(k)
    }

    pub fn intern_value(&mut self, v: &str) -> i32 {
        self.values.intern(v)
    }

    /// The key of `k`, trying `hint` (a key seen before) first.
    pub fn key_near(&mut self, hint: Option<i32>, k: &str) -> i32 {
        match hint {
            Some(h) if self.keys.is(h, k) => h,
            _ => self.keys.intern(k),
        }
    }

    /// The key of value `v`, trying `hint` first.
    pub fn value_near(&mut self, hint: Option<i32>, v: &str) -> i32 {
        match hint {
            Some(h) if self.values.is(h, v) => h,
            _ => self.values.intern(v),
        }
    }

    /// One entry of the current row, from interned keys.
    pub fn entry_keys(&mut self, k: i32, v: Option<i32>) {
        self.keys.push_key(k);
        match v {
            Some(v) => self.values.push_key(v),
            None => self.values.push_null(),
        }
    }

    /// One entry of the current row.
    pub fn entry(&mut self, k: &str, v: Option<&str>) {
        self.keys.push(k);
        self.values.push_option(v);
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.offsets.push(self.keys.len() as i32);
    }

    /// Rows ended so far.
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Ends a row holding the same entries as the previous resource row:
    /// `entries` pairs of interned keys.
    pub fn row_of(&mut self, entries: &[(i32, Option<i32>)]) {
        for &(k, v) in entries {
            self.entry_keys(k, v);
        }
        self.end_row();
    }

    pub fn finish(mut self) -> ArrayRef {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let entries = StructArray::new(
            entries_fields(),
            vec![self.keys.finish(), self.values.finish()],
            None,
        );
        let field = Arc::new(Field::new("entries", entries_struct(), false));
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        Arc::new(
            MapArray::try_new(field, offsets, entries, None, false)
                .expect("offsets and entries agree by construction"),
        )
    }
}

/// The key type of a dictionary column (for tests).
#[cfg(test)]
pub(crate) fn key_type(a: &ArrayRef) -> DataType {
    match a.data_type() {
        DataType::Dictionary(k, _) => k.as_ref().clone(),
        t => panic!("{t} is not a dictionary"),
    }
}

/// Row `r` of a map as `key=value` texts, what SQL sees (for tests).
#[cfg(test)]
pub(crate) fn row_texts(m: &MapArray, r: usize) -> Vec<String> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::compute::cast;
    let e = m.value(r);
    let keys = cast(e.column(0), &DataType::Utf8).unwrap();
    let vals = cast(e.column(1), &DataType::Utf8).unwrap();
    let (keys, vals) = (keys.as_string::<i32>(), vals.as_string::<i32>());
    (0..e.len())
        .map(|i| {
            format!(
                "{}={:?}",
                keys.value(i),
                vals.is_valid(i).then(|| vals.value(i))
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;

    #[test]
    fn interning_dedups_and_keeps_order() {
        let mut i = Interner::default();
        let a = i.intern("checkout");
        let b = i.intern("cart");
        assert_eq!(i.intern("checkout"), a);
        assert_ne!(a, b);
        assert_eq!(i.get(b), "cart");
        for n in 0..10_000 {
            i.intern(&format!("v{n}"));
        }
        assert_eq!(i.intern("cart"), b);
        assert_eq!(i.intern("v9999"), 10_001);
    }

    #[test]
    fn nulls_and_keys_round_trip() {
        let mut d = DictBuilder::default();
        d.push("a");
        let k = d.intern("b");
        d.push_key(k);
        d.push_null();
        d.push("a");
        let arr = d.finish();
        let dict = arr.as_dictionary::<Int32Type>();
        let s: Vec<Option<&str>> = dict
            .downcast_dict::<StringArray>()
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(s, vec![Some("a"), Some("b"), None, Some("a")]);
        assert_eq!(dict.values().len(), 2);
        let only_nulls = {
            let mut d = DictBuilder::default();
            d.push_null();
            d.finish()
        };
        assert_eq!(only_nulls.null_count(), 1);
    }

    #[test]
    fn maps_have_the_declared_type() {
        let mut m = MapBuilder::default();
        m.entry("k", Some("v"));
        m.entry("n", None);
        m.end_row();
        m.end_row();
        let arr = m.finish();
        assert_eq!(arr.data_type(), &map_type());
        let map = arr.as_map();
        assert_eq!(map.value_length(0), 2);
        assert_eq!(map.value_length(1), 0);
    }
}
