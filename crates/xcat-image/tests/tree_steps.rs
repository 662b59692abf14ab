//! Skeleton, sysclean and publish on real trees (device nodes in the skeleton need root).
mod common;

use common::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use xcat_image::publish::{self, PublishError};
use xcat_image::{scan_tree, skeleton, sysclean};

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn skeleton_creates_missing_dirs_and_nodes() {
    require_root_and_tools(&[]);
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    std::fs::create_dir(r.join("proc")).unwrap();
    std::fs::set_permissions(r.join("proc"), std::fs::Permissions::from_mode(0o555)).unwrap();
    std::os::unix::fs::symlink("/", r.join("run")).unwrap(); // hostile: must be left alone
    let acts = skeleton::ensure_skeleton(r).unwrap();
    let tmp = std::fs::metadata(r.join("tmp")).unwrap();
    assert_eq!(tmp.mode() & 0o7777, 0o1777);
    assert_eq!(
        std::fs::metadata(r.join("proc")).unwrap().mode() & 0o7777,
        0o555,
        "existing kept"
    );
    assert!(std::fs::symlink_metadata(r.join("run"))
        .unwrap()
        .file_type()
        .is_symlink());
    for (n, maj, min, mode) in [("dev/console", 5, 1, 0o600), ("dev/null", 1, 3, 0o666)] {
        let m = std::fs::symlink_metadata(r.join(n)).unwrap();
        assert!(m.file_type().is_char_device(), "{n}");
        assert_eq!(
            (
                m.rdev() >> 8,
                m.rdev() & 0xff,
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ),
            (maj, min, mode, 0, 0),
            "{n}"
        );
    }
    assert_eq!(
        acts.iter().filter(|a| a.action == "created").count(),
        5,
        "{acts:?}"
    );
    // idempotent
    let again = skeleton::ensure_skeleton(r).unwrap();
    assert!(again.iter().all(|a| a.action == "kept"));
}

