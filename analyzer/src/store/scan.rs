//! The local directory's segments at start.

use crate::error::{Error, Result};
use crate::segment::{self, Segment};
use graylens_collector::schema::Signal;
use std::path::Path;

/// Finds the segments of `table` below `root`; when serving, removes files
/// a crash left half-written.
pub(super) fn scan(
    root: &Path,
    table: Signal,
    read_only: bool,
    out: &mut Vec<Segment>,
) -> Result<()> {
    fn walk(root: &Path, dir: &Path, read_only: bool, out: &mut Vec<Segment>) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
            if meta.is_dir() {
                walk(root, &path, read_only, out)?;
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                if !read_only {
                    tracing::warn!(path = %path.display(), "removing unfinished segment");
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if !name.ends_with(".parquet") {
                continue;
            }
            let key = path
                .strip_prefix(root)
                .ok()
                .and_then(|p| p.to_str())
                .map(|k| k.replace(std::path::MAIN_SEPARATOR, "/"));
            let mtime_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            match key.and_then(|k| segment::parse(&k, meta.len(), mtime_ms)) {
                Some(s) => out.push(s),
                None => {
                    tracing::warn!(path = %path.display(), "ignoring Parquet file not written by graylens")
                }
            }
        }
        Ok(())
    }
    walk(root, &root.join(table.table()), read_only, out)
}
