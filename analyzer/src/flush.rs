//! Writing a sealed generation to Parquet: one file per table, service and
//! hour, written to a temporary name, fsynced, renamed into place, and the
//! directory fsynced, so a crash never leaves half a file under a name that
//! is read, and a file that is read is on disk. With an object store, one
//! PUT per file (atomic: a key holds the whole file or nothing).

use crate::error::{Error, Result};
use crate::remote::Remote;
use crate::segment::{self, Segment};
use crate::store::{Hot, StoreConfig};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use datafusion::parquet::basic::{Compression, Type as PhysicalType, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use graylens_collector::Signal;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const HOUR_NS: i64 = 3_600_000_000_000;

/// The hour (since the epoch) a row of time `ns` is filed under.
pub(crate) fn hour(ns: i64) -> i64 {
    ns.div_euclid(HOUR_NS)
}

/// The batches of one table split into files: one per service and hour
/// (of each batch's oldest row).
pub(crate) fn groups(batches: &[Arc<Hot>]) -> Vec<Vec<Arc<Hot>>> {
    let mut groups: BTreeMap<(Arc<str>, i64), Vec<Arc<Hot>>> = BTreeMap::new();
    for h in batches {
        groups
            .entry((h.service.clone(), hour(h.min_ns)))
            .or_default()
            .push(h.clone());
    }
    groups.into_values().collect()
}

/// Writes one group of `gen` of one table as a segment.
pub(crate) fn write_group(
    cfg: &StoreConfig,
    remote: Option<&Remote>,
    table: Signal,
    gen: u64,
    arrival_ms: i64,
    hots: &[Arc<Hot>],
) -> Result<Segment> {
    let service = hots.first().map_or("", |h| &h.service);
    let min_ns = hots.iter().map(|h| h.min_ns).min().unwrap_or(0);
    let max_ns = hots.iter().map(|h| h.max_ns).max().unwrap_or(0);
    let key = segment::key(
        table,
        service,
        min_ns,
        max_ns,
        &cfg.node_id,
        gen,
        gen,
        arrival_ms,
    );
    let schema = table.schema();
    let batches: Vec<&RecordBatch> = hots.iter().map(|h| &h.batch).collect();
    let bytes = put(cfg, remote, &key, encode(&schema, &batches)?)?;
    Ok(Segment {
        key,
        table,
        service: Some(service.to_string()),
        min_ns,
        max_ns,
        node: cfg.node_id.clone(),
        gen_lo: gen,
        gen_hi: gen,
        arrival_ms,
        bytes,
    })
}

/// Parquet writer settings for a table of `schema`: zstd level 1, no
/// dictionary for the ids (unique per row; dictionary columns stay
/// dictionary-encoded), and statistics per column chunk for the numeric
/// columns only. graylens's own pruning reads the segment names (service,
/// hour) and the `time` statistics. Min and max of a text column cost two
/// string comparisons per row at every flush and compaction (a quarter of
/// a flush's CPU, `perf`); the only reader they had was DataFusion's
/// row-group pruning of SQL filters on text columns, which is rarely
/// selective here (random ids, one service per segment, versions mixed in
/// every row group): such queries now read those row groups and filter
/// them, with the same answers.
pub(crate) fn writer_properties(schema: &Schema) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Chunk);
    for id in ["trace_id", "span_id", "parent_span_id"] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(id), false);
    }
    if let Ok(descr) = ArrowSchemaConverter::new().convert(schema) {
        for c in descr.columns() {
            if matches!(
                c.physical_type(),
                PhysicalType::BYTE_ARRAY | PhysicalType::FIXED_LEN_BYTE_ARRAY
            ) {
                props =
                    props.set_column_statistics_enabled(c.path().clone(), EnabledStatistics::None);
            }
        }
    }
    props.build()
}

/// Encodes `batches` as one Parquet file of the table `schema` in memory;
/// hot span batches are rendered as the table's columns (ids as hex text,
/// a resource map per row) one batch at a time.
pub(crate) fn encode(schema: &SchemaRef, batches: &[&RecordBatch]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(writer_properties(schema)))
        .map_err(|e| Error::Internal(format!("parquet writer: {e}")))?;
    for b in batches {
        let b = graylens_collector::convert::to_table(b, schema)
            .map_err(|e| Error::Internal(format!("hot span columns as the table's: {e}")))?;
        w.write(&b)
            .map_err(|e| Error::Internal(format!("parquet write: {e}")))?;
    }
    w.close()
        .map_err(|e| Error::Internal(format!("parquet close: {e}")))?;
    Ok(buf)
}

/// Stores an encoded segment at `key`: in the object store, or as a file
/// under `data_dir`. Returns its size.
pub(crate) fn put(
    cfg: &StoreConfig,
    remote: Option<&Remote>,
    key: &str,
    bytes: Vec<u8>,
) -> Result<u64> {
    let n = bytes.len() as u64;
    match remote {
        Some(r) => r.put(key, bytes)?,
        None => write_bytes(&cfg.data_dir.join(key), &bytes)?,
    }
    Ok(n)
}

/// tmp → fsync → rename → fsync the directory.
fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("segment paths have a directory");
    crate::wal::log::create_dir_durable(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = path.with_extension("parquet.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    crate::wal::log::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(())
}
