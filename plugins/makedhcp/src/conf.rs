//! The dnsmasq configuration as text: pure functions from table values to
//! file contents, and back for `-q`. Nothing here touches the disk.
//!
//! The main file holds what `makedhcp -n` decides (networks, TFTP, the
//! client classes); each node has one line set in `hosts.d/<node>` (MAC ->
//! address, name, and the tag `xcatnode-<node>`) and one in `opts.d/<node>`
//! (its boot file per client class, keyed on that tag). dnsmasq re-reads
//! both directories on SIGHUP and notices new files by itself.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use xcat_plugin::boot::DhcpPaths;

/// Tag dnsmasq sets for an iPXE client (user class `iPXE`, xCAT's `xNBA`, or
/// iPXE's encapsulated option 175).
pub const TAG_IPXE: &str = "xcat-ipxe";
/// Tag for a UEFI client (client architecture 7 or 9).
pub const TAG_EFI: &str = "xcat-efi";
/// What BIOS PXE clients load, relative to the TFTP root.
pub const XNBA_KPXE: &str = "xcat/xnba.kpxe";
/// What UEFI PXE clients load.
pub const XNBA_EFI: &str = "xcat/xnba.efi";

/// One row of the `networks` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub net: Ipv4Addr,
    pub mask: Ipv4Addr,
    /// `networks.dynamicrange` as `start-end`, when set.
    pub dynamic: Option<(Ipv4Addr, Ipv4Addr)>,
    /// `networks.gateway`; `<xcatmaster>` is `Gateway::Server`.
    pub gateway: Gateway,
    /// DNS servers to hand out (networks.nameservers, else site's).
    pub nameservers: Vec<String>,
    /// networks.domain, else site.domain.
    pub domain: Option<String>,
    /// networks.tftpserver when it is an address (not `<xcatmaster>`).
    pub tftpserver: Option<Ipv4Addr>,
    /// networks.mgtifname (documentation only: the interfaces come from
    /// the daemon's `[dhcp]` or the admin's command line).
    pub mgtifname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gateway {
    None,
    /// This server's own address on the network (`<xcatmaster>`).
    Server,
    Addr(Ipv4Addr),
}

impl Network {
    /// Whether `ip` is on this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = u32::from(self.mask);
        u32::from(ip) & m == u32::from(self.net) & m
    }

    /// Whether `ip` is inside the dynamic range (a node there could be
    /// given its address twice).
    pub fn in_dynamic_range(&self, ip: Ipv4Addr) -> bool {
        self.dynamic.is_some_and(|(a, b)| a <= ip && ip <= b)
    }
}

/// What `makedhcp -n` writes besides the networks.
#[derive(Debug, Clone)]
pub struct MainConf<'a> {
    pub paths: &'a DhcpPaths,
    pub tftp_dir: &'a Path,
    /// site.dhcplease, seconds (xCAT's default 43200).
    pub lease_secs: u64,
    pub networks: &'a [Network],
}

/// The main file.
pub fn render_main(c: &MainConf) -> String {
    let mut s = String::new();
    s.push_str(
        "# Written by makedhcp -n from the networks and site tables; the next\n\
         # makedhcp -n replaces it. Run it as\n\
         #   dnsmasq --conf-file=THIS --interface=IFACE --bind-interfaces\n\
         # (xcatd does so itself for the interfaces of its [dhcp] section).\n\
         # DHCP and TFTP only: no DNS.\n",
    );
    s.push_str("port=0\n");
    let _ = writeln!(s, "dhcp-leasefile={}", c.paths.leases.display());
    s.push_str("dhcp-authoritative\n");
    s.push_str("enable-tftp\n");
    let _ = writeln!(s, "tftp-root={}", c.tftp_dir.display());
    s.push_str("\n# Client classes the per-node boot files are chosen by.\n");
    for class in ["iPXE", "xNBA"] {
        let _ = writeln!(s, "dhcp-userclass=set:{TAG_IPXE},{class}");
    }
    let _ = writeln!(s, "dhcp-match=set:{TAG_IPXE},175");
    for arch in [7, 9] {
        let _ = writeln!(s, "dhcp-match=set:{TAG_EFI},option:client-arch,{arch}");
    }
    s.push_str("\n# Per-node entries (makedhcp NODERANGE), re-read on SIGHUP.\n");
    let _ = writeln!(s, "dhcp-hostsdir={}", c.paths.hosts_dir.display());
    let _ = writeln!(s, "dhcp-optsdir={}", c.paths.opts_dir.display());
    for (i, n) in c.networks.iter().enumerate() {
        render_network(&mut s, i, n, c.lease_secs);
    }
    s
}

fn render_network(s: &mut String, i: usize, n: &Network, lease: u64) {
    let tag = format!("xcatnet{i}");
    let _ = writeln!(s, "\n# network {}/{}", n.net, n.mask);
    if let Some(ifname) = &n.mgtifname {
        let _ = writeln!(s, "# (networks.mgtifname: {ifname})");
    }
    match n.dynamic {
        Some((a, b)) => {
            let _ = writeln!(s, "dhcp-range=set:{tag},{a},{b},{},{lease}", n.mask);
        }
        // Known nodes only: an address is given to a MAC of hosts.d.
        None => {
            let _ = writeln!(
                s,
                "dhcp-range=set:{tag},{},static,{},{lease}",
                n.net, n.mask
            );
        }
    }
    match &n.gateway {
        // An empty option is dnsmasq's way of sending none (it would
        // otherwise name itself the router).
        Gateway::None => {
            let _ = writeln!(s, "dhcp-option=tag:{tag},option:router");
        }
        Gateway::Server => {}
        Gateway::Addr(g) => {
            let _ = writeln!(s, "dhcp-option=tag:{tag},option:router,{g}");
        }
    }
    if !n.nameservers.is_empty() {
        // 0.0.0.0 is dnsmasq's "this server", xCAT's <xcatmaster>.
        let list: Vec<&str> = n
            .nameservers
            .iter()
            .map(|x| if x == "<xcatmaster>" { "0.0.0.0" } else { x })
            .collect();
        let _ = writeln!(
            s,
            "dhcp-option=tag:{tag},option:dns-server,{}",
            list.join(",")
        );
    }
    if let Some(d) = &n.domain {
        let _ = writeln!(s, "dhcp-option=tag:{tag},option:domain-name,{d}");
    }
}

