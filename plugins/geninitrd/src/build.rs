//! Building `<dir>/initrd-stateless.gz`: a gzip newc cpio the kernel unpacks as
//! its initramfs.
//!
//! ```text
//! xcat-initrd.info                 what it was built from (first: needs_rebuild reads it)
//! init                             our busybox sh script (init.sh)
//! bin/busybox, bin/<applet> -> busybox, bin/xcat-netinit
//! usr/share/udhcpc/default.script  udhcpc's hook (udhcpc.script)
//! dev/console, dev/null            for init's stdio before devtmpfs is mounted
//! lib/modules/<kver>/...           the chosen modules, decompressed, load.order and
//!                                  their own modules.dep
//! lib/firmware/...                 the firmware they name that the image has
//! rootfs-additions/...             copied over the new root before switch_root
//! ```
//!
//! Everything read from the image goes through [`Root`] (no symlink of the image
//! is followed by the kernel; firmware links are resolved inside the image). The
//! archive is written to a temporary name in `<dir>` and renamed into place, so a
//! node booting meanwhile fetches the old initrd or the new one. Entries carry the
//! kernel's modification time and come in a fixed order: the same inputs give the
//! same bytes.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};
use xcat_image::beneath::{self, Root};
use xcat_image::pack;
use xcat_image::pack::compress::{self, Compression};
use xcat_image::pack::cpio::CpioTree;
use xcat_plugin::boot::InitrdSettings;

use crate::additions::{rootfs_additions, Addition};
use crate::elf::{machine_name, Elf, ModInfo};
use crate::error::{BinaryProblem, GenInitrdError};
use crate::modules::{
    self, load_order, read_decoded, uncompressed_name, Found, ModuleIndex, DEFAULT_MODULES,
    MAX_MODULE,
};

/// The initrd's name in the image directory (what nodeset copies and nodes load).
pub const INITRD_FILE: &str = "initrd-stateless.gz";

/// The build record, the archive's first entry.
pub const RECORD: &str = "xcat-initrd.info";

/// The init script, as it goes into the initrd.
pub const INIT_SCRIPT: &str = include_str!("init.sh");

/// udhcpc's hook, as it goes into the initrd.
pub const UDHCPC_SCRIPT: &str = include_str!("udhcpc.script");

/// Applets linked in `/bin` from the start: the scripts' commands must be found
/// before `/proc` is mounted (busybox sh runs applets through /proc/self/exe, and
/// falls back to the PATH without it). `/init` installs the rest for the rescue shell.
const APPLETS: &[&str] = &[
    "sh",
    "mount",
    "umount",
    "mkdir",
    "insmod",
    "ip",
    "udhcpc",
    "switch_root",
    "setsid",
    "cttyhack",
    "sleep",
    "cat",
    "cp",
    "rm",
    "ls",
    "uname",
    "tail",
    "grep",
    "chroot",
    "test",
];

/// Largest firmware file read from the image.
const MAX_FIRMWARE: u64 = 64 << 20;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitrdSpec {
    /// The image directory: the initrd is written as `<dir>/initrd-stateless.gz`.
    pub dir: PathBuf,
    /// The image's root tree.
    pub rootimg: PathBuf,
    /// The kernel the initrd is for (`boot/vmlinuz-<kver>` of the image).
    pub kver: String,
    /// `linuximage.netdrivers`: more modules by name (`.ko` optional).
    pub netdrivers: Vec<String>,
    /// The static busybox embedded as `/bin/busybox`.
    pub busybox: PathBuf,
    /// The static xcat-netinit embedded as `/bin/xcat-netinit`.
    pub netinit: PathBuf,
}

impl InitrdSpec {
    /// The spec for image `dir` (tree `rootimg`), with the binaries of `settings`.
    pub fn new(
        dir: &Path,
        rootimg: &Path,
        kver: &str,
        netdrivers: &[String],
        settings: &InitrdSettings,
    ) -> InitrdSpec {
        InitrdSpec {
            dir: dir.to_path_buf(),
            rootimg: rootimg.to_path_buf(),
            kver: kver.to_string(),
            netdrivers: netdrivers.to_vec(),
            busybox: settings.busybox.clone(),
            netinit: settings.netinit.clone(),
        }
    }
}

