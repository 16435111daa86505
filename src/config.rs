//! The one graylens config: defaults ← TOML file ← environment ← flags,
//! validated at start with every problem reported at once.

use crate::cli::ServeArgs;
use anyhow::{bail, Context};
use graylens_analyzer::{Policy, StoreConfig};
use graylens_collector::{AttributionConfig, ReceiverConfig};
use serde::Deserialize;
use std::net::SocketAddr;

/// The whole config file. Unknown keys are errors, so typos do not pass silently.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub otlp: ReceiverConfig,
    pub attribution: AttributionConfig,
    pub store: StoreConfig,
    pub http: HttpConfig,
    pub pipeline: PipelineConfig,
    pub analysis: AnalysisConfig,
}

/// Comparison and verdicts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Policy (TOML) used by `/api/v1/compare` and `/api/v1/verdict`; the
    /// built-in default (latency p50/p99 and error rate) when absent.
    pub policy_file: Option<std::path::PathBuf>,
}

impl AnalysisConfig {
    /// The policy to judge with, or what is wrong with it.
    pub fn policy(&self) -> Result<Policy, String> {
        load_policy(self.policy_file.as_deref())
    }
}

/// Reads and validates a policy file; the default policy for `None`.
pub fn load_policy(path: Option<&std::path::Path>) -> Result<Policy, String> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("policy file {}: {e}", path.display()))?;
    Policy::from_toml(&text).map_err(|e| format!("policy file {}: {e}", path.display()))
}

/// The API / UI server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// Worker threads of the query runtime, kept apart from ingestion.
    pub query_threads: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: ([127, 0, 0, 1], 4319).into(),
            query_threads: 2,
        }
    }
}

/// The ingest queue between receivers and store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Requests (converted batches) that may wait for the store.
    pub queue_capacity: usize,
    /// Seconds given to requests in flight and to the final flush at shutdown.
    pub shutdown_grace_secs: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            shutdown_grace_secs: 10,
        }
    }
}

impl Config {
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.otlp.problems();
        out.extend(self.attribution.problems());
        out.extend(self.store.problems());
        if self.pipeline.queue_capacity == 0 {
            out.push("pipeline.queue_capacity must be at least 1".into());
        }
        if let Err(e) = self.analysis.policy() {
            out.push(e);
        }
        if self.http.query_threads == 0 {
            out.push("http.query_threads must be at least 1".into());
        }
        let addrs = [self.otlp.grpc_addr, self.otlp.http_addr, self.http.addr];
        for (i, a) in addrs.iter().enumerate() {
            if a.port() != 0 && addrs[..i].contains(a) {
                out.push(format!("address {a} is used by two listeners"));
            }
        }
        out
    }
}

pub fn parse(text: &str) -> anyhow::Result<Config> {
    Ok(toml::from_str(text)?)
}

/// Builds and validates the config for `serve`.
pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            parse(&text).with_context(|| format!("invalid config {}", p.display()))?
        }
        None => Config::default(),
    };
    if let Some(a) = args.otlp_grpc_addr {
        cfg.otlp.grpc_addr = a;
    }
    if let Some(a) = args.otlp_http_addr {
        cfg.otlp.http_addr = a;
    }
    if let Some(a) = args.http_addr {
        cfg.http.addr = a;
    }
    if let Some(d) = &args.data_dir {
        cfg.store.data_dir = d.clone();
    }
    let problems = cfg.problems();
    if !problems.is_empty() {
        bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_loads() {
        let text = include_str!("../graylens.example.toml");
        let cfg = parse(text).expect("example parses");
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    }

    #[test]
    fn typos_are_rejected() {
        let err = parse("[otlp]\ngrpc_adr = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `grpc_adr`"),
            "{err:#}"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let cfg = parse(
            "[store]\nflush_rows = 0\nflush_interval_secs = 0\n[pipeline]\nqueue_capacity = 0\n\
             [otlp]\ngrpc_addr = \"127.0.0.1:5000\"\nhttp_addr = \"127.0.0.1:5000\"\n",
        )
        .unwrap();
        let p = cfg.problems();
        assert!(p.len() >= 4, "{p:?}");
    }
}
