//! The statelite boot, as an admin runs it: a test-bed node is captured,
//! its tree becomes a statelite image (litefile, litetree and statelite
//! rows, liteimg, geninitrd), a real NFS server (nfs-ganesha) exports the
//! persistent state, a litetree directory and the image's tree, and two
//! diskless qemu guests boot the same image by PXE, first from
//! `rootimg-statelite.gz` in RAM, then with the tree as a read-only NFS
//! root. Over ssh the test checks what each litefile option gave:
//!
//! * `persistent` (`/root/keep/`): written on node A, still there after A is
//!   powered off and booted again (and after it moves to the NFS root), never
//!   seen on node B, kept on the server under `<statemnt>/<node>/`;
//! * `tmpfs` (`/etc/xcat-probe.conf`): writable, back to the image's content
//!   after a reboot;
//! * `ro` (`/opt/site/`): the litetree server's file, not writable;
//! * `link` (`/etc/ssh/`): the host keys made at boot land in RAM;
//! * `localdisk` (`/srv/scratch/`): on node A's disk (a file system labelled
//!   `xcat-local`), kept across its reboots; in RAM on B, which has none;
//! * the shared root is not writable on the NFS root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xcat_remote::testbed::TestBed;
use xcatd_tests::netboot::{
    debian_kernel, define_network_and_guests, install_kernel, sh, ssh, statelite_daemon, tail,
    wait_for_ssh, Booted, Guest, NfsServer, IMAGE_DIR, SL1, SL2,
};
use xcatd_tests::{Daemon, PxeBed, PxeGuest, PXE_SERVER};

/// PXE to ssh under TCG, two guests at once on two cores: generous.
const BOOT_WAIT: Duration = Duration::from_secs(600);
const INIT_WAIT: Duration = Duration::from_secs(240);
const IMAGE_SL: &str = "debian12-x86_64-statelite-compute";
const SL_DIR: &str = "netboot/debian12/x86_64/statelite";
const NFS_PORT: u16 = 20490;

/// One `key=value` line per check, run in the guest.
const PROBE: &str = "echo conf=$(cat /etc/xcat-probe.conf); \
     echo motd=$(cat /opt/site/motd); \
     echo motd_write=$( (echo x > /opt/site/motd) 2>&1 | grep -q 'Read-only' && echo refused || echo allowed); \
     echo mine=$(cat /root/keep/mine 2>/dev/null || echo none); \
     echo seed=$(cat /root/keep/seed); \
     echo root=$(findmnt -n -o FSTYPE /); \
     echo root_write=$( (touch /xcat-root-probe && rm /xcat-root-probe) 2>&1 | grep -q 'Read-only' && echo refused || echo allowed); \
     echo persistent=$(findmnt -n -o SOURCE /.statelite/persistent); \
     echo hostkey=$(findmnt -n -o FSTYPE -T /etc/ssh/ssh_host_ed25519_key); \
     echo logged=$(grep -c . /.statelite/statelite.log); \
     echo scratch=$(cat /srv/scratch/x 2>/dev/null || echo none); \
     echo scratch_on=$(findmnt -n -o SOURCE -T /srv/scratch | cut -d[ -f1)";

/// What a node leaves behind before it is powered off.
const WRITE: &str =
    "echo kept-by-$(cat /proc/cmdline | tr ' ' '\\n' | sed -n 's/^NODE=//p') > /root/keep/mine \
     && echo scratch > /etc/xcat-probe.conf && echo on-disk > /srv/scratch/x && sync && echo written";

fn parse(output: &str) -> HashMap<String, String> {
    output
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

struct Run<'a> {
    d: &'a Daemon,
    bed: &'a PxeBed,
    identity: PathBuf,
    work: PathBuf,
    state: PathBuf,
    /// sl1's disk.
    disk: PathBuf,
}

impl Run<'_> {
    fn start(&self, g: &Guest, tag: &str) -> (PxeGuest, PathBuf) {
        let console = self.work.join(format!("console-{}-{tag}.log", g.node));
        let disk = (g.node == SL1.node).then_some(self.disk.as_path());
        let guest = self.bed.guest_reaching_with_disk(
            g.slot,
            g.mac,
            "bios",
            &console,
            (2048, disk),
            ("xcat-init:", INIT_WAIT),
        );
        (guest, console)
    }

    /// Boot every guest at once; each one's probe, written-to state after
    /// `write` (when set), then all powered off.
    fn boot(&self, guests: &[&Guest], tag: &str, write: bool) -> Vec<HashMap<String, String>> {
        let started = Instant::now();
        let running: Vec<(PxeGuest, PathBuf)> = guests.iter().map(|g| self.start(g, tag)).collect();
        let mut probes = Vec::new();
        for (g, (_, console)) in guests.iter().zip(&running) {
            let booted = wait_for_ssh(
                g,
                &self.identity,
                &self.work,
                started,
                BOOT_WAIT + INIT_WAIT,
                PROBE,
            );
            let b: Booted = booted.unwrap_or_else(|| {
                let text = std::fs::read_to_string(console).unwrap_or_default();
                panic!(
                    "{tag}: {} did not answer ssh; console:\n{}\ndaemon log:\n{}",
                    g.node,
                    tail(&text, 80),
                    tail(&self.d.log(), 30)
                )
            });
            eprintln!(
                "{tag}: {} answered after {:.0}s: {:?}",
                g.node,
                b.after.as_secs_f64(),
                b.output
            );
            if write {
                let w = ssh(g.ip, &self.identity, &b.known_hosts, WRITE);
                assert_eq!(
                    w.as_deref().map(str::trim),
                    Some("written"),
                    "{tag}: {}",
                    g.node
                );
            }
            probes.push(parse(&b.output));
        }
        drop(running);
        probes
    }
}

