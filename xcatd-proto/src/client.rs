//! Async TLS client for the xcatd protocol (used by `xcatclient` and tests),
//! plus the PEM helpers the daemon shares.
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::encode_request;
use crate::framing::{FrameError, ResponseReader};
use crate::types::{Request, Response};

/// Port of xcatd when `XCATHOST` names none (`site.xcatdport` default).
pub const DEFAULT_PORT: u16 = 3001;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Pem { path: PathBuf, msg: String },
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to {0}")]
    ConnectTimeout(String),
    #[error("TLS handshake with {addr} failed: {msg}")]
    Tls { addr: String, msg: String },
    #[error("reading the reply: {0}")]
    Frame(#[from] FrameError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Certificates from a PEM file (any number of CERTIFICATE blocks).
///
/// Other blocks (such as the private key in xCAT's combined `*-cred.pem`
/// files) are skipped; a file without any certificate is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let data = read_pem_file(path)?;
    let certs = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Pem {
            path: path.to_path_buf(),
            msg: format!("bad PEM data: {e}"),
        })?;
    if certs.is_empty() {
        return Err(ClientError::Pem {
            path: path.to_path_buf(),
            msg: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// Certificates in the same file are skipped, so xCAT's combined
/// certificate + key files work here as well as in [`load_certs`].
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientError> {
    let data = read_pem_file(path)?;
    match rustls_pemfile::private_key(&mut &data[..]) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(ClientError::Pem {
            path: path.to_path_buf(),
            msg: "no private key found (expected PKCS#8, PKCS#1 or SEC1 PEM)".into(),
        }),
        Err(e) => Err(ClientError::Pem {
            path: path.to_path_buf(),
            msg: format!("bad PEM data: {e}"),
        }),
    }
}

/// Split an `XCATHOST`-style address into host and port.
///
/// Accepts `host:port`, `[v6]:port`, `[v6]`, a bare IPv6 literal and a bare
/// host (port [`DEFAULT_PORT`]). The returned host has no brackets.
pub fn parse_host(spec: &str) -> Result<(String, u16), ClientError> {
    let spec = spec.trim();
    let bad = || ClientError::Resolve(format!("{spec}: not a valid host[:port]"));
    let parse_port = |p: &str| p.parse::<u16>().map_err(|_| bad());
    let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => parse_port(p.strip_prefix(':').ok_or_else(bad)?)?,
        };
        (host, port)
    } else if spec.parse::<Ipv6Addr>().is_ok() {
        (spec, DEFAULT_PORT)
    } else if let Some((host, port)) = spec.rsplit_once(':') {
        (host, parse_port(port)?)
    } else {
        (spec, DEFAULT_PORT)
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
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
    inner: Box<dyn AsyncWrite + Send + Unpin>,
}

impl RequestSender {
    /// Wrap any byte sink (the TLS write half in [`connect`]; a plain stream in tests).
    pub fn new(inner: Box<dyn AsyncWrite + Send + Unpin>) -> Self {
        RequestSender { inner }
    }

    pub async fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        let doc = encode_request(req);
        self.inner.write_all(doc.as_bytes()).await?;
        self.inner.flush().await?;
        Ok(())
    }
    /// Send `<xcatrequest><abortcommand>1</abortcommand></xcatrequest>`.
    pub async fn send_abort(&mut self) -> Result<(), ClientError> {
        self.send(&Request::abort_document()).await
    }
}

/// Reading half of a connection: yields response documents.
pub struct ResponseStream {
    reader: ResponseReader<Box<dyn AsyncRead + Send + Unpin>>,
}

impl ResponseStream {
    /// Wrap any byte source with the given limits (see [`ClientConfig`]).
    pub fn new(
        inner: Box<dyn AsyncRead + Send + Unpin>,
        max_response_bytes: usize,
        read_timeout: Option<Duration>,
    ) -> Self {
        ResponseStream {
            reader: ResponseReader::new(inner, max_response_bytes, read_timeout),
        }
    }

    /// Next response document; `Ok(None)` at end of stream.
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        Ok(self.reader.next_response().await?)
    }
}

/// DER encodings (tag, length, value) of the signature algorithm OIDs that use
/// SHA-1: sha1WithRSAEncryption, ecdsa-with-SHA1, dsa-with-sha1 and OIW's
/// sha1WithRSASignature.
const SHA1_SIGNATURE_OIDS: [&[u8]; 4] = [
    &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05,
    ],
    &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],
    &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03],
    &[0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1d],
];

