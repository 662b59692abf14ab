//! The image kernel's modules: which ones a boot needs, found by name, and the
//! order to load them in (each after what it depends on).
//!
//! Dependencies come from the image's own `modules.dep` (depmod's table, paths
//! relative to `lib/modules/<kver>`). An image without one (a kernel tree copied
//! in without running depmod) still has each module's `.modinfo` `depends=`, which
//! the kernel's build writes from the same symbol references; the initrd reads
//! those instead. packimage's boot add-on uses the same index and ordering over
//! the table its own depmod run writes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::sync::atomic::AtomicBool;

use rustix::fs::OFlags;
use xcat_image::beneath::Root;
use xcat_image::pack::compress::{self, Compression};
use xcat_image::pack::walk::{self, WalkError};

use crate::elf::ModInfo;

/// What the stateless initrd loads when the image has it: the NIC drivers of the
/// servers and virtual machines nodes are, the disk drivers (a node may keep
/// scratch space or swap on a local disk), and what the root filesystem needs
/// (squashfs, overlay, loop; NFS for statelite). Missing ones are skipped without a word: no kernel
/// has them all, and a built-in one needs no loading.
pub const DEFAULT_MODULES: &[&str] = &[
    // virtual machines
    "virtio_pci",
    "virtio_net",
    "vmxnet3",
    "hv_netvsc",
    "ena",
    "gve",
    "xen_netfront",
    // Intel
    "e1000",
    "e1000e",
    "igb",
    "igc",
    "ixgbe",
    "ixgbevf",
    "i40e",
    "iavf",
    "ice",
    // Broadcom
    "bnxt_en",
    "tg3",
    "bnx2",
    "bnx2x",
    // NVIDIA Mellanox, Realtek, Emulex, Cavium/Marvell, Solarflare
    "mlx4_en",
    "mlx5_core",
    "r8169",
    "be2net",
    "qede",
    "sfc",
    // udhcpc's raw socket (built into most kernels)
    "af_packet",
    // disks
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    "ahci",
    "nvme",
    // the root filesystem
    "squashfs",
    "overlay",
    "loop",
    // statelite: the NFS root, the persistent state, litetree directories,
    // the local disk of localdisk entries
    "nfsv4",
    "nfsv3",
    "ext4",
    "xfs",
];

/// The kernel's name of a module: the file name without `.ko` and its compression
/// suffix, with `-` as `_` (the kernel treats them alike). `e1000e.ko.xz`,
/// `kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko` and `e1000e` are `e1000e`.
pub fn module_name(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// Module file suffixes, the compressed ones with their compression.
const MODULE_SUFFIXES: &[&str] = &[".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// Whether `rel` names a module file (plain or compressed).
pub fn is_module_file(rel: &str) -> bool {
    MODULE_SUFFIXES.iter().any(|s| rel.ends_with(s))
}

/// Whether `rel` (image content) is a relative path of plain names that the
/// initrd's files and its shell can carry as is: no `.`, `..` or empty component,
/// only letters, digits and `._+,-`. Kernel module paths are; anything else is left
/// out of the index.
pub fn is_plain_path(rel: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._+,-".contains(c);
    !rel.is_empty()
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.chars().all(plain))
}

/// `rel` with a compression suffix removed (`x.ko.xz` -> `x.ko`).
pub fn uncompressed_name(rel: &str) -> &str {
    [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|s| rel.strip_suffix(s).filter(|r| r.ends_with(".ko")))
        .unwrap_or(rel)
}

/// Where the image keeps its modules for `kver`: `lib/modules/<kver>`, or
/// `usr/lib/modules/<kver>` when `/lib` is a symlink (merged /usr).
pub fn modules_dir(root: &Root, kver: &str) -> Option<String> {
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| format!("{p}/{kver}"))
        .find(|p| root.open_dir(p.as_bytes()).is_ok())
}

/// What looking a module up by name found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// A module file, relative to the module directory.
    Module(&'a str),
    /// Part of the kernel itself (`modules.builtin`): nothing to load.
    Builtin,
    Missing,
}

/// The modules of one kernel: their files by name, depmod's dependency table
/// when there is one, and the built-in ones.
#[derive(Debug, Default, Clone)]
pub struct ModuleIndex {
    by_name: BTreeMap<String, String>,
    /// Each module's dependencies (all of them, as depmod lists them).
    table: Option<HashMap<String, Vec<String>>>,
    builtin: HashSet<String>,
    /// Modules by the plain names they answer to besides their own (`crc32c`).
    aliases: HashMap<String, Vec<String>>,
}

