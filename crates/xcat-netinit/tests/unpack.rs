//! Archives made by the real tools (GNU tar, GNU cpio) of a tree with every
//! kind of entry, unpacked and compared with the tree; hostile archives
//! refused without anything landing outside the root.

mod common;

use common::*;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use xcat_beneath::Root;
use xcat_netinit::error::Say;
use xcat_netinit::unpack::{cpio::unpack_cpio, tar::unpack_tar, UnpackError};
use xcat_tar::testing::TarBuilder;

fn quiet() -> Say {
    Arc::new(|_: &str| {})
}

fn hashes(dir: &Path) -> String {
    sh(&format!(
        "cd {} && find . -type f -exec sha256sum {{}} + | LC_ALL=C sort -k2",
        dir.display()
    ))
}

fn tar_tree(src: &Path, out: &Path, sparse: bool) {
    let s = if sparse { "--sparse" } else { "" };
    sh(&format!(
        "tar --format=posix --xattrs --xattrs-include='*' {s} -C {} -cf {} .",
        src.display(),
        out.display()
    ));
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_gnu_tar_archive_comes_back_whole() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst, archive) = (
        t.path().join("src"),
        t.path().join("dst"),
        t.path().join("a.tar"),
    );
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    make_tree(&src, "1G");
    tar_tree(&src, &archive, true);
    let root = Root::open(&dst).unwrap();
    let s = unpack_tar(File::open(&archive).unwrap(), &root, quiet()).unwrap();
    assert_eq!(listing(&dst), listing(&src));
    assert!(
        listing(&dst).contains("./bin/ping cap_net_raw=ep"),
        "{}",
        listing(&dst)
    );
    assert_eq!(hashes(&dst), hashes(&src));
    assert_eq!(s.devices, 2);
    assert_eq!(s.fifos, 1);
    assert_eq!(s.hardlinks, 2);
    // the sparse map's holes stay holes, and so do written zero pages
    let sparse = allocated(&dst.join("var/lib/sparse.img"));
    assert!(
        sparse <= 64 * 1024,
        "{sparse} bytes allocated for two short runs of data"
    );
    let zeros = allocated(&dst.join("var/lib/zeros"));
    assert!(
        zeros <= 8192,
        "{zeros} bytes allocated for 1 MiB of zeros and one byte"
    );
    let note = sh(&format!(
        "getfattr --only-values -n user.note {}/etc/passwd 2>/dev/null || true",
        src.display()
    ));
    if note == "hello" {
        let back = sh(&format!(
            "getfattr --only-values -n user.note {}/etc/passwd",
            dst.display()
        ));
        assert_eq!(back, "hello");
    }
}

/// The 1 GiB sparse file stored as 1 GiB of data (no `--sparse`): the zero
/// pages are still not written.
#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn zero_pages_of_a_dense_archive_become_holes() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst, archive) = (
        t.path().join("src"),
        t.path().join("dst"),
        t.path().join("a.tar"),
    );
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    make_tree(&src, "64M");
    tar_tree(&src, &archive, false);
    let root = Root::open(&dst).unwrap();
    unpack_tar(File::open(&archive).unwrap(), &root, quiet()).unwrap();
    assert_eq!(listing(&dst), listing(&src));
    assert_eq!(hashes(&dst), hashes(&src));
    let sparse = allocated(&dst.join("var/lib/sparse.img"));
    assert!(sparse <= 64 * 1024, "{sparse} bytes allocated");
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_gnu_cpio_archive_comes_back_whole() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst, archive) = (
        t.path().join("src"),
        t.path().join("dst"),
        t.path().join("a.cpio"),
    );
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    make_tree(&src, "64M");
    sh(&format!(
        "cd {} && find . | LC_ALL=C sort | cpio --quiet -o -H newc > {}",
        src.display(),
        archive.display()
    ));
    let root = Root::open(&dst).unwrap();
    let s = unpack_cpio(File::open(&archive).unwrap(), &root, quiet()).unwrap();
    // cpio keeps no xattrs, so no file capability: the rest must match
    let strip_caps = |l: String| l.split("--\n").take(2).collect::<Vec<_>>().join("--\n");
    assert_eq!(strip_caps(listing(&dst)), strip_caps(listing(&src)));
    assert_eq!(hashes(&dst), hashes(&src));
    assert_eq!((s.devices, s.fifos), (2, 1));
    let sparse = allocated(&dst.join("var/lib/sparse.img"));
    assert!(sparse <= 64 * 1024, "{sparse} bytes allocated");
}

