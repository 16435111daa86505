//! Kubernetes packaging (issue #15), checked against the real schemas: the
//! Helm chart rendered by Helm itself (built from the Go module proxy) into
//! objects that validate strictly against the Kubernetes schemas
//! (`kubernetes-validate`) and the Prometheus Operator's ServiceMonitor CRD,
//! whose config graylens accepts with the files the pod mounts; values
//! graylens would refuse are refused by the chart; the Argo Rollouts and
//! Flagger examples validate against the CRDs in those projects' own Go
//! modules, and the README shows exactly those files.
//! Skipped, with the reason printed, without Go or the test Python.

use crate::gotools;
use crate::harness::Server;
use crate::tls::{client, https, leaf, new_ca};
use crate::traffic::{requests, Gen};
use rcgen::ExtendedKeyUsagePurpose;
use std::path::{Path, PathBuf};
use std::process::Command;

const HELM: &str = "helm.sh/helm/v4/cmd/helm@v4.3.2";
const ARGO_ROLLOUTS: &str = "github.com/argoproj/argo-rollouts@v1.9.1";
const FLAGGER: &str = "github.com/fluxcd/flagger@v1.41.0";
const PROMETHEUS_OPERATOR: &str = "github.com/prometheus-operator/prometheus-operator@v0.90.1";
const KUBERNETES: &str = "1.33.0";

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// The test virtualenv's Python (with `kubernetes-validate`), or None.
fn python(why: &str) -> Option<String> {
    let p = std::env::var("GRAYLENS_TEST_PYTHON").ok();
    if p.is_none() {
        eprintln!("GRAYLENS_TEST_PYTHON is not set: skipping {why} (.ci/run sets it)");
    }
    p
}