/// What [`build`] wrote and what the admin should know.
#[derive(Debug, Clone, Default)]
pub struct InitrdOutcome {
    pub path: PathBuf,
    pub kver: String,
    /// Modules in `load.order`.
    pub modules: usize,
    pub firmware: usize,
    /// Size of the compressed archive.
    pub bytes: u64,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

/// Builds `<spec.dir>/initrd-stateless.gz`. Setting `cancel` stops it (no file is
/// left). The caller holds the image lock.
pub fn build(spec: &InitrdSpec, cancel: &AtomicBool) -> Result<InitrdOutcome, GenInitrdError> {
    let busybox = Binary::read("busybox", &spec.busybox)?;
    let netinit = Binary::read("netinit", &spec.netinit)?;
    let root = Root::open(&spec.rootimg).map_err(|source| GenInitrdError::Open {
        path: spec.rootimg.clone(),
        source,
    })?;
    let mtime = kernel_mtime(&root, spec)?;
    let mut out = InitrdOutcome {
        path: spec.dir.join(INITRD_FILE),
        kver: spec.kver.clone(),
        ..Default::default()
    };
    let mods = Chosen::read(&root, spec, cancel, &mut out)?;
    if let Some(m) = mods.machine {
        busybox.check_machine(m)?;
        netinit.check_machine(m)?;
    }
    let firmware = firmware(&root, &mods, &mut out)?;
    let additions = rootfs_additions(&root);
    out.warnings.extend(additions.warnings.iter().cloned());
    out.notes.extend(additions.notes.iter().cloned());
    let contents = Contents {
        record: record(spec, &busybox, &netinit, &mods, firmware.len()),
        busybox: &busybox,
        netinit: &netinit,
        mods: &mods,
        firmware: &firmware,
        additions: &additions.entries,
    };
    if cancel.load(Ordering::Relaxed) {
        return Err(GenInitrdError::Cancelled);
    }
    out.bytes = write_archive(&spec.dir, &contents, mtime)?;
    out.modules = mods.order.len();
    out.firmware = firmware.len();
    Ok(out)
}

/// The kernel's modification time, which every entry carries; checks that the
/// image has the kernel at all.
fn kernel_mtime(root: &Root, spec: &InitrdSpec) -> Result<u32, GenInitrdError> {
    let no_kernel = || GenInitrdError::NoKernel {
        kver: spec.kver.clone(),
        rootimg: spec.rootimg.clone(),
    };
    xcat_jobkit::check_kernel_version(&spec.kver).map_err(|_| no_kernel())?;
    let rel = format!("boot/vmlinuz-{}", spec.kver);
    match root.lstat(rel.as_bytes()) {
        Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {
            Ok((st.st_mtime as i64).clamp(0, u32::MAX as i64) as u32)
        }
        _ => Err(no_kernel()),
    }
}

/// A module read from the image, decompressed.
struct Module {
    data: Vec<u8>,
    info: ModInfo,
}

/// The modules chosen for the initrd, in load order.
struct Chosen {
    /// `lib/modules/<kver>` or `usr/lib/modules/<kver>` in the image.
    moddir: String,
    kver: String,
    /// Paths relative to the module directory, as the image has them.
    order: Vec<String>,
    loaded: HashMap<String, Module>,
    /// What each cannot load without (its dependencies, softdeps left out).
    needs: HashMap<String, Vec<String>>,
    /// The modules' ELF machine.
    machine: Option<u16>,
}

impl Chosen {
    fn read(
        root: &Root,
        spec: &InitrdSpec,
        cancel: &AtomicBool,
        out: &mut InitrdOutcome,
    ) -> Result<Chosen, GenInitrdError> {
        let Some(moddir) = modules::modules_dir(root, &spec.kver) else {
            return Err(GenInitrdError::NoModules {
                kver: spec.kver.clone(),
                rootimg: spec.rootimg.clone(),
            });
        };
        let index = ModuleIndex::read(root, &moddir, cancel).map_err(GenInitrdError::from)?;
        if !index.has_table() {
            out.notes.push(format!(
                "the image has no {moddir}/modules.dep (depmod never ran for {}); module dependencies taken from \
                 each module's own .modinfo",
                spec.kver
            ));
        }
        let wanted = wanted(&index, &spec.netdrivers, &spec.kver, &mut out.warnings);
        let mut c = Chosen {
            moddir,
            kver: spec.kver.clone(),
            order: Vec::new(),
            loaded: HashMap::new(),
            needs: HashMap::new(),
            machine: None,
        };
        let order = load_order(&wanted, |path| {
            if cancel.load(Ordering::Relaxed) {
                return Err(GenInitrdError::Cancelled);
            }
            c.deps(root, &index, path)
        })?;
        c.order = order;
        c.machine = c
            .order
            .first()
            .and_then(|p| Elf::parse(&c.loaded[p].data))
            .map(|e| e.machine());
        Ok(c)
    }

