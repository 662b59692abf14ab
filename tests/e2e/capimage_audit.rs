//! The image's audit, end to end: the secrets a capture finds in a real
//! test-bed node (one planted sample of every kind), nothing in a clean
//! Debian root, `--scrub` removing them from the image (never from the
//! node), and the package list.

use xcat_image::report::CaptureReport;
use xcat_image::secrets::{Finding, SecretKind};
use xcat_remote::testbed::{Node, TestBed};
use xcatd_tests::{output_text as text, Daemon};

/// Planted secret values: none may appear in the report or the output.
const PASSWORD: &str = "PlantedPassw0rd";
const TOKEN: &str = "PlantedBearerToken123";
const AWS_SECRET: &str = "PlantedAwsSecretKey456";
/// A SHA-512 crypt hash (of nothing in particular).
const HASH: &str = "$6$plantedsalt$9QzUgN0mZ6fO1nqhVWwJ2x0d7Rr3x0uXl9m1q1c4yZpQ8hWJ3b2k5tLx7eVn6aR";

fn plant(node: &Node) {
    node.sh(&format!(
        "set -e\n\
         useradd -m -s /bin/bash alice\n\
         usermod -p '{HASH}' alice\n\
         ssh-keygen -q -t ed25519 -N '' -f /home/alice/.ssh_key_tmp </dev/null\n\
         mkdir -p /home/alice/.ssh /etc/ssl/private /etc/munge /home/alice/.aws\n\
         mv /home/alice/.ssh_key_tmp /home/alice/.ssh/id_ed25519; mv /home/alice/.ssh_key_tmp.pub /home/alice/.ssh/id_ed25519.pub\n\
         printf -- '-----BEGIN RSA PRIVATE KEY-----\\nMIIEpAIBAAKCAQEA\\n-----END RSA PRIVATE KEY-----\\n' > /etc/ssl/private/app.key\n\
         printf '\\005\\002\\000\\000\\000\\060keytab' > /etc/krb5.keytab\n\
         head -c 1024 /dev/urandom > /etc/munge/munge.key\n\
         printf '[default]\\naws_access_key_id = AKIAPLANTED\\naws_secret_access_key = {AWS_SECRET}\\n' > /home/alice/.aws/credentials\n\
         printf 'machine example.org login alice password {PASSWORD}\\n' > /home/alice/.netrc\n\
         printf 'ls\\ncurl -H \"Authorization: Bearer {TOKEN}\" https://example.org/\\n' > /home/alice/.zsh_history\n"
    ));
}

/// The findings but the test bed's own sshd host key (`xtb_host_*`, a
/// name sysclean does not know, so it stays in the image and is found):
/// the bed's, not Debian's.
fn findings(r: &CaptureReport) -> Vec<&Finding> {
    r.secrets
        .findings
        .iter()
        .filter(|f| !f.path.starts_with("/etc/ssh/xtb_host_"))
        .collect()
}

fn report(d: &Daemon) -> (CaptureReport, String) {
    let dir = d.install_dir().join("netboot/debian12/x86_64/compute");
    let raw = std::fs::read_to_string(dir.join("capimage-report.json")).expect("report");
    (serde_json::from_str(&raw).expect("report parses"), raw)
}

fn rootimg(d: &Daemon) -> std::path::PathBuf {
    d.install_dir()
        .join("netboot/debian12/x86_64/compute/rootimg")
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn a_clean_debian_root_has_no_secrets_and_lists_its_packages() {
    let node = TestBed::node("audclean");
    let d = Daemon::for_nodes(&[&node], "");
    let out = d.client(&["capimage", &node.name]);
    assert!(out.status.success(), "{}", text(&out));
    let (r, _) = report(&d);
    assert_eq!(findings(&r), Vec::<&Finding>::new());
    assert_eq!(r.secrets.count, 1, "the bed's host key: {:?}", r.secrets);
    assert!(r.secrets.scanned_files > 1000, "{:?}", r.secrets);
    assert_eq!(r.packages.manager, "dpkg");
    let installed = node.sh("dpkg-query -W -f '${db:Status-Status}\\n' | grep -cx installed");
    assert_eq!(r.packages.count.to_string(), installed.trim());
    let sshd = r
        .packages
        .packages
        .iter()
        .find(|p| p.name == "openssh-server");
    let version = node.sh("dpkg-query -W -f '${Version}' openssh-server");
    assert_eq!(sshd.map(|p| p.version.as_str()), Some(version.trim()));
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn planted_secrets_are_reported_and_scrub_removes_them_from_the_image() {
    let node = TestBed::node("audit");
    plant(&node);
    let d = Daemon::for_nodes(&[&node], "");
    let out = d.client(&["capimage", &node.name]);
    assert!(out.status.success(), "{}", text(&out));
    let (r, raw) = report(&d);
    let found = |kind: SecretKind, path: &str| {
        findings(&r)
            .iter()
            .any(|f| f.kind == kind && f.path == path)
    };
    for (kind, path) in [
        (SecretKind::PrivateKey, "/home/alice/.ssh/id_ed25519"),
        (SecretKind::PrivateKey, "/etc/ssl/private/app.key"),
        (SecretKind::KerberosKeytab, "/etc/krb5.keytab"),
        (SecretKind::MungeKey, "/etc/munge/munge.key"),
        (SecretKind::CloudCredentials, "/home/alice/.aws/credentials"),
        (SecretKind::Netrc, "/home/alice/.netrc"),
        (SecretKind::ShellHistoryToken, "/home/alice/.zsh_history"),
        (SecretKind::PasswordHash, "/etc/shadow"),
    ] {
        assert!(
            found(kind, path),
            "{kind:?} {path} not found: {:?}",
            r.secrets.findings
        );
    }
    assert_eq!(findings(&r).len(), 8, "{:?}", r.secrets.findings);
    let said = text(&out);
    assert!(said.contains("9 secrets left in the image"), "{said}");
    for secret in [PASSWORD, TOKEN, AWS_SECRET, HASH] {
        assert!(!raw.contains(secret), "{secret} in the report");
        assert!(!said.contains(secret), "{secret} in the output");
    }
    assert!(rootimg(&d).join("home/alice/.netrc").exists());

    let out = d.client(&["capimage", &node.name, "--scrub"]);
    assert!(out.status.success(), "{}", text(&out));
    let img = rootimg(&d);
    for gone in [
        "home/alice/.ssh/id_ed25519",
        "etc/ssl/private/app.key",
        "etc/krb5.keytab",
        "etc/munge/munge.key",
        "home/alice/.aws/credentials",
        "home/alice/.netrc",
        "home/alice/.zsh_history",
    ] {
        assert!(!img.join(gone).exists(), "{gone} still in the image");
    }
    assert!(img.join("home/alice/.ssh/id_ed25519.pub").exists());
    let shadow = std::fs::read_to_string(img.join("etc/shadow")).expect("shadow");
    assert!(shadow.contains(&format!("alice:!{HASH}:")), "{shadow}");
    assert!(
        text(&out).contains("scrub removed /home/alice/.netrc"),
        "{}",
        text(&out)
    );
    // The node keeps its own.
    node.sh("test -s /home/alice/.netrc && test -s /etc/munge/munge.key");
    // The published tree matches its manifest after the scrub.
    let v = d.client(&["imgverify", "debian12-x86_64-netboot-compute"]);
    assert!(v.status.success(), "{}", text(&v));
}
