//! Dictionary keys as narrow as their dictionary allows.
//!
//! Converters build every dictionary column with `Int32` keys (4 bytes per
//! row, or per attribute entry). A merged hot batch (about 8,192 rows of one
//! service, `convert::merge`) mostly holds a few distinct values per column,
//! so the merge gives each dictionary the narrowest keys its values allow
//! ([`narrow`]): `UInt8` up to 256 values, `UInt16` up to 65,536, `Int32`
//! beyond. At ten attributes per span that is 60 of about 190 bytes per
//! span. Each column (and each map's keys and values) is narrowed on its
//! own, so hot batches of one table may differ in key types: readers take
//! any of the three through [`Keys`], and `convert::to_table` casts them to
//! the table's `Int32` where SQL or Parquet reads.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, DictionaryArray, PrimitiveArray};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{
    ArrowDictionaryKeyType, DataType, Int32Type, UInt16Type, UInt8Type,
};
use datafusion::arrow::error::ArrowError;
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
enum Width<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    I32(&'a [i32]),
}

/// The keys of a dictionary column with `UInt8`, `UInt16` or `Int32` keys.
#[derive(Clone, Copy, Debug)]
pub struct Keys<'a> {
    width: Width<'a>,
    nulls: Option<&'a NullBuffer>,
}

/// Whether `t` is a key type the hot store writes.
pub fn is_key_type(t: &DataType) -> bool {
    matches!(t, DataType::UInt8 | DataType::UInt16 | DataType::Int32)
}

impl<'a> Keys<'a> {
    /// The keys and the values of `a`, a dictionary with keys of a
    /// [`is_key_type`] type; `None` for anything else.
    pub fn of(a: &'a dyn Array) -> Option<(Keys<'a>, &'a ArrayRef)> {
        fn parts<K: ArrowDictionaryKeyType>(
            a: &dyn Array,
        ) -> (&[K::Native], Option<&NullBuffer>, &ArrayRef) {
            let d = a.as_dictionary::<K>();
            (d.keys().values(), d.keys().nulls(), d.values())
        }
        let DataType::Dictionary(k, _) = a.data_type() else {
            return None;
        };
        let (width, nulls, values) = match **k {
            DataType::UInt8 => {
                let (k, n, v) = parts::<UInt8Type>(a);
                (Width::U8(k), n, v)
            }
            DataType::UInt16 => {
                let (k, n, v) = parts::<UInt16Type>(a);
                (Width::U16(k), n, v)
            }
            DataType::Int32 => {
                let (k, n, v) = parts::<Int32Type>(a);
                (Width::I32(k), n, v)
            }
            _ => return None,
        };
        Some((Keys { width, nulls }, values))
    }

    pub fn len(&self) -> usize {
        match self.width {
            Width::U8(k) => k.len(),
            Width::U16(k) => k.len(),
            Width::I32(k) => k.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `r`'s key, whether or not the row is null (a null row's key is
    /// any value in range).
    #[inline(always)]
    pub fn key(&self, r: usize) -> usize {
        match self.width {
            Width::U8(k) => k[r] as usize,
            Width::U16(k) => k[r] as usize,
            Width::I32(k) => k[r] as usize,
        }
    }

    /// Row `r`'s key, `None` when the row is null.
    #[inline(always)]
    pub fn get(&self, r: usize) -> Option<usize> {
        if self.nulls.is_some_and(|n| n.is_null(r)) {
            return None;
        }
        Some(self.key(r))
    }

    /// Every row's key (null rows included), in order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + 'a {
        let keys = *self;
        (0..keys.len()).map(move |r| keys.key(r))
    }
}

/// The dictionary column of `keys` (each in `0..values.len()`) into
/// `values`, with the narrowest key type that addresses every value.
pub fn narrow(
    keys: Vec<i32>,
    nulls: Option<NullBuffer>,
    values: ArrayRef,
) -> Result<ArrayRef, ArrowError> {
    fn with<K: ArrowDictionaryKeyType>(
        keys: Vec<K::Native>,
        nulls: Option<NullBuffer>,
        values: ArrayRef,
    ) -> Result<ArrayRef, ArrowError> {
        let keys = PrimitiveArray::<K>::new(ScalarBuffer::from(keys), nulls);
        Ok(Arc::new(DictionaryArray::<K>::try_new(keys, values)?))
    }
    let n = values.len();
    if n <= 1 << 8 {
        let keys: Vec<u8> = keys.into_iter().map(|k| k as u8).collect();
        with::<UInt8Type>(keys, nulls, values)
    } else if n <= 1 << 16 {
        let keys: Vec<u16> = keys.into_iter().map(|k| k as u16).collect();
        with::<UInt16Type>(keys, nulls, values)
    } else {
        with::<Int32Type>(keys, nulls, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::compute::cast;

    fn values(n: usize) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("v{i}")),
        ))
    }

    #[test]
    fn keys_take_the_fewest_bytes_their_values_allow() {
        for (n, want) in [
            (1, DataType::UInt8),
            (256, DataType::UInt8),
            (257, DataType::UInt16),
            (65_536, DataType::UInt16),
            (65_537, DataType::Int32),
        ] {
            let keys: Vec<i32> = (0..n as i32).rev().collect();
            let nulls = NullBuffer::from_iter((0..n).map(|i| i % 5 != 3));
            let a = narrow(keys.clone(), Some(nulls), values(n)).unwrap();
            let DataType::Dictionary(k, _) = a.data_type() else {
                panic!("a dictionary")
            };
            assert_eq!(**k, want, "{n} values");
            let (read, _) = Keys::of(a.as_ref()).unwrap();
            assert_eq!(read.len(), n);
            for (r, &k) in keys.iter().enumerate() {
                assert_eq!(read.key(r), k as usize);
                assert_eq!(read.get(r), (r % 5 != 3).then_some(k as usize));
            }
            assert!(read.iter().eq(keys.iter().map(|&k| k as usize)));
            // The table's type, with the same text per row.
            let wide = cast(&a, &crate::convert::dict::dict_type()).unwrap();
            let (text, wide) = (
                cast(&a, &DataType::Utf8).unwrap(),
                cast(&wide, &DataType::Utf8).unwrap(),
            );
            assert_eq!(text.as_string::<i32>(), wide.as_string::<i32>());
        }
    }

    #[test]
    fn other_arrays_are_not_keys() {
        assert!(Keys::of(values(3).as_ref()).is_none());
        let a = cast(
            &values(3),
            &DataType::Dictionary(Box::new(DataType::Int64), Box::new(DataType::Utf8)),
        )
        .unwrap();
        assert!(Keys::of(a.as_ref()).is_none());
    }
}
