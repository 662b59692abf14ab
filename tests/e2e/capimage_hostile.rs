//! capimage against a node whose archive is built to exhaust the daemon
//! rather than to escape the staging tree: holes of absurd size, many hard
//! links sharing big xattrs, chained pax headers, global pax keywords.
//!
//! Each case captures its node once normally, then makes the node's `tar`
//! answer with the crafted archive and captures again. The hostile capture
//! must end (refused or safely accepted) within 60 s, the daemon's peak RSS
//! during it (VmHWM, reset just before through `clear_refs`) stays under
//! 100 MiB, a refused capture leaves the previous image as it was, and the
//! daemon keeps answering other clients meanwhile.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xcat_image::tar::testing::TarBuilder as Tar;
use xcat_remote::testbed::{Node, TestBed};
use xcatd_tests::{host, output_text as text, Daemon};

use crate::capimage_faults::{capture_ok, daemon, spawn_capture, Published, FAKE_TAR};

/// Every hostile capture ends within this.
const LIMIT: Duration = Duration::from_secs(60);
/// The daemon's peak resident memory during a hostile capture stays below this.
const MAX_RSS_KIB: u64 = 100 * 1024;

/// How a hostile capture went.
struct Outcome {
    took: Duration,
    peak_kib: u64,
    accepted: bool,
    served: usize,
    /// The client's error line, if any.
    error: String,
    problems: Vec<String>,
}

/// A peak of the daemon's resident memory: VmHWM, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Start the peak anew (`clear_refs` 5 resets VmHWM to the current RSS).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5\n").expect("clear_refs");
}

/// Other clients while the capture runs: authcheck and lsxcatd, five a
/// second until `done` (at least three); returns how many succeeded, and the
/// failures.
fn serve_others(d: &Daemon, done: &AtomicBool) -> (usize, Vec<String>) {
    let (mut ok, mut failed) = (0, Vec::new());
    let mut round = 0;
    while round < 3 || !done.load(Ordering::Relaxed) {
        let args: &[&str] = if round % 2 == 0 {
            &["xcatclient", "authcheck"]
        } else {
            &["lsxcatd", "-v"]
        };
        let t = Instant::now();
        let out = d.client(args);
        if out.status.success() && t.elapsed() < Duration::from_secs(10) {
            ok += 1;
        } else {
            failed.push(format!("{args:?} ({:?}): {}", t.elapsed(), text(&out)));
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    (ok, failed)
}

/// The node answers the next capture with `archive`; its real tar again when dropped.
struct HostileTar {
    root: PathBuf,
}

impl HostileTar {
    fn install(node: &Node, archive: &[u8]) -> HostileTar {
        let root = PathBuf::from(format!("/proc/{}/root", node.init_pid));
        std::fs::create_dir_all(root.join("usr/local/bin")).expect("usr/local/bin");
        std::fs::write(root.join("root/hostile.tar"), archive).expect("hostile.tar");
        std::fs::write(root.join("root/hostile.exit"), "0\n").expect("hostile.exit");
        let tar = root.join("usr/local/bin/tar");
        std::fs::write(&tar, FAKE_TAR).expect("fake tar");
        host("chmod", &["0755", &tar.display().to_string()]);
        HostileTar { root }
    }
}

impl Drop for HostileTar {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.root.join("usr/local/bin/tar"));
        let _ = std::fs::remove_file(self.root.join("root/hostile.tar"));
    }
}

/// One hostile case on its own node: a normal capture, then `archive`.
fn hostile_case(name: &str, hint: &str, archive: Vec<u8>) -> Outcome {
    let node = TestBed::node(hint);
    let d = daemon(&[&node]);
    capture_ok(&d, &node, "compute");
    let dir = d.image_dir("compute");
    let before = Published::record(&dir);
    let _tar = HostileTar::install(&node, &archive);
    drop(archive);
    let pid = d.pid();
    reset_peak(pid);
    let start = Instant::now();
    let mut client = spawn_capture(&d, &node, "compute");
    let done = AtomicBool::new(false);
    let (served, mut problems) = std::thread::scope(|s| {
        let others = s.spawn(|| serve_others(&d, &done));
        while client.running() && start.elapsed() < LIMIT {
            std::thread::sleep(Duration::from_millis(20));
        }
        done.store(true, Ordering::Relaxed);
        others.join().expect("other clients")
    });
    let took = start.elapsed();
    let peak_kib = peak_rss_kib(pid);
    let ended = !client.running();
    let output = client.text();
    drop(client);
    let accepted = output.contains("capimage: captured");
    let error = output
        .lines()
        .find(|l| l.contains("Error"))
        .unwrap_or("")
        .to_string();
    if !ended {
        problems.push(format!("the capture did not end within {LIMIT:?}"));
    } else if !accepted {
        problems.extend(before.problems());
        if !error.contains(&node.name) {
            problems.push(format!("the error does not name the node: {output}"));
        }
    }
    if peak_kib >= MAX_RSS_KIB {
        problems.push(format!("peak RSS {peak_kib} KiB"));
    }
    let verdict = match (ended, accepted) {
        (false, _) => "still running",
        (true, true) => "accepted",
        (true, false) => "refused",
    };
    eprintln!(
        "hostile case {name}: {:.1}s, peak RSS {peak_kib} KiB, {verdict}, {served} other \
         requests served; {error}",
        took.as_secs_f64(),
    );
    Outcome {
        took,
        peak_kib,
        accepted,
        served,
        error,
        problems,
    }
}

