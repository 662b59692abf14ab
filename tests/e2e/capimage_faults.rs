//! capimage under attack and under faults, end to end (real daemon, real
//! client, real test-bed nodes with sshd).
//!
//! Each test first captures its node normally and records the published
//! tree with `scan_tree`; then it provokes the failure (a hostile `tar` on
//! the node, the node or its ssh session killed, the link cut, the image
//! filesystem full, the client interrupted, the daemon SIGKILLed) and checks
//! that the published tree is byte-identical, that no staging tree is left
//! and that the client got one clear error naming the node.
//!
//! Captures use an exclusion list that leaves out the bulk of `/usr`, so a
//! normal capture takes seconds; the node's uplink is throttled with `tc`
//! when a capture must still be running when the fault strikes.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xcat_image::Manifest;
use xcat_remote::testbed::{Mode, Node, NodeOptions, TestBed};
use xcatd_tests::{
    host, in_node_netns, manifest, output_text as text, shape_uplink, ssh_config_for,
    unshape_uplink, Daemon, DaemonOptions,
};

/// Exclusions for every capture here: the defaults plus most of `/usr`.
const EXLIST: &str = "./tmp/*\n./proc/*\n./sys/*\n./dev/*\n./run/*\n./xcatpost/*\n./install/*\n\
                      ./usr/share/*\n./usr/lib/*\n./usr/libexec/*\n./var/cache/*\n./var/lib/apt/*\n";

/// Slow enough that a capture is still running seconds after it started.
const SLOW: &str = "2mbit";

// ----------------------------------------------------------------------------
// Fixture helpers
// ----------------------------------------------------------------------------

/// A daemon reaching `nodes`, with fast ssh keep-alives so a cut link is
/// noticed in seconds, and the nodes defined as in `Daemon::for_nodes`.
pub(crate) fn daemon(nodes: &[&Node]) -> Daemon {
    let first = nodes.first().expect("a node");
    let d = Daemon::start_with(DaemonOptions {
        // The bed's [ssh] lines, then options in the same section.
        extra_config: format!(
            "{}options = [\"ServerAliveInterval=2\", \"ServerAliveCountMax=3\"]\n",
            ssh_config_for(first)
        ),
        ..Default::default()
    });
    d.define_nodes(nodes);
    std::fs::write(exlist_path(&d), EXLIST).expect("exlist");
    d
}

pub(crate) fn exlist_path(d: &Daemon) -> PathBuf {
    d.root().join("faults.exlist")
}

fn capture_args(node: &str, profile: &str, x: &str) -> Vec<String> {
    vec![
        "capimage".into(),
        node.into(),
        "-p".into(),
        profile.into(),
        "-x".into(),
        x.into(),
    ]
}

/// A capture that must succeed.
pub(crate) fn capture_ok(d: &Daemon, node: &Node, profile: &str) -> Duration {
    let t = Instant::now();
    let x = exlist_path(d).display().to_string();
    let args = capture_args(&node.name, profile, &x);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = d.client(&args);
    assert!(
        out.status.success(),
        "capture of {} failed:\n{}\ndaemon log:\n{}",
        node.name,
        text(&out),
        d.log()
    );
    assert!(text(&out).contains("capimage: captured"), "{}", text(&out));
    t.elapsed()
}

