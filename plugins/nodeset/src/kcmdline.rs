//! The kernel command line of a stateless node, in xCAT's order and
//! spacing (its initrd and postscripts read these keys), with the fixes:
//! `XCATIPORT=` when the install monitor is not on 3002, one command line
//! for every OS family, `selinux=0` for CentOS as well.

use std::path::Path;

use crate::image::{Prepared, RootKind};
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
    /// `noderes.nfsdir` (statelite NFS roots).
    pub nfsdir: Option<&'a str>,
    /// `statelite.statemnt` and `statelite.mntopts`.
    pub statemnt: Option<&'a str>,
    pub mntopts: Option<&'a str>,
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

/// The start of the command line: where the root comes from, then the
/// master and the node, in xCAT's order for each kind of root (statelite
/// has `STATEMNT=` and no `FC=`).
fn root_args(p: &Prepared, site: &Site, b: &NodeBoot) -> Result<String, String> {
    // `:<port>/` + an absolute path: xCAT's double slash, kept (servers
    // accept it, and admins' rules may match it).
    let url = || {
        let dir = url_path(&p.image.rootimgdir, &site.install_dir);
        let (method, port) = (&site.http_method, &site.http_port);
        let key = p
            .signed_by
            .as_ref()
            .map(|fp| format!(" imgkey={fp}"))
            .unwrap_or_default();
        format!(
            "imgurl={method}://{}:{port}/{dir}/{}{key}",
            image_server(b),
            p.packed
        )
    };
    let xcat = format!("XCAT={}:{} NODE={}", master(b), site.xcatd_port, b.node);
    let statemnt = b.statemnt.unwrap_or_default();
    Ok(match p.image.root {
        RootKind::Stateless => format!("{} {xcat} FC={} ", url(), site.flow_control),
        RootKind::StateliteRamdisk => format!("{} STATEMNT={statemnt} {xcat} ", url()),
        RootKind::StateliteNfs => {
            let root = nfs_root(p, b)?;
            format!("{root} STATEMNT={statemnt} {xcat} ")
        }
    })
}

/// `root=nfs:<server>:<dir>/rootimg:ro[,<nfsrootopts>]`: the directory is
/// the image's, or `noderes.nfsdir` + `/netboot/<os>/<arch>/<profile>`
/// (`//` at its start: the value as it is, one slash dropped), as xCAT
/// builds it.
fn nfs_root(p: &Prepared, b: &NodeBoot) -> Result<String, String> {
    let i = &p.image;
    let dir = match b.nfsdir {
        Some(d) if d.starts_with("//") => d[1..].to_string(),
        Some(d) => format!("{d}/netboot/{}/{}/{}", i.osvers, i.osarch, i.profile),
        None => i.rootimgdir.display().to_string(),
    };
    let mut opts = vec!["ro"];
    if let Some(v) = i.nfsrootopts.as_deref() {
        opts.extend(xcat_db::objects::rules::nfsroot_options(v)?);
    }
    Ok(format!(
        "root=nfs:{}:{dir}/rootimg:{}",
        image_server(b),
        opts.join(",")
    ))
}

