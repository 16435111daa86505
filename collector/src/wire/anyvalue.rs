//! `KeyValue` and `AnyValue` (opentelemetry/proto/common/v1) read in place.
//! Strings stay borrowed; arrays and key-value lists are checked whole (as
//! prost would decode them) but only rendered when a record is stored.

use super::reader::{Fields, Result, WireError, MAX_DEPTH};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValueList};
use prost::Message;
use std::borrow::Cow;

/// An `AnyValue`, borrowed. `Empty` is an `AnyValue` message with no value set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnyRef<'a> {
    Empty,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// The encoded `ArrayValue` message.
    Array(&'a [u8]),
    /// The encoded `KeyValueList` message.
    KvList(&'a [u8]),
    Strindex(i32),
}

/// A `KeyValue`; `value` is `None` when the field is absent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kv<'a> {
    pub key: &'a str,
    pub value: Option<AnyRef<'a>>,
}

/// Reads a `KeyValue` message.
pub fn key_value(buf: &[u8], depth: u32) -> Result<Kv<'_>> {
    let mut f = Fields::new(buf);
    let mut kv = Kv {
        key: "",
        value: None,
    };
    while let Some((n, v)) = f.next_field()? {
        match n {
            1 => kv.key = v.str("KeyValue.key")?,
            2 => kv.value = Some(any_value(v.bytes("KeyValue.value")?, depth + 1)?),
            3 => {
                v.varint("KeyValue.key_strindex")?;
            }
            _ => {}
        }
    }
    Ok(kv)
}

/// Reads an `AnyValue` message; the last value field set wins (oneof).
pub fn any_value(buf: &[u8], depth: u32) -> Result<AnyRef<'_>> {
    if depth > MAX_DEPTH {
        return Err(WireError("recursion limit reached".into()));
    }
    let mut f = Fields::new(buf);
    let mut out = AnyRef::Empty;
    while let Some((n, v)) = f.next_field()? {
        out = match n {
            1 => AnyRef::Str(v.str("AnyValue.string_value")?),
            2 => AnyRef::Bool(v.varint("AnyValue.bool_value")? != 0),
            3 => AnyRef::Int(v.varint("AnyValue.int_value")? as i64),
            4 => AnyRef::Double(v.double("AnyValue.double_value")?),
            5 => {
                let b = v.bytes("AnyValue.array_value")?;
                check_list(b, depth + 1, false)?;
                AnyRef::Array(b)
            }
            6 => {
                let b = v.bytes("AnyValue.kvlist_value")?;
                check_list(b, depth + 1, true)?;
                AnyRef::KvList(b)
            }
            7 => AnyRef::Bytes(v.bytes("AnyValue.bytes_value")?),
            8 => AnyRef::Strindex(v.varint("AnyValue.string_value_strindex")? as i32),
            _ => continue,
        };
    }
    Ok(out)
}

/// Checks an `ArrayValue` (values: `AnyValue`) or `KeyValueList` (values:
/// `KeyValue`) the way decoding it would.
fn check_list(buf: &[u8], depth: u32, kv: bool) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(WireError("recursion limit reached".into()));
    }
    let mut f = Fields::new(buf);
    while let Some((n, v)) = f.next_field()? {
        if n == 1 {
            let b = v.bytes("values")?;
            if kv {
                key_value(b, depth + 1)?;
            } else {
                any_value(b, depth + 1)?;
            }
        }
    }
    Ok(())
}

impl<'a> AnyRef<'a> {
    /// The string of a string value.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            AnyRef::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as text, as `attribution::any_value_to_string` renders it:
    /// strings as they are, numbers and booleans in their usual form, bytes
    /// as lowercase hex, arrays and maps as JSON.
    pub fn text(&self) -> Cow<'a, str> {
        match *self {
            AnyRef::Str(s) => Cow::Borrowed(s),
            AnyRef::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            AnyRef::Int(i) => Cow::Owned(i.to_string()),
            AnyRef::Empty => Cow::Borrowed("null"),
            other => Cow::Owned(crate::attribution::any_value_to_string(&other.to_prost())),
        }
    }

    /// The value as prost's type (for the rare rendering of doubles, bytes,
    /// arrays and maps through the one JSON renderer).
    pub fn to_prost(&self) -> AnyValue {
        use any_value::Value as V;
        let value = match *self {
            AnyRef::Empty => None,
            AnyRef::Str(s) => Some(V::StringValue(s.to_string())),
            AnyRef::Bool(b) => Some(V::BoolValue(b)),
            AnyRef::Int(i) => Some(V::IntValue(i)),
            AnyRef::Double(d) => Some(V::DoubleValue(d)),
            AnyRef::Bytes(b) => Some(V::BytesValue(b.to_vec())),
            // Checked when read, so decoding cannot fail here.
            AnyRef::Array(b) => Some(V::ArrayValue(ArrayValue::decode(b).unwrap_or_default())),
            AnyRef::KvList(b) => Some(V::KvlistValue(KeyValueList::decode(b).unwrap_or_default())),
            AnyRef::Strindex(i) => Some(V::StringValueStrindex(i)),
        };
        AnyValue { value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::any_value_to_string;
    use opentelemetry_proto::tonic::common::v1::KeyValue;

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn every_value_renders_as_the_prost_path_does() {
        use any_value::Value as V;
        let nested = V::KvlistValue(KeyValueList {
            values: vec![
                kv("a", V::IntValue(1)),
                kv(
                    "b",
                    V::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(V::DoubleValue(0.25)),
                        }],
                    }),
                ),
            ],
        });
        for v in [
            V::StringValue("plain".into()),
            V::BoolValue(true),
            V::IntValue(-42),
            V::DoubleValue(1e21),
            V::DoubleValue(f64::NAN),
            V::BytesValue(vec![0xab, 0x01]),
            nested,
        ] {
            let p = kv("k", v);
            let bytes = p.encode_to_vec();
            let got = key_value(&bytes, 0).unwrap();
            assert_eq!(got.key, "k");
            let want = any_value_to_string(p.value.as_ref().unwrap());
            assert_eq!(got.value.unwrap().text(), want);
        }
        let empty = KeyValue {
            key: "e".into(),
            value: Some(AnyValue { value: None }),
            ..Default::default()
        };
        let empty_bytes = empty.encode_to_vec();
        let got = key_value(&empty_bytes, 0).unwrap();
        assert_eq!(
            got.value.unwrap().text(),
            any_value_to_string(empty.value.as_ref().unwrap())
        );
        let none = KeyValue {
            key: "n".into(),
            ..Default::default()
        };
        assert_eq!(key_value(&none.encode_to_vec(), 0).unwrap().value, None);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        use any_value::Value as V;
        let mut v = AnyValue {
            value: Some(V::IntValue(1)),
        };
        for _ in 0..200 {
            v = AnyValue {
                value: Some(V::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let mut buf = Vec::new();
        v.encode(&mut buf).unwrap();
        assert!(any_value(&buf, 0).is_err());
        // prost refuses it too.
        assert!(AnyValue::decode(&buf[..]).is_err());
    }
}