fn mentions_sha1(der: &[u8]) -> bool {
    SHA1_SIGNATURE_OIDS.iter().any(|oid| {
        memchr::memmem::find(der, oid).is_some() || memchr::memmem::find(der, &oid[2..]).is_some()
    })
}

/// Certificate errors that an old SHA-1 signed xCAT certificate produces.
#[allow(deprecated)]
fn is_signature_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::BadSignature
                | CertificateError::UnsupportedSignatureAlgorithm
                | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
                | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
        )
    )
}

/// Server certificate verifier: the chain to the configured CA is always
/// checked; the server name only when asked. xCAT's Perl client checks only the
/// chain, and xCAT server certificates are often issued for a name other than
/// the one clients use, so name checking is opt-in.
///
/// `WebPkiServerVerifier` verifies the chain before the name, so a
/// `NotValidForName` error means the chain was fine.
#[derive(Debug)]
struct ChainVerifier {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
    /// Set when verification failed on a SHA-1 signature, for the error message.
    sha1_seen: AtomicBool,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(e) => {
                if is_signature_error(&e) {
                    let ctx_sha1 = matches!(
                        &e,
                        rustls::Error::InvalidCertificate(
                            CertificateError::UnsupportedSignatureAlgorithmContext { signature_algorithm_id, .. }
                            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { signature_algorithm_id, .. }
                        ) if mentions_sha1(signature_algorithm_id)
                    );
                    if ctx_sha1
                        || mentions_sha1(end_entity)
                        || intermediates.iter().any(|c| mentions_sha1(c))
                    {
                        self.sha1_seen.store(true, Ordering::Relaxed);
                    }
                }
                Err(e)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A readable reason for a failed handshake.
fn handshake_message(e: &std::io::Error, sha1_seen: bool, ca_sha1: bool, ca_pem: &Path) -> String {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    if is_signature_error(tls) {
        // rustls' own text for these lists every supported algorithm; keep it short.
        let what = match tls {
            rustls::Error::InvalidCertificate(CertificateError::BadSignature) => "bad signature",
            _ => "unsupported signature algorithm",
        };
        if sha1_seen || ca_sha1 {
            return format!(
                "invalid peer certificate ({what}): the server certificate or its CA ({}) is \
                 signed with SHA-1, which is no longer accepted; the certificates must be \
                 regenerated (`xcatd init --force`)",
                ca_pem.display()
            );
        }
        return format!(
            "invalid peer certificate ({what}); certificates made by old xCAT versions use \
             SHA-1 and must be regenerated (`xcatd init --force`)"
        );
    }
    if let rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) = tls {
        return format!(
            "{tls}: the server certificate is not signed by the CA in {}",
            ca_pem.display()
        );
    }
    tls.to_string()
}

/// Connect with timeout and do the TLS handshake.
///
/// `connect_timeout` bounds name resolution, each TCP connection attempt (every
/// resolved address is tried in turn) and the TLS handshake separately.
pub async fn connect(cfg: &ClientConfig) -> Result<(RequestSender, ResponseStream), ClientError> {
    let (host, port) = parse_host(&cfg.host)?;
    let tls = TlsSetup::new(cfg)?;
    let server_name = server_name(&host, cfg.verify_hostname)?;
    let (tcp, addr) = tcp_connect(cfg, &host, port).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls.config));
    let stream = match tokio::time::timeout(
        cfg.connect_timeout,
        connector.connect(server_name, tcp),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(ClientError::Tls {
                addr: addr.to_string(),
                msg: handshake_message(
                    &e,
                    tls.verifier.sha1_seen.load(Ordering::Relaxed),
                    tls.ca_sha1,
                    &cfg.ca_pem,
                ),
            })
        }
        Err(_) => {
            return Err(ClientError::Tls {
                addr: addr.to_string(),
                msg: format!("no handshake within {:?}", cfg.connect_timeout),
            })
        }
    };
    tracing::debug!(%addr, "connected to xcatd");
    let (rd, wr) = tokio::io::split(stream);
    Ok((
        RequestSender::new(Box::new(wr)),
        ResponseStream::new(Box::new(rd), cfg.max_response_bytes, cfg.read_timeout),
    ))
}

/// The client's TLS configuration, with what explains a failed handshake.
struct TlsSetup {
    config: rustls::ClientConfig,
    /// Notes whether the server's chain used SHA-1.
    verifier: Arc<ChainVerifier>,
    /// Whether the CA file itself mentions SHA-1.
    ca_sha1: bool,
}

