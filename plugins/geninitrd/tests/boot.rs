//! The initrd's `/init` run as PID 1, without a VM: a new PID, mount and network
//! namespace, the initrd unpacked into a tmpfs and chrooted into, as the kernel
//! would start it. Real busybox (mounts, insmod, udhcpc, switch_root), a real DHCP
//! server (busybox udhcpd on the other end of a veth pair in that namespace, on
//! 10.99.60.0/24), and two stand-ins, named as such: the modules are not modules
//! (CAP_SYS_MODULE is dropped, so the kernel refuses insmod before it reads them),
//! and `/bin/xcat-netinit` is a shell script in place of the real binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use plugin_geninitrd::{build, InitrdSpec, INITRD_FILE};
use xcat_plugin::boot::InitrdSettings;

const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/misc/mynic.ko:
";

/// Stand-in for xcat-netinit: `nic` answers eth0; `boot` reports what the network
/// step left (resolv.conf, address, route), refuses its first try with exit 10 (as
/// a checksum mismatch would), then mounts a tmpfs holding a tiny image whose init
/// (a link, as systemd's is) reports what it finds.
const NETINIT_STANDIN: &str = r#"#!/bin/sh
case $1 in
nic) echo eth0 ;;
boot)
    n=$(($(cat /tmp/tries 2>/dev/null || echo 0) + 1))
    echo "$n" >/tmp/tries
    echo "stand-in boot $2 try $n: resolv.conf [$(tr '\n' ' ' </etc/resolv.conf)] addr [$(ip -4 -o addr show dev eth0 | awk '{print $4}')] route [$(ip route | grep ^default)]" >&2
    [ "$n" = 1 ] && exit 10
    mount -t tmpfs image "$2" || exit 1
    mkdir -p "$2/bin" "$2/sbin" "$2/lib/systemd"
    cp /bin/busybox "$2/bin/busybox"
    ln -s busybox "$2/bin/sh"
    ln -s /lib/systemd/systemd "$2/sbin/init"
    cat >"$2/lib/systemd/systemd" <<'EOF'
#!/bin/sh
echo "image init: pid $$"
echo "image init: mounts [$(awk '{print $2}' /proc/mounts | tr '\n' ' ')]"
echo "image init: network [$(ls /etc/systemd/network)] wants [$(ls /etc/systemd/system/multi-user.target.wants | tr '\n' ' ')]"
EOF
    chmod 755 "$2/lib/systemd/systemd"
    ;;
esac
"#;

/// PID 1 of the new namespaces until it execs the initrd's /init: unpacks the
/// initrd into a tmpfs, puts the stand-in in, starts the DHCP server on the veth
/// peer, then chroots with CAP_SYS_MODULE out of the bounding set.
const HARNESS: &str = r#"set -e
R=$1
T=$2
mount -t tmpfs -o mode=0755 initrd "$R"
cd "$R"
gzip -dc "$T/img/initrd-stateless.gz" | cpio -idm --quiet
cp "$T/xcat-netinit" "$R/bin/xcat-netinit"
ip link set lo up
ip link add eth0 address 52:54:00:0a:0b:0c type veth peer name srv0
ip addr add 10.99.60.1/24 dev srv0
ip link set srv0 up
busybox udhcpd -f "$T/udhcpd.conf" >"$T/udhcpd.log" 2>&1 &
cd /
exec setpriv --bounding-set -sys_module chroot "$R" /init </dev/null 2>&1
"#;

fn udhcpd_conf(t: &Path) -> String {
    format!(
        "start 10.99.60.30\nend 10.99.60.30\ninterface srv0\noption subnet 255.255.255.0\n\
         option router 10.99.60.1\noption dns 10.99.60.1\noption domain cluster.test\n\
         lease_file {0}/leases\npidfile {0}/udhcpd.pid\n",
        t.display()
    )
}

/// A tiny image for the running kernel's version (the init loads the modules of
/// `uname -r`); its "modules" are text, never loadable.
fn image(t: &Path) -> (PathBuf, PathBuf, String) {
    let kver = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string();
    let dir = t.join("img");
    let rootimg = dir.join("rootimg");
    let moddir = rootimg.join("lib/modules").join(&kver);
    for line in DEP.lines() {
        let rel = line.split(':').next().unwrap();
        let p = moddir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("stand-in module {rel}\n")).unwrap();
    }
    fs::write(moddir.join("modules.dep"), DEP).unwrap();
    fs::create_dir_all(rootimg.join("boot")).unwrap();
    fs::write(rootimg.join(format!("boot/vmlinuz-{kver}")), "kernel").unwrap();
    let unit = rootimg.join("lib/systemd/system/systemd-networkd.service");
    fs::create_dir_all(unit.parent().unwrap()).unwrap();
    fs::write(unit, "[Unit]\n").unwrap();
    (dir, rootimg, kver)
}