/// The captured node's additions: a file for `tmpfs`, a directory for
/// `persistent` with a seed, an empty mount point for the `ro` litetree path.
fn prepared_node(kver: &str) -> xcat_remote::testbed::Node {
    let node = TestBed::node("sltb");
    let root = install_kernel(&node, kver);
    let r = root.display();
    sh(&format!(
        "echo from-the-image > '{r}/etc/xcat-probe.conf' && mkdir -p '{r}/root/keep' '{r}/opt/site' '{r}/srv/scratch' \
         && echo seed > '{r}/root/keep/seed'"
    ));
    node
}

/// The statelite image beside the captured one: its own copy of the tree
/// (capimage's `rootimg` is a link to its newest generation),
/// kernel and initrd by geninitrd, the tables of every option tested.
fn define_statelite_image(d: &Daemon, kver: &str) -> PathBuf {
    let dir = d.install_dir().join(SL_DIR);
    sh(&format!(
        "mkdir -p '{dir}/rootimg' && cp -a '{src}/rootimg/.' '{dir}/rootimg/'",
        dir = dir.display(),
        src = d.install_dir().join(IMAGE_DIR).display()
    ));
    let img = format!("imagename={IMAGE_SL}");
    d.ok(&[
        "chtab",
        &img,
        "osimage.provmethod=statelite",
        "osimage.osvers=debian12",
        "osimage.osarch=x86_64",
        "osimage.profile=compute",
        "osimage.rootfstype=ramdisk",
        &format!("osimage.nfsrootopts=vers=4.1,port={NFS_PORT}"),
    ]);
    d.ok(&[
        "chtab",
        &img,
        &format!("linuximage.rootimgdir={}", dir.display()),
        &format!("linuximage.kernelver={kver}"),
    ]);
    d.add_litefile(&[
        ("ALL", "/etc/ssh/", "link"),
        ("ALL", "/var/", "tmpfs"),
        ("ALL", "/tmp/", "tmpfs"),
        (IMAGE_SL, "/etc/xcat-probe.conf", "tmpfs"),
        (IMAGE_SL, "/root/keep/", "persistent"),
        (IMAGE_SL, "/opt/site/", "ro"),
        (IMAGE_SL, "/srv/scratch/", "localdisk"),
    ]);
    d.ok(&[
        "chtab",
        "priority=1",
        &format!("litetree.image={IMAGE_SL}"),
        &format!("litetree.directory={PXE_SERVER}:/litetree"),
        &format!("litetree.mntopts=vers=4.1,port={NFS_PORT}"),
    ]);
    d.ok(&[
        "chtab",
        "node=stateless",
        &format!("statelite.statemnt={PXE_SERVER}:/state"),
        &format!("statelite.mntopts=vers=4.1,port={NFS_PORT}"),
    ]);
    let out = d.ok(&["geninitrd", IMAGE_SL]);
    eprintln!("geninitrd:\n{out}");
    dir
}

fn nodeset(d: &Daemon, kind: &str) {
    let out = d.ok(&["nodeset", "sl1,sl2", &format!("osimage={IMAGE_SL}")]);
    assert!(
        out.contains("sl1: statelite debian12-x86_64-compute"),
        "{kind}: {out}"
    );
}

