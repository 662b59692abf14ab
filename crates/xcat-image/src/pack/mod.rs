//! Packing an image tree into the archive nodes boot (`packimage`).
//!
//! * [`cpio`]: streaming cpio newc writer (the initramfs format);
//! * [`tarwrite`]: streaming pax tar writer with extended attributes;
//! * [`compress`]: gzip, zstd and xz on all cores;
//! * [`walk`]: the symlink-safe, one-filesystem tree walk they share;
//! * `tree`: [`write_cpio`] and [`write_tar`], a tree through those writers;
//! * `squashfs`: mksquashfs, through the one tool runner;
//! * [`sparse`]: where the data of a file with holes lies;
//! * [`record`]: the packed-image record `<packed file>.info` and the RAM rule;
//! * this module: the formats, what each one loses ([`Survey`], [`Loss`],
//!   [`expected_after`]), and [`pack`], which writes a [`Tree`] to `<dir>/<name>`
//!   (packimage's `rootimg.<ext>`, liteimg's [`STATELITE_ARCHIVE`]) under a
//!   temporary name, renames it into place, then its record `<dir>/<name>.info`
//!   the same way, and only then, for packimage's names, removes stale archives of
//!   the other names with their records, so a node booting during a pack reads
//!   either the previous complete archive or the new complete one, and an older
//!   format never shadows a newer pack.

pub mod compress;
pub mod cpio;
pub mod record;
pub mod sparse;
mod squashfs;
pub mod tarwrite;
mod tree;
pub mod walk;

pub use tree::{write_cpio, write_tar, TreeStats};

/// Copy exactly `size` bytes of an entry's data from `r` to `put`: a source
/// that ends early (the file shrank while packing) is padded with zeros and
/// one that grew is cut, so the archive's declared sizes always hold.
/// Returns the bytes actually read from `r`.
pub(crate) fn copy_exact(
    r: &mut dyn std::io::Read,
    size: u64,
    mut put: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    static ZEROS: [u8; 65536] = [0; 65536];
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    while done < size {
        let want = ((size - done) as usize).min(buf.len());
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        put(&buf[..n])?;
        done += n as u64;
    }
    let read = done;
    while done < size {
        let k = ((size - done) as usize).min(ZEROS.len());
        put(&ZEROS[..k])?;
        done += k as u64;
    }
    Ok(read)
}

use crate::manifest::{EntryType, Manifest};
use crate::util::display_path;
use compress::Compression;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use walk::{Entry, WalkError};

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    Cpio,
    Tar,
    Squashfs,
}

impl Format {
    /// Parses packimage's `-m` value.
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "cpio" => Format::Cpio,
            "tar" => Format::Tar,
            "squashfs" | "sfs" => Format::Squashfs,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Cpio => "cpio",
            Format::Tar => "tar",
            Format::Squashfs => "squashfs",
        }
    }
}

/// What to pack and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackSpec {
    pub format: Format,
    /// Ignored for squashfs (always zstd inside the filesystem).
    pub compression: Compression,
    /// None = the compressor's default level.
    pub level: Option<i32>,
    /// Worker threads; 0 = all cores.
    pub threads: usize,
}

impl PackSpec {
    /// The archive's file name in the image directory (xCAT's names, plus zstd).
    pub fn file_name(&self) -> String {
        match (self.format, self.compression) {
            (Format::Squashfs, _) => "rootimg.sfs".into(),
            (f, Compression::None) => format!("rootimg.{}", f.name()),
            (f, c) => format!("rootimg.{}.{}", f.name(), c.suffix()),
        }
    }
}

/// Every archive name a pack may leave in an image directory (ours and xCAT's). A
/// successful pack removes the ones it did not write. Generations (`rootimg.gen-N/`)
/// and the tree itself are never among them.
pub const ARCHIVE_NAMES: &[&str] = &[
    "rootimg.cpio",
    "rootimg.cpio.gz",
    "rootimg.cpio.xz",
    "rootimg.cpio.zst",
    "rootimg.tar",
    "rootimg.tar.gz",
    "rootimg.tar.xz",
    "rootimg.tar.zst",
    "rootimg.tar.bz2",
    "rootimg.sfs",
    "rootimg.gz",
];

