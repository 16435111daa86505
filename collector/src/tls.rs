//! TLS for the three listeners (`[tls]`): rustls with a certificate chain
//! and key from PEM files, optionally requiring OTLP clients to present a
//! certificate signed by `client_ca_file` (mTLS; the API never asks for
//! one, browsers would not have it).
//!
//! The files are checked for changes at most every [`RECHECK`] when a
//! connection arrives and re-read when their modification time or size
//! changed, so a renewed certificate (cert-manager rewriting a Secret) is
//! served without a restart. A rewrite that does not load (a key that does
//! not match, a half-written file) keeps the previous certificates and is
//! logged; the next change is tried again.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How often the files are looked at, at most.
pub const RECHECK: Duration = Duration::from_secs(2);

/// `[tls]`: empty paths mean plain TCP.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first) served by all three listeners.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, OTLP clients (gRPC and HTTP) must
    /// present a certificate signed by one of them.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Every problem with these settings, the files included.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => out.push("tls.cert_file is set but tls.key_file is not".into()),
            (None, Some(_)) => out.push("tls.key_file is set but tls.cert_file is not".into()),
            (None, None) if self.client_ca_file.is_some() => out.push(
                "tls.client_ca_file needs tls.cert_file and tls.key_file (mTLS runs over TLS)"
                    .into(),
            ),
            _ => {}
        }
        if out.is_empty() && self.enabled() {
            if let Err(e) = Configs::load(self) {
                out.push(e);
            }
        }
        out
    }
}

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    OtlpGrpc,
    OtlpHttp,
    Api,
}

/// The rustls configurations of the three listeners, from one set of files.
struct Configs {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    api: Arc<ServerConfig>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

impl Configs {
    fn load(cfg: &TlsConfig) -> Result<Configs, String> {
        let (Some(cert_file), Some(key_file)) = (&cfg.cert_file, &cfg.key_file) else {
            return Err("tls.cert_file and tls.key_file are both needed".into());
        };
        let certs = read_certs("tls.cert_file", cert_file)?;
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| format!("tls.key_file {}: {e}", key_file.display()))?;
        let client_verifier = match &cfg.client_ca_file {
            None => None,
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in read_certs("tls.client_ca_file", ca)? {
                    roots
                        .add(c)
                        .map_err(|e| format!("tls.client_ca_file {}: {e}", ca.display()))?;
                }
                Some(
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| format!("tls.client_ca_file {}: {e}", ca.display()))?,
                )
            }
        };
        let build = |mtls: bool, alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, String> {
            let b = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?;
            let b = match (&client_verifier, mtls) {
                (Some(v), true) => b.with_client_cert_verifier(v.clone()),
                _ => b.with_no_client_auth(),
            };
            let mut c = b
                .with_single_cert(certs.clone(), key.clone_key())
                .map_err(|e| {
                    format!(
                        "tls.cert_file {} and tls.key_file {}: {e}",
                        cert_file.display(),
                        key_file.display()
                    )
                })?;
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(c))
        };
        Ok(Configs {
            grpc: build(true, &[b"h2"])?,
            http: build(true, &[b"h2", b"http/1.1"])?,
            api: build(false, &[b"h2", b"http/1.1"])?,
        })
    }
}

type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(cfg: &TlsConfig) -> Stamp {
    [&cfg.cert_file, &cfg.key_file, &cfg.client_ca_file]
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p.as_ref()?).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// The live TLS settings, reloaded when the files change.
pub struct Tls {
    cfg: TlsConfig,
    current: RwLock<Arc<Configs>>,
    checked: Mutex<(Instant, Stamp)>,
    /// Reloads that took effect, and those that failed (old certificates kept).
    pub reloads: std::sync::atomic::AtomicU64,
    pub reload_errors: std::sync::atomic::AtomicU64,
    pub handshake_failures: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cfg", &self.cfg).finish()
    }
}

impl Tls {
    /// Loads the files; `None` when TLS is off.
    pub fn new(cfg: &TlsConfig) -> Result<Option<Arc<Tls>>, String> {
        if !cfg.enabled() {
            return Ok(None);
        }
        let configs = Configs::load(cfg)?;
        Ok(Some(Arc::new(Tls {
            checked: Mutex::new((Instant::now(), stamp(cfg))),
            cfg: cfg.clone(),
            current: RwLock::new(Arc::new(configs)),
            reloads: Default::default(),
            reload_errors: Default::default(),
            handshake_failures: Default::default(),
        })))
    }

    /// Counts and logs a connection whose TLS handshake failed (no client
    /// certificate, an untrusted one, plain HTTP on a TLS port, a timeout).
    pub fn handshake_failed(&self, peer: std::net::SocketAddr, e: &dyn std::fmt::Display) {
        self.handshake_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(%peer, error = %e, "TLS handshake failed");
    }

    /// The TLS handshake of a connection accepted on `listener`, at most
    /// `timeout`; `None` (counted and logged) when it fails.
    pub async fn handshake(
        &self,
        listener: Listener,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        timeout: Duration,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        match tokio::time::timeout(timeout, self.acceptor(listener).accept(stream)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                self.handshake_failed(peer, &e);
                None
            }
            Err(_) => {
                self.handshake_failed(peer, &"no handshake within the timeout");
                None
            }
        }
    }

    /// Whether OTLP clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.cfg.client_ca_file.is_some()
    }

    /// The acceptor for a new connection on `listener`, with the files
    /// re-read first if they changed.
    pub fn acceptor(&self, listener: Listener) -> tokio_rustls::TlsAcceptor {
        self.reload_if_changed();
        let c = self.current.read().expect("lock").clone();
        tokio_rustls::TlsAcceptor::from(match listener {
            Listener::OtlpGrpc => c.grpc.clone(),
            Listener::OtlpHttp => c.http.clone(),
            Listener::Api => c.api.clone(),
        })
    }

    fn reload_if_changed(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut checked = self.checked.lock().expect("lock");
        if checked.0.elapsed() < RECHECK {
            return;
        }
        checked.0 = Instant::now();
        let now = stamp(&self.cfg);
        if now == checked.1 {
            return;
        }
        match Configs::load(&self.cfg) {
            Ok(c) => {
                *self.current.write().expect("lock") = Arc::new(c);
                checked.1 = now;
                self.reloads.fetch_add(1, Relaxed);
                tracing::info!("TLS certificates reloaded");
            }
            Err(e) => {
                // Keep serving the old ones; try again at the next change
                // (a half-written file is usually complete a moment later).
                self.reload_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous certificates");
            }
        }
    }
}

/// A server-side TLS connection as tonic wants it (with the peer address).
pub struct TlsConn(pub tokio_rustls::server::TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
