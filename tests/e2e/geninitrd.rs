//! The stateless initrd of Debian's real kernel: its modules chosen and ordered
//! from their own `.modinfo` when the image has no `modules.dep`, the same set in
//! a valid order when it has one, and the initrd booted under qemu (TCG): the
//! real kernel loads the real modules in that order, `/init` gets a lease from
//! qemu's own DHCP (user networking, restricted: no host interface, nothing
//! reachable) and switches to the "image". The image step is a stand-in, named
//! as such: the real xcat-netinit is another crate's, so a shell script appended
//! to the initrd as a second archive takes its place and mounts a tiny image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use plugin_geninitrd::{build, InitrdOutcome, InitrdSpec, INITRD_FILE};
use xcat_plugin::boot::InitrdSettings;

use super::packimage::direct_boot;
use xcatd_tests::netboot::{debian_kernel, sh};

/// Builds the initrd of the tree `rootimg` (kernel `kver`) into `dir`.
fn initrd(dir: &Path, rootimg: &Path, kver: &str) -> (InitrdOutcome, Duration) {
    std::fs::create_dir_all(dir).unwrap();
    // The real busybox-static; busybox again where xcat-netinit goes.
    let settings = InitrdSettings {
        busybox: "/bin/busybox".into(),
        netinit: "/bin/busybox".into(),
    };
    let spec = InitrdSpec::new(dir, rootimg, kver, &[], &settings);
    let t0 = Instant::now();
    let o = build(&spec, &AtomicBool::new(false)).expect("the initrd of Debian's kernel");
    (o, t0.elapsed())
}

fn load_order(dir: &Path, kver: &str) -> Vec<String> {
    sh(&format!(
        "gzip -dc '{}' | cpio -i --quiet --to-stdout lib/modules/{kver}/load.order",
        dir.join(INITRD_FILE).display()
    ))
    .lines()
    .map(str::to_string)
    .collect()
}