/// The command line, before the bootloader adds `BOOTIF=`; a node's error
/// when its image's NFS root options are unusable.
pub fn build(p: &Prepared, site: &Site, b: &NodeBoot) -> Result<String, String> {
    let master = master(b);
    let mut k = root_args(p, site, b)?;
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
    if p.image.root != RootKind::Stateless {
        k.push_str(&format!(" MNTOPTS={}", b.mntopts.unwrap_or_default()));
    }
    let extra = volatile(
        b.addkcmdline,
        p.image.linux.get("addkcmdline").map(String::as_str),
    );
    if !extra.is_empty() {
        k.push(' ');
        k.push_str(&extra);
    }
    Ok(k)
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

    fn site() -> Site {
        Site {
            install_dir: "/install".into(),
            tftp_dir: "/tftpboot".into(),
            http_port: "80".into(),
            http_method: "http".into(),
            xcatd_port: "3001".into(),
            xcati_port: None,
            no_node_status: false,
            flow_control: "0".into(),
            debug_mode: None,
            dhcp_setup: false,
            server_name: "mn".into(),
            image_key: None,
        }
    }

    fn prepared(root: RootKind, packed: &str, nfsrootopts: Option<&str>) -> Prepared {
        Prepared {
            image: crate::image::Image {
                name: "sl".into(),
                provmethod: "statelite".into(),
                osvers: "debian12".into(),
                osarch: "x86_64".into(),
                profile: "compute".into(),
                rootimgdir: "/install/netboot/debian12/x86_64/compute".into(),
                description: String::new(),
                root,
                nfsrootopts: nfsrootopts.map(str::to_string),
                linux: Default::default(),
            },
            packed: packed.into(),
            efi_stub: true,
            ram: Default::default(),
            signed_by: None,
            notes: vec![],
            warnings: vec![],
        }
    }

    fn node<'a>(statemnt: Option<&'a str>, mntopts: Option<&'a str>) -> NodeBoot<'a> {
        NodeBoot {
            node: "n1",
            master: Some("10.99.60.1".into()),
            statemnt,
            mntopts,
            ..Default::default()
        }
    }

    #[test]
    fn a_signed_image_names_its_key_after_its_url() {
        let mut p = prepared(RootKind::Stateless, "rootimg.cpio.zst", None);
        p.signed_by = Some("SHA256:ab12".into());
        let k = build(&p, &site(), &node(None, None)).unwrap();
        assert!(
            k.starts_with("imgurl=http://10.99.60.1:80//install/netboot/debian12/x86_64/compute/rootimg.cpio.zst imgkey=SHA256:ab12 XCAT=10.99.60.1:3001 NODE=n1 FC=0 "),
            "{k}"
        );
    }

    #[test]
    fn statelite_command_lines_in_xcats_order() {
        let dir = "/install/netboot/debian12/x86_64/compute";
        let b = node(Some("10.99.60.1:/state"), Some("vers=4.1,port=2050"));
        let k = build(
            &prepared(RootKind::StateliteRamdisk, "rootimg-statelite.gz", None),
            &site(),
            &b,
        )
        .unwrap();
        assert!(
            k.starts_with(&format!("imgurl=http://10.99.60.1:80/{dir}/rootimg-statelite.gz STATEMNT=10.99.60.1:/state XCAT=10.99.60.1:3001 NODE=n1 XCATHTTPPORT=80 ")),
            "{k}"
        );
        assert!(!k.contains("FC="), "{k}");
        assert!(k.ends_with(" MNTOPTS=vers=4.1,port=2050"), "{k}");

        let p = prepared(
            RootKind::StateliteNfs,
            "rootimg",
            Some("port=2050,vers=4.1,ro"),
        );
        let k = build(&p, &site(), &node(None, None)).unwrap();
        assert!(
            k.starts_with(&format!("root=nfs:10.99.60.1:{dir}/rootimg:ro,port=2050,vers=4.1 STATEMNT= XCAT=10.99.60.1:3001 NODE=n1 ")),
            "{k}"
        );
        assert!(
            k.ends_with(" MNTOPTS="),
            "an unset mntopts is still said: {k}"
        );

        let mut b = node(None, None);
        b.nfsdir = Some("/exports");
        let k = build(
            &prepared(RootKind::StateliteNfs, "rootimg", None),
            &site(),
            &b,
        )
        .unwrap();
        assert!(
            k.starts_with(
                "root=nfs:10.99.60.1:/exports/netboot/debian12/x86_64/compute/rootimg:ro STATEMNT="
            ),
            "{k}"
        );
        b.nfsdir = Some("//srv/lite");
        let k = build(
            &prepared(RootKind::StateliteNfs, "rootimg", None),
            &site(),
            &b,
        )
        .unwrap();
        assert!(
            k.starts_with("root=nfs:10.99.60.1:/srv/lite/rootimg:ro "),
            "{k}"
        );
    }

    #[test]
    fn nfs_root_options_stay_read_only() {
        for (opts, why) in [
            ("rw", "cannot contain 'rw'"),
            ("vers=4,Defaults", "cannot contain 'defaults'"),
            ("vers=4,,port=1", "without whitespace or empty"),
            ("vers=4 port=1", "without whitespace or empty"),
        ] {
            let p = prepared(RootKind::StateliteNfs, "rootimg", Some(opts));
            let e = build(&p, &site(), &node(None, None)).unwrap_err();
            assert!(e.contains(why), "{opts}: {e}");
        }
        let p = prepared(RootKind::Stateless, "rootimg.cpio.gz", Some("rw"));
        let k = build(&p, &site(), &node(None, None)).unwrap();
        assert!(
            k.contains("rootimg.cpio.gz XCAT=10.99.60.1:3001 NODE=n1 FC=0 "),
            "{k}"
        );
        assert!(!k.contains("MNTOPTS") && !k.contains("STATEMNT"), "{k}");
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
