//! Span ids in memory as their bytes, in tables as hex text.
//!
//! SQL and Parquet see `trace_id`, `span_id` and `parent_span_id` as
//! lowercase hex (README "Tables"). In the hot store a span batch holds
//! them as `FixedSizeBinary(16)` and `(8)`: 32 bytes per span instead of 72
//! (hex text with its offsets), and no hex encoding on the ingest path.
//! [`hex`] renders them as text where a table is read
//! ([`super::render::to_table`]). Comparisons read hot batches as they are:
//! of the ids they only test whether `parent_span_id` is null.

use datafusion::arrow::array::{Array, ArrayRef, FixedSizeBinaryArray, StringArray};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::error::ArrowError;
use std::sync::Arc;

/// A column of ids of `W` bytes; an empty id is null.
#[derive(Default)]
pub(crate) struct FixedIdCol<const W: usize> {
    bytes: Vec<u8>,
    valid: Option<Vec<bool>>,
}

impl<const W: usize> FixedIdCol<W> {
    fn rows(&self) -> usize {
        self.bytes.len() / W
    }

    /// An id of exactly `W` bytes (the converter checked its length; a
    /// wrong one would shift every later row, so it is checked again).
    pub fn push(&mut self, id: &[u8]) {
        assert_eq!(id.len(), W, "an id of another length");
        self.bytes.extend_from_slice(id);
        if let Some(v) = &mut self.valid {
            v.push(true);
        }
    }

    /// A null for an empty id, else the id.
    pub fn push_optional(&mut self, id: &[u8]) {
        if id.is_empty() {
            let n = self.rows();
            self.valid.get_or_insert_with(|| vec![true; n]).push(false);
            self.bytes.resize(self.bytes.len() + W, 0);
        } else {
            self.push(id)
        }
    }

    pub fn finish(self) -> ArrayRef {
        let nulls = self.valid.map(Into::into);
        Arc::new(
            FixedSizeBinaryArray::try_new(W as i32, self.bytes.into(), nulls)
                .expect("whole ids by construction"),
        )
    }
}

/// Lowercase hex of each id, nulls kept.
pub(super) fn hex(ids: &FixedSizeBinaryArray) -> Result<ArrayRef, ArrowError> {
    let width = ids.value_length() as usize;
    // A slice's `value_data` starts at its first row.
    let data = &ids.value_data()[..ids.len() * width];
    if i32::try_from(data.len() * 2).is_err() {
        return Err(ArrowError::InvalidArgumentError(
            "too many ids in one batch for i32 offsets".into(),
        ));
    }
    let mut text = vec![0u8; data.len() * 2];
    ::hex::encode_to_slice(data, &mut text).expect("sized above");
    let offsets = OffsetBuffer::new(ScalarBuffer::from_iter(
        (0..=ids.len()).map(|i| (i * 2 * width) as i32),
    ));
    // `StringArray::new` checks the text is UTF-8 (hex digits are).
    Ok(Arc::new(StringArray::new(
        offsets,
        text.into(),
        ids.nulls().cloned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;

    #[test]
    fn ids_become_lowercase_hex_with_their_nulls_also_when_sliced() {
        let mut c = FixedIdCol::<8>::default();
        c.push(&[0xab; 8]);
        c.push_optional(&[]);
        c.push(&[0, 1, 2, 3, 4, 5, 6, 0xff]);
        let ids = c.finish();
        let text = |ids: &dyn Array| -> Vec<Option<String>> {
            hex(ids.as_fixed_size_binary())
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect()
        };
        assert_eq!(
            text(&ids),
            vec![
                Some("abababababababab".into()),
                None,
                Some("00010203040506ff".into())
            ]
        );
        assert_eq!(
            text(&ids.slice(1, 2)),
            vec![None, Some("00010203040506ff".into())]
        );
    }
}
