//! capimage on a node that is never quiet, end to end (real daemon, real
//! client, a real test-bed node with sshd).
//!
//! A writer on the node keeps creating and deleting files and whole
//! directories many times a second (as spools, caches and batch jobs do) and
//! appends to a log. Every capture must succeed, count what vanished, and
//! leave no half-read file in the image. A file the node's root really
//! cannot read must still fail the capture, naming the file.

use std::path::{Path, PathBuf};

use xcat_image::report::CaptureReport;
use xcat_remote::testbed::{Mode, Node, NodeOptions, TestBed};
use xcatd_tests::{output_text as text, Daemon};

/// The default exclusions plus most of `/usr`, so one capture takes seconds.
pub(crate) const EXLIST: &str = "./tmp/*\n./proc/*\n./sys/*\n./dev/*\n./run/*\n./xcatpost/*\n./install/*\n\
                      ./usr/share/*\n./usr/lib/*\n./usr/libexec/*\n./var/cache/*\n./var/lib/apt/*\n";

const SPOOL: &str = "/var/spool/churn";
const LOG: &str = "/var/log/churn.log";

/// The writer: each round makes a directory of three files (each written
/// under a temporary name and renamed into place, with its own path as
/// content), deletes the directory of two rounds before, and appends one
/// line to the log. About a hundred file operations a second.
fn writer_script() -> String {
    format!(
        "mkdir -p {SPOOL}; i=0\n\
         while :; do\n\
           i=$((i+1)); d={SPOOL}/d$i; mkdir $d\n\
           for f in a b c; do printf '%s' \"$d/$f\" > \"$d/$f.tmp\"; mv \"$d/$f.tmp\" \"$d/$f\"; done\n\
           rm -rf {SPOOL}/d$((i-2))\n\
           echo \"line $i\" >> {LOG}\n\
           sleep 0.01\n\
         done\n"
    )
}

fn start_writer(node: &Node) {
    let script = node.sh("mktemp /root/writer.XXXXXX");
    let script = script.trim();
    node.sh(&format!(
        "cat > {script} <<'EOF'\n{}EOF\nsetsid bash {script} </dev/null >/dev/null 2>&1 &",
        writer_script()
    ));
    // The writer is running once its log grows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while node.exec_inside(&format!("test -s {LOG}")).status.code() != Some(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn daemon(node: &Node) -> (Daemon, String) {
    let d = Daemon::for_nodes(&[node], "");
    let x = d.root().join("busy.exlist");
    std::fs::write(&x, EXLIST).expect("exlist");
    (d, x.display().to_string())
}

pub(crate) fn report(dir: &Path) -> CaptureReport {
    let raw = std::fs::read(dir.join("capimage-report.json")).expect("report");
    serde_json::from_slice(&raw).expect("report parses")
}

