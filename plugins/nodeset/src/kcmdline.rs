//! The kernel command line of a stateless node, in xCAT's order and
//! spacing (its initrd and postscripts read these keys), with the fixes:
//! `XCATIPORT=` when the install monitor is not on 3002, one command line
//! for every OS family, `selinux=0` for CentOS as well.

use std::path::Path;

use crate::image::Prepared;
use crate::site::Site;

/// The placeholder for "the server the node booted from": iPXE scripts turn
/// it into `${next-server}`, grub2 files into this server's facing address.
pub const MYIPFN: &str = "!myipfn!";

/// One node's inputs to its command line.
#[derive(Debug, Default)]
pub struct NodeBoot<'a> {
    pub node: &'a str,
    /// `noderes.xcatmaster`, resolved (None: [`MYIPFN`]).
    pub master: Option<String>,
    /// `noderes.tftpserver`, resolved.
    pub tftp_server: Option<String>,
    /// `noderes.nfsserver`, resolved.
    pub nfs_server: Option<String>,
    pub installnic: Option<&'a str>,
    pub primarynic: Option<&'a str>,
    pub serial: Option<(&'a str, &'a str, Option<&'a str>)>,
    /// `bootparams.addkcmdline`.
    pub addkcmdline: Option<&'a str>,
}

/// Where the image server is: nfsserver, else tftpserver, else the master
/// (a literal `<xcatmaster>` value means "the master").
fn image_server(b: &NodeBoot) -> String {
    let set = |v: &Option<String>| v.clone().filter(|s| s != "<xcatmaster>");
    set(&b.nfs_server)
        .or_else(|| set(&b.tftp_server))
        .unwrap_or_else(|| master(b))
}

fn master(b: &NodeBoot) -> String {
    b.master.clone().unwrap_or_else(|| MYIPFN.to_string())
}

/// The URL path of `dir`: `/install/<rel>` beneath the install directory
/// (the boot service's prefix, and xCAT's path for the default `/install`),
/// else the directory itself.
pub fn url_path(dir: &Path, install_dir: &Path) -> String {
    match dir.strip_prefix(install_dir) {
        Ok(rel) if rel.as_os_str().is_empty() => "/install".into(),
        Ok(rel) => format!("/install/{}", rel.display()),
        Err(_) => dir.display().to_string(),
    }
}

/// The command line, before the bootloader adds `BOOTIF=`.
pub fn build(p: &Prepared, site: &Site, b: &NodeBoot) -> String {
    let dir = url_path(&p.image.rootimgdir, &site.install_dir);
    let master = master(b);
    // `:<port>/` + an absolute path: xCAT's double slash, kept (servers
    // accept it, and admins' rules may match it).
    let mut k = format!(
        "imgurl={}://{}:{}/{dir}/{} XCAT={master}:{} NODE={} FC={} ",
        site.http_method,
        image_server(b),
        site.http_port,
        p.packed,
        site.xcatd_port,
        b.node,
        site.flow_control
    );
    if site.no_node_status {
        k.push_str(" nonodestatus ");
    }
    k.push_str(&format!("XCATHTTPPORT={} ", site.http_port));
    if let Some(port) = &site.xcati_port {
        k.push_str(&format!("XCATIPORT={port} "));
    }
    if let Some(mode) = &site.debug_mode {
        k.push_str(&format!(
            " LOGSERVER={master}  syslog.server={master} syslog.type=rsyslogd syslog.filter=*.*  xcatdebugmode={mode} "
        ));
    }
    k.push_str(&nic_args(
        b,
        p.image.linux.get("nodebootif").map(String::as_str),
    ));
    if let Some((port, speed, flow)) = b.serial {
        k.push_str(&format!(" console=tty0 console=ttyS{port},{speed}"));
        if flow.is_some_and(|f| ["hard", "tcs", "ctsrts"].iter().any(|w| f.contains(w))) {
            k.push_str("n8r");
        }
    }
    if selinux_off(&p.image.osvers) {
        k.push_str(" selinux=0 ");
    }
    k.push_str(&kdump(p));
    let extra = volatile(
        b.addkcmdline,
        p.image.linux.get("addkcmdline").map(String::as_str),
    );
    if !extra.is_empty() {
        k.push(' ');
        k.push_str(&extra);
    }
    k
}

/// `netdev=<nic>` for a named boot NIC, `BOOTIF=<mac>` when installnic is a
/// MAC; nothing otherwise (the bootloader adds BOOTIF).
fn nic_args(b: &NodeBoot, nodebootif: Option<&str>) -> String {
    let nic = b.installnic.or(b.primarynic);
    match nic {
        Some(n) if crate::nodes::normal_mac(n).is_some() && n.contains(':') => {
            format!("BOOTIF={n} ")
        }
        Some(n) if !n.eq_ignore_ascii_case("mac") => format!("netdev={n} "),
        _ => match nodebootif {
            Some(n) => format!("netdev={n} "),
            None => String::new(),
        },
    }
}

/// The EL releases whose images want SELinux off (xCAT's list, plus CentOS).
fn selinux_off(osvers: &str) -> bool {
    if osvers.contains("fedora12") || osvers.contains("fedora13") {
        return true;
    }
    ["rhels", "ol", "alma", "rocky", "centos"]
        .iter()
        .any(|fam| {
            osvers.match_indices(fam).any(|(i, _)| {
                let rest = &osvers[i + fam.len()..];
                rest.starts_with("10") || rest.starts_with(['7', '8', '9'])
            })
        })
}

/// ` crashkernel=<size> dump=<target> ` when linuximage.dump is set.
fn kdump(p: &Prepared) -> String {
    let Some(dump) = p.image.linux.get("dump") else {
        return String::new();
    };
    let size = p
        .image
        .linux
        .get("crashkernelsize")
        .map(String::as_str)
        .unwrap_or("128M");
    format!(" crashkernel={size} dump={dump} ")
}

/// bootparams.addkcmdline then linuximage.addkcmdline, without the `R::`
/// tokens (those are for an installed OS), each token followed by a space.
pub fn volatile(node: Option<&str>, image: Option<&str>) -> String {
    let joined = match (node, image) {
        (Some(n), Some(i)) => format!("{n} {i}"),
        (Some(v), None) | (None, Some(v)) => v.to_string(),
        (None, None) => return String::new(),
    };
    joined
        .split(' ')
        .filter(|t| !t.starts_with("R::"))
        .map(|t| format!("{t} "))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selinux_families() {
        for v in [
            "rocky9.4", "rhels8.8", "alma10", "ol7.9", "centos9", "fedora13",
        ] {
            assert!(selinux_off(v), "{v}");
        }
        for v in ["debian12", "ubuntu22.04", "rhels6.10", "sles15", "rocky"] {
            assert!(!selinux_off(v), "{v}");
        }
    }

    #[test]
    fn addkcmdline_drops_persistent_tokens() {
        assert_eq!(volatile(Some("a R::b c"), Some("d")), "a c d ");
        assert_eq!(volatile(None, Some("rootlimit=4G")), "rootlimit=4G ");
        assert_eq!(volatile(None, None), "");
    }

    #[test]
    fn url_paths() {
        let i = Path::new("/install");
        assert_eq!(
            url_path(Path::new("/install/netboot/r9/x86_64/c"), i),
            "/install/netboot/r9/x86_64/c"
        );
        assert_eq!(url_path(Path::new("/data/img"), i), "/data/img");
    }
}
