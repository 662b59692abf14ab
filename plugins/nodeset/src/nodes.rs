//! Every node's attributes, read with one query per table for the whole
//! noderange (group inheritance and templates as everywhere), and the
//! addresses nodeset derives from them. No DNS is asked on the request
//! path: names resolve through `hosts.ip` and `/etc/hosts` only.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use xcat_db::{Attrs, Db, DbError};

/// The columns read, per table.
const COLUMNS: &[(&str, &[&str])] = &[
    (
        "noderes",
        &[
            "netboot",
            "tftpserver",
            "xcatmaster",
            "nfsserver",
            "installnic",
            "primarynic",
            "nfsdir",
        ],
    ),
    ("statelite", &["statemnt", "mntopts"]),
    ("nodehm", &["serialport", "serialspeed", "serialflow"]),
    ("mac", &["mac"]),
    ("hosts", &["ip"]),
    ("bootparams", &["addkcmdline"]),
    ("nodetype", &["provmethod", "arch"]),
    ("hwinv", &["memory"]),
];

/// The attributes of every node of a request: table -> node -> attributes.
pub struct NodeTables {
    by_table: HashMap<&'static str, BTreeMap<String, Attrs>>,
    empty: Attrs,
}

impl NodeTables {
    pub async fn read(db: &Db, nodes: &[String]) -> Result<NodeTables, DbError> {
        let mut by_table = HashMap::new();
        for (table, cols) in COLUMNS {
            by_table.insert(*table, db.node_attrs(nodes, table, cols).await?);
        }
        Ok(NodeTables {
            by_table,
            empty: Attrs::new(),
        })
    }

    /// `table.col` of `node`, trimmed, None when unset or blank.
    pub fn get(&self, node: &str, table: &str, col: &str) -> Option<&str> {
        let attrs = self
            .by_table
            .get(table)
            .and_then(|t| t.get(node))
            .unwrap_or(&self.empty);
        attrs.get(col).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// Names to addresses without DNS: `/etc/hosts`, read once per request.
#[derive(Debug, Default)]
pub struct Resolver {
    etc_hosts: HashMap<String, Ipv4Addr>,
}

impl Resolver {
    pub fn load() -> Resolver {
        let text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        Resolver::from_hosts_file(&text)
    }

    pub fn from_hosts_file(text: &str) -> Resolver {
        let mut etc_hosts = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(Ok(ip)) = words.next().map(str::parse::<Ipv4Addr>) else {
                continue;
            };
            for name in words {
                etc_hosts.entry(name.to_string()).or_insert(ip);
            }
        }
        Resolver { etc_hosts }
    }

    /// An IPv4 literal as itself, else the name's `/etc/hosts` address.
    pub fn resolve(&self, name: &str) -> Option<Ipv4Addr> {
        name.parse()
            .ok()
            .or_else(|| self.etc_hosts.get(name).copied())
    }

    /// A server name as nodes are to be given it: an address when one is
    /// known (the initrd may not resolve names), else the name.
    pub fn server(&self, name: &str) -> String {
        match self.resolve(name) {
            Some(ip) => ip.to_string(),
            None => name.to_string(),
        }
    }
}

/// The node's IPv4 address: `hosts.ip`, else its name through the resolver.
pub fn node_ip(tables: &NodeTables, resolver: &Resolver, node: &str) -> Option<Ipv4Addr> {
    match tables.get(node, "hosts", "ip") {
        Some(ip) => ip.parse().ok().or_else(|| resolver.resolve(ip)),
        None => resolver.resolve(node),
    }
}

/// The node's boot MAC from a `mac.mac` value (`mac[!name]|mac...`): the
/// entry tagged `!<node>`, else the last untagged one (xCAT's rule), in
/// lower case with colons. None when there is none or it is not a MAC.
pub fn boot_mac(value: &str, node: &str) -> Option<String> {
    let mut chosen = None;
    for entry in value.split('|').map(str::trim) {
        match entry.split_once('!') {
            Some((mac, name)) if name == node => {
                chosen = Some(mac);
                break;
            }
            Some(_) => {}
            None if !entry.is_empty() => chosen = Some(entry),
            None => {}
        }
    }
    normal_mac(chosen?)
}

/// The names given as `mac!name` aliases (their addresses get grub2 links too).
pub fn mac_aliases(value: &str) -> impl Iterator<Item = &str> {
    value
        .split('|')
        .filter_map(|e| e.split_once('!').map(|(_, n)| n.trim()))
}

/// `aa:bb:cc:dd:ee:ff` from that or `aabbccddeeff` (any case).
pub fn normal_mac(mac: &str) -> Option<String> {
    let hex: String = mac.chars().filter(|c| *c != ':' && *c != '-').collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    let pairs: Vec<&str> = (0..6).map(|i| &hex[i * 2..i * 2 + 2]).collect();
    Some(pairs.join(":"))
}

/// This server's address on the route to `ip` (xCAT's "facing" address):
/// the source address the kernel picks for a datagram there. Nothing is
/// sent: connecting a UDP socket only chooses the route.
pub fn facing_ip(ip: Ipv4Addr) -> Option<Ipv4Addr> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((ip, 9)).ok()?;
    match s.local_addr().ok()?.ip() {
        IpAddr::V4(a) if !a.is_unspecified() => Some(a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            boot_mac("AA:BB:CC:DD:EE:01", "n1").as_deref(),
            Some("aa:bb:cc:dd:ee:01")
        );
        assert_eq!(
            boot_mac("aabbccddee02", "n1").as_deref(),
            Some("aa:bb:cc:dd:ee:02")
        );
        let v = "aa:bb:cc:dd:ee:01|aa:bb:cc:dd:ee:02!n1-ib|aa:bb:cc:dd:ee:03";
        assert_eq!(boot_mac(v, "n1").as_deref(), Some("aa:bb:cc:dd:ee:03"));
        assert_eq!(boot_mac(v, "n1-ib").as_deref(), Some("aa:bb:cc:dd:ee:02"));
        assert_eq!(mac_aliases(v).collect::<Vec<_>>(), ["n1-ib"]);
        assert_eq!(boot_mac("not-a-mac", "n1"), None);
        assert_eq!(boot_mac("", "n1"), None);
    }

    #[test]
    fn hosts_file() {
        let r = Resolver::from_hosts_file(
            "127.0.0.1 localhost\n# 10.0.0.9 gone\n10.99.1.1 mn1 mn1.cluster # server\n::1 ip6\n",
        );
        assert_eq!(r.resolve("mn1"), Some(Ipv4Addr::new(10, 99, 1, 1)));
        assert_eq!(r.resolve("mn1.cluster"), Some(Ipv4Addr::new(10, 99, 1, 1)));
        assert_eq!(r.resolve("gone"), None);
        assert_eq!(r.resolve("10.1.2.3"), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(r.server("mn1"), "10.99.1.1");
        assert_eq!(r.server("elsewhere"), "elsewhere");
    }

    #[test]
    fn facing_loopback() {
        assert_eq!(facing_ip(Ipv4Addr::LOCALHOST), Some(Ipv4Addr::LOCALHOST));
    }
}
