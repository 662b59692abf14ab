//! Async TLS client for the xcatd protocol (used by `xcatclient` and tests),
//! plus the PEM helpers the daemon shares.
//!
//! STUB: signatures fixed; bodies to be written.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::framing::FrameError;
use crate::types::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("{path}: {msg}")]
    Pem { path: PathBuf, msg: String },
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("timed out connecting to {0}")]
    ConnectTimeout(String),
    #[error("TLS handshake with {addr} failed: {msg}")]
    Tls { addr: String, msg: String },
    #[error("reading the reply: {0}")]
    Frame(#[from] FrameError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Certificates from a PEM file (any number of CERTIFICATE blocks).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let _ = path;
    todo!()
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientError> {
    let _ = path;
    todo!()
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port`, `[v6]:port` or `host` (port 3001).
    pub host: String,
    /// CA the server's certificate must chain to.
    pub ca_pem: PathBuf,
    /// Client certificate + key in one PEM (xCAT's `client-cred.pem`), if any.
    pub client_cred: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Longest silence tolerated while reading replies; None waits forever.
    pub read_timeout: Option<Duration>,
    /// Check the server certificate's name too (the Perl client checks only the chain).
    pub verify_hostname: bool,
    /// Largest single response document accepted.
    pub max_response_bytes: usize,
}

impl ClientConfig {
    pub fn new(host: impl Into<String>, ca_pem: impl Into<PathBuf>) -> Self {
        ClientConfig {
            host: host.into(),
            ca_pem: ca_pem.into(),
            client_cred: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: None,
            verify_hostname: false,
            max_response_bytes: 64 << 20,
        }
    }
}

/// Writing half of a connection: sends requests (and the abort document).
pub struct RequestSender {
    #[allow(dead_code)]
    inner: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
}

impl RequestSender {
    pub async fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        let _ = req;
        todo!()
    }
    /// Send `<xcatrequest><abortcommand>1</abortcommand></xcatrequest>`.
    pub async fn send_abort(&mut self) -> Result<(), ClientError> {
        self.send(&Request::abort_document()).await
    }
}

/// Reading half of a connection: yields response documents.
pub struct ResponseStream {
    #[allow(dead_code)]
    inner: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
}

impl ResponseStream {
    /// Next response document; `Ok(None)` at end of stream.
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        todo!()
    }
}

/// Connect with timeout and do the TLS handshake.
pub async fn connect(cfg: &ClientConfig) -> Result<(RequestSender, ResponseStream), ClientError> {
    let _ = (cfg, Arc::new(()));
    todo!()
}

/// Convenience: send one request and collect every response until `serverdone`
/// or end of stream.
pub async fn run(cfg: &ClientConfig, req: &Request) -> Result<Vec<Response>, ClientError> {
    let (mut tx, mut rx) = connect(cfg).await?;
    tx.send(req).await?;
    let mut out = Vec::new();
    while let Some(r) = rx.next().await? {
        let done = r.is_serverdone();
        out.push(r);
        if done {
            break;
        }
    }
    Ok(out)
}
