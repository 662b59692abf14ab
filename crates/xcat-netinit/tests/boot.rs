//! `xcat-netinit boot` end to end, as root in a private mount namespace of
//! the test's own thread (every mount it makes disappears with the thread):
//! a packed tree served by the local server, the real binary run with the
//! `XCAT_NETINIT_*` files, the new root compared with the tree.

mod common;

use common::*;
use rustix::mount::MountPropagationFlags;
use rustix::thread::UnshareFlags;
use std::path::{Path, PathBuf};
use std::process::Command;
use xcat_netinit::mount::is_mount_point;

const TMPFS_MAGIC: i64 = 0x0102_1994;
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;

/// This thread gets mounts of its own, none of which reaches the host.
fn private_mounts() {
    rustix::thread::unshare(UnshareFlags::NEWNS).unwrap();
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .unwrap();
}

/// One boot's files: the command line, meminfo, the run directory, NEWROOT.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new(cmdline: &str, mem_mib: u64) -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cmdline"), format!("{cmdline}\n")).unwrap();
        std::fs::write(
            dir.path().join("meminfo"),
            format!("MemTotal:       {} kB\nMemFree:  1 kB\n", mem_mib * 1024),
        )
        .unwrap();
        Node { dir }
    }

    fn newroot(&self) -> PathBuf {
        self.dir.path().join("newroot")
    }

    fn run(&self) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_xcat-netinit"))
            .arg("boot")
            .arg(self.newroot())
            .env("XCAT_NETINIT_CMDLINE", self.dir.path().join("cmdline"))
            .env("XCAT_NETINIT_MEMINFO", self.dir.path().join("meminfo"))
            .env("XCAT_NETINIT_RUNDIR", self.dir.path().join("run"))
            .output()
            .unwrap()
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn record(format: &str, compression: &str, packed: &[u8], tree_bytes: u64, ram_mib: u64) -> String {
    use sha2::Digest;
    format!(
        "format={format}\ncompression={compression}\nsize={}\nsha256={}\ntree_bytes={tree_bytes}\nram_mib={ram_mib}\nfuture=1\n",
        packed.len(),
        hex::encode(sha2::Sha256::digest(packed))
    )
}

/// A packed copy of the test tree, made by a shell pipeline into `out`.
fn pack(t: &Path, pipeline: &str) -> (PathBuf, Vec<u8>) {
    let src = t.join("src");
    if !src.exists() {
        std::fs::create_dir(&src).unwrap();
        make_tree(&src, "256M");
    }
    let out = t.join("packed");
    sh(&format!(
        "cd {} && {pipeline} > {}",
        src.display(),
        out.display()
    ));
    (src, std::fs::read(&out).unwrap())
}