impl ModuleIndex {
    /// The module files `paths` (relative to the module directory), without a
    /// dependency table.
    pub fn from_paths(paths: impl IntoIterator<Item = String>) -> ModuleIndex {
        let mut index = ModuleIndex::default();
        for p in paths {
            index.add(p);
        }
        index
    }

    fn add(&mut self, path: String) {
        if !is_plain_path(&path) {
            return;
        }
        // Two files of one name (an updates/ override): depmod's search order is
        // not ours to guess, so the first listed stays, as modules.dep lists it.
        self.by_name.entry(module_name(&path)).or_insert(path);
    }

    /// Adds depmod's table `text` (`kernel/a.ko: kernel/b.ko kernel/c.ko` lines);
    /// its modules join the index.
    pub fn with_modules_dep(mut self, text: &str) -> ModuleIndex {
        let mut table = HashMap::new();
        for line in text.lines() {
            let Some((m, deps)) = line.split_once(':') else {
                continue;
            };
            let m = m.trim();
            if !is_module_file(m) {
                continue;
            }
            self.add(m.to_string());
            table.insert(
                m.to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            );
        }
        self.table = Some(table);
        self
    }

    /// Adds `modules.builtin` (one path per line).
    pub fn with_builtin(mut self, text: &str) -> ModuleIndex {
        self.builtin
            .extend(text.lines().filter(|l| !l.is_empty()).map(module_name));
        self
    }

    /// Adds `modules.alias` (`alias crc32c crc32c_generic` lines); device
    /// patterns are left out, only plain names are looked up.
    pub fn with_modules_alias(mut self, text: &str) -> ModuleIndex {
        for line in text.lines() {
            let mut w = line.split_whitespace();
            if let (Some("alias"), Some(alias), Some(module)) = (w.next(), w.next(), w.next()) {
                if !alias.contains([':', '*']) {
                    self.add_alias(alias, module);
                }
            }
        }
        self
    }

    /// Records that `module` answers to `alias`.
    pub fn add_alias(&mut self, alias: &str, module: &str) {
        let names = self.aliases.entry(alias.to_string()).or_default();
        let module = module_name(module);
        if !names.contains(&module) {
            names.push(module);
        }
    }

    /// The module files `name` stands for: the module of that name, else every
    /// module with that alias (a softdep's `crc32c` is crc32c_generic and
    /// crc32c-intel, as modprobe would load them).
    pub fn resolve_soft(&self, name: &str) -> Vec<String> {
        if let Found::Module(p) = self.find(name) {
            return vec![p.to_string()];
        }
        let names = self.aliases.get(name).into_iter().flatten();
        self.resolve_names(names.map(String::as_str))
    }