#[test]
#[ignore = "needs root: ./scripts/test-all runs it"]
fn init_brings_up_dhcp_retries_a_refused_image_and_switches_to_its_init() {
    let t = tempfile::tempdir().unwrap();
    let (dir, rootimg, kver) = image(t.path());
    // The real busybox; busybox again where xcat-netinit goes (replaced below).
    let settings = InitrdSettings {
        busybox: "/bin/busybox".into(),
        netinit: "/bin/busybox".into(),
    };
    let netdrivers = vec!["mynic".to_string()];
    let spec = InitrdSpec::new(&dir, &rootimg, &kver, &netdrivers, &settings);
    let o = build(&spec, &AtomicBool::new(false)).unwrap();
    assert_eq!(o.modules, 4);
    assert!(dir.join(INITRD_FILE).is_file());
    let standin = t.path().join("xcat-netinit");
    fs::write(&standin, NETINIT_STANDIN).unwrap();
    fs::set_permissions(&standin, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(t.path().join("udhcpd.conf"), udhcpd_conf(t.path())).unwrap();
    fs::write(t.path().join("leases"), "").unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    let out = Command::new("timeout")
        .args([
            "120",
            "unshare",
            "--fork",
            "--kill-child",
            "--pid",
            "--mount",
            "--net",
        ])
        .args(["sh", "-c", HARNESS, "harness"])
        .arg(&root)
        .arg(t.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| -> usize {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
    };
    // The first module is refused (insmod's own reason: no module support, or
    // CAP_SYS_MODULE gone); what needs it is not tried; mynic is tried on its own.
    let failover = at("xcat-init: module failover.ko: cannot load (");
    assert!(
        lines[failover].ends_with("); its devices stay unavailable"),
        "{}",
        lines[failover]
    );
    let mut last = failover;
    // Each says the first of its needs that did not load.
    for (m, needs) in [
        ("net_failover.ko", "failover.ko"),
        ("virtio_net.ko", "net_failover.ko"),
    ] {
        let i = at(&format!(
            "xcat-init: module {m}: not loaded: it needs {needs}, which did not load; its devices stay unavailable"
        ));
        assert!(i > last, "{m} out of order:\n{text}");
        last = i;
    }
    let mynic = at("xcat-init: module mynic.ko: cannot load (");
    assert!(mynic > last, "{text}");
    last = mynic;
    assert!(at(&format!("xcat-init: loaded 0 modules for kernel {kver}")) > last);
    let up = at("xcat-init: network up on eth0 (10.99.60.30)");
    let first = at("stand-in boot /newroot try 1: resolv.conf [search cluster.test nameserver 10.99.60.1 ] addr [10.99.60.30/24] route [default via 10.99.60.1 dev eth0 ]");
    let refused = at("xcat-init: image: refused (see xcat-netinit's line above); repack it on the server (packimage) or fix its URL (nodeset); retrying in 5s");
    let second = at("stand-in boot /newroot try 2");
    let switching = at("xcat-init: switching to the image's init");
    let image_init = at("image init: pid 1");
    assert!(
        up < first
            && first < refused
            && refused < second
            && second < switching
            && switching < image_init,
        "{text}"
    );
    // DHCP again before the second try.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("xcat-init: network up on eth0"))
            .count(),
        2,
        "{text}"
    );
    let mounts: Vec<&str> = lines[at("image init: mounts [")]
        .split(['[', ']', ' '])
        .collect();
    for m in ["/", "/proc", "/dev", "/sys", "/run"] {
        assert!(
            mounts.contains(&m),
            "{m} not moved into the image: {mounts:?}"
        );
    }
    assert!(
        lines[at("image init: network [")].contains(
            "[90-xcat-netboot.network] wants [systemd-networkd.service xcat-ssh-hostkeys.service xcat-status-booted.service ]"
        ),
        "{text}"
    );
    assert!(
        !lines[switching + 1..]
            .iter()
            .any(|l| l.starts_with("xcat-init:")),
        "{text}"
    );
}
