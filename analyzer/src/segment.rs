//! Parquet segments: where they live and what their names say.
//!
//! ```text
//!  {table}/service={service}/{YYYY-MM-DD}/{HH}/{min_ns}_{max_ns}_{node}_{gen_lo}-{gen_hi}_{arrival_ms}.parquet
//! ```
//!
//! One file holds one service of one table; the date and hour are those of
//! its oldest row. The name carries what pruning, retention and recovery
//! need without opening the file: the time range of its rows, the node that
//! wrote it and the write-ahead-log generations it covers (so replay never
//! adds a row twice, and compaction can tell which files a merged one
//! replaces), and when it arrived (retention counts from arrival, not from
//! the timestamps clients send). Service names are percent-encoded.
//!
//! Files named `{min}_{max}_{seq}.parquet` under `{table}/{date}/{hour}/`
//! (graylens before the write-ahead log) are still read: any service,
//! generation 0, arrival = modification time.

use chrono::{DateTime, Utc};
use graylens_collector::Signal;

/// One Parquet segment of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Path relative to the storage root, with `/` separators.
    pub key: String,
    pub table: Signal,
    /// `None` for files written before segments were per service.
    pub service: Option<String>,
    pub min_ns: i64,
    pub max_ns: i64,
    pub node: String,
    /// Write-ahead-log generations whose rows this file holds.
    pub gen_lo: u64,
    pub gen_hi: u64,
    /// When the rows arrived (their generation was sealed for the flush),
    /// ms since the epoch; the same at every attempt of that flush.
    pub arrival_ms: i64,
    pub bytes: u64,
}

impl Segment {
    /// Whether this file may hold rows of `service`.
    pub fn may_hold(&self, service: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
    }

    /// Whether this file may hold rows in `[from, to)` (ns; `None` unbounded).
    pub fn overlaps(&self, from: Option<i64>, to: Option<i64>) -> bool {
        from.is_none_or(|f| self.max_ns >= f) && to.is_none_or(|t| self.min_ns < t)
    }

    /// Whether every row is inside `[from, to)`.
    pub fn within(&self, from: Option<i64>, to: Option<i64>) -> bool {
        from.is_none_or(|f| self.min_ns >= f) && to.is_none_or(|t| self.max_ns < t)
    }
}

