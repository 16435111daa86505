//! One record of the write-ahead log on disk:
//!
//! ```text
//!  u32 LE  body length
//!  u32 LE  CRC-32 of the body
//!  body:   u8 format version (1) │ u8 signal │ i64 LE received_ns │ OTLP request, protobuf
//! ```
//!
//! A crash can leave the last record cut short or half-written; its
//! length or checksum then fails and the record is cut, never replayed.

use graylens_collector::Signal;

/// Bytes before the payload.
const HEADER: usize = 8 + 1 + 1 + 8;
const VERSION: u8 = 1;
/// Largest body accepted when reading: anything longer is garbage.
const MAX_BODY: usize = 1 << 31;

/// A record read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    pub signal: Signal,
    pub received_ns: i64,
    pub payload: &'a [u8],
}

fn signal_code(s: Signal) -> u8 {
    match s {
        Signal::Traces => 1,
        Signal::Metrics => 2,
        Signal::Logs => 3,
    }
}

fn signal_of(code: u8) -> Option<Signal> {
    match code {
        1 => Some(Signal::Traces),
        2 => Some(Signal::Metrics),
        3 => Some(Signal::Logs),
        _ => None,
    }
}

/// Appends the frame of one record to `out`.
pub fn encode(out: &mut Vec<u8>, signal: Signal, received_ns: i64, payload: &[u8]) {
    let body_len = HEADER - 8 + payload.len();
    let start = out.len();
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(VERSION);
    out.push(signal_code(signal));
    out.extend_from_slice(&received_ns.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why reading stopped before the end of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Fewer bytes left than a header or the length says.
    Truncated,
    /// The checksum does not match.
    Checksum,
    /// A header that cannot be ours (length, version, signal).
    Garbage,
}

/// Reads the record at the start of `buf`: `Ok(Some((record, len)))`,
/// `Ok(None)` at the end, `Err(stop)` where the log is torn.
pub fn decode(buf: &[u8]) -> Result<Option<(Record<'_>, usize)>, Stop> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.len() < HEADER {
        return Err(Stop::Truncated);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if !(HEADER - 8..=MAX_BODY).contains(&len) {
        return Err(Stop::Garbage);
    }
    if buf.len() < 8 + len {
        return Err(Stop::Truncated);
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let body = &buf[8..8 + len];
    if crc32fast::hash(body) != crc {
        return Err(Stop::Checksum);
    }
    let (Some(signal), VERSION) = (signal_of(body[1]), body[0]) else {
        return Err(Stop::Garbage);
    };
    let received_ns = i64::from_le_bytes(body[2..10].try_into().expect("8 bytes"));
    Ok(Some((
        Record {
            signal,
            received_ns,
            payload: &body[10..],
        },
        8 + len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_every_tear_is_caught() {
        let mut buf = Vec::new();
        encode(&mut buf, Signal::Traces, 42, b"hello");
        encode(&mut buf, Signal::Logs, -1, b"");
        let (r, n) = decode(&buf).unwrap().unwrap();
        assert_eq!(
            (r.signal, r.received_ns, r.payload),
            (Signal::Traces, 42, &b"hello"[..])
        );
        let (r2, n2) = decode(&buf[n..]).unwrap().unwrap();
        assert_eq!((r2.signal, r2.payload), (Signal::Logs, &b""[..]));
        assert_eq!(decode(&buf[n + n2..]).unwrap(), None);
        // Every cut inside the first record is a tear, never a record.
        for cut in 1..n {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        // Every flipped bit is caught.
        for i in 0..n {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(
                !matches!(decode(&bad), Ok(Some((ref r, _))) if r.payload == b"hello"),
                "flip at {i}"
            );
        }
        // A zero-filled tail (preallocated, never written) is a tear too.
        assert!(decode(&[0u8; 64]).is_err());
    }
}
