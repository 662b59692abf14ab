//! What each node's files are to say: pure, from the tables read once.

use std::net::Ipv4Addr;

use crate::files::{self, Grub2, Grub2Proto, Xnba};
use crate::image::Prepared;
use crate::kcmdline::{self, NodeBoot, MYIPFN};
use crate::nodes::{self, NodeTables, Resolver};
use crate::site::Site;

/// The bootloader `noderes.netboot` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    Xnba,
    Grub2(Grub2Proto),
}

impl Loader {
    pub fn name(self) -> &'static str {
        match self {
            Loader::Xnba => "xnba",
            Loader::Grub2(_) => "grub2",
        }
    }
}

/// The files of one node.
#[derive(Debug, Clone)]
pub enum Plan {
    Xnba(Xnba),
    Grub2(Grub2),
}

/// The loader of `noderes.netboot`, or the node's error.
pub fn loader(netboot: Option<&str>) -> Result<Loader, String> {
    match netboot {
        None => Err("Unable to identify plugin for this command, check relevant tables: noderes.netboot".into()),
        Some("xnba") => Ok(Loader::Xnba),
        Some("grub2" | "grub2-tftp") => Ok(Loader::Grub2(Grub2Proto::Tftp)),
        Some("grub2-http") => Ok(Loader::Grub2(Grub2Proto::Http)),
        Some(n) if n.starts_with("grub2") => {
            Err("Invalid netboot method, please check noderes.netboot for this node (grub2, grub2-tftp or grub2-http)".into())
        }
        Some(other) => Err(format!(
            "noderes.netboot={other} is not served by this daemon: use xnba (BIOS and UEFI) or grub2 (UEFI)"
        )),
    }
}

/// Everything one node's plan is made from.
pub struct Ctx<'a> {
    pub site: &'a Site,
    pub tables: &'a NodeTables,
    pub resolver: &'a Resolver,
}