fn staging_dirs(dir: &Path) -> Vec<PathBuf> {
    // Staging trees live in the image's private directory.
    std::fs::read_dir(dir.join(".private"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(".rootimg.staging-")
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The published image as it was before a fault.
pub(crate) struct Published {
    dir: PathBuf,
    manifest: Manifest,
    entries: Vec<String>,
}

impl Published {
    pub(crate) fn record(dir: &Path) -> Published {
        let manifest = manifest(&dir.join("rootimg"));
        assert!(
            manifest.len() > 100,
            "the first capture looks empty: {} entries",
            manifest.len()
        );
        Published {
            dir: dir.to_path_buf(),
            manifest,
            entries: dir_entries(dir),
        }
    }

    /// Problems with the image directory now (empty when intact).
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        let now = manifest(&self.dir.join("rootimg"));
        let diffs = self.manifest.diff(&now);
        if !diffs.is_empty() {
            v.push(format!(
                "rootimg changed ({} differences): {}",
                diffs.len(),
                diffs
                    .iter()
                    .take(10)
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        let staging = staging_dirs(&self.dir);
        if !staging.is_empty() {
            v.push(format!("staging left behind: {staging:?}"));
        }
        let entries = dir_entries(&self.dir);
        if entries != self.entries {
            v.push(format!(
                "image directory entries changed: {:?} -> {entries:?}",
                self.entries
            ));
        }
        v
    }

    fn assert_intact(&self, what: &str) {
        let p = self.problems();
        assert!(p.is_empty(), "{what}: {}", p.join("\n"));
    }
}

/// Names in an image directory, except the lock file.
fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("image dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".capimage.lock")
        .collect();
    v.sort();
    v
}

/// Limit what the node sends (its uplink: the capture stream).
fn throttle(node: &Node, rate: &str) {
    shape_uplink(node, rate, "32kb", "500ms");
}

fn link(node: &Node, state: &str) {
    in_node_netns(node, &["ip", "link", "set", "eth0", state]);
}

/// After the link came back: the default route the link-down removed, and
/// wait until the node's sshd answers again.
fn restore_route(node: &Node) {
    in_node_netns(
        node,
        &["ip", "route", "replace", "default", "via", "10.99.0.1"],
    );
    let addr: std::net::SocketAddr = format!("{}:22", node.addr).parse().expect("node address");
    wait_until(
        "the node's sshd reachable again",
        Duration::from_secs(15),
        || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok(),
    );
}

/// A client process running in the background; killed if still running
/// when dropped (a failing test never leaves it behind).
pub(crate) struct BgClient {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl BgClient {
    pub(crate) fn spawn(d: &Daemon, args: &[&str]) -> BgClient {
        let mut child = d
            .client_command(&d.home, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn client");
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let streams: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for mut s in streams {
            let out = out.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            }));
        }
        BgClient {
            child,
            out,
            readers,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the client to end (panics after `limit`); returns its status and output.
    pub(crate) fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the client did not end within {limit:?}; output so far:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status, self.text())
    }
}

impl Drop for BgClient {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn spawn_capture(d: &Daemon, node: &Node, profile: &str) -> BgClient {
    let x = exlist_path(d).display().to_string();
    let args = capture_args(&node.name, profile, &x);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    BgClient::spawn(d, &args)
}

/// Entries under `p`, counting at most `limit`.
fn count_entries(p: &Path, limit: usize) -> usize {
    let mut n = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            n += 1;
            if n >= limit {
                return n;
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    n
}

/// Wait until a capture into `dir` is streaming: a staging tree that
/// already holds entries. Returns the staging path.
fn wait_flowing(dir: &Path, client: &mut BgClient, limit: Duration) -> PathBuf {
    let start = Instant::now();
    loop {
        for s in staging_dirs(dir) {
            if count_entries(&s, 50) >= 50 {
                return s;
            }
        }
        assert!(
            client.running(),
            "the capture ended before the fault:\n{}",
            client.text()
        );
        assert!(
            start.elapsed() < limit,
            "no data arrived within {limit:?}; client output:\n{}",
            client.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until `cond` holds (panics with `what` after `limit`).
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a capture pipeline still runs on the node.
fn node_tar_running(node: &Node) -> bool {
    let out = node.exec_inside("ps -eo args | grep -v grep | grep -q -- 'tar --create'");
    out.status.success()
}

/// The client failed with errorcode 1 and an error naming the node.
fn assert_clear_error(status: ExitStatus, out: &str, node: &str, what: &str) {
    assert_eq!(
        status.code(),
        Some(1),
        "{what}: expected exit 1, got {status}; output:\n{out}"
    );
    let err_line = out.lines().find(|l| l.contains("Error")).unwrap_or("");
    eprintln!("{what}: {err_line}");
    assert!(
        err_line.contains(node),
        "{what}: the error line does not name {node}: {err_line:?}; output:\n{out}"
    );
}

fn unique() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", std::process::id(), t.subsec_nanos())
}

// ----------------------------------------------------------------------------
// Crafted tar archives
// ----------------------------------------------------------------------------

// Ustar archives built entry by entry, any name, any declared size: the builder
// xcat-image's own hostile-archive tests use.
use xcat_image::tar::testing::TarBuilder as Tar;

/// The node's `tar` replaced by a script that answers capture runs with a
/// crafted archive (and the real tar otherwise, so preflight passes).
pub(crate) const FAKE_TAR: &str = r#"#!/bin/bash
for a in "$@"; do
  if [ "$a" = --create ]; then
    cat >/dev/null
    cat /root/hostile.tar
    exit "$(cat /root/hostile.exit)"
  fi
done
exec /usr/bin/tar "$@"
"#;

/// A loop device on the host over a zeroed file: the target a device node
/// in a hostile archive points at. Detached on drop.
struct LoopDev {
    dev: PathBuf,
}

impl LoopDev {
    fn new(backing: &Path) -> LoopDev {
        std::fs::write(backing, vec![0u8; 1 << 20]).expect("backing file");
        let dev = host("losetup", &["-f", "--show", &backing.display().to_string()]);
        LoopDev {
            dev: PathBuf::from(dev.trim()),
        }
    }

    fn rdev(&self) -> (u64, u64) {
        let rdev = std::fs::metadata(&self.dev).expect("loop dev").rdev();
        (libc_major(rdev), libc_minor(rdev))
    }

    /// Whether anything but zeros was written to the device.
    fn written(&self) -> bool {
        let mut v = Vec::new();
        std::fs::File::open(&self.dev)
            .expect("open loop")
            .read_to_end(&mut v)
            .expect("read loop");
        v.iter().any(|&b| b != 0)
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

fn libc_major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)
}

fn libc_minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)
}

/// Facts about a host file that a hostile archive must not change.
fn file_facts(p: &Path) -> String {
    match std::fs::symlink_metadata(p) {
        Ok(m) => format!(
            "ino={} nlink={} size={} mtime={} mode={:o}",
            m.ino(),
            m.nlink(),
            m.len(),
            m.mtime(),
            m.mode()
        ),
        Err(e) => format!("error {e}"),
    }
}

// ----------------------------------------------------------------------------
// Tests
// ----------------------------------------------------------------------------

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn hostile_node_cannot_write_outside_the_staging_tree() {
    let node = TestBed::node("hostile");
    let d = daemon(&[&node]);
    // Images on their own 1 GiB filesystem: free space is measured there
    // only, and a 10 GB preallocation could not succeed.
    let _fs = LoopFs::new(
        &d.root().join("netboot.ext4"),
        &d.install_dir().join("netboot"),
        1024,
    );
    let t = capture_ok(&d, &node, "compute");
    eprintln!("first capture: {:.1}s", t.as_secs_f64());
    let dir = d.image_dir("compute");
    let before = Published::record(&dir);

    // Host-side canaries: a directory next to the install dir and a unique
    // absolute name under /tmp.
    let canary = d.root().join("canary");
    std::fs::create_dir_all(&canary).unwrap();
    std::fs::write(canary.join("keep"), "canary\n").unwrap();
    std::fs::write(canary.join("target"), "hard link target\n").unwrap();
    let loopdev = LoopDev::new(&d.root().join("loop-backing.img"));
    let canary_before = manifest(&canary);
    let target_facts = file_facts(&canary.join("target"));
    let shadow_facts = file_facts(Path::new("/etc/shadow"));
    let tmp_abs = format!("/tmp/xcatd-canary-{}", unique());
    // The staging tree is <root>/install/netboot/debian12/x86_64/compute/.private/
    // .rootimg.staging-*: seven levels below the daemon's root, beside which the
    // canary lives.
    assert!(staging_depth_ok(&d, &dir));
    let up = "../../../../../../..";
    let canary_abs = canary.display().to_string();
    let canary_rel = canary_abs.trim_start_matches('/').to_string();
    let node_root = PathBuf::from(format!("/proc/{}/root", node.init_pid));
    std::fs::create_dir_all(node_root.join("usr/local/bin")).unwrap();
    std::fs::write(node_root.join("usr/local/bin/tar"), FAKE_TAR).unwrap();
    host(
        "chmod",
        &[
            "0755",
            &node_root.join("usr/local/bin/tar").display().to_string(),
        ],
    );

    let (major, minor) = loopdev.rdev();
    let base = || Tar::default().dir("etc").file("etc/hostname", b"hostile\n");
    let big_prefix = base().file("a", &[7u8; 10_000]);
    let cut_mid = {
        let t = base().file("b", &[1u8; 100_000]);
        let l = t.len();
        t.cut(l - 60_000)
    };
    // (name, archive, exit status of the fake tar, what the error must say).
    // An exit status of 2 makes the capture fail on the node's side after
    // the whole archive was extracted, for archives the extractor may
    // legitimately accept (absolute names made relative, device nodes).
    let cases: Vec<(&str, Vec<u8>, i32, &[&str])> = vec![
        (
            "dot-dot entry",
            base()
                .file(&format!("{up}/canary/pwned-dotdot"), b"pwned\n")
                .end(),
            0,
            &[".."],
        ),
        (
            "dot-dot inside a name",
            base()
                .file(&format!("etc/{up}/../canary/pwned-inner"), b"pwned\n")
                .end(),
            0,
            &[".."],
        ),
        (
            "absolute names",
            base()
                .file(&format!("{canary_abs}/pwned-absolute"), b"pwned\n")
                .file(&format!("{tmp_abs}/pwned"), b"pwned\n")
                .end(),
            2,
            &[],
        ),
        (
            "symlink to / then a file under it",
            base()
                .symlink("escape", "/")
                .file(&format!("escape/{canary_rel}/pwned-symlink"), b"pwned\n")
                .file(&format!("escape{tmp_abs}/pwned"), b"pwned\n")
                .end(),
            0,
            &["escape"],
        ),
        (
            "relative symlink out of the tree then a file under it",
            base()
                .symlink("up", &format!("{up}/canary"))
                .file("up/pwned-relsymlink", b"pwned\n")
                .end(),
            0,
            &["up/pwned-relsymlink"],
        ),
        (
            "hard link to /etc/shadow",
            base().hardlink("shadow", "/etc/shadow").end(),
            0,
            &["shadow"],
        ),
        (
            "hard link out of the tree, then written through",
            base()
                .hardlink("t", &format!("{up}/canary/target"))
                .file("t", b"pwned through a hard link\n")
                .end(),
            0,
            &["t"],
        ),
        (
            "hard link to an absolute host path, then written through",
            base()
                .hardlink("t", &format!("{canary_abs}/target"))
                .file("t", b"pwned through a hard link\n")
                .end(),
            0,
            &["t"],
        ),
        (
            "device node and fifo over an existing file, then the file again",
            base()
                .file("etc/motd", b"first\n")
                .node("etc/motd", b'4', (major, minor))
                .file("etc/motd", b"pwned through a device node\n")
                .file("etc/issue", b"first\n")
                .node("etc/issue", b'6', (0, 0))
                .file("etc/issue", b"pwned through a fifo\n")
                .end(),
            2,
            &["tar exit 2"],
        ),
        (
            "10 GB declared, 1 MiB sent",
            base().short_file("huge", 10 << 30, 1 << 20).0,
            0,
            &["huge", "truncated"],
        ),
        ("stream cut inside a file", cut_mid, 0, &["b"]),
        (
            "stream cut at a header boundary",
            big_prefix.0.clone(),
            0,
            &["end"],
        ),
        ("garbage", vec![0x5au8; 4096], 0, &[]),
    ];

    let free_before = free_bytes(&dir);
    let mut failures = Vec::new();
    for (name, archive, exit, needles) in &cases {
        std::fs::write(node_root.join("root/hostile.tar"), archive).unwrap();
        std::fs::write(node_root.join("root/hostile.exit"), format!("{exit}\n")).unwrap();
        let t = Instant::now();
        let x = exlist_path(&d).display().to_string();
        let out = d.client(&["capimage", &node.name, "-p", "compute", "-x", &x]);
        let elapsed = t.elapsed();
        let out_text = text(&out);
        let err_line = out_text
            .lines()
            .find(|l| l.contains("Error"))
            .unwrap_or("")
            .to_string();
        eprintln!(
            "hostile case {name:?}: {:.1}s, {err_line}",
            elapsed.as_secs_f64()
        );
        let mut problems = Vec::new();
        if out.status.code() != Some(1) {
            problems.push(format!("exit {:?} instead of 1", out.status.code()));
        }
        if !err_line.contains(&node.name) {
            problems.push(format!(
                "the error line does not name the node: {err_line:?}"
            ));
        }
        for n in needles.iter() {
            if !err_line.contains(n) {
                problems.push(format!("the error line lacks {n:?}: {err_line:?}"));
            }
        }
        if elapsed > Duration::from_secs(30) {
            problems.push(format!("took {elapsed:?}"));
        }
        problems.extend(before.problems());
        let canary_now = manifest(&canary);
        let cd = canary_before.diff(&canary_now);
        if !cd.is_empty() {
            problems.push(format!("the host canary changed: {cd:?}"));
        }
        if file_facts(&canary.join("target")) != target_facts {
            problems.push(format!(
                "canary/target changed: {}",
                file_facts(&canary.join("target"))
            ));
        }
        if file_facts(Path::new("/etc/shadow")) != shadow_facts {
            problems.push("the host's /etc/shadow changed".into());
        }
        if Path::new(&tmp_abs).exists() {
            problems.push(format!("{tmp_abs} was created on the host"));
        }
        if loopdev.written() {
            problems.push("data was written through a device node".into());
        }
        let free_now = free_bytes(&dir);
        if free_now + (16 << 20) < free_before {
            problems.push(format!(
                "the image filesystem lost {} bytes",
                free_before - free_now
            ));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: {}\n  output: {}",
                problems.join("; "),
                out_text.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "hostile archives:\n{}\ndaemon log:\n{}",
        failures.join("\n"),
        d.log()
    );

    // What the extractor does with the two archives it may accept: let them
    // succeed into a throwaway image and look. Absolute names land inside
    // the image; the last entry of a name wins, as a new regular file that
    // was not written through the device node or the fifo before it.
    let accept = |case: &str, profile: &str| -> PathBuf {
        let (_, archive, _, _) = cases.iter().find(|c| c.0 == case).expect("case");
        std::fs::write(node_root.join("root/hostile.tar"), archive).unwrap();
        std::fs::write(node_root.join("root/hostile.exit"), "0\n").unwrap();
        let x = exlist_path(&d).display().to_string();
        let out = d.client(&[
            "capimage",
            &node.name,
            "-p",
            profile,
            "-x",
            &x,
            "--no-sysclean",
        ]);
        assert!(
            out.status.success(),
            "{case} with tar exit 0:\n{}",
            text(&out)
        );
        d.image_dir(profile).join("rootimg")
    };
    let accepted = accept("absolute names", "accepted-absolute");
    assert_eq!(
        std::fs::read_to_string(accepted.join(&canary_rel).join("pwned-absolute")).unwrap(),
        "pwned\n"
    );
    assert!(accepted
        .join(tmp_abs.trim_start_matches('/'))
        .join("pwned")
        .is_file());
    let accepted = accept(
        "device node and fifo over an existing file, then the file again",
        "accepted-devices",
    );
    for (f, want) in [
        ("etc/motd", "pwned through a device node\n"),
        ("etc/issue", "pwned through a fifo\n"),
    ] {
        let m = std::fs::symlink_metadata(accepted.join(f)).unwrap();
        assert!(m.file_type().is_file(), "{f} is not a regular file");
        assert_eq!(std::fs::read_to_string(accepted.join(f)).unwrap(), want);
    }
    assert!(!loopdev.written(), "data was written through a device node");
    assert!(
        canary_before.diff(&manifest(&canary)).is_empty(),
        "the host canary changed"
    );
    assert!(
        !Path::new(&tmp_abs).exists(),
        "{tmp_abs} was created on the host"
    );

    // The node, its real tar back, still captures fine into the same image.
    std::fs::remove_file(node_root.join("usr/local/bin/tar")).unwrap();
    capture_ok(&d, &node, "compute");
}

fn staging_depth_ok(d: &Daemon, dir: &Path) -> bool {
    dir.join(".private/x").ancestors().nth(7) == Some(d.root())
}

fn free_bytes(p: &Path) -> u64 {
    let out = host("df", &["-P", "-B1", &p.display().to_string()]);
    out.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|s| s.parse().ok())
        .expect("df output")
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn node_killed_mid_capture_leaves_the_image_intact() {
    let node = TestBed::node("killed");
    let d = daemon(&[&node]);
    capture_ok(&d, &node, "compute");
    let dir = d.image_dir("compute");
    let before = Published::record(&dir);

    throttle(&node, SLOW);
    let mut client = spawn_capture(&d, &node, "compute");
    wait_flowing(&dir, &mut client, Duration::from_secs(30));
    let t = Instant::now();
    node.kill();
    let (status, out) = client.wait(Duration::from_secs(30));
    eprintln!(
        "node killed: client ended {:.1}s later",
        t.elapsed().as_secs_f64()
    );
    assert_clear_error(status, &out, &node.name, "node killed");
    assert!(out.contains("previous image is unchanged"), "{out}");
    before.assert_intact("after the node was killed");
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn ssh_session_killed_or_link_cut_mid_capture() {
    let node = TestBed::node("cut");
    let d = daemon(&[&node]);
    capture_ok(&d, &node, "compute");
    let dir = d.image_dir("compute");
    let before = Published::record(&dir);

    // 1. The sshd process serving the capture dies.
    throttle(&node, SLOW);
    let mut client = spawn_capture(&d, &node, "compute");
    wait_flowing(&dir, &mut client, Duration::from_secs(30));
    let pids =
        node.sh("ps -eo pid,args | awk '$2 == \"sshd:\" && $3 == \"root@notty\" { print $1 }'");
    let pids: Vec<&str> = pids.split_whitespace().collect();
    assert_eq!(
        pids.len(),
        1,
        "expected one sshd session on the node: {pids:?}"
    );
    node.sh(&format!("kill -KILL {}", pids[0]));
    let (status, out) = client.wait(Duration::from_secs(30));
    assert_clear_error(status, &out, &node.name, "sshd session killed");
    before.assert_intact("after the sshd session was killed");

    // 2. The link goes down: only ssh's keep-alives can tell.
    let mut client = spawn_capture(&d, &node, "compute");
    wait_flowing(&dir, &mut client, Duration::from_secs(30));
    let t = Instant::now();
    link(&node, "down");
    let (status, out) = client.wait(Duration::from_secs(40));
    eprintln!(
        "link cut: client ended {:.1}s later",
        t.elapsed().as_secs_f64()
    );
    link(&node, "up");
    restore_route(&node);
    assert_clear_error(status, &out, &node.name, "link cut");
    before.assert_intact("after the link was cut");

    // The image directory is not left locked: the next capture works.
    unshape_uplink(&node);
    capture_ok(&d, &node, "compute");
}

/// A small ext4 filesystem on a loop device, mounted for the test and
/// unmounted (and its file removed) on drop, even when the test fails.
struct LoopFs {
    mnt: PathBuf,
    file: PathBuf,
}

impl LoopFs {
    fn new(file: &Path, mnt: &Path, mib: u64) -> LoopFs {
        std::fs::create_dir_all(mnt).unwrap();
        let f = std::fs::File::create(file).unwrap();
        f.set_len(mib << 20).unwrap();
        drop(f);
        host(
            "mkfs.ext4",
            &["-q", "-F", "-m", "0", &file.display().to_string()],
        );
        let guard = LoopFs {
            mnt: mnt.to_path_buf(),
            file: file.to_path_buf(),
        };
        host(
            "mount",
            &[
                "-o",
                "loop",
                &file.display().to_string(),
                &mnt.display().to_string(),
            ],
        );
        guard
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn image_filesystem_full_mid_capture() {
    let node = TestBed::node("full");
    let d = daemon(&[&node]);
    // The image filesystem: big enough for the free-space check (the node's
    // used bytes plus margin), filled up by someone else mid-capture.
    let fs = LoopFs::new(
        &d.root().join("netboot.ext4"),
        &d.install_dir().join("netboot"),
        1024,
    );
    capture_ok(&d, &node, "compute");
    let dir = d.image_dir("compute");
    let before = Published::record(&dir);

    throttle(&node, SLOW);
    let mut client = spawn_capture(&d, &node, "compute");
    wait_flowing(&dir, &mut client, Duration::from_secs(30));
    let free = free_bytes(&fs.mnt);
    let filler = fs.mnt.join("filler");
    host(
        "fallocate",
        &[
            "-l",
            &(free.saturating_sub(4 << 20)).to_string(),
            &filler.display().to_string(),
        ],
    );
    // Whatever is left, byte by byte.
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=64k",
            &format!("of={}", fs.mnt.join("filler2").display()),
        ])
        .stderr(Stdio::null())
        .status();
    let (status, out) = client.wait(Duration::from_secs(60));
    assert_clear_error(status, &out, &node.name, "filesystem full");
    assert!(
        out.contains("No space left") || out.contains("space"),
        "{out}"
    );
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(fs.mnt.join("filler2")).unwrap();
    before.assert_intact("after the image filesystem filled up");
    drop(fs);
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn client_interrupt_aborts_the_capture() {
    let node = TestBed::node("sigint");
    let d = daemon(&[&node]);
    capture_ok(&d, &node, "compute");
    let dir = d.image_dir("compute");
    let before = Published::record(&dir);

    throttle(&node, SLOW);
    let mut client = spawn_capture(&d, &node, "compute");
    wait_flowing(&dir, &mut client, Duration::from_secs(30));
    assert!(
        node_tar_running(&node),
        "no tar on the node during the capture"
    );
    let t = Instant::now();
    host("kill", &["-INT", &client.pid().to_string()]);
    let (status, out) = client.wait(Duration::from_secs(15));
    eprintln!(
        "SIGINT: client said: {}",
        out.lines()
            .filter(|l| l.contains("Error") || l.contains("cancelled"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    eprintln!(
        "SIGINT: client ended {:.1}s later: {status}",
        t.elapsed().as_secs_f64()
    );
    // The daemon confirmed the abort (errorcode 1, not the client's own
    // "no confirmation" exit 130) and said what it means for the image.
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("Error: capimage: cancelled"), "{out}");
    assert!(
        out.contains(&format!("capture of {} cancelled", node.name))
            && out.contains("previous image")
            && out.contains("is unchanged"),
        "{out}"
    );
    // The daemon stops the node side and removes the staging tree.
    wait_until(
        "staging tree removed after the abort",
        Duration::from_secs(15),
        || staging_dirs(&dir).is_empty(),
    );
    wait_until(
        "tar on the node stopped after the abort",
        Duration::from_secs(15),
        || !node_tar_running(&node),
    );
    before.assert_intact("after the client aborted");
}

/// The btrfs snapshots a capture is reading from (none after it ends).
fn snapshots_on(node: &Node) -> Vec<String> {
    node.sh("btrfs subvolume list /")
        .lines()
        .filter(|l| l.contains(".xcatd-snapshot-"))
        .map(String::from)
        .collect()
}

/// A capture of a fresh btrfs node `name`, slowed down, with data flowing
/// into its staging tree and its one snapshot taken.
fn slow_btrfs_capture(name: &str) -> (Node, Daemon, PathBuf, BgClient) {
    let opts = NodeOptions {
        mode: Mode::Btrfs,
        ..NodeOptions::default()
    };
    let node = TestBed::node_with(name, &opts);
    let d = daemon(&[&node]);
    let dir = d.image_dir("compute");
    throttle(&node, SLOW);
    let mut client = spawn_capture(&d, &node, "compute");
    wait_flowing(&dir, &mut client, Duration::from_secs(60));
    let during = snapshots_on(&node);
    assert_eq!(during.len(), 1, "one snapshot while reading: {during:?}");
    (node, d, dir, client)
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn aborted_capture_of_a_btrfs_node_removes_its_snapshot() {
    let (node, d, dir, client) = slow_btrfs_capture("snapabort");
    host("kill", &["-INT", &client.pid().to_string()]);
    let (status, out) = client.wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(1), "{out}");
    // the node's trap deletes it, else the daemon's backstop (a loaded
    // machine may take tens of seconds for either)
    wait_until(
        &format!(
            "the snapshot removed after the abort; client said:\n{out}\ndaemon log:\n{}",
            d.log()
        ),
        Duration::from_secs(60),
        || snapshots_on(&node).is_empty(),
    );
    wait_until(
        "staging tree removed after the abort",
        Duration::from_secs(15),
        || staging_dirs(&dir).is_empty(),
    );
}

/// The node's capture script SIGKILLed mid-stream (as sshd's death or the
/// node's OOM killer would): its exit trap cannot run, so the daemon
/// deletes the snapshot it left.
#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn snapshot_of_a_killed_capture_script_is_deleted_by_the_daemon() {
    let (node, _d, dir, client) = slow_btrfs_capture("snapkill");
    // The script is the bash in the private mount namespace (its first
    // words set the snapshot's name); it and its pipeline die at once,
    // before its trap could run.
    node.sh("p=$(pgrep -f '^bash -c snap=') && kill -KILL $p $(pgrep -P $p)");
    let (status, out) = client.wait(Duration::from_secs(60));
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("deleted the snapshot /.xcatd-snapshot-"),
        "the daemon did not say it deleted the snapshot:\n{out}"
    );
    assert!(snapshots_on(&node).is_empty(), "{:?}", snapshots_on(&node));
    wait_until(
        "staging tree removed after the failure",
        Duration::from_secs(15),
        || staging_dirs(&dir).is_empty(),
    );
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn daemon_killed_mid_capture_is_cleaned_up_at_restart() {
    let node = TestBed::node("dkill");
    let mut d = daemon(&[&node]);
    capture_ok(&d, &node, "compute");
    let dir = d.image_dir("compute");
    let before = Published::record(&dir);
    let journal = d.root().join("state/capimage-journal");

    throttle(&node, SLOW);
    let mut client = spawn_capture(&d, &node, "compute");
    let staging = wait_flowing(&dir, &mut client, Duration::from_secs(30));
    assert_eq!(
        std::fs::read_dir(&journal).map(|r| r.count()).unwrap_or(0),
        1,
        "no journal entry"
    );
    d.kill_hard();
    let (status, out) = client.wait(Duration::from_secs(20));
    eprintln!(
        "daemon killed: client said: {}",
        out.trim().lines().last().unwrap_or("")
    );
    assert!(!status.success(), "{out}");
    // The killed daemon could not clean up: exactly the case restart handles.
    assert!(
        staging.exists(),
        "the staging tree vanished without a daemon"
    );

    d.restart();
    d.wait_log("removed stale staging tree", Duration::from_secs(10));
    assert!(!staging.exists());
    assert_eq!(
        std::fs::read_dir(&journal).map(|r| r.count()).unwrap_or(0),
        0,
        "journal not emptied after restart"
    );
    before.assert_intact("after the daemon was killed and restarted");

    // The restarted daemon captures into the same image.
    unshape_uplink(&node);
    capture_ok(&d, &node, "compute");
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn one_capture_per_image_and_parallel_captures_of_different_images() {
    let a = TestBed::node("para");
    let b = TestBed::node("parb");
    let d = daemon(&[&a, &b]);

    // Different images: both run at once and both succeed.
    throttle(&a, "40mbit");
    throttle(&b, "40mbit");
    let (dir_a, dir_b) = (d.image_dir("pa"), d.image_dir("pb"));
    let mut ca = spawn_capture(&d, &a, "pa");
    let mut cb = spawn_capture(&d, &b, "pb");
    let start = Instant::now();
    let mut overlapped = false;
    while start.elapsed() < Duration::from_secs(60) && (ca.running() || cb.running()) {
        if !staging_dirs(&dir_a).is_empty() && !staging_dirs(&dir_b).is_empty() {
            overlapped = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (sa, oa) = ca.wait(Duration::from_secs(60));
    let (sb, ob) = cb.wait(Duration::from_secs(60));
    assert!(sa.success(), "capture of {} failed:\n{oa}", a.name);
    assert!(sb.success(), "capture of {} failed:\n{ob}", b.name);
    assert!(overlapped, "the two captures never ran at the same time");
    eprintln!("parallel captures: {:.1}s", start.elapsed().as_secs_f64());
    assert!(dir_a.join("rootimg/etc").is_dir() && dir_b.join("rootimg/etc").is_dir());

    // Same image: the second capture fails at once, naming the first.
    throttle(&a, SLOW);
    let mut ca = spawn_capture(&d, &a, "compute");
    let dir = d.image_dir("compute");
    wait_flowing(&dir, &mut ca, Duration::from_secs(30));
    let t = Instant::now();
    let x = exlist_path(&d).display().to_string();
    let second = d.client(&["capimage", &b.name, "-p", "compute", "-x", &x]);
    let elapsed = t.elapsed();
    let out = text(&second);
    eprintln!(
        "second capture into the same image: {}",
        out.lines().find(|l| l.contains("Error")).unwrap_or("")
    );
    assert_eq!(second.status.code(), Some(1), "{out}");
    let err_line = out.lines().find(|l| l.contains("Error")).unwrap_or("");
    assert!(err_line.contains("already running"), "{out}");
    assert!(
        err_line.contains(&a.name),
        "the error does not name the running capture's node: {out}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "the second capture did not fail at once: {elapsed:?}"
    );
    // The refused capture did not disturb the running one.
    unshape_uplink(&a);
    let (sa, oa) = ca.wait(Duration::from_secs(60));
    assert!(
        sa.success(),
        "the first capture failed after the refused one:\n{oa}"
    );
    assert!(dir.join("rootimg/etc").is_dir());
    assert!(staging_dirs(&dir).is_empty());
}
