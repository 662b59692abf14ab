//! The TLS client against a real rustls server on loopback, with certificates
//! made for each test.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use xcatd_proto::client::{self, load_certs, load_key, ClientConfig, ClientError};
use xcatd_proto::{encode_response, FrameError, FrameLimits, Request, RequestReader, Response};

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn new_ca(cn: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A certificate + key PEM in xCAT's combined `*-cred.pem` layout.
fn issue(
    ca: &Ca,
    names: &[&str],
    cn: &str,
    purpose: ExtendedKeyUsagePurpose,
    key_first: bool,
) -> String {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    if key_first {
        format!("{}{}", key.serialize_pem(), cert.pem())
    } else {
        format!("{}{}", cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// What the test server does after reading the first request.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Reply,
    Silent,
    ExpectAbort,
}

#[derive(Debug, Default)]
struct ServerSaw {
    handshake_ok: bool,
    client_cert: bool,
    requests: Vec<Request>,
}

/// A one-connection server: xCAT's layout (`server-cred.pem` with cert and key,
/// CA for client certificates, which are requested but optional).
async fn serve_once(
    bind: &str,
    cred: &Path,
    ca_pem: &Path,
    behaviour: Behaviour,
) -> (SocketAddr, JoinHandle<ServerSaw>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca_pem).unwrap() {
        roots.add(c).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cred).unwrap(), load_key(cred).unwrap())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut saw = ServerSaw::default();
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(tls) = acceptor.accept(tcp).await else {
            return saw;
        };
        saw.handshake_ok = true;
        saw.client_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty());
        let (rd, mut wr) = tokio::io::split(tls);
        let mut reader = RequestReader::new(rd, FrameLimits::default());
        let Ok(Some(req)) = reader.next_request().await else {
            return saw;
        };
        saw.requests.push(req.clone());
        use tokio::io::AsyncWriteExt;
        match behaviour {
            Behaviour::Reply => {
                for r in [
                    Response::data(format!("hello {}", req.command)),
                    Response::data(format!("client-cert: {}", saw.client_cert)),
                    Response::serverdone(),
                ] {
                    wr.write_all(encode_response(&r).as_bytes()).await.unwrap();
                }
                wr.flush().await.unwrap();
            }
            Behaviour::Silent => {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Behaviour::ExpectAbort => {
                if let Ok(Some(abort)) = reader.next_request_untimed().await {
                    saw.requests.push(abort);
                    wr.write_all(encode_response(&Response::error("aborted")).as_bytes())
                        .await
                        .unwrap();
                    wr.write_all(encode_response(&Response::serverdone()).as_bytes())
                        .await
                        .unwrap();
                    wr.flush().await.unwrap();
                }
            }
        }
        // Let the client read everything before the connection closes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        saw
    });
    (addr, task)
}

struct Pki {
    dir: TempDir,
    ca: Ca,
    ca_pem: PathBuf,
    client_cred: PathBuf,
}

fn pki() -> Pki {
    let dir = TempDir::new().unwrap();
    let ca = new_ca("xcat test CA");
    let ca_pem = write(dir.path(), "ca.pem", &ca.cert.pem());
    let client_cred = write(
        dir.path(),
        "client-cred.pem",
        &issue(&ca, &[], "root", ExtendedKeyUsagePurpose::ClientAuth, false),
    );
    Pki {
        dir,
        ca,
        ca_pem,
        client_cred,
    }
}

impl Pki {
    fn server_cred(&self, name: &str) -> PathBuf {
        write(
            self.dir.path(),
            &format!("server-{name}.pem"),
            &issue(
                &self.ca,
                &[name],
                name,
                ExtendedKeyUsagePurpose::ServerAuth,
                false,
            ),
        )
    }
    fn config(&self, addr: &str) -> ClientConfig {
        let mut cfg = ClientConfig::new(addr, &self.ca_pem);
        cfg.client_cred = Some(self.client_cred.clone());
        cfg.connect_timeout = Duration::from_secs(5);
        cfg.read_timeout = Some(Duration::from_secs(5));
        cfg
    }
}

fn texts(resps: &[Response]) -> Vec<String> {
    resps
        .iter()
        .flat_map(|r| r.texts("data").map(str::to_string))
        .collect()
}

#[tokio::test]
async fn chain_checked_but_not_hostname_by_default() {
    let pki = pki();
    // The server certificate names another host, as xCAT certificates often do.
    let cred = pki.server_cred("othername.example");
    let (addr, server) = serve_once("127.0.0.1:0", &cred, &pki.ca_pem, Behaviour::Reply).await;
    let cfg = pki.config(&addr.to_string());
    assert!(!cfg.verify_hostname);
    let resps = client::run(&cfg, &Request::new("nodels", vec![]))
        .await
        .unwrap();
    assert_eq!(texts(&resps), ["hello nodels", "client-cert: true"]);
    assert!(resps.last().unwrap().is_serverdone());
    let saw = server.await.unwrap();
    assert!(saw.handshake_ok && saw.client_cert);
    assert_eq!(saw.requests[0].command, "nodels");
}

