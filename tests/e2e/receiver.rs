//! A stand-in for a rollout controller or webhook receiver: a real HTTP
//! server on 127.0.0.1 that records every request and answers with the
//! status it is told to; it can go down and come back on the same port.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The status the receiver answered.
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

#[derive(Default)]
struct Shared {
    log: Vec<Received>,
    status: u16,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Starts on a fresh port, answering `status`.
    pub fn start(status: u16) -> Receiver {
        let shared = Arc::new(Mutex::new(Shared {
            log: Vec::new(),
            status,
        }));
        Self::serve("127.0.0.1:0".parse().unwrap(), shared)
    }

    fn serve(addr: SocketAddr, shared: Arc<Mutex<Shared>>) -> Receiver {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let s = s.clone();
                        async move {
                            let mut sh = s.lock().unwrap();
                            let answered = sh.status;
                            sh.log.push(Received {
                                method: method.to_string(),
                                path: uri.path().to_string(),
                                headers: headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.as_str().to_string(),
                                            v.to_str().unwrap_or("").to_string(),
                                        )
                                    })
                                    .collect(),
                                body: body.to_vec(),
                                answered,
                            });
                            StatusCode::from_u16(answered).unwrap()
                        }
                    },
                );
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = ready_rx.recv().unwrap();
        Receiver {
            addr,
            shared,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.shared.lock().unwrap().status = status;
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().unwrap().log.clone()
    }

    /// Stops listening: connections are refused until [`Receiver::restart`].
    pub fn down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// Listens again on the same port, keeping the log.
    pub fn restart(&mut self) {
        let again = Self::serve(self.addr, self.shared.clone());
        *self = again;
    }

    /// Polls until `pred` holds over the log, or fails after `secs`.
    pub fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !pred(&self.requests()) {
            assert!(
                Instant::now() < deadline,
                "receiver: timed out waiting for {what}; got {:#?}",
                self.requests()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}
