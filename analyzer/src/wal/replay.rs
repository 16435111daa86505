//! Reading the log back at start: every intact record of every segment,
//! in order; a torn tail (a record cut short or failing its checksum) is
//! reported, cut off the file, and never replayed.

use super::frame::{decode, Record, Stop};
use super::log::segments;
use std::io;
use std::path::Path;

/// What a replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub segments: usize,
    pub records: u64,
    /// Torn tails cut (at most one per segment).
    pub torn: u64,
    /// Bytes cut off with them.
    pub bytes_cut: u64,
    pub last_gen: Option<u64>,
}

/// Calls `each(gen, record)` for every intact record, oldest first, and
/// cuts torn tails off the files.
pub fn replay(dir: &Path, each: impl FnMut(u64, &Record<'_>)) -> io::Result<Replayed> {
    walk(dir, each, true)
}

/// The same without changing any file: for reading the log of a server
/// that may be running (its tail may be half-written right now).
pub fn read_only(dir: &Path, each: impl FnMut(u64, &Record<'_>)) -> io::Result<Replayed> {
    walk(dir, each, false)
}

fn walk(dir: &Path, mut each: impl FnMut(u64, &Record<'_>), cut: bool) -> io::Result<Replayed> {
    let mut out = Replayed::default();
    for (gen, path) in segments(dir)? {
        out.segments += 1;
        out.last_gen = Some(gen);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            // Deleted by a running server since it was listed.
            Err(e) if !cut && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut pos = 0;
        let stop = loop {
            match decode(&data[pos..]) {
                Ok(Some((rec, n))) => {
                    each(gen, &rec);
                    out.records += 1;
                    pos += n;
                }
                Ok(None) => break None,
                Err(stop) => break Some(stop),
            }
        };
        if let Some(stop) = stop.filter(|_| cut) {
            let cut = (data.len() - pos) as u64;
            out.torn += 1;
            out.bytes_cut += cut;
            let why = match stop {
                Stop::Truncated => "cut short",
                Stop::Checksum => "checksum mismatch",
                Stop::Garbage => "not a record",
            };
            tracing::warn!(segment = %path.display(), offset = pos, bytes_cut = cut, why,
                "write-ahead log: torn record cut; every record before it is recovered");
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(pos as u64)?;
            f.sync_all()?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::frame::encode;
    use super::*;
    use graylens_collector::Signal;

    #[test]
    fn a_torn_last_record_is_cut_and_the_rest_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        for i in 0..3 {
            encode(
                &mut buf,
                Signal::Traces,
                i,
                format!("payload {i}").as_bytes(),
            );
        }
        let whole = buf.len();
        encode(&mut buf, Signal::Logs, 9, &[7; 100]);
        buf.truncate(whole + 40); // the crash: half of the fourth record
        std::fs::write(super::super::log::path(dir.path(), 5), &buf).unwrap();
        let mut got = Vec::new();
        let r = replay(dir.path(), |g, rec| {
            got.push((g, rec.received_ns, rec.payload.to_vec()))
        })
        .unwrap();
        assert_eq!(r.records, 3);
        assert_eq!(r.torn, 1);
        assert_eq!(r.bytes_cut, 40);
        assert_eq!(got[2], (5, 2, b"payload 2".to_vec()));
        // The file was cut: a second replay finds it clean.
        let again = replay(dir.path(), |_, _| {}).unwrap();
        assert_eq!((again.records, again.torn), (3, 0));
        assert_eq!(
            std::fs::metadata(super::super::log::path(dir.path(), 5))
                .unwrap()
                .len(),
            whole as u64
        );
    }
}
