//! Where a from-scratch comparison reads: the hot batches and the Parquet
//! segments of the service, pruned by the segment names (service, time
//! range) and by row-group statistics on `time`, reading only the columns
//! the [`Accumulator`] needs, on every core.

use super::partials::{Key, Partials};
use super::scan::Accumulator;
use super::selector::Selector;
use crate::error::{Error, Result};
use crate::remote::Remote;
use crate::segment::Segment;
use crate::store::Store;
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::parquet::file::statistics::Statistics;
use graylens_collector::Signal;
use std::path::PathBuf;
use std::sync::Arc;

const SPAN_COLUMNS: [&str; 10] = [
    "time",
    "duration_ns",
    "parent_span_id",
    "service_name",
    "span_name",
    "span_kind",
    "is_error",
    "exception_type",
    "attributes",
    "resource_attributes",
];
const LOG_COLUMNS: [&str; 4] = ["time", "service_name", "severity_number", "body"];

/// One unit of work.
#[derive(Clone)]
pub(crate) enum Item {
    Hot(Signal, RecordBatch),
    /// A segment, and whether it lies wholly inside the window (so its
    /// partial can be kept, see [`super::partials`]).
    File(Signal, Loc, bool),
}

/// Where a segment is read from.
#[derive(Clone)]
pub(crate) enum Loc {
    Local(PathBuf),
    /// Key and size in the object store.
    Remote(Arc<Remote>, String, u64),
}

impl Loc {
    /// The segment's path or object key.
    pub(crate) fn name(&self) -> String {
        match self {
            Loc::Local(p) => p.to_string_lossy().into_owned(),
            Loc::Remote(_, key, _) => key.clone(),
        }
    }

    pub(crate) fn of(store: &Store, g: &Segment) -> Loc {
        match store.remote() {
            Some(r) => Loc::Remote(r.clone(), g.key.clone(), g.bytes),
            None => Loc::Local(store.root().join(&g.key)),
        }
    }
}