/// modules.dep of `moddir`: each module's dependencies, by path.
fn dep_table(moddir: &Path) -> HashMap<String, Vec<String>> {
    std::fs::read_to_string(moddir.join("modules.dep"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| {
            let plain = |p: &str| {
                p.trim_end_matches(".xz")
                    .trim_end_matches(".zst")
                    .to_string()
            };
            (plain(m), d.split_whitespace().map(plain).collect())
        })
        .collect()
}

fn assert_dependencies_first(order: &[String], table: &HashMap<String, Vec<String>>) {
    let pos: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    for (i, m) in order.iter().enumerate() {
        for d in table
            .get(m)
            .unwrap_or_else(|| panic!("{m} not in modules.dep"))
        {
            let at = pos
                .get(d.as_str())
                .unwrap_or_else(|| panic!("{m} needs {d}, not in the initrd"));
            assert!(*at < i, "{d} loads after {m}, which needs it");
        }
    }
}

/// The Debian tree has no modules.dep (the package's postinst runs depmod): a
/// copy of it made of hard links, with depmod run over it.
fn with_depmod(kernel: &Path, kver: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir_in("/var/cache/xcatd-rs-tests").unwrap();
    let r = t.path().join("rootimg");
    sh(&format!(
        "mkdir -p '{r}/lib/modules' && cp -al '{k}/boot' '{r}/boot' && cp -al '{k}/lib/modules/{kver}' '{r}/lib/modules/' \
         && depmod -b '{r}' '{kver}'",
        r = r.display(),
        k = kernel.display()
    ));
    t
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn debian_kernel_modules_in_dependency_order_and_the_initrd_boots_under_qemu() {
    let (kernel, kver) = debian_kernel();
    let work = tempfile::tempdir().unwrap();
    let bare = work.path().join("bare");
    let (o, took) = initrd(&bare, &kernel, &kver);
    eprintln!(
        "initrd of {kver} from .modinfo: {} modules, {} firmware files, {} bytes in {:.1}s",
        o.modules,
        o.firmware,
        o.bytes,
        took.as_secs_f64()
    );
    assert!(
        o.notes.iter().any(|n| n.contains("modules.dep")),
        "{:?}",
        o.notes
    );
    let from_modinfo = load_order(&bare, &kver);
    let with_dep = with_depmod(&kernel, &kver);
    let moddir = with_dep.path().join("rootimg/lib/modules").join(&kver);
    let table = dep_table(&moddir);
    let (o2, took) = initrd(
        &work.path().join("depmod"),
        &with_dep.path().join("rootimg"),
        &kver,
    );
    eprintln!(
        "initrd of {kver} from modules.dep: {} bytes in {:.1}s",
        o2.bytes,
        took.as_secs_f64()
    );
    let from_table = load_order(&work.path().join("depmod"), &kver);
    assert_dependencies_first(&from_modinfo, &table);
    assert_dependencies_first(&from_table, &table);
    let mut a = from_modinfo.clone();
    let mut b = from_table.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same modules either way");
    for m in [
        "virtio_pci",
        "virtio_net",
        "e1000e",
        "mlx5_core",
        "nvme",
        "squashfs",
        "overlay",
        "loop",
        "net_failover",
        "nfsv4",
        "sunrpc",
    ] {
        assert!(
            from_modinfo
                .iter()
                .any(|p| p.ends_with(&format!("/{m}.ko"))),
            "{m} missing from {from_modinfo:#?}"
        );
    }
    boot_under_qemu(
        &bare.join(INITRD_FILE),
        &kernel.join(format!("boot/vmlinuz-{kver}")),
        &kver,
        from_modinfo.len(),
    );
}

/// Stand-in for xcat-netinit: `nic` names the first NIC; `boot` mounts a tmpfs
/// with busybox and an init that lists the loaded modules and powers off.
const NETINIT_STANDIN: &str = r#"#!/bin/sh
case $1 in
nic)
    for d in /sys/class/net/*; do
        [ "${d##*/}" = lo ] || { echo "${d##*/}"; exit 0; }
    done
    exit 1 ;;
boot)
    echo "stand-in boot: resolv.conf [$(tr '\n' ' ' </etc/resolv.conf)]" >&2
    mount -t tmpfs image "$2" || exit 1
    mkdir -p "$2/bin" "$2/sbin"
    cp /bin/busybox "$2/bin/busybox"
    ln -s busybox "$2/bin/sh"
    cat >"$2/sbin/init" <<'EOF'
#!/bin/sh
echo "image init: pid $$ modules [$(awk '{print $1}' /proc/modules | sort | tr '\n' ' ')]"
echo "image init: network [$(ls /etc/systemd/network)]"
poweroff -f
EOF
    chmod 755 "$2/sbin/init" ;;
esac
"#;

