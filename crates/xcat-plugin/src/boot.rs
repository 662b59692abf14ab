//! The daemon's boot settings: where the TFTP root is, where the boot
//! service listens, which interfaces the supervised DHCP server serves and
//! which binaries go into the stateless initrd. `nodeset` and `makedhcp` read
//! them to write URLs and configurations the daemon itself will serve;
//! `geninitrd` and `packimage` to build the initrd.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The boot service (the daemon's `[http]` section): an HTTP server for
/// the `/install/` and `/tftpboot/` URL prefixes, off when `listen` is unset.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on, e.g. `"10.99.0.1:80"`; none = no boot service.
    pub listen: Option<SocketAddr>,
    /// Most connections served at once, over every peer.
    pub max_connections: usize,
    /// Most connections one peer address may hold at once.
    pub max_connections_per_peer: usize,
    /// A file that gets one line per request; none = the daemon's own log.
    pub access_log: Option<PathBuf>,
    /// Seconds a request head may take to arrive, from its first byte (or
    /// from the connection's start for its first request).
    pub header_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    pub idle_timeout_secs: u64,
    /// Seconds a peer may leave a response unread before it is dropped.
    pub send_timeout_secs: u64,
    /// Largest request head accepted, in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Send file bodies with sendfile(2) (zero-copy); false = pread and write.
    pub sendfile: bool,
    /// Each connection's socket send buffer (SO_SNDBUF; the kernel doubles
    /// it), so a thousand slow readers hold a bounded share of the kernel's
    /// TCP memory instead of autotuned megabytes each; 0 = the kernel's
    /// autotuning.
    pub send_buffer_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: None,
            max_connections: 1024,
            max_connections_per_peer: 64,
            access_log: None,
            header_timeout_secs: 10,
            idle_timeout_secs: 15,
            send_timeout_secs: 60,
            max_header_bytes: 8192,
            sendfile: true,
            send_buffer_bytes: 256 << 10,
        }
    }
}

impl HttpSettings {
    /// The port nodes are told to fetch from (`XCATHTTPPORT=`), when the
    /// boot service is configured.
    pub fn port(&self) -> Option<u16> {
        self.listen.map(|a| a.port())
    }
}

/// The supervised DHCP server (the daemon's `[dhcp]` section): with
/// interfaces named, xcatd runs dnsmasq on them; without, `makedhcp` only
/// writes the configuration and the admin runs a DHCP server of their own.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhcpSettings {
    /// Interfaces dnsmasq answers on; empty = xcatd starts no DHCP server.
    pub interfaces: Vec<String>,
    /// The dnsmasq binary.
    pub dnsmasq: PathBuf,
    /// Log every DHCP exchange in detail (dnsmasq's `--log-dhcp`).
    pub log_dhcp: bool,
    /// The iPXE binary BIOS PXE clients load (copied as `xcat/xnba.kpxe`).
    pub ipxe_bios: PathBuf,
    /// The iPXE binary UEFI PXE clients load (copied as `xcat/xnba.efi`).
    pub ipxe_efi: PathBuf,
    /// The running supervisor, when the daemon has one (never in the file).
    #[serde(skip)]
    pub server: DhcpServerHandle,
}

impl Default for DhcpSettings {
    fn default() -> Self {
        DhcpSettings {
            interfaces: Vec::new(),
            dnsmasq: PathBuf::from("/usr/sbin/dnsmasq"),
            log_dhcp: false,
            ipxe_bios: PathBuf::from("/usr/lib/ipxe/undionly.kpxe"),
            ipxe_efi: PathBuf::from("/usr/lib/ipxe/snponly.efi"),
            server: DhcpServerHandle::default(),
        }
    }
}

/// What goes into the stateless initrd besides the image's own kernel modules
/// (the daemon's `[initrd]` section): two static binaries of the server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InitrdSettings {
    /// A statically linked busybox (Debian's `busybox-static`): the initrd's
    /// shell, mount, insmod, udhcpc and switch_root.
    pub busybox: PathBuf,
    /// The static `xcat-netinit` (built by `scripts/build-netinit`), which
    /// finds the boot NIC and fetches, checks and unpacks the image.
    pub netinit: PathBuf,
}

impl Default for InitrdSettings {
    fn default() -> Self {
        InitrdSettings {
            busybox: PathBuf::from("/bin/busybox"),
            netinit: default_netinit(),
        }
    }
}

/// `xcat-netinit` beside the running daemon's own binary (where the build and
/// the packages put them both).
pub fn default_netinit() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .unwrap_or(Path::new("/usr/sbin"))
        .join("xcat-netinit")
}

/// Where the DHCP configuration lives: `<state_dir>/dhcp/`. `makedhcp`
/// writes it, the supervisor (or the admin's own dnsmasq) reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpPaths {
    /// The directory itself.
    pub dir: PathBuf,
    /// The main file (`dnsmasq --conf-file=` this): networks, TFTP, classes.
    pub conf: PathBuf,
    /// One file per node: MAC, address, name (dnsmasq's `dhcp-hostsdir`).
    pub hosts_dir: PathBuf,
    /// One file per node: its boot file by client type (`dhcp-optsdir`).
    pub opts_dir: PathBuf,
    /// dnsmasq's lease database.
    pub leases: PathBuf,
    /// The supervised dnsmasq's process id, for the next start to find an
    /// orphan a killed daemon left.
    pub pid: PathBuf,
}

impl DhcpPaths {
    pub fn new(state_dir: &Path) -> DhcpPaths {
        let dir = state_dir.join("dhcp");
        DhcpPaths {
            conf: dir.join("dnsmasq.conf"),
            hosts_dir: dir.join("hosts.d"),
            opts_dir: dir.join("opts.d"),
            leases: dir.join("dnsmasq.leases"),
            pid: dir.join("dnsmasq.pid"),
            dir,
        }
    }
}

/// What `makedhcp` changed, so the DHCP server knows how to pick it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpChange {
    /// Per-node files only: a reload (SIGHUP) re-reads them.
    Nodes,
    /// The main file: dnsmasq reads it only at start, so a restart.
    Config,
}

/// The daemon's side of a supervised DHCP server, as handlers see it.
pub trait DhcpServer: Send + Sync + 'static {
    /// Take `change` into account; returns once the server has been told
    /// (signalled or restarted), not when it has finished reading.
    fn changed(&self, change: DhcpChange);
}

/// The supervisor, if the daemon runs one: cloned with the settings.
#[derive(Clone, Default)]
pub struct DhcpServerHandle(Option<Arc<dyn DhcpServer>>);

impl DhcpServerHandle {
    pub fn new(server: Arc<dyn DhcpServer>) -> DhcpServerHandle {
        DhcpServerHandle(Some(server))
    }

    /// Tell the supervised server of `change`; false when there is none
    /// (the admin runs their own).
    pub fn notify(&self, change: DhcpChange) -> bool {
        match &self.0 {
            Some(s) => {
                s.changed(change);
                true
            }
            None => false,
        }
    }
}

impl std::fmt::Debug for DhcpServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "DhcpServerHandle(supervised)"
        } else {
            "DhcpServerHandle(none)"
        })
    }
}
