//! Kernel and boot files of a packed image, so `<dir>` can be served over HTTP as is:
//!
//! * `<dir>/kernel`: the image's `boot/vmlinuz-<kver>` (the kernel recorded at
//!   capture, else the newest in the image's `/boot`);
//! * `<dir>/initrd-netboot.cpio.{gz,zst}`: a small initramfs add-on unpacked over the
//!   image: that kernel's network and storage modules from the image's own module tree
//!   with depmod data, a systemd-networkd DHCP configuration for every Ethernet NIC, and
//!   a unit that regenerates SSH host keys (capimage's sysclean removed the node's)
//!   before sshd starts;
//! * `<dir>/boot.ipxe`: an iPXE script booting kernel + archive + add-on.
//!
//! The image is untrusted content: every path in it is resolved beneath its root
//! without following its symlinks ([`xcat_image::beneath::Root`]).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use rustix::fs::{Mode, OFlags};
use xcat_image::beneath::Root;
use xcat_image::pack::compress::{self, Compression};
use xcat_image::pack::cpio::{CpioWriter, Header};
use xcat_image::pack::{self, walk, Format};

/// What [`build`] produced and what the admin should know.
#[derive(Debug, Default)]
pub struct BootFiles {
    /// The kernel version copied to `<dir>/kernel`.
    pub kernel: Option<String>,
    pub addon: Option<PathBuf>,
    pub modules: usize,
    pub ipxe: Option<PathBuf>,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

/// Natural order of kernel versions (`6.1.0-9` < `6.1.0-18`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut v = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                v.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        v
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let o = match (x, y) {
            ((true, p), (true, q)) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                p.len().cmp(&q.len()).then(p.cmp(q))
            }
            ((_, p), (_, q)) => p.cmp(q),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

fn is_regular(root: &Root, rel: &str) -> bool {
    matches!(root.lstat(rel.as_bytes()), Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// Picks the kernel: `recorded` when the image has it, else the newest in `/boot`
/// (with a warning). None when the image has no kernel at all.
pub fn choose_kernel(
    root: &Root,
    recorded: Option<&str>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let mut versions: Vec<String> = root
        .list_dir(b"boot")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| String::from_utf8(n).ok())
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
        .filter(|v| {
            !v.is_empty() && !v.contains('/') && is_regular(root, &format!("boot/vmlinuz-{v}"))
        })
        .collect();
    versions.sort_by(|a, b| version_cmp(a, b));
    if let Some(k) = recorded.filter(|k| versions.iter().any(|v| v == k)) {
        return Some(k.to_string());
    }
    let newest = versions.last()?.clone();
    warnings.push(match recorded {
        Some(k) => format!(
            "the image has no kernel {k} (linuximage.kernelver, the kernel the node ran at capture); \
             using the newest kernel in its /boot: {newest}"
        ),
        None => format!("no kernel version recorded for the image; using the newest kernel in its /boot: {newest}"),
    });
    Some(newest)
}

/// Copies a regular file of the image into `<dir>/<name>` (temporary name, rename).
fn copy_out(root: &Root, rel: &str, dir: &Path, name: &str) -> io::Result<u64> {
    let fd = root.open_beneath(
        rel.as_bytes(),
        OFlags::RDONLY | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let mut src = File::from(fd);
    if !src.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let tmp = pack::temp_path(dir, name);
    let res = (|| {
        let mut dst = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let n = io::copy(&mut src, &mut dst)?;
        dst.flush()?;
        pack::install(&tmp, dir, name)?;
        Ok(n)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Module directories (under `kernel/`) that hold network and storage drivers.
const MODULE_PREFIXES: &[&str] = &[
    "kernel/drivers/net/ethernet/",
    "kernel/drivers/net/virtio_net.",
    "kernel/drivers/net/net_failover.",
    "kernel/drivers/net/vmxnet3/",
    "kernel/drivers/net/hyperv/",
    "kernel/drivers/net/xen-netfront.",
    "kernel/drivers/net/bonding/",
    "kernel/drivers/net/mii.",
    "kernel/drivers/net/mdio",
    "kernel/drivers/net/phy/",
    "kernel/drivers/infiniband/ulp/ipoib/",
    "kernel/drivers/virtio/",
    "kernel/drivers/block/",
    "kernel/drivers/nvme/",
    "kernel/drivers/ata/",
    "kernel/drivers/md/",
    "kernel/drivers/scsi/sd_mod.",
    "kernel/drivers/scsi/sr_mod.",
    "kernel/drivers/scsi/virtio_scsi.",
    "kernel/drivers/scsi/hv_storvsc.",
    "kernel/drivers/scsi/vmw_pvscsi.",
    "kernel/fs/squashfs/",
    "kernel/fs/overlayfs/",
];

fn module_name(rel: &str) -> &str {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    base.split(".ko").next().unwrap_or(base)
}

fn is_module(rel: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|s| rel.ends_with(s))
}

/// Selects the modules to carry: the network/storage directories, the admin's
/// `netdrivers` by name, and everything they depend on (`modules.dep`).
pub fn select_modules(all: &[String], dep_text: &str, netdrivers: &[String]) -> Vec<String> {
    let mut deps: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for line in dep_text.lines() {
        if let Some((m, d)) = line.split_once(':') {
            deps.insert(m.trim(), d.split_whitespace().collect());
        }
    }
    let mut chosen: std::collections::BTreeSet<String> = all
        .iter()
        .filter(|m| {
            MODULE_PREFIXES.iter().any(|p| m.starts_with(p))
                || netdrivers
                    .iter()
                    .any(|n| module_name(m).replace('-', "_") == n.replace('-', "_"))
        })
        .cloned()
        .collect();
    let mut queue: Vec<String> = chosen.iter().cloned().collect();
    while let Some(m) = queue.pop() {
        for d in deps.get(m.as_str()).into_iter().flatten() {
            if all.iter().any(|a| a == d) && chosen.insert(d.to_string()) {
                queue.push(d.to_string());
            }
        }
    }
    chosen.into_iter().collect()
}

const NETWORK_FILE: &str = "\
# Written by packimage: DHCP on every Ethernet interface of a netbooted node.
[Match]
Type=ether

[Network]
DHCP=yes
";

const HOSTKEYS_UNIT: &str = "\
# Written by packimage: a netbooted image has no SSH host keys (they are removed at
# capture so nodes do not share them); generate this boot's keys before sshd starts.
[Unit]
Description=Generate SSH host keys for a netbooted node
Before=ssh.service sshd.service
ConditionPathExists=/usr/bin/ssh-keygen

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target ssh.service
";

/// Writes add-on entries, taking directory attributes from the image when it has the
/// directory (the add-on is unpacked over it and must not change them).
struct Addon<W: Write> {
    w: CpioWriter<W>,
    dirs: std::collections::BTreeSet<String>,
    mtime: u32,
}

impl<W: Write> Addon<W> {
    fn dir(&mut self, root: &Root, rel: &str) -> io::Result<()> {
        if rel.is_empty() || self.dirs.contains(rel) {
            return Ok(());
        }
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.dir(root, parent)?;
        }
        let (mode, uid, gid, mtime) = match root.lstat(rel.as_bytes())? {
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                (st.st_mode, st.st_uid, st.st_gid, st.st_mtime.clamp(0, u32::MAX as _) as u32)
            }
            Some(_) => {
                return Err(io::Error::other(format!(
                    "/{rel} in the image is not a directory (a symbolic link?); cannot lay the boot add-on over it"
                )))
            }
            None => (libc::S_IFDIR | 0o755, 0, 0, self.mtime),
        };
        let ino = self.w.next_ino();
        self.w.header(&Header {
            name: rel.as_bytes(),
            ino,
            mode,
            uid,
            gid,
            nlink: 2,
            mtime,
            size: 0,
            rdev_major: 0,
            rdev_minor: 0,
        })?;
        self.dirs.insert(rel.to_string());
        Ok(())
    }

    fn file(
        &mut self,
        root: &Root,
        rel: &str,
        mode: u32,
        data: &mut dyn Read,
        size: u64,
    ) -> io::Result<()> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.dir(root, parent)?;
        }
        let ino = self.w.next_ino();
        self.w.header(&Header {
            name: rel.as_bytes(),
            ino,
            mode: libc::S_IFREG | mode,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: self.mtime,
            size,
            rdev_major: 0,
            rdev_minor: 0,
        })?;
        if size > 0 {
            self.w.data_from(data)?;
        }
        Ok(())
    }

    fn symlink(&mut self, root: &Root, rel: &str, target: &str) -> io::Result<()> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.dir(root, parent)?;
        }
        let ino = self.w.next_ino();
        self.w.header(&Header {
            name: rel.as_bytes(),
            ino,
            mode: libc::S_IFLNK | 0o777,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: self.mtime,
            size: target.len() as u64,
            rdev_major: 0,
            rdev_minor: 0,
        })?;
        self.w.data(target.as_bytes())
    }
}

