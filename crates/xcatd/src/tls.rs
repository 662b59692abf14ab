//! The server side of TLS: configuration from xCAT's credential layout, and
//! the identity (certificate CN) of a connected client.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use xcatd_proto::client::{load_certs, load_key};

/// Build the rustls server configuration from `cert_dir`.
///
/// Accepts `server-cred.pem` (certificate and key in one file, as xCAT keeps
/// it) or `server-cert.pem` + `server-key.pem`. Client certificates are
/// requested and verified against `ca.pem` but optional: an anonymous peer is
/// simply unauthenticated and policy decides what it may do.
pub fn server_config(cert_dir: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let ca_path = cert_dir.join("ca.pem");
    let cred = cert_dir.join("server-cred.pem");
    let (cert_path, key_path) = if cred.exists() {
        (cred.clone(), cred)
    } else {
        (
            cert_dir.join("server-cert.pem"),
            cert_dir.join("server-key.pem"),
        )
    };
    if !ca_path.exists() || !cert_path.exists() {
        bail!(
            "no server credentials in {} (need ca.pem and server-cred.pem); run `xcatd init` to create them",
            cert_dir.display()
        );
    }
    let ca = load_certs(&ca_path)?;
    let chain = load_certs(&cert_path)?;
    let key = load_key(&key_path)?;
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots
            .add(c)
            .with_context(|| format!("{} holds an unusable CA certificate", ca_path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("cannot build the client certificate verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| explain_cert_error(&e.to_string()))
        .with_context(|| format!("unusable server credential {}", cert_path.display()))?;
    Ok(Arc::new(config))
}

/// The common name of a certificate's subject (xCAT's username).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

/// Turn a TLS error into a message an operator can act on.
pub fn explain_cert_error(msg: &str) -> anyhow::Error {
    if msg.contains("UnsupportedSignatureAlgorithm") {
        anyhow::anyhow!(
            "{msg}: the certificate is signed with an algorithm this server refuses (old xCAT CAs used SHA-1); \
             regenerate the certificates with `xcatd init --force` and redistribute the client credentials"
        )
    } else if msg.contains("BadSignature") {
        anyhow::anyhow!(
            "{msg}: the certificate was not signed by this server's CA key (or uses an algorithm such as \
             SHA-1 that this server refuses); issue a new credential with `xcatd init --user NAME`"
        )
    } else {
        anyhow::anyhow!("{msg}")
    }
}