fn boot_under_qemu(initrd: &Path, vmlinuz: &Path, kver: &str, modules: usize) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("overlay/bin")).unwrap();
    let standin = w.join("overlay/bin/xcat-netinit");
    std::fs::write(&standin, NETINIT_STANDIN).unwrap();
    sh(&format!("chmod 755 '{}'", standin.display()));
    // A second archive after the first: the kernel unpacks both, the later file wins.
    let combined: PathBuf = w.join("initrd");
    sh(&format!(
        "cd '{o}' && find bin | cpio -o -H newc --quiet | gzip > '{w}/overlay.gz' && cat '{i}' '{w}/overlay.gz' > '{c}'",
        o = w.join("overlay").display(),
        w = w.display(),
        i = initrd.display(),
        c = combined.display()
    ));
    let console = w.join("console.log");
    let t0 = Instant::now();
    let mut qemu = direct_boot(
        vmlinuz,
        &combined,
        "console=ttyS0 panic=-1",
        1024,
        &console,
        "",
    )
    .spawn()
    .expect("qemu-system-x86_64");
    let deadline = t0 + Duration::from_secs(300);
    while Instant::now() < deadline && qemu.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    let ours: Vec<&str> = log
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| {
            l.starts_with("xcat-init:") || l.starts_with("image init:") || l.starts_with("stand-in")
        })
        .collect();
    eprintln!(
        "qemu ran {:.1}s; the initrd's lines:\n{}",
        t0.elapsed().as_secs_f64(),
        ours.join("\n")
    );
    let find = |needle: &str| {
        ours.iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} on the console:\n{log}"))
            .to_string()
    };
    // Every module loads, but those for another machine (Hyper-V, Xen, CPU
    // features TCG lacks): "No such device", counted apart, no line each.
    let loaded = find("xcat-init: loaded ");
    let counts: Vec<usize> = loaded
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        loaded.ends_with(&format!(
            "modules for kernel {kver} ({} for hardware or hypervisors this node lacks)",
            modules - counts[0]
        )) && modules - counts[0] <= 6,
        "{loaded} ({modules} in load.order)"
    );
    assert!(
        !ours.iter().any(|l| l.starts_with("xcat-init: module ")),
        "{ours:#?}"
    );
    let up = find("xcat-init: network up on ");
    assert!(
        up.starts_with("xcat-init: network up on eth0 (10.0.2."),
        "{up}"
    );
    // (qemu's restricted user network offers no DNS server.)
    find("stand-in boot: resolv.conf [");
    find("xcat-init: switching to the image's init");
    let mods = find("image init: pid 1 modules [");
    for m in [
        "virtio_net",
        "virtio_pci",
        "squashfs",
        "overlay",
        "failover",
    ] {
        assert!(
            mods.contains(&format!(" {m} ")) || mods.contains(&format!("[{m} ")),
            "{m} not loaded: {mods}"
        );
    }
    find("image init: network [90-xcat-netboot.network]");
}

/// `geninitrd` through the daemon and the client: the [initrd] settings from the
/// configuration file, the initrd and kernel beside the image, the table updated.
#[test]
#[ignore = "needs the binaries (cargo build --workspace --bins): ./scripts/test-all runs it"]
fn geninitrd_through_the_daemon() {
    let d = xcatd_tests::Daemon::start_with(xcatd_tests::DaemonOptions {
        extra_config: format!(
            "[initrd]\nbusybox = \"/bin/busybox\"\nnetinit = \"{}\"\n",
            xcatd_tests::netinit_binary().display()
        ),
        ..Default::default()
    });
    let dir = d.install_dir().join("netboot/deb12/x86_64/compute");
    let moddir = dir.join("rootimg/lib/modules/6.1.0-9-amd64");
    sh(&format!(
        "mkdir -p '{m}/kernel/drivers/net' '{r}/boot' && echo stand-in > '{m}/kernel/drivers/net/virtio_net.ko' \
         && echo 'kernel/drivers/net/virtio_net.ko:' > '{m}/modules.dep' && echo kernel > '{r}/boot/vmlinuz-6.1.0-9-amd64'",
        m = moddir.display(),
        r = dir.join("rootimg").display()
    ));
    d.ok(&[
        "chtab",
        "imagename=img1",
        &format!("linuximage.rootimgdir={}", dir.display()),
        "linuximage.netdrivers=igb,nosuchnic",
    ]);
    let out = d.client(&["geninitrd", "img1"]);
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{so}\n{se}\n{}", d.log());
    assert!(
        se.contains(
            "geninitrd: img1: netdriver nosuchnic (linuximage.netdrivers) is neither a module"
        ),
        "{se}"
    );
    // Named by the admin: a word even though it is one of the defaults too.
    assert!(
        se.contains("geninitrd: img1: netdriver igb (linuximage.netdrivers)"),
        "{se}"
    );
    assert!(
        so.lines().last().unwrap_or_default().starts_with(
            "geninitrd: img1: initrd-stateless.gz built (1 modules, 0 firmware files, "
        ),
        "{so}"
    );
    assert!(dir.join(INITRD_FILE).is_file() && dir.join("kernel").is_file());
    assert!(d
        .ok(&["tabdump", "linuximage"])
        .contains("\"6.1.0-9-amd64\""));
    let out = d.client(&["geninitrd"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: geninitrd"));
}
