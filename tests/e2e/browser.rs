//! Headless Chromium for the UI tests: the DOM after a page's scripts ran
//! (`--dump-dom`), screenshots, and [`Page`], a tab driven over the DevTools
//! protocol for what needs answers from a user (the token prompt).

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

pub fn chromium() -> PathBuf {
    let p = std::env::var_os("GRAYLENS_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.exists(),
        "headless Chromium not found at {}: run `bash .ci/run` (it installs Debian's chromium) or set GRAYLENS_TEST_CHROMIUM",
        p.display()
    );
    p
}

/// Flags for a closed network (no background connections, no updates).
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
];

/// A one-shot Chromium (`--dump-dom`, `--screenshot`) that lets the page's
/// scripts run for up to 8 s of virtual time.
fn browser(profile: &Path) -> Command {
    let mut c = Command::new(chromium());
    c.args(FLAGS)
        .arg("--virtual-time-budget=8000")
        .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// The page's DOM once its scripts have run.
pub fn dom(profile: &Path, url: &str) -> String {
    let out = browser(profile)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn screenshot(profile: &Path, url: &str, file: &Path) {
    let out = browser(profile)
        .arg("--window-size=1400,2600")
        .arg(format!("--screenshot={}", file.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "screenshot {} is {size} bytes",
        file.display()
    );
}

/// One tab of a headless Chromium driven over the DevTools protocol.
/// JavaScript dialogs (`window.prompt`) are answered from `answers`, in
/// order, and their messages recorded in `prompts`.
pub struct Page {
    child: Child,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    pub answers: VecDeque<String>,
    pub prompts: Vec<String>,
}

impl Page {
    pub fn open(profile: &Path) -> Page {
        let mut child = Command::new(chromium())
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args([
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID";
        // the rest of stderr is drained so that Chromium never blocks on it.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let url = loop {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0,
                "chromium exited before listening for DevTools"
            );
            if let Some(u) = line.trim().strip_prefix("DevTools listening on ") {
                break u.to_string();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let host = url
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .unwrap()
            .to_string();
        let tcp = TcpStream::connect(&host).unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), tcp).unwrap();
        // Short reads after the handshake: events are polled between checks.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut page = Page {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            answers: VecDeque::new(),
            prompts: Vec::new(),
        };
        let target = page.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = page.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        page.session = attached["sessionId"].as_str().unwrap().to_string();
        page.call("Page.enable", json!({}));
        page
    }

    /// Sends a command (to the tab once attached) and returns its result,
    /// handling events that arrive meanwhile.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::text(msg.to_string())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let Some(m) = self.next_message() else {
                continue;
            };
            if m["id"] == id {
                assert!(m["error"].is_null(), "{method}: {m}");
                return m["result"].clone();
            }
        }
    }

    /// The next message, after answering it if it is a dialog; None on a
    /// read timeout.
    fn next_message(&mut self) -> Option<Value> {
        let text = match self.ws.read() {
            Ok(Message::Text(t)) => t,
            Ok(_) => return None,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(e) => panic!("DevTools connection: {e}"),
        };
        let m: Value = serde_json::from_str(&text).unwrap();
        if m["method"] == "Page.javascriptDialogOpening" {
            self.prompts
                .push(m["params"]["message"].as_str().unwrap_or("").to_string());
            let answer = self.answers.pop_front();
            self.next_id += 1;
            let reply = json!({
                "id": self.next_id,
                "sessionId": self.session,
                "method": "Page.handleJavaScriptDialog",
                "params": {"accept": answer.is_some(), "promptText": answer.unwrap_or_default()},
            });
            self.ws.send(Message::text(reply.to_string())).unwrap();
        }
        Some(m)
    }

    /// Handles events (answers dialogs) for `d`.
    pub fn pump(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            let _ = self.next_message();
        }
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    pub fn reload(&mut self) {
        self.call("Page.reload", json!({}));
    }

    /// The value of a JavaScript expression (awaited if a promise).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits until the page's text contains `want`; returns the text.
    pub fn wait_text(&mut self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self
                .eval("document.body ? document.body.innerText : ''")
                .as_str()
                .unwrap_or("")
                .to_string();
            if text.contains(want) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {want:?}:\n{text}"
            );
            // Answers dialogs and lets the page's requests run.
            let _ = self.next_message();
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