/// Runs `tests/python/validate_k8s.py` on `files` with `crds`; (passed, output).
fn validate(python: &str, crds: &[PathBuf], files: &[PathBuf]) -> (bool, String) {
    let mut c = Command::new(python);
    c.arg(repo("tests/python/validate_k8s.py"))
        .args(["--kubernetes", KUBERNETES]);
    for crd in crds {
        c.arg("--crd").arg(crd);
    }
    let out = c.args(files).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `helm template` of the chart with `values`; Err with Helm's message.
fn render(helm: &Path, dir: &Path, name: &str, values: &str) -> Result<PathBuf, String> {
    let values_file = dir.join(format!("{name}.values.yaml"));
    std::fs::write(&values_file, values).unwrap();
    let out = Command::new(helm)
        .args(["template", "graylens"])
        .arg(repo("deploy/helm/graylens"))
        .args(["--namespace", "observability", "--values"])
        .arg(&values_file)
        .env("HELM_CACHE_HOME", dir.join("helm-cache"))
        .env("HELM_CONFIG_HOME", dir.join("helm-config"))
        .env("HELM_DATA_HOME", dir.join("helm-data"))
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let rendered = dir.join(format!("{name}.rendered.yaml"));
    std::fs::write(&rendered, &out.stdout).unwrap();
    Ok(rendered)
}

/// The chart's graylens.toml, after `chart_config.py` checked that every file
/// it names is mounted; mount paths moved under `root`.
fn chart_config(python: &str, rendered: &Path, root: &Path) -> String {
    let out = Command::new(python)
        .arg(repo("tests/python/chart_config.py"))
        .arg(rendered)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .replace("/etc/graylens/", &format!("{}/", root.display()))
}

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn helm(why: &str) -> Option<PathBuf> {
    gotools::install(HELM, "helm", why)
}

#[test]
fn the_chart_renders_valid_objects_and_a_config_graylens_runs() {
    let why = "the Helm chart test";
    let (Some(python), Some(helm)) = (python(why), helm(why)) else {
        return;
    };
    let Some(prom) = gotools::module_dir(PROMETHEUS_OPERATOR, why) else {
        return;
    };
    let crds =
        [prom.join("example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml")];
    let dir = tempfile::tempdir().unwrap();

    // Tokens from Secrets, a ServiceMonitor with a read token, persistence.
    let tokens = r#"
auth:
  tokens:
  - {name: sdk, secretName: graylens-tokens, secretKey: sdk, scopes: [ingest]}
  - {name: viewer, secretName: graylens-tokens, secretKey: viewer, scopes: [read, write]}
serviceMonitor:
  enabled: true
  tokenSecret: {name: graylens-tokens, key: viewer}
config: |
  [store]
  retention_hours = 24
  [alerts]
  allowed_targets = ["https://deployer.shop.svc:8443/"]
"#;
    let rendered = render(&helm, dir.path(), "tokens", tokens).unwrap();
    let (ok, out) = validate(&python, &crds, std::slice::from_ref(&rendered));
    assert!(ok, "{out}");
    for kind in [
        "ConfigMap graylens (",
        "Service graylens (",
        "Service graylens-headless (",
        "ServiceAccount graylens (",
        "StatefulSet graylens (",
        "ServiceMonitor graylens (",
    ] {
        assert!(
            out.contains(&format!("OK {}: {kind}", rendered.display())),
            "{kind}: {out}"
        );
    }
    // graylens runs with that config and the tokens the pod would mount.
    let root = dir.path().join("tokens-root");
    put(&root, "tokens/sdk/token", "sdk-secret-1\n");
    put(&root, "tokens/viewer/token", "viewer-secret-2\n");
    let cfg = dir.path().join("tokens.toml");
    std::fs::write(&cfg, chart_config(&python, &rendered, &root)).unwrap();
    let mut s = Server::start_file(&dir.path().join("data1"), &cfg, "127.0.0.1:0");
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", s.otlp_http))
        .bearer_auth("sdk-secret-1")
        .header("content-type", "application/x-protobuf")
        .body(requests(&mut Gen(8), "chart", "1.0", 9, 10.0, 0.0))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.sql_raw("SELECT 1").0, 401);
    s.token = Some("viewer-secret-2".into());
    s.wait_count("SELECT count(*) FROM spans WHERE service_name = 'chart'", 9);
    s.stop();

    // TLS and mTLS from Secrets, no persistence, no tokens (allowed).
    let tls = r#"
auth: {allowUnauthenticated: true}
tls: {secretName: graylens-tls, clientCASecretName: graylens-client-ca}
persistence: {enabled: false}
serviceMonitor:
  enabled: true
  tlsConfig:
    ca: {secret: {name: graylens-tls, key: ca.crt}}
    serverName: graylens.observability.svc
"#;
    let rendered = render(&helm, dir.path(), "tls", tls).unwrap();
    let (ok, out) = validate(&python, &crds, std::slice::from_ref(&rendered));
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&rendered).unwrap();
    assert!(
        text.contains("scheme: HTTPS") && text.contains("scheme: https"),
        "{text}"
    );
    let ca = new_ca("chart CA");
    let clients = new_ca("chart clients");
    let (cert, key) = leaf(&ca, "graylens", ExtendedKeyUsagePurpose::ServerAuth);
    let root = dir.path().join("tls-root");
    put(&root, "tls/tls.crt", &cert);
    put(&root, "tls/tls.key", &key);
    put(&root, "client-ca/ca.crt", &clients.pem);
    let cfg = dir.path().join("tls.toml");
    std::fs::write(&cfg, chart_config(&python, &rendered, &root)).unwrap();
    let s = Server::start_file(&dir.path().join("data2"), &cfg, "127.0.0.1:0");
    let r = client(&ca, None)
        .get(format!("{}/api/v1/health", https(&s.api)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop();

    // A cluster: three pods sharing a bucket, each named by its pod.
    let cluster = r#"
auth: {allowUnauthenticated: true}
replicaCount: 3
storage: {url: "s3://telemetry/graylens", envSecretName: graylens-s3}
"#;
    let rendered = render(&helm, dir.path(), "cluster", cluster).unwrap();
    let (ok, out) = validate(&python, &crds, std::slice::from_ref(&rendered));
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&rendered).unwrap();
    for want in [
        "replicas: 3",
        "name: GRAYLENS_STORAGE_URL\n              value: \"s3://telemetry/graylens\"",
        "name: GRAYLENS_NODE_ID\n              valueFrom:\n                fieldRef:\n                  fieldPath: metadata.name",
        "envFrom:\n            - secretRef:\n                name: graylens-s3",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
}

#[test]
fn the_chart_refuses_values_graylens_would_refuse() {
    let why = "the Helm chart test";
    let Some(helm) = helm(why) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, values, want) in [
        ("defaults", "", "set auth.tokens"),
        (
            "incomplete-token",
            "auth:\n  tokens:\n  - {name: sdk, scopes: [ingest]}\n",
            "needs name, secretName, secretKey and scopes",
        ),
        (
            "auth-in-config",
            "auth: {allowUnauthenticated: true}\nconfig: |\n  [auth]\n  allow_unauthenticated = true\n",
            "must not contain [auth] or [tls]",
        ),
        (
            "client-ca-alone",
            "auth: {allowUnauthenticated: true}\ntls: {clientCASecretName: ca}\n",
            "tls.clientCASecretName needs tls.secretName",
        ),
        (
            "replicas-without-storage",
            "auth: {allowUnauthenticated: true}\nreplicaCount: 3\n",
            "replicaCount > 1 needs storage.url",
        ),
        (
            "storage-not-s3",
            "auth: {allowUnauthenticated: true}\nstorage: {url: \"gs://b/p\"}\n",
            "storage.url must be s3://bucket/prefix",
        ),
    ] {
        let err = render(&helm, dir.path(), name, values).expect_err(name);
        assert!(err.contains(want), "{name}: {err}");
    }
    let out = Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(repo("deploy/helm/graylens"))
        .args(["--set", "auth.allowUnauthenticated=true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's YAML blocks that start with `# deploy/...` and the files.
fn readme_blocks() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut rest = readme.as_str();
    while let Some(i) = rest.find("```yaml\n") {
        let body = &rest[i + 8..];
        let end = body.find("\n```").unwrap();
        let block = &body[..end + 1];
        if let Some(path) = block
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .filter(|p| p.starts_with("deploy/"))
        {
            blocks.push((path.to_string(), block.to_string()));
        }
        rest = &body[end..];
    }
    blocks
}

#[test]
fn argo_and_flagger_examples_match_the_real_crds_and_the_readme() {
    // The README shows the example files themselves (checked without Go).
    let files = |dirs: &[&str]| -> Vec<PathBuf> {
        dirs.iter()
            .flat_map(|d| std::fs::read_dir(repo(&format!("deploy/examples/{d}"))).unwrap())
            .map(|e| e.unwrap().path())
            .collect()
    };
    let examples = files(&["argo-rollouts", "flagger"]);
    assert!(examples.len() >= 5, "{examples:?}");
    let blocks = readme_blocks();
    for file in files(&["argo-rollouts", "flagger", "collector"]).iter() {
        let rel = file.strip_prefix(repo("")).unwrap().display().to_string();
        let (_, shown) = blocks
            .iter()
            .find(|(p, _)| *p == rel)
            .unwrap_or_else(|| panic!("the README does not show {rel}"));
        assert_eq!(
            *shown,
            std::fs::read_to_string(file).unwrap(),
            "the README's copy of {rel} differs from the file"
        );
    }

    let why = "the Argo Rollouts and Flagger CRD validation";
    let Some(python) = python(why) else {
        return;
    };
    let (Some(argo), Some(flagger)) = (
        gotools::module_dir(ARGO_ROLLOUTS, why),
        gotools::module_dir(FLAGGER, why),
    ) else {
        return;
    };
    let crds = [
        argo.join("manifests/crds/analysis-template-crd.yaml"),
        argo.join("manifests/crds/rollout-crd.yaml"),
        flagger.join("artifacts/flagger/crd.yaml"),
    ];
    let (ok, out) = validate(&python, &crds, &examples);
    assert!(ok, "{out}");
    for want in [
        "AnalysisTemplate graylens-verdict (CRD schema argoproj.io/v1alpha1)",
        "Rollout checkout (CRD schema argoproj.io/v1alpha1)",
        "Canary podinfo (CRD schema flagger.app/v1beta1)",
        "MetricTemplate graylens-error-rate (CRD schema flagger.app/v1beta1)",
        "Role graylens-rollouts (Kubernetes 1.33, strict)",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    // The validation can fail: the Canary the README used to show (no
    // targetRef) and a misspelt field.
    let dir = tempfile::tempdir().unwrap();
    let canary = std::fs::read_to_string(repo("deploy/examples/flagger/canary.yaml")).unwrap();
    let start = canary.find("  targetRef:").unwrap();
    let end = canary.find("  service:").unwrap();
    let bad = dir.path().join("canary.yaml");
    std::fs::write(&bad, format!("{}{}", &canary[..start], &canary[end..])).unwrap();
    let (ok, out) = validate(&python, &crds, &[bad]);
    assert!(
        !ok && out.contains("'targetRef' is a required property"),
        "{out}"
    );
    let template =
        std::fs::read_to_string(repo("deploy/examples/argo-rollouts/analysis-template.yaml"))
            .unwrap();
    let bad = dir.path().join("template.yaml");
    std::fs::write(
        &bad,
        template.replace("inconclusiveLimit", "inconclusiveLimt"),
    )
    .unwrap();
    let (ok, out) = validate(&python, &crds, &[bad]);
    assert!(
        !ok && out.contains("'inconclusiveLimt' was unexpected"),
        "{out}"
    );
}
