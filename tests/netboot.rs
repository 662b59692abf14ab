//! What the network-boot tests and `bench/netboot` share: shell steps, the
//! Debian kernel of the test bed, the daemon that serves DHCP, the boot
//! service and the install monitor on the PXE bed, the stateless guests,
//! and logging in to a booted guest over ssh.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{host, netinit_binary, repo_root, Daemon, DaemonOptions, PXE_SERVER};

/// The boot service's port on the bed.
pub const HTTP_PORT: u16 = 8080;
/// The image a captured test-bed node becomes.
pub const IMAGE: &str = "debian12-x86_64-netboot-compute";
/// Its directory under the install directory.
pub const IMAGE_DIR: &str = "netboot/debian12/x86_64/compute";

/// Run `script` with `bash -euo pipefail`; panics with its output on failure.
pub fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "script failed: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Debian kernel package, unpacked once (`tests/testbed/kernel.sh
/// fetch`): its directory and version.
pub fn debian_kernel() -> (PathBuf, String) {
    let script = repo_root().join("tests/testbed/kernel.sh");
    let out = sh(&format!("'{}' fetch", script.display()));
    let (dir, kver) = out
        .trim()
        .split_once(' ')
        .expect("kernel.sh fetch: DIR KVER");
    (PathBuf::from(dir), kver.to_string())
}

/// Install the Debian kernel into a running test-bed node
/// (`tests/testbed/kernel.sh install`). Returns the node's root as the host
/// sees it.
pub fn install_kernel(node: &xcat_remote::testbed::Node, kver: &str) -> PathBuf {
    let node_root = PathBuf::from(format!("/proc/{}/root", node.init_pid));
    let script = repo_root().join("tests/testbed/kernel.sh");
    let installed = sh(&format!(
        "'{}' install '{}'",
        script.display(),
        node_root.display()
    ));
    assert_eq!(installed.trim(), kver, "kernel.sh installed another kernel");
    node_root
}

/// The key of an ssh public-key line (`ssh-ed25519 AAAA... comment`).
pub fn key_blob(line: &str) -> Option<String> {
    let mut f = line.split_whitespace();
    while let Some(w) = f.next() {
        if w.starts_with("ssh-") {
            return f.next().map(str::to_string);
        }
    }
    None
}

/// The daemon of the boot tests: on every path out (a failed assertion
/// too) it is stopped with SIGTERM, so it stops its dnsmasq, and a dnsmasq a
/// hard kill orphaned is killed by the pid its supervisor recorded.
pub struct Supervising(pub Daemon);

impl std::ops::Deref for Supervising {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.0
    }
}

impl std::ops::DerefMut for Supervising {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.0
    }
}

impl Drop for Supervising {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.0.root().join("state/dhcp/dnsmasq.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        self.0.stop();
        if let Some(p) = pid.filter(|p| alive(*p)) {
            let _ = Command::new("kill")
                .args(["-KILL", &p.to_string()])
                .status();
        }
    }
}

/// Whether process `pid` runs (a zombie does not: only its parent has not
/// reaped it yet).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// A daemon for `node` that also serves DHCP on the PXE bed, the boot
/// service and the install monitor, with the static init helper for
/// geninitrd.
pub fn stateless_daemon(node: &xcat_remote::testbed::Node) -> Supervising {
    boot_daemon(node, DaemonOptions::default())
}

/// [`stateless_daemon`] whose TLS port is on the bed's address too, for
/// statelite nodes' boot-time requests; `site.xcatdport` says which port.
pub fn statelite_daemon(node: &xcat_remote::testbed::Node) -> Supervising {
    let d = boot_daemon(
        node,
        DaemonOptions {
            listen: format!("{PXE_SERVER}:0"),
            ..DaemonOptions::default()
        },
    );
    d.ok(&[
        "chtab",
        "key=xcatdport",
        &format!("site.value={}", d.addr.port()),
    ]);
    d
}

fn boot_daemon(node: &xcat_remote::testbed::Node, opts: DaemonOptions) -> Supervising {
    let extra = format!(
        "tftp_dir = \"tftpboot\"\n\
         [dhcp]\ninterfaces = [\"xpxebr0\"]\n\
         [http]\nlisten = \"{PXE_SERVER}:{HTTP_PORT}\"\naccess_log = \"access.log\"\n\
         [status]\nlisten = \"{PXE_SERVER}:3002\"\n\
         [initrd]\nbusybox = \"/bin/busybox\"\nnetinit = \"{}\"\n",
        netinit_binary().display()
    );
    let d = Daemon::for_nodes_with(&[node], &extra, opts);
    // dnsmasq drops root: it must reach the TFTP root inside the test directory
    host("chmod", &["0755", d.root().to_str().expect("path")]);
    Supervising(d)
}