/// Every churn file in the image is whole: a final file holds exactly its
/// own path, a temporary one a prefix of its final path, and the log only
/// complete, consecutive lines. Returns how many files were checked.
fn check_whole(rootimg: &Path, possibly_inconsistent: &[String]) -> usize {
    let mut checked = 0;
    let spool = rootimg.join(SPOOL.trim_start_matches('/'));
    for dir in std::fs::read_dir(&spool)
        .expect("spool in the image")
        .flatten()
    {
        for f in std::fs::read_dir(dir.path()).expect("round dir").flatten() {
            let rel = format!(
                "{SPOOL}/{}/{}",
                dir.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            let content = std::fs::read_to_string(f.path()).expect("churn file");
            let ok = match rel.strip_suffix(".tmp") {
                Some(final_name) => final_name.starts_with(&content),
                None => content == rel,
            };
            assert!(
                ok || possibly_inconsistent.contains(&rel),
                "{rel} holds {content:?} and the report does not flag it"
            );
            checked += 1;
        }
    }
    let log = std::fs::read_to_string(rootimg.join(LOG.trim_start_matches('/'))).expect("log");
    let mut expect = None;
    for line in log.lines() {
        let n: u64 = line
            .strip_prefix("line ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a half-written log line {line:?}"));
        if let Some(e) = expect {
            assert_eq!(n, e, "log lines are not consecutive");
        }
        expect = Some(n + 1);
    }
    assert!(
        log.ends_with('\n') || possibly_inconsistent.contains(&LOG.to_string()),
        "the log ends mid-line"
    );
    checked + 1
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn busy_node_captures_twenty_times_in_a_row() {
    let node = TestBed::node("busy");
    let (d, x) = daemon(&node);
    start_writer(&node);
    let dir = d.install_dir().join("netboot/debian12/x86_64/compute");
    let (mut vanished, mut appeared, mut changed, mut checked) = (0, 0, 0, 0);
    for round in 1..=20 {
        let out = d.client(&["capimage", &node.name, "-x", &x, "--keep", "1"]);
        assert!(
            out.status.success(),
            "capture {round} of a busy node failed:\n{}\ndaemon log:\n{}",
            text(&out),
            d.log()
        );
        let r = report(&dir);
        let c = &r.churn;
        assert!(
            c.appeared_not_counted.is_none(),
            "{:?}",
            c.appeared_not_counted
        );
        assert_eq!(c.vanished.first.len() as u64, c.vanished.count.min(10));
        if c.vanished.count + c.appeared.count + c.changed.count > 0 {
            assert!(
                text(&out).contains("changed while it was read"),
                "the summary does not mention the churn:\n{}",
                text(&out)
            );
        }
        checked += check_whole(&dir.join("rootimg"), &c.possibly_inconsistent.first);
        eprintln!(
            "capture {round}: vanished {} {:?}, appeared {}, changed {} (re-read {}, possibly inconsistent {})",
            c.vanished.count,
            c.vanished.first.first(),
            c.appeared.count,
            c.changed.count,
            c.reread,
            c.possibly_inconsistent.count
        );
        vanished += c.vanished.count;
        appeared += c.appeared.count;
        changed += c.changed.count;
    }
    eprintln!("20 captures: {vanished} vanished, {appeared} appeared, {changed} changed; {checked} files checked whole");
    assert!(
        vanished > 0,
        "no capture saw an entry vanish: the writer is too slow to test anything"
    );
    assert!(appeared > 0, "no capture counted an entry that appeared");
}

pub(crate) const PAIR: &str = "/srv/pair";

/// A writer that keeps two files equal as the node sees them: each round
/// writes both into a new directory, then swaps a symbolic link to it with
/// one rename, and removes the round before. A live read can catch the
/// link and the files of different rounds (or a round already removed); a
/// snapshot cannot.
pub(crate) fn pair_writer_script() -> String {
    format!(
        "mkdir -p {PAIR}; cd {PAIR}; i=0\n\
         while :; do\n\
           i=$((i+1)); mkdir r$i; echo $i > r$i/a; echo $i > r$i/b\n\
           ln -s r$i cur.tmp; mv -T cur.tmp cur; rm -rf r$((i-1))\n\
         done\n"
    )
}

/// The pair as the image has it: both files of the round `cur` names (a
/// missing file reads as its own name, so two missing files differ).
pub(crate) fn pair_in(rootimg: &Path) -> (String, String) {
    let pair = rootimg.join(PAIR.trim_start_matches('/'));
    let round = std::fs::read_link(pair.join("cur")).expect("cur link in the image");
    let read = |f: &str| {
        std::fs::read_to_string(pair.join(&round).join(f))
            .unwrap_or_else(|e| format!("{round:?}/{f} missing ({e})"))
    };
    (read("a"), read("b"))
}

fn start_pair_writer(node: &Node) {
    let script = node.sh("mktemp /root/pair.XXXXXX");
    node.sh(&format!(
        "cat > {s} <<'EOF'\n{}EOF\nsetsid bash {s} </dev/null >/dev/null 2>&1 &\nsleep 1",
        pair_writer_script(),
        s = script.trim()
    ));
}

/// Without snapshots (ext4, `--snapshot off`) the pair's link is replaced
/// by renames tar cannot see: the walk after the stream finds it by its
/// inode's change time, and the report names it, re-read or not.
#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn live_read_of_a_busy_pair_reports_what_changed() {
    let node = TestBed::node("livepair");
    let (d, x) = daemon(&node);
    start_pair_writer(&node);
    let dir = d.install_dir().join("netboot/debian12/x86_64/compute");
    for round in 1..=3 {
        let out = d.client(&["capimage", &node.name, "-x", &x, "--snapshot", "off"]);
        assert!(out.status.success(), "capture {round}:\n{}", text(&out));
        let churn = report(&dir).churn;
        let cur = format!("{PAIR}/cur");
        assert!(
            churn.changed.first.contains(&cur),
            "capture {round}: {cur} not reported as changed: {churn:?}"
        );
        // A link cannot be re-read on its own: it stays possibly inconsistent.
        assert!(
            churn.possibly_inconsistent.first.contains(&cur),
            "capture {round}: {churn:?}"
        );
        assert!(
            text(&out).contains("possibly inconsistent"),
            "{}",
            text(&out)
        );
        let (a, b) = pair_in(&dir.join("rootimg"));
        eprintln!(
            "capture {round}: pair {a:?} {b:?}; changed {:?}",
            churn.changed
        );
    }
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn btrfs_snapshot_captures_a_busy_pair_consistently() {
    let opts = NodeOptions {
        mode: Mode::Btrfs,
        ..NodeOptions::default()
    };
    let node = TestBed::node_with("snap", &opts);
    let (d, x) = daemon(&node);
    start_pair_writer(&node);
    let dir = d.install_dir().join("netboot/debian12/x86_64/compute");
    let mut times = Vec::new();
    for round in 1..=20 {
        let t = std::time::Instant::now();
        let out = d.client(&["capimage", &node.name, "-x", &x, "--snapshot", "require"]);
        times.push(t.elapsed().as_secs_f64());
        assert!(
            out.status.success(),
            "capture {round} failed:\n{}\ndaemon log:\n{}",
            text(&out),
            d.log()
        );
        assert!(
            text(&out).contains("read / from snapshots"),
            "{}",
            text(&out)
        );
        let (a, b) = pair_in(&dir.join("rootimg"));
        assert_eq!(a, b, "capture {round}: the pair differs in the image");
        let r = report(&dir);
        assert_eq!(r.consistency.snapshotted, ["/"]);
        assert!(
            r.consistency
                .package_lock
                .starts_with("held while the snapshots were taken"),
            "{:?}",
            r.consistency.package_lock
        );
        let left = node.sh("btrfs subvolume list /");
        assert!(!left.contains(".xcatd-snapshot-"), "snapshot left: {left}");
    }
    times.sort_by(f64::total_cmp);
    eprintln!("20 snapshot captures, median {:.2} s", times[10]);
}

/// A node whose root lacks CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (as in
/// a hardened or confined session): a file of mode 000 is really unreadable
/// to it, and the kernel answers EACCES.
fn confine_root_shell(node: &Node) {
    node.sh(
        "printf '#!/bin/bash\\nexec setpriv --inh-caps=-all --bounding-set -dac_override,-dac_read_search /bin/bash \"$@\"\\n' \
         > /usr/local/sbin/confined-shell && chmod 755 /usr/local/sbin/confined-shell && \
         usermod -s /usr/local/sbin/confined-shell root",
    );
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn unreadable_file_still_fails_naming_it() {
    let node = TestBed::node("unread");
    let (d, x) = daemon(&node);
    node.sh("mkdir -p /srv/locked && echo secret > /srv/locked/secret && chown 65534:65534 /srv/locked/secret && chmod 000 /srv/locked/secret");
    confine_root_shell(&node);
    let out = d.client(&["capimage", &node.name, "-x", &x]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let err = t.lines().find(|l| l.contains("Error")).unwrap_or_default();
    assert!(
        err.contains(&node.name)
            && err.contains("./srv/locked/secret: Cannot open: Permission denied")
            && err.contains("the previous image is unchanged"),
        "the error does not name the unreadable file: {t}"
    );
    let dir: PathBuf = d.install_dir().join("netboot/debian12/x86_64/compute");
    assert!(
        !dir.join("rootimg").exists(),
        "a failed capture published an image"
    );
    // Readable again (root's capabilities back): the same capture succeeds.
    node.sh("usermod -s /bin/bash root");
    let out = d.client(&["capimage", &node.name, "-x", &x]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.join("rootimg/srv/locked/secret")).unwrap(),
        "secret\n"
    );
}
