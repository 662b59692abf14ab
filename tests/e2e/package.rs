//! The Debian package `scripts/package` builds, on a fresh Debian 12 root
//! made with mmdebstrap (minbase plus the package's own dependencies): the
//! first install runs `xcatd init`, an upgrade keeps the database, the
//! credentials and an edited configuration, removal keeps all three, purge
//! takes the configuration only, and a later install finds the kept state
//! and leaves it alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use xcatd_tests::{bin, host, output_text, repo_root};

/// What an install must create, and no package operation may change.
const KEPT: &[&str] = &[
    "etc/xcat/cert/ca.pem",
    "etc/xcat/cert/ca-key.pem",
    "etc/xcat/cert/server-cred.pem",
    "root/.xcat/client-cred.pem",
    "var/lib/xcatd/xcatd.sqlite",
];
const CONFFILE: &str = "etc/xcatd/xcatd.toml";
const ADMIN_LINE: &str = "# the admin's own line\n";

/// Build the package from the binaries the tests use, as `version`.
fn build_package(version: &str, out: &Path) -> PathBuf {
    let bin_dir = bin("xcatd").parent().expect("bin dir").to_path_buf();
    let out_s = out.to_str().expect("utf-8 path");
    let script = repo_root().join("scripts/package");
    let deb = host(
        script.to_str().expect("utf-8 path"),
        &[
            "--bin-dir",
            bin_dir.to_str().expect("utf-8 path"),
            "--version",
            version,
            "--out",
            out_s,
            // The test looks at the contents, not the compression ratio.
            "--compress",
            "none",
        ],
    );
    PathBuf::from(deb.trim())
}

