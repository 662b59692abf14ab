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
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use plugin_geninitrd::additions::{rootfs_additions, Addition};
use plugin_geninitrd::modules::{is_module_file, load_order, modules_dir, ModuleIndex};
use xcat_image::beneath::Root;
use xcat_image::pack::compress::{self, Compression};
use xcat_image::pack::cpio::{CpioTree, DirMeta, DirMetaFn};
use xcat_image::pack::record::{INITRD_ASSUMED_BYTES, STATELESS_INITRD};
use xcat_image::pack::walk::{self, WalkError};
use xcat_image::pack::{self, Format, PackSpec};
use xcat_jobkit::{KernelCopyError, LocalTool, ToolError};

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

/// Why the boot files could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Kernel(#[from] KernelCopyError),
    #[error("cannot prepare the modules of {kver} for the boot add-on: {source}")]
    Modules {
        kver: String,
        #[source]
        source: ModulesError,
    },
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("compressor: {0}")]
    Compressor(#[source] io::Error),
    #[error("writing the boot add-on: {0}")]
    Write(#[source] io::Error),
    #[error("cannot write {}: {source}", path.display())]
    Ipxe {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cancelled")]
    Cancelled,
}

/// Why the image's modules could not be prepared for the add-on.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("{0}")]
    Walk(#[source] WalkError<io::Error>),
    /// depmod ran and failed: its message carries the end of depmod's stderr.
    #[error("{0}")]
    Depmod(#[source] ToolError),
}

pub use xcat_jobkit::choose_kernel;

/// Bytes of the kernel and initrd a booting node holds in RAM besides the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSizes {
    /// The kernel [`build`] copies (the image's own), else the `<dir>/kernel` in
    /// place; 0 when there is neither.
    pub kernel: u64,
    /// `<dir>/initrd-stateless.gz`; None while it is not built.
    pub initrd: Option<u64>,
}

impl BootSizes {
    /// Kernel and initrd, the initrd counted as [`INITRD_ASSUMED_BYTES`] while absent.
    pub fn total(&self) -> u64 {
        self.kernel
            .saturating_add(self.initrd.unwrap_or(INITRD_ASSUMED_BYTES))
    }
}

#[allow(clippy::unnecessary_cast)]
fn regular_size(st: Option<rustix::fs::Stat>) -> Option<u64> {
    st.filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
        .map(|st| st.st_size as u64)
}

/// The sizes of the kernel and initrd nodes will boot with the image in `dir`,
/// known before [`build`] copies the kernel (the record is written with the archive).
pub fn boot_sizes(dir: &Path, rootimg: &Path, recorded_kernel: Option<&str>) -> BootSizes {
    let local = |name: &str| {
        let st = fs::symlink_metadata(dir.join(name)).ok();
        st.filter(|m| m.is_file()).map(|m| m.len())
    };
    let from_image = Root::open(rootimg).ok().and_then(|root| {
        let kver = choose_kernel(&root, recorded_kernel, &mut Vec::new())?;
        regular_size(root.lstat(format!("boot/vmlinuz-{kver}").as_bytes()).ok()?)
    });
    BootSizes {
        kernel: from_image.or_else(|| local("kernel")).unwrap_or(0),
        initrd: local(STATELESS_INITRD),
    }
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

/// Selects the modules to carry: the network/storage directories, the admin's
/// `netdrivers` by name, and everything they depend on (`modules.dep`), in name
/// order (the add-on is unpacked, not loaded in order).
pub fn select_modules(all: &[String], dep_text: &str, netdrivers: &[String]) -> Vec<String> {
    let index = ModuleIndex::from_paths(all.iter().cloned()).with_modules_dep(dep_text);
    let mut wanted: Vec<String> = all
        .iter()
        .filter(|m| MODULE_PREFIXES.iter().any(|p| m.starts_with(p)))
        .cloned()
        .collect();
    wanted.extend(index.resolve_names(netdrivers.iter().map(String::as_str)));
    let deps = |m: &str| Ok::<_, std::convert::Infallible>(index.listed_deps(m));
    let Ok(mut chosen) = load_order(&wanted, deps);
    chosen.sort();
    chosen
}

/// Directory attributes of the add-on: the image's own where it has the
/// directory (the add-on is unpacked over it and must not change them).
fn image_dir_meta(root: &Root) -> DirMetaFn<'_> {
    Box::new(move |rel: &[u8]| {
        match root.lstat(rel)? {
        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Ok(Some(DirMeta {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: (st.st_mtime as i64).clamp(0, u32::MAX as i64) as u32,
        })),
        Some(_) => Err(io::Error::other(format!(
            "/{} in the image is not a directory (a symbolic link?); cannot lay the boot add-on over it",
            String::from_utf8_lossy(rel)
        ))),
        None => Ok(None),
    }
    })
}

/// A file of the management node (a generated module file) as image path `rel`.
fn copy_in<W: Write>(a: &mut CpioTree<'_, W>, rel: &str, src: &Path) -> io::Result<()> {
    let mut f = File::open(src)?;
    let len = f.metadata()?.len();
    a.file(rel.as_bytes(), 0o644, &mut f, len)
}

/// The modules the add-on carries.
struct Modules {
    /// Where the image has them (`lib/modules/<kver>`), and so the add-on too.
    dir: String,
    /// The copy of the image's module tree, with depmod's output.
    generated: PathBuf,
    /// The chosen modules, relative to `dir`.
    selected: Vec<String>,
}

/// Copies the image's module tree into `tree/lib/modules/<kver>` and runs `depmod -b`
/// there: depmod data for the image's full module set, which stays valid when the
/// add-on is unpacked over the image, and covers the add-on's subset.
fn prepare_modules(
    root: &Root,
    kver: &str,
    tree: &Path,
    netdrivers: &[String],
    cancel: &AtomicBool,
    warnings: &mut Vec<String>,
) -> Result<Option<Modules>, BootError> {
    let Some(dir) = modules_dir(root, kver) else {
        warnings.push(format!(
            "the image has no modules for kernel {kver} (lib/modules/{kver}); the boot add-on carries no drivers"
        ));
        return Ok(None);
    };
    let failed = |source| BootError::Modules {
        kver: kver.to_string(),
        source,
    };
    let generated = tree.join("lib/modules").join(kver);
    let all = copy_module_tree(root, &dir, &generated, cancel).map_err(|e| match e {
        WalkError::Cancelled => BootError::Cancelled,
        WalkError::Visit(e) => failed(ModulesError::Io(e)),
        e => failed(ModulesError::Walk(e)),
    })?;
    let depmod = LocalTool::new("depmod").named("depmod -b");
    depmod
        .arg("-b")
        .arg(tree)
        .arg(kver)
        .run(cancel, || {})
        .map_err(|e| match e {
            ToolError::Cancelled { .. } => BootError::Cancelled,
            // Worded as the system says it, like every other I/O error here.
            ToolError::Spawn { source, .. } => failed(ModulesError::Io(source)),
            e => failed(ModulesError::Depmod(e)),
        })?;
    let dep = fs::read_to_string(generated.join("modules.dep")).unwrap_or_default();
    let selected = select_modules(&all, &dep, netdrivers);
    Ok(Some(Modules {
        dir,
        generated,
        selected,
    }))
}

/// Copies the module files and depmod's inputs of the image's `moddir` to `out`;
/// returns the modules (`kernel/...`). Errors setting up the copy are `Visit` ones.
fn copy_module_tree(
    root: &Root,
    moddir: &str,
    out: &Path,
    cancel: &AtomicBool,
) -> Result<Vec<String>, WalkError<io::Error>> {
    fs::create_dir_all(out).map_err(WalkError::Visit)?;
    let src = root.open_dir(moddir.as_bytes()).map_err(WalkError::Visit)?;
    let mut all = Vec::new();
    walk::walk_fd(src, cancel, |e: &walk::Entry<'_>| -> io::Result<()> {
        let rel = String::from_utf8_lossy(e.path).into_owned();
        if e.path.is_empty() {
            return Ok(());
        }
        let dst = out.join(&rel);
        match e.file_type() {
            libc::S_IFDIR => fs::create_dir_all(&dst),
            libc::S_IFREG
                if (rel.starts_with("kernel/") && is_module_file(&rel))
                    || matches!(
                        rel.as_str(),
                        "modules.order" | "modules.builtin" | "modules.builtin.modinfo"
                    ) =>
            {
                io::copy(&mut e.open()?, &mut File::create(&dst)?)?;
                if rel.starts_with("kernel/") {
                    all.push(rel);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    })?;
    Ok(all)
}

/// Builds `<dir>/kernel`, `<dir>/initrd-netboot.cpio.*` and `<dir>/boot.ipxe` for the
/// image tree `rootimg` packed as `spec`. Setting `cancel` stops it.
pub fn build(
    dir: &Path,
    rootimg: &Path,
    recorded_kernel: Option<&str>,
    netdrivers: &[String],
    spec: &PackSpec,
    cancel: &AtomicBool,
) -> Result<BootFiles, BootError> {
    let mut b = BootFiles::default();
    let root = Root::open(rootimg).map_err(|source| BootError::Open {
        path: rootimg.to_path_buf(),
        source,
    })?;
    let Some(kver) = choose_kernel(&root, recorded_kernel, &mut b.warnings) else {
        b.warnings.push(format!(
            "no kernel (boot/vmlinuz-*) in {}: nodes cannot boot this image until one is installed in it; \
             then run packimage again",
            rootimg.display()
        ));
        return Ok(b);
    };
    let n = xcat_jobkit::copy_kernel(&root, &kver, dir)?;
    b.notes.push(format!(
        "kernel {kver} ({n} bytes) in {}",
        dir.join("kernel").display()
    ));
    b.kernel = Some(kver.clone());
    let image = BootImage {
        root: &root,
        dir,
        kver: &kver,
        cancel,
    };
    let addon = image.addon(netdrivers, spec, &mut b)?;
    image.ipxe(spec, &addon, &mut b)?;
    Ok(b)
}

/// The image and kernel the add-on and iPXE script are made for.
struct BootImage<'a> {
    root: &'a Root,
    dir: &'a Path,
    kver: &'a str,
    cancel: &'a AtomicBool,
}

impl BootImage<'_> {
    /// Writes `<dir>/initrd-netboot.cpio.*` (and removes the one of the other
    /// compression); returns its file name.
    fn addon(
        &self,
        netdrivers: &[String],
        spec: &PackSpec,
        b: &mut BootFiles,
    ) -> Result<String, BootError> {
        // zstd only when the admin asked for it: older initramfs loaders lack it.
        let comp = if spec.compression == Compression::Zstd && spec.format != Format::Squashfs {
            Compression::Zstd
        } else {
            Compression::Gzip
        };
        let name = format!("initrd-netboot.cpio.{}", comp.suffix());
        let tree = pack::temp_path(self.dir, "addon-tree");
        let tmp = pack::temp_path(self.dir, &name);
        let result = (|| -> Result<usize, BootError> {
            let (root, cancel) = (self.root, self.cancel);
            let modules =
                prepare_modules(root, self.kver, &tree, netdrivers, cancel, &mut b.warnings)?;
            self.write_addon(&tmp, comp, modules.as_ref(), b)?;
            pack::install(&tmp, self.dir, &name).map_err(BootError::Write)?;
            Ok(modules.map_or(0, |m| m.selected.len()))
        })();
        let _ = fs::remove_dir_all(&tree);
        let _ = fs::remove_file(&tmp);
        b.modules = result?;
        for other in ["initrd-netboot.cpio.gz", "initrd-netboot.cpio.zst"] {
            if other != name {
                let _ = fs::remove_file(self.dir.join(other));
            }
        }
        b.addon = Some(self.dir.join(&name));
        b.notes.push(format!(
            "boot add-on {} with {} network and storage modules, DHCP on every Ethernet NIC, SSH host keys made at boot",
            self.dir.join(&name).display(),
            b.modules
        ));
        Ok(name)
    }

    fn write_addon(
        &self,
        tmp: &Path,
        comp: Compression,
        modules: Option<&Modules>,
        b: &mut BootFiles,
    ) -> Result<(), BootError> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(|source| BootError::Create {
                path: tmp.to_path_buf(),
                source,
            })?;
        let enc = compress::encoder(comp, None, 0, io::BufWriter::new(file))
            .map_err(BootError::Compressor)?;
        let now = xcat_jobkit::now_unix() as u32;
        let mut a = CpioTree::with_dir_meta(enc, now, image_dir_meta(self.root));
        if let Some(m) = modules {
            add_modules(&mut a, m).map_err(BootError::Write)?;
        }
        add_netboot_units(&mut a, self.root, b).map_err(BootError::Write)?;
        let enc = a.finish().map_err(BootError::Write)?;
        enc.finish().map_err(BootError::Write)?;
        Ok(())
    }

    /// Writes `<dir>/boot.ipxe` for a cpio image (the archive is the initramfs);
    /// other formats need a stateless initrd instead, so any old script goes.
    fn ipxe(&self, spec: &PackSpec, addon: &str, b: &mut BootFiles) -> Result<(), BootError> {
        let ipxe = self.dir.join("boot.ipxe");
        if spec.format != Format::Cpio {
            let _ = fs::remove_file(&ipxe);
            b.notes.push(format!(
                "no boot.ipxe: a {} image is not an initramfs; it needs a stateless initrd that fetches and unpacks it \
                 (pack with -m cpio to boot it directly)",
                spec.format.name()
            ));
            return Ok(());
        }
        if !["sbin/init", "usr/sbin/init"]
            .iter()
            .any(|p| matches!(self.root.lstat(p.as_bytes()), Ok(Some(_))))
        {
            b.warnings.push(
                "the image has no /sbin/init: the kernel will not find anything to start".into(),
            );
        }
        let tmp = pack::temp_path(self.dir, "boot.ipxe");
        fs::write(&tmp, ipxe_script(&spec.file_name(), addon))
            .and_then(|_| pack::install(&tmp, self.dir, "boot.ipxe"))
            .map_err(|source| {
                let _ = fs::remove_file(&tmp);
                BootError::Ipxe {
                    path: ipxe.clone(),
                    source,
                }
            })?;
        b.ipxe = Some(ipxe);
        Ok(())
    }
}

/// The selected modules and depmod's `modules.*` files, where the image keeps them.
fn add_modules<W: Write>(a: &mut CpioTree<'_, W>, m: &Modules) -> io::Result<()> {
    for rel in &m.selected {
        copy_in(a, &format!("{}/{rel}", m.dir), &m.generated.join(rel))?;
    }
    let mut names: Vec<String> = fs::read_dir(&m.generated)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("modules."))
        .collect();
    names.sort();
    for n in names {
        copy_in(a, &format!("{}/{n}", m.dir), &m.generated.join(&n))?;
    }
    Ok(())
}

