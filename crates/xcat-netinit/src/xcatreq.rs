//! The boot-time requests a statelite node makes of xcatd, as xCAT's
//! `rc.statelite` makes them: TLS to `XCAT=`'s host and port without a client
//! certificate, one request document for `litefile` (or `litetree`),
//! the reply read to its end. The daemon answers for the node its address
//! names, so the request carries no node.
//!
//! The server's certificate is not checked: the node has no CA of its own
//! before its root is up, as with xCAT. What comes back only says which of
//! the image's paths are writable and where from; a forged answer can change
//! this node's own mounts, nothing on the server.
//!
//! The reply is read as rc.statelite reads it: the tags stripped, blank lines
//! dropped, the text after the first `:` of each line kept (so an xCAT
//! daemon's answer reads the same).

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// More than any litefile or litetree answer; a longer one is not read.
const MAX_REPLY: u64 = 4 << 20;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("XCAT={0} is not <address>:<port> (the initrd resolves no names)")]
    Address(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the daemon refused: {0}")]
    Refused(String),
}

/// Sends `command` to xcatd at `xcat` (`address:port`) and returns the
/// reply's lines as rc.statelite would see them.
pub fn request(xcat: &str, command: &str, timeout: Duration) -> Result<Vec<String>, RequestError> {
    let addr: SocketAddrV4 = xcat
        .parse()
        .map_err(|_| RequestError::Address(xcat.to_string()))?;
    let tcp = TcpStream::connect_timeout(&addr.into(), timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let name = ServerName::IpAddress(std::net::IpAddr::V4(*addr.ip()).into());
    let conn = rustls::ClientConnection::new(config(), name)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = xcatd_proto::encode_request(&xcatd_proto::Request::new(command, Vec::new()));
    tls.write_all(req.as_bytes())?;
    tls.flush()?;
    let mut reply = Vec::new();
    match tls.take(MAX_REPLY).read_to_end(&mut reply) {
        Ok(_) => {}
        // the daemon closed without close_notify: what came is the reply
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    reply_lines(&String::from_utf8_lossy(&reply))
}

/// The lines of a reply; the daemon's `<error>` texts as an error.
pub fn reply_lines(xml: &str) -> Result<Vec<String>, RequestError> {
    let errors: Vec<String> = xml
        .split("<error>")
        .skip(1)
        .filter_map(|s| s.split_once("</error>").map(|(e, _)| unescape(e)))
        .collect();
    if !errors.is_empty() {
        return Err(RequestError::Refused(errors.join("; ")));
    }
    let mut text = String::with_capacity(xml.len());
    let mut in_tag = false;
    for c in xml.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Ok(unescape(&text)
        .lines()
        .filter_map(|l| l.split_once(':').map(|(_, rest)| rest.trim().to_string()))
        .filter(|l| !l.is_empty())
        .collect())
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(ring::default_provider());
    let verifier = Arc::new(AnyServer(provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

/// Takes any certificate (see the module documentation), but still checks
/// the handshake's signatures, so the session is with the key's holder.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_as_rc_statelite_reads_them() {
        let xml = "<xcatresponse><info>n1: tmpfs,rw      /etc/adjtime</info></xcatresponse>\n\
                   <xcatresponse><info>n1: persistent   /root/a&amp;b/</info></xcatresponse>\n\
                   <xcatresponse>\n<serverdone></serverdone><xcatdsource>mn</xcatdsource></xcatresponse>\n";
        assert_eq!(
            reply_lines(xml).unwrap(),
            ["tmpfs,rw      /etc/adjtime", "persistent   /root/a&b/"]
        );
        let e = reply_lines("<xcatresponse><error>Permission denied for request</error><errorcode>1</errorcode></xcatresponse>")
            .unwrap_err();
        assert!(e.to_string().contains("Permission denied"), "{e}");
        assert!(matches!(
            request("mn:3001", "litefile", Duration::from_secs(1)),
            Err(RequestError::Address(_))
        ));
    }
}