    /// What `path` is loaded after: depmod's list (or the module's own
    /// `depends=`), then its `softdep` pre-modules the kernel has.
    fn deps(
        &mut self,
        root: &Root,
        index: &ModuleIndex,
        path: &str,
    ) -> Result<Vec<String>, GenInitrdError> {
        let info = &self.load(root, path)?.info;
        let mut hard = if index.has_table() {
            index.listed_deps(path)
        } else {
            index.resolve_names(info.depends.iter().map(String::as_str))
        };
        hard.retain(|d| d != path);
        // A softdep only orders: its alias may name alternatives (crc32c_generic,
        // crc32c-intel) of which one loading is enough.
        let soft = info.pre.iter().flat_map(|n| index.resolve_soft(n));
        let all = hard
            .iter()
            .cloned()
            .chain(soft.filter(|d| d != path))
            .collect();
        self.needs.insert(path.to_string(), hard);
        Ok(all)
    }

    fn load(&mut self, root: &Root, path: &str) -> Result<&Module, GenInitrdError> {
        if !self.loaded.contains_key(path) {
            let rel = format!("{}/{path}", self.moddir);
            let data =
                read_decoded(root, &rel, MAX_MODULE).map_err(|source| GenInitrdError::Module {
                    path: rel.clone(),
                    source,
                })?;
            let info = ModInfo::of(&data);
            self.loaded.insert(path.to_string(), Module { data, info });
        }
        Ok(&self.loaded[path])
    }
}

/// The module files to carry: the defaults the kernel has, then the admin's
/// `netdrivers` (a warning for each the kernel has neither as a module nor built in).
fn wanted(
    index: &ModuleIndex,
    netdrivers: &[String],
    kver: &str,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut wanted = index.resolve_names(DEFAULT_MODULES.iter().copied());
    for d in netdrivers {
        match index.find(d) {
            Found::Module(p) => wanted.push(p.to_string()),
            Found::Builtin => {}
            Found::Missing => warnings.push(format!(
                "netdriver {d} (linuximage.netdrivers) is neither a module of kernel {kver} in the image nor built \
                 into it; the initrd goes without it (check the name with modinfo in the image)"
            )),
        }
    }
    wanted
}

/// The firmware files the chosen modules name that the image has, by name.
fn firmware(
    root: &Root,
    mods: &Chosen,
    out: &mut InitrdOutcome,
) -> Result<BTreeMap<String, Vec<u8>>, GenInitrdError> {
    let mut found = BTreeMap::new();
    let mut absent = 0;
    for path in &mods.order {
        for name in &mods.loaded[path].info.firmware {
            // The name as the kernel will ask for it, beneath the firmware directory.
            let normal = beneath::normalize(name.as_bytes()).ok();
            let Some(name) = normal.and_then(|n| String::from_utf8(n).ok()) else {
                absent += 1;
                continue;
            };
            if found.contains_key(&name) {
                continue;
            }
            match find_firmware(root, &name)? {
                Some(data) => {
                    found.insert(name, data);
                }
                None => absent += 1,
            }
        }
    }
    if absent > 0 {
        out.notes.push(format!(
            "{absent} firmware file(s) the modules name are not in the image's /lib/firmware (only the hardware \
             that needs them is affected; install the distribution's firmware packages in the image to add them)"
        ));
    }
    Ok(found)
}

/// The firmware `rel` (normalised from `firmware=`) from the image's firmware
/// directories, plain or compressed, its links resolved inside the image; None
/// when the image does not have it.
fn find_firmware(root: &Root, rel: &str) -> Result<Option<Vec<u8>>, GenInitrdError> {
    for dir in ["lib/firmware", "usr/lib/firmware"] {
        for suffix in ["", ".xz", ".zst"] {
            let Ok(real) = root.resolve(format!("{dir}/{rel}{suffix}").as_bytes()) else {
                continue;
            };
            // Decoded by the name of the file itself, where the links led.
            let real = String::from_utf8_lossy(&real).into_owned();
            match read_decoded(root, &real, MAX_FIRMWARE) {
                Ok(data) => return Ok(Some(data)),
                // A directory or a device of that name is no firmware.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => continue,
                Err(source) => return Err(GenInitrdError::Firmware { path: real, source }),
            }
        }
    }
    Ok(None)
}

/// The build record: what the initrd was made from, one `key=value` a line.
fn record(
    spec: &InitrdSpec,
    busybox: &Binary,
    netinit: &Binary,
    mods: &Chosen,
    firmware: usize,
) -> String {
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    format!(
        "# The stateless initrd's own record, written by geninitrd.\n\
         kver={}\nmodules={}\nfirmware={firmware}\nnetdrivers={}\nbusybox_sha256={}\nnetinit_sha256={}\n\
         init_sha256={}\n",
        spec.kver,
        mods.order.len(),
        spec.netdrivers.join(","),
        sha(&busybox.bytes),
        sha(&netinit.bytes),
        sha(INIT_SCRIPT.as_bytes())
    )
}

/// Everything the archive holds.
struct Contents<'a> {
    record: String,
    busybox: &'a Binary,
    netinit: &'a Binary,
    mods: &'a Chosen,
    firmware: &'a BTreeMap<String, Vec<u8>>,
    additions: &'a [Addition],
}