/// liteimg's archive of a statelite tree for `rootfstype=ramdisk`, link farm
/// included (gzip cpio newc, xCAT's name). Not one of [`ARCHIVE_NAMES`]: it
/// stands beside packimage's archive, which never replaces it.
pub const STATELITE_ARCHIVE: &str = "rootimg-statelite.gz";

/// The tree a pack reads: everything beneath `root` but `exclude`.
#[derive(Debug, Clone, Copy)]
pub struct Tree<'a> {
    pub root: &'a Path,
    /// Root-relative paths (`.statelite`, `etc/init.d/statelite`), each left
    /// out with everything beneath it.
    pub exclude: &'a [&'a str],
}

impl<'a> Tree<'a> {
    /// All of `root`.
    pub fn whole(root: &'a Path) -> Tree<'a> {
        Tree { root, exclude: &[] }
    }
}

/// Prefix of temporary archives (dot-file: never matched by [`ARCHIVE_NAMES`]).
pub const TEMP_PREFIX: &str = ".rootimg.pack-";

/// Live counters a caller can read for progress lines while a pack runs.
#[derive(Debug, Default)]
pub struct PackProgress {
    /// Entries written.
    pub entries: AtomicU64,
    /// File content bytes read from the tree.
    pub bytes_in: AtomicU64,
    /// Compressed bytes written.
    pub bytes_out: Arc<AtomicU64>,
}

/// A count and a few example paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Tally {
    const EXAMPLES: usize = 5;
    fn add(&mut self, path: &[u8]) {
        self.count += 1;
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push(display_path(path));
        }
    }
}

/// What a quick walk of the tree found: size for progress, and the things some
/// formats cannot carry.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    pub entries: u64,
    /// Content bytes of regular files (each hard-link group once).
    pub bytes: u64,
    /// What the unpacked tree occupies in a tmpfs: each regular file's data in
    /// 4 KiB pages, holes not counted (each hard-link group once), plus 4 KiB for
    /// every other inode.
    pub tree_bytes: u64,
    /// Entries with extended attributes other than capabilities and ACLs.
    pub xattrs: Tally,
    /// Entries with a file capability (`security.capability`).
    pub capabilities: Tally,
    /// Entries with a POSIX ACL (`system.posix_acl_*`).
    pub acls: Tally,
    pub sockets: Tally,
    /// Regular files of 4 GiB or more.
    pub huge_files: Tally,
    /// mtimes before 1970 or after 2106 (32-bit unsigned seconds).
    pub mtimes_out_of_range: Tally,
}

/// Something a format drops from the tree, for a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub what: &'static str,
    pub tally: Tally,
    /// Formats that keep it.
    pub kept_by: &'static str,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} entr{} (e.g. {}){}; {} keep{} them",
            self.what,
            self.tally.count,
            if self.tally.count == 1 { "y" } else { "ies" },
            self.tally.examples.join(", "),
            if self.tally.count > self.tally.examples.len() as u64 {
                ", ..."
            } else {
                ""
            },
            self.kept_by,
            if self.kept_by.contains(" and ") {
                ""
            } else {
                "s"
            },
        )
    }
}

impl Survey {
    /// What packing this tree in `format` drops, one entry per kind of loss.
    pub fn losses(&self, format: Format) -> Vec<Loss> {
        let mut v = Vec::new();
        let mut add = |what, tally: &Tally, kept_by| {
            if tally.count > 0 {
                v.push(Loss {
                    what,
                    tally: tally.clone(),
                    kept_by,
                });
            }
        };
        match format {
            Format::Cpio => {
                add(
                    "cpio drops the file capabilities",
                    &self.capabilities,
                    "tar and squashfs",
                );
                add(
                    "cpio drops the extended attributes",
                    &self.xattrs,
                    "tar and squashfs",
                );
                add("cpio drops the POSIX ACLs", &self.acls, "tar");
                add(
                    "cpio cannot store mtimes before 1970 or after 2106 (clamped)",
                    &self.mtimes_out_of_range,
                    "tar",
                );
            }
            Format::Tar => add(
                "tar cannot store sockets",
                &self.sockets,
                "cpio and squashfs",
            ),
            Format::Squashfs => {
                add("squashfs drops the POSIX ACLs", &self.acls, "tar");
                add(
                    "squashfs cannot store mtimes before 1970 or after 2106 (clamped)",
                    &self.mtimes_out_of_range,
                    "tar",
                );
            }
        }
        v
    }
}

