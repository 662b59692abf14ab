//! `geninitrd` in-process: its command line, and a run over a small image made
//! here (stand-in modules: text files named by a hand-written modules.dep) with
//! the server's busybox-static, which also stands in for xcat-netinit.

use std::fs;
use std::path::{Path, PathBuf};

use xcat_plugin::args::VERSION;
use xcat_plugin::testing::{Harness, Outcome};

async fn harness() -> Harness {
    Harness::new(plugin_geninitrd::handlers())
        .await
        .configure(|s| {
            s.initrd.busybox = "/bin/busybox".into();
            s.initrd.netinit = "/bin/busybox".into();
        })
}

#[tokio::test]
async fn help_version_and_usage_errors() {
    let h = harness().await;
    let o = h.run("geninitrd", &["-h"]).await;
    assert!(o.ok().kinds().iter().all(|(k, _)| *k == "data"));
    assert!(o.lines()[0].starts_with("Usage: geninitrd <imagename>"));
    let o = h.run("geninitrd", &["--version"]).await;
    assert_eq!(
        o.ok().lines(),
        [format!("geninitrd Version {VERSION} (xcatd-rs)")]
    );
    for (args, want) in [
        (&[][..], "geninitrd needs the name of the image (osimage)"),
        (
            &["a", "b"],
            "geninitrd builds one image's initrd; unexpected \"b\"",
        ),
        (&["-n", "igb", "img"], "unknown option -n"),
    ] {
        let e = h.run("geninitrd", args).await.usage_err();
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(e.contains("\nUsage: geninitrd"), "{e}");
    }
    let e = h.run("geninitrd", &["nosuch"]).await.err();
    assert!(e.contains("nosuch is not defined in linuximage"), "{e}");
}

/// An image directory under the harness's install root with two kernels, and
/// its linuximage row.
async fn image(h: &Harness, netdrivers: &str) -> PathBuf {
    let dir = h.settings().install_dir.join("netboot/deb/x86_64/compute");
    let root = dir.join("rootimg");
    for kver in ["6.1.0-9-amd64", "6.1.0-18-amd64"] {
        let moddir = root.join("lib/modules").join(kver);
        fs::create_dir_all(moddir.join("kernel/drivers/net")).unwrap();
        fs::write(moddir.join("kernel/drivers/net/virtio_net.ko"), "stand-in").unwrap();
        fs::write(
            moddir.join("modules.dep"),
            "kernel/drivers/net/virtio_net.ko:\n",
        )
        .unwrap();
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::write(root.join(format!("boot/vmlinuz-{kver}")), kver).unwrap();
    }
    let d = dir.display().to_string();
    h.db()
        .upsert(
            "linuximage",
            &[("imagename", "img")],
            &[("rootimgdir", d.as_str()), ("netdrivers", netdrivers)],
        )
        .await
        .unwrap();
    dir
}

fn has(o: &Outcome, kind: &str, needle: &str) -> bool {
    o.kinds()
        .iter()
        .any(|(k, l)| *k == kind && l.contains(needle))
}

#[tokio::test]
async fn builds_the_initrd_and_the_kernel_for_the_newest_kernel_and_records_it() {
    let h = harness().await;
    let dir = image(&h, "nosuchnic").await;
    // What a killed build leaves: removed under the lock.
    let leftover = xcat_image::pack::temp_path(&dir, "initrd-stateless.gz");
    fs::write(&leftover, "half an initrd").unwrap();
    let o = h.run("geninitrd", &["img"]).await;
    o.ok();
    let lines = o.lines();
    assert!(
        has(&o, "warning", "geninitrd: img: no kernel version recorded for the image; using the newest kernel in its /boot: 6.1.0-18-amd64"),
        "{lines:#?}"
    );
    assert!(
        has(
            &o,
            "warning",
            "geninitrd: img: netdriver nosuchnic (linuximage.netdrivers) is neither a module"
        ),
        "{lines:#?}"
    );
    assert!(
        has(
            &o,
            "info",
            "geninitrd: img: linuximage.kernelver set to 6.1.0-18-amd64"
        ),
        "{lines:#?}"
    );
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with(
            "geninitrd: img: initrd-stateless.gz built (1 modules, 0 firmware files, "
        ) && summary.ends_with(&format!(
            "for kernel 6.1.0-18-amd64 in {}",
            dir.join("initrd-stateless.gz").display()
        )),
        "{summary}"
    );
    assert_eq!(fs::read(dir.join("kernel")).unwrap(), b"6.1.0-18-amd64");
    let row = h.db().get_row("linuximage", "img").await.unwrap().unwrap();
    assert_eq!(row["kernelver"], "6.1.0-18-amd64");
    let record = plugin_geninitrd::build::read_record(&dir.join("initrd-stateless.gz")).unwrap();
    assert!(record.contains("\nkver=6.1.0-18-amd64\n"), "{record}");

    // The recorded kernel is kept, even when older.
    h.db()
        .upsert(
            "linuximage",
            &[("imagename", "img")],
            &[("kernelver", "6.1.0-9-amd64")],
        )
        .await
        .unwrap();
    let o = h.run("geninitrd", &["img"]).await;
    assert!(
        !has(o.ok(), "warning", "no kernel version recorded"),
        "{:#?}",
        o.lines()
    );
    assert!(o
        .lines()
        .last()
        .unwrap()
        .contains("for kernel 6.1.0-9-amd64"));
    assert_eq!(fs::read(dir.join("kernel")).unwrap(), b"6.1.0-9-amd64");
    assert_no_temporary_files(&dir);
}

fn assert_no_temporary_files(dir: &Path) {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".capimage.lock")
        .collect();
    names.sort();
    assert_eq!(names, ["initrd-stateless.gz", "kernel", "rootimg"]);
}

#[tokio::test]
async fn a_missing_binary_is_named_with_its_setting_and_nothing_changes() {
    let h = Harness::new(plugin_geninitrd::handlers())
        .await
        .configure(|s| {
            s.initrd.busybox = "/bin/busybox".into();
            s.initrd.netinit = "/nonexistent/xcat-netinit".into();
        });
    let dir = image(&h, "").await;
    let e = h.run("geninitrd", &["img"]).await.err();
    assert!(
        e.contains("cannot put netinit into the initrd: /nonexistent/xcat-netinit ([initrd] netinit) does not exist; build it with scripts/build-netinit"),
        "{e}"
    );
    assert!(!dir.join("initrd-stateless.gz").exists() && !dir.join("kernel").exists());
}

#[tokio::test]
async fn a_busy_image_is_refused() {
    let h = harness().await;
    let dir = image(&h, "").await;
    let _held = xcat_jobkit::lock_image(&dir, "img", "capimage of n1 by test").unwrap();
    let e = h.run("geninitrd", &["img"]).await.err();
    assert!(e.contains("is busy: capimage of n1 by test"), "{e}");
}
