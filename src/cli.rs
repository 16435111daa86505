//! Raw command-line arguments (first layer); `config.rs` validates them.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "graylens",
    version,
    about = "OTLP-native canary analysis: collect, compare versions, decide, act."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Receive OTLP, store it, and serve the API (embedded store).
    Serve(ServeArgs),
    /// Run SQL offline over the Parquet segments of a data directory.
    Query(QueryArgs),
    /// Compare a canary with its baseline offline, over a data directory.
    Compare(CompareArgs),
    /// A self-contained tour: graylens, a baseline and a canary sending real
    /// OTLP, a regression injected into the canary, and a controller
    /// stand-in that receives the signed rollback webhook.
    Demo(DemoArgs),
    /// Ingest benchmark: send OTLP traces to a running server and report
    /// spans per CPU-second of the server (see README, Performance).
    Loadgen(LoadgenArgs),
}

#[derive(Args, Debug)]
pub struct LoadgenArgs {
    /// OTLP/gRPC endpoint of the server (comma-separated: one per node).
    #[arg(long, default_value = "http://127.0.0.1:4317", value_delimiter = ',')]
    pub grpc: Vec<String>,
    /// OTLP/HTTP base URL of the server (comma-separated: one per node).
    #[arg(long, default_value = "http://127.0.0.1:4318", value_delimiter = ',')]
    pub http: Vec<String>,
    /// PID of the server, whose CPU time is measured (comma-separated: one
    /// per node; the CPU of all is summed).
    #[arg(long, required = true, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Requests per transport (per node).
    #[arg(long, default_value_t = 400)]
    pub requests: usize,
    /// Spans per request (split over the nodes).
    #[arg(long, default_value_t = 512)]
    pub spans_per_request: usize,
    /// Resources per request (alternating baseline and canary versions).
    #[arg(long, default_value_t = 4)]
    pub resources: usize,
    /// Services `service-00`.. instead of the standard three, each with a
    /// baseline and a canary resource (needs --resources twice this).
    #[arg(long)]
    pub services: Option<usize>,
    /// Spread the requests' times over the last this many hours, a quarter
    /// hour apart (0: all now).
    #[arg(long, default_value_t = 0)]
    pub spread_hours: u32,
    /// Requests with their own random values (ids, client addresses, cart
    /// sizes, latencies), sent in turn; 1 sends the same request every time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub distinct_requests: u64,
    /// Requests in flight (per node).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// API base URL of the server (`http://host:port`; comma-separated: one
    /// per node): when given, checks at the end that every span sent is
    /// stored (a fresh server expected).
    #[arg(long, value_delimiter = ',')]
    pub api: Vec<String>,
}

/// Every flag can also be set in the config file and by environment variable.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file (see graylens.example.toml).
    #[arg(long, env = "GRAYLENS_CONFIG")]
    pub config: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "GRAYLENS_OTLP_GRPC_ADDR")]
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, env = "GRAYLENS_OTLP_HTTP_ADDR")]
    pub otlp_http_addr: Option<SocketAddr>,
    /// API and UI listen address [default: 127.0.0.1:4319].
    #[arg(long, env = "GRAYLENS_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Where Parquet segments are kept [default: ./graylens-data].
    #[arg(long, env = "GRAYLENS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep Parquet segments in an object store (`s3://bucket/prefix`,
    /// configured by the AWS_* environment) [config: storage.url].
    #[arg(long, env = "GRAYLENS_STORAGE_URL")]
    pub storage_url: Option<String>,
    /// This node's name among those sharing the object store
    /// [config: cluster.node_id].
    #[arg(long, env = "GRAYLENS_NODE_ID")]
    pub node_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Run this long (e.g. 90s, 2m), print a summary and exit (non-zero if
    /// the regression was not caught); without it, run until Ctrl-C.
    #[arg(long)]
    pub duration: Option<String>,
    /// When the canary regresses.
    #[arg(long, default_value = "30s")]
    pub regress_after: String,
    /// Requests per second of each version.
    #[arg(long, default_value_t = 100)]
    pub rps: u32,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long)]
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long)]
    pub otlp_http_addr: Option<SocketAddr>,
    /// API and UI listen address [default: 127.0.0.1:4319].
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Data directory written by `graylens serve`.
    #[arg(long, env = "GRAYLENS_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// One SQL query over `spans`, `logs` and `metrics`.
    pub sql: String,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Data directory written by `graylens serve`.
    #[arg(long, env = "GRAYLENS_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Service (`service.name`).
    #[arg(long)]
    pub service: String,
    /// Baseline: a version, a role (`--by role`) or a lane (`--by lane`; "" is uncolored).
    #[arg(long)]
    pub baseline: String,
    /// Canary, told apart from the baseline by `--by`.
    #[arg(long)]
    pub canary: String,
    /// Which attribution column separates the two sides: version, role or lane.
    #[arg(long, default_value = "version")]
    pub by: String,
    /// Start of the window (RFC 3339); all data when absent.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the window (RFC 3339, exclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// Policy file (TOML); the built-in default policy when absent.
    #[arg(long, env = "GRAYLENS_POLICY")]
    pub policy: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    Table,
    Json,
}