/// Errors of packing.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("cpio newc cannot hold files of 4 GiB or more: {}{}; pack as tar or squashfs (packimage -m tar or -m squashfs)", .0.examples.join(", "), if .0.count > .0.examples.len() as u64 { format!(" and {} more", .0.count - .0.examples.len() as u64) } else { String::new() })]
    TooLarge(Tally),
    #[error("mksquashfs failed: {0}")]
    Mksquashfs(String),
    #[error("cancelled")]
    Cancelled,
}

fn io_err(what: &'static str, path: impl Into<String>) -> impl FnOnce(io::Error) -> PackError {
    let path = path.into();
    move |source| PackError::Io { what, path, source }
}

fn from_walk(e: WalkError<PackError>) -> PackError {
    match e {
        WalkError::Io { path, source } => PackError::Io {
            what: "reading",
            path,
            source,
        },
        WalkError::Visit(e) => e,
        WalkError::Cancelled => PackError::Cancelled,
    }
}

const CAP: &[u8] = b"security.capability";
fn is_acl(k: &[u8]) -> bool {
    k.starts_with(b"system.posix_acl_")
}

/// The pages a regular file's data takes in a tmpfs. Only a file with fewer blocks
/// than bytes is opened, to ask where its holes are; if that fails, its allocated
/// blocks stand in.
#[allow(clippy::unnecessary_cast)]
fn tmpfs_bytes(e: &Entry<'_>) -> u64 {
    let size = e.stat.st_size as u64;
    let pages = |n: u64| n.div_ceil(sparse::PAGE) * sparse::PAGE;
    if !sparse::may_have_holes(e.stat) {
        return pages(size);
    }
    e.open()
        .and_then(|f| sparse::data_map(&f, size))
        .map(|m| sparse::page_bytes(&m))
        .unwrap_or_else(|_| pages((e.stat.st_blocks as u64 * 512).min(size)))
}

/// Walks the tree once (stat and xattr names only, no content but the hole map of
/// files with fewer blocks than bytes) for the total size, the tmpfs estimate and
/// the losses of each format.
pub fn survey(tree: Tree<'_>, cancel: &AtomicBool) -> Result<Survey, PackError> {
    let mut s = Survey::default();
    let mut seen: std::collections::HashSet<(u64, u64)> = Default::default();
    let visit = |e: &Entry<'_>| -> Result<(), PackError> {
        s.entries += 1;
        let t = e.file_type();
        #[allow(clippy::unnecessary_cast)]
        if t == libc::S_IFREG {
            let size = e.stat.st_size as u64;
            if e.stat.st_nlink as u64 <= 1
                || seen.insert((e.stat.st_dev as u64, e.stat.st_ino as u64))
            {
                s.bytes += size;
                s.tree_bytes += tmpfs_bytes(e);
            }
            if size > cpio::MAX_SIZE {
                s.huge_files.add(e.path);
            }
        } else {
            s.tree_bytes += sparse::PAGE;
        }
        if t == libc::S_IFSOCK {
            s.sockets.add(e.path);
        }
        let (sec, _) = e.mtime();
        if sec < 0 || sec > u32::MAX as i64 {
            s.mtimes_out_of_range.add(e.path);
        }
        let x = e
            .xattrs()
            .map_err(io_err("reading attributes of", display_path(e.path)))?;
        if x.contains_key(CAP) {
            s.capabilities.add(e.path);
        }
        if x.keys().any(|k| is_acl(k)) {
            s.acls.add(e.path);
        }
        if x.keys().any(|k| k != CAP && !is_acl(k)) {
            s.xattrs.add(e.path);
        }
        Ok(())
    };
    walk::walk_except(tree.root, tree.exclude, cancel, visit).map_err(from_walk)?;
    Ok(s)
}