/// `e` is a refusal naming the entry.
fn refused(e: UnpackError, entry: &str) {
    assert!(e.archive_fault(), "{e}");
    assert!(e.to_string().contains(entry), "{e}");
}

#[test]
fn hostile_tar_archives_are_refused_and_nothing_leaves_the_root() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"keep me").unwrap();
    let o = outside.display().to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            TarBuilder::new().file("../x", b"evil").end(),
            "../x",
        ),
        (
            "deep dotdot",
            TarBuilder::new().dir("a").file("a/../../x", b"evil").end(),
            "a/../../x",
        ),
        (
            "absolute",
            TarBuilder::new().file(&format!("{o}/x"), b"evil").end(),
            "/x",
        ),
        (
            "through a symlink",
            TarBuilder::new()
                .symlink("link", &o)
                .file("link/x", b"evil")
                .end(),
            "link/x",
        ),
        (
            "through a relative symlink",
            TarBuilder::new()
                .symlink("up", "..")
                .file("up/outside/x", b"evil")
                .end(),
            "up/outside/x",
        ),
        (
            "hard link out",
            TarBuilder::new().hardlink("h", "../outside/victim").end(),
            "../outside/victim",
        ),
        (
            "hard link through a symlink",
            TarBuilder::new()
                .symlink("link", &o)
                .hardlink("h", "link/victim")
                .end(),
            "link/victim",
        ),
    ];
    for (what, archive, entry) in cases {
        let dst = t.path().join(what.replace(' ', "-"));
        std::fs::create_dir(&dst).unwrap();
        let root = Root::open(&dst).unwrap();
        let e = unpack_tar(&archive[..], &root, quiet()).expect_err(what);
        refused(e, entry);
        assert!(!t.path().join("x").exists(), "{what}");
        let names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{what}: {names:?}");
    }
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep me");
}

/// A later entry of the same name replaces a symlink instead of writing
/// through it; a directory entry over a symlink makes a real directory.
#[test]
fn later_entries_replace_symlinks_instead_of_following_them() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"keep me").unwrap();
    let o = outside.display().to_string();
    let dst = t.path().join("root");
    std::fs::create_dir(&dst).unwrap();
    let archive = TarBuilder::new()
        .symlink("s", &format!("{o}/victim"))
        .file("s", b"replaced")
        .symlink("d", &o)
        .dir("d")
        .file("d/f", b"inside")
        .end();
    let root = Root::open(&dst).unwrap();
    unpack_tar(&archive[..], &root, quiet()).unwrap();
    assert_eq!(std::fs::read(dst.join("s")).unwrap(), b"replaced");
    assert!(std::fs::symlink_metadata(dst.join("d")).unwrap().is_dir());
    assert_eq!(std::fs::read(dst.join("d/f")).unwrap(), b"inside");
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep me");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn corrupt_and_cut_archives_are_archive_faults() {
    let t = tempfile::tempdir().unwrap();
    let root = Root::open(t.path()).unwrap();
    let mut bad = TarBuilder::new().file("a", b"x").file("b", b"y").end();
    bad[512 + 512 + 100] ^= 0x20; // the second header's mode field
    let e = unpack_tar(&bad[..], &root, quiet()).unwrap_err();
    assert!(e.archive_fault(), "{e}");
    let cut = TarBuilder::new().file("a", &[7u8; 5000]).cut(3000);
    let e = unpack_tar(&cut[..], &root, quiet()).unwrap_err();
    assert!(e.archive_fault(), "{e}");
    let e = unpack_cpio(&b"070701nonsense"[..], &root, quiet()).unwrap_err();
    assert!(matches!(e, UnpackError::Cpio { .. }), "{e}");
}

#[test]
fn hostile_cpio_names_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("x"), b"evil").unwrap();
    let dst = t.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let root = Root::open(&dst).unwrap();
    let absolute = format!("{}/x", src.display());
    for name in ["../x", absolute.as_str()] {
        // GNU cpio stores the names it is given
        let archive = t.path().join("a.cpio");
        sh(&format!(
            "cd {}/sub && printf '%s\\n' '{name}' | cpio --quiet -o -H newc > {}",
            src.display(),
            archive.display()
        ));
        let e = unpack_cpio(File::open(&archive).unwrap(), &root, quiet()).unwrap_err();
        refused(e, name);
    }
    assert!(
        std::fs::read_dir(&dst).unwrap().next().is_none(),
        "nothing unpacked"
    );
}