/// DHCP through systemd-networkd and SSH host keys made at boot (the list the
/// stateless initrd lays over the image too).
fn add_netboot_units<W: Write>(
    a: &mut CpioTree<'_, W>,
    root: &Root,
    b: &mut BootFiles,
) -> io::Result<()> {
    let additions = rootfs_additions(root);
    for e in &additions.entries {
        match e {
            Addition::File { path, mode, text } => {
                a.bytes(path.as_bytes(), *mode, text.as_bytes())?
            }
            Addition::Symlink { path, target } => a.symlink(path.as_bytes(), target.as_bytes())?,
        }
    }
    b.warnings.extend(additions.warnings);
    b.notes.extend(additions.notes);
    Ok(())
}

/// The iPXE script: kernel, then the archive and the add-on as initrds (the names
/// resolve relative to the script's URL).
fn ipxe_script(archive: &str, addon: &str) -> String {
    format!(
        "#!ipxe\n\
         # Boot files of this image, written by packimage. Serve this directory over HTTP and\n\
         # chain this script: the names below resolve relative to its URL.\n\
         kernel kernel initrd={archive} initrd={addon} {}\n\
         initrd {archive}\n\
         initrd {addon}\n\
         boot\n",
        kernel_cmdline()
    )
}

/// The kernel command line of a cpio image booted as initramfs.
pub fn kernel_cmdline() -> &'static str {
    "rdinit=/sbin/init console=tty0 console=ttyS0,115200n8"
}

#[cfg(test)]
mod tests {
    use super::*;

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