fn check(probe: &HashMap<String, String>, key: &str, want: &str, tag: &str) {
    assert_eq!(
        probe.get(key).map(String::as_str),
        Some(want),
        "{tag}: {key} in {probe:?}"
    );
}

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn two_guests_boot_one_statelite_image_from_ram_then_from_nfs() {
    let (_, kver) = debian_kernel();
    let node = prepared_node(&kver);
    let bed = PxeBed::up();
    let sup = statelite_daemon(&node);
    let d = &sup.0;
    let captured = d.client(&["capimage", &node.name]);
    assert!(
        captured.status.success(),
        "capimage failed:\n{}",
        xcatd_tests::output_text(&captured)
    );
    let dir = define_statelite_image(d, &kver);
    define_network_and_guests(d, &[&SL1, &SL2]);
    d.ok(&["makedhcp", "-n"]);

    let work = tempfile::tempdir().unwrap().keep();
    let (state, litetree, disk) = (
        work.join("state"),
        work.join("litetree"),
        work.join("sl1-disk.img"),
    );
    sh(&format!(
        "mkdir -p '{s}' '{t}/opt/site' && echo from-the-litetree > '{t}/opt/site/motd' \
         && truncate -s 64M '{k}' && mkfs.ext4 -q -F -L xcat-local '{k}'",
        s = state.display(),
        t = litetree.display(),
        k = disk.display()
    ));
    let liteimg = d.ok(&["liteimg", IMAGE_SL]);
    assert!(
        dir.join("rootimg-statelite.gz").is_file(),
        "liteimg packed nothing:\n{liteimg}"
    );
    let rootimg = dir.join("rootimg");
    let pseudo = rootimg.display().to_string();
    let _nfs = NfsServer::start(
        &work.join("nfs"),
        NFS_PORT,
        &[
            (&state, "/state", "rw"),
            (&litetree, "/litetree", "ro"),
            (&rootimg, &pseudo, "ro"),
        ],
    );
    let run = Run {
        d,
        bed: &bed,
        identity: node.identity.clone(),
        work: work.clone(),
        state: state.clone(),
        disk: disk.clone(),
    };

    // RAM root: A's first boot, then A again beside B.
    nodeset(d, "ramdisk");
    let first = run.boot(&[&SL1], "ramdisk-1", true);
    let a = &first[0];
    for (k, v) in [
        ("conf", "from-the-image"),
        ("motd", "from-the-litetree"),
        ("motd_write", "refused"),
        ("mine", "none"),
        ("seed", "seed"),
        ("root", "tmpfs"),
        ("hostkey", "tmpfs"),
        ("persistent", &format!("{PXE_SERVER}:/state/sl1")),
        ("scratch", "none"),
        ("scratch_on", "/dev/vda"),
    ] {
        check(a, k, v, "ramdisk, sl1's first boot");
    }
    assert!(
        a["logged"].parse::<u32>().unwrap_or(0) >= 6,
        "statelite.log: {a:?}"
    );
    assert_eq!(
        std::fs::read_to_string(run.state.join("sl1/root/keep/mine"))
            .unwrap()
            .trim(),
        "kept-by-sl1",
        "the persistent write is on the server under <statemnt>/<node>"
    );
    let again = run.boot(&[&SL1, &SL2], "ramdisk-2", false);
    check(
        &again[0],
        "scratch",
        "on-disk",
        "ramdisk, sl1's local disk after its reboot",
    );
    check(
        &again[1],
        "scratch_on",
        "tmpfs",
        "ramdisk, sl2 has no local disk",
    );
    check(
        &again[0],
        "mine",
        "kept-by-sl1",
        "ramdisk, sl1 after its reboot",
    );
    check(
        &again[0],
        "conf",
        "from-the-image",
        "ramdisk, the tmpfs path after a reboot",
    );
    check(
        &again[1],
        "mine",
        "none",
        "ramdisk, sl2 sees nothing of sl1's",
    );
    check(&again[1], "seed", "seed", "ramdisk, sl2's first boot");

    // NFS root: the same tree, read-only and shared.
    d.ok(&[
        "chtab",
        &format!("imagename={IMAGE_SL}"),
        "osimage.rootfstype=nfs",
    ]);
    nodeset(d, "nfs");
    let nfs = run.boot(&[&SL1, &SL2], "nfs", false);
    for (i, g) in [&SL1, &SL2].iter().enumerate() {
        let tag = format!("nfs root, {}", g.node);
        check(&nfs[i], "root", "overlay", &tag);
        check(&nfs[i], "root_write", "refused", &tag);
        check(&nfs[i], "motd", "from-the-litetree", &tag);
        check(&nfs[i], "motd_write", "refused", &tag);
        check(&nfs[i], "hostkey", "tmpfs", &tag);
        check(&nfs[i], "conf", "from-the-image", &tag);
    }
    check(
        &nfs[0],
        "mine",
        "kept-by-sl1",
        "nfs root, sl1 keeps its state",
    );
    check(&nfs[1], "mine", "none", "nfs root, sl2");
    check(&nfs[0], "scratch", "on-disk", "nfs root, sl1's local disk");
    let on_disk = sh(&format!(
        "debugfs -R 'cat /srv/scratch/x' '{}' 2>/dev/null",
        disk.display()
    ));
    assert_eq!(
        on_disk.trim(),
        "on-disk",
        "the localdisk write is on sl1's disk"
    );
    assert!(
        !Path::new(&rootimg).join("xcat-root-probe").exists(),
        "a node wrote to the shared tree"
    );
    let _ = std::fs::remove_dir_all(&work);
}
