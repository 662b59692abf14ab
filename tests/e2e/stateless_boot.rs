//! The stateless boot, as an admin runs it: a test-bed node with a kernel, a
//! file capability and a 5 GiB sparse file is captured once, then packed as
//! tar, squashfs and cpio in turn (packimage builds `initrd-stateless.gz`
//! with geninitrd); `nodeset` and `makedhcp` point a diskless qemu guest
//! (TCG) at it; the guest PXE-boots, its initrd fetches the packed image from
//! the boot service, verifies it, unpacks it into RAM and starts the image's
//! systemd, and the test logs in over ssh: the guest's own host key and
//! machine-id, `/` on tmpfs or overlay, the capability and the sparse file
//! still there. Then the refusals: a packed file with one flipped byte is
//! refused on the console and booted once repaired; a guest with too little
//! RAM was warned about by nodeset and its console says what it needs.
//!
//! Last, a guest of this image is made an LVM-rooted node and captured
//! from LVM snapshots ([`crate::capimage_lvm`]).
//!
//! The guests share one capture and one daemon (the PXE bed is held by one
//! test at a time anyway): capture once, boot many.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xcat_remote::testbed::{NodeOptions, TestBed};
use xcatd_tests::netboot::{
    debian_kernel, define_network_and_guests, install_kernel, key_blob, sh, stateless_daemon, tail,
    wait_for_ssh, Guest, IMAGE, IMAGE_DIR, SL1, SL2,
};
use xcatd_tests::{wait_for_console, Daemon, PxeBed, PxeGuest};
/// PXE to ssh under TCG: 60 to 150 s measured; generous.
const BOOT_WAIT: Duration = Duration::from_secs(420);
/// Power-on to the initrd's first console line: 10 to 30 s measured.
const INIT_WAIT: Duration = Duration::from_secs(240);
/// The big sparse file: 5 GiB, with data at these offsets (MiB).
const BIG: &str = "srv/big.sparse";
const BIG_MARKS: &[u64] = &[0, 2048, 4100, 5119];
const BIG_SIZE: u64 = 5 << 30;
/// The captured file with a capability.
const CAPPED: &str = "usr/local/bin/capped";

/// The node to capture: the Debian kernel, `getcap` with a capped file, a
/// 5 GiB sparse file with marks. Returns the node and its ssh host key blob.
fn prepared_node(kver: &str) -> (xcat_remote::testbed::Node, String) {
    let node = TestBed::node_with(
        "slb",
        &NodeOptions {
            disk_mb: Some(8192),
            ..NodeOptions::default()
        },
    );
    let root = install_kernel(&node, kver);
    let r = root.display();
    sh(&format!(
        "install -m 0755 /usr/sbin/getcap '{r}/usr/local/sbin/getcap' \
         && install -m 0755 /bin/true '{r}/{CAPPED}' && setcap cap_net_raw+ep '{r}/{CAPPED}' \
         && truncate -s {BIG_SIZE} '{r}/{BIG}'"
    ));
    for mib in BIG_MARKS {
        sh(&format!(
            "printf 'mark at {mib} MiB' | dd of='{r}/{BIG}' bs=1M seek={mib} conv=notrunc status=none"
        ));
    }
    let key = std::fs::read_to_string(root.join("etc/ssh/xtb_host_ed25519_key.pub")).unwrap();
    (node, key_blob(&key).unwrap())
}

/// Run in the guest over ssh: one answer per line.
const PROBE: &str = "cat /etc/machine-id; findmnt -n -o FSTYPE /; \
     /usr/local/sbin/getcap /usr/local/bin/capped || echo nocap; \
     stat -c %s /srv/big.sparse 2>/dev/null || echo nobig; \
     for m in 0 2048 4100 5119; do dd if=/srv/big.sparse bs=1M skip=$m count=1 status=none 2>/dev/null | head -c 20 | tr -d '\\0'; echo; done; \
     systemctl is-system-running || true";

struct Run<'a> {
    d: &'a Daemon,
    bed: &'a PxeBed,
    node: &'a xcat_remote::testbed::Node,
    node_key: &'a str,
    work: PathBuf,
}

