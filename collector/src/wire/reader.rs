//! The protobuf wire format, read in place: fields of a message as borrowed
//! slices and numbers, with the checks prost makes (truncation, varint
//! length, wire type of known fields, UTF-8 of strings, nesting depth).

use std::fmt;

/// Why bytes are not a valid message; the text names the field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

pub type Result<T> = std::result::Result<T, WireError>;

/// prost's recursion limit: deeper messages are refused, never walked.
pub const MAX_DEPTH: u32 = 100;

/// One field's value, borrowed from the buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    fn wire_name(&self) -> &'static str {
        match self {
            Value::Varint(_) => "varint",
            Value::Fixed64(_) => "64-bit",
            Value::Len(_) => "length-delimited",
            Value::Fixed32(_) => "32-bit",
        }
    }

    /// The bytes of a length-delimited field (`bytes`, a message, a string).
    pub fn bytes(self, what: &str) -> Result<&'a [u8]> {
        match self {
            Value::Len(b) => Ok(b),
            other => Err(mismatch(what, other)),
        }
    }

    /// A `string` field, checked as UTF-8 like prost does.
    pub fn str(self, what: &str) -> Result<&'a str> {
        let b = self.bytes(what)?;
        simdutf8::basic::from_utf8(b)
            .map_err(|_| WireError(format!("{what}: invalid UTF-8 in a string field")))
    }

    /// `int32`, `uint32`, `int64`, `uint64`, `bool`, enums.
    pub fn varint(self, what: &str) -> Result<u64> {
        match self {
            Value::Varint(v) => Ok(v),
            other => Err(mismatch(what, other)),
        }
    }

    pub fn fixed64(self, what: &str) -> Result<u64> {
        match self {
            Value::Fixed64(v) => Ok(v),
            other => Err(mismatch(what, other)),
        }
    }

    pub fn fixed32(self, what: &str) -> Result<u32> {
        match self {
            Value::Fixed32(v) => Ok(v),
            other => Err(mismatch(what, other)),
        }
    }

    /// `double`.
    pub fn double(self, what: &str) -> Result<f64> {
        self.fixed64(what).map(f64::from_bits)
    }
}

fn mismatch(what: &str, got: Value<'_>) -> WireError {
    WireError(format!("{what}: unexpected wire type {}", got.wire_name()))
}

/// Iterates the fields of one message.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut out = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(WireError("truncated varint".into()));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(WireError("varint longer than 64 bits".into()));
            }
            out |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(out);
            }
        }
        Err(WireError("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| WireError("truncated field: buffer underflow".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next `(field number, value)`, or `None` at the end. Groups
    /// (deprecated wire types 3 and 4) are skipped whole, as prost does.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>> {
        loop {
            if self.pos >= self.buf.len() {
                return Ok(None);
            }
            let key = self.varint()?;
            let field = key >> 3;
            if field == 0 || field > u64::from(u32::MAX >> 3) {
                return Err(WireError(format!("invalid field number {field}")));
            }
            let v = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => Value::Fixed64(u64::from_le_bytes(
                    self.take(8)?.try_into().expect("8 bytes"),
                )),
                2 => {
                    let n = self.varint()?;
                    let n = usize::try_from(n)
                        .map_err(|_| WireError("length does not fit in memory".into()))?;
                    Value::Len(self.take(n)?)
                }
                3 => {
                    self.skip_group(field, 0)?;
                    continue;
                }
                5 => Value::Fixed32(u32::from_le_bytes(
                    self.take(4)?.try_into().expect("4 bytes"),
                )),
                w => return Err(WireError(format!("invalid wire type {w}"))),
            };
            return Ok(Some((field as u32, v)));
        }
    }

    fn skip_group(&mut self, field: u64, depth: u32) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(WireError("recursion limit reached".into()));
        }
        loop {
            if self.pos >= self.buf.len() {
                return Err(WireError("unterminated group".into()));
            }
            let key = self.varint()?;
            match key & 7 {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    let n = self.varint()?;
                    self.take(usize::try_from(n).unwrap_or(usize::MAX))?;
                }
                3 => self.skip_group(key >> 3, depth + 1)?,
                4 if key >> 3 == field => return Ok(()),
                4 => return Err(WireError("unexpected end group tag".into())),
                5 => {
                    self.take(4)?;
                }
                w => return Err(WireError(format!("invalid wire type {w}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn reads_what_prost_writes() {
        use opentelemetry_proto::tonic::trace::v1::Span;
        let s = Span {
            trace_id: vec![1; 16],
            name: "héllo".into(),
            kind: 2,
            start_time_unix_nano: u64::MAX - 3,
            flags: 0x0102_0304,
            ..Default::default()
        };
        let bytes = s.encode_to_vec();
        let mut f = Fields::new(&bytes);
        let mut seen = Vec::new();
        while let Some((n, v)) = f.next_field().unwrap() {
            seen.push(n);
            match n {
                1 => assert_eq!(v.bytes("trace_id").unwrap(), &[1; 16][..]),
                5 => assert_eq!(v.str("name").unwrap(), "héllo"),
                6 => assert_eq!(v.varint("kind").unwrap(), 2),
                7 => assert_eq!(v.fixed64("start").unwrap(), u64::MAX - 3),
                16 => assert_eq!(v.fixed32("flags").unwrap(), 0x0102_0304),
                _ => panic!("unexpected field {n}"),
            }
        }
        assert_eq!(seen, vec![1, 5, 6, 7, 16]);
    }

    #[test]
    fn refuses_what_prost_refuses() {
        for bad in [
            &[0x0a, 0x05, 1, 2][..], // length past the end
            &[0x08, 0xff, 0xff][..], // truncated varint
            &[0x0f][..],             // wire type 7
            &[0x00, 0x00][..],       // field 0
            &[0x08; 1][..],          // key without value
            &[0x0b, 0x08, 0x01][..], // unterminated group
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ][..],
        ] {
            let mut f = Fields::new(bad);
            let mut r = Ok(None);
            for _ in 0..4 {
                r = f.next_field();
                if !matches!(r, Ok(Some(_))) {
                    break;
                }
            }
            assert!(r.is_err(), "{bad:?} accepted");
        }
        assert!(Value::Len(&[0xff, 0xfe]).str("x").is_err());
        assert!(Value::Varint(1).bytes("x").is_err());
    }

    #[test]
    fn groups_are_skipped() {
        // field 3 start group, inner varint field 1 = 1, end group; then field 2 varint 7
        let b = [0x1b, 0x08, 0x01, 0x1c, 0x10, 0x07];
        let mut f = Fields::new(&b);
        assert_eq!(f.next_field().unwrap(), Some((2, Value::Varint(7))));
        assert_eq!(f.next_field().unwrap(), None);
    }
}
