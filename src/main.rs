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
