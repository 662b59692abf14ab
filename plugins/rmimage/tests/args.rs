//! rmimage in-process: its command line, and what it removes (and what it
//! never touches: a symlink's target outside the image, a locked image).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use xcat_plugin::args::VERSION;
use xcat_plugin::testing::Harness;

const USAGE_END: &str = "  rmimage [-v|--version]";

#[tokio::test]
async fn help_version_and_usage_errors() {
    let h = Harness::new(plugin_rmimage::handlers()).await;
    let o = h.run("rmimage", &["-h"]).await;
    assert_eq!(o.ok().kinds()[0].0, "data");
    assert_eq!(o.lines()[0], "Usage:");
    assert_eq!(
        h.run("rmimage", &["-v"]).await.ok().lines(),
        [format!("rmimage Version {VERSION} (xcatd-rs)")]
    );
    for (args, want) in [
        (&[][..], "rmimage needs an image name"),
        (&["--bogus"], "unknown option --bogus"),
        (&["a", "b"], "unexpected argument \"b\""),
        (&["../etc"], "\"../etc\" is not an image name"),
    ] {
        let e = h.run("rmimage", args).await.usage_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(e.ends_with(USAGE_END), "{e}");
    }
}

/// An image as capimage and packimage leave it, plus nodeset's copy, plus a
/// hostile tree whose links point at a directory outside.
async fn image(h: &Harness, outside: &std::path::Path) -> (PathBuf, PathBuf) {
    let dir = h.settings().install_dir.join("netboot/rocky9/x86_64/cap");
    let tree = dir.join(".private/rootimg");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::create_dir_all(dir.join(".private/rootimg.gen-1")).unwrap();
    fs::write(tree.join("etc/hostname"), "n1").unwrap();
    symlink(outside, tree.join("escape")).unwrap();
    symlink(outside.join("keep.txt"), tree.join("etc/passwd-link")).unwrap();
    symlink(".private/rootimg", dir.join("rootimg")).unwrap();
    for f in [
        "kernel",
        "initrd-stateless.gz",
        "rootimg.cpio.gz",
        "rootimg.cpio.gz.info",
        "rootimg-statelite.gz",
        "rootimg-statelite.gz.info",
        "boot.ipxe",
    ] {
        fs::write(dir.join(f), f).unwrap();
    }
    symlink(outside.join("keep.txt"), dir.join("rootimg.sfs")).unwrap();
    let copy = h.settings().tftp_dir.join("xcat/osimage/img1");
    fs::create_dir_all(&copy).unwrap();
    fs::write(copy.join("kernel"), "k").unwrap();
    let d = dir.display().to_string();
    let db = h.db();
    db.upsert(
        "osimage",
        &[("imagename", "img1")],
        &[("provmethod", "netboot"), ("osvers", "rocky9")],
    )
    .await
    .unwrap();
    db.upsert(
        "linuximage",
        &[("imagename", "img1")],
        &[("rootimgdir", &d)],
    )
    .await
    .unwrap();
    (dir, copy)
}

#[tokio::test]
async fn removes_the_image_but_never_a_link_target() {
    let h = Harness::new(plugin_rmimage::handlers()).await;
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("keep.txt"), "precious").unwrap();
    let (dir, copy) = image(&h, outside.path()).await;
    let o = h.run("rmimage", &["img1"]).await;
    o.ok();
    assert!(!dir.exists() && !copy.exists(), "{:?}", o.lines());
    assert_eq!(
        fs::read_to_string(outside.path().join("keep.txt")).unwrap(),
        "precious"
    );
    assert!(o
        .lines()
        .iter()
        .any(|l| l == &format!("Removing directory {}", dir.join(".private").display())));
    // liteimg's ramdisk archive and its record too (xCAT's rmimage leaves them).
    for f in ["rootimg-statelite.gz", "rootimg-statelite.gz.info"] {
        let line = format!("Removing file {}", dir.join(f).display());
        assert!(o.lines().contains(&line), "{line}: {:?}", o.lines());
    }
    assert!(o
        .lines()
        .iter()
        .any(|l| l.starts_with("The osimage definition img1 is kept")));
    assert!(h.db().get_row("osimage", "img1").await.unwrap().is_some());
    // Again, with --xcatdef: no files left, the definition goes.
    let o = h.run("rmimage", &["img1", "--xcatdef"]).await;
    o.ok();
    assert!(h.db().get_row("osimage", "img1").await.unwrap().is_none());
    assert!(h
        .db()
        .get_row("linuximage", "img1")
        .await
        .unwrap()
        .is_none());
    assert!(
        o.lines()
            .iter()
            .any(|l| l == "osimage definition for img1 is removed."),
        "{:?}",
        o.lines()
    );
}

#[tokio::test]
async fn refuses_a_symlinked_directory_and_a_locked_image() {
    let h = Harness::new(plugin_rmimage::handlers()).await;
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("keep.txt"), "precious").unwrap();
    let (dir, _) = image(&h, outside.path()).await;
    // A capture of the image holds its lock.
    let lock = xcat_jobkit::lock_image(&dir, "img1", "capimage of n1 by root").unwrap();
    let e = h.run("rmimage", &["img1"]).await.err();
    assert!(e.contains("is busy: capimage of n1 by root"), "{e}");
    assert!(dir.join("kernel").exists());
    drop(lock);
    // An image directory that is itself a link to elsewhere.
    let linked = h.settings().install_dir.join("netboot/linked");
    symlink(outside.path(), &linked).unwrap();
    let l = linked.display().to_string();
    h.db()
        .upsert(
            "linuximage",
            &[("imagename", "img2")],
            &[("rootimgdir", &l)],
        )
        .await
        .unwrap();
    let e = h.run("rmimage", &["img2"]).await.err();
    assert!(e.contains("it is a symbolic link"), "{e}");
    assert!(outside.path().join("keep.txt").exists());
    // rootimgdir naming the install directory itself.
    let i = h.settings().install_dir.display().to_string();
    h.db()
        .upsert(
            "linuximage",
            &[("imagename", "img3")],
            &[("rootimgdir", &i)],
        )
        .await
        .unwrap();
    let e = h.run("rmimage", &["img3"]).await.err();
    assert!(e.contains("refusing to remove"), "{e}");
    assert!(dir.join("kernel").exists());
}
