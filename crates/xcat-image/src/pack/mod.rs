//! Packing an image tree into the archive nodes boot (`packimage`).
//!
//! * [`cpio`]: streaming cpio newc writer (the initramfs format);
//! * [`tarwrite`]: streaming pax tar writer with extended attributes;
//! * [`compress`]: gzip, zstd and xz on all cores;
//! * [`walk`]: the symlink-safe, one-filesystem tree walk they share;
//! * this module: the formats, what each one loses ([`Survey`], [`Loss`],
//!   [`expected_after`]), and [`pack`], which writes `<dir>/rootimg.<ext>` under a
//!   temporary name, renames it into place and only then removes stale archives of
//!   other names, so a node booting during a pack reads either the previous complete
//!   archive or the new complete one, and an older format never shadows a newer pack.

pub mod compress;
pub mod cpio;
pub mod tarwrite;
pub mod walk;

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
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use walk::{Entry, WalkError};

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    #[error("cpio newc cannot hold files of 4 GiB or more, and {} such file{} would be lost: {}; pack with -m tar or -m squashfs", .0.count, if .0.count == 1 { "" } else { "s" }, .0.examples.join(", "))]
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

/// Walks the tree once (stat and xattr names only, no content) for the total size and
/// the losses of each format.
pub fn survey(root: &Path, cancel: &AtomicBool) -> Result<Survey, PackError> {
    let mut s = Survey::default();
    let mut seen: std::collections::HashSet<(u64, u64)> = Default::default();
    walk::walk(root, cancel, |e: &Entry<'_>| -> Result<(), PackError> {
        s.entries += 1;
        let t = e.file_type();
        #[allow(clippy::unnecessary_cast)]
        if t == libc::S_IFREG {
            let size = e.stat.st_size as u64;
            if e.stat.st_nlink as u64 <= 1
                || seen.insert((e.stat.st_dev as u64, e.stat.st_ino as u64))
            {
                s.bytes += size;
            }
            if size > cpio::MAX_SIZE {
                s.huge_files.add(e.path);
            }
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
    })
    .map_err(from_walk)?;
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
                e.xattrs.clear();
                e.mtime_nsec = 0;
                e.mtime_sec = e.mtime_sec.clamp(0, u32::MAX as i64);
            }
            Format::Tar => {
                if e.kind == EntryType::Socket {
                    continue;
                }
            }
            Format::Squashfs => {
                e.xattrs.retain(|k, _| !k.starts_with(b"system."));
                e.mtime_nsec = 0;
                e.mtime_sec = e.mtime_sec.clamp(0, u32::MAX as i64);
            }
        }
        out.insert(e);
    }
    out
}

/// Figures of a written archive.
#[derive(Debug, Clone, Default)]
pub struct TreeStats {
    pub entries: u64,
    pub content_bytes: u64,
    /// Files whose size changed while they were read (the archive holds the size
    /// seen at `lstat`, zero-padded or cut).
    pub changed: Tally,
    /// Sockets left out (tar).
    pub skipped_sockets: u64,
}

/// Opens the content of a hard-link group member by its archive name.
type OpenData<'a> = dyn FnMut(&[u8]) -> io::Result<Box<dyn Read>> + 'a;

struct Pending {
    ino: u32,
    nlink: u64,
    members: Vec<(Vec<u8>, u32, u32, u32, u32, u64)>, // path, mode, uid, gid, mtime, size
}

fn mtime32(sec: i64) -> u32 {
    sec.clamp(0, u32::MAX as i64) as u32
}

