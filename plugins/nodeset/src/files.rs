//! The per-node boot files, in xCAT's layout:
//!
//! * xnba: `<tftpdir>/xcat/xnba/nodes/<node>` (iPXE script: `#!gpxe`, then
//!   `#<currstate>`) and `<node>.uefi`;
//! * grub2: `<tftpdir>/boot/grub2/<node>`, hard-linked as
//!   `grub.cfg-01-<mac-with-dashes>` and `grub.cfg-<HEXIP>`, and the
//!   symlink `grub2-<node>` -> `grub2.<arch>`.
//!
//! Every file is written under a temporary dot-name in its directory and
//! renamed into place, links are made under temporary names and renamed
//! too: a node booting meanwhile reads the old file or the new one, whole.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `<tftpdir>/xcat/xnba/nodes`.
pub fn xnba_dir(tftp: &Path) -> PathBuf {
    tftp.join("xcat/xnba/nodes")
}

/// `<tftpdir>/boot/grub2`.
pub fn grub2_dir(tftp: &Path) -> PathBuf {
    tftp.join("boot/grub2")
}

/// A temporary name beside `path` (a dot-file: the boot service serves no
/// dot-file).
pub fn temp_name(path: &Path) -> PathBuf {
    xcat_jobkit::replace::temp_beside(path, "nodeset")
}

/// Write `content` to `path` through a temporary name and a rename (0644:
/// the TFTP server reads it as its own user).
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    xcat_jobkit::replace::write_replacing(path, content, 0o644, "nodeset")
}

/// [`write_atomic`] unless `path` already holds exactly `content`: a
/// repeated nodeset leaves an unchanged node's files alone, which costs a
/// read instead of a create, a rename and a journal commit (bench/nodeset).
pub fn write_if_changed(path: &Path, content: &[u8]) -> io::Result<()> {
    if holds(path, content) {
        return Ok(());
    }
    write_atomic(path, content)
}

/// Whether `path` is readable and holds exactly `content`. The size is
/// looked at first: a file that changes mostly changes its length (another
/// image, another state), and one stat is cheaper than open, read, close.
fn holds(path: &Path, content: &[u8]) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() == content.len() as u64)
        && fs::read(path).is_ok_and(|c| c == content)
}

/// Make `link` a hard link of `target`, replacing what was there at once.
fn link_atomic(target: &Path, link: &Path) -> io::Result<()> {
    let tmp = temp_name(link);
    fs::hard_link(target, &tmp)?;
    fs::rename(&tmp, link).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Whether `a` and `b` are names of one inode.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}

/// Make `link` a symlink to `target`, replacing what was there at once,
/// unless it already is one.
fn symlink_atomic(target: &str, link: &Path) -> io::Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == Path::new(target)) {
        return Ok(());
    }
    let tmp = temp_name(link);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

fn remove_if_there(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The two iPXE scripts of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xnba {
    pub bios: String,
    pub uefi: String,
}

/// What a stateless node's iPXE scripts say. `kcmdline` has its
/// `!myipfn!` already turned into `${next-server}`.
pub fn xnba_image(currstate: &str, base_url: &str, kcmdline: &str, efi_stub: bool) -> Xnba {
    let script = |extra: &str| {
        format!(
            "#!gpxe\n#{currstate}\nimgfetch -n kernel {base_url}/kernel\nimgload kernel\n\
             imgargs kernel {kcmdline} BOOTIF=01-${{netX/mac:hexhyp}}{extra}\n\
             imgfetch -n initrd {base_url}/{}\nimgexec kernel\n",
            crate::image::INITRD
        )
    };
    let uefi = if efi_stub {
        script(" initrd=initrd")
    } else {
        exit_script(currstate)
    };
    Xnba {
        bios: script(""),
        uefi,
    }
}

/// `#!gpxe`, the state, `exit`: boot from the next device.
pub fn exit_script(currstate: &str) -> String {
    format!("#!gpxe\n#{currstate}\nexit\n")
}

/// Write a node's iPXE scripts.
pub fn write_xnba(tftp: &Path, node: &str, x: &Xnba) -> io::Result<()> {
    let dir = xnba_dir(tftp);
    remove_if_there(&dir.join(format!("{node}.pxelinux")))?;
    write_if_changed(&dir.join(format!("{node}.uefi")), x.uefi.as_bytes())?;
    write_if_changed(&dir.join(node), x.bios.as_bytes())
}

/// A node's grub2 configuration and its names.
#[derive(Debug, Clone)]
pub struct Grub2 {
    pub config: String,
    /// `grub.cfg-01-<mac>` and `grub.cfg-<HEXIP>` names.
    pub links: Vec<String>,
    /// `grub2.<arch>`, the binary `grub2-<node>` points at; None in the
    /// `boot` state (the link is removed, so the firmware moves on).
    pub binary: Option<String>,
}

/// Where grub2 loads kernel and initrd from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grub2Proto {
    Tftp,
    Http,
}

