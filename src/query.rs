//! `graylens query`: offline SQL over a data directory's Parquet segments.

use crate::cli::{Format, QueryArgs};
use anyhow::bail;
use graylens_analyzer::{Store, StoreConfig, Tables};
use serde_json::Value;

/// The store of an offline command over `data_dir`, opened read-only: the
/// files of a server running on it are never touched. Rows still only in
/// the write-ahead log (not yet flushed) are not read; a note says how many.
pub fn open_offline(data_dir: &std::path::Path) -> anyhow::Result<std::sync::Arc<Store>> {
    if !data_dir.is_dir() {
        bail!("--data-dir {} is not a directory", data_dir.display());
    }
    let store = Store::open_read_only(StoreConfig {
        data_dir: data_dir.to_path_buf(),
        retention_hours: 0,
        ..Default::default()
    })?;
    let logged = graylens_analyzer::wal::replay::read_only(&store.wal_dir(), |_, _| {})
        .map(|r| r.records)
        .unwrap_or(0);
    if logged > 0 {
        eprintln!(
            "note: {logged} request(s) in {} are not in Parquet yet and are not included \
             (a running server flushes them within store.flush_interval_secs)",
            store.wal_dir().display()
        );
    }
    Ok(store)
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let store = open_offline(&args.data_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(async { Tables::new(store)?.query(&args.sql).await })?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&out)?),
        Format::Table => print_table(&out.columns, &out.rows),
    }
    Ok(())
}

fn print_table(columns: &[String], rows: &[Vec<Value>]) {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(text).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: &[String]| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", line(columns));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    for r in &cells {
        println!("{}", line(r));
    }
    println!("({} rows)", rows.len());
}
