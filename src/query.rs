//! `graylens query`: offline SQL over a data directory's Parquet segments.

use crate::cli::{Format, QueryArgs};
use anyhow::bail;
use graylens_analyzer::{Store, StoreConfig, Tables};
use serde_json::Value;

/// Store settings for offline commands over `data_dir`: retention off, so
/// an offline run never deletes anything.
pub fn offline_store(data_dir: &std::path::Path) -> anyhow::Result<StoreConfig> {
    if !data_dir.is_dir() {
        bail!("--data-dir {} is not a directory", data_dir.display());
    }
    Ok(StoreConfig {
        data_dir: data_dir.to_path_buf(),
        retention_hours: 0,
        ..Default::default()
    })
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let cfg = offline_store(&args.data_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(async {
        let store = Store::open(cfg)?;
        Tables::new(store)?.query(&args.sql).await
    })?;
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
