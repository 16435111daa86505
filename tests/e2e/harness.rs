//! Starts and stops `graylens serve` and talks to its API.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub grpc: String,
    pub otlp_http: String,
    pub api: String,
    /// Sent as `Authorization: Bearer` by the helpers below (auth tests).
    pub token: Option<String>,
}

impl Server {
    /// Starts a server on fresh loopback ports over `data_dir`.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, "")
    }

    /// Same, with extra TOML config.
    pub fn start_with(data_dir: &Path, toml: &str) -> Server {
        Self::start_on(data_dir, toml, "127.0.0.1:0")
    }

    /// Same, with the API listening on `api_addr`; clients reach it on
    /// loopback whatever the address.
    pub fn start_on(data_dir: &Path, toml: &str, api_addr: &str) -> Server {
        Self::start_env(data_dir, toml, api_addr, &[])
    }

    /// [`Server::start_on`] with extra environment variables.
    pub fn start_env(data_dir: &Path, toml: &str, api_addr: &str, env: &[(&str, &str)]) -> Server {
        let cfg = data_dir.with_extension("toml");
        std::fs::write(
            &cfg,
            if toml.contains("[store]\n") {
                toml.replacen("[store]\n", "[store]\nretention_hours = 0\n", 1)
            } else {
                format!("[store]\nretention_hours = 0\nflush_interval_secs = 1\n{toml}")
            },
        )
        .unwrap();
        Self::start_file_env(data_dir, &cfg, api_addr, env)
    }

    /// Starts a server with the config file `cfg` as it is.
    pub fn start_file(data_dir: &Path, cfg: &Path, api_addr: &str) -> Server {
        Self::start_file_env(data_dir, cfg, api_addr, &[])
    }

    fn start_file_env(data_dir: &Path, cfg: &Path, api_addr: &str, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_graylens"))
            .args([
                "serve",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
                "--otlp-http-addr",
                "127.0.0.1:0",
            ])
            .args(["--http-addr", api_addr, "--config"])
            .arg(cfg)
            .arg("--data-dir")
            .arg(data_dir)
            .env("GRAYLENS_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn graylens");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("no {k} in ready line {line:?}"))
                .to_string()
        };
        Server {
            grpc: format!("http://{}", field("otlp_grpc")),
            otlp_http: format!("http://{}", field("otlp_http")),
            api: field("http").replace("//0.0.0.0:", "//127.0.0.1:"),
            token: None,
            child,
        }
    }

    /// Runs SQL through `POST /api/v1/sql`; returns (status, body).
    pub fn sql_raw(&self, sql: &str) -> (u16, Value) {
        let mut req = reqwest::blocking::Client::new()
            .post(format!("{}/api/v1/sql", self.api))
            .json(&json!({ "sql": sql }));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }

    /// The rows of a successful query.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        let (status, body) = self.sql_raw(sql);
        assert_eq!(status, 200, "{sql}: {body}");
        serde_json::from_value(body["rows"].clone()).unwrap()
    }

    /// A single integer result.
    pub fn count(&self, sql: &str) -> i64 {
        self.rows(sql)[0][0].as_i64().unwrap()
    }

    /// Polls until `sql` returns `want` (data is queryable within a second).
    pub fn wait_count(&self, sql: &str, want: i64) {
        self.wait_count_for(sql, want, Duration::from_secs(10));
    }

    /// [`Server::wait_count`] with another deadline.
    pub fn wait_count_for(&self, sql: &str, want: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.count(sql);
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "{sql}: got {got}, want {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to flush or to answer anything in flight.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's own `/metrics` value of `series` (first sample).
    pub fn metric(&self, series: &str) -> f64 {
        let text = reqwest::blocking::get(format!("{}/metrics", self.api))
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(series) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    }

    /// [`Server::metric`] with a bearer token.
    pub fn metric_with_token(&self, series: &str, token: &str) -> f64 {
        let text = reqwest::blocking::Client::new()
            .get(format!("{}/metrics", self.api))
            .bearer_auth(token)
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(series) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    }

    pub fn healthy(&self) -> bool {
        reqwest::blocking::get(format!("{}/api/v1/health", self.api))
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graylens exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an OTLP client program to completion and fails the test, with its
/// output, if it does not succeed.
pub fn run_client(program: &str, args: &[&str]) {
    run_client_env(program, args, &[]);
}

/// [`run_client`] with extra environment variables for the client only.
pub fn run_client_env(program: &str, args: &[&str], env: &[(&str, &str)]) {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("start client");
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
