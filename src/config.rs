//! The one graylens config: defaults ← TOML file ← environment ← flags,
//! validated at start with every problem reported at once.

use crate::cli::ServeArgs;
use anyhow::{bail, Context};
use graylens_alerts::{AlertsConfig, PolicyRef, RetryPolicy, RolloutSpec, Rules};
use graylens_analyzer::{Policy, QueryConfig, StoreConfig, WalConfig};
use graylens_collector::{AttributionConfig, AuthConfig, LimitsConfig, ReceiverConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The whole config file. Unknown keys are errors, so typos do not pass silently.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub otlp: ReceiverConfig,
    pub attribution: AttributionConfig,
    pub store: StoreConfig,
    pub wal: WalConfig,
    pub limits: LimitsConfig,
    pub query: QueryConfig,
    pub http: HttpConfig,
    pub pipeline: PipelineConfig,
    pub analysis: AnalysisConfig,
    pub alerts: AlertsSection,
    /// Bearer tokens and their scopes.
    pub auth: AuthConfig,
    /// TLS for the three listeners (and client certificates on OTLP).
    pub tls: graylens_collector::tls::TlsConfig,
    /// Rollouts to watch from the start (`[[rollouts]]`, each with a `name`).
    pub rollouts: Vec<RolloutSpec>,
    /// Where Parquet segments are kept when not under `store.data_dir`.
    pub storage: StorageSection,
    /// This node among others sharing `storage.url`.
    pub cluster: ClusterSection,
}

/// `[storage]`: an object store for the Parquet segments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Empty: under `store.data_dir`. `s3://bucket/prefix`: an S3-compatible
    /// store configured by the standard AWS_* environment.
    pub url: String,
}

/// `[cluster]`: nodes sharing one object store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Unique per node (the pod name of a StatefulSet); required with `storage.url`.
    pub node_id: String,
    /// How long a node's claim to act for a rollout lasts; another node
    /// takes over within about 1⅓ of this after the holder dies.
    pub lease_secs: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            lease_secs: 15,
        }
    }
}

impl Config {
    /// The alert engine's settings, the lease included.
    pub fn alerts_engine(&self) -> AlertsConfig {
        AlertsConfig {
            lease: Duration::from_secs(self.cluster.lease_secs),
            ..self.alerts.engine()
        }
    }
}

/// Comparison and verdicts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Policy (TOML) used by `/api/v1/compare` and `/api/v1/verdict`; the
    /// built-in default (latency p50/p99 and error rate) when absent.
    pub policy_file: Option<PathBuf>,
    /// More policies by name (`strict = "strict.toml"`), for rollouts that name one.
    pub policies: BTreeMap<String, PathBuf>,
}

impl AnalysisConfig {
    /// The policy to judge with, or what is wrong with it.
    pub fn policy(&self) -> Result<Policy, String> {
        load_policy(self.policy_file.as_deref())
    }

    /// Every policy by name, `default` included, or every problem with them.
    pub fn policies(&self) -> Result<BTreeMap<String, Arc<Policy>>, Vec<String>> {
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        match self.policy() {
            Ok(p) => {
                out.insert("default".to_string(), Arc::new(p));
            }
            Err(e) => problems.push(e),
        }
        for (name, path) in &self.policies {
            if name == "default" {
                problems.push(
                    "analysis.policies: `default` is the policy_file; pick another name".into(),
                );
                continue;
            }
            match load_policy(Some(path)) {
                Ok(p) => {
                    out.insert(name.clone(), Arc::new(p));
                }
                Err(e) => problems.push(format!("analysis.policies.{name}: {e}")),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}

/// The alert engine (`[alerts]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    /// Seconds between two judgements of each rollout. A look costs the
    /// data that arrived since the last one (incremental judging) and the
    /// tests are anytime-valid, so looking every second is both cheap and
    /// safe: the time to a verdict is set by the evidence, not the clock.
    pub interval_secs: f64,
    /// Pause a rollout whose verdict stays inconclusive this long; 0 never does.
    pub pause_after_inconclusive_secs: u64,
    /// Pause on a sample-ratio mismatch (the split of requests is not the configured weight).
    pub pause_on_sample_ratio_mismatch: bool,
    /// Timeout of one delivery attempt.
    pub delivery_timeout_secs: f64,
    /// First wait before retrying a delivery; doubled each time, with jitter.
    pub retry_initial_secs: f64,
    /// Longest wait between two attempts.
    pub retry_max_secs: f64,
    /// A delivery still failing after this long is given up (and shown as failed).
    pub give_up_after_secs: u64,
    /// Most rollouts kept at once.
    pub max_rollouts: usize,
    /// URL prefixes actions of rollouts registered through the API may
    /// target (config-declared rollouts are trusted). Empty: none.
    pub allowed_targets: Vec<String>,
}

impl Default for AlertsSection {
    fn default() -> Self {
        Self {
            interval_secs: 1.0,
            pause_after_inconclusive_secs: 1800,
            pause_on_sample_ratio_mismatch: true,
            delivery_timeout_secs: 10.0,
            retry_initial_secs: 1.0,
            retry_max_secs: 60.0,
            give_up_after_secs: 86_400,
            max_rollouts: 1000,
            allowed_targets: Vec::new(),
        }
    }
}

impl AlertsSection {
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, v, max) in [
            ("interval_secs", self.interval_secs, 3600.0),
            ("delivery_timeout_secs", self.delivery_timeout_secs, 600.0),
            ("retry_initial_secs", self.retry_initial_secs, 3600.0),
            ("retry_max_secs", self.retry_max_secs, 86_400.0),
        ] {
            if !(v >= 0.01 && v <= max) {
                p.push(format!(
                    "alerts.{name} must be between 0.01 and {max}, not {v}"
                ));
            }
        }
        if self.retry_max_secs < self.retry_initial_secs {
            p.push("alerts.retry_max_secs must be at least retry_initial_secs".into());
        }
        if self.max_rollouts == 0 {
            p.push("alerts.max_rollouts must be at least 1".into());
        }
        p.extend(graylens_alerts::targets::AllowedTargets(self.allowed_targets.clone()).problems());
        p
    }

