//! The `graylens` binary: command line, config, signals and task supervision.
//! Everything else lives in the library crates.

mod cli;
mod compare;
mod config;
mod demo;
mod loadgen;
mod query;
mod serve;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: decoding OTLP and building Arrow batches allocate many small
/// strings; with glibc's allocator a third of ingest CPU went to malloc and
/// free (perf, README "Performance").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process, before its threads start.
/// mimalloc asks the kernel for huge pages on its large regions, so the hot
/// store grew by 2 MiB pages that the kernel zeroes whole and that stay
/// resident while partly used: turning them off measured about 70 bytes
/// less resident memory per hot span and no slower ingest or queries
/// (README "Performance", "Huge pages off").
#[cfg(target_os = "linux")]
fn no_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!("could not turn transparent huge pages off: {e}");
    }
}

#[cfg(not(target_os = "linux"))]
fn no_huge_pages() {}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GRAYLENS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    no_huge_pages();
    let result = match cli.command {
        cli::Command::Serve(args) => config::load(&args).and_then(serve::run),
        cli::Command::Query(args) => query::run(args),
        cli::Command::Compare(args) => compare::run(args),
        cli::Command::Demo(args) => demo::run(args),
        cli::Command::Loadgen(args) => loadgen::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("graylens: {e:#}");
            ExitCode::from(2)
        }
    }
}
