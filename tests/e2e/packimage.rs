//! packimage end to end: the real daemon and client; image trees built here or
//! captured from a test-bed node; the packed node booted under qemu and reached by
//! ssh. Needs root and the Debian packages cpio, zstd, kmod, qemu-system-x86,
//! ipxe-qemu, openssh-client (and the test bed's packages).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xcat_remote::testbed::{NodeOptions, TestBed};
use xcatd_tests::netboot::{debian_kernel, install_kernel, key_blob, sh};
use xcatd_tests::Daemon;

fn require(tools: &[&str]) {
    for t in tools {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "{t} is missing: apt-get install -y --no-install-recommends cpio zstd kmod qemu-system-x86 ipxe-qemu openssh-client"
        );
    }
}

fn output(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small image tree with two fake kernels, a file capability and systemd's layout.
fn small_image(dir: &Path) {
    let r = dir.join("rootimg");
    std::fs::create_dir_all(&r).unwrap();
    sh(&format!(
        "cd '{}' && mkdir -p boot etc/systemd/system/multi-user.target.wants usr/lib/systemd/system usr/sbin usr/bin \
         && ln -s usr/lib lib && ln -s usr/sbin sbin && ln -s usr/bin bin \
         && echo kernel-one > boot/vmlinuz-1.0 && echo kernel-two > boot/vmlinuz-2.0 \
         && ln -s vmlinuz-2.0 boot/vmlinuz \
         && echo '[Unit]' > usr/lib/systemd/system/systemd-networkd.service \
         && printf '#!/bin/sh\\n' > usr/sbin/init && chmod 755 usr/sbin/init \
         && echo ping > usr/bin/ping && setcap cap_net_raw+ep usr/bin/ping \
         && seq 1 100000 > etc/numbers",
        r.display()
    ));
}

fn list_cpio(archive: &Path) -> Vec<String> {
    let text = sh(&format!(
        "zstd -dcq '{}' | cpio -it --quiet",
        archive.display()
    ));
    text.lines().map(str::to_string).collect()
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn packimage_formats_kernel_choice_lock_and_errors() {
    require(&["cpio", "zstd", "setcap", "depmod"]);
    let d = Daemon::start();
    let dir = d.install_dir().join("netboot/test12/x86_64/compute");
    small_image(&dir);
    let dirs = dir.display().to_string();
    d.ok(&[
        "chtab",
        "imagename=img1",
        &format!("linuximage.rootimgdir={dirs}"),
        "linuximage.kernelver=1.0",
    ]);

    // tar.zst: the recorded kernel, no boot.ipxe (a tar is not an initramfs).
    let out = d.client(&["packimage", "-m", "tar", "-c", "zstd", "img1"]);
    let (so, se) = output(&out);
    assert!(out.status.success(), "{so}\n{se}\n{}", d.log());
    assert!(
        so.contains("packimage: packed img1 into") && so.contains("rootimg.tar.zst"),
        "{so}"
    );
    assert!(!se.contains("capabilit"), "tar keeps capabilities: {se}");
    assert_eq!(
        std::fs::read_to_string(dir.join("kernel")).unwrap(),
        "kernel-one\n"
    );
    assert!(dir.join("rootimg.tar.zst").is_file());
    assert!(!dir.join("boot.ipxe").exists());
    let listing = sh(&format!("tar -tf '{dirs}/rootimg.tar.zst'"));
    assert!(listing.lines().any(|l| l == "./usr/bin/ping"), "{listing}");

    // cpio.zst: the tar goes away, cpio warns about the capability, boot files appear.
    let out = d.client(&["packimage", "-c", "zstd", "img1"]);
    let (so, se) = output(&out);
    assert!(out.status.success(), "{so}\n{se}");
    let all = format!("{so}\n{se}");
    assert!(
        all.contains("cpio drops the file capabilities of 1 entry (e.g. /usr/bin/ping); tar and squashfs keep them"),
        "{all}"
    );
    assert!(
        all.contains("removed the stale") && all.contains("rootimg.tar.zst"),
        "{all}"
    );
    assert!(!dir.join("rootimg.tar.zst").exists());
    let names = list_cpio(&dir.join("rootimg.cpio.zst"));
    assert!(
        names.contains(&"./etc/numbers".to_string()) && names.contains(&".".to_string()),
        "{names:?}"
    );
    let addon = list_cpio(&dir.join("initrd-netboot.cpio.zst"));
    for want in [
        "etc/systemd/network/90-xcat-netboot.network",
        "etc/systemd/system/xcat-ssh-hostkeys.service",
        "etc/systemd/system/multi-user.target.wants/xcat-ssh-hostkeys.service",
        "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
    ] {
        assert!(
            addon.contains(&want.to_string()),
            "add-on lacks {want}: {addon:?}"
        );
    }
    let ipxe = std::fs::read_to_string(dir.join("boot.ipxe")).unwrap();
    assert!(ipxe.starts_with("#!ipxe\n"), "{ipxe}");
    assert!(
        ipxe.contains("\ninitrd rootimg.cpio.zst\ninitrd initrd-netboot.cpio.zst\nboot\n"),
        "{ipxe}"
    );
    assert!(
        ipxe.contains("kernel kernel ") && ipxe.contains("rdinit=/sbin/init"),
        "{ipxe}"
    );
    // The image has no modules for its kernel: said, not fatal.
    assert!(all.contains("no modules for kernel 1.0"), "{all}");

    // A kernel missing from the image: the newest one, a warning, kernelver updated.
    d.ok(&["chtab", "imagename=img1", "linuximage.kernelver=9.9"]);
    let out = d.client(&["packimage", "-m", "cpio", "-c", "gzip", "img1"]);
    let (so, se) = output(&out);
    assert!(out.status.success(), "{so}\n{se}");
    assert!(
        se.contains("has no kernel 9.9") && se.contains("newest kernel in its /boot: 2.0"),
        "{se}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("kernel")).unwrap(),
        "kernel-two\n"
    );
    let tab = d.ok(&["tabdump", "linuximage"]);
    assert!(tab.contains("\"2.0\""), "{tab}");
    assert!(dir.join("rootimg.cpio.gz").is_file() && !dir.join("rootimg.cpio.zst").exists());
    assert!(
        dir.join("initrd-netboot.cpio.gz").is_file()
            && !dir.join("initrd-netboot.cpio.zst").exists()
    );
    let names = sh(&format!(
        "gzip -dc '{dirs}/rootimg.cpio.gz' | cpio -it --quiet"
    ));
    assert!(names.lines().any(|l| l == "./etc/numbers"), "{names}");

    // One job per image: a holder of the image lock makes packimage fail at once.
    let lock = xcat_image::publish::lock_image_dir(&dir, "capimage of nodeX by test").unwrap();
    let t = Instant::now();
    let out = d.client(&["packimage", "img1"]);
    let (so, se) = output(&out);
    assert!(!out.status.success(), "{so}");
    assert!(se.contains("is busy: capimage of nodeX by test"), "{se}");
    assert!(t.elapsed() < Duration::from_secs(10));
    drop(lock);

    // Errors are answers.
    let out = d.client(&["packimage", "nosuch"]);
    let (_, se) = output(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(se.contains("nosuch is not defined in linuximage"), "{se}");
    let out = d.client(&["packimage", "-m", "zip", "img1"]);
    let (so, se) = output(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(format!("{so}{se}").contains("Usage: packimage"), "{so}{se}");
    // Nothing temporary left in the image directory.
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".rootimg.pack-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Qemu(std::process::Child);
impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A qemu guest (TCG, 2 CPUs) booting `kernel` and `initrd` directly with
/// `append`, its serial console to `console`, a user-mode virtio NIC with
/// `net_extra` options (such as a `hostfwd=`); spawn it to start it.
pub(crate) fn direct_boot(
    kernel: &Path,
    initrd: &Path,
    append: &str,
    mem_mib: u32,
    console: &Path,
    net_extra: &str,
) -> Command {
    let netdev = match net_extra {
        "" => "user,id=n0,restrict=on".to_string(),
        extra => format!("user,id=n0,restrict=on,{extra}"),
    };
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-accel", "tcg", "-m", &mem_mib.to_string(), "-smp", "2"])
        .args(["-no-reboot", "-display", "none", "-monitor", "none"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(append)
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args(["-netdev", &netdev])
        .args(["-device", "virtio-net-pci,netdev=n0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Power-on to the guest's sshd answering, at most.
const SSH_WAIT: Duration = Duration::from_secs(360);

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn captured_node_packs_and_netboots_under_qemu() {
    require(&[
        "cpio",
        "zstd",
        "depmod",
        "qemu-system-x86_64",
        "ssh",
        "ssh-keyscan",
        "dpkg-deb",
        "apt-get",
    ]);
    let (_, kver) = debian_kernel();
    let node = TestBed::node_with("pkb", &NodeOptions::default());
    let node_root = install_kernel(&node, &kver);
    let node_key =
        std::fs::read_to_string(node_root.join("etc/ssh/xtb_host_ed25519_key.pub")).unwrap();
    let node_blob = key_blob(&node_key).unwrap();

    let d = Daemon::for_nodes(&[&node], "");
    let out = d.client(&["capimage", &node.name, "--pack", "cpio.zst"]);
    let (so, se) = output(&out);
    eprintln!("capimage --pack output:\n{so}\n{se}");
    assert!(
        out.status.success(),
        "capimage --pack failed:\n{so}\n{se}\n{}",
        d.log()
    );
    assert!(
        se.contains("using the newest kernel in its /boot") && se.contains(&kver),
        "no warning about the kernel choice: {se}"
    );
    assert!(
        so.contains("packimage: packed debian12-x86_64-netboot-compute into"),
        "{so}"
    );
    let dir = d.install_dir().join("netboot/debian12/x86_64/compute");
    for f in [
        "kernel",
        "rootimg.cpio.zst",
        "initrd-netboot.cpio.zst",
        "boot.ipxe",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    let tab = d.ok(&["tabdump", "linuximage"]);
    assert!(
        tab.contains(&format!("\"{kver}\"")),
        "kernelver not recorded: {tab}"
    );
    let addon = list_cpio(&dir.join("initrd-netboot.cpio.zst"));
    let virtio = format!("usr/lib/modules/{kver}/kernel/drivers/net/virtio_net.ko");
    assert!(
        addon.contains(&virtio),
        "add-on lacks {virtio}: {} entries",
        addon.len()
    );
    assert!(addon.contains(&format!("usr/lib/modules/{kver}/modules.alias")));

    // Boot it: kernel + the packed image + the add-on, as boot.ipxe says.
    let ipxe = std::fs::read_to_string(dir.join("boot.ipxe")).unwrap();
    let kline = ipxe
        .lines()
        .find(|l| l.starts_with("kernel kernel "))
        .expect("kernel line");
    let cmdline: Vec<&str> = kline
        .trim_start_matches("kernel kernel ")
        .split_whitespace()
        .filter(|w| !w.starts_with("initrd="))
        .collect();
    let initrds: Vec<&str> = ipxe
        .lines()
        .filter_map(|l| l.strip_prefix("initrd "))
        .collect();
    assert_eq!(initrds, ["rootimg.cpio.zst", "initrd-netboot.cpio.zst"]);
    let work = tempfile::tempdir().unwrap();
    let combined = work.path().join("initrd");
    sh(&format!(
        "cat '{0}/rootimg.cpio.zst' '{0}/initrd-netboot.cpio.zst' > '{1}'",
        dir.display(),
        combined.display()
    ));
    let port = free_port();
    let console = work.path().join("console.log");
    let t0 = Instant::now();
    let _qemu = Qemu(
        direct_boot(
            &dir.join("kernel"),
            &combined,
            &cmdline.join(" "),
            2048,
            &console,
            &format!("hostfwd=tcp:127.0.0.1:{port}-:22"),
        )
        .spawn()
        .expect("qemu-system-x86_64"),
    );
    // Trust on first use, then strict checking: the guest's key is whatever it made
    // at boot, and must not be the captured node's.
    let kh = work.path().join("known_hosts");
    // TCG on a loaded two-core host: a minute alone, several beside the suite.
    let deadline = t0 + SSH_WAIT;
    let mut scanned = String::new();
    while Instant::now() < deadline {
        let o = Command::new("ssh-keyscan")
            .args([
                "-T",
                "3",
                "-t",
                "ed25519",
                "-p",
                &port.to_string(),
                "127.0.0.1",
            ])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        scanned = String::from_utf8_lossy(&o.stdout).into_owned();
        if scanned.contains("ssh-ed25519") {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let console_text = || std::fs::read_to_string(&console).unwrap_or_default();
    assert!(
        scanned.contains("ssh-ed25519"),
        "the guest's sshd did not answer within {SSH_WAIT:?}; console:\n{}",
        console_text()
    );
    std::fs::write(&kh, &scanned).unwrap();
    std::fs::set_permissions(&kh, std::fs::Permissions::from_mode(0o600)).unwrap();
    let guest_blob =
        key_blob(scanned.lines().find(|l| l.contains("ssh-ed25519")).unwrap()).unwrap();
    assert_ne!(
        guest_blob, node_blob,
        "the booted guest uses the captured node's host key"
    );

    let mut result = None;
    while Instant::now() < deadline {
        let o = Command::new("ssh")
            .arg("-i")
            .arg(&node.identity)
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", kh.display()))
            .args(["-p", &port.to_string(), "root@127.0.0.1"])
            .arg("uname -r; cat /etc/machine-id; ip -4 -o addr show; cat /etc/ssh/ssh_host_ed25519_key.pub")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if o.status.success() {
            result = Some(String::from_utf8_lossy(&o.stdout).into_owned());
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let booted = t0.elapsed();
    let text =
        result.unwrap_or_else(|| panic!("ssh into the guest failed; console:\n{}", console_text()));
    eprintln!("guest answered after {:.1}s:\n{text}", booted.as_secs_f64());
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(kver.as_str()), "{text}");
    let machine_id = lines.next().unwrap_or_default();
    assert_eq!(
        machine_id.len(),
        32,
        "machine-id not generated at boot: {text}"
    );
    assert!(
        text.contains("inet 10.0.2.15/"),
        "no DHCP address on the NIC: {text}"
    );
    assert!(text.contains(&guest_blob), "{text}");
}