fn statfs(p: &Path) -> rustix::fs::StatFs {
    rustix::fs::statfs(p).unwrap()
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_tar_zst_image_becomes_a_tmpfs_root_despite_a_cut_and_a_503() {
    private_mounts();
    let t = tempfile::tempdir().unwrap();
    let (src, packed) = pack(
        t.path(),
        "tar --format=posix --xattrs --xattrs-include='*' --sparse -cf - . | zstd -q -3 --check",
    );
    let server = Server::start();
    let tree_bytes = 200 << 20;
    // xCAT's URLs have `//` after the port, and a server sees it
    server.put("//install/img/rootimg.tar.zst", packed.clone(), "v1");
    server.put(
        "//install/img/rootimg.tar.zst.info",
        record("tar", "zstd", &packed, tree_bytes, 1000).into_bytes(),
        "v1",
    );
    // the record's request comes first, then the image's
    server.faults([
        Fault::Pass,
        Fault::Unavailable,
        Fault::CutAfter(packed.len() as u64 / 2),
    ]);
    let url = server.url("//install/img/rootimg.tar.zst");
    let node = Node::new(
        &format!("BOOT_IMAGE=x imgurl={url} XCAT=127.0.0.1:3001 NODE=cn1"),
        4096,
    );
    let out = node.run();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("503 Service Unavailable; retrying in 1 s"),
        "{err}"
    );
    assert!(err.contains("retrying in 1 s from byte"), "{err}");
    assert!(
        err.contains("is ready: tar") && err.contains("(verified)"),
        "{err}"
    );
    let nr = node.newroot();
    let fs = statfs(&nr);
    assert_eq!(fs.f_type as i64, TMPFS_MAGIC);
    let size = fs.f_blocks * fs.f_bsize as u64;
    // the tree and its margin, or half the RAM (4096 MiB here) when larger
    let want = (tree_bytes + tree_bytes / 10 + (64 << 20)).max(2048 << 20);
    assert!(
        size.abs_diff(want) < 1 << 20,
        "tmpfs of {size} bytes, {want} wanted"
    );
    assert_eq!(listing(&nr), listing(&src));
    assert!(allocated(&nr.join("var/lib/sparse.img")) <= 64 * 1024);
    let root_mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&nr).unwrap().permissions());
    assert_eq!(root_mode & 0o7777, 0o755);
    xcat_netinit::mount::unmount(&nr).unwrap();
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_cpio_gz_image_without_a_record_boots_unverified() {
    private_mounts();
    let t = tempfile::tempdir().unwrap();
    let (src, packed) = pack(
        t.path(),
        "find . | LC_ALL=C sort | cpio --quiet -o -H newc | gzip -1",
    );
    let server = Server::start();
    server.put("/rootimg.cpio.gz", packed, "v1");
    let node = Node::new(
        &format!("imgurl={} rootlimit=512M", server.url("/rootimg.cpio.gz")),
        4096,
    );
    let out = node.run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no checksum published"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("(not verified)"), "{}", stderr(&out));
    let nr = node.newroot();
    let fs = statfs(&nr);
    assert_eq!(fs.f_blocks * fs.f_bsize as u64, 512 << 20);
    let strip_caps = |l: String| l.split("--\n").take(2).collect::<Vec<_>>().join("--\n");
    assert_eq!(strip_caps(listing(&nr)), strip_caps(listing(&src)));
    xcat_netinit::mount::unmount(&nr).unwrap();
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_checksum_mismatch_or_a_corrupt_byte_refuses_the_image_and_unmounts() {
    private_mounts();
    let t = tempfile::tempdir().unwrap();
    let (_, packed) = pack(t.path(), "tar --format=posix -cf - . | gzip -1");
    let server = Server::start();
    // the record of other bytes (of the same size): the archive unpacks,
    // the end says no
    let wrong = record("tar", "gzip", b"some other file", 1 << 30, 100)
        .replace("size=15", &format!("size={}", packed.len()));
    server.put("/a/rootimg.tar.gz", packed.clone(), "v1");
    server.put("/a/rootimg.tar.gz.info", wrong.into_bytes(), "v1");
    let node = Node::new(&format!("imgurl={}", server.url("/a/rootimg.tar.gz")), 4096);
    let out = node.run();
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("xcat-netinit: checking rootimg.tar.gz: its SHA-256 is"),
        "{err}"
    );
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("; the image on the server does not match its record"),
        "{err}"
    );
    assert!(!is_mount_point(&node.newroot()), "NEWROOT left mounted");

    // one byte changed in the middle of the compressed stream
    let mut bad = packed.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    server.put("/b/rootimg.tar.gz", bad, "v1");
    server.put(
        "/b/rootimg.tar.gz.info",
        record("tar", "gzip", &packed, 1 << 30, 100).into_bytes(),
        "v1",
    );
    let node = Node::new(&format!("imgurl={}", server.url("/b/rootimg.tar.gz")), 4096);
    let out = node.run();
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(!is_mount_point(&node.newroot()), "NEWROOT left mounted");
    assert_eq!(std::fs::read_dir(node.newroot()).unwrap().count(), 0);
}

/// `image-record.txt` naming `files` (name, bytes), signed by `key`.
fn signed_record(key: &ring::signature::Ed25519KeyPair, files: &[(&str, &[u8])]) -> Vec<u8> {
    use ring::signature::KeyPair;
    use sha2::Digest;
    let mut f = xcat_record::Files::new();
    for (name, bytes) in files {
        f.insert(
            name.to_string(),
            (bytes.len() as u64, sha2::Sha256::digest(bytes).into()),
        );
    }
    let body = xcat_record::body(&f, key.public_key().as_ref());
    xcat_record::signed_text(&body, key.sign(body.as_bytes()).as_ref()).into_bytes()
}

