//! packimage builds the stateless initrd when it is missing or stale, and a
//! failure to build it is a warning, not a failed pack. A small image made
//! here: stand-in modules (text files named by a hand-written modules.dep), the
//! server's busybox-static, which also stands in for xcat-netinit.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use xcat_plugin::testing::{Harness, Outcome};

const KVER: &str = "6.1.0-18-amd64";

async fn harness(netinit: &str) -> Harness {
    let netinit = PathBuf::from(netinit);
    Harness::new(plugin_packimage::handlers())
        .await
        .configure(|s| {
            s.initrd.busybox = "/bin/busybox".into();
            s.initrd.netinit = netinit;
        })
}

async fn image(h: &Harness) -> PathBuf {
    let dir = h.settings().install_dir.join("netboot/deb/x86_64/compute");
    let root = dir.join("rootimg");
    let moddir = root.join("lib/modules").join(KVER);
    fs::create_dir_all(moddir.join("kernel/drivers/net")).unwrap();
    fs::write(moddir.join("kernel/drivers/net/virtio_net.ko"), "stand-in").unwrap();
    fs::write(
        moddir.join("modules.dep"),
        "kernel/drivers/net/virtio_net.ko:\n",
    )
    .unwrap();
    for d in ["boot", "sbin", "usr/lib/systemd/system"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join(format!("boot/vmlinuz-{KVER}")), "kernel").unwrap();
    fs::write(root.join("sbin/init"), "#!/bin/sh\n").unwrap();
    fs::write(
        root.join("usr/lib/systemd/system/systemd-networkd.service"),
        "",
    )
    .unwrap();
    let d = dir.display().to_string();
    h.db()
        .upsert(
            "linuximage",
            &[("imagename", "img")],
            &[("rootimgdir", d.as_str()), ("kernelver", KVER)],
        )
        .await
        .unwrap();
    dir
}

fn line_with(o: &Outcome, kind: &str, needle: &str) -> Option<String> {
    o.kinds()
        .into_iter()
        .find(|(k, l)| *k == kind && l.contains(needle))
        .map(|(_, l)| l)
}

#[tokio::test]
async fn the_initrd_is_built_once_and_then_kept_while_it_is_up_to_date() {
    let h = harness("/bin/busybox").await;
    let dir = image(&h).await;
    let o = h.run("packimage", &["img"]).await;
    let built = line_with(
        o.ok(),
        "info",
        "packimage: img: initrd-stateless.gz built (",
    )
    .unwrap_or_else(|| panic!("{:#?}", o.lines()));
    assert!(
        built.starts_with(
            "packimage: img: initrd-stateless.gz built (1 modules, 0 firmware files, "
        ),
        "{built}"
    );
    // The archive's own outputs are still there.
    for f in [
        "rootimg.cpio.gz",
        "kernel",
        "initrd-netboot.cpio.gz",
        "boot.ipxe",
        "initrd-stateless.gz",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert!(line_with(&o, "info", "packimage: packed img into").is_some());
    // The add-on and the initrd carry the same additions.
    let list = |f: &str, prefix: &str| -> Vec<String> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "gzip -dc '{}' | cpio -t --quiet",
                dir.join(f).display()
            ))
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter(|l| l.starts_with("etc/systemd/"))
            .map(str::to_string)
            .collect()
    };
    let addon = list("initrd-netboot.cpio.gz", "");
    assert!(
        addon.contains(&"etc/systemd/network/90-xcat-netboot.network".to_string()),
        "{addon:?}"
    );
    assert_eq!(addon, list("initrd-stateless.gz", "rootfs-additions/"));

    let o = h.run("packimage", &["img"]).await;
    let kept = format!("packimage: img: initrd-stateless.gz is up to date for kernel {KVER}");
    assert!(
        line_with(o.ok(), "info", &kept).is_some(),
        "{:#?}",
        o.lines()
    );
    assert!(line_with(&o, "info", "initrd-stateless.gz built").is_none());
}

#[tokio::test]
async fn an_initrd_that_cannot_be_built_is_a_warning_and_the_pack_stands() {
    let h = harness("/nonexistent/xcat-netinit").await;
    let dir = image(&h).await;
    let o = h.run("packimage", &["img"]).await;
    let w = line_with(o.ok(), "warning", "no new initrd-stateless.gz")
        .unwrap_or_else(|| panic!("{:#?}", o.lines()));
    assert!(
        w.starts_with(
            "packimage: img: no new initrd-stateless.gz: cannot put netinit into the initrd: /nonexistent/xcat-netinit \
             ([initrd] netinit) does not exist; build it with scripts/build-netinit"
        ) && w.ends_with("(run geninitrd img once fixed)"),
        "{w}"
    );
    assert!(dir.join("rootimg.cpio.gz").is_file() && !dir.join("initrd-stateless.gz").exists());
}