    /// The engine's settings (call after validation).
    pub fn engine(&self) -> AlertsConfig {
        let secs = Duration::from_secs_f64;
        AlertsConfig {
            interval: secs(self.interval_secs),
            rules: Rules {
                pause_after_inconclusive: (self.pause_after_inconclusive_secs > 0)
                    .then(|| Duration::from_secs(self.pause_after_inconclusive_secs)),
                pause_on_srm: self.pause_on_sample_ratio_mismatch,
            },
            retry: RetryPolicy {
                timeout: secs(self.delivery_timeout_secs),
                backoff_initial: secs(self.retry_initial_secs),
                backoff_max: secs(self.retry_max_secs),
                give_up_after: Duration::from_secs(self.give_up_after_secs),
            },
            max_rollouts: self.max_rollouts,
            allowed_targets: graylens_alerts::targets::AllowedTargets(self.allowed_targets.clone()),
            lease: Duration::from_secs(15),
        }
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
    /// Connections that have not sent a request's headers within this many
    /// seconds are closed (slow or idle clients).
    pub header_read_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: ([127, 0, 0, 1], 4319).into(),
            query_threads: 2,
            header_read_timeout_secs: 10,
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
    /// Copies `[storage]` and `[cluster]` into the store's settings.
    pub fn resolve(&mut self) {
        self.store.storage_url = self.storage.url.clone();
        if !self.cluster.node_id.is_empty() {
            self.store.node_id = self.cluster.node_id.clone();
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut out = self.otlp.problems();
        if !self.storage.url.is_empty() {
            out.extend(graylens_analyzer::remote::url_problem(&self.storage.url));
            if self.cluster.node_id.is_empty() {
                out.push(
                    "cluster.node_id is required with storage.url: every node sharing the object store \
                     needs a name of its own that stays the same across restarts (the pod name of a StatefulSet)"
                        .into(),
                );
            }
        }
        if !(3..=300).contains(&self.cluster.lease_secs) {
            out.push(format!(
                "cluster.lease_secs = {} is outside 3..=300",
                self.cluster.lease_secs
            ));
        }
        if !self.cluster.node_id.is_empty() {
            out.extend(
                graylens_analyzer::segment::node_id_problem(&self.cluster.node_id)
                    .map(|p| format!("cluster.node_id: {p}")),
            );
        }
        out.extend(self.attribution.problems());
        out.extend(self.store.problems());
        if !self.storage.url.is_empty() && self.store.max_disk_bytes > 0 {
            out.push(
                "store.max_disk_bytes limits the local data directory only; with storage.url set, \
                 bound the bucket with store.retention_hours (or a lifecycle rule of the bucket)"
                    .into(),
            );
        }
        out.extend(self.wal.problems());
        out.extend(self.limits.problems());
        out.extend(self.query.problems());
        let memory = self.limits.memory_limit();
        if self.otlp.max_message_bytes as u64 > memory / 4 {
            out.push(format!(
                "otlp.max_message_bytes = {} must be at most a quarter of the memory limit ({memory} bytes, limits.memory_bytes): \
                 a request that can never be admitted would be refused forever",
                self.otlp.max_message_bytes
            ));
        }
        if !(1..=3600).contains(&self.http.header_read_timeout_secs) {
            out.push(format!(
                "http.header_read_timeout_secs = {} is outside 1..=3600",
                self.http.header_read_timeout_secs
            ));
        }
        if !(1..=1_000_000).contains(&self.pipeline.queue_capacity) {
            out.push(format!(
                "pipeline.queue_capacity = {} is outside 1..=1000000",
                self.pipeline.queue_capacity
            ));
        }
        if !(1..=3600).contains(&self.pipeline.shutdown_grace_secs) {
            out.push(format!(
                "pipeline.shutdown_grace_secs = {} is outside 1..=3600",
                self.pipeline.shutdown_grace_secs
            ));
        }
        let policies = self.analysis.policies();
        if let Err(e) = &policies {
            out.extend(e.iter().cloned());
        }
        out.extend(self.alerts.problems());
        out.extend(self.tls.problems());
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.rollouts.iter().enumerate() {
            let at = match &r.name {
                Some(n) => format!("rollouts[{i}] ({n})"),
                None => format!("rollouts[{i}]"),
            };
            match &r.name {
                None => out.push(format!(
                    "{at}: `name` is required for rollouts declared in the config"
                )),
                Some(n) if !names.insert(graylens_alerts::config_id(r)) => {
                    out.push(format!("{at}: the name {n:?} is used twice"))
                }
                Some(_) => {}
            }
            out.extend(r.problems().into_iter().map(|p| format!("{at}: {p}")));
            if let (Some(PolicyRef::Name(n)), Ok(known)) = (&r.policy, &policies) {
                if !known.contains_key(n) && !known.values().any(|p| &p.name == n) {
                    out.push(format!("{at}: unknown policy {n:?}"));
                }
            }
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
        out.extend(self.auth.problems());
        // Safe by default: with nobody authenticated, only this machine may connect.
        if self.auth.tokens.is_empty() && !self.auth.allow_unauthenticated {
            for (name, a) in [
                ("otlp.grpc_addr", self.otlp.grpc_addr),
                ("otlp.http_addr", self.otlp.http_addr),
                ("http.addr", self.http.addr),
            ] {
                if !a.ip().is_loopback() {
                    out.push(format!(
                        "{name} = {a} is not a loopback address and no [[auth.tokens]] are configured: anyone who reaches it \
                         could send telemetry, change rollouts and read data. Configure tokens (see README, \"Securing graylens\"), \
                         bind 127.0.0.1, or set auth.allow_unauthenticated = true"
                    ));
                }
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
    if let Some(u) = &args.storage_url {
        cfg.storage.url = u.clone();
    }
    if let Some(n) = &args.node_id {
        cfg.cluster.node_id = n.clone();
    }
    cfg.resolve();
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
            "[store]\nflush_rows = 0\nflush_interval_secs = 0\ncompare_cache_mib = 2000000\n\
             [pipeline]\nqueue_capacity = 0\nshutdown_grace_secs = 9223372036854775807\n\
             [otlp]\ngrpc_addr = \"127.0.0.1:5000\"\nhttp_addr = \"127.0.0.1:5000\"\n",
        )
        .unwrap();
        let p = cfg.problems();
        assert!(p.len() >= 5, "{p:?}");
        for what in [
            "store.compare_cache_mib",
            "pipeline.queue_capacity",
            "pipeline.shutdown_grace_secs",
        ] {
            assert!(p.iter().any(|x| x.contains(what)), "{what}: {p:?}");
        }
    }

    #[test]
    fn the_commented_rollout_of_the_example_is_valid() {
        let text = include_str!("../graylens.example.toml");
        let start = text.find("# [[rollouts]]").expect("example rollout");
        let uncommented: String = text[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let cfg = parse(&format!("{}{uncommented}\n", &text[..start])).expect("parses");
        assert_eq!(cfg.rollouts.len(), 1);
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    }

    #[test]
    fn rollouts_and_alerts_are_validated_together() {
        let cfg = parse(
            "[alerts]\ninterval_secs = 0\nretry_initial_secs = 5\nretry_max_secs = 1\n\
             [[rollouts]]\nservice = \"a\"\nbaseline = \"1\"\ncanary = \"2\"\n\
             [[rollouts]]\nname = \"x\"\nservice = \"a\"\nbaseline = \"1\"\ncanary = \"2\"\npolicy = \"strict\"\n\
             [[rollouts]]\nname = \"x\"\nservice = \"b\"\nbaseline = \"1\"\ncanary = \"1\"\n",
        )
        .unwrap();
        let p = cfg.problems().join("\n");
        for want in [
            "alerts.interval_secs",
            "retry_max_secs must be at least",
            "rollouts[0]: `name` is required",
            "rollouts[1] (x): unknown policy \"strict\"",
            "rollouts[2] (x): the name \"x\" is used twice",
            "rollouts[2] (x): baseline and canary are the same",
        ] {
            assert!(p.contains(want), "{want:?} not in:\n{p}");
        }
    }
}