#[tokio::test]
async fn hostname_checked_when_asked() {
    let pki = pki();
    let cred = pki.server_cred("othername.example");
    let (addr, _server) = serve_once("127.0.0.1:0", &cred, &pki.ca_pem, Behaviour::Reply).await;
    let mut cfg = pki.config(&format!("localhost:{}", addr.port()));
    cfg.verify_hostname = true;
    match client::connect(&cfg).await {
        Err(ClientError::Tls { msg, .. }) => assert!(msg.contains("not valid for name"), "{msg}"),
        Err(e) => panic!("expected a TLS error, got {e}"),
        Ok(_) => panic!("a certificate for another name was accepted"),
    }

    // The right name passes the check.
    let cred = pki.server_cred("localhost");
    let (addr, server) = serve_once("127.0.0.1:0", &cred, &pki.ca_pem, Behaviour::Reply).await;
    let mut cfg = pki.config(&format!("localhost:{}", addr.port()));
    cfg.verify_hostname = true;
    let resps = client::run(&cfg, &Request::new("lsdef", vec![]))
        .await
        .unwrap();
    assert_eq!(texts(&resps)[0], "hello lsdef");
    assert!(server.await.unwrap().handshake_ok);
}

#[tokio::test]
async fn certificate_from_another_ca_fails() {
    let pki = pki();
    let other = new_ca("some other CA");
    for name in ["localhost", "othername.example"] {
        let cred = write(
            pki.dir.path(),
            "foreign.pem",
            &issue(
                &other,
                &[name],
                name,
                ExtendedKeyUsagePurpose::ServerAuth,
                false,
            ),
        );
        let (addr, server) = serve_once("127.0.0.1:0", &cred, &pki.ca_pem, Behaviour::Reply).await;
        match client::connect(&pki.config(&addr.to_string())).await {
            Err(ClientError::Tls { msg, .. }) => {
                assert!(msg.contains("not signed by the CA"), "{msg}")
            }
            Err(e) => panic!("expected a TLS error, got {e}"),
            Ok(_) => panic!("certificate from another CA accepted ({name})"),
        }
        let saw = server.await.unwrap();
        assert!(!saw.handshake_ok);
    }
}

#[tokio::test]
async fn client_certificate_is_optional() {
    let pki = pki();
    let cred = pki.server_cred("localhost");
    let (addr, server) = serve_once("127.0.0.1:0", &cred, &pki.ca_pem, Behaviour::Reply).await;
    let mut cfg = pki.config(&addr.to_string());
    cfg.client_cred = None;
    let resps = client::run(&cfg, &Request::new("authcheck", vec![]))
        .await
        .unwrap();
    assert_eq!(texts(&resps), ["hello authcheck", "client-cert: false"]);
    assert!(!server.await.unwrap().client_cert);
}

#[tokio::test]
async fn ipv6_literal_address() {
    let pki = pki();
    let cred = pki.server_cred("localhost");
    let (addr, server) = serve_once("[::1]:0", &cred, &pki.ca_pem, Behaviour::Reply).await;
    let cfg = pki.config(&format!("[::1]:{}", addr.port()));
    let resps = client::run(&cfg, &Request::new("nodels", vec![]))
        .await
        .unwrap();
    assert_eq!(texts(&resps)[0], "hello nodels");
    assert!(server.await.unwrap().handshake_ok);
}

#[tokio::test]
async fn silent_server_hits_read_timeout() {
    let pki = pki();
    let cred = pki.server_cred("localhost");
    let (addr, _server) = serve_once("127.0.0.1:0", &cred, &pki.ca_pem, Behaviour::Silent).await;
    let mut cfg = pki.config(&addr.to_string());
    cfg.read_timeout = Some(Duration::from_millis(300));
    let (mut tx, mut rx) = client::connect(&cfg).await.unwrap();
    tx.send(&Request::new("sleep", vec![])).await.unwrap();
    let t0 = std::time::Instant::now();
    let err = rx.next().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Frame(FrameError::IdleTimeout(_))),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn abort_document_reaches_the_server() {
    let pki = pki();
    let cred = pki.server_cred("localhost");
    let (addr, server) =
        serve_once("127.0.0.1:0", &cred, &pki.ca_pem, Behaviour::ExpectAbort).await;
    let (mut tx, mut rx) = client::connect(&pki.config(&addr.to_string()))
        .await
        .unwrap();
    tx.send(&Request::new("rinstall", vec!["-V".into()]))
        .await
        .unwrap();
    tx.send_abort().await.unwrap();
    let first = rx.next().await.unwrap().unwrap();
    assert_eq!(first.texts("error").collect::<Vec<_>>(), ["aborted"]);
    assert_eq!(first.errorcode(), 1);
    assert!(rx.next().await.unwrap().unwrap().is_serverdone());
    let saw = server.await.unwrap();
    assert_eq!(saw.requests.len(), 2);
    assert_eq!(saw.requests[0].args, ["-V"]);
    assert!(saw.requests[1].abort);
}