/// A stateless node's grub2 configuration (xCAT writes no final newline).
pub fn grub2_image(
    currstate: &str,
    proto: Grub2Proto,
    server: &str,
    http_port: &str,
    tftp_rel: &str,
    kcmdline: &str,
    x86: bool,
) -> String {
    let (root, prefix) = match proto {
        Grub2Proto::Tftp => (format!("tftp,{server}"), ""),
        Grub2Proto::Http if http_port != "80" => {
            (format!("http,{server}:{http_port}"), "/tftpboot")
        }
        Grub2Proto::Http => (format!("http,{server}"), "/tftpboot"),
    };
    let efi = if x86 { "efi" } else { "" };
    format!(
        "#{currstate}\nset timeout=5\nset default=\"xCAT OS Deployment\"\nmenuentry \"xCAT OS Deployment\" {{\n    \
         insmod http\n    insmod tftp\n    set root={root}\n    echo Loading Install kernel ...\n    \
         linux{efi} {prefix}/{tftp_rel}/kernel {kcmdline} BOOTIF=$net_default_mac\n    \
         echo Loading initial ramdisk ...\n    initrd{efi} {prefix}/{tftp_rel}/{}\n}}",
        crate::image::INITRD
    )
}

/// The grub2 file of the `boot` state.
pub fn grub2_boot() -> String {
    "#boot\nset timeout=5\n".into()
}

/// `grub.cfg-<HEXIP>`.
pub fn hexip_name(ip: std::net::Ipv4Addr) -> String {
    let o = ip.octets();
    format!("grub.cfg-{:02X}{:02X}{:02X}{:02X}", o[0], o[1], o[2], o[3])
}

/// `grub.cfg-01-<mac with dashes>`.
pub fn mac_name(mac: &str) -> String {
    format!("grub.cfg-01-{}", mac.replace(':', "-"))
}

/// The names in the grub2 directory by inode, read once per request, so
/// a node's old links are found without a directory scan per node.
#[derive(Debug, Default)]
pub struct Grub2Links {
    by_inode: HashMap<(u64, u64), Vec<PathBuf>>,
}

impl Grub2Links {
    pub fn scan(tftp: &Path) -> Grub2Links {
        let mut by_inode: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
        for e in fs::read_dir(grub2_dir(tftp))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(m) = e.metadata() {
                if m.is_file() && m.nlink() > 1 {
                    by_inode
                        .entry((m.dev(), m.ino()))
                        .or_default()
                        .push(e.path());
                }
            }
        }
        Grub2Links { by_inode }
    }

    /// Remove every other name of `file` (its old `grub.cfg-*` links) but
    /// those in `keep`.
    fn remove_links_of(&self, file: &Path, keep: &[PathBuf]) -> io::Result<()> {
        let Ok(m) = fs::symlink_metadata(file) else {
            return Ok(());
        };
        for p in self.by_inode.get(&(m.dev(), m.ino())).into_iter().flatten() {
            if p != file && !keep.contains(p) {
                remove_if_there(p)?;
            }
        }
        Ok(())
    }
}