/// Writes the archive under a temporary name in `dir` and renames it into place;
/// returns its size.
fn write_archive(dir: &Path, c: &Contents<'_>, mtime: u32) -> Result<u64, GenInitrdError> {
    let tmp = pack::temp_path(dir, INITRD_FILE);
    let result = (|| -> io::Result<u64> {
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let enc = compress::encoder(Compression::Gzip, Some(9), 0, BufWriter::new(file))?;
        let mut t = CpioTree::new(enc, mtime);
        write_entries(&mut t, c)?;
        t.finish()?.finish()?;
        let bytes = fs::metadata(&tmp)?.len();
        pack::install(&tmp, dir, INITRD_FILE)?;
        Ok(bytes)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        GenInitrdError::Write {
            path: dir.join(INITRD_FILE),
            source,
        }
    })
}

fn write_entries<W: io::Write>(t: &mut CpioTree<'_, W>, c: &Contents<'_>) -> io::Result<()> {
    t.bytes(RECORD.as_bytes(), 0o644, c.record.as_bytes())?;
    t.bytes(b"init", 0o755, INIT_SCRIPT.as_bytes())?;
    t.bytes(b"bin/busybox", 0o755, &c.busybox.bytes)?;
    for a in APPLETS {
        t.symlink(format!("bin/{a}").as_bytes(), b"busybox")?;
    }
    t.bytes(b"bin/xcat-netinit", 0o755, &c.netinit.bytes)?;
    for d in [
        "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "run", "tmp", "newroot",
    ] {
        t.dir(d.as_bytes())?;
    }
    t.bytes(
        b"usr/share/udhcpc/default.script",
        0o755,
        UDHCPC_SCRIPT.as_bytes(),
    )?;
    t.char_device(b"dev/console", 0o600, 5, 1)?;
    t.char_device(b"dev/null", 0o666, 1, 3)?;
    let m = c.mods;
    let mut order = String::new();
    // The initrd's own modules.dep: its modules only, in load order, by their
    // names in the initrd (init skips what needs a module that did not load).
    let mut dep = String::new();
    for path in &m.order {
        let name = uncompressed_name(path);
        dep.push_str(name);
        dep.push(':');
        for d in m.needs.get(path).into_iter().flatten() {
            dep.push(' ');
            dep.push_str(uncompressed_name(d));
        }
        dep.push('\n');
        t.bytes(
            format!("lib/modules/{}/{name}", m.kver).as_bytes(),
            0o644,
            &m.loaded[path].data,
        )?;
        order.push_str(name);
        order.push('\n');
    }
    let moddir = format!("lib/modules/{}", m.kver);
    t.bytes(
        format!("{moddir}/load.order").as_bytes(),
        0o644,
        order.as_bytes(),
    )?;
    t.bytes(
        format!("{moddir}/modules.dep").as_bytes(),
        0o644,
        dep.as_bytes(),
    )?;
    for (name, data) in c.firmware {
        t.bytes(format!("lib/firmware/{name}").as_bytes(), 0o644, data)?;
    }
    t.dir(b"rootfs-additions")?;
    for a in c.additions {
        let rel = format!("rootfs-additions/{}", a.path());
        match a {
            Addition::File { mode, text, .. } => t.bytes(rel.as_bytes(), *mode, text.as_bytes())?,
            Addition::Symlink { target, .. } => t.symlink(rel.as_bytes(), target.as_bytes())?,
        }
    }
    Ok(())
}

/// A server binary the initrd carries, read once: what is checked is what goes in.
pub struct Binary {
    setting: &'static str,
    path: PathBuf,
    bytes: Vec<u8>,
    machine: u16,
}