    /// The module called `name` (`e1000e`, `e1000e.ko`, `e1000-e`).
    pub fn find(&self, name: &str) -> Found<'_> {
        let name = module_name(name);
        match self.by_name.get(&name) {
            Some(p) => Found::Module(p),
            None if self.builtin.contains(&name) => Found::Builtin,
            None => Found::Missing,
        }
    }

    /// Every module file, in name order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.by_name.values().map(String::as_str)
    }

    /// Whether dependencies come from depmod's table.
    pub fn has_table(&self) -> bool {
        self.table.is_some()
    }

    /// The table's dependencies of `path` that are modules of this index.
    pub fn listed_deps(&self, path: &str) -> Vec<String> {
        let known: HashSet<&str> = self.by_name.values().map(String::as_str).collect();
        self.table
            .as_ref()
            .and_then(|t| t.get(path))
            .into_iter()
            .flatten()
            .filter(|d| known.contains(d.as_str()))
            .cloned()
            .collect()
    }

    /// Module files for `names`, the missing and built-in ones left out.
    pub fn resolve_names<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        names
            .into_iter()
            .filter_map(|n| match self.find(n) {
                Found::Module(p) => Some(p.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Reads the index of the module directory `moddir` of the image: its
    /// `modules.dep`, `modules.alias` and `modules.builtin`, or without a
    /// `modules.dep` the names of its module files (then dependencies come from
    /// each module's `.modinfo`), and without a `modules.alias` the aliases of its
    /// library and crypto modules (what softdeps name) from theirs.
    pub fn read(root: &Root, moddir: &str, cancel: &AtomicBool) -> Result<ModuleIndex, IndexError> {
        let file = |name: &str| -> Result<Option<String>, IndexError> {
            let rel = format!("{moddir}/{name}");
            match root.read_file(rel.as_bytes(), MAX_TABLE) {
                Ok(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
                Err(source) => Err(IndexError::Read { path: rel, source }),
            }
        };
        let builtin = file("modules.builtin")?.unwrap_or_default();
        let index = match file("modules.dep")? {
            Some(dep) => ModuleIndex::default().with_modules_dep(&dep),
            None => ModuleIndex::from_paths(module_files(root, moddir, cancel)?),
        };
        let mut index = index.with_builtin(&builtin);
        match file("modules.alias")? {
            Some(aliases) => index = index.with_modules_alias(&aliases),
            None => index.read_library_aliases(root, moddir),
        }
        Ok(index)
    }

    /// The aliases of the modules under `crypto/` and `kernel/lib/` from their
    /// `.modinfo`.
    fn read_library_aliases(&mut self, root: &Root, moddir: &str) {
        let library: Vec<String> = self
            .paths()
            .filter(|p| p.contains("/crypto/") || p.starts_with("kernel/lib/"))
            .map(str::to_string)
            .collect();
        for p in library {
            let rel = format!("{moddir}/{p}");
            // Only a softdep could need it: one that cannot be read is left out.
            let Ok(data) = read_decoded(root, &rel, MAX_MODULE) else {
                continue;
            };
            for a in ModInfo::of(&data).aliases {
                self.add_alias(&a, &p);
            }
        }
    }
}

/// Largest module read from the image (the biggest distribution modules are
/// around 40 MiB unpacked).
pub const MAX_MODULE: u64 = 256 << 20;

/// Reads the regular file `rel` of the image (no symlink) and decodes it by its
/// suffix (`.xz`, `.zst`, `.gz`); at most `max` bytes either way.
pub fn read_decoded(root: &Root, rel: &str, max: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::File::from(root.open_regular(rel.as_bytes(), OFlags::RDONLY)?);
    let kind = Compression::of_name(rel.as_bytes());
    let mut dec = compress::decoder(kind, io::Read::take(file, max + 1))?;
    let mut data = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(&mut dec, max + 1), &mut data)?;
    if data.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(data)
}

/// Largest `modules.dep`/`modules.builtin` read (a distribution kernel's is
/// under 1 MiB).
const MAX_TABLE: u64 = 64 << 20;

/// Why a module index could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read {path} in the image: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot list the modules in {moddir} of the image: {source}")]
    Walk {
        moddir: String,
        #[source]
        source: WalkError<io::Error>,
    },
    #[error("cancelled")]
    Cancelled,
}

/// The module files under `moddir`, relative to it.
fn module_files(root: &Root, moddir: &str, cancel: &AtomicBool) -> Result<Vec<String>, IndexError> {
    let failed = |source| IndexError::Walk {
        moddir: moddir.to_string(),
        source,
    };
    let fd = root
        .open_beneath(
            moddir.as_bytes(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| failed(WalkError::Visit(e)))?;
    let mut all = Vec::new();
    let visit = |e: &walk::Entry<'_>| -> io::Result<()> {
        let rel = String::from_utf8_lossy(e.path);
        if e.file_type() == libc::S_IFREG && is_module_file(&rel) {
            all.push(rel.into_owned());
        }
        Ok(())
    };
    match walk::walk_fd(fd, cancel, visit) {
        Ok(()) => Ok(all),
        Err(WalkError::Cancelled) => Err(IndexError::Cancelled),
        Err(e) => Err(failed(e)),
    }
}

/// `wanted` and everything they depend on, each after its dependencies, each
/// once. `deps` gives a module's dependencies (a cycle, which depmod refuses to
/// write, is cut where it closes). The order is the wanted modules' own, then
/// their dependencies' listed order: the same inputs give the same order.
pub fn load_order<E>(
    wanted: &[String],
    mut deps: impl FnMut(&str) -> Result<Vec<String>, E>,
) -> Result<Vec<String>, E> {
    let mut order = Vec::new();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut on_path: HashSet<String> = HashSet::new();
    // Iterative depth-first walk: (module, its dependencies not yet visited).
    for w in wanted {
        if placed.contains(w) {
            continue;
        }
        let mut stack: Vec<(String, std::vec::IntoIter<String>)> = Vec::new();
        on_path.insert(w.clone());
        stack.push((w.clone(), deps(w)?.into_iter()));
        while let Some((m, rest)) = stack.last_mut() {
            match rest.next() {
                Some(d) if placed.contains(&d) || on_path.contains(&d) => {}
                Some(d) => {
                    let next = deps(&d)?.into_iter();
                    on_path.insert(d.clone());
                    stack.push((d, next));
                }
                None => {
                    let m = m.clone();
                    stack.pop();
                    on_path.remove(&m);
                    placed.insert(m.clone());
                    order.push(m);
                }
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz: kernel/drivers/ptp/ptp.ko.xz kernel/drivers/pps/pps_core.ko.xz
kernel/drivers/ptp/ptp.ko.xz: kernel/drivers/pps/pps_core.ko.xz
kernel/drivers/pps/pps_core.ko.xz:
kernel/drivers/net/my-nic.ko:
";

    fn index() -> ModuleIndex {
        ModuleIndex::default()
            .with_modules_dep(DEP)
            .with_builtin("kernel/drivers/virtio/virtio_pci.ko\nkernel/fs/overlayfs/overlay.ko\n")
    }

    fn order(index: &ModuleIndex, names: &[&str]) -> Vec<String> {
        let wanted = index.resolve_names(names.iter().copied());
        load_order(&wanted, |p| Ok::<_, Infallible>(index.listed_deps(p))).unwrap()
    }

    #[test]
    fn names_are_found_as_the_kernel_names_them() {
        let i = index();
        for n in [
            "my_nic",
            "my-nic",
            "my_nic.ko",
            "kernel/drivers/net/my-nic.ko",
        ] {
            assert_eq!(
                i.find(n),
                Found::Module("kernel/drivers/net/my-nic.ko"),
                "{n}"
            );
        }
        assert_eq!(
            i.find("e1000e.ko.xz"),
            Found::Module("kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz")
        );
        assert_eq!(i.find("virtio-pci"), Found::Builtin);
        assert_eq!(i.find("bnx2x"), Found::Missing);
        assert_eq!(
            uncompressed_name("kernel/a/e1000e.ko.xz"),
            "kernel/a/e1000e.ko"
        );
        assert_eq!(uncompressed_name("kernel/a/x.ko"), "kernel/a/x.ko");
        assert_eq!(uncompressed_name("fw/x.bin.xz"), "fw/x.bin.xz");
    }

    #[test]
    fn only_plain_module_paths_are_indexed() {
        let dep =
            "kernel/a.ko:\n/lib/modules/6.1/kernel/b.ko:\nkernel/../../etc/c.ko:\nkernel//d.ko:\n\
                   kernel/e\u{1b}x.ko:\nkernel/drivers/net/x-y_z+1,2.ko:\n";
        let i = ModuleIndex::default().with_modules_dep(dep);
        assert_eq!(
            i.paths().collect::<Vec<_>>(),
            ["kernel/a.ko", "kernel/drivers/net/x-y_z+1,2.ko"]
        );
        let i =
            ModuleIndex::from_paths(["kernel/a b.ko".to_string(), "kernel/a\nb.ko".to_string()]);
        assert_eq!(i.paths().count(), 0);
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let i = index();
        let o = order(
            &i,
            &["virtio_pci", "e1000e", "virtio_net", "missing", "failover"],
        );
        assert_eq!(
            o,
            [
                "kernel/drivers/pps/pps_core.ko.xz",
                "kernel/drivers/ptp/ptp.ko.xz",
                "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko.xz",
                "kernel/net/core/failover.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko",
            ]
        );
        // Whatever the order asked for, nothing comes before what it needs.
        let pos = |m: &str| o.iter().position(|x| x == m).unwrap();
        for line in DEP.lines() {
            let (m, deps) = line.split_once(':').unwrap();
            if let Some(at) = o.iter().position(|x| x == m) {
                for d in deps.split_whitespace() {
                    assert!(pos(d) < at, "{d} after {m}");
                }
            }
        }
    }

    #[test]
    fn a_dependency_cycle_does_not_hang() {
        let deps = |m: &str| -> Result<Vec<String>, Infallible> {
            Ok(match m {
                "a" => vec!["b".into()],
                "b" => vec!["c".into()],
                "c" => vec!["a".into()],
                _ => vec![],
            })
        };
        let o = load_order(&["a".to_string(), "c".to_string()], deps).unwrap();
        assert_eq!(o, ["c", "b", "a"]);
    }

    #[test]
    fn an_index_without_a_table_knows_the_files() {
        let i = ModuleIndex::from_paths(["kernel/fs/squashfs/squashfs.ko.zst".to_string()]);
        assert!(!i.has_table());
        assert_eq!(
            i.find("squashfs"),
            Found::Module("kernel/fs/squashfs/squashfs.ko.zst")
        );
        assert!(i
            .listed_deps("kernel/fs/squashfs/squashfs.ko.zst")
            .is_empty());
        assert!(
            DEFAULT_MODULES.iter().all(|m| module_name(m) == *m),
            "kernel names"
        );
    }
}