#[test]
fn sysclean_cleans_and_never_leaves_the_tree() {
    let top = tempfile::tempdir().unwrap();
    let img = top.path().join("img");
    let host = top.path().join("host");
    let h = host.display();
    let i = img.display();
    sh(&format!(
        r#"mkdir -p '{h}/etc/ssh' '{i}'
echo 'root:SECRET' > '{h}/etc/shadow'; echo hostkey > '{h}/etc/ssh/ssh_host_rsa_key'; echo hist > '{h}/hist'; echo log > '{h}/log.1'
cd '{i}'
mkdir -p etc/ssh var/lib/dbus etc/udev/rules.d etc/sysconfig/network-scripts var/lib/dhcp var/lib/NetworkManager var/lib/systemd root/.ssh home/alice/.ssh home/bob var/log/apt etc/munge
echo k > etc/ssh/ssh_host_rsa_key; echo k > etc/ssh/ssh_host_rsa_key.pub; echo k > etc/ssh/ssh_host_ed25519_key; echo c > etc/ssh/sshd_config
ln -s '{h}/etc/shadow' etc/machine-id
echo 0123 > var/lib/dbus/machine-id
echo rule > etc/udev/rules.d/70-persistent-net.rules
printf 'UUID=1234 / ext4 defaults 0 1\nproc /proc proc defaults 0 0\n/dev/sda2 none swap sw 0 0\ntmpfs /tmp tmpfs defaults 0 0\n' > etc/fstab
chmod 640 etc/fstab
printf 'DEVICE=eth0\nHWADDR=00:11:22:33:44:55\nUUID=abc\nBOOTPROTO=dhcp\n' > etc/sysconfig/network-scripts/ifcfg-eth0
echo lease > var/lib/dhcp/dhclient.leases
echo l > var/lib/NetworkManager/internal-x.lease; echo keep > var/lib/NetworkManager/NetworkManager.state
echo seed > var/lib/systemd/random-seed
echo h > root/.bash_history
ln -s '{h}/hist' home/alice/.bash_history
ln -s '{h}' home/bob/.ssh
echo k > root/.ssh/id_rsa; echo k > root/.ssh/id_rsa.pub; echo k > home/alice/.ssh/id_ed25519
echo m > etc/munge/munge.key
echo a > var/log/syslog; echo a > var/log/syslog.1; echo a > var/log/apt/history.log.2.gz; echo a > var/log/x.old
ln -s '{h}/log.1' var/log/host.1
mkdir var/log/journal; ln -s '{h}' var/log/hostdir
mkdir -p etc/lvm/devices etc/lvm/backup etc/lvm/archive; echo d > etc/lvm/devices/system.devices; echo b > etc/lvm/backup/vg0
echo a > etc/lvm/archive/vg0_00000-1.vg; echo keep > etc/lvm/lvm.conf
"#
    ));
    let host_before = scan_tree(&host).unwrap();
    let acts = sysclean::sysclean(&img).unwrap();
    let txt: Vec<String> = acts
        .iter()
        .map(|a| format!("{} {} {}", a.action, a.path, a.detail))
        .collect();
    eprintln!("{}", txt.join("\n"));
    assert_eq!(
        scan_tree(&host).unwrap().diff(&host_before),
        vec![],
        "the host side changed"
    );
    assert_eq!(
        std::fs::read(host.join("etc/shadow")).unwrap(),
        b"root:SECRET\n"
    );

    let gone = [
        "etc/lvm/devices/system.devices",
        "etc/lvm/backup/vg0",
        "etc/lvm/archive/vg0_00000-1.vg",
        "etc/ssh/ssh_host_rsa_key",
        "etc/ssh/ssh_host_rsa_key.pub",
        "etc/ssh/ssh_host_ed25519_key",
        "var/lib/dbus/machine-id",
        "etc/udev/rules.d/70-persistent-net.rules",
        "var/lib/dhcp/dhclient.leases",
        "var/lib/NetworkManager/internal-x.lease",
        "var/lib/systemd/random-seed",
        "root/.bash_history",
        "home/alice/.bash_history",
        "var/log/syslog.1",
        "var/log/apt/history.log.2.gz",
        "var/log/x.old",
    ];
    for g in gone {
        assert!(
            std::fs::symlink_metadata(img.join(g)).is_err(),
            "{g} should be removed"
        );
        assert!(
            acts.iter()
                .any(|a| a.action == "removed" && a.path == format!("/{g}")),
            "{g} not reported"
        );
    }
    for kept in [
        "etc/ssh/sshd_config",
        "etc/lvm/lvm.conf",
        "var/log/syslog",
        "var/lib/NetworkManager/NetworkManager.state",
        "root/.ssh/id_rsa",
        "etc/munge/munge.key",
    ] {
        assert!(img.join(kept).exists(), "{kept} must stay");
    }
    // only regular files count as rotated logs; a symlink named like one stays
    assert!(std::fs::symlink_metadata(img.join("var/log/host.1"))
        .unwrap()
        .file_type()
        .is_symlink());
    let mid = std::fs::symlink_metadata(img.join("etc/machine-id")).unwrap();
    assert!(
        mid.file_type().is_file() && mid.len() == 0,
        "machine-id replaced by an empty file"
    );
    let fstab = std::fs::read_to_string(img.join("etc/fstab")).unwrap();
    assert_eq!(fstab, "#xcat-capimage: UUID=1234 / ext4 defaults 0 1\nproc /proc proc defaults 0 0\n#xcat-capimage: /dev/sda2 none swap sw 0 0\ntmpfs /tmp tmpfs defaults 0 0\n");
    assert_eq!(
        std::fs::metadata(img.join("etc/fstab")).unwrap().mode() & 0o7777,
        0o640
    );
    assert_eq!(
        std::fs::read_to_string(img.join("etc/sysconfig/network-scripts/ifcfg-eth0")).unwrap(),
        "DEVICE=eth0\nBOOTPROTO=dhcp\n"
    );
    // Credentials are not node identity: sysclean leaves them (the audit
    // after it reports them, `--scrub` removes them).
    for w in [
        "root/.ssh/id_rsa",
        "home/alice/.ssh/id_ed25519",
        "etc/munge/munge.key",
    ] {
        assert!(img.join(w).exists(), "{w} removed");
        assert!(
            !acts.iter().any(|a| a.path == format!("/{w}")),
            "{w} acted on"
        );
    }

    // an image whose /etc is a symlink to the host's /etc: nothing happens outside
    let img2 = top.path().join("img2");
    std::fs::create_dir(&img2).unwrap();
    std::os::unix::fs::symlink(host.join("etc"), img2.join("etc")).unwrap();
    let acts2 = sysclean::sysclean(&img2).unwrap();
    assert!(
        acts2
            .iter()
            .all(|a| a.action == "skipped" || a.action == "warning"),
        "{acts2:?}"
    );
    assert_eq!(scan_tree(&host).unwrap().diff(&host_before), vec![]);
}

