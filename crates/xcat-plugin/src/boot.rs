//! The daemon's boot settings: where the TFTP root is, where the boot
//! service listens and which interfaces the supervised DHCP server serves.
//! `nodeset` and `makedhcp` read them to write URLs and configurations the
//! daemon itself will serve.

use std::net::SocketAddr;
use std::path::PathBuf;

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
}

impl Default for DhcpSettings {
    fn default() -> Self {
        DhcpSettings {
            interfaces: Vec::new(),
            dnsmasq: PathBuf::from("/usr/sbin/dnsmasq"),
        }
    }
}
