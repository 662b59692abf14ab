//! imgverify end to end: a real test-bed node with the edge-case tree
//! (hard links, sparse files, xattrs, capabilities, devices, odd names) is
//! captured and packed by the real daemon, then the image is tampered with
//! one way at a time and imgverify must name each change.

use std::path::Path;
use std::process::{Command, Output};

use xcat_remote::testbed::{NodeOptions, TestBed};
use xcatd_tests::Daemon;

const IMAGE: &str = "debian12-x86_64-netboot-compute";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?} failed");
}

/// imgverify fails and says each of `wanted`.
fn fails_naming(d: &Daemon, wanted: &[&str]) -> String {
    let o = d.client(&["imgverify", IMAGE]);
    let t = text(&o);
    assert!(
        !o.status.success(),
        "imgverify passed a changed image:\n{t}"
    );
    for w in wanted {
        assert!(t.contains(w), "imgverify did not say {w:?}:\n{t}");
    }
    t
}

/// imgverify passes; the signer's fingerprint it names.
fn passes(d: &Daemon) -> String {
    let o = d.client(&["imgverify", IMAGE]);
    let t = text(&o);
    assert!(
        o.status.success(),
        "imgverify failed on an untouched image:\n{t}\n{}",
        d.log()
    );
    let fp = t
        .split("match the record signed by ")
        .nth(1)
        .unwrap_or_default();
    assert!(fp.starts_with("SHA256:"), "{t}");
    fp.split_whitespace().next().unwrap_or_default().to_string()
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn imgverify_finds_every_kind_of_change_and_passes_an_untouched_image() {
    let node = TestBed::node_with(
        "ivf",
        &NodeOptions {
            edgecases: true,
            ..Default::default()
        },
    );
    // sysclean has something to change (its edits must be in the manifest)
    node.sh("echo 0123456789abcdef0123456789abcdef > /etc/machine-id");
    let d = Daemon::for_nodes(&[&node], "");
    let o = d.client(&["capimage", &node.name]);
    assert!(
        o.status.success(),
        "capimage failed:\n{}\n{}",
        text(&o),
        d.log()
    );
    assert!(text(&o).contains("manifest signed in"), "{}", text(&o));
    let fp = passes(&d);
    // the signer is in the report and in the osimage definition
    let dir = d.image_dir("compute");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("capimage-report.json")).unwrap()).unwrap();
    assert_eq!(report["signed_by"], serde_json::Value::from(fp.clone()));
    let osimage = text(&d.client(&["tabdump", "osimage"]));
    assert!(
        osimage.contains(&format!("manifest signed by {fp}")),
        "{osimage}"
    );

    let o = d.client(&["packimage", "-m", "cpio", "-c", "zstd", IMAGE]);
    assert!(
        o.status.success(),
        "packimage failed:\n{}\n{}",
        text(&o),
        d.log()
    );
    assert!(text(&o).contains("signed image-record.txt"), "{}", text(&o));
    passes(&d);

    let root = dir.join("rootimg");
    let e = root.join("srv/edgecases");
    let record = dir.join("image-record.txt");
    let signed = std::fs::read_to_string(&record).unwrap();

    // one changed byte in a file's content
    let regular = e.join("regular");
    let before = std::fs::read(&regular).unwrap();
    let mut changed = before.clone();
    changed[0] ^= 0x20;
    write_keeping_times(&regular, &changed);
    fails_naming(&d, &["/srv/edgecases/regular: content changed (sha256)"]);
    write_keeping_times(&regular, &before);
    passes(&d);

    // a changed mode, a removed xattr, an added file
    run("chmod", &["0600", e.join("mode-0640").to_str().unwrap()]);
    run(
        "setfattr",
        &["-x", "user.colour", e.join("xattrs").to_str().unwrap()],
    );
    std::fs::write(root.join("etc/planted"), b"x").unwrap();
    fails_naming(
        &d,
        &[
            "/srv/edgecases/mode-0640: mode changed: recorded 0640, now 0600",
            "/srv/edgecases/xattrs: xattr user.colour",
            "/etc/planted: added",
        ],
    );

    // a flipped byte in the packed archive
    let packed = dir.join("rootimg.cpio.zst");
    let mut bytes = std::fs::read(&packed).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&packed, &bytes).unwrap();
    fails_naming(&d, &["rootimg.cpio.zst: content differs from the record"]);

    // a tampered record fails its signature, whatever else
    let forged = signed.replacen("file rootimg.cpio.zst ", "file rootimg.cpio.zst 1", 1);
    assert_ne!(forged, signed);
    std::fs::write(&record, forged).unwrap();
    let t = fails_naming(&d, &["signature does not verify"]);
    assert!(!t.contains("/etc/planted"), "a forged record was read: {t}");
}

/// Replace `path`'s bytes in place, keeping its mtime (the content hash
/// alone must give the change away).
fn write_keeping_times(path: &Path, bytes: &[u8]) {
    let m = std::fs::metadata(path).unwrap();
    std::fs::write(path, bytes).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(m.modified().unwrap()).unwrap();
}

/// An earlier generation is checked against the manifest and record it was
/// published with, not the current tree's.
#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn an_earlier_generation_is_verified_against_its_own_records() {
    let node = TestBed::node("ivgen");
    let d = Daemon::for_nodes(&[&node], "");
    let capture = |marker: &str| {
        node.sh(&format!("echo {marker} > /etc/generation-marker"));
        let o = d.client(&["capimage", &node.name]);
        assert!(o.status.success(), "capimage failed:\n{}", text(&o));
    };
    capture("first");
    let o = d.client(&["packimage", "-m", "cpio", "-c", "zstd", IMAGE]);
    assert!(o.status.success(), "{}", text(&o));
    capture("second");
    passes(&d);
    let gen = |n: &str| d.client(&["imgverify", IMAGE, "--generation", n]);
    let o = gen("1");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "{IMAGE} generation 1: the tree and 1 recorded file(s) match"
        )),
        "{}",
        text(&o)
    );
    let dir = d.image_dir("compute");
    let old = dir.join(".private/rootimg.gen-1");
    assert_eq!(
        std::fs::read_to_string(old.join("etc/generation-marker")).unwrap(),
        "first\n"
    );
    // the earlier tree changed: its own check fails, the current one passes
    std::fs::write(old.join("etc/generation-marker"), "tampered\n").unwrap();
    let o = gen("1");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("/etc/generation-marker: content changed"),
        "{}",
        text(&o)
    );
    passes(&d);
    let o = gen("7");
    assert!(!o.status.success());
    assert!(text(&o).contains("has no generation 7"), "{}", text(&o));
}