impl Run<'_> {
    fn dir(&self) -> PathBuf {
        self.d.install_dir().join(IMAGE_DIR)
    }

    /// packimage and nodeset for `g`; returns nodeset's output.
    fn pack_and_nodeset(&self, method: &str, g: &Guest) -> String {
        let packed = self.d.ok(&["packimage", "-m", method, "-c", "zstd", IMAGE]);
        eprintln!("packimage -m {method}:\n{packed}");
        assert!(
            self.dir().join("initrd-stateless.gz").is_file(),
            "packimage built no initrd-stateless.gz:\n{packed}"
        );
        let out = self.d.ok(&["nodeset", g.node, &format!("osimage={IMAGE}")]);
        assert!(
            out.contains(&format!("{}: netboot debian12-x86_64-compute", g.node)),
            "{out}"
        );
        out
    }

    /// `nodelist.status` of `g` once it is `want` (or after a minute).
    fn wait_status(&self, g: &Guest, want: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.d.ok(&["nodels", g.node, "nodelist.status"]);
            if s.contains(want) || start.elapsed() > Duration::from_secs(60) {
                return s;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Start `g`; once more if its kernel never reaches the initrd's init
    /// ([`PxeBed::guest_reaching`]).
    fn start_guest(&self, g: &Guest, firmware: &str, mem: u32, tag: &str) -> (PxeGuest, PathBuf) {
        let console = self.work.join(format!("console-{}-{tag}.log", g.node));
        let guest = self.bed.guest_reaching(
            g.slot,
            g.mac,
            firmware,
            &console,
            mem,
            ("xcat-init:", INIT_WAIT),
        );
        (guest, console)
    }

    /// Boot `g` and check what it runs; `rich`: tar or squashfs, where the
    /// capability and the 5 GiB file must have survived.
    fn boot_and_check(&self, g: &Guest, firmware: &str, tag: &str, rich: bool) {
        let started = Instant::now();
        let (guest, console) = self.start_guest(g, firmware, 2048, tag);
        let booted = wait_for_ssh(
            g,
            &self.node.identity,
            &self.work,
            started,
            BOOT_WAIT + INIT_WAIT,
            PROBE,
        );
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        drop(guest);
        assert!(
            text.contains("image-record.txt: signed by SHA256:"),
            "{tag}: the initrd did not check the signed record; console:\n{}",
            tail(&text, 80)
        );
        let b = booted.unwrap_or_else(|| {
            panic!(
                "{tag}: the guest did not answer ssh within {BOOT_WAIT:?}; console:\n{}\ndaemon log:\n{}",
                tail(&text, 80),
                tail(&self.d.log(), 40)
            )
        });
        eprintln!(
            "{tag}: ssh after {:.1}s: {:?}",
            b.after.as_secs_f64(),
            b.output
        );
        let lines: Vec<&str> = b.output.lines().collect();
        let problem =
            |what: &str| format!("{tag}: {what}: {:?}\nconsole:\n{}", lines, tail(&text, 60));
        assert_ne!(
            b.host_key,
            self.node_key,
            "{}",
            problem("the captured node's host key")
        );
        let line = |i: usize| lines.get(i).copied().unwrap_or_default();
        assert_eq!(
            line(0).len(),
            32,
            "{}",
            problem("no machine-id made at boot")
        );
        assert!(
            ["tmpfs", "overlay"].contains(&line(1)),
            "{}",
            problem("/ is not tmpfs or overlay")
        );
        let status = self.wait_status(g, "booted");
        assert!(
            status.contains("booted"),
            "{}",
            problem(&format!("nodelist.status: {status}"))
        );
        if rich {
            assert!(
                line(2).contains("cap_net_raw=ep"),
                "{}",
                problem("capability lost")
            );
            assert_eq!(
                line(3),
                BIG_SIZE.to_string(),
                "{}",
                problem("sparse file size")
            );
            for (i, mib) in BIG_MARKS.iter().enumerate() {
                assert_eq!(
                    line(4 + i),
                    format!("mark at {mib} MiB"),
                    "{}",
                    problem("sparse file content")
                );
            }
        }
    }
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn captured_node_boots_stateless_as_tar_squashfs_and_cpio_and_refuses_bad_images() {
    let (_, kver) = debian_kernel();
    let (node, node_key) = prepared_node(&kver);
    let bed = PxeBed::up();
    let sup = stateless_daemon(&node);
    let d = &sup.0;
    let captured = d.client(&["capimage", &node.name]);
    assert!(
        captured.status.success(),
        "capimage failed:\n{}\n{}",
        xcatd_tests::output_text(&captured),
        d.log()
    );
    d.ok(&[
        "chtab",
        &format!("imagename={IMAGE}"),
        &format!("linuximage.kernelver={kver}"),
    ]);
    define_network_and_guests(d, &[&SL1, &SL2]);
    d.ok(&["makedhcp", "-n"]);
    let run = Run {
        d,
        bed: &bed,
        node: &node,
        node_key: &node_key,
        work: tempfile::tempdir().unwrap().keep(),
    };

    // tar keeps xattrs and sparse files; booted under BIOS and under UEFI.
    run.pack_and_nodeset("tar", &SL1);
    run.boot_and_check(&SL1, "bios", "tar-bios", true);
    run.boot_and_check(&SL1, "uefi", "tar-uefi", true);

    // squashfs: loop-mounted under an overlay.
    run.pack_and_nodeset("squashfs", &SL1);
    run.boot_and_check(&SL1, "bios", "squashfs", true);

    // cpio cannot hold the 5 GiB file (newc's sizes are 32-bit): the admin
    // removes it first.
    std::fs::remove_file(run.dir().join("rootimg").join(BIG)).unwrap();
    run.pack_and_nodeset("cpio", &SL1);
    run.boot_and_check(&SL1, "bios", "cpio", false);

    refuses_a_corrupt_image_then_boots_it_repaired(&run);
    refuses_a_guest_with_too_little_ram(&run);
    // the booted image has lvm2: a guest of it becomes an LVM-rooted node
    crate::capimage_lvm::lvm_rooted_guest_is_captured_from_snapshots(
        d,
        &bed,
        &node,
        &SL1,
        &run.work,
        BOOT_WAIT + INIT_WAIT,
    );
    let _ = std::fs::remove_dir_all(&run.work);
}

/// The `.info` of `packed` with its `sha256=` made that of `bytes` (as
/// whoever swaps the packed file would write it).
fn forged_info(info: &str, bytes: &[u8], dir: &Path) -> String {
    let tmp = dir.join("forged.bin");
    std::fs::write(&tmp, bytes).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(&tmp)
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&out.stdout);
    let sum = sum.split_whitespace().next().unwrap().to_string();
    info.lines()
        .map(|l| match l.strip_prefix("sha256=") {
            Some(_) => format!("sha256={sum}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// One flipped byte in the packed file, its `.info` forged to match: the
/// node was told the image's key (`imgkey=`), so its initrd checks the
/// file against the signed record, refuses it and keeps retrying; once both
/// are repaired it boots.
fn refuses_a_corrupt_image_then_boots_it_repaired(run: &Run) {
    let packed = run.dir().join("rootimg.cpio.zst");
    let info = run.dir().join("rootimg.cpio.zst.info");
    let original = std::fs::read(&packed).unwrap();
    let original_info = std::fs::read_to_string(&info).unwrap();
    let mut bad = original.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    std::fs::write(&packed, &bad).unwrap();
    std::fs::write(&info, forged_info(&original_info, &bad, &run.work)).unwrap();
    let started = Instant::now();
    let (guest, console) = run.start_guest(&SL1, "bios", 2048, "corrupt");
    let (refused, text) = wait_for_console(&console, &["refused"], BOOT_WAIT);
    assert!(refused, "no refusal on the console:\n{}", tail(&text, 60));
    assert!(
        text.contains("is not the one the signed record names"),
        "not refused by the signed record:\n{}",
        tail(&text, 60)
    );
    assert!(
        !text.contains("switching to the image's init"),
        "the corrupt image was booted:\n{}",
        tail(&text, 60)
    );
    std::fs::write(&packed, &original).unwrap();
    std::fs::write(&info, original_info).unwrap();
    let booted = wait_for_ssh(
        &SL1,
        &run.node.identity,
        &run.work,
        started,
        BOOT_WAIT + INIT_WAIT,
        PROBE,
    );
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    drop(guest);
    assert!(
        booted.is_some(),
        "the repaired image did not boot; console:\n{}",
        tail(&text, 80)
    );
}

/// `hwinv.memory` below the image's need: nodeset warns for that node, and
/// the guest's console says what the image needs and what it has.
fn refuses_a_guest_with_too_little_ram(run: &Run) {
    let d = run.d;
    d.ok(&["chtab", "node=sl2", "hwinv.memory=384MB"]);
    let out = run
        .d
        .client(&["nodeset", SL2.node, &format!("osimage={IMAGE}")]);
    let text = xcatd_tests::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("sl2: Warning: image {IMAGE} needs "))
            && text.contains("the node has 384 MiB"),
        "no RAM warning from nodeset:\n{text}"
    );
    let (guest, console) = run.start_guest(&SL2, "bios", 384, "lowram");
    let (said, text) = wait_for_console(&console, &["MiB of RAM"], BOOT_WAIT);
    drop(guest);
    assert!(
        said && text.contains("this node has"),
        "the console does not say the RAM the image needs:\n{}",
        tail(&text, 60)
    );
}