impl TlsSetup {
    /// Trust in the CA file, TLS 1.3/1.2, and the client credentials if any.
    fn new(cfg: &ClientConfig) -> Result<TlsSetup, ClientError> {
        let ca_certs = load_certs(&cfg.ca_pem)?;
        let ca_sha1 = ca_certs.iter().any(|c| mentions_sha1(c));
        let mut roots = RootCertStore::empty();
        for c in ca_certs {
            roots.add(c).map_err(|e| ClientError::Pem {
                path: cfg.ca_pem.clone(),
                msg: format!("unusable CA certificate: {e}"),
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ClientError::Pem {
                path: cfg.ca_pem.clone(),
                msg: format!("unusable CA certificates: {e}"),
            })?;
        let verifier = Arc::new(ChainVerifier {
            inner,
            check_name: cfg.verify_hostname,
            sha1_seen: AtomicBool::new(false),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ClientError::Tls {
                addr: cfg.host.clone(),
                msg: format!("TLS configuration: {e}"),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let config = match &cfg.client_cred {
            Some(cred) => {
                let certs = load_certs(cred)?;
                let key = load_key(cred)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| ClientError::Pem {
                        path: cred.clone(),
                        msg: format!("unusable client credentials: {e}"),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(TlsSetup {
            config,
            verifier,
            ca_sha1,
        })
    }
}

/// The name the server's certificate is checked against (a placeholder when
/// names are not verified).
fn server_name(host: &str, verify_hostname: bool) -> Result<ServerName<'static>, ClientError> {
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) if verify_hostname => ServerName::IpAddress(ip.into()),
        Ok(_) => ServerName::try_from("localhost").expect("valid DNS name"),
        Err(_) => match ServerName::try_from(host.to_string()) {
            Ok(n) => n,
            Err(_) if !verify_hostname => {
                ServerName::try_from("localhost").expect("valid DNS name")
            }
            Err(e) => return Err(ClientError::Resolve(format!("{host}: {e}"))),
        },
    })
}

/// Resolves `host` and connects to the first address that answers.
async fn tcp_connect(
    cfg: &ClientConfig,
    host: &str,
    port: u16,
) -> Result<(TcpStream, std::net::SocketAddr), ClientError> {
    let addrs: Vec<_> = match tokio::time::timeout(
        cfg.connect_timeout,
        tokio::net::lookup_host((host, port)),
    )
    .await
    {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => return Err(ClientError::Resolve(format!("{host}: {e}"))),
        Err(_) => return Err(ClientError::Resolve(format!("{host}: timed out"))),
    };
    if addrs.is_empty() {
        return Err(ClientError::Resolve(format!("{host}: no addresses")));
    }
    let mut last_err = None;
    for addr in &addrs {
        match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                // Requests are small and written at once; do not let Nagle delay them.
                let _ = s.set_nodelay(true);
                return Ok((s, *addr));
            }
            Ok(Err(source)) => {
                last_err = Some(ClientError::Connect {
                    addr: addr.to_string(),
                    source,
                })
            }
            Err(_) => last_err = Some(ClientError::ConnectTimeout(addr.to_string())),
        }
    }
    Err(last_err.expect("at least one address was tried"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        let p = |s: &str| parse_host(s).unwrap();
        assert_eq!(p("mn1"), ("mn1".into(), 3001));
        assert_eq!(p("mn1:3002"), ("mn1".into(), 3002));
        assert_eq!(p("10.0.0.1:4000"), ("10.0.0.1".into(), 4000));
        assert_eq!(p("[::1]:3005"), ("::1".into(), 3005));
        assert_eq!(p("[fe80::1]"), ("fe80::1".into(), 3001));
        assert_eq!(p("fe80::1"), ("fe80::1".into(), 3001));
        assert_eq!(p("::1"), ("::1".into(), 3001));
        for bad in [
            "",
            ":3001",
            "mn1:",
            "mn1:port",
            "[::1",
            "[::1]x",
            "[]:1",
            "mn1:70000",
        ] {
            assert!(
                matches!(parse_host(bad), Err(ClientError::Resolve(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sha1_oid_detection() {
        // AlgorithmIdentifier content as rustls reports it (OID without tag) and full DER.
        assert!(mentions_sha1(&[
            0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00
        ]));
        assert!(mentions_sha1(&[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05
        ]));
        // sha256WithRSAEncryption
        assert!(!mentions_sha1(&[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b
        ]));
    }
}
