//! Small integer columns in fewer bytes.
//!
//! The tables' integer columns mostly hold small numbers: span kind and
//! status code (0–5), log severity (0–24), HTTP status codes (100–599), span
//! durations in nanoseconds (`Int64`, mostly below the 2.1 s that `Int32`
//! holds). The merge of small hot batches (`convert::merge`) stores such a
//! column as the narrowest of `Int8`, `Int16`, `Int32` and `Int64` that holds
//! every value of the merged batch ([`merge`]). Readers of hot batches take
//! any of them through [`Ints`]; `convert::to_table` casts them to the
//! table's type where SQL or Parquet reads.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::{cast, concat, max, min};
use datafusion::arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type, Int8Type};
use datafusion::arrow::error::ArrowError;

/// The values of an `Int8`, `Int16`, `Int32` or `Int64` column (a null
/// row's value is unspecified).
#[derive(Clone, Copy, Debug)]
pub enum Ints<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl<'a> Ints<'a> {
    pub fn of(a: &'a dyn Array) -> Option<Self> {
        Some(match a.data_type() {
            DataType::Int8 => Ints::I8(a.as_primitive::<Int8Type>().values()),
            DataType::Int16 => Ints::I16(a.as_primitive::<Int16Type>().values()),
            DataType::Int32 => Ints::I32(a.as_primitive::<Int32Type>().values()),
            DataType::Int64 => Ints::I64(a.as_primitive::<Int64Type>().values()),
            _ => return None,
        })
    }

    #[inline(always)]
    pub fn value(&self, r: usize) -> i64 {
        match *self {
            Ints::I8(v) => v[r] as i64,
            Ints::I16(v) => v[r] as i64,
            Ints::I32(v) => v[r] as i64,
            Ints::I64(v) => v[r],
        }
    }
}

/// Whether a column of type `t` is merged by [`merge`].
pub(super) fn is_int(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
    )
}

/// The parts (each of one of the four types) one after the other, as the
/// narrowest of them that holds every value.
pub(super) fn merge(parts: &[&dyn Array]) -> Result<ArrayRef, ArrowError> {
    let wide = parts
        .iter()
        .map(|a| cast(*a, &DataType::Int64))
        .collect::<Result<Vec<_>, _>>()?;
    let all = concat(&wide.iter().map(|a| a.as_ref()).collect::<Vec<_>>())?;
    let values = all.as_primitive::<Int64Type>();
    let (Some(lo), Some(hi)) = (min(values), max(values)) else {
        // No values (nulls only, or no rows).
        return cast(&all, &DataType::Int8);
    };
    let fits = |l: i64, h: i64| l <= lo && hi <= h;
    if fits(i8::MIN.into(), i8::MAX.into()) {
        cast(&all, &DataType::Int8)
    } else if fits(i16::MIN.into(), i16::MAX.into()) {
        cast(&all, &DataType::Int16)
    } else if fits(i32::MIN.into(), i32::MAX.into()) {
        cast(&all, &DataType::Int32)
    } else {
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int16Array, Int32Array, Int64Array};
    use std::sync::Arc;

    fn ints(v: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(v.to_vec()))
    }

    #[test]
    fn columns_take_the_fewest_bytes_their_values_allow_and_keep_them() {
        for (values, want) in [
            (
                vec![Some(0), None, Some(5), Some(-128), Some(127)],
                DataType::Int8,
            ),
            (vec![Some(200), Some(503), None], DataType::Int16),
            (vec![Some(-32_768), Some(32_767)], DataType::Int16),
            (vec![Some(40_000), Some(1)], DataType::Int32),
            (
                vec![Some(2_147_483_647), Some(-2_147_483_648)],
                DataType::Int32,
            ),
            (vec![None, None], DataType::Int8),
            (vec![Some(1 << 40), Some(-1)], DataType::Int64),
        ] {
            let (a, b) = values.split_at(values.len() / 2);
            let parts = [ints(a), ints(b)];
            let merged = merge(&parts.iter().map(|a| a.as_ref()).collect::<Vec<_>>()).unwrap();
            assert_eq!(merged.data_type(), &want, "{values:?}");
            let read = Ints::of(merged.as_ref()).unwrap();
            for (r, v) in values.iter().enumerate() {
                assert_eq!(merged.is_null(r), v.is_none());
                if let Some(v) = v {
                    assert_eq!(read.value(r), *v);
                }
            }
            // Merged again with a part of another type, and as the table's.
            let seven: ArrayRef = Arc::new(Int32Array::from(vec![7]));
            let again = merge(&[merged.as_ref(), seven.as_ref()]).unwrap();
            let table = cast(&again, &DataType::Int64).unwrap();
            let expected: Vec<Option<i64>> = values.iter().copied().chain([Some(7)]).collect();
            assert_eq!(
                table.as_primitive::<Int64Type>(),
                &Int64Array::from(expected)
            );
        }
        let sixteen: ArrayRef = Arc::new(Int16Array::from(vec![300]));
        assert!(matches!(Ints::of(sixteen.as_ref()), Some(Ints::I16(_))));
        assert!(Ints::of(Arc::new(Int32Array::from(vec![1])).as_ref()).is_some());
        let float: ArrayRef = Arc::new(Float64Array::from(vec![1.0]));
        assert!(Ints::of(float.as_ref()).is_none());
    }
}