/// How a node boots, as its opts file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// xnba: iPXE binaries by TFTP, then the per-node script by HTTP from
    /// this base (`http://server[:port]/tftpboot/xcat/xnba/nodes/<node>`).
    Xnba { script_url: String },
    /// grub2: one boot file for every client.
    Grub2,
    /// pxelinux (BIOS only).
    Pxe,
    /// State `boot`: no boot file, so the firmware moves to its next device.
    None,
}

/// One MAC of a node and the address it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLine {
    pub mac: String,
    pub ip: Ipv4Addr,
    /// Host name to hand out, when it is a valid DNS name.
    pub name: Option<String>,
}

/// The tag the node's host lines set and its option lines test.
pub fn node_tag(node: &str) -> String {
    format!("xcatnode-{node}")
}

/// `hosts.d/<node>`.
pub fn render_hosts(node: &str, lines: &[HostLine]) -> String {
    let tag = node_tag(node);
    let mut s = format!("# makedhcp: node {node}\n");
    for l in lines {
        let _ = write!(s, "{},set:{tag},{}", l.mac, l.ip);
        if let Some(n) = &l.name {
            let _ = write!(s, ",{n}");
        }
        s.push('\n');
    }
    s
}

/// `opts.d/<node>`.
pub fn render_opts(node: &str, boot: &Boot) -> String {
    let tag = node_tag(node);
    let mut s = format!("# makedhcp: boot file of node {node}\n");
    let mut line = |cond: &str, file: &str| {
        let _ = writeln!(s, "tag:{tag},{cond}option:bootfile-name,{file}");
    };
    match boot {
        Boot::Xnba { script_url } => {
            line(&format!("tag:!{TAG_IPXE},tag:!{TAG_EFI},"), XNBA_KPXE);
            line(&format!("tag:!{TAG_IPXE},tag:{TAG_EFI},"), XNBA_EFI);
            line(&format!("tag:{TAG_IPXE},tag:!{TAG_EFI},"), script_url);
            line(
                &format!("tag:{TAG_IPXE},tag:{TAG_EFI},"),
                &format!("{script_url}.uefi"),
            );
        }
        Boot::Grub2 => line("", &format!("/boot/grub2/grub2-{node}")),
        Boot::Pxe => line(&format!("tag:!{TAG_EFI},"), "pxelinux.0"),
        Boot::None => s.push_str("# state boot: no boot file\n"),
    }
    s
}

/// The URL of a node's iPXE script (xCAT's literal `/tftpboot/` prefix,
/// whatever site.tftpdir is; the port only when it is not 80).
pub fn script_url(server: Ipv4Addr, port: u16, node: &str) -> String {
    let port = if port == 80 {
        String::new()
    } else {
        format!(":{port}")
    };
    format!("http://{server}{port}/tftpboot/xcat/xnba/nodes/{node}")
}

/// `-q`'s lines from a hosts file, in xCAT's format:
/// `node: ip-address = IP, hardware-address = MAC`.
pub fn query_lines(node: &str, hosts_file: &str) -> Vec<String> {
    hosts_file
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let ip = f.iter().find(|x| x.parse::<Ipv4Addr>().is_ok())?;
            Some(format!(
                "{node}: ip-address = {ip}, hardware-address = {}",
                f.first()?
            ))
        })
        .collect()
}

/// A MAC in dnsmasq's (and xCAT's) form: six lower-case hex pairs with
/// colons; `-` separators accepted.
pub fn normalize_mac(mac: &str) -> Option<String> {
    let parts: Vec<&str> = mac.trim().split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| parts.join(":").to_ascii_lowercase())
}

/// One entry of `mac.mac`: `MAC`, or `MAC!NAME` where NAME is the host
/// name (or address) of that interface; `*NOIP*` means "no address".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacEntry {
    pub mac: String,
    pub name: Option<String>,
}

/// `mac.mac` split on `|`, each `MAC[!NAME]`.
pub fn parse_mac_field(v: &str) -> Vec<MacEntry> {
    v.split('|')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match e.split_once('!') {
            Some((m, n)) => MacEntry {
                mac: m.trim().to_string(),
                name: Some(n.trim().to_string()).filter(|n| !n.is_empty()),
            },
            None => MacEntry {
                mac: e.to_string(),
                name: None,
            },
        })
        .collect()
}

/// A node name that can go into dnsmasq's files and a tag: no separators
/// (`,` `#` blanks, line breaks) of its syntax.
pub fn safe_node_name(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 200
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !node.starts_with('.')
}

/// A name dnsmasq accepts as a client host name (a DNS name of letters,
/// digits and `-` labels).
pub fn dns_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        });
    ok.then(|| name.to_string())
}