/// The manifest an unpacked archive of `format` is expected to have, given the tree's
/// manifest: the documented losses applied. cpio: no extended attributes (so no
/// capabilities or ACLs), whole-second mtimes clamped to 32 bits. tar: no sockets.
/// squashfs: no `system.*` attributes (ACLs), whole-second mtimes clamped to 32 bits.
pub fn expected_after(format: Format, m: &Manifest) -> Manifest {
    let mut out = Manifest::default();
    for e in m.entries.values() {
        let mut e = e.clone();
        match format {
            Format::Cpio => {
                e.xattrs = Default::default();
                e.mtime_nsec = 0;
                e.mtime_sec = e.mtime_sec.clamp(0, u32::MAX as i64);
            }
            Format::Tar => {
                if e.kind == EntryType::Socket {
                    continue;
                }
            }
            Format::Squashfs => {
                std::sync::Arc::make_mut(&mut e.xattrs).retain(|k, _| !k.starts_with(b"system."));
                e.mtime_nsec = 0;
                e.mtime_sec = e.mtime_sec.clamp(0, u32::MAX as i64);
            }
        }
        out.insert(e);
    }
    out
}

/// Counts bytes written through it.
pub struct Counting<W: Write> {
    inner: W,
    counter: Arc<AtomicU64>,
}

