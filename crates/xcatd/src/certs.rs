//! `xcatd init`: the CA, the server credential and a client credential, in
//! xCAT's file layout, created once and never overwritten without `--force`.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Files of the credential set.
pub struct CertPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cred: PathBuf,
}

impl CertPaths {
    pub fn new(cert_dir: &Path) -> Self {
        CertPaths {
            ca_cert: cert_dir.join("ca.pem"),
            // The CA key lives beside the certificates, readable by root only;
            // it is needed to issue more client credentials later.
            ca_key: cert_dir.join("ca-key.pem"),
            server_cred: cert_dir.join("server-cred.pem"),
        }
    }
}

/// What `init` did, for the operator.
#[derive(Default)]
pub struct InitReport {
    pub created: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Write to a temporary name with the final mode, then rename: a key is
    // never readable by others, not even for a moment, and never half-written.
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

fn validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    // A CA name unique to this installation: a certificate from another
    // installation's CA is then reported as "unknown issuer", not as a
    // confusing signature mismatch.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        ^ u128::from(std::process::id());
    dn.push(
        DnType::CommonName,
        format!(
            "xcatd CA {} {:x}",
            crate::config::short_hostname(),
            nonce & 0xffff_ffff_ffff
        ),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params);
    Ok(params)
}

/// The CA as an issuer: loaded from disk, or created.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: String,
}

fn load_or_create_ca(
    paths: &CertPaths,
    force: bool,
    report: &mut InitReport,
) -> anyhow::Result<Ca> {
    if !force && paths.ca_cert.exists() && paths.ca_key.exists() {
        let pem = fs::read_to_string(&paths.ca_cert)?;
        let key_pem = fs::read_to_string(&paths.ca_key)?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("cannot read the CA key {}", paths.ca_key.display()))?;
        let params = CertificateParams::from_ca_cert_pem(&pem).with_context(|| {
            format!("cannot read the CA certificate {}", paths.ca_cert.display())
        })?;
        // Re-signing the same parameters with the same key yields an issuer
        // whose name and key match the certificate on disk.
        let cert = params.self_signed(&key)?;
        report.kept.push(paths.ca_cert.clone());
        return Ok(Ca { cert, key, pem });
    }
    if !force && (paths.ca_cert.exists() || paths.ca_key.exists()) {
        bail!(
            "{} or {} exists without the other; restore it or run `xcatd init --force` to start over",
            paths.ca_cert.display(),
            paths.ca_key.display()
        );
    }
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    let pem = cert.pem();
    write_file(&paths.ca_key, &key.serialize_pem(), 0o600)?;
    write_file(&paths.ca_cert, &pem, 0o644)?;
    report.created.push(paths.ca_cert.clone());
    report.created.push(paths.ca_key.clone());
    Ok(Ca { cert, key, pem })
}

/// Names and addresses the server certificate is valid for.
fn server_sans(server_name: &str) -> Vec<SanType> {
    let mut names = vec![
        crate::config::full_hostname(),
        server_name.to_string(),
        "localhost".into(),
    ];
    names.sort();
    names.dedup();
    let mut sans: Vec<SanType> = names
        .iter()
        .filter_map(|n| n.clone().try_into().ok().map(SanType::DnsName))
        .collect();
    let mut ips: Vec<IpAddr> = vec!["127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")];
    if let Ok(addrs) = (crate::config::full_hostname().as_str(), 0).to_socket_addrs() {
        ips.extend(addrs.map(|a| a.ip()));
    }
    ips.sort();
    ips.dedup();
    sans.extend(ips.into_iter().map(SanType::IpAddress));
    sans
}

fn issue(ca: &Ca, cn: &str, sans: Vec<SanType>, server: bool) -> anyhow::Result<String> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // The server credential is also used as a client certificate when this
    // server talks to itself or to a peer server (policy row `trusted`).
    params.extended_key_usages = if server {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
    Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
}

/// Where the image-signing key lives in `cert_dir`.
pub fn image_key_path(cert_dir: &Path) -> PathBuf {
    cert_dir.join("image-signing.key")
}

/// Create what is missing: CA, server credential, a client credential for
/// `user` in `client_dir`, and the image-signing key (never replaced, not
/// even with `force`: images signed with it must stay verifiable).
pub fn init(
    cert_dir: &Path,
    server_name: &str,
    client_dir: &Path,
    user: &str,
    force: bool,
) -> anyhow::Result<InitReport> {
    let mut report = InitReport::default();
    let paths = CertPaths::new(cert_dir);
    let ca_was_new = force || !paths.ca_cert.exists();
    let ca = load_or_create_ca(&paths, force, &mut report)?;

    if force || ca_was_new || !paths.server_cred.exists() {
        let cred = issue(&ca, server_name, server_sans(server_name), true)?;
        write_file(&paths.server_cred, &cred, 0o600)?;
        report.created.push(paths.server_cred.clone());
    } else {
        report.kept.push(paths.server_cred.clone());
    }

    let client_cred = client_dir.join("client-cred.pem");
    let client_ca = client_dir.join("ca.pem");
    if force || ca_was_new || !client_cred.exists() {
        let cred = issue(&ca, user, Vec::new(), false)?;
        write_file(&client_cred, &cred, 0o600)?;
        report.created.push(client_cred);
    } else {
        report.kept.push(client_cred);
    }
    if force || ca_was_new || !client_ca.exists() {
        write_file(&client_ca, &ca.pem, 0o644)?;
        report.created.push(client_ca);
    } else {
        report.kept.push(client_ca);
    }
    let image_key = image_key_path(cert_dir);
    if xcat_image::signature::SigningKey::create(&image_key)? {
        report.created.push(image_key);
    } else {
        report.kept.push(image_key);
    }
    Ok(report)
}
