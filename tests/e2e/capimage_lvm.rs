//! capimage of a node whose filesystems are LVM logical volumes: `/` on a
//! classic volume, `/srv` on a thin one, a writer keeping a pair of files
//! equal on `/srv`. Every capture reads both from snapshots (`--snapshot
//! require`), the pair is equal in the image, and no snapshot volume is
//! left, also when the node's capture script is killed mid-stream.
//!
//! The test bed's nodes are containers on the host's kernel, and that kernel
//! has no device-mapper; so the LVM node is a diskless qemu guest booted
//! from the stateless boot test's image (which has lvm2), given a virtio
//! disk. It makes the volume group, copies its own tree onto the volumes
//! and serves ssh from there (`pivot_root` in a mount namespace): to
//! capimage it is a diskful node installed on LVM. Run from
//! [`crate::stateless_boot`], which has the daemon, the image and the PXE
//! bed up already.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use xcat_remote::testbed::Node;
use xcatd_tests::netboot::{ssh, tail, wait_for_ssh, Booted, Guest};
use xcatd_tests::{output_text as text, Daemon, PxeBed};

use crate::capimage_busy::{pair_in, pair_writer_script, report, EXLIST};
use crate::capimage_faults::BgClient;

/// The volume group the guest makes on its disk.
const VG: &str = "xtbvg";

/// Run in the guest: the volumes, the copy of its tree, then sshd from the
/// copy in place of the guest's own (whose listener is stopped; this
/// session survives it; stopping the unit removes `/run/sshd`, which sshd
/// needs). Prints `pivoted` at the end.
const MAKE_LVM_ROOT: &str = r#"set -eu
exec 2>&1
pvcreate -q -y /dev/vda >/dev/null
vgcreate -q xtbvg /dev/vda >/dev/null
lvcreate -q -y -L 1536M -n root xtbvg >/dev/null
lvcreate -q -y -L 384M -T xtbvg/pool >/dev/null
lvcreate -q -y -V 256M -T xtbvg/pool -n srv >/dev/null
mkfs.ext4 -q /dev/xtbvg/root
mkfs.ext4 -q /dev/xtbvg/srv
r=/mnt/lvroot
mkdir -p $r
mount /dev/xtbvg/root $r
mkdir -p $r/srv
mount /dev/xtbvg/srv $r/srv
cp -ax /. $r/
cat > /run/xtb-pivot.sh <<'EOF'
set -e
r=/mnt/lvroot
mount --make-rprivate /
for d in dev run sys; do mount --rbind /$d $r/$d; done
mount -t proc proc $r/proc
cd $r
mkdir -p .oldroot
mkdir -p -m 0755 run/sshd
if pivot_root . .oldroot; then cd /; umount -l /.oldroot; rmdir /.oldroot; exec /usr/sbin/sshd -D -e; fi
exec chroot . /usr/sbin/sshd -D -e
EOF
systemctl stop ssh.socket ssh.service >/dev/null 2>&1 || kill "$(cat /run/sshd.pid)"
setsid -f unshare --mount bash /run/xtb-pivot.sh </dev/null >/run/xtb-pivot.log 2>&1
echo pivoted
"#;

/// The guest's host key for `addr` in the test bed's shared known_hosts (the
/// daemon's), removed again on drop.
struct TrustedByTheDaemon<'a> {
    known_hosts: &'a Path,
    addr: &'a str,
}

impl<'a> TrustedByTheDaemon<'a> {
    fn add(node: &'a Node, booted: &Booted, addr: &'a str) -> Self {
        let line = std::fs::read_to_string(&booted.known_hosts).expect("guest known_hosts");
        let t = TrustedByTheDaemon {
            known_hosts: &node.bed_known_hosts,
            addr,
        };
        t.locked(&format!(
            "printf '%s\\n' '{}' >> \"$1\"",
            line.trim().replace('\'', "")
        ));
        t
    }

    /// `script` with `$1` the known_hosts file, under the bed's lock on it.
    fn locked(&self, script: &str) {
        let kh = self.known_hosts.display().to_string();
        let status = Command::new("flock")
            .arg(format!("{kh}.lock"))
            .args(["sh", "-c", script, "sh", &kh])
            .status()
            .expect("flock");
        assert!(status.success(), "editing {kh} failed");
    }
}

impl Drop for TrustedByTheDaemon<'_> {
    fn drop(&mut self) {
        let addr = self.addr.replace('.', "\\.");
        self.locked(&format!("sed -i '/^{addr} /d' \"$1\""));
    }
}

/// The guest over ssh, as the test sees it.
struct LvmNode<'a> {
    g: &'a Guest,
    identity: &'a Path,
    known_hosts: &'a Path,
}