fn assert_safe(name: &str, o: &Outcome) {
    assert!(
        o.problems.is_empty() && o.served >= 3,
        "{name}: {:.1}s, peak {} KiB, {} served: {}",
        o.took.as_secs_f64(),
        o.peak_kib,
        o.served,
        o.problems.join("\n")
    );
}

/// A pax 1.0 sparse file of `realsize` bytes with one byte at its end.
fn sparse_tail(t: Tar, name: &str, realsize: u64) -> Tar {
    t.sparse(name, realsize, &[(realsize - 1, b"x")])
}

fn base() -> Tar {
    Tar::new().dir("etc").file("etc/hostname", b"hostile\n")
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn a_hole_of_2_62_bytes_is_refused_at_once() {
    let a = sparse_tail(base(), "hole", 1 << 62).end();
    let o = hostile_case("hole of 2^62 bytes", "hhole", a);
    assert!(!o.accepted, "a 2^62-byte file is refused");
    assert_safe("hole of 2^62 bytes", &o);
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn a_15_tib_sparse_file_is_over_the_logical_budget() {
    let a = sparse_tail(base(), "var/lib/huge.img", 15 << 40).end();
    let o = hostile_case("15 TiB sparse file", "hhuge", a);
    assert!(!o.accepted, "15 TiB from a node using a few GiB is refused");
    assert_safe("15 TiB sparse file", &o);
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn sparse_files_past_the_nodes_usage_are_refused() {
    // each below the per-file ceiling, together far above what the node uses
    let mut t = base();
    for i in 0..4 {
        t = sparse_tail(t, &format!("var/lib/disk{i}.img"), 200 << 30);
    }
    let o = hostile_case("4 x 200 GiB sparse files", "hdisks", t.end());
    assert!(
        !o.accepted,
        "800 GiB from a node using a few GiB is refused"
    );
    assert!(
        o.error.contains("logical size of all files") && o.error.contains("reports in use"),
        "the error says the budget comes from the node's usage: {}",
        o.error
    );
    assert_safe("4 x 200 GiB sparse files", &o);
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn many_hard_links_to_a_file_with_big_xattrs() {
    let value = vec![0x5au8; 60_000];
    let keys: Vec<String> = (0..15)
        .map(|i| format!("SCHILY.xattr.user.big{i}"))
        .collect();
    let records: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &value[..])).collect();
    let mut t = base()
        .pax(&records)
        .file("srv/f", b"one inode\n")
        .dir("srv/l");
    // each link to the one before: the worst shape for grouping
    let mut prev = "srv/f".to_string();
    for i in 0..40_000 {
        let name = format!("srv/l/{i:05}");
        t = t.hardlink(&name, &prev);
        prev = name;
    }
    let o = hostile_case("40,000 hard links, 900 KB of xattrs", "hlinks", t.end());
    assert_safe("40,000 hard links, 900 KB of xattrs", &o);
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn tens_of_thousands_of_empty_files_with_1000_byte_names() {
    // each entry is a pax path record and a header, and keeps a ~970-byte
    // name: in memory the manifest cost about 3,400 bytes an entry (135 MB)
    let deep = format!(
        "srv/t/{}/{}/{}",
        "a".repeat(250),
        "b".repeat(250),
        "c".repeat(250)
    );
    let mut t = base().pax(&[("path", deep.as_bytes())]).dir("x");
    for i in 0..40_000 {
        let name = format!("{deep}/{i:05}-{}", "x".repeat(200));
        t = t.pax(&[("path", name.as_bytes())]).file("x", b"");
    }
    let o = hostile_case("40,000 empty files, 970-byte names", "htiny", t.end());
    assert!(
        o.accepted,
        "a tree of many small files is a tree: {}",
        o.error
    );
    assert_safe("40,000 empty files, 970-byte names", &o);
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn chained_pax_headers() {
    // 40 extended headers of 1 MiB each before one entry: 1.4 million small
    // xattrs, each with a name of its own
    let mut t = base();
    for h in 0..40 {
        let keys: Vec<String> = (0..30_000)
            .map(|i| format!("SCHILY.xattr.user.h{h:02}k{i:05}"))
            .collect();
        let records: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
        t = t.pax(&records);
    }
    let a = t.file("srv/chained", b"x").end();
    let o = hostile_case("chained pax headers", "hpax", a);
    assert_safe("chained pax headers", &o);
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn global_pax_keywords() {
    // one global header with 900 KB of xattrs, then 2000 files it applies to
    let value = vec![0x33u8; 60_000];
    let keys: Vec<String> = (0..15)
        .map(|i| format!("SCHILY.xattr.user.global{i}"))
        .collect();
    let records: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &value[..])).collect();
    let mut t = Tar::new();
    let start = t.len();
    t = t.pax(&records);
    retype(&mut t.0[start..start + 512], b'g');
    t = t.dir("etc").file("etc/hostname", b"hostile\n").dir("srv/g");
    for i in 0..2000 {
        t = t.file(&format!("srv/g/{i:04}"), b"x");
    }
    let o = hostile_case("global pax keywords", "hglobal", t.end());
    assert_safe("global pax keywords", &o);
}

/// Changes a ustar header's typeflag and seals it again (the checksum).
fn retype(header: &mut [u8], typeflag: u8) {
    header[156] = typeflag;
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}
