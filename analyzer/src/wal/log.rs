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
}

pub fn path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("{gen:020}.wal"))
}

/// fsync of a directory, so a created, renamed or removed entry is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Log {
    /// Opens a new, empty segment for `gen`.
    pub fn create(dir: &Path, gen: u64, cfg: &WalConfig) -> io::Result<Log> {
        std::fs::create_dir_all(dir)?;
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
        })
    }

    pub fn gen(&self) -> u64 {
        self.gen
    }

    /// Appends framed records; with `sync = "always"` they are on disk when
    /// this returns (one fsync for the whole group).
    /// A write that fails (disk full) is cut back, so the records after it
    /// are not hidden behind a torn one at replay.
    pub fn append(&mut self, frames: &[u8]) -> io::Result<()> {
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
                    tracing::error!(error = %cut, "could not cut a failed write off the write-ahead log");
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
            self.sync_now()?;
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