impl LvmNode<'_> {
    fn sh(&self, command: &str) -> Option<String> {
        ssh(self.g.ip, self.identity, self.known_hosts, command)
    }

    /// Snapshot volumes on the node (none is expected between captures).
    fn snapshot_volumes(&self) -> String {
        self.sh(&format!("lvs --noheadings -o lv_name {VG}"))
            .expect("lvs on the guest")
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("xcatd-snapshot-"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Wait until ssh reaches the copy on the volumes.
    fn wait_for_lvm_root(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let want = format!("/dev/mapper/{VG}-root");
        while Instant::now() < deadline {
            if let Some(src) = self.sh("findmnt -n -o SOURCE /") {
                if src.trim() == want {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = self.sh("cat /run/xtb-pivot.log").unwrap_or_default();
        panic!("ssh never reached the root on {want}; pivot log:\n{log}");
    }
}

pub(crate) fn lvm_rooted_guest_is_captured_from_snapshots(
    d: &Daemon,
    bed: &PxeBed,
    bed_node: &Node,
    g: &Guest,
    work: &Path,
    boot_wait: Duration,
) {
    let disk = work.join("lvm-disk.img");
    let f = std::fs::File::create(&disk).expect("disk image");
    f.set_len(3 << 30).expect("disk size");
    let console = work.join(format!("console-{}-lvm.log", g.node));
    let started = Instant::now();
    let guest = bed.guest_reaching_with_disk(
        g.slot,
        g.mac,
        "bios",
        &console,
        (2048, Some(&disk)),
        ("xcat-init:", boot_wait / 2),
    );
    let booted = wait_for_ssh(g, &bed_node.identity, work, started, boot_wait, "true")
        .unwrap_or_else(|| {
            let c = std::fs::read_to_string(&console).unwrap_or_default();
            panic!(
                "lvm: the guest did not answer ssh; console:\n{}",
                tail(&c, 60)
            )
        });
    let node = LvmNode {
        g,
        identity: &bed_node.identity,
        known_hosts: &booted.known_hosts,
    };
    let made = node.sh(MAKE_LVM_ROOT).unwrap_or_default();
    assert!(
        made.contains("pivoted"),
        "making the LVM root failed:\n{made}"
    );
    node.wait_for_lvm_root();
    let _trusted = TrustedByTheDaemon::add(bed_node, &booted, g.ip);
    node.sh(&format!(
        "cat > /root/pair.sh <<'EOF'\n{}EOF\nsetsid bash /root/pair.sh </dev/null >/dev/null 2>&1 &\nsleep 1",
        pair_writer_script()
    ))
    .expect("start the pair writer");
    let n = format!("node={}", g.node);
    d.ok(&["chtab", &n, "nodetype.os=debian12", "nodetype.arch=x86_64"]);
    let x = work.join("lvm.exlist");
    std::fs::write(&x, EXLIST).expect("exlist");
    let x = x.display().to_string();
    let capture = [
        "capimage", g.node, "-p", "lvmgold", "-x", &x, "--pack", "none",
    ];
    let dir = d.install_dir().join("netboot/debian12/x86_64/lvmgold");
    for round in 1..=3 {
        let out = d.client(&[&capture[..], &["--snapshot", "require"]].concat());
        assert!(
            out.status.success(),
            "lvm capture {round} failed:\n{}\ndaemon log:\n{}",
            text(&out),
            tail(&d.log(), 40)
        );
        assert!(
            text(&out).contains("read /, /srv from snapshots"),
            "{}",
            text(&out)
        );
        assert_eq!(report(&dir).consistency.snapshotted, ["/", "/srv"]);
        let (a, b) = pair_in(&dir.join("rootimg"));
        assert_eq!(a, b, "lvm capture {round}: the pair differs in the image");
        assert_eq!(
            node.snapshot_volumes(),
            "",
            "capture {round} left a snapshot"
        );
    }
    killed_capture_leaves_no_snapshot_volume(d, &node, &capture);
    drop(guest);
}

/// The node's capture script SIGKILLed while it streams (its exit trap
/// cannot run): the daemon's backstop removes the snapshot volumes.
fn killed_capture_leaves_no_snapshot_volume(d: &Daemon, node: &LvmNode, capture: &[&str]) {
    // without the exclusions the read takes long enough to be caught
    let full: Vec<&str> = capture
        .iter()
        .copied()
        .take(4)
        .chain(["--pack", "none"])
        .collect();
    let mut client = BgClient::spawn(d, &full);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed = false;
    while Instant::now() < deadline && !killed && client.running() {
        std::thread::sleep(Duration::from_millis(300));
        if node.snapshot_volumes().split(' ').count() == 2 {
            // as in the btrfs case: the script and its pipeline at once
            killed = node
                .sh("sleep 1; p=$(pgrep -f '^bash -c snap=') && kill -KILL $p $(pgrep -P $p) && echo killed")
                .is_some_and(|o| o.contains("killed"));
        }
    }
    let (status, out) = client.wait(Duration::from_secs(120));
    assert!(killed, "no capture script to kill:\n{out}");
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("(LVM) the capture left on"),
        "the backstop did not say it removed the snapshots:\n{out}\ndaemon log:\n{}",
        tail(&d.log(), 30)
    );
    assert_eq!(
        node.snapshot_volumes(),
        "",
        "the killed capture left a snapshot"
    );
}
