//! The segment files of the write-ahead log: `{data_dir}/wal/{gen}.wal`,
//! one per generation. The writer appends to the newest; a flush closes it
//! (the generation is sealed) and opens the next; once every table's rows
//! of a generation are in Parquet, its file and older ones are deleted.

use super::{SyncMode, WalConfig};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The open segment, appended to by the writer thread only.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    gen: u64,
    file: File,
    sync: SyncMode,
    interval: Duration,
    /// Bytes written but not yet fsynced (`interval` and `off` modes).
    dirty: bool,
    last_sync: Instant,
    /// Bytes of whole records in the file: a failed write is cut back to it.
    len: u64,
    /// A failed write could not be cut back: replay would stop at it, so
    /// nothing more is appended to this file (the writer starts the next).
    broken: bool,
}

pub fn path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("{gen:020}.wal"))
}

/// fsync of a directory, so a created, renamed or removed entry is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `create_dir_all`, then an fsync of the parent of each directory it made:
/// a file later renamed into `dir` and synced there must not vanish after a
/// power loss with a directory entry that never reached the disk.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let made: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    std::fs::create_dir_all(dir)?;
    for d in made.iter().rev() {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => sync_dir(p)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

impl Log {
    /// Opens a new, empty segment for `gen`.
    pub fn create(dir: &Path, gen: u64, cfg: &WalConfig) -> io::Result<Log> {
        create_dir_durable(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path(dir, gen))?;
        let file = {
            drop(file);
            OpenOptions::new().append(true).open(path(dir, gen))?
        };
        if cfg.sync != SyncMode::Off {
            sync_dir(dir)?;
        }
        Ok(Log {
            dir: dir.to_path_buf(),
            gen,
            file,
            sync: cfg.sync,
            interval: Duration::from_millis(cfg.sync_interval_ms),
            dirty: false,
            last_sync: Instant::now(),
            len: 0,
            broken: false,
        })
    }

    pub fn gen(&self) -> u64 {
        self.gen
    }

    /// Whether a failed write could not be cut off (see [`Log::append`]).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Appends framed records; with `sync = "always"` they are on disk when
    /// this returns (one fsync for the whole group).
    /// A write that fails (disk full) is cut back, so the records after it
    /// are not hidden behind a torn one at replay.
    pub fn append(&mut self, frames: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "the write-ahead log segment ends in a failed write that could not be cut off; \
                 waiting for the next segment",
            ));
        }
        let written = self.file.write_all(frames).and_then(|()| {
            self.dirty = true;
            match self.sync {
                SyncMode::Always => self.sync_now(),
                SyncMode::Interval if self.last_sync.elapsed() >= self.interval => self.sync_now(),
                _ => Ok(()),
            }
        });
        match written {
            Ok(()) => {
                self.len += frames.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(error = %cut, "could not cut a failed write off the write-ahead log; starting the next segment");
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    /// Bytes of records in the open segment.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// In `interval` mode, fsyncs what was written if the interval passed.
    pub fn sync_if_due(&mut self) -> io::Result<()> {
        if self.sync == SyncMode::Interval
            && self.dirty
            && self.last_sync.elapsed() >= self.interval
        {
            self.sync_now()?;
        }
        Ok(())
    }

    fn sync_now(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes this generation (synced unless `sync = "off"`) and opens the
    /// next; returns the closed generation.
    pub fn rotate(&mut self, cfg: &WalConfig) -> io::Result<u64> {
        if self.sync != SyncMode::Off && self.dirty {
            match self.sync_now() {
                // What it holds before the failed write is what replay reads.
                Err(e) if self.broken => {
                    tracing::error!(error = %e, "fsync of a write-ahead log segment with a failed write")
                }
                other => other?,
            }
        }
        let closed = self.gen;
        *self = Log::create(&self.dir, closed + 1, cfg)?;
        Ok(closed)
    }
}

/// The segments in `dir`, oldest generation first.
pub fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let p = e?.path();
        let gen = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|g| g.parse::<u64>().ok());
        if let Some(g) = gen {
            out.push((g, p));
        }
    }
    out.sort();
    Ok(out)
}

/// Deletes the segments of generations `..= gen`; returns how many.
pub fn delete_through(dir: &Path, gen: u64) -> io::Result<usize> {
    let mut n = 0;
    for (g, p) in segments(dir)? {
        if g <= gen {
            std::fs::remove_file(&p)?;
            n += 1;
        }
    }
    if n > 0 {
        sync_dir(dir)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_that_cannot_be_cut_closes_the_segment_to_appends() {
        let root = tempfile::tempdir().unwrap();
        let cfg = WalConfig::default();
        let mut log = Log::create(root.path(), 1, &cfg).unwrap();
        log.append(b"record").unwrap();
        // /dev/full refuses every write (ENOSPC) and cannot be truncated.
        log.file = OpenOptions::new().append(true).open("/dev/full").unwrap();
        assert!(log.append(b"refused").is_err());
        assert!(log.is_broken());
        let again = log.append(b"after").unwrap_err().to_string();
        assert!(again.contains("could not be cut off"), "{again}");
        assert_eq!(log.rotate(&cfg).unwrap(), 1);
        assert!(!log.is_broken());
        log.append(b"next").unwrap();
        assert_eq!(std::fs::read(path(root.path(), 2)).unwrap(), b"next");
    }

    #[test]
    fn durable_directories_are_created_whole_and_again_without_error() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("spans/checkout/2026-12-07/04");
        create_dir_durable(&dir).unwrap();
        assert!(dir.is_dir());
        create_dir_durable(&dir).unwrap();
        let file = root.path().join("spans/checkout");
        std::fs::remove_dir_all(&file).unwrap();
        std::fs::write(&file, b"x").unwrap();
        assert!(
            create_dir_durable(&dir).is_err(),
            "a file in the way is an error"
        );
    }
}