impl Ctx<'_> {
    fn get(&self, node: &str, table: &str, col: &str) -> Option<&str> {
        self.tables.get(node, table, col)
    }

    fn ip(&self, node: &str) -> Result<Ipv4Addr, String> {
        nodes::node_ip(self.tables, self.resolver, node).ok_or_else(|| {
            format!("Cannot find the IP address of {node}: set hosts.ip, or list the name in /etc/hosts (no DNS is asked)")
        })
    }

    fn mac(&self, node: &str) -> Option<String> {
        nodes::boot_mac(self.get(node, "mac", "mac")?, node)
    }

    /// grub2 file names: the MAC's and every address's (the node's, and
    /// its `mac!alias` names').
    fn grub2_links(&self, node: &str, ip: Ipv4Addr, mac: Option<&str>) -> Vec<String> {
        let mut links: Vec<String> = mac.map(files::mac_name).into_iter().collect();
        let mut ips = vec![ip];
        if let Some(v) = self.get(node, "mac", "mac") {
            ips.extend(nodes::mac_aliases(v).filter_map(|a| self.resolver.resolve(a)));
        }
        ips.dedup();
        links.extend(ips.into_iter().map(files::hexip_name));
        links
    }

    /// The node's inputs to its command line.
    fn boot<'a>(&'a self, node: &'a str) -> Result<NodeBoot<'a>, String> {
        let server = |col| {
            self.get(node, "noderes", col)
                .map(|s| self.resolver.server(s))
        };
        let serial = match self.get(node, "nodehm", "serialport") {
            None => None,
            Some(port) => {
                let Some(speed) = self.get(node, "nodehm", "serialspeed") else {
                    return Err(format!(
                        "serialport defined, but no serialspeed for {node} in nodehm table"
                    ));
                };
                Some((port, speed, self.get(node, "nodehm", "serialflow")))
            }
        };
        Ok(NodeBoot {
            node,
            master: server("xcatmaster"),
            tftp_server: server("tftpserver"),
            nfs_server: server("nfsserver"),
            installnic: self.get(node, "noderes", "installnic"),
            primarynic: self.get(node, "noderes", "primarynic"),
            serial,
            addkcmdline: self.get(node, "bootparams", "addkcmdline"),
            nfsdir: self.get(node, "noderes", "nfsdir"),
            statemnt: self.get(node, "statelite", "statemnt"),
            mntopts: self.get(node, "statelite", "mntopts"),
        })
    }

    /// The files of `node` booting image `p`.
    pub fn image(&self, node: &str, p: &Prepared) -> Result<(Loader, Plan), String> {
        let loader = loader(self.get(node, "noderes", "netboot"))?;
        let ip = self.ip(node)?;
        let mac = self
            .mac(node)
            .ok_or("No MAC address available for this node")?;
        let b = self.boot(node)?;
        let k = kcmdline::build(p, self.site, &b)?;
        let state = p.image.currstate();
        let plan = match loader {
            Loader::Xnba => {
                let k = k.replace(MYIPFN, "${next-server}");
                let base = format!(
                    "http://${{next-server}}{}/tftpboot/{}",
                    self.site.port_suffix(),
                    p.image.tftp_rel()
                );
                Plan::Xnba(files::xnba_image(&state, &base, &k, p.efi_stub))
            }
            Loader::Grub2(proto) => {
                let facing = || {
                    nodes::facing_ip(ip).map(|a| a.to_string()).ok_or_else(|| {
                        format!("Cannot find this server's address on the way to {node} ({ip}): set noderes.xcatmaster")
                    })
                };
                let server = match b.tftp_server.clone().or(b.master.clone()) {
                    Some(s) => s,
                    None => facing()?,
                };
                let k = if k.contains(MYIPFN) {
                    k.replace(MYIPFN, &facing()?)
                } else {
                    k
                };
                let arch = &p.image.osarch;
                let rel = p.image.tftp_rel();
                let config = files::grub2_image(
                    &state,
                    proto,
                    &server,
                    &self.site.http_port,
                    &rel,
                    &k,
                    arch.contains("x86"),
                );
                Plan::Grub2(Grub2 {
                    config,
                    links: self.grub2_links(node, ip, Some(&mac)),
                    binary: Some(grub2_binary(arch)),
                })
            }
        };
        Ok((loader, plan))
    }

    /// The files of `node` in the `boot` state.
    pub fn boot_state(&self, node: &str) -> Result<(Loader, Plan), String> {
        let loader = loader(self.get(node, "noderes", "netboot"))?;
        Ok(match loader {
            Loader::Xnba => {
                let s = files::exit_script("boot");
                (
                    loader,
                    Plan::Xnba(Xnba {
                        bios: s.clone(),
                        uefi: s,
                    }),
                )
            }
            Loader::Grub2(_) => {
                let ip = self.ip(node)?;
                let mac = self.mac(node);
                let links = self.grub2_links(node, ip, mac.as_deref());
                let g = Grub2 {
                    config: files::grub2_boot(),
                    links,
                    binary: None,
                };
                (loader, Plan::Grub2(g))
            }
        })
    }
}

/// `grub2.<arch>` (`ppc` for every ppc64 flavour, as xCAT names it).
pub fn grub2_binary(arch: &str) -> String {
    if arch.starts_with("ppc64") {
        "grub2.ppc".into()
    } else {
        format!("grub2.{arch}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaders() {
        assert_eq!(loader(Some("xnba")), Ok(Loader::Xnba));
        assert_eq!(loader(Some("grub2")), Ok(Loader::Grub2(Grub2Proto::Tftp)));
        assert_eq!(
            loader(Some("grub2-http")),
            Ok(Loader::Grub2(Grub2Proto::Http))
        );
        assert!(loader(None)
            .unwrap_err()
            .starts_with("Unable to identify plugin"));
        assert!(loader(Some("grub2-nfs"))
            .unwrap_err()
            .starts_with("Invalid netboot method"));
        assert!(loader(Some("pxe")).unwrap_err().contains("not served"));
        assert_eq!(grub2_binary("ppc64le"), "grub2.ppc");
        assert_eq!(grub2_binary("x86_64"), "grub2.x86_64");
    }
}