impl<W: Write> Counting<W> {
    pub fn new(inner: W, counter: Arc<AtomicU64>) -> Self {
        Counting { inner, counter }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What the record of a pack needs besides the archive itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordInputs {
    /// The survey's [`Survey::tree_bytes`].
    pub tree_bytes: u64,
    /// Bytes of the kernel and initrd a booting node also holds in RAM.
    pub kernel_and_initrd_bytes: u64,
}

/// What [`pack`] did.
#[derive(Debug, Clone)]
pub struct PackOutcome {
    pub path: PathBuf,
    pub bytes: u64,
    pub stats: TreeStats,
    /// The record written beside the archive, and its path.
    pub record: record::PackRecord,
    pub record_path: PathBuf,
    /// Stale archives of other names removed after the new one was in place
    /// (their records went with them).
    pub removed: Vec<PathBuf>,
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b[..4].copy_from_slice(&t.subsec_nanos().to_le_bytes());
    }
    hex::encode(b)
}

/// Removes temporary archives a killed pack left in `dir` (call with the image lock).
pub fn cleanup_temp(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for ent in fs::read_dir(dir)? {
        let ent = ent?;
        if ent
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_PREFIX))
        {
            let p = ent.path();
            if ent.file_type()?.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// Path of a new temporary file in `dir` for the final name `name`.
pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(
        "{TEMP_PREFIX}{}-{}.{name}",
        std::process::id(),
        random_suffix()
    ))
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Makes `tmp` the file `dir/name` atomically (fsync, rename, fsync of the directory).
pub fn install(tmp: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    File::open(tmp)?.sync_all()?;
    let dst = dir.join(name);
    fs::rename(tmp, &dst)?;
    sync_dir(dir);
    Ok(dst)
}

/// Writes the archive of `spec` to `tmp`; returns its figures and, when it was
/// cheap to compute on the way (our own writers), its SHA-256.
fn write_archive(
    tree: Tree<'_>,
    tmp: &Path,
    spec: &PackSpec,
    progress: &PackProgress,
    cancel: &AtomicBool,
) -> Result<(TreeStats, Option<String>), PackError> {
    if spec.format == Format::Squashfs {
        let stats = squashfs::mksquashfs(tree, tmp, spec.threads, progress, cancel)?;
        return Ok((stats, None));
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(tmp)
        .map_err(io_err("creating", tmp.display().to_string()))?;
    let (hashing, digest) = record::Hashing::new(BufWriter::with_capacity(1 << 20, file));
    let sink = Counting::new(hashing, progress.bytes_out.clone());
    let enc = compress::encoder(spec.compression, spec.level, spec.threads, sink).map_err(
        io_err("starting the compressor for", tmp.display().to_string()),
    )?;
    let (enc, stats) = match spec.format {
        Format::Cpio => write_cpio(tree, enc, progress, cancel)?,
        _ => write_tar(tree, enc, progress, cancel)?,
    };
    enc.finish()
        .map_err(io_err("writing", tmp.display().to_string()))?;
    Ok((stats, Some(record::hex_digest(&digest))))
}

/// The record of the archive at `tmp` (to be `name`), written to a temporary file
/// of its own.
fn write_record(
    dir: &Path,
    tmp: &Path,
    name: &str,
    spec: &PackSpec,
    inputs: &RecordInputs,
    sha256: Option<String>,
) -> Result<(record::PackRecord, PathBuf), PackError> {
    let what = |w| io_err(w, tmp.display().to_string());
    let size = fs::metadata(tmp).map_err(what("reading"))?.len();
    let sha256 = match sha256 {
        Some(h) => h,
        None => record::sha256_file(tmp).map_err(what("reading"))?,
    };
    let rec = record::PackRecord {
        format: spec.format,
        compression: match spec.format {
            Format::Squashfs => Compression::None,
            _ => spec.compression,
        },
        size,
        sha256,
        tree_bytes: inputs.tree_bytes,
        ram_mib: record::ram_need(
            spec.format,
            inputs.tree_bytes,
            size,
            inputs.kernel_and_initrd_bytes,
        ),
    };
    let info_tmp = temp_path(dir, &record::info_name(name));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&info_tmp)
        .and_then(|mut f| f.write_all(rec.render().as_bytes()));
    if let Err(e) = written {
        let _ = fs::remove_file(&info_tmp);
        return Err(io_err("writing", info_tmp.display().to_string())(e));
    }
    Ok((rec, info_tmp))
}

/// Removes the archives of names other than `name`, and every record but the
/// one of `name` (a record without its archive describes nothing).
fn remove_stale(dir: &Path, name: &str) -> Result<Vec<PathBuf>, PackError> {
    let mut removed = Vec::new();
    let mut remove = |p: PathBuf, report: bool| -> Result<(), PackError> {
        match fs::symlink_metadata(&p) {
            Ok(m) if !m.is_dir() => {
                fs::remove_file(&p).map_err(io_err("removing stale", p.display().to_string()))?;
                if report {
                    removed.push(p);
                }
            }
            _ => {}
        }
        Ok(())
    };
    for other in ARCHIVE_NAMES.iter().filter(|n| **n != name) {
        remove(dir.join(other), true)?;
        remove(dir.join(record::info_name(other)), false)?;
    }
    if !removed.is_empty() {
        sync_dir(dir);
    }
    Ok(removed)
}

/// Packs `tree` (usually all of `<dir>/rootimg`) into `<dir>/<name>` with its
/// record `<dir>/<name>.info`; see the module documentation for the publication
/// order. Both files are complete under temporary names before either is renamed,
/// so a failed pack leaves the previous archive and record as they were; both are
/// mode 0644 (nodes fetch them), whatever the umask. When `name` is one of
/// packimage's [`ARCHIVE_NAMES`], the archives of the others go once it is in
/// place (one stateless archive per image); any other name removes nothing. The
/// caller holds the image lock.
pub fn pack(
    tree: Tree<'_>,
    dir: &Path,
    name: &str,
    spec: &PackSpec,
    inputs: &RecordInputs,
    progress: &PackProgress,
    cancel: &AtomicBool,
) -> Result<PackOutcome, PackError> {
    let info = record::info_name(name);
    let tmp = temp_path(dir, name);
    let written = write_archive(tree, &tmp, spec, progress, cancel)
        .and_then(|(stats, sha)| Ok((stats, write_record(dir, &tmp, name, spec, inputs, sha)?)));
    let (stats, (record, info_tmp)) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let path = match publish(&tmp, dir, name) {
        Ok(p) => p,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(&info_tmp);
            return Err(io_err("installing", dir.join(name).display().to_string())(
                e,
            ));
        }
    };
    let record_path = match publish(&info_tmp, dir, &info) {
        Ok(p) => p,
        Err(e) => {
            // the old record would describe the old archive: better none
            let _ = fs::remove_file(dir.join(&info));
            let _ = fs::remove_file(&info_tmp);
            return Err(io_err("installing", dir.join(&info).display().to_string())(
                e,
            ));
        }
    };
    let removed = if ARCHIVE_NAMES.contains(&name) {
        remove_stale(dir, name)?
    } else {
        Vec::new()
    };
    Ok(PackOutcome {
        path,
        bytes: record.size,
        stats,
        record,
        record_path,
        removed,
    })
}

/// [`install`] of a file nodes read: world-readable, not the umask's choice
/// (mksquashfs creates its output itself).
fn publish(tmp: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    fs::set_permissions(tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    install(tmp, dir, name)
}
