//! Shared helpers for the integration tests. They need GNU tar and the
//! attr/acl/libcap2-bin tools, and fail loudly (never skip) when one is
//! missing. Those that change owners, make device nodes or set capabilities
//! also need root: they are of the root tier (`#[ignore]`d by plain
//! `cargo test`, run by `./scripts/test-all`) and assert root first.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

/// For the tests of the root tier: root, and `tools`.
pub fn require_root_and_tools(tools: &[&str]) {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests must run as root"
    );
    require_tools(tools);
}

pub fn require_tools(tools: &[&str]) {
    for t in tools {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "required tool {t} is missing (install the Debian packages tar, attr, acl, libcap2-bin, python3)");
    }
}

pub fn sh(script: &str) {
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "script failed: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub const TAR_FLAGS: &[&str] = &[
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--sparse",
    "--numeric-owner",
    "--one-file-system",
];

/// Runs GNU tar on `src` with the capture flags plus `extra`, returning the archive.
pub fn gnu_tar(src: &Path, extra: &[&str]) -> Vec<u8> {
    let out = Command::new("tar")
        .args(extra)
        .args(TAR_FLAGS)
        .arg("-C")
        .arg(src)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tar failed: {stderr}");
    out.stdout
}

/// Builds the test bed's edge-case tree in `dir` (which must exist). Returns nothing;
/// the tree is compared through manifests.
pub fn build_edge_tree(dir: &Path, with_sparse_1g: bool) {
    let d = dir.display();
    let deep: String = (0..40).map(|i| format!("d{i}/")).collect();
    let long255 = "L".repeat(255);
    sh(&format!(
        r#"cd '{d}'
echo hello > regular
: > empty
head -c 100 /dev/urandom > hundred
head -c 300000 /dev/urandom > bigger
mkdir -p '{deep}'
echo leaf > '{deep}leaf'
ln -s regular rel_link
ln -s /etc/passwd abs_link
ln -s nowhere/missing dangling
mkdir -p hl/a hl/b
echo linked > hl/a/one
ln hl/a/one hl/b/two
ln hl/a/one hl/three
mknod chardev c 1 7
mknod blockdev b 7 200
mkfifo fifo
python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind("sock")'
cp regular xattr_file
setfattr -n user.color -v blue xattr_file
setfattr -n trusted.secret -v s3cr3t xattr_file
setfattr -h -n trusted.onlink -v yes rel_link
cp regular capfile
setcap cap_net_raw+ep capfile
cp regular acl_file
setfacl -m u:4242:rwx,g:4343:r acl_file
mkdir acl_dir
setfacl -d -m u:4242:rx acl_dir
setfacl -m u:4242:rwx acl_dir
echo s > suid; chmod 4755 suid
echo g > sgid; chmod 2750 sgid
mkdir sticky; chmod 1777 sticky
mkdir sgid_dir; chmod 2775 sgid_dir
echo n > '{long255}'
mkdir weird
echo a > $'weird/bad\xff\xfename'
echo b > $'weird/new\nline'
echo c > weird/-dash
echo d > 'weird/ leading space'
echo e > 'weird/trailing space '
echo f > weird/nobody; chown 54321:54322 weird/nobody
ln -s regular weird/link_nobody; chown -h 54323:54324 weird/link_nobody
echo o > old; touch -d '1999-06-01 12:00:00.123456789' old
echo f > future; touch -d '2038-06-01 00:00:00' future
echo z > mode000; chmod 000 mode000
echo z > mode640; chmod 640 mode640
touch -h -d '2001-02-03 04:05:06' rel_link
touch -d '2005-01-01' hl deep weird
"#
    ));
    if with_sparse_1g {
        sh(&format!(
            "cd '{d}' && truncate -s 1G sparse1g && printf middle | dd of=sparse1g bs=1 seek=536870912 conv=notrunc status=none && printf end | dd of=sparse1g bs=1 seek=1073741821 conv=notrunc status=none"
        ));
    }
}

/// All of `src` packed into `dir` under packimage's name for `spec`.
pub fn pack_image(
    src: &Path,
    dir: &Path,
    spec: &xcat_image::pack::PackSpec,
    inputs: &xcat_image::pack::RecordInputs,
    progress: &xcat_image::pack::PackProgress,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<xcat_image::pack::PackOutcome, xcat_image::pack::PackError> {
    use xcat_image::pack::{self, Tree};
    let name = spec.file_name();
    pack::pack(Tree::whole(src), dir, &name, spec, inputs, progress, cancel)
}
