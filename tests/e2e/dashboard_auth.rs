//! The web UI with authentication (issue #10), in real headless Chromium:
//! with tokens on, the UI asks for a token once when the API answers 401,
//! keeps it for the browser session and sends it as a header; a graylens
//! told to listen beyond loopback without tokens warns on every page, in
//! `/api/v1/health` and in `/metrics`.

use crate::browser::{dom, Page};
use crate::harness::Server;
use crate::traffic::{requests, Gen};

const INGEST: &str = "ui-ingest-93d1";
const READ: &str = "ui-read-4be7";

#[test]
fn the_ui_asks_for_a_token_once_and_keeps_it_for_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for (name, token, scope) in [("ingest", INGEST, "ingest"), ("viewer", READ, "read")] {
        let f = dir.path().join(name);
        std::fs::write(&f, format!("{token}\n")).unwrap();
        toml.push_str(&format!(
            "[[auth.tokens]]\nname = \"{name}\"\ntoken_file = {:?}\nscopes = [\"{scope}\"]\n",
            f.display().to_string()
        ));
    }
    let mut s = Server::start_with(&dir.path().join("data"), &toml);
    let c = reqwest::blocking::Client::new();
    for (version, median) in [("1.4.2", 20.0), ("1.5.0", 24.0)] {
        let r = c
            .post(format!("{}/v1/traces", s.otlp_http))
            .bearer_auth(INGEST)
            .header("content-type", "application/x-protobuf")
            .body(requests(
                &mut Gen(5),
                "checkout",
                version,
                300,
                median,
                0.01,
            ))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    s.token = Some(READ.into());
    s.wait_count(
        "SELECT count(*) FROM spans WHERE service_name = 'checkout'",
        600,
    );

    // A token without the read scope is asked again, saying so; the right
    // one shows the data. The home page makes three requests at once: still
    // two prompts, not six.
    let mut page = Page::open(&dir.path().join("chromium"));
    page.answers.extend([INGEST.to_string(), READ.to_string()]);
    page.navigate(&format!("{}/", s.api));
    let text = page.wait_text("compare 1.4.2 → 1.5.0");
    assert!(text.contains("checkout"), "{text}");
    assert_eq!(page.prompts.len(), 2, "{:?}", page.prompts);
    assert!(page.prompts[0].contains("API token with the read scope"));
    assert!(
        page.prompts[1].contains(r#"token "ingest" lacks the "read" scope"#),
        "{:?}",
        page.prompts
    );
    assert_eq!(
        page.eval("sessionStorage.getItem('graylens.token')"),
        serde_json::json!(READ)
    );

    // Kept for the session: a reload and another page ask nothing.
    page.reload();
    page.wait_text("compare 1.4.2 → 1.5.0");
    page.navigate(&format!(
        "{}/compare?service=checkout&baseline=1.4.2&canary=1.5.0",
        s.api
    ));
    let text = page.wait_text("Latency distribution");
    assert!(text.contains("baseline: 1.4.2"), "{text}");
    assert_eq!(page.prompts.len(), 2, "asked again: {:?}", page.prompts);
    drop(page);

    // Another browser session: an unknown token is asked again; the prompt
    // dismissed, the page says why it shows nothing and its refreshes (every
    // 5 s) do not ask again.
    let mut page = Page::open(&dir.path().join("chromium-2"));
    page.answers.push_back("not-a-token".to_string());
    page.navigate(&format!("{}/", s.api));
    let text = page.wait_text("could not be read");
    assert!(text.contains("unknown token"), "{text}");
    assert_eq!(page.prompts.len(), 2, "{:?}", page.prompts);
    page.pump(std::time::Duration::from_secs(6));
    assert_eq!(page.prompts.len(), 2, "asked again: {:?}", page.prompts);
    s.stop();
}

#[test]
fn an_unauthenticated_graylens_beyond_loopback_warns_in_health_metrics_and_ui() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_on(
        &dir.path().join("data"),
        "[auth]\nallow_unauthenticated = true\n",
        "0.0.0.0:0",
    );
    let health: serde_json::Value = reqwest::blocking::get(format!("{}/api/v1/health", s.api))
        .unwrap()
        .json()
        .unwrap();
    let open = health["unauthenticated_listeners"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{health}");
    assert!(
        open[0].as_str().unwrap().starts_with("0.0.0.0:"),
        "{health}"
    );
    assert_eq!(s.metric("graylens_unauthenticated_listeners"), 1.0);
    let home = dom(&dir.path().join("chromium"), &format!("{}/", s.api));
    assert!(
        home.contains(r#"id="unauthenticated""#) && home.contains("auth.allow_unauthenticated"),
        "{home}"
    );
    s.stop();

    // On loopback, nothing to warn of.
    let s = Server::start(&dir.path().join("data2"));
    let health: serde_json::Value = reqwest::blocking::get(format!("{}/api/v1/health", s.api))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health, serde_json::json!({"status": "ok"}));
    assert_eq!(s.metric("graylens_unauthenticated_listeners"), 0.0);
    s.stop();
}