fn ns(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<i64> {
    t.map(super::selector::nanos)
}

/// What a comparison of `sel` must read in one table's view: the hot
/// batches of the service and the segments that may hold its rows.
pub(crate) fn items(
    store: &Store,
    signal: Signal,
    view: (Vec<Arc<crate::store::Hot>>, Vec<Segment>),
    sel: &Selector,
    out: &mut Vec<Item>,
) {
    let (from, to) = (ns(sel.from), ns(sel.to));
    let (hot, segments) = view;
    for h in hot.iter().filter(|h| *h.service == *sel.service) {
        out.push(Item::Hot(signal, h.batch.clone()));
    }
    for g in segments
        .iter()
        .filter(|g| wanted(g, &sel.service, from, to))
    {
        out.push(Item::File(signal, Loc::of(store, g), g.within(from, to)));
    }
}

fn wanted(g: &Segment, service: &str, from: Option<i64>, to: Option<i64>) -> bool {
    g.may_hold(service) && g.overlaps(from, to)
}

/// Reads both sides of `sel` from the store, in parallel. Returns the
/// accumulated spans and logs, and how many Parquet files were opened.
/// `facets`: the attributes counted for explanations.
pub async fn scan_store(
    store: &Arc<Store>,
    sel: &Selector,
    facets: Arc<[String]>,
) -> Result<(Accumulator, u64)> {
    let mut items_ = Vec::new();
    for signal in [Signal::Traces, Signal::Logs] {
        let (hot, segments, _) = store.view(signal);
        items(store, signal, (hot, segments), sel, &mut items_);
    }
    let (acc, files) = scan_items(items_, sel, facets, &store.partials).await?;
    store
        .stats
        .segments_read
        .fetch_add(files, std::sync::atomic::Ordering::Relaxed);
    Ok((acc, files))
}

/// Reads `items` on every core into one accumulator. Segments wholly inside
/// the window are taken from `partials` when kept there, and kept there
/// when read. Returns the accumulator and how many segments were read.
pub(crate) async fn scan_items(
    items: Vec<Item>,
    sel: &Selector,
    facets: Arc<[String]>,
    partials: &Partials,
) -> Result<(Accumulator, u64)> {
    let mut total = Accumulator::with_facets(sel, facets.clone());
    // Segments to read: their keys when their partial is to be kept.
    let mut keys: Vec<Option<Key>> = Vec::new();
    let mut todo = Vec::new();
    for item in items {
        if let Item::File(signal, loc, whole) = &item {
            let key = whole.then(|| Key::new(*signal, loc.name(), sel, &facets));
            if let Some(p) = key.as_ref().and_then(|k| partials.get(k)) {
                total.merge(&p);
                continue;
            }
            keys.push(key);
        }
        todo.push(item);
    }
    let files = keys.len() as u64;
    let cores = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    // Fewer files than cores (one large segment, say): each file is read
    // by every worker, each taking every `cores`-th of its row groups.
    let parts = if (files as usize) < cores { cores } else { 1 };
    let mut file_no = 0;
    let work: Vec<(Item, Option<usize>, usize, usize)> = todo
        .into_iter()
        .flat_map(|item| match item {
            Item::File(..) => {
                file_no += 1;
                let kept = keys[file_no - 1].is_some().then_some(file_no - 1);
                (0..parts).map(|k| (item.clone(), kept, k, parts)).collect()
            }
            Item::Hot(..) => vec![(item, None, 0, 1)],
        })
        .collect();
    let workers = cores.min(work.len().max(1));
    let mut shares: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, w) in work.into_iter().enumerate() {
        shares[i % workers].push(w);
    }
    let (from, to) = (ns(sel.from), ns(sel.to));
    let mut tasks = Vec::new();
    for share in shares {
        let (sel, facets) = (sel.clone(), facets.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut acc = Accumulator::with_facets(&sel, facets.clone());
            // A segment to keep is read into its own accumulator.
            let mut own = Vec::new();
            for (item, kept, part, parts) in share {
                let mut mine = kept.map(|_| Accumulator::with_facets(&sel, facets.clone()));
                let into = mine.as_mut().unwrap_or(&mut acc);
                let found = match item {
                    Item::Hot(Signal::Logs, b) => {
                        into.add_logs(&b);
                        true
                    }
                    Item::Hot(_, b) => {
                        into.add_spans(&b);
                        true
                    }
                    Item::File(signal, Loc::Local(path), _) => {
                        read_file(into, signal, &path, (from, to), (part, parts))?
                    }
                    Item::File(signal, Loc::Remote(r, key, size), _) => {
                        read_remote(into, signal, (&r, &key, size), (from, to), (part, parts))?
                    }
                };
                if let (Some(i), Some(mine)) = (kept, mine) {
                    own.push((i, mine, found));
                }
            }
            Ok::<_, Error>((acc, own))
        }));
    }
    let mut read: Vec<Option<(Accumulator, bool)>> = (0..keys.len()).map(|_| None).collect();
    for t in tasks {
        let (acc, own) = t
            .await
            .map_err(|e| Error::Internal(format!("comparison worker: {e}")))??;
        total.merge(&acc);
        for (i, part, found) in own {
            match &mut read[i] {
                Some((whole, all_found)) => {
                    whole.merge(&part);
                    *all_found &= found;
                }
                slot => *slot = Some((part, found)),
            }
        }
    }
    for (key, got) in keys.into_iter().zip(read) {
        if let (Some(key), Some((partial, found))) = (key, got) {
            total.merge(&partial);
            // A segment deleted since the snapshot read as empty: not kept.
            if found {
                partials.put(key, partial);
            }
        }
    }
    Ok((total, files))
}

/// The columns a comparison reads from a segment of `signal`.
fn columns(acc: &Accumulator, signal: Signal) -> Vec<String> {
    let side = acc.selector().by.column();
    // The attribute maps are the costliest columns to decode (most of a
    // Parquet comparison's time): read them only when explanations need them.
    let maps = !acc.facet_keys().is_empty();
    let names: Vec<&str> = match signal {
        Signal::Logs => LOG_COLUMNS.iter().copied().chain([side]).collect(),
        _ => SPAN_COLUMNS
            .iter()
            .copied()
            .filter(|c| maps || !c.ends_with("attributes"))
            .chain([side])
            .collect(),
    };
    names.into_iter().map(String::from).collect()
}