fn ed25519_key() -> ring::signature::Ed25519KeyPair {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

/// With `imgkey=`, only the image the server signed boots: an archive
/// swapped together with its (unsigned) `.info`, a missing signed record or
/// a record of another key are refused.
#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn with_imgkey_only_the_signed_image_boots() {
    use ring::signature::KeyPair;
    private_mounts();
    let t = tempfile::tempdir().unwrap();
    let (_, packed) = pack(t.path(), "tar --format=posix -cf - . | gzip -1");
    let info = record("tar", "gzip", &packed, 1 << 30, 100).into_bytes();
    let (key, other) = (ed25519_key(), ed25519_key());
    let fp = xcat_record::fingerprint(key.public_key().as_ref());
    let signed = signed_record(
        &key,
        &[("rootimg.tar.gz", &packed), ("rootimg.tar.gz.info", &info)],
    );
    let server = Server::start();
    let boot = |dir: &str, fingerprint: &str| {
        let url = server.url(&format!("/{dir}/rootimg.tar.gz"));
        let node = Node::new(&format!("imgurl={url} imgkey={fingerprint}"), 4096);
        let out = node.run();
        assert!(!is_mount_point(&node.newroot()) || out.status.success());
        (node, out)
    };
    let put = |dir: &str, packed: &[u8], info: &[u8], record: Option<&[u8]>| {
        server.put(&format!("/{dir}/rootimg.tar.gz"), packed.to_vec(), "v1");
        server.put(&format!("/{dir}/rootimg.tar.gz.info"), info.to_vec(), "v1");
        if let Some(r) = record {
            server.put(&format!("/{dir}/image-record.txt"), r.to_vec(), "v1");
        }
    };

    put("good", &packed, &info, Some(&signed));
    let (node, out) = boot("good", &fp);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("signed by {fp}")),
        "{}",
        stderr(&out)
    );
    xcat_netinit::mount::unmount(&node.newroot()).unwrap();

    // another archive with a .info that matches it: the signed record says no
    let (_, swapped) = pack(t.path(), "tar --format=posix -cf - ./etc | gzip -1");
    let swapped_info = record("tar", "gzip", &swapped, 1 << 30, 100).into_bytes();
    put("swapped", &swapped, &swapped_info, Some(&signed));
    let (_, out) = boot("swapped", &fp);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not the one the signed record names"),
        "{}",
        stderr(&out)
    );

    put("unsigned", &packed, &info, None);
    let (_, out) = boot("unsigned", &fp);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no signed record"),
        "{}",
        stderr(&out)
    );

    let theirs = signed_record(
        &other,
        &[("rootimg.tar.gz", &packed), ("rootimg.tar.gz.info", &info)],
    );
    put("other", &packed, &info, Some(&theirs));
    let (_, out) = boot("other", &fp);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("not by {fp}")),
        "{}",
        stderr(&out)
    );
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_squashfs_image_is_loop_mounted_under_a_writable_overlay() {
    private_mounts();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_tree(&src, "256M");
    let sfs = t.path().join("rootimg.sfs");
    sh(&format!(
        "mksquashfs {} {} -noappend -quiet -comp gzip -xattrs >/dev/null",
        src.display(),
        sfs.display()
    ));
    let packed = std::fs::read(&sfs).unwrap();
    let server = Server::start();
    server.put("/i/rootimg.sfs", packed.clone(), "v1");
    server.put(
        "/i/rootimg.sfs.info",
        record("squashfs", "none", &packed, 1 << 30, 600).into_bytes(),
        "v1",
    );
    let node = Node::new(
        &format!("imgurl={} rootlimit=100M", server.url("/i/rootimg.sfs")),
        4096,
    );
    let out = node.run();
    assert!(out.status.success(), "{}", stderr(&out));
    let nr = node.newroot();
    assert_eq!(statfs(&nr).f_type as i64, OVERLAYFS_MAGIC);
    // the overlay's own root inode may differ in times: compare below it
    assert_eq!(listing(&nr), listing(&src));
    std::fs::write(nr.join("etc/new"), b"written at run time").unwrap();
    let run = node.dir.path().join("run");
    assert_eq!(
        std::fs::read(run.join("rw/upper/etc/new")).unwrap(),
        b"written at run time"
    );
    assert_eq!(std::fs::read(run.join("rootimg.sfs")).unwrap(), packed);
    let rw = statfs(&run.join("rw"));
    assert_eq!(rw.f_blocks * rw.f_bsize as u64, 100 << 20);
    for m in [nr, run.join("rw"), run.join("lower")] {
        xcat_netinit::mount::unmount(&m).unwrap();
    }
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn too_little_ram_and_bad_command_lines_stop_before_anything_is_mounted() {
    private_mounts();
    let server = Server::start();
    server.put("/r/rootimg.tar.xz", vec![1, 2, 3], "v1");
    server.put(
        "/r/rootimg.tar.xz.info",
        record("tar", "xz", &[1, 2, 3], 5 << 30, 6000).into_bytes(),
        "v1",
    );
    let node = Node::new(&format!("imgurl={}", server.url("/r/rootimg.tar.xz")), 2048);
    let out = node.run();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the image needs 6000 MiB of RAM to boot as tar, this node has 2048 MiB; pack it as squashfs"),
        "{}",
        stderr(&out)
    );
    for (line, says) in [
        ("quiet", "there is no imgurl="),
        (
            "imgurl=http://mgmt/x/rootimg.tar.gz",
            "is not an IP address",
        ),
        (
            "imgurl=https://10.0.0.1/rootimg.tar.gz",
            "not an http:// URL",
        ),
        (
            "imgurl=http://10.0.0.1/r.tar rootlimit=lots",
            "rootlimit=lots is not a size",
        ),
    ] {
        let node = Node::new(line, 4096);
        let out = node.run();
        assert_eq!(out.status.code(), Some(12), "{line}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("xcat-netinit: kernel command line: ") && err.contains(says),
            "{err}"
        );
        assert!(!node.newroot().exists());
    }
}