impl Binary {
    /// Reads the binary of setting `[initrd] <setting>` and checks that it can run
    /// in the initrd: an ELF executable without a program interpreter.
    pub fn read(setting: &'static str, path: &Path) -> Result<Binary, GenInitrdError> {
        let fail = |why| GenInitrdError::Binary {
            setting,
            path: path.to_path_buf(),
            why,
        };
        let bytes = fs::read(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => fail(BinaryProblem::Missing),
            _ => fail(BinaryProblem::Unreadable(e)),
        })?;
        let elf = Elf::parse(&bytes).filter(Elf::is_executable);
        let machine = match elf {
            None => return Err(fail(BinaryProblem::NotElf)),
            Some(e) if e.has_interp() => return Err(fail(BinaryProblem::NotStatic)),
            Some(e) => e.machine(),
        };
        Ok(Binary {
            setting,
            path: path.to_path_buf(),
            bytes,
            machine,
        })
    }

    /// Refuses a binary built for another machine than the image's kernel.
    fn check_machine(&self, kernel: u16) -> Result<(), GenInitrdError> {
        if self.machine == kernel {
            return Ok(());
        }
        Err(GenInitrdError::Binary {
            setting: self.setting,
            path: self.path.clone(),
            why: BinaryProblem::Machine {
                binary: machine_name(self.machine),
                kernel: machine_name(kernel),
            },
        })
    }
}

/// Why `<dir>/initrd-stateless.gz` should be built again for kernel `kver`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    #[error("there is none")]
    Missing,
    #[error("it was not built by geninitrd (no build record)")]
    NoRecord,
    #[error("it was built for kernel {built}")]
    OtherKernel { built: String },
    #[error("it is older than the image's {0}")]
    Older(String),
}

/// Whether the initrd in `dir` is missing or stale for kernel `kver` of the image
/// at `root`: built for another kernel (its build record says which), or older than
/// the kernel (`boot/vmlinuz-<kver>`) or than its module table (`modules.dep`, or
/// the module directory of an image without one). None: it is up to date.
/// Changes of `linuximage.netdrivers` or of the binaries are not seen: run
/// geninitrd after those.
pub fn needs_rebuild(dir: &Path, root: &Root, kver: &str) -> Option<Stale> {
    let path = dir.join(INITRD_FILE);
    let Ok(meta) = fs::metadata(&path) else {
        return Some(Stale::Missing);
    };
    let Some(rec) = read_record(&path) else {
        return Some(Stale::NoRecord);
    };
    let built = rec
        .lines()
        .find_map(|l| l.strip_prefix("kver="))
        .unwrap_or_default();
    if built != kver {
        return Some(Stale::OtherKernel {
            built: built.to_string(),
        });
    }
    let mtime = |rel: &str| {
        root.lstat(rel.as_bytes())
            .ok()
            .flatten()
            .map(|st| (st.st_mtime as i64, st.st_mtime_nsec as i64))
    };
    // A time that cannot be read is no proof of freshness.
    let modified = meta.modified().ok();
    let since = modified.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let Some(ours) = since else {
        return Some(Stale::Older(format!("/boot/vmlinuz-{kver}")));
    };
    let ours = (ours.as_secs() as i64, ours.subsec_nanos() as i64);
    let moddir = modules::modules_dir(root, kver);
    let table = moddir.as_ref().map(|d| format!("{d}/modules.dep"));
    let inputs = [
        Some(format!("boot/vmlinuz-{kver}")),
        table.filter(|t| mtime(t).is_some()).or(moddir),
    ];
    inputs
        .into_iter()
        .flatten()
        .find(|rel| mtime(rel).is_some_and(|t| t > ours))
        .map(|rel| Stale::Older(format!("/{rel}")))
}

/// The build record of the initrd at `path`: its first entry, if it is one.
pub fn read_record(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut r = compress::decoder(Compression::Gzip, file).ok()?;
    let mut head = [0u8; 110];
    r.read_exact(&mut head).ok()?;
    let field = |i: usize| -> Option<usize> {
        let hex = std::str::from_utf8(&head[6 + 8 * i..14 + 8 * i]).ok()?;
        usize::from_str_radix(hex, 16).ok()
    };
    if &head[..6] != b"070701" {
        return None;
    }
    let (size, namesize) = (field(6)?, field(11)?);
    if namesize != RECORD.len() + 1 || size > 4096 {
        return None;
    }
    let mut name = vec![0u8; namesize + (4 - (110 + namesize) % 4) % 4];
    r.read_exact(&mut name).ok()?;
    if &name[..RECORD.len()] != RECORD.as_bytes() {
        return None;
    }
    let mut data = vec![0u8; size];
    r.read_exact(&mut data).ok()?;
    String::from_utf8(data).ok()
}

#[cfg(test)]
mod tests;