/// The directory part of a key (table, service, date, hour).
fn dir(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Whether `a` holds every row of `b`: a merge of it by compaction (same
/// directory and node, `b`'s log generations within `a`'s, and more of them).
pub fn supersedes(a: &Segment, b: &Segment) -> bool {
    !a.node.is_empty()
        && a.node == b.node
        && (a.gen_lo, a.gen_hi) != (b.gen_lo, b.gen_hi)
        && a.gen_lo <= b.gen_lo
        && b.gen_hi <= a.gen_hi
        && dir(&a.key) == dir(&b.key)
}

/// The segments a reader should read: every row once, whether a merge
/// and the files it replaces are both present or only one of them is.
pub fn visible(all: &[Segment]) -> Vec<Segment> {
    let gone = superseded_flags(all);
    all.iter()
        .zip(gone)
        .filter(|(_, gone)| !gone)
        .map(|(g, _)| g.clone())
        .collect()
}

/// The segments of `all` that a merge in `all` replaces.
pub fn superseded(all: &[Segment]) -> Vec<&Segment> {
    let gone = superseded_flags(all);
    all.iter()
        .zip(gone)
        .filter(|(_, gone)| *gone)
        .map(|(g, _)| g)
        .collect()
}

/// For each segment of `all`, whether another supersedes it; only segments
/// of the same directory and node are compared, so this stays linear in
/// the number of segments, not quadratic.
fn superseded_flags(all: &[Segment]) -> Vec<bool> {
    let mut by_dir: std::collections::HashMap<(&str, &str), Vec<&Segment>> = Default::default();
    for g in all {
        by_dir.entry((dir(&g.key), &g.node)).or_default().push(g);
    }
    all.iter()
        .map(|g| {
            by_dir[&(dir(&g.key), g.node.as_str())]
                .iter()
                .any(|a| supersedes(a, g))
        })
        .collect()
}

/// Characters kept as they are in a service directory name.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// Longest encoded part of a service name in one path component: file
/// systems refuse names over 255 bytes.
const SERVICE_PART: usize = 200;

/// `service=` plus the percent-encoded name (every byte but `[A-Za-z0-9.-]`);
/// an encoded name longer than `SERVICE_PART` bytes goes on in
/// `/service+=…` components, so any accepted name (up to 256 bytes, 768
/// encoded) makes a directory a file system takes.
pub fn service_dir(service: &str) -> String {
    let mut out = String::with_capacity(8 + service.len());
    out.push_str("service=");
    let mut part = 0;
    for &b in service.as_bytes() {
        let width = if plain(b) { 1 } else { 3 };
        if part + width > SERVICE_PART {
            out.push_str("/service+=");
            part = 0;
        }
        part += width;
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The service of the directory components `parts` (`service=…`, then any
/// `service+=…`).
fn decode_service(parts: &[&str]) -> Option<String> {
    let (first, rest) = parts.split_first()?;
    let mut enc = first.strip_prefix("service=")?.to_string();
    for p in rest {
        enc.push_str(p.strip_prefix("service+=")?);
    }
    let bytes = enc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = enc.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A node id: lowercase letters, digits and `-`, at most 63 characters.
pub fn node_id_problem(id: &str) -> Option<String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (!ok).then(|| {
        format!("node id {id:?} must be 1-63 characters of lowercase letters, digits and '-'")
    })
}

/// The key of a new segment.
#[allow(clippy::too_many_arguments)]
pub fn key(
    table: Signal,
    service: &str,
    min_ns: i64,
    max_ns: i64,
    node: &str,
    gen_lo: u64,
    gen_hi: u64,
    arrival_ms: i64,
) -> String {
    let when = DateTime::<Utc>::from_timestamp_nanos(min_ns);
    format!(
        "{}/{}/{}/{}/{min_ns}_{max_ns}_{node}_{gen_lo}-{gen_hi}_{arrival_ms}.parquet",
        table.table(),
        service_dir(service),
        when.format("%Y-%m-%d"),
        when.format("%H"),
    )
}

/// What a key says, or `None` if it is not a graylens segment. `bytes` and,
/// for legacy files, `mtime_ms` come from the listing.
pub fn parse(key: &str, bytes: u64, mtime_ms: i64) -> Option<Segment> {
    let parts: Vec<&str> = key.split('/').collect();
    let table = Signal::ALL
        .into_iter()
        .find(|s| parts.first() == Some(&s.table()))?;
    let name = parts.last()?.strip_suffix(".parquet")?;
    let fields: Vec<&str> = name.split('_').collect();
    let base = Segment {
        key: key.to_string(),
        table,
        service: None,
        min_ns: 0,
        max_ns: 0,
        node: String::new(),
        gen_lo: 0,
        gen_hi: 0,
        arrival_ms: mtime_ms,
        bytes,
    };
    match (parts.len(), fields.as_slice()) {
        (4, [min, max, _seq]) => Some(Segment {
            min_ns: min.parse().ok()?,
            max_ns: max.parse().ok()?,
            ..base
        }),
        (n, [min, max, node, gens, arrival]) if n >= 5 => {
            let (lo, hi) = gens.split_once('-')?;
            Some(Segment {
                service: Some(decode_service(&parts[1..n - 3])?),
                min_ns: min.parse().ok()?,
                max_ns: max.parse().ok()?,
                node: node.to_string(),
                gen_lo: lo.parse().ok()?,
                gen_hi: hi.parse().ok()?,
                arrival_ms: arrival.parse().ok()?,
                ..base
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_any_service_name() {
        for svc in ["checkout", "", "a/b c", "ünï", "%20", "x_y"] {
            let k = key(
                Signal::Traces,
                svc,
                1_700_000_000_000_000_000,
                1_700_000_001_000_000_000,
                "node-a",
                3,
                7,
                1_700_000_002_000,
            );
            assert!(k.starts_with("spans/service="), "{k}");
            assert_eq!(k.matches('/').count(), 4, "{k}");
            assert!(k.split('/').all(|c| c.len() <= 255), "{k}");
            let s = parse(&k, 10, 0).unwrap();
            assert_eq!(s.service.as_deref(), Some(svc));
            assert_eq!((s.gen_lo, s.gen_hi), (3, 7));
            assert_eq!(s.node, "node-a");
            assert_eq!(s.arrival_ms, 1_700_000_002_000);
            assert_eq!(s.table, Signal::Traces);
        }
    }

    #[test]
    fn a_long_service_name_is_split_into_directory_names_a_file_system_takes() {
        // 256 bytes (the longest accepted name), most of them encoded as %XX.
        for svc in [
            "_".repeat(256),
            "é".repeat(128),
            format!("{}{}", "a".repeat(199), "_".repeat(57)),
        ] {
            let k = key(Signal::Logs, &svc, 0, 1, "node-a", 1, 1, 2);
            let parts: Vec<&str> = k.split('/').collect();
            assert!(parts.iter().all(|c| c.len() <= 255), "{k}");
            assert!(parts.len() > 5, "{k}");
            assert!(parts[2].starts_with("service+="), "{k}");
            assert_eq!(
                parse(&k, 1, 0).unwrap().service.as_deref(),
                Some(svc.as_str())
            );
        }
        assert!(parse(
            "logs/service=a/other=b/1970-01-01/00/0_1_n_1-1_2.parquet",
            1,
            0
        )
        .is_none());
    }

    #[test]
    fn legacy_names_are_read() {
        let s = parse("logs/2026-11-28/04/100_200_5.parquet", 9, 123).unwrap();
        assert_eq!(s.table, Signal::Logs);
        assert_eq!(s.service, None);
        assert!(s.may_hold("anything"));
        assert_eq!((s.min_ns, s.max_ns, s.arrival_ms), (100, 200, 123));
        assert!(parse("logs/2026-11-28/04/notes.txt", 1, 0).is_none());
        assert!(parse("other/x/y/z/1_2_3.parquet", 1, 0).is_none());
    }

    #[test]
    fn a_merge_hides_the_files_it_replaces_and_only_those() {
        let seg = |node: &str, lo, hi, hour: &str| {
            let k = format!("spans/service=s/2026-12-06/{hour}/1_2_{node}_{lo}-{hi}_3.parquet");
            parse(&k, 1, 0).unwrap()
        };
        let (a, b, c) = (
            seg("n", 1, 1, "10"),
            seg("n", 2, 2, "10"),
            seg("n", 3, 3, "10"),
        );
        let merged = seg("n", 1, 2, "10");
        let other_hour = seg("n", 2, 2, "11");
        let other_node = seg("m", 2, 2, "10");
        let all = vec![
            a.clone(),
            b.clone(),
            c.clone(),
            merged.clone(),
            other_hour.clone(),
            other_node.clone(),
        ];
        let keys: Vec<String> = visible(&all).into_iter().map(|g| g.key).collect();
        assert_eq!(
            keys,
            [c.key, merged.key.clone(), other_hour.key, other_node.key]
        );
        let gone = |all: &[Segment]| -> Vec<String> {
            superseded(all).into_iter().map(|g| g.key.clone()).collect()
        };
        assert_eq!(gone(&all), [a.key.clone(), b.key.clone()]);
        // A merge of a merge hides both levels.
        let again = seg("n", 1, 3, "10");
        let mut all = all;
        all.push(again.clone());
        assert!(gone(&all).contains(&merged.key));
        assert_eq!(visible(&all).len(), 3);
    }

    #[test]
    fn node_ids_are_checked() {
        assert!(node_id_problem("graylens-0").is_none());
        assert!(node_id_problem("Node_A").is_some());
        assert!(node_id_problem("").is_some());
    }
}