/// Where the image keeps its modules for `kver`: `lib/modules/<kver>`, or
/// `usr/lib/modules/<kver>` when `/lib` is a symlink (merged /usr).
fn modules_dir(root: &Root, kver: &str) -> Option<String> {
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| format!("{p}/{kver}"))
        .find(|p| root.open_dir(p.as_bytes()).is_ok())
}

/// Hard-links (or copies) the image's module tree into `tree/lib/modules/<kver>` and
/// runs `depmod -b` there: depmod data for the image's full module set, which stays
/// valid when the add-on is unpacked over the image, and covers the add-on's subset.
fn depmod(
    root: &Root,
    moddir: &str,
    kver: &str,
    tree: &Path,
) -> io::Result<(Vec<String>, PathBuf)> {
    let out = tree.join("lib/modules").join(kver);
    fs::create_dir_all(&out)?;
    let src = root.open_dir(moddir.as_bytes())?;
    let cancel = AtomicBool::new(false);
    let mut all = Vec::new();
    walk::walk_fd(src, &cancel, |e: &walk::Entry<'_>| -> io::Result<()> {
        let rel = String::from_utf8_lossy(e.path).into_owned();
        if e.path.is_empty() {
            return Ok(());
        }
        let dst = out.join(&rel);
        match e.file_type() {
            libc::S_IFDIR => fs::create_dir_all(&dst),
            libc::S_IFREG
                if (rel.starts_with("kernel/") && is_module(&rel))
                    || matches!(
                        rel.as_str(),
                        "modules.order" | "modules.builtin" | "modules.builtin.modinfo"
                    ) =>
            {
                let mut f = e.open()?;
                let mut d = File::create(&dst)?;
                io::copy(&mut f, &mut d)?;
                if rel.starts_with("kernel/") {
                    all.push(rel);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    })
    .map_err(|e| io::Error::other(e.to_string()))?;
    let st = Command::new("depmod")
        .arg("-b")
        .arg(tree)
        .arg(kver)
        .output()?;
    if !st.status.success() {
        return Err(io::Error::other(format!(
            "depmod -b failed: {}",
            String::from_utf8_lossy(&st.stderr).trim()
        )));
    }
    Ok((all, out))
}

/// Builds `<dir>/kernel`, `<dir>/initrd-netboot.cpio.*` and `<dir>/boot.ipxe` for the
/// image tree `rootimg` packed as `spec`.
pub fn build(
    dir: &Path,
    rootimg: &Path,
    recorded_kernel: Option<&str>,
    netdrivers: &[String],
    spec: &pack::PackSpec,
) -> Result<BootFiles, String> {
    let mut b = BootFiles::default();
    let root =
        Root::open(rootimg).map_err(|e| format!("cannot open {}: {e}", rootimg.display()))?;
    let Some(kver) = choose_kernel(&root, recorded_kernel, &mut b.warnings) else {
        b.warnings.push(format!(
            "no kernel (boot/vmlinuz-*) in {}: nodes cannot boot this image until one is installed in it; \
             then run packimage again",
            rootimg.display()
        ));
        return Ok(b);
    };
    let n = copy_out(&root, &format!("boot/vmlinuz-{kver}"), dir, "kernel").map_err(|e| {
        format!(
            "cannot copy the kernel {kver} of the image to {}: {e}",
            dir.join("kernel").display()
        )
    })?;
    b.notes.push(format!(
        "kernel {kver} ({n} bytes) in {}",
        dir.join("kernel").display()
    ));
    b.kernel = Some(kver.clone());

    // The add-on.
    let addon_comp = if spec.compression == Compression::Zstd && spec.format != Format::Squashfs {
        Compression::Zstd
    } else {
        Compression::Gzip
    };
    let addon_name = format!("initrd-netboot.cpio.{}", addon_comp.suffix());
    let tree = pack::temp_path(dir, "addon-tree");
    let tmp = pack::temp_path(dir, &addon_name);
    let result = (|| -> Result<usize, String> {
        let moddir = modules_dir(&root, &kver);
        let mut selected = Vec::new();
        let mut generated: Option<PathBuf> = None;
        match &moddir {
            Some(md) => {
                let (all, out) = depmod(&root, md, &kver, &tree)
                    .map_err(|e| format!("cannot prepare the modules of {kver} for the boot add-on: {e}"))?;
                let dep = fs::read_to_string(out.join("modules.dep")).unwrap_or_default();
                selected = select_modules(&all, &dep, netdrivers);
                generated = Some(out);
            }
            None => b.warnings.push(format!(
                "the image has no modules for kernel {kver} (lib/modules/{kver}); the boot add-on carries no drivers"
            )),
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let enc = compress::encoder(addon_comp, None, 0, io::BufWriter::new(file))
            .map_err(|e| format!("compressor: {e}"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let mut a = Addon {
            w: CpioWriter::new(enc),
            dirs: Default::default(),
            mtime: now,
        };
        let io = |e: io::Error| format!("writing the boot add-on: {e}");
        if let (Some(md), Some(out)) = (&moddir, &generated) {
            for m in &selected {
                let p = out.join(m);
                let mut f = File::open(&p).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                a.file(&root, &format!("{md}/{m}"), 0o644, &mut f, len)
                    .map_err(io)?;
            }
            let mut names: Vec<String> = fs::read_dir(out)
                .map_err(io)?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("modules."))
                .collect();
            names.sort();
            for n in names {
                let mut f = File::open(out.join(&n)).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                a.file(&root, &format!("{md}/{n}"), 0o644, &mut f, len)
                    .map_err(io)?;
            }
        }
        a.file(
            &root,
            "etc/systemd/network/90-xcat-netboot.network",
            0o644,
            &mut NETWORK_FILE.as_bytes(),
            NETWORK_FILE.len() as u64,
        )
        .map_err(io)?;
        a.file(
            &root,
            "etc/systemd/system/xcat-ssh-hostkeys.service",
            0o644,
            &mut HOSTKEYS_UNIT.as_bytes(),
            HOSTKEYS_UNIT.len() as u64,
        )
        .map_err(io)?;
        a.symlink(
            &root,
            "etc/systemd/system/multi-user.target.wants/xcat-ssh-hostkeys.service",
            "/etc/systemd/system/xcat-ssh-hostkeys.service",
        )
        .map_err(io)?;
        let networkd = ["usr/lib/systemd/system", "lib/systemd/system"]
            .iter()
            .find(|d| is_regular(&root, &format!("{d}/systemd-networkd.service")));
        match networkd {
            Some(d) => a
                .symlink(
                    &root,
                    "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
                    &format!("/{d}/systemd-networkd.service"),
                )
                .map_err(io)?,
            None => b.warnings.push(
                "the image has no systemd-networkd: the boot add-on's DHCP configuration will not be used; \
                 configure the node's network in the image"
                    .into(),
            ),
        }
        if !["usr/bin/ssh-keygen", "bin/ssh-keygen"]
            .iter()
            .any(|p| is_regular(&root, p))
        {
            b.notes.push(
                "the image has no ssh-keygen (no SSH server?); no host keys will be generated"
                    .into(),
            );
        }
        let enc = a.w.finish().map_err(io)?;
        enc.finish().map_err(io)?;
        pack::install(&tmp, dir, &addon_name).map_err(io)?;
        Ok(selected.len())
    })();
    let _ = fs::remove_dir_all(&tree);
    let _ = fs::remove_file(&tmp);
    b.modules = result?;
    for other in ["initrd-netboot.cpio.gz", "initrd-netboot.cpio.zst"] {
        if other != addon_name {
            let _ = fs::remove_file(dir.join(other));
        }
    }
    b.addon = Some(dir.join(&addon_name));
    b.notes.push(format!(
        "boot add-on {} with {} network and storage modules, DHCP on every Ethernet NIC, SSH host keys made at boot",
        dir.join(&addon_name).display(),
        b.modules
    ));

    // iPXE script: cpio archives are the initramfs themselves.
    let ipxe = dir.join("boot.ipxe");
    if spec.format == Format::Cpio {
        if !["sbin/init", "usr/sbin/init"]
            .iter()
            .any(|p| matches!(root.lstat(p.as_bytes()), Ok(Some(_))))
        {
            b.warnings.push(
                "the image has no /sbin/init: the kernel will not find anything to start".into(),
            );
        }
        let archive = spec.file_name();
        let text = format!(
            "#!ipxe\n\
             # Boot files of this image, written by packimage. Serve this directory over HTTP and\n\
             # chain this script: the names below resolve relative to its URL.\n\
             kernel kernel initrd={archive} initrd={addon_name} {}\n\
             initrd {archive}\n\
             initrd {addon_name}\n\
             boot\n",
            kernel_cmdline()
        );
        let tmp = pack::temp_path(dir, "boot.ipxe");
        fs::write(&tmp, text)
            .and_then(|_| pack::install(&tmp, dir, "boot.ipxe"))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                format!("cannot write {}: {e}", ipxe.display())
            })?;
        b.ipxe = Some(ipxe);
    } else {
        let _ = fs::remove_file(&ipxe);
        b.notes.push(format!(
            "no boot.ipxe: a {} image is not an initramfs; it needs a stateless initrd that fetches and unpacks it \
             (pack with -m cpio to boot it directly)",
            spec.format.name()
        ));
    }
    Ok(b)
}

/// The kernel command line of a cpio image booted as initramfs.
pub fn kernel_cmdline() -> &'static str {
    "rdinit=/sbin/init console=tty0 console=ttyS0,115200n8"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_naturally() {
        let mut v = vec![
            "6.1.0-18-amd64",
            "6.1.0-9-amd64",
            "5.10.0-28-amd64",
            "6.10.1",
        ];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(
            v,
            [
                "5.10.0-28-amd64",
                "6.1.0-9-amd64",
                "6.1.0-18-amd64",
                "6.10.1"
            ]
        );
    }

    #[test]
    fn module_selection_follows_dependencies() {
        let all: Vec<String> = [
            "kernel/drivers/net/virtio_net.ko",
            "kernel/drivers/net/net_failover.ko",
            "kernel/net/core/failover.ko",
            "kernel/sound/core/snd.ko",
            "kernel/drivers/net/wireless/foo.ko",
            "kernel/drivers/misc/mynic.ko",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let dep = "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
                   kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n";
        let s = select_modules(&all, dep, &["mynic".into()]);
        assert_eq!(
            s,
            [
                "kernel/drivers/misc/mynic.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko",
                "kernel/net/core/failover.ko"
            ]
        );
    }
}