/// Write a node's grub2 configuration, its links and its binary link.
/// Returns false when the binary named is missing (the file and links are
/// written all the same; the node cannot fetch `grub2-<node>`).
pub fn write_grub2(tftp: &Path, node: &str, g: &Grub2, old: &Grub2Links) -> io::Result<bool> {
    let dir = grub2_dir(tftp);
    let cfg = dir.join(node);
    let links: Vec<PathBuf> = g.links.iter().map(|l| dir.join(l)).collect();
    // An unchanged configuration keeps its inode, and so the links that
    // already name it; a changed one is a new inode every link must follow.
    let unchanged = holds(&cfg, g.config.as_bytes());
    old.remove_links_of(&cfg, if unchanged { &links } else { &[] })?;
    if !unchanged {
        write_atomic(&cfg, g.config.as_bytes())?;
    }
    for l in &links {
        if !(unchanged && same_file(&cfg, l)) {
            link_atomic(&cfg, l)?;
        }
    }
    let bin_link = dir.join(format!("grub2-{node}"));
    let Some(bin) = &g.binary else {
        remove_if_there(&bin_link)?;
        return Ok(true);
    };
    if fs::symlink_metadata(dir.join(bin)).is_err() {
        return Ok(false);
    }
    symlink_atomic(bin, &bin_link)?;
    Ok(true)
}

/// Remove every boot file of `node` (both bootloaders' files: `offline`).
pub fn remove_node(tftp: &Path, node: &str, old: &Grub2Links) -> io::Result<()> {
    let x = xnba_dir(tftp);
    for suffix in ["", ".pxelinux", ".uefi", ".elilo"] {
        remove_if_there(&x.join(format!("{node}{suffix}")))?;
    }
    let g = grub2_dir(tftp);
    old.remove_links_of(&g.join(node), &[])?;
    remove_if_there(&g.join(node))?;
    remove_if_there(&g.join(format!("grub2-{node}")))
}

/// The state a node's files hold: line 2 of its iPXE script, else line 1
/// of its grub2 file, without the `#`; `offline` when it has neither.
pub fn read_state(tftp: &Path, node: &str) -> String {
    let line = |p: PathBuf, n: usize| {
        let text = fs::read_to_string(p).ok()?;
        let l = text.lines().nth(n)?;
        l.strip_prefix('#').map(str::to_string)
    };
    line(xnba_dir(tftp).join(node), 1)
        .or_else(|| line(grub2_dir(tftp).join(node), 0))
        .unwrap_or_else(|| "offline".into())
}

/// Make the directories the files go in.
pub fn make_dirs(tftp: &Path) -> io::Result<()> {
    fs::create_dir_all(xnba_dir(tftp))?;
    fs::create_dir_all(grub2_dir(tftp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            hexip_name("10.99.3.4".parse().unwrap()),
            "grub.cfg-0A630304"
        );
        assert_eq!(
            mac_name("aa:bb:cc:dd:ee:0f"),
            "grub.cfg-01-aa-bb-cc-dd-ee-0f"
        );
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("n1");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["n1"]);
    }

    #[test]
    fn a_repeated_grub2_write_keeps_unchanged_files_and_follows_changed_ones() {
        let t = tempfile::tempdir().unwrap();
        make_dirs(t.path()).unwrap();
        let g = |config: &str| Grub2 {
            config: config.into(),
            links: vec![mac_name("aa:bb:cc:dd:ee:0f")],
            binary: None,
        };
        let dir = grub2_dir(t.path());
        let ino = |n: &str| fs::symlink_metadata(dir.join(n)).unwrap().ino();
        write_grub2(t.path(), "n1", &g("#a"), &Grub2Links::scan(t.path())).unwrap();
        let first = ino("n1");
        write_grub2(t.path(), "n1", &g("#a"), &Grub2Links::scan(t.path())).unwrap();
        assert_eq!(ino("n1"), first, "an unchanged file was rewritten");
        assert_eq!(ino("grub.cfg-01-aa-bb-cc-dd-ee-0f"), first);
        write_grub2(t.path(), "n1", &g("#b"), &Grub2Links::scan(t.path())).unwrap();
        assert_ne!(ino("n1"), first);
        assert_eq!(ino("grub.cfg-01-aa-bb-cc-dd-ee-0f"), ino("n1"));
        assert_eq!(
            fs::read(dir.join("grub.cfg-01-aa-bb-cc-dd-ee-0f")).unwrap(),
            b"#b"
        );
    }
}