#[tokio::test]
async fn refused_connection_is_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pki = pki();
    match client::connect(&pki.config(&addr.to_string())).await {
        Err(ClientError::Connect { addr: a, .. }) => assert_eq!(a, addr.to_string()),
        Err(e) => panic!("expected a connect error, got {e}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}

#[tokio::test]
async fn pem_files_in_xcat_layouts() {
    let pki = pki();
    let dir = pki.dir.path();
    // cert then key, and key then cert: both hold one certificate and one key.
    for key_first in [false, true] {
        let p = write(
            dir,
            "cred.pem",
            &issue(
                &pki.ca,
                &["localhost"],
                "localhost",
                ExtendedKeyUsagePurpose::ServerAuth,
                key_first,
            ),
        );
        assert_eq!(load_certs(&p).unwrap().len(), 1);
        load_key(&p).unwrap();
    }
    // A chain file with several certificates.
    let two = format!("{}{}", pki.ca.cert.pem(), new_ca("second").cert.pem());
    let p = write(dir, "chain.pem", &two);
    let certs: Vec<CertificateDer> = load_certs(&p).unwrap();
    assert_eq!(certs.len(), 2);
    assert!(matches!(load_key(&p), Err(ClientError::Pem { .. })));
    let key_only = write(
        dir,
        "key.pem",
        &KeyPair::generate().unwrap().serialize_pem(),
    );
    assert!(matches!(
        load_certs(&key_only),
        Err(ClientError::Pem { .. })
    ));
    assert!(matches!(
        load_certs(&dir.join("missing.pem")),
        Err(ClientError::ReadFile { .. })
    ));
    // The client refuses to start without a usable CA.
    let mut cfg = pki.config("127.0.0.1:1");
    cfg.ca_pem = key_only;
    assert!(matches!(
        client::connect(&cfg).await,
        Err(ClientError::Pem { .. })
    ));
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian package `openssl`) is required by this test");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Old xCAT CAs signed with SHA-1: the handshake error must say so and how to fix it.
#[tokio::test]
async fn sha1_certificates_are_explained() {
    let pki = pki();
    let dir = pki.dir.path();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "oldca.key",
            "-out",
            "oldca.pem",
            "-sha1",
            "-days",
            "30",
            "-subj",
            "/CN=old xCAT CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    // PKCS#1 key, as old xCAT versions wrote it.
    openssl(dir, &["genrsa", "-traditional", "-out", "old.key", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "old.key",
            "-subj",
            "/CN=localhost",
            "-out",
            "old.csr",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "old.csr",
            "-CA",
            "oldca.pem",
            "-CAkey",
            "oldca.key",
            "-CAcreateserial",
            "-sha1",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-out",
            "old.pem",
        ],
    );
    let cert = std::fs::read_to_string(dir.join("old.pem")).unwrap();
    let key = std::fs::read_to_string(dir.join("old.key")).unwrap();
    assert!(key.contains("BEGIN RSA PRIVATE KEY"));
    let cred = write(dir, "old-server-cred.pem", &format!("{cert}{key}"));
    let old_ca = dir.join("oldca.pem");

    let (addr, _server) = serve_once("127.0.0.1:0", &cred, &old_ca, Behaviour::Reply).await;
    let mut cfg = ClientConfig::new(addr.to_string(), &old_ca);
    cfg.connect_timeout = Duration::from_secs(5);
    match client::connect(&cfg).await {
        Err(ClientError::Tls { msg, .. }) => {
            assert!(msg.contains("SHA-1"), "{msg}");
            assert!(msg.contains("xcatd init --force"), "{msg}");
        }
        Err(e) => panic!("expected a TLS error, got {e}"),
        Ok(_) => panic!("a SHA-1 signed certificate was accepted"),
    }
}

/// A peer that accepts TCP but never speaks TLS must not hang the client.
#[tokio::test]
async fn silent_peer_bounds_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let pki = pki();
    let mut cfg = pki.config(&addr.to_string());
    cfg.connect_timeout = Duration::from_millis(300);
    let t0 = std::time::Instant::now();
    match client::connect(&cfg).await {
        Err(ClientError::Tls { msg, .. }) => assert!(msg.contains("no handshake within"), "{msg}"),
        Err(e) => panic!("expected a TLS timeout, got {e}"),
        Ok(_) => panic!("handshake with a silent peer succeeded"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2));
    hold.abort();
}