#[test]
fn lock_staging_publish_recover_prune() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("netboot/rhels9/x86_64/compute");
    let lock = publish::lock_image_dir(&dir, "capimage node1 pid 42 started 2024-01-01T00:00:00Z")
        .unwrap();
    match publish::lock_image_dir(&dir, "second") {
        Err(PublishError::Busy { holder, .. }) => {
            assert!(holder.contains("node1 pid 42"), "{holder}")
        }
        other => panic!("second lock must fail at once: {other:?}"),
    }
    // a second process too (flock is per open file description)
    let out = std::process::Command::new("flock")
        .args(["-n", "-E", "7"])
        .arg(lock.path())
        .arg("true")
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(7), "flock(1) sees the lock");

    let mk = |content: &str| {
        let s = publish::create_staging(&dir).unwrap();
        assert!(s
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".rootimg.staging-"));
        std::fs::write(s.join("marker"), content).unwrap();
        s
    };
    // each tree's manifest, as capimage writes it after publishing (by rename)
    let manifest = |content: &str| {
        let tmp = dir.join("manifest.tmp");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, dir.join("capimage-manifest.tsv")).unwrap();
    };
    let s1 = mk("one");
    let o = publish::publish(&dir, &s1, 1).unwrap();
    assert_eq!(o.previous, None);
    manifest("manifest of one");
    let s2 = mk("two");
    let o = publish::publish(&dir, &s2, 1).unwrap();
    manifest("manifest of two");
    // generation 1 keeps the records it was published with
    let (tree1, records1) = publish::generation(&dir, 1);
    assert_eq!(
        std::fs::read_to_string(tree1.join("marker")).unwrap(),
        "one"
    );
    assert_eq!(
        std::fs::read_to_string(records1.join("capimage-manifest.tsv")).unwrap(),
        "manifest of one"
    );
    assert!(!records1.join("image-record.txt").exists());
    // The trees live in the image's private directory; rootimg points there.
    let private = dir.join(publish::PRIVATE);
    assert_eq!(
        o.previous.as_deref(),
        Some(private.join("rootimg.gen-1").as_path())
    );
    let s3 = mk("three");
    let o = publish::publish(&dir, &s3, 1).unwrap();
    assert_eq!(o.pruned, vec![private.join("rootimg.gen-1")]);
    assert!(!records1.exists(), "a pruned generation's records stay");
    assert_eq!(
        std::fs::read_to_string(publish::generation(&dir, 2).1.join("capimage-manifest.tsv"))
            .unwrap(),
        "manifest of two"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("rootimg/marker")).unwrap(),
        "three"
    );
    assert_eq!(
        std::fs::read_to_string(private.join("rootimg.gen-2/marker")).unwrap(),
        "two"
    );

    // crash between the two renames: rootimg missing, newest generation restored
    std::fs::rename(private.join("rootimg"), private.join("rootimg.gen-3")).unwrap();
    let restored = publish::recover(&dir).unwrap();
    assert_eq!(restored, Some(private.join("rootimg.gen-3")));
    assert!(!publish::generation(&dir, 3).1.exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("rootimg/marker")).unwrap(),
        "three"
    );
    assert_eq!(publish::recover(&dir).unwrap(), None);

    // stale staging dirs are removed without following symlinks inside them
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), "x").unwrap();
    let stale = mk("stale");
    std::os::unix::fs::symlink(&outside, stale.join("link")).unwrap();
    std::fs::create_dir(stale.join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.join("keep"), stale.join("sub/filelink")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join(".rootimg.staging-999-symlink")).unwrap();
    let removed = publish::cleanup_stale(&dir).unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(std::fs::read_to_string(outside.join("keep")).unwrap(), "x");
    assert!(dir.join("rootimg/marker").exists() && private.join("rootimg.gen-2").exists());
    drop(lock);
    lock_once_free(&dir, "third");
}

