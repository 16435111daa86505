//! `graylens demo --duration`: the one-command tour catches the injected
//! regression, delivers a verified rollback, and exits 0 with a summary.

use std::process::Command;

#[test]
fn the_demo_catches_the_regression_and_the_controller_verifies_the_rollback() {
    let out = Command::new(env!("CARGO_BIN_EXE_graylens"))
        .args(["demo", "--duration", "40s", "--regress-after", "12s"])
        .args([
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ])
        .args(["--http-addr", "127.0.0.1:0"])
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "graylens demo: open http://127.0.0.1:",
        "/compare?service=checkout&baseline=1.4.2&canary=1.5.0",
        "traffic flowing",
        "regression injected into 1.5.0",
        "verdict fail",
        "→ rolled_back",
        "controller: received rollback for checkout 1.5.0 (signature verified",
        "summary: ",
        "after the regression, signature verified",
    ] {
        assert!(
            stdout.contains(want),
            "demo output lacks {want:?}:\n{stdout}"
        );
    }
    // The verdict passed the identical versions before the regression, and
    // nothing was rolled back before it.
    let regression = stdout.find("regression injected").unwrap();
    let rollback = stdout.find("controller: received rollback").unwrap();
    assert!(rollback > regression, "{stdout}");
}
