//! capimage end to end: a real test-bed node (sshd, ext4 root, edge cases),
//! the real daemon and client.

use std::path::Path;

use xcat_remote::testbed::{NodeOptions, TestBed};
use xcatd_tests::{manifest, Daemon};

#[test]
#[ignore = "needs root and the test bed: ./scripts/test-all runs it"]
fn capture_is_faithful_and_registered() {
    let node = TestBed::node_with(
        "cap",
        &NodeOptions {
            edgecases: true,
            ..Default::default()
        },
    );
    // Something sysclean must handle.
    node.sh("mkdir -p /etc/ssh && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_test_key </dev/null; \
             echo 0123456789abcdef0123456789abcdef > /etc/machine-id; \
             printf 'UUID=1234 / ext4 defaults 0 1\\nproc /proc proc defaults 0 0\\n' > /etc/fstab; \
             mkdir -p /root/.ssh && printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Blbn\\n-----END OPENSSH PRIVATE KEY-----\\n' > /root/.ssh/id_rsa; \
             echo marker > /mnt/otherfs/marker-in-tmpfs");
    let node_root = Path::new("/proc")
        .join(node.init_pid.to_string())
        .join("root");
    let before = manifest(&node_root.join("srv/edgecases"));
    let before_etc = manifest(&node_root.join("usr/bin"));

    let d = Daemon::for_nodes(&[&node], "");
    let out = d.client(&["capimage", &node.name, "-V"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "capimage failed:\n{stdout}\n{stderr}\n{}",
        d.log()
    );
    assert!(stdout.contains("capimage: captured"), "{stdout}");
    eprintln!("capimage output:\n{stdout}\n{stderr}");

    let dir = d.image_dir("compute");
    let rootimg = dir.join("rootimg");
    // Fidelity: the edge-case tree and a real system directory, entry by entry.
    let after = manifest(&rootimg.join("srv/edgecases"));
    let diffs: Vec<String> = before
        .diff(&after)
        .into_iter()
        .map(|d| d.to_string())
        .filter(|d| !d.contains("socket"))
        .collect();
    assert!(
        diffs.is_empty(),
        "edge-case tree differs:\n{}",
        diffs.join("\n")
    );
    let diffs = before_etc.diff(&manifest(&rootimg.join("usr/bin")));
    assert!(diffs.is_empty(), "/usr/bin differs: {diffs:?}");
    // The socket is dropped (documented), the sparse file stays sparse.
    assert!(!rootimg.join("srv/edgecases/socket").exists());
    let sparse = std::fs::metadata(rootimg.join("srv/edgecases/sparse-1g")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(sparse.len(), 1 << 30);
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "sparse file expanded: {} blocks",
        sparse.blocks()
    );

    // One filesystem: the tmpfs is skipped, its mount point kept empty.
    assert!(rootimg.join("mnt/otherfs").is_dir());
    assert_eq!(
        std::fs::read_dir(rootimg.join("mnt/otherfs"))
            .unwrap()
            .count(),
        0
    );
    // Mount points keep the mode the node shows (Debian's /proc and /sys are 0555).
    for (p, modes) in [
        ("proc", &[0o555, 0o755][..]),
        ("sys", &[0o555, 0o755][..]),
        ("dev", &[0o755][..]),
        ("run", &[0o755][..]),
        ("tmp", &[0o1777][..]),
    ] {
        let m = std::fs::symlink_metadata(rootimg.join(p)).unwrap();
        assert!(m.is_dir(), "{p}");
        assert!(
            modes.contains(&(m.mode() & 0o7777)),
            "{p} mode {:o}",
            m.mode() & 0o7777
        );
        assert_eq!(
            std::fs::read_dir(rootimg.join(p)).unwrap().count() > 0,
            p == "dev",
            "{p} contents"
        );
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(rootimg.join("dev/console"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(std::fs::symlink_metadata(rootimg.join("dev/null"))
        .unwrap()
        .file_type()
        .is_char_device());

    // Sysclean.
    assert!(!rootimg.join("etc/ssh/ssh_host_test_key").exists());
    assert_eq!(
        std::fs::read_to_string(rootimg.join("etc/machine-id")).unwrap(),
        ""
    );
    let fstab = std::fs::read_to_string(rootimg.join("etc/fstab")).unwrap();
    assert!(
        fstab
            .lines()
            .any(|l| l.starts_with('#') && l.contains("UUID=1234")),
        "{fstab}"
    );
    assert!(fstab.lines().any(|l| l.starts_with("proc ")), "{fstab}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("capimage-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["source_node"], node.name.as_str());
    let sysclean = report["sysclean"].to_string();
    assert!(
        sysclean.contains("machine-id") && sysclean.contains("ssh_host_test_key"),
        "{sysclean}"
    );
    assert!(
        report["secrets"]["findings"]
            .to_string()
            .contains("/root/.ssh/id_rsa"),
        "{}",
        report["secrets"]
    );

    // Tables: the osimage rows.
    let lsdef = d.ok(&["lsdef", "-t", "osimage", "debian12-x86_64-netboot-compute"]);
    for want in [
        "provmethod=netboot",
        "osvers=debian12",
        "osarch=x86_64",
        "profile=compute",
        "imagetype=linux",
    ] {
        assert!(lsdef.contains(want), "lsdef lacks {want}:\n{lsdef}");
    }
    assert!(
        lsdef.contains(&format!("rootimgdir={}", dir.display())),
        "{lsdef}"
    );

    // The whole tree: the node's root filesystem (as it is now) against the
    // image, allowing only the documented differences.
    let node_all = manifest(&node_root);
    let image_all = manifest(&rootimg);
    let cleaned: Vec<String> = report["sysclean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a["path"]
                .as_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    let all_diffs = node_all.diff(&image_all);
    eprintln!(
        "{} raw differences, all explained unless listed below:",
        all_diffs.len()
    );
    for d in all_diffs.iter().take(40) {
        eprintln!("  {d}");
    }
    let unexplained: Vec<String> = all_diffs
        .into_iter()
        .filter(|d| {
            let p = String::from_utf8_lossy(&d.path).into_owned();
            let under = |dir: &str| p == dir || p.starts_with(&format!("{dir}/"));
            // Excluded trees and skipped mounts: contents differ by design.
            let excluded = ["proc", "sys", "dev", "run", "tmp", "mnt/otherfs"]
                .iter()
                .any(|d| p.starts_with(&format!("{d}/")));
            // A mount point shows the mounted filesystem's root on the node.
            let mount_point = ["proc", "sys", "dev", "run", "mnt/otherfs"].contains(&p.as_str());
            // Sysclean's changes, and the directories holding them (mtimes).
            let sysclean = cleaned
                .iter()
                .any(|c| &p == c || c.starts_with(&format!("{p}/")));
            // Sockets cannot be archived; sshd writes login records itself.
            let socket = p == "srv/edgecases/socket";
            let login_records = under("var/log")
                && (p.ends_with("wtmp")
                    || p.ends_with("lastlog")
                    || p.ends_with("btmp")
                    || p == "var/log");
            !(excluded || mount_point || sysclean || socket || login_records)
        })
        .map(|d| d.to_string())
        .collect();
    assert!(
        unexplained.is_empty(),
        "the image differs from the node beyond the documented differences:\n{}",
        unexplained.join("\n")
    );
    assert!(
        image_all.entries.len() > 5000,
        "suspiciously small image: {}",
        image_all.entries.len()
    );

    // Nothing written on the node.
    let again = manifest(&node_root.join("srv/edgecases"));
    assert!(
        before.diff(&again).is_empty(),
        "the capture changed the node"
    );
}
