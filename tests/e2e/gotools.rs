//! Go-built tools for the tests that need them (Helm, the Collector, Kitex),
//! and Go modules read as data (CRDs). Everything is cached under
//! `target/tools/`: the first run builds, later runs reuse. Without `go` on
//! the PATH these tests are skipped with a printed reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One Go command at a time: builds share the module cache.
static GO: Mutex<()> = Mutex::new(());

/// `target/tools`.
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("tools")
}

/// The `go` command with caches under [`tools_dir`], or None (and the
/// reason printed) when Go is not installed.
pub fn go(why: &str) -> Option<Command> {
    if Command::new("go").arg("version").output().is_err() {
        eprintln!("go is not installed: skipping {why} (it runs where Go is present)");
        return None;
    }
    let mut c = Command::new("go");
    go_env(&mut c);
    Some(c)
}

/// The cache locations of [`go`], for programs that run `go` themselves
/// (the Collector builder).
pub fn go_env(c: &mut Command) {
    let t = tools_dir();
    c.env("GOMODCACHE", t.join("gomod"))
        .env("GOCACHE", t.join("gocache"))
        .env("GOPATH", t.join("gopath"))
        .env("GOBIN", t.join("bin"))
        .env("GOFLAGS", "-modcacherw")
        .env("GOTOOLCHAIN", "local");
}

fn run(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{what}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `go install package@version` unless `bin` is already built; its path.
pub fn install(package_at_version: &str, bin: &str, why: &str) -> Option<PathBuf> {
    let mut c = go(why)?;
    let path = tools_dir().join("bin").join(bin);
    let _one = GO.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        eprintln!(
            "building {package_at_version} into {} (once)",
            path.display()
        );
        c.args(["install", package_at_version]);
        run(c, &format!("go install {package_at_version}"));
    }
    Some(path)
}

/// The directory of `module@version` in the module cache (downloaded once).
pub fn module_dir(module_at_version: &str, why: &str) -> Option<PathBuf> {
    let mut c = go(why)?;
    let _one = GO.lock().unwrap_or_else(|e| e.into_inner());
    c.args(["mod", "download", "-json", module_at_version]);
    let out = run(c, &format!("go mod download {module_at_version}"));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    Some(PathBuf::from(
        v["Dir"]
            .as_str()
            .unwrap_or_else(|| panic!("{module_at_version}: {v}")),
    ))
}

/// The OpenTelemetry Collector of `tests/collector/builder.yaml`, built once
/// with the Collector builder (rebuilt when that file changes).
pub fn collector(why: &str) -> Option<PathBuf> {
    let builder = install(
        "go.opentelemetry.io/collector/cmd/builder@v0.161.0",
        "builder",
        why,
    )?;
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/collector/builder.yaml"),
    )
    .unwrap();
    let out = tools_dir().join("otelcol");
    let bin = out.join("otelcol-graylens-test");
    let stamp = out.join("builder.yaml");
    let _one = GO.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() || std::fs::read_to_string(&stamp).ok().as_deref() != Some(&manifest) {
        eprintln!("building the Collector into {} (once)", out.display());
        std::fs::create_dir_all(&out).unwrap();
        let config = out.join("builder.generated.yaml");
        std::fs::write(
            &config,
            manifest.replacen(
                "dist:\n",
                &format!("dist:\n  output_path: {}\n", out.display()),
                1,
            ),
        )
        .unwrap();
        let mut c = Command::new(builder);
        go_env(&mut c);
        c.arg("--config").arg(&config);
        run(c, "the Collector builder");
        std::fs::write(&stamp, &manifest).unwrap();
    }
    Some(bin)
}