/// The package names of the .deb's `Depends` field, versions left off.
fn depends(deb: &Path) -> Vec<String> {
    let field = host(
        "dpkg-deb",
        &["-f", deb.to_str().expect("utf-8 path"), "Depends"],
    );
    field
        .split(',')
        .filter_map(|d| d.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// A minimal Debian 12 root holding what the package depends on.
fn debootstrap(root: &Path, include: &[String]) {
    host(
        "mmdebstrap",
        &[
            "--variant=minbase",
            "--quiet",
            &format!("--include={}", include.join(",")),
            "bookworm",
            root.to_str().expect("utf-8 path"),
            "http://deb.debian.org/debian",
        ],
    );
}

/// Run a command inside the root; its output, and whether it succeeded.
fn in_root(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("chroot")
        .arg(root)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .expect("chroot");
    (out.status.success(), output_text(&out))
}

fn in_root_ok(root: &Path, args: &[&str]) -> String {
    let (ok, text) = in_root(root, args);
    assert!(ok, "{args:?} in the test root failed:\n{text}");
    text
}

/// Install (or upgrade to) a package file, copied into the root first.
fn dpkg_install(root: &Path, deb: &Path) -> String {
    let name = deb.file_name().expect("file name");
    std::fs::copy(deb, root.join("tmp").join(name)).expect("copy the package");
    let inside = Path::new("/tmp").join(name);
    in_root_ok(root, &["dpkg", "-i", inside.to_str().expect("utf-8 path")])
}

/// Content and inode of each kept file: a file written again, or removed
/// and made anew, shows up as a difference.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>, u64)> {
    use std::os::unix::fs::MetadataExt;
    KEPT.iter()
        .map(|rel| {
            let p = root.join(rel);
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
            let ino = std::fs::metadata(&p).expect("metadata").ino();
            (rel.to_string(), data, ino)
        })
        .collect()
}

fn installed_version(root: &Path) -> Option<String> {
    let (ok, text) = in_root(
        root,
        &["dpkg-query", "-W", "-f=${Status} ${Version}", "xcatd"],
    );
    ok.then(|| text.trim().to_string())
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn package_installs_upgrades_removes_and_purges_on_a_fresh_debian_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the package test needs root (mmdebstrap, chroot)"
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let old = build_package("0.1.0~test1", &tmp.path().join("old"));
    let new = build_package("0.1.0~test2", &tmp.path().join("new"));
    let root = tmp.path().join("root");
    debootstrap(&root, &depends(&old));

    let log = dpkg_install(&root, &old);
    assert!(
        log.contains("created /etc/xcat/cert/server-cred.pem"),
        "{log}"
    );
    first_install_is_complete(&root);
    let state = snapshot(&root);
    append(&root.join(CONFFILE), ADMIN_LINE);

    let log = dpkg_install(&root, &new);
    assert!(
        !log.contains("created "),
        "the upgrade ran xcatd init:\n{log}"
    );
    assert_eq!(
        installed_version(&root).as_deref(),
        Some("install ok installed 0.1.0~test2")
    );
    assert!(state == snapshot(&root), "the upgrade changed kept state");
    let conf = std::fs::read_to_string(root.join(CONFFILE)).expect("conffile");
    assert!(
        conf.ends_with(ADMIN_LINE),
        "the upgrade replaced the edited configuration"
    );

    in_root_ok(&root, &["dpkg", "-r", "xcatd"]);
    for gone in ["usr/sbin/xcatd", "usr/bin/xcatclient", "usr/bin/capimage"] {
        assert!(!root.join(gone).exists(), "{gone} is left after removal");
    }
    assert!(
        root.join(CONFFILE).exists(),
        "removal took the configuration"
    );
    assert!(state == snapshot(&root), "removal changed kept state");

    in_root_ok(&root, &["dpkg", "-P", "xcatd"]);
    assert!(!root.join("etc/xcatd").exists(), "purge left /etc/xcatd");
    assert_eq!(
        installed_version(&root),
        None,
        "purge left the package known"
    );
    assert!(
        state == snapshot(&root),
        "purge changed the database or credentials"
    );

    let log = dpkg_install(&root, &new);
    assert!(
        !log.contains("created "),
        "a reinstall ran xcatd init over kept state:\n{log}"
    );
    assert!(state == snapshot(&root), "a reinstall changed kept state");
}

/// After the first install: the programs run in the new root, every
/// command the daemon serves is a link to the client, the state directory
/// is private, the configuration is a conffile (the kept files are
/// checked by the snapshot that follows).
fn first_install_is_complete(root: &Path) {
    let version = in_root_ok(root, &["xcatd", "--version"]);
    assert!(version.starts_with("xcatd "), "{version}");
    assert!(in_root_ok(root, &["xcatclient", "-h"]).contains("Usage: xcatclient"));
    let commands = in_root_ok(root, &["xcatd", "commands"]);
    assert!(commands.lines().any(|c| c == "capimage"), "{commands}");
    for c in commands.lines() {
        let link = root.join("usr/bin").join(c);
        let target = std::fs::read_link(&link).unwrap_or_else(|e| panic!("{c}: {e}"));
        assert_eq!(target, Path::new("xcatclient"), "{c}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("var/lib/xcatd")).expect("state dir");
    assert_eq!(mode.permissions().mode() & 0o777, 0o700);
    assert!(root.join("lib/systemd/system/xcatd.service").exists());
    let completion = root.join("usr/share/bash-completion/completions/capimage");
    assert_eq!(
        std::fs::read_link(&completion).ok(),
        Some(PathBuf::from("xcatclient"))
    );
    for page in [
        "man8/xcatd.8.gz",
        "man5/xcatd.toml.5.gz",
        "man1/capimage.1.gz",
    ] {
        assert!(root.join("usr/share/man").join(page).exists(), "{page}");
    }
    assert!(root
        .join("usr/share/xcatd/netboot/debian/compute.capimage.exlist")
        .exists());
    // The object templates, where mkdef and lsdef --template find them.
    assert!(root
        .join("usr/share/xcatd/templates/objects/node/switch.stanza")
        .exists());
    let conffiles = in_root_ok(root, &["dpkg-query", "-W", "-f=${Conffiles}", "xcatd"]);
    assert!(conffiles.contains("/etc/xcatd/xcatd.toml"), "{conffiles}");
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("append");
}

/// The packaged files, unpacked into `dir` as dpkg would place them.
fn unpack(deb: &Path, dir: &Path) {
    host(
        "dpkg-deb",
        &[
            "-x",
            deb.to_str().expect("utf-8 path"),
            dir.to_str().expect("utf-8 path"),
        ],
    );
}

#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn unit_file_passes_systemd_analyze_verify() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let deb = build_package("0.1.0~test1", tmp.path());
    let root = tmp.path().join("root");
    unpack(&deb, &root);
    // verify loads the unit's dependencies (sysinit.target, ...) from the
    // same root and checks that ExecStart's program is there: the root is
    // the package's files beside this machine's own systemd units.
    let units = root.join("usr/lib/systemd");
    std::fs::create_dir_all(&units).expect("mkdir");
    host(
        "cp",
        &[
            "-a",
            "/usr/lib/systemd/system",
            units.to_str().expect("utf-8 path"),
        ],
    );
    // ExecReload's kill comes from procps, one of the package's dependencies.
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/kill", root.join("bin/kill")).expect("copy kill");
    // Documentation= names man pages, which verify looks up with man: the
    // package's own are found through MANPATH.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=yes"])
        .arg(format!("--root={}", root.display()))
        .env("MANPATH", root.join("usr/share/man"))
        .arg("xcatd.service")
        .stdin(Stdio::null())
        .output()
        .expect("systemd-analyze");
    let text = output_text(&out);
    // Unknown keys and bad values are only warnings: any output fails.
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}