/// A diskless guest on the bed: node name, MAC, IP, bed slot.
pub struct Guest {
    pub node: &'static str,
    pub mac: &'static str,
    pub ip: &'static str,
    pub slot: u8,
}

pub const SL1: Guest = Guest {
    node: "sl1",
    mac: "52:54:00:61:00:40",
    ip: "10.99.60.40",
    slot: 4,
};
pub const SL2: Guest = Guest {
    node: "sl2",
    mac: "52:54:00:61:00:41",
    ip: "10.99.60.41",
    slot: 5,
};

/// The bed's network, and `nodes` (name, MAC, address) as xnba nodes of
/// `group` with a serial console.
pub fn define_network_and_nodes<'a>(
    d: &Daemon,
    group: &str,
    nodes: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) {
    d.ok(&[
        "chtab",
        "net=10.99.60.0,mask=255.255.255.0",
        "networks.netname=pxebed",
        "networks.mgtifname=xpxebr0",
        "networks.dynamicrange=10.99.60.100-10.99.60.120",
    ]);
    for (node, mac, ip) in nodes {
        let n = format!("node={node}");
        d.ok(&["chtab", &n, &format!("nodelist.groups={group},all")]);
        d.ok(&["chtab", &n, &format!("mac.mac={mac}")]);
        d.ok(&["chtab", &n, &format!("hosts.ip={ip}")]);
        d.ok(&["chtab", &n, "noderes.netboot=xnba"]);
        d.ok(&[
            "chtab",
            &n,
            "nodehm.serialport=0",
            "nodehm.serialspeed=115200",
        ]);
    }
}

/// [`define_network_and_nodes`] for stateless guests (group `stateless`).
pub fn define_network_and_guests(d: &Daemon, guests: &[&Guest]) {
    define_network_and_nodes(d, "stateless", guests.iter().map(|g| (g.node, g.mac, g.ip)));
}

/// `command` as root on `ip` with the key `identity`, trusting only the host
/// key in `known_hosts`; its stdout when it succeeded.
pub fn ssh(ip: &str, identity: &Path, known_hosts: &Path, command: &str) -> Option<String> {
    let o = Command::new("ssh")
        .arg("-i")
        .arg(identity)
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .args(["-o", "ConnectTimeout=5"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg(format!("root@{ip}"))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A guest that answered ssh.
pub struct Booted {
    /// The host key it offered (made at boot).
    pub host_key: String,
    /// `known_hosts` holding that key, for further commands.
    pub known_hosts: PathBuf,
    /// What the first command printed.
    pub output: String,
    /// From `started` to the first command's answer.
    pub after: Duration,
}

/// Wait until `g` answers ssh (trust on first use of the key it made at
/// boot), then run `command`. None when it did not by `started + limit`.
pub fn wait_for_ssh(
    g: &Guest,
    identity: &Path,
    work: &Path,
    started: Instant,
    limit: Duration,
    command: &str,
) -> Option<Booted> {
    let known_hosts = work.join(format!("known_hosts-{}", g.node));
    while started.elapsed() < limit {
        let o = Command::new("ssh-keyscan")
            .args(["-T", "3", "-t", "ed25519", g.ip])
            .stderr(Stdio::null())
            .output()
            .expect("ssh-keyscan");
        let scanned = String::from_utf8_lossy(&o.stdout).into_owned();
        if let Some(line) = scanned.lines().find(|l| l.contains("ssh-ed25519")) {
            std::fs::write(&known_hosts, &scanned).expect("write known_hosts");
            let host_key = key_blob(line).expect("key in the scanned line");
            while started.elapsed() < limit {
                if let Some(output) = ssh(g.ip, identity, &known_hosts, command) {
                    return Some(Booted {
                        host_key,
                        known_hosts,
                        output,
                        after: started.elapsed(),
                    });
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A private NFSv4 server on the bed (`tests/testbed/nfs.sh`), stopped on
/// drop. Exports are `(path, pseudo path, "ro" | "rw")`.
pub struct NfsServer {
    dir: PathBuf,
}

impl NfsServer {
    pub fn start(dir: &Path, port: u16, exports: &[(&Path, &str, &str)]) -> NfsServer {
        // a first node after this would otherwise clean the server away
        xcat_remote::testbed::TestBed::join();
        let script = repo_root().join("tests/testbed/nfs.sh");
        let exports: Vec<String> = exports
            .iter()
            .map(|(p, pseudo, access)| format!("'{}:{pseudo}:{access}'", p.display()))
            .collect();
        sh(&format!(
            "'{}' start '{}' {PXE_SERVER} {port} {}",
            script.display(),
            dir.display(),
            exports.join(" ")
        ));
        NfsServer {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for NfsServer {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("tests/testbed/nfs.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}
