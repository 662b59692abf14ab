//! GNU tar archives of the test bed's edge-case tree, extracted with our extractor,
//! compared entry by entry with the source tree.
mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use xcat_image::{
    extract, extract_async, scan_tree, Difference, ExtractOptions, Manifest, Progress,
};

/// Differences we document: tar cannot carry sockets.
fn unexpected(diffs: Vec<Difference>) -> Vec<Difference> {
    diffs
        .into_iter()
        .filter(|d| !(d.path == b"sock" && d.field == "missing"))
        .collect()
}

fn assert_same(src: &Manifest, dst: &Manifest, what: &str) {
    let d = unexpected(src.diff(dst));
    assert!(
        d.is_empty(),
        "{what}: {} differences:\n{}",
        d.len(),
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn edge_tree_roundtrip_posix_pax() {
    require_root_and_tools(&["tar", "setfattr", "setfacl", "setcap", "python3", "mknod"]);
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    build_edge_tree(src.path(), true);
    let archive = gnu_tar(src.path(), &["--format=posix"]);
    let progress = Progress::default();
    let opts = ExtractOptions {
        progress: Some(progress.clone()),
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let summary = extract(&archive[..], dst.path(), &opts).unwrap();
    eprintln!(
        "extracted {} entries, {} archive bytes in {:?}",
        summary.entries,
        archive.len(),
        t.elapsed()
    );
    assert!(
        summary.warnings.is_empty(),
        "warnings: {:?}",
        summary.warnings
    );
    assert_eq!(progress.bytes.load(Ordering::Relaxed), archive.len() as u64);
    assert_eq!(progress.entries.load(Ordering::Relaxed), summary.entries);
    assert_eq!(summary.counts.hardlinks, 2);
    assert_eq!(
        (
            summary.counts.char_devices,
            summary.counts.block_devices,
            summary.counts.fifos
        ),
        (1, 1, 1)
    );

    let s = scan_tree(src.path()).unwrap();
    let d = scan_tree(dst.path()).unwrap();
    assert!(s.get(b"sock").is_some(), "the source has a socket");
    assert!(d.get(b"sock").is_none(), "sockets are not in tar archives");
    assert_same(&s, &d, "source vs extracted tree");
    assert_same(
        &d,
        &summary.manifest.to_manifest().unwrap(),
        "extracted tree vs extraction manifest",
    );

    // spot checks that the comparison covered what matters
    let cap = d.get(b"capfile").unwrap();
    assert!(cap.xattrs.contains_key(&b"security.capability"[..]));
    let acl = d.get(b"acl_dir").unwrap();
    assert!(
        acl.xattrs.contains_key(&b"system.posix_acl_default"[..])
            && acl.xattrs.contains_key(&b"system.posix_acl_access"[..])
    );
    assert_eq!(d.get(b"suid").unwrap().mode, 0o4755);
    assert_eq!(d.get(b"sgid").unwrap().mode, 0o2750);
    assert_eq!(d.get(b"sticky").unwrap().mode, 0o1777);
    assert_eq!(d.get(b"mode000").unwrap().mode, 0);
    assert_eq!(d.get(b"weird/nobody").unwrap().uid, 54321);
    assert_eq!(d.get(b"weird/link_nobody").unwrap().gid, 54324);
    assert_eq!(d.get(b"weird/bad\xff\xfename").unwrap().size, 2);
    assert_eq!(
        d.get(b"rel_link")
            .unwrap()
            .xattrs
            .get(&b"trusted.onlink"[..])
            .map(|v| &v[..]),
        Some(&b"yes"[..])
    );
    assert_eq!(d.get(b"old").unwrap().mtime_nsec, 123_456_789);
    assert!(d.get(b"future").unwrap().mtime_sec > 2_147_483_647);
    assert_eq!(d.get(b"chardev").unwrap().rdev, Some((1, 7)));
    assert_eq!(
        d.get(b"hl/three").unwrap().hardlink.as_deref(),
        Some(&b"hl/a/one"[..])
    );
    let meta = std::fs::metadata(dst.path().join("hl/b/two")).unwrap();
    assert_eq!(meta.nlink(), 3);
    let sparse = d.get(b"sparse1g").unwrap();
    assert_eq!(sparse.size, 1 << 30);
    let blocks = sparse.blocks.unwrap();
    eprintln!("sparse1g: {} KiB allocated", blocks / 2);
    assert!(
        blocks * 512 < 1 << 20,
        "1 GiB sparse file must stay sparse, has {blocks} blocks"
    );
    // manifest file round trip
    let mut tsv = Vec::new();
    summary.manifest.write_tsv(&mut tsv).unwrap();
    assert_eq!(
        Manifest::parse_tsv(std::str::from_utf8(&tsv).unwrap())
            .unwrap()
            .diff(&summary.manifest.to_manifest().unwrap()),
        vec![]
    );
}

#[test]
fn gnu_format_long_names_and_old_sparse() {
    require_tools(&["tar", "setfattr"]);
    let src = tempfile::tempdir().unwrap();
    let long_dir = "x".repeat(120);
    let long_target = "t".repeat(150);
    sh(&format!(
        "cd '{}' && mkdir {long_dir} && echo deep > {long_dir}/{long_dir}.txt && ln -s {long_target} {long_dir}/longlink && \
         ln {long_dir}/{long_dir}.txt hardlong && truncate -s 100M sp && printf a | dd of=sp bs=1 seek=50000000 conv=notrunc status=none && \
         for i in $(seq 0 9); do printf x | dd of=sp bs=1 seek=$((i*8000000+4096)) conv=notrunc status=none; done",
        src.path().display()
    ));
    let s = scan_tree(src.path()).unwrap();
    for (fmt, extra) in [
        ("gnu", vec!["--format=gnu"]),
        ("pax 0.0", vec!["--format=posix", "--sparse-version=0.0"]),
        ("pax 0.1", vec!["--format=posix", "--sparse-version=0.1"]),
        ("pax 1.0", vec!["--format=posix", "--sparse-version=1.0"]),
    ] {
        let dst = tempfile::tempdir().unwrap();
        let archive = gnu_tar(src.path(), &extra);
        let summary = extract(&archive[..], dst.path(), &ExtractOptions::default())
            .unwrap_or_else(|e| panic!("{fmt}: {e}"));
        let d = scan_tree(dst.path()).unwrap();
        assert_same(&s, &d, fmt);
        assert_same(&d, &summary.manifest.to_manifest().unwrap(), fmt);
        assert!(
            d.get(b"sp").unwrap().blocks.unwrap() < 2048,
            "{fmt}: sparse file expanded"
        );
    }
}

#[tokio::test]
#[ignore = "needs root: ./scripts/test-all runs it"]
async fn async_streaming_from_gnu_tar_process() {
    require_root_and_tools(&["tar", "setfattr", "setfacl", "setcap", "python3"]);
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    build_edge_tree(src.path(), false);
    let mut child = tokio::process::Command::new("tar")
        .arg("--format=posix")
        .args(TAR_FLAGS)
        .arg("-C")
        .arg(src.path())
        .args(["-cf", "-", "."])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let summary = extract_async(stdout, dst.path().to_path_buf(), ExtractOptions::default())
        .await
        .unwrap();
    assert!(
        child.wait().await.unwrap().success(),
        "tar saw no broken pipe: the trailer was drained"
    );
    let s = scan_tree(src.path()).unwrap();
    let d = scan_tree(dst.path()).unwrap();
    assert_same(&s, &d, "async extraction");
    assert!(summary.entries > 60);
}

/// A >4 GiB sparse file (cpio cannot carry it) in both pax and GNU formats.
#[test]
fn sparse_over_4gib_roundtrip() {
    require_tools(&["tar"]);
    let src = tempfile::tempdir().unwrap();
    sh(&format!(
        "cd '{}' && truncate -s 5G big && printf start | dd of=big bs=1 conv=notrunc status=none && \
         printf beyond4g | dd of=big bs=1 seek=4500000000 conv=notrunc status=none && \
         printf end | dd of=big bs=1 seek=5368709117 conv=notrunc status=none",
        src.path().display()
    ));
    let t = std::time::Instant::now();
    let s = scan_tree(src.path()).unwrap();
    eprintln!("scan of 5 GiB sparse file: {:?}", t.elapsed());
    for extra in [&["--format=posix"][..], &["--format=gnu"][..]] {
        let dst = tempfile::tempdir().unwrap();
        let archive = gnu_tar(src.path(), extra);
        assert!(archive.len() < 1 << 20);
        let summary = extract(&archive[..], dst.path(), &ExtractOptions::default()).unwrap();
        let d = scan_tree(dst.path()).unwrap();
        assert_same(&s, &d, extra[0]);
        assert_same(&d, &summary.manifest.to_manifest().unwrap(), extra[0]);
        let e = d.get(b"big").unwrap();
        assert_eq!(e.size, 5 << 30);
        assert!(e.blocks.unwrap() < 1024);
    }
}