/// Writes the tree at `root` as a cpio newc archive to `out` (uncompressed; wrap
/// `out` in an encoder). Files of 4 GiB or more are an error naming them.
pub fn write_cpio<W: Write>(
    root: &Path,
    out: W,
    progress: &PackProgress,
    cancel: &AtomicBool,
) -> Result<(W, TreeStats), PackError> {
    let mut w = cpio::CpioWriter::new(out);
    let mut stats = TreeStats::default();
    let mut groups: HashMap<(u64, u64), Pending> = HashMap::new();
    let mut huge = Tally::default();
    let wr = |p: &[u8]| io_err("writing the archive at", display_path(p));

    #[allow(clippy::too_many_arguments)]
    fn write_group<W: Write>(
        w: &mut cpio::CpioWriter<W>,
        g: &Pending,
        data: &mut OpenData<'_>,
        stats: &mut TreeStats,
        progress: &PackProgress,
    ) -> Result<(), PackError> {
        let n = g.members.len();
        for (i, (path, mode, uid, gid, mtime, size)) in g.members.iter().enumerate() {
            let last = i + 1 == n;
            let size = if last { *size } else { 0 };
            w.header(&cpio::Header {
                name: path,
                ino: g.ino,
                mode: *mode,
                uid: *uid,
                gid: *gid,
                nlink: n as u32,
                mtime: *mtime,
                size,
                rdev_major: 0,
                rdev_minor: 0,
            })
            .map_err(io_err("writing the archive at", display_path(path)))?;
            if size > 0 {
                let mut r = data(path).map_err(io_err("reading", display_path(path)))?;
                let got = w
                    .data_from(&mut r)
                    .map_err(io_err("writing the archive at", display_path(path)))?;
                if got != size {
                    stats.changed.add(path);
                }
                stats.content_bytes += got;
                progress.bytes_in.fetch_add(got, Ordering::Relaxed);
            }
            stats.entries += 1;
            progress.entries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    walk::walk(root, cancel, |e: &Entry<'_>| -> Result<(), PackError> {
        // "." and "./etc/..." as `find . | cpio -o` writes them: GNU cpio applies a
        // directory's times when the archive leaves it, which it detects by prefix.
        let mut name = b".".to_vec();
        if !e.path.is_empty() {
            name.push(b'/');
            name.extend_from_slice(e.path);
        }
        let name = &name[..];
        let st = e.stat;
        let t = e.file_type();
        #[allow(clippy::unnecessary_cast)]
        let size = st.st_size as u64;
        let (sec, _) = e.mtime();
        let mtime = mtime32(sec);
        if t == libc::S_IFREG && size > cpio::MAX_SIZE {
            huge.add(e.path);
            return Ok(());
        }
        #[allow(clippy::unnecessary_cast)]
        if t == libc::S_IFREG && st.st_nlink as u64 > 1 {
            let key = (st.st_dev as u64, st.st_ino as u64);
            let ino = match groups.get(&key) {
                Some(g) => g.ino,
                None => w.next_ino(),
            };
            let g = groups.entry(key).or_insert_with(|| Pending {
                ino,
                nlink: st.st_nlink as u64,
                members: Vec::new(),
            });
            g.members
                .push((name.to_vec(), st.st_mode, st.st_uid, st.st_gid, mtime, size));
            if g.members.len() as u64 >= g.nlink {
                let g = groups.remove(&key).expect("group present");
                let mut open = |_: &[u8]| -> io::Result<Box<dyn Read>> { Ok(Box::new(e.open()?)) };
                write_group(&mut w, &g, &mut open, &mut stats, progress)?;
            }
            return Ok(());
        }
        let ino = w.next_ino();
        let (rmaj, rmin) = if t == libc::S_IFCHR || t == libc::S_IFBLK {
            (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev))
        } else {
            (0, 0)
        };
        let target = if t == libc::S_IFLNK {
            Some(
                e.read_link()
                    .map_err(io_err("reading", display_path(e.path)))?,
            )
        } else {
            None
        };
        let data_size = match (&target, t) {
            (Some(l), _) => l.len() as u64,
            (None, libc::S_IFREG) => size,
            _ => 0,
        };
        w.header(&cpio::Header {
            name,
            ino,
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            nlink: if t == libc::S_IFDIR { 2 } else { 1 },
            mtime,
            size: data_size,
            rdev_major: rmaj,
            rdev_minor: rmin,
        })
        .map_err(wr(e.path))?;
        if let Some(l) = target {
            if !l.is_empty() {
                w.data(&l).map_err(wr(e.path))?;
            }
        } else if data_size > 0 {
            let mut f = e.open().map_err(io_err("reading", display_path(e.path)))?;
            let got = w.data_from(&mut f).map_err(wr(e.path))?;
            if got != data_size {
                stats.changed.add(e.path);
            }
            stats.content_bytes += got;
            progress.bytes_in.fetch_add(got, Ordering::Relaxed);
        }
        stats.entries += 1;
        progress.entries.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
    .map_err(from_walk)?;
    if huge.count > 0 {
        return Err(PackError::TooLarge(huge));
    }
    // Hard-link groups with links outside the tree: write what we have.
    let r =
        crate::beneath::Root::open(root).map_err(io_err("opening", root.display().to_string()))?;
    let mut rest: Vec<Pending> = groups.into_values().collect();
    rest.sort_by(|a, b| a.members[0].0.cmp(&b.members[0].0));
    for g in rest {
        let mut open = |p: &[u8]| -> io::Result<Box<dyn Read>> {
            let fd = r.open_beneath(
                p,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK,
                rustix::fs::Mode::empty(),
            )?;
            Ok(Box::new(File::from(fd)))
        };
        write_group(&mut w, &g, &mut open, &mut stats, progress)?;
    }
    let out = w
        .finish()
        .map_err(io_err("writing the archive", "trailer"))?;
    Ok((out, stats))
}

/// Writes the tree at `root` as a pax tar archive with extended attributes to `out`.
/// Sockets are left out (tar has no type for them).
pub fn write_tar<W: Write>(
    root: &Path,
    out: W,
    progress: &PackProgress,
    cancel: &AtomicBool,
) -> Result<(W, TreeStats), PackError> {
    use tarwrite::{Kind, TarEntry};
    let mut w = tarwrite::TarWriter::new(out);
    let mut stats = TreeStats::default();
    let mut first: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    walk::walk(root, cancel, |e: &Entry<'_>| -> Result<(), PackError> {
        let st = e.stat;
        let t = e.file_type();
        let wr = io_err("writing the archive at", display_path(e.path));
        let mut path = b"./".to_vec();
        path.extend_from_slice(e.path);
        if t == libc::S_IFDIR && !e.path.is_empty() {
            path.push(b'/');
        }
        let kind = match t {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            libc::S_IFIFO => Kind::Fifo,
            _ => {
                stats.skipped_sockets += 1;
                return Ok(());
            }
        };
        #[allow(clippy::unnecessary_cast)]
        let size = st.st_size as u64;
        let mut hardlink = None;
        #[allow(clippy::unnecessary_cast)]
        if kind == Kind::File && st.st_nlink as u64 > 1 {
            let key = (st.st_dev as u64, st.st_ino as u64);
            match first.get(&key) {
                Some(p) => hardlink = Some(p.clone()),
                None => {
                    first.insert(key, path.clone());
                }
            }
        }
        let target = if kind == Kind::Symlink {
            Some(
                e.read_link()
                    .map_err(io_err("reading", display_path(e.path)))?,
            )
        } else {
            None
        };
        let xattrs = e
            .xattrs()
            .map_err(io_err("reading attributes of", display_path(e.path)))?;
        let (sec, nsec) = e.mtime();
        let kind = if hardlink.is_some() {
            Kind::HardLink
        } else {
            kind
        };
        w.append(&TarEntry {
            path: &path,
            kind,
            mode: st.st_mode & 0o7777,
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            mtime_sec: sec,
            mtime_nsec: nsec,
            size,
            link: hardlink.as_deref().or(target.as_deref()),
            rdev: (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)),
            xattrs: (!xattrs.is_empty()).then_some(&xattrs),
        })
        .map_err(wr)?;
        if kind == Kind::File && size > 0 {
            let mut f = e.open().map_err(io_err("reading", display_path(e.path)))?;
            let got = w
                .data_from(&mut f)
                .map_err(io_err("writing the archive at", display_path(e.path)))?;
            if got != size {
                stats.changed.add(e.path);
            }
            stats.content_bytes += got;
            progress.bytes_in.fetch_add(got, Ordering::Relaxed);
        }
        stats.entries += 1;
        progress.entries.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
    .map_err(from_walk)?;
    let out = w.finish().map_err(io_err("writing the archive", "end"))?;
    Ok((out, stats))
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

/// What [`pack`] did.
#[derive(Debug, Clone)]
pub struct PackOutcome {
    pub path: PathBuf,
    pub bytes: u64,
    pub stats: TreeStats,
    /// Stale archives of other names removed after the new one was in place.
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

/// Packs `root` (usually `<dir>/rootimg`) into `<dir>/<spec.file_name()>`; see the
/// module documentation for the publication order. The caller holds the image lock.
pub fn pack(
    root: &Path,
    dir: &Path,
    spec: &PackSpec,
    progress: &PackProgress,
    cancel: &AtomicBool,
) -> Result<PackOutcome, PackError> {
    let name = spec.file_name();
    let tmp = temp_path(dir, &name);
    let result = (|| -> Result<TreeStats, PackError> {
        match spec.format {
            Format::Squashfs => mksquashfs(root, &tmp, spec.threads, progress, cancel),
            f => {
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                    .open(&tmp)
                    .map_err(io_err("creating", tmp.display().to_string()))?;
                let sink = Counting::new(
                    BufWriter::with_capacity(1 << 20, file),
                    progress.bytes_out.clone(),
                );
                let enc =
                    compress::encoder(spec.compression, spec.level, spec.threads, sink).map_err(
                        io_err("starting the compressor for", tmp.display().to_string()),
                    )?;
                let (enc, stats) = match f {
                    Format::Cpio => write_cpio(root, enc, progress, cancel)?,
                    _ => write_tar(root, enc, progress, cancel)?,
                };
                enc.finish()
                    .map_err(io_err("writing", tmp.display().to_string()))?;
                Ok(stats)
            }
        }
    })();
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let bytes = fs::metadata(&tmp)
        .map_err(io_err("reading", tmp.display().to_string()))?
        .len();
    let path = match install(&tmp, dir, &name) {
        Ok(p) => p,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("installing", dir.join(&name).display().to_string())(
                e,
            ));
        }
    };
    let mut removed = Vec::new();
    for other in ARCHIVE_NAMES.iter().filter(|n| **n != name) {
        let p = dir.join(other);
        match fs::symlink_metadata(&p) {
            Ok(m) if !m.is_dir() => {
                fs::remove_file(&p).map_err(io_err("removing stale", p.display().to_string()))?;
                removed.push(p);
            }
            _ => {}
        }
    }
    if !removed.is_empty() {
        sync_dir(dir);
    }
    Ok(PackOutcome {
        path,
        bytes,
        stats,
        removed,
    })
}

fn mksquashfs(
    root: &Path,
    tmp: &Path,
    threads: usize,
    progress: &PackProgress,
    cancel: &AtomicBool,
) -> Result<TreeStats, PackError> {
    use crate::tool::{LocalTool, ToolError};
    let threads = if threads == 0 {
        compress::cores()
    } else {
        threads
    };
    let run = LocalTool::new("mksquashfs")
        .arg(root)
        .arg(tmp)
        .args(["-noappend", "-comp", "zstd", "-Xcompression-level", "3"])
        .args(["-processors", &threads.to_string()])
        .args(["-one-file-system", "-no-progress", "-quiet"])
        .run(cancel, || {
            if let Ok(m) = fs::metadata(tmp) {
                progress.bytes_out.store(m.len(), Ordering::Relaxed);
            }
        });
    match run {
        Ok(_) => Ok(TreeStats::default()),
        Err(ToolError::Spawn { source, .. }) => Err(PackError::Mksquashfs(format!(
            "cannot run mksquashfs ({source}); install squashfs-tools or pick -m cpio or -m tar"
        ))),
        Err(ToolError::Wait { source, .. }) => Err(PackError::Mksquashfs(source.to_string())),
        Err(ToolError::Failed {
            status,
            stderr_tail,
            ..
        }) => Err(PackError::Mksquashfs(format!(
            "{status}: {}",
            stderr_tail
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        ))),
        Err(ToolError::Cancelled { .. }) => Err(PackError::Cancelled),
    }
}