/// Which columns and row groups of a segment to read: those whose `time`
/// range meets the window, and of those every `parts`-th from `part`.
fn plan(
    meta: &ParquetMetaData,
    names: &[String],
    (from, to): (Option<i64>, Option<i64>),
    (part, parts): (usize, usize),
) -> (ProjectionMask, Vec<usize>) {
    let schema = meta.file_metadata().schema_descr();
    let mask = ProjectionMask::columns(schema, names.iter().map(String::as_str));
    let time_idx = (0..schema.num_columns()).find(|&i| schema.column(i).name() == "time");
    let groups: Vec<usize> = (0..meta.num_row_groups())
        .filter(|g| g % parts == part)
        .filter(|&g| {
            let Some(stats) = time_idx.and_then(|i| meta.row_group(g).column(i).statistics())
            else {
                return true;
            };
            match stats {
                Statistics::Int64(s) => {
                    let lo = s.min_opt().copied().unwrap_or(i64::MIN);
                    let hi = s.max_opt().copied().unwrap_or(i64::MAX);
                    from.is_none_or(|f| hi >= f) && to.is_none_or(|t| lo < t)
                }
                _ => true,
            }
        })
        .collect();
    (mask, groups)
}

fn add(acc: &mut Accumulator, signal: Signal, b: &RecordBatch) {
    match signal {
        Signal::Logs => acc.add_logs(b),
        _ => acc.add_spans(b),
    }
}

/// [`read_file`] for a segment in the object store: only the needed column
/// chunks are fetched (ranged GETs), on the object-store runtime, and
/// streamed here batch by batch. Call it from a blocking thread.
fn read_remote(
    acc: &mut Accumulator,
    signal: Signal,
    (r, key, size): (&Arc<Remote>, &str, u64),
    window: (Option<i64>, Option<i64>),
    parts: (usize, usize),
) -> Result<bool> {
    use crate::remote_reader::{is_not_found, ObjectReader};
    use datafusion::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
    use datafusion::parquet::errors::ParquetError;
    use futures::StreamExt;
    let names = columns(acc, signal);
    let (path, store) = (r.path(key)?, r.store());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, ParquetError>>(2);
    r.spawn(async move {
        let run = async {
            let reader = ObjectReader { store, path, size };
            let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
            let (mask, groups) = plan(builder.metadata(), &names, window, parts);
            let mut stream = builder
                .with_projection(mask)
                .with_row_groups(groups)
                .with_batch_size(64 * 1024)
                .build()?;
            while let Some(b) = stream.next().await {
                if tx.send(Ok(b?)).await.is_err() {
                    break;
                }
            }
            Ok::<_, ParquetError>(())
        };
        if let Err(e) = run.await {
            let _ = tx.send(Err(e)).await;
        }
    });
    while let Some(got) = rx.blocking_recv() {
        match got {
            Ok(b) => add(acc, signal, &b),
            // Deleted by retention since the snapshot.
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(Error::Storage(format!("reading {key}: {e}"))),
        }
    }
    Ok(true)
}

/// Adds one Parquet segment, reading only the needed columns of the row
/// groups whose `time` range meets the window, and of those only every
/// `parts`-th from `part` (so several workers can share one file).
/// `false` when the segment was deleted since the snapshot (nothing added).
fn read_file(
    acc: &mut Accumulator,
    signal: Signal,
    path: &std::path::Path,
    (from, to): (Option<i64>, Option<i64>),
    (part, parts): (usize, usize),
) -> Result<bool> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        // Deleted by retention or compaction since the snapshot.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(path, e)),
    };
    let parquet = |e: datafusion::parquet::errors::ParquetError| {
        Error::Internal(format!("reading {}: {e}", path.display()))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?;
    let names = columns(acc, signal);
    let (mask, groups) = plan(builder.metadata(), &names, (from, to), (part, parts));
    let reader = builder
        .with_projection(mask)
        .with_row_groups(groups)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(parquet)?;
    for b in reader {
        let b = b.map_err(|e| Error::Internal(format!("reading {}: {e}", path.display())))?;
        add(acc, signal, &b);
    }
    Ok(true)
}
