//! From the tables to what each node's files say. One read per table for
//! the whole noderange; the per-node work is pure apart from resolving
//! names that have no `hosts.ip` (done on a blocking thread).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, ToSocketAddrs};

use xcat_plugin::{Db, HandlerError};

use crate::conf::{self, Boot, Gateway, HostLine, Network};

type Attrs = BTreeMap<String, String>;

/// The `site` values makedhcp uses.
#[derive(Debug, Clone, Default)]
pub struct Site {
    pub domain: Option<String>,
    pub nameservers: Vec<String>,
    pub master: Option<String>,
    pub tftpdir: Option<String>,
    pub httpport: Option<u16>,
    pub dhcplease: Option<u64>,
}

impl Site {
    pub async fn read(db: &Db) -> Result<Site, HandlerError> {
        let get = |k: &'static str| async move { db.site(k).await };
        Ok(Site {
            domain: get("domain").await?,
            nameservers: list(get("nameservers").await?.as_deref()),
            master: get("master").await?,
            tftpdir: get("tftpdir").await?,
            httpport: get("httpport").await?.and_then(|p| p.trim().parse().ok()),
            dhcplease: get("dhcplease").await?.and_then(|p| p.trim().parse().ok()),
        })
    }
}

/// A comma-separated table value as a list.
fn list(v: Option<&str>) -> Vec<String> {
    v.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// The `networks` rows as networks; rows makedhcp cannot serve are
/// returned as warnings (IPv6, unparsable values).
pub fn networks(rows: &[Attrs], site: &Site) -> (Vec<Network>, Vec<String>) {
    let mut nets = Vec::new();
    let mut warnings = Vec::new();
    for r in rows {
        let net = r.get("net").map(String::as_str).unwrap_or("");
        match network(r, site) {
            Ok(n) => nets.push(n),
            Err(why) => warnings.push(format!("network {net} skipped: {why}")),
        }
    }
    (nets, warnings)
}

fn network(r: &Attrs, site: &Site) -> Result<Network, String> {
    let get = |k: &str| r.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let addr = |k: &str| -> Result<Ipv4Addr, String> {
        let v = get(k).ok_or(format!("networks.{k} is not set"))?;
        if v.contains(':') {
            return Err("IPv6 networks are not served by this DHCP server".into());
        }
        v.parse()
            .map_err(|_| format!("networks.{k} {v:?} is not an IPv4 address"))
    };
    let (net, mask) = (addr("net")?, addr("mask")?);
    let dynamic = match get("dynamicrange") {
        None => None,
        Some(v) => Some(range(v).ok_or(format!(
            "networks.dynamicrange {v:?} is not START-END (IPv4)"
        ))?),
    };
    let gateway = match get("gateway") {
        None => Gateway::None,
        Some("<xcatmaster>") => Gateway::Server,
        Some(g) => Gateway::Addr(
            g.parse()
                .map_err(|_| format!("networks.gateway {g:?} is not an IPv4 address"))?,
        ),
    };
    let nameservers = match list(get("nameservers")) {
        l if l.is_empty() => site.nameservers.clone(),
        l => l,
    };
    Ok(Network {
        net,
        mask,
        dynamic,
        gateway,
        nameservers,
        domain: get("domain").map(String::from).or(site.domain.clone()),
        tftpserver: get("tftpserver").and_then(|v| v.parse().ok()),
        mgtifname: get("mgtifname").map(String::from),
    })
}

fn range(v: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let (a, b) = v.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Every table value one node's files depend on.
#[derive(Debug, Clone, Default)]
pub struct NodeRows {
    pub mac: Option<String>,
    pub hosts_ip: Option<String>,
    pub netboot: Option<String>,
    pub tftpserver: Option<String>,
    pub xcatmaster: Option<String>,
    pub currstate: Option<String>,
}

/// The node rows of `nodes`: four queries whatever their number.
pub async fn node_rows(db: &Db, nodes: &[String]) -> Result<Vec<NodeRows>, HandlerError> {
    let mac = db.node_attrs(nodes, "mac", &["mac"]).await?;
    let hosts = db.node_attrs(nodes, "hosts", &["ip"]).await?;
    let noderes = db
        .node_attrs(nodes, "noderes", &["netboot", "tftpserver", "xcatmaster"])
        .await?;
    let chain = db.node_attrs(nodes, "chain", &["currstate"]).await?;
    let val = |m: &BTreeMap<String, Attrs>, n: &str, c: &str| {
        m.get(n)
            .and_then(|a| a.get(c))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Ok(nodes
        .iter()
        .map(|n| NodeRows {
            mac: val(&mac, n, "mac"),
            hosts_ip: val(&hosts, n, "ip"),
            netboot: val(&noderes, n, "netboot"),
            tftpserver: val(&noderes, n, "tftpserver"),
            xcatmaster: val(&noderes, n, "xcatmaster"),
            currstate: val(&chain, n, "currstate"),
        })
        .collect())
}

/// What the planning of every node shares.
pub struct Env<'a> {
    pub networks: &'a [Network],
    pub site: &'a Site,
    /// The HTTP port of the boot service (site.httpport, else the daemon's).
    pub http_port: u16,
    /// This host's own IPv4 addresses, for "the address on that network".
    pub local: &'a [Ipv4Addr],
    /// Name resolution (getaddrinfo in the daemon; a table in tests).
    pub resolve: &'a dyn Fn(&str) -> Option<Ipv4Addr>,
}

/// What one node's files hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub node: String,
    pub hosts: Vec<HostLine>,
    pub boot: Boot,
}

/// One node's plan, or the reason it has none (the text after
/// `<node>: Error: `).
pub fn plan_node(node: &str, rows: &NodeRows, env: &Env) -> Result<NodePlan, String> {
    if !conf::safe_node_name(node) {
        return Err("the node name has characters a DHCP configuration cannot hold".into());
    }
    let entries = conf::parse_mac_field(rows.mac.as_deref().unwrap_or(""));
    if entries.is_empty() {
        return Err("no MAC address in the mac table (mac.mac)".into());
    }
    let node_ip = match &rows.hosts_ip {
        Some(ip) => ip
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("hosts.ip {ip:?} is not an IPv4 address"))?,
        None => (env.resolve)(node).ok_or(
            "no IP address: set hosts.ip or make the node name resolve (/etc/hosts)".to_string(),
        )?,
    };
    let hosts = host_lines(node, node_ip, &entries, env)?;
    let net = env
        .networks
        .iter()
        .find(|n| n.contains(node_ip))
        .ok_or(format!(
            "{node_ip} is on no network of the networks table (run makedhcp -n after adding it)"
        ))?;
    if net.in_dynamic_range(node_ip) {
        return Err(format!(
            "{node_ip} is inside the dynamic range of network {}; move the node out of it or change networks.dynamicrange",
            net.net
        ));
    }
    let boot = boot_of(node, rows, net, env)?;
    Ok(NodePlan {
        node: node.to_string(),
        hosts,
        boot,
    })
}

