//! The init script's failure handling, step by step, in busybox sh as any user:
//! the script's functions without its last line (`main`), with stand-ins for
//! what must not happen here, each a shell function (they take precedence over
//! busybox's applets): `sleep` and `rescue` record that they were called,
//! `mount`, `umount`, `cp` and `chroot` record or fail as the case needs.
//! `xcat-netinit` is a stand-in script in the PATH answering with the exit code
//! the test chose. The whole boot, with real mounts and DHCP, is tests/boot.rs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use plugin_geninitrd::build::INIT_SCRIPT;

/// Runs `calls` after the script's functions in a directory of its own; returns
/// stderr (the console).
fn run(calls: &str, netinit_codes: &[i32]) -> String {
    let t = tempfile::tempdir().unwrap();
    let stub = t.path().join("xcat-netinit");
    // One exit code per call, the last repeated; "nic" prints eth0 on success.
    let codes: Vec<String> = netinit_codes.iter().map(|c| c.to_string()).collect();
    fs::write(
        &stub,
        format!(
            "#!/bin/sh\ncmd=$1\nn=$(cat {d}/calls 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n >{d}/calls\n\
             set -- {codes}\nwhile [ $n -gt 1 ] && [ $# -gt 1 ]; do shift; n=$((n - 1)); done\n\
             [ $1 = 0 ] && [ $cmd = nic ] && echo eth0\nexit $1\n",
            codes = codes.join(" "),
            d = t.path().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
    let functions = INIT_SCRIPT
        .strip_suffix("\nmain\n")
        .expect("the script ends by calling main");
    let script = format!(
        "{functions}\n\
         NEWROOT={d}/newroot\n\
         PATH={d}:$PATH\n\
         sleep() {{ echo \"SLEEP $1\" >&2; }}\n\
         rescue() {{ echo \"RESCUE\" >&2; }}\n\
         mount() {{ echo \"MOUNT $*\" >&2; }}\n\
         umount() {{ echo \"UMOUNT $*\" >&2; }}\n\
         cp() {{ echo \"CP $*\" >&2; }}\n\
         chroot() {{ echo \"CHROOT $*\" >&2; return 1; }}\n\
         links_up() {{ :; }}\n\
         {calls}\n",
        d = t.path().display()
    );
    let out = Command::new("/bin/busybox")
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn a_refused_image_is_tried_again_with_a_doubling_wait_up_to_a_minute() {
    let err = run(
        "i=0; while [ $i -lt 7 ]; do fetch_image; i=$((i+1)); done",
        &[10],
    );
    let sleeps: Vec<&str> = lines_with(&err, "SLEEP ");
    assert_eq!(
        sleeps,
        ["SLEEP 5", "SLEEP 10", "SLEEP 20", "SLEEP 40", "SLEEP 60", "SLEEP 60", "SLEEP 60"],
        "{err}"
    );
    let first = lines_with(&err, "xcat-init: image:")[0];
    assert_eq!(
        first,
        "xcat-init: image: refused (see xcat-netinit's line above); repack it on the server (packimage) or fix its \
         URL (nodeset); retrying in 5s"
    );
    assert!(!err.contains("RESCUE"), "{err}");
}

#[test]
fn too_little_ram_and_a_bad_command_line_open_a_rescue_shell_then_try_again() {
    let err = run(
        "fetch_image; echo \"rc=$?\" >&2; fetch_image; fetch_image; fetch_image && echo OK >&2",
        &[11, 12, 7, 0],
    );
    let ram = lines_with(&err, "too large for this node's RAM");
    assert_eq!(ram.len(), 1, "{err}");
    assert!(ram[0].starts_with("xcat-init: image: too large"), "{err}");
    assert!(err.contains("\nrc=1\n"), "a failed try returns 1: {err}");
    assert!(
        err.contains("xcat-init: kernel command line: unusable (see xcat-netinit's line above); fix imgurl= or rootlimit="),
        "{err}"
    );
    assert_eq!(lines_with(&err, "RESCUE").len(), 2, "{err}");
    assert!(
        err.contains("xcat-init: image: xcat-netinit boot failed (exit 7); see its lines above; retrying in 5s"),
        "{err}"
    );
    assert!(err.trim_end().ends_with("OK"), "exit 0 is success: {err}");
    assert_eq!(
        lines_with(&err, "SLEEP").len(),
        1,
        "only the unknown failure waits: {err}"
    );
}

#[test]
fn no_boot_interface_is_waited_for() {
    let err = run("find_nic; echo \"iface=$iface\" >&2", &[1, 1, 0]);
    let tries = lines_with(&err, "xcat-init: boot interface: none found");
    assert_eq!(tries.len(), 2, "{err}");
    assert!(
        tries[0].ends_with("(linuximage.netdrivers, then geninitrd); retrying in 5s"),
        "{err}"
    );
    assert!(tries[1].ends_with("retrying in 10s"), "{err}");
    assert!(err.contains("iface=eth0"), "{err}");
}

#[test]
fn an_image_without_init_gets_its_mounts_back_and_a_rescue_shell() {
    let err = run("switch_to_image; echo \"rc=$?\" >&2", &[0]);
    let moves: Vec<&str> = lines_with(&err, "MOUNT --move");
    assert_eq!(moves.len(), 8, "moved in, then back: {err}");
    assert!(
        moves[0].starts_with("MOUNT --move /proc ") && moves[0].ends_with("/newroot/proc"),
        "{err}"
    );
    assert!(
        moves[4].starts_with("MOUNT --move ") && moves[4].ends_with("/newroot/proc /proc"),
        "{err}"
    );
    let copy = lines_with(&err, "CP -a /rootfs-additions/. ");
    assert_eq!(copy.len(), 1, "{err}");
    assert!(err.contains("xcat-init: image: it has no /sbin/init; install an init (systemd) in the image, then packimage"));
    assert!(err.contains("RESCUE\nrc=1"), "{err}");
    assert!(!err.contains("switching"), "{err}");
}

#[test]
fn the_script_never_ends_by_itself() {
    // Its last command is main, whose last command is an endless loop: PID 1 never
    // runs off the end of the script (the kernel would panic).
    let main = &INIT_SCRIPT[INIT_SCRIPT.find("\nmain() {").unwrap()..];
    assert!(main.contains("    while :; do\n"), "{main}");
    assert!(
        !INIT_SCRIPT
            .lines()
            .any(|l| l.trim_start().starts_with("set -e")),
        "a failing command must not end PID 1"
    );
    assert!(
        !INIT_SCRIPT
            .lines()
            .any(|l| l.trim_start().starts_with("exit")),
        "no exit in /init"
    );
}

/// udhcpc's hook with `ip` recorded and its two files moved into a temporary
/// directory; `env` is the lease as udhcpc passes it.
fn hook(event: &str, env: &[(&str, &str)]) -> (String, String, String) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().display().to_string();
    let text = plugin_geninitrd::build::UDHCPC_SCRIPT
        .replace("/etc/resolv.conf", &format!("{d}/resolv.conf"))
        .replace("/tmp/lease.", &format!("{d}/lease."));
    let script = format!("ip() {{ echo \"ip $*\"; }}\nset -- {event}\n{text}");
    let out = Command::new("/bin/busybox")
        .args(["sh", "-c", &script])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success());
    let read = |n: &str| fs::read_to_string(t.path().join(n)).unwrap_or_default();
    (
        String::from_utf8(out.stdout).unwrap(),
        read("resolv.conf"),
        read("lease.eth0"),
    )
}

#[test]
fn the_dhcp_hook_sets_address_routes_and_resolv_conf() {
    let lease = [
        ("interface", "eth0"),
        ("ip", "10.99.60.30"),
        ("mask", "24"),
        ("router", "10.99.60.1 10.99.60.2"),
        ("dns", "10.99.60.1 10.99.60.9"),
        ("domain", "cluster.test"),
    ];
    let (ip, resolv, got) = hook("bound", &lease);
    assert_eq!(
        ip,
        "ip -4 addr flush dev eth0\nip addr add 10.99.60.30/24 dev eth0\nip route add default via 10.99.60.1 dev eth0\n",
        "the first router that takes"
    );
    assert_eq!(
        resolv,
        "search cluster.test\nnameserver 10.99.60.1\nnameserver 10.99.60.9\n"
    );
    assert_eq!(got, "10.99.60.30\n");
    // Classless routes (option 121) replace the router option.
    let mut with_routes = lease.to_vec();
    with_routes.push((
        "staticroutes",
        "10.99.0.0/16 0.0.0.0 0.0.0.0/0 10.99.60.254",
    ));
    with_routes.push(("broadcast", "10.99.60.255"));
    let (ip, _, _) = hook("renew", &with_routes);
    assert!(
        ip.contains("ip addr add 10.99.60.30/24 broadcast 10.99.60.255 dev eth0\n"),
        "{ip}"
    );
    assert!(ip.ends_with("ip route add 10.99.0.0/16 dev eth0\nip route add 0.0.0.0/0 via 10.99.60.254 dev eth0\n"), "{ip}");
    let (ip, resolv, got) = hook("deconfig", &[("interface", "eth0")]);
    assert_eq!(ip, "ip -4 addr flush dev eth0\nip link set eth0 up\n");
    assert_eq!((resolv.as_str(), got.as_str()), ("", ""));
}

#[test]
fn modules_load_in_order_and_what_needs_a_missing_one_is_not_tried() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("modules/6.1.0-t");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("load.order"),
        "k/a.ko\nk/b.ko\nk/c.ko\nk/d.ko\nk/e.ko\nk/f.ko\n",
    )
    .unwrap();
    fs::write(
        dir.join("modules.dep"),
        "k/a.ko:\nk/b.ko:\nk/c.ko: k/b.ko\nk/d.ko: k/a.ko\nk/e.ko: k/a.ko k/d.ko\nk/f.ko:\n",
    )
    .unwrap();
    // insmod as the kernel would answer: b is for absent hardware, d is broken,
    // f is built in.
    let calls = format!(
        "MODULES={0}/modules\n\
         uname() {{ echo 6.1.0-t; }}\n\
         insmod() {{ echo \"${{1##*/}}\" >>{0}/insmod.log; case $1 in\n\
           */b.ko) echo \"insmod: can't insert '$1': No such device\"; return 1 ;;\n\
           */d.ko) echo \"insmod: can't insert '$1': invalid module format\"; return 1 ;;\n\
           */f.ko) echo \"insmod: can't insert '$1': File exists\"; return 1 ;;\n\
         esac; }}\n\
         load_modules",
        t.path().display()
    );
    let err = run(&calls, &[0]);
    let tried = fs::read_to_string(t.path().join("insmod.log")).unwrap();
    assert_eq!(
        tried, "a.ko\nb.ko\nd.ko\nf.ko\n",
        "c and e are not tried: {err}"
    );
    let said: Vec<&str> = lines_with(&err, "xcat-init:");
    assert_eq!(
        said,
        [
            "xcat-init: module d.ko: cannot load (invalid module format); its devices stay unavailable",
            "xcat-init: module e.ko: not loaded: it needs d.ko, which did not load; its devices stay unavailable",
            "xcat-init: loaded 2 modules for kernel 6.1.0-t (2 for hardware or hypervisors this node lacks)",
        ],
        "{err}"
    );
    // Another kernel than the initrd's: one line, and the boot goes on.
    fs::create_dir(t.path().join("modules/6.2.0-u")).unwrap();
    let other = format!(
        "MODULES={}/modules\nuname() {{ echo 9.9; }}\nload_modules; echo GOES-ON >&2",
        t.path().display()
    );
    let err = run(&other, &[0]);
    assert!(
        err.contains(
            "xcat-init: modules: this initrd has none for the running kernel 9.9 (it has: 6.1.0-t 6.2.0-u); boot the image's kernel"
        ),
        "{err}"
    );
    assert!(err.contains("GOES-ON"), "{err}");
}