/// Takes the image lock, allowing a moment for it to come free: another test
/// of this binary that starts a process at the instant the lock is dropped
/// forks a child holding a copy of the lock's descriptor until it execs
/// (close-on-exec), and a flock lasts while any copy is open.
fn lock_once_free(dir: &std::path::Path, holder: &str) -> publish::ImageLock {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match publish::lock_image_dir(dir, holder) {
            Ok(l) => return l,
            Err(e) if std::time::Instant::now() > deadline => panic!("the lock stays taken: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// Runs `sh -c script` as nobody (uid and gid 65534, no groups); its status.
fn as_nobody(script: &str) -> std::process::ExitStatus {
    std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!("{script} 2>/dev/null"))
        .status()
        .unwrap()
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn a_local_user_cannot_reach_a_nodes_setuid_program() {
    let d = tempfile::tempdir().unwrap();
    // The image directory is readable by all (nodes' boot files are served from it).
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = d.path().join("netboot/rhels9/x86_64/compute");
    let _lock = publish::lock_image_dir(&dir, "capimage of n1").unwrap();
    let tree = |marker: &str| {
        let s = publish::create_staging(&dir).unwrap();
        // What a node may send: a setuid-root shell.
        std::fs::create_dir(s.join("bin")).unwrap();
        std::fs::copy("/bin/sh", s.join("bin/rootsh")).unwrap();
        std::fs::set_permissions(
            s.join("bin/rootsh"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::fs::write(s.join("marker"), marker).unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
        s
    };
    let staging = tree("one");
    let shell = |p: &std::path::Path| format!("'{}' -c true", p.join("bin/rootsh").display());
    assert!(!as_nobody(&shell(&staging)).success(), "staging reachable");
    publish::publish(&dir, &staging, 2).unwrap();
    publish::publish(&dir, &tree("two"), 2).unwrap();
    let private = dir.join(publish::PRIVATE);
    for t in [
        dir.join("rootimg"),
        private.join("rootimg"),
        private.join("rootimg.gen-1"),
    ] {
        assert!(
            t.join("bin/rootsh").exists(),
            "root reaches {}",
            t.display()
        );
        assert!(
            !as_nobody(&shell(&t)).success(),
            "{} reachable",
            t.display()
        );
        let ls = format!("ls '{}'", t.display());
        assert!(!as_nobody(&ls).success(), "{} listable", t.display());
    }
    assert_eq!(
        std::fs::metadata(&private).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    // The image directory itself stays open (kernel, packed image, boot.ipxe).
    assert!(as_nobody(&format!("ls '{}' >/dev/null", dir.display())).success());
    assert_eq!(publish::published_tree(&dir), Some(private.join("rootimg")));

    // An image of the earlier layout (a real rootimg/ beside it) is closed
    // at its next capture.
    let old = d.path().join("netboot/rhels9/x86_64/old");
    std::fs::create_dir_all(old.join("rootimg/bin")).unwrap();
    std::fs::create_dir_all(old.join("rootimg.gen-1")).unwrap();
    std::fs::copy("/bin/sh", old.join("rootimg/bin/rootsh")).unwrap();
    assert!(as_nobody(&format!("ls '{}'", old.join("rootimg/bin").display())).success());
    let _old_lock = publish::lock_image_dir(&old, "capimage of n2").unwrap();
    publish::cleanup_stale(&old).unwrap();
    publish::recover(&old).unwrap();
    assert!(old.join("rootimg/bin/rootsh").exists());
    assert!(old.join(".private/rootimg.gen-1").is_dir());
    assert!(!as_nobody(&format!("ls '{}'", old.join("rootimg/bin").display())).success());
}