/// The host lines: the MACs without a name of their own (or named after
/// the node) share the node's address on one line; a `MAC!NAME` entry gets
/// NAME's address; `*NOIP*` entries get none.
fn host_lines(
    node: &str,
    node_ip: Ipv4Addr,
    entries: &[conf::MacEntry],
    env: &Env,
) -> Result<Vec<HostLine>, String> {
    let mut own = Vec::new();
    let mut named = Vec::new();
    for e in entries {
        let mac = conf::normalize_mac(&e.mac).ok_or(format!("invalid MAC address {:?}", e.mac))?;
        match e.name.as_deref() {
            None => own.push(mac),
            Some(n) if n == node => own.push(mac),
            Some("*NOIP*") => {}
            Some(n) => {
                let ip = n
                    .parse()
                    .ok()
                    .or_else(|| (env.resolve)(n))
                    .ok_or(format!("the host name {n} of MAC {mac} does not resolve"))?;
                named.push(HostLine {
                    mac,
                    ip,
                    name: conf::dns_name(n).filter(|_| n.parse::<Ipv4Addr>().is_err()),
                });
            }
        }
    }
    let mut lines = Vec::new();
    if !own.is_empty() {
        lines.push(HostLine {
            mac: own.join(","),
            ip: node_ip,
            name: conf::dns_name(node),
        });
    }
    lines.extend(named);
    Ok(lines)
}

/// The node's boot file choice from noderes.netboot and chain.currstate.
fn boot_of(node: &str, rows: &NodeRows, net: &Network, env: &Env) -> Result<Boot, String> {
    let state = rows.currstate.as_deref().unwrap_or("");
    if state == "boot" || state.starts_with("boot ") {
        return Ok(Boot::None);
    }
    match rows.netboot.as_deref().unwrap_or("xnba") {
        "xnba" => {
            let server = server_of(rows, net, env)?;
            Ok(Boot::Xnba {
                script_url: conf::script_url(server, env.http_port, node),
            })
        }
        g if g.starts_with("grub2") => Ok(Boot::Grub2),
        "pxe" => Ok(Boot::Pxe),
        other => Err(format!(
            "noderes.netboot={other} is not served (use xnba, grub2 or pxe)"
        )),
    }
}

/// The address nodes fetch their script from: noderes.tftpserver, else
/// noderes.xcatmaster, else networks.tftpserver, else this host's own
/// address on the node's network, else site.master.
fn server_of(rows: &NodeRows, net: &Network, env: &Env) -> Result<Ipv4Addr, String> {
    let named = |v: &Option<String>| -> Result<Option<Ipv4Addr>, String> {
        match v.as_deref() {
            None | Some("<xcatmaster>") => Ok(None),
            Some(v) => v
                .parse()
                .ok()
                .or_else(|| (env.resolve)(v))
                .map(Some)
                .ok_or(format!(
                    "the server {v} does not resolve to an IPv4 address"
                )),
        }
    };
    if let Some(ip) = named(&rows.tftpserver)?.or(named(&rows.xcatmaster)?) {
        return Ok(ip);
    }
    if let Some(ip) = net.tftpserver {
        return Ok(ip);
    }
    if let Some(ip) = env.local.iter().find(|ip| net.contains(**ip)) {
        return Ok(*ip);
    }
    named(&env.site.master)?.ok_or(format!(
        "no server address for the boot URL: this host has no address on {}/{}; set noderes.tftpserver, noderes.xcatmaster or site.master",
        net.net, net.mask
    ))
}

/// getaddrinfo, IPv4 only.
pub fn resolve_v4(name: &str) -> Option<Ipv4Addr> {
    (name, 0)
        .to_socket_addrs()
        .ok()?
        .find_map(|a| match a.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            _ => None,
        })
}

/// This host's IPv4 addresses, from the kernel's routing trie (the local
/// host routes); no process and no socket needed.
pub fn local_ipv4s() -> Vec<Ipv4Addr> {
    let text = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    local_from_fib_trie(&text)
}

/// The addresses of `/32 host LOCAL` leaves in `/proc/net/fib_trie` text.
pub fn local_from_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if let Ok(ip) = t.parse::<Ipv4Addr>() {
            last = Some(ip);
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(ip) = last.filter(|ip| !ip.is_loopback() && !out.contains(ip)) {
                out.push(ip);
            }
        }
    }
    out
}
