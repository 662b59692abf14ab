//! Safe extraction of an untrusted tar stream into a staging directory.
//!
//! Rules (the node sending the stream is not trusted and we run as root):
//! * Paths: leading `/` and `./` are stripped (absolute names become relative to the
//!   staging root, as GNU tar does; a note is recorded once). A `..` component aborts
//!   the extraction with [`ExtractError::UnsafePath`] naming the entry.
//! * Every parent directory is opened with `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
//!   RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV)` from the root fd ([`crate::beneath`]): an
//!   entry "through" one of the image's symlinks fails. Missing parents are created
//!   (mode 0755, root-owned) like GNU tar does.
//! * An existing entry at the target path is removed first (`unlinkat`; an empty
//!   directory with `AT_REMOVEDIR`), then the new one is created with `O_CREAT|O_EXCL|
//!   O_NOFOLLOW`, so we never write through an old symlink, device node or FIFO. An
//!   existing directory stays when the new entry is a directory too.
//! * Hard links must name an entry already extracted from this archive; `linkat` is
//!   called on beneath-resolved parent fds without `AT_SYMLINK_FOLLOW`.
//! * Declared sizes are not trusted: nothing is preallocated; a short body is
//!   [`TarError::Truncated`]; sparse files get their final size (`ftruncate`) only
//!   after all their data arrived. Holes are preserved by writing segments at their
//!   offsets.
//! * Attributes: `fchown` first, then `fchmod` (so setuid/setgid survive the chown),
//!   then xattrs (after chown, which would clear `security.capability`), then times.
//!   Directory times are applied at the end, deepest first, from the manifest (so a
//!   directory a later entry replaced gets no stale time). Symlinks and device nodes,
//!   which cannot be opened safely, are held with `O_PATH|O_NOFOLLOW` right after
//!   their creation and checked to still be ours (type, owner, one link, device
//!   number); every attribute is then set on that held inode ([`beneath::Held`]),
//!   never by name again, so nothing renamed over the name meanwhile (a symlink or
//!   hard link to a server file) is changed.
//! * Xattrs restored: `user.*`, `trusted.*`, `security.*`, and the POSIX ACLs
//!   (`system.posix_acl_access/default`, from the binary xattr when the archive has it,
//!   else converted from `SCHILY.acl.*` text). Other namespaces are skipped with a
//!   warning; a failure to set an xattr is a warning. Directories' default ACLs, and
//!   ACLs naming users or groups (resolved against the image's own `etc/passwd` and
//!   `etc/group`), are set at the end of the archive on the inode extracted
//!   (the `deferred` module): earlier, every file extracted below would inherit them.
//! * Entry types tar cannot carry meaningfully (sockets never appear; unknown type
//!   flags) are skipped with a note.
//!
//! Memory stays bounded: one 128 KiB data buffer, metadata limited by [`Limits`], the
//! manifest's page cache ([`crate::manifest_store`]: the per-entry records, which also
//! answer which entries a hard link may name, are on disk), and the deferred ACLs;
//! [`crate::budget::Budget`] bounds the rest (entries, metadata bytes, notes listed).

use crate::acl;
use crate::beneath::{self, cname, explain, lstat_at, normalize, split_parent, Held, Root};
use crate::budget::{Budget, Remarks, Spent};
use crate::deferred::{self, AclValue, DeferredAcl, Outcome};
use crate::manifest::{ContentHasher, EntryType, ManifestEntry};
use crate::manifest_store::ManifestStore;
pub use crate::tar::Limits;
use crate::tar::{EntryMeta, Kind, Mtime, TarError, TarReader};
use crate::util::{display_path, escape_bytes};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters the caller can poll while extraction runs.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Archive bytes consumed from the stream.
    pub bytes: Arc<AtomicU64>,
    /// Entries extracted.
    pub entries: Arc<AtomicU64>,
}

/// Options for [`extract`].
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub limits: Limits,
    /// Ceilings over the whole archive (entries, metadata, logical size).
    pub budget: crate::budget::Budget,
    pub progress: Option<Progress>,
    /// At most this many bytes are read and discarded after the end-of-archive marker.
    pub drain_max: u64,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            limits: Limits::default(),
            budget: crate::budget::Budget::default(),
            progress: None,
            drain_max: 1 << 20,
        }
    }
}

/// Per-type counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub char_devices: u64,
    pub block_devices: u64,
    pub fifos: u64,
    pub skipped: u64,
}

/// What an extraction did.
#[derive(Debug)]
pub struct ExtractSummary {
    pub entries: u64,
    /// Archive bytes read (including headers and padding).
    pub archive_bytes: u64,
    /// Logical bytes of regular files.
    pub content_bytes: u64,
    pub counts: Counts,
    /// Manifest of what was extracted (hard links resolved into groups), on disk.
    pub manifest: ManifestStore,
    /// Informational remarks (absolute names made relative, skipped types...).
    pub notes: Vec<String>,
    /// Things that were not restored as in the archive (xattrs refused by the kernel...).
    pub warnings: Vec<String>,
}

impl ExtractSummary {
    /// Nothing extracted yet; `manifest` receives the records.
    pub fn new(manifest: ManifestStore) -> ExtractSummary {
        ExtractSummary {
            entries: 0,
            archive_bytes: 0,
            content_bytes: 0,
            counts: Counts::default(),
            manifest,
            notes: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Extraction failures. Every variant that concerns one entry names it.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Archive(#[from] TarError),
    #[error("entry {entry}: refused: the name {reason}")]
    UnsafePath { entry: String, reason: String },
    #[error("entry {entry}: {what}: {source}{}", explain(source).map(|s| format!(" ({s})")).unwrap_or_default())]
    Io {
        entry: String,
        what: String,
        source: io::Error,
    },
    #[error("entry {entry}: hard link to {target} refused: {reason}")]
    HardLink {
        entry: String,
        target: String,
        reason: String,
    },
    #[error("entry {entry}: {reason}")]
    Invalid { entry: String, reason: String },
    #[error("cannot open the staging directory {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error("extraction stopped: {0}")]
    Aborted(String),
    #[error(transparent)]
    Budget(Box<crate::budget::Exceeded>),
}

impl From<crate::budget::Exceeded> for ExtractError {
    fn from(e: crate::budget::Exceeded) -> Self {
        // boxed: every error that carries an ExtractError stays small
        ExtractError::Budget(Box::new(e))
    }
}

fn ioe(entry: &[u8], what: &str) -> impl FnOnce(io::Error) -> ExtractError {
    let what = what.to_string();
    let entry = escape_bytes(entry);
    move |source| ExtractError::Io {
        entry,
        what,
        source,
    }
}

fn errno_io(e: Errno) -> io::Error {
    e.into()
}

/// Extracts the tar stream `reader` into the existing directory `root`.
pub fn extract<R: Read>(
    reader: R,
    root: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractSummary, ExtractError> {
    let root_h = Root::open(root).map_err(|source| ExtractError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let counter = opts.progress.as_ref().map(|p| p.bytes.clone());
    let mut tar = TarReader::new(reader, opts.limits.clone(), counter);
    let store = ManifestStore::new().map_err(|source| ExtractError::Io {
        entry: "-".into(),
        what: "creating the manifest store".into(),
        source,
    })?;
    let mut ex = Extractor {
        root: root_h,
        deferred_acls: Vec::new(),
        summary: ExtractSummary::new(store),
        cache: None,
        buf: vec![0u8; 128 * 1024],
        noted_absolute: false,
        budget: opts.budget.clone(),
        spent: Spent::default(),
        notes: Remarks::default(),
        warnings: Remarks::default(),
    };
    while let Some(meta) = tar.next_entry()? {
        ex.spend(&meta)?;
        ex.entry(&mut tar, &meta)?;
        ex.summary.entries += 1;
        if let Some(p) = &opts.progress {
            p.entries.fetch_add(1, Ordering::Relaxed);
        }
    }
    tar.drain(opts.drain_max)?;
    ex.finish()?;
    ex.summary.archive_bytes = tar.offset();
    for n in std::mem::take(&mut tar.notes) {
        ex.note(n);
    }
    ex.summary.notes = std::mem::take(&mut ex.notes).finish("notes");
    ex.summary.warnings = std::mem::take(&mut ex.warnings).finish("warnings");
    Ok(ex.summary)
}

/// Async front end: reads `reader` on the runtime and feeds the synchronous extractor,
/// which runs in `spawn_blocking`, through a bounded channel (8 chunks of 64 KiB), so
/// memory stays bounded whatever the archive size.
pub async fn extract_async<R>(
    mut reader: R,
    root: PathBuf,
    opts: ExtractOptions,
) -> Result<ExtractSummary, ExtractError>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Vec<u8>>>(8);
    let task = tokio::task::spawn_blocking(move || {
        let r = ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        extract(r, &root, &opts)
    });
    loop {
        let mut chunk = vec![0u8; 64 * 1024];
        let res = match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                chunk.truncate(n);
                Ok(chunk)
            }
            Err(e) => Err(e),
        };
        let failed = res.is_err();
        if tx.send(res).await.is_err() || failed {
            break; // the extractor stopped (error or end of archive) or the source failed
        }
    }
    drop(tx);
    task.await
        .map_err(|e| ExtractError::Aborted(format!("extraction task failed: {e}")))?
}

struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.blocking_recv() {
                Some(Ok(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Where a non-root entry goes: its normalized path, its parent directory
/// (opened beneath the root) and its name there, and its owner.
struct Place {
    rel: Vec<u8>,
    parent_rel: Vec<u8>,
    name: Vec<u8>,
    cn: std::ffi::CString,
    dir: Arc<OwnedFd>,
    owner: crate::sys::Owner,
}

struct Extractor {
    root: Root,
    deferred_acls: Vec<DeferredAcl>,
    summary: ExtractSummary,
    /// The last parent directory opened, by path (invalidated whenever we remove anything).
    cache: Option<(Vec<u8>, Arc<OwnedFd>)>,
    buf: Vec<u8>,
    noted_absolute: bool,
    budget: Budget,
    spent: Spent,
    /// Notes and warnings, at most `budget.max_notes` of each listed.
    notes: Remarks,
    warnings: Remarks,
}

/// Bytes of bookkeeping one entry costs besides its names and xattrs: its record in
/// the manifest store, with the index entry holding its path (on disk; measured,
/// see [`crate::budget`]).
const ENTRY_BOOKKEEPING: u64 = 120;

fn timestamps(m: Mtime) -> Timestamps {
    let t = Timespec {
        tv_sec: m.sec,
        tv_nsec: i64::from(m.nsec),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// The manifest record of an entry, before content, device and link details.
fn record(
    meta: &EntryMeta,
    rel: &[u8],
    kind: EntryType,
    link: Option<Vec<u8>>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
) -> ManifestEntry {
    ManifestEntry {
        path: rel.to_vec(),
        kind,
        mode: meta.mode & 0o7777,
        uid: meta.uid as u32,
        gid: meta.gid as u32,
        size: 0,
        mtime_sec: meta.mtime.sec,
        mtime_nsec: meta.mtime.nsec,
        content_hash: None,
        rdev: None,
        link,
        hardlink: None,
        xattrs: Arc::new(xattrs),
        blocks: None,
    }
}

/// Where xattrs go: an open file or directory, or a held symlink or device node.
enum XTarget<'a> {
    Fd(&'a OwnedFd),
    Held(&'a Held),
}

impl XTarget<'_> {
    fn set_xattr(&self, name: &[u8], value: &[u8]) -> io::Result<()> {
        match self {
            XTarget::Fd(fd) => {
                rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()).map_err(errno_io)
            }
            XTarget::Held(h) => h.set_xattr(name, value),
        }
    }

    /// (device, inode, file type) of the target, which a deferred ACL must land on.
    fn identity(&self) -> io::Result<(u64, u64, u32)> {
        match self {
            XTarget::Fd(fd) => Ok(beneath::identity(&rustix::fs::fstat(fd)?)),
            XTarget::Held(h) => Ok(h.identity()),
        }
    }
}

/// A directory's default ACL: set only at the end of the archive (see [`deferred`]).
const DEFAULT_ACL: &str = "system.posix_acl_default";

/// Bytes a deferred ACL of `value_len` bytes keeps for the entry `path`.
fn deferred_cost(path: &[u8], value_len: usize) -> u64 {
    (std::mem::size_of::<DeferredAcl>() + path.len() + value_len) as u64
}

fn xattr_allowed(name: &[u8]) -> bool {
    name.starts_with(b"user.")
        || name.starts_with(b"trusted.")
        || name.starts_with(b"security.")
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

impl Extractor {
    fn unsafe_path(&self, meta: &EntryMeta, reason: &str) -> ExtractError {
        ExtractError::UnsafePath {
            entry: escape_bytes(&meta.path),
            reason: reason.to_string(),
        }
    }

    /// Opens (creating if needed) the parent directory of `rel`, beneath the root.
    fn parent(
        &mut self,
        entry: &[u8],
        parent: &[u8],
        create: bool,
    ) -> Result<Arc<OwnedFd>, ExtractError> {
        if let Some((p, fd)) = &self.cache {
            if p == parent {
                return Ok(fd.clone());
            }
        }
        let fd = if create {
            let (fd, created) = self
                .root
                .ensure_dir(parent, Mode::from_raw_mode(0o755))
                .map_err(|e| self.diagnose(entry, parent, e))?;
            if created {
                self.note(format!(
                    "created missing parent directory {}",
                    display_path(parent)
                ));
            }
            fd
        } else {
            self.root
                .open_dir(parent)
                .map_err(|e| self.diagnose(entry, parent, e))?
        };
        let fd = Arc::new(fd);
        self.cache = Some((parent.to_vec(), fd.clone()));
        Ok(fd)
    }

    /// Turns a failed parent lookup into a clear error: when a component of `parent` is
    /// one of the image's symlinks, say so (the kernel reports ELOOP or ENOTDIR).
    fn diagnose(&self, entry: &[u8], parent: &[u8], err: io::Error) -> ExtractError {
        if matches!(err.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
            let mut prefix: Vec<u8> = Vec::new();
            for comp in parent.split(|&b| b == b'/') {
                if !prefix.is_empty() {
                    prefix.push(b'/');
                }
                prefix.extend_from_slice(comp);
                match self.root.lstat(&prefix) {
                    Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                        return ExtractError::UnsafePath {
                            entry: escape_bytes(entry),
                            reason: format!(
                                "goes through the symbolic link {} of the image",
                                display_path(&prefix)
                            ),
                        }
                    }
                    Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => continue,
                    _ => break,
                }
            }
        }
        ioe(entry, "opening its parent directory")(err)
    }

    /// Removes whatever is at `name` in `dir` unless it is a directory and `keep_dir`.
    /// Returns true when a directory exists and was kept.
    fn clear(
        &mut self,
        entry: &[u8],
        dir: &OwnedFd,
        name: &[u8],
        keep_dir: bool,
    ) -> Result<bool, ExtractError> {
        let Some(st) = lstat_at(dir, name).map_err(ioe(entry, "checking the existing path"))?
        else {
            return Ok(false);
        };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(true);
        }
        self.cache = None;
        let flags = if is_dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(dir, name, flags) {
            Ok(()) => Ok(false),
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => Err(ExtractError::Invalid {
                entry: escape_bytes(entry),
                reason: "would replace a non-empty directory".into(),
            }),
            Err(e) => Err(ioe(entry, "removing the existing path")(e.into())),
        }
    }

    fn entry<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        meta: &EntryMeta,
    ) -> Result<(), ExtractError> {
        let rel = normalize(&meta.path).map_err(|r| self.unsafe_path(meta, r))?;
        if meta.path.starts_with(b"/") && !self.noted_absolute {
            self.noted_absolute = true;
            self.note(format!(
                "leading '/' removed from entry names (first: {})",
                escape_bytes(&meta.path)
            ));
        }
        let e = &meta.path;
        if let Kind::Other(t) = meta.kind {
            self.summary.counts.skipped += 1;
            self.note(format!(
                "entry {}: type {:?} not supported, skipped",
                escape_bytes(e),
                t as char
            ));
            return Ok(());
        }
        let owner =
            crate::sys::Owner::new(meta.uid, meta.gid).ok_or_else(|| ExtractError::Invalid {
                entry: escape_bytes(e),
                reason: format!("uid/gid {}/{} out of range", meta.uid, meta.gid),
            })?;
        if rel.is_empty() {
            return self.root_entry(meta, owner);
        }
        let (parent_rel, name) = split_parent(&rel);
        let (parent_rel, name) = (parent_rel.to_vec(), name.to_vec());
        let dir = self.parent(e, &parent_rel, true)?;
        let cn = cname(&name).map_err(ioe(e, "name"))?;
        let at = Place {
            rel,
            parent_rel,
            name,
            cn,
            dir,
            owner,
        };
        match meta.kind {
            Kind::Directory => self.directory(meta, &at),
            Kind::File => self.file(tar, meta, &at),
            Kind::Symlink => self.symlink(meta, &at),
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => self.node(meta, &at),
            Kind::HardLink => self.hard_link(meta, &at),
            Kind::Other(_) => unreachable!("handled above"),
        }
    }

    /// The entry naming the staging root itself: attributes only.
    fn root_entry(
        &mut self,
        meta: &EntryMeta,
        owner: crate::sys::Owner,
    ) -> Result<(), ExtractError> {
        let e = &meta.path;
        if meta.kind != Kind::Directory {
            return Err(ExtractError::Invalid {
                entry: escape_bytes(e),
                reason: "names the root but is not a directory".into(),
            });
        }
        let fd = self
            .root
            .open_dir(b"")
            .map_err(ioe(e, "opening the root"))?;
        let rel = Vec::new();
        let x = self.apply_attrs(meta, &rel, &fd, owner, true)?;
        let m = record(meta, &rel, EntryType::Dir, None, x);
        self.keep(&m)?;
        self.summary.counts.dirs += 1;
        Ok(())
    }

    fn directory(&mut self, meta: &EntryMeta, at: &Place) -> Result<(), ExtractError> {
        let (e, rel, dir, cn) = (&meta.path, &at.rel, &at.dir, at.cn.as_c_str());
        if !self.clear(e, dir, &at.name, true)? {
            rustix::fs::mkdirat(&**dir, cn, Mode::from_raw_mode(0o700))
                .map_err(|x| ioe(e, "creating the directory")(x.into()))?;
        }
        let fd = rustix::fs::openat2(
            &**dir,
            cn,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            beneath::resolve_flags(),
        )
        .map_err(|x| ioe(e, "opening the directory")(x.into()))?;
        let x = self.apply_attrs(meta, rel, &fd, at.owner, true)?;
        let m = record(meta, rel, EntryType::Dir, None, x);
        self.keep(&m)?;
        self.summary.counts.dirs += 1;
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        meta: &EntryMeta,
        at: &Place,
    ) -> Result<(), ExtractError> {
        let (e, rel) = (&meta.path, &at.rel);
        // before anything is written: holes count, as a packer reads them as zeros
        self.budget
            .check_file(&escape_bytes(e), meta.size, self.summary.content_bytes)?;
        self.clear(e, &at.dir, &at.name, false)?;
        let fd = rustix::fs::openat(
            &*at.dir,
            at.cn.as_c_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|x| ioe(e, "creating the file")(x.into()))?;
        let file = std::fs::File::from(fd);
        let sha = self.write_content(tar, meta, &file)?;
        let fd = OwnedFd::from(file);
        let x = self.apply_attrs(meta, rel, &fd, at.owner, false)?;
        let mut m = record(meta, rel, EntryType::File, None, x);
        m.content_hash = Some(sha);
        m.size = meta.size;
        self.keep(&m)?;
        self.summary.content_bytes += meta.size;
        self.summary.counts.files += 1;
        Ok(())
    }

    fn symlink(&mut self, meta: &EntryMeta, at: &Place) -> Result<(), ExtractError> {
        let (e, rel) = (&meta.path, &at.rel);
        self.clear(e, &at.dir, &at.name, false)?;
        rustix::fs::symlinkat(&meta.link[..], &*at.dir, at.cn.as_c_str())
            .map_err(|x| ioe(e, "creating the symlink")(x.into()))?;
        let held = Held::created(&*at.dir, &at.name, libc::S_IFLNK, 0)
            .map_err(ioe(e, "holding the new symlink"))?;
        let x = self.apply_node_attrs(meta, rel, &held, at.owner, false)?;
        let m = record(meta, rel, EntryType::Symlink, Some(meta.link.clone()), x);
        self.keep(&m)?;
        self.summary.counts.symlinks += 1;
        Ok(())
    }

    /// A character or block device, or a FIFO.
    fn node(&mut self, meta: &EntryMeta, at: &Place) -> Result<(), ExtractError> {
        let (e, rel) = (&meta.path, &at.rel);
        self.clear(e, &at.dir, &at.name, false)?;
        let (ft, kind, ifmt) = match meta.kind {
            Kind::CharDevice => (
                FileType::CharacterDevice,
                EntryType::CharDevice,
                libc::S_IFCHR,
            ),
            Kind::BlockDevice => (FileType::BlockDevice, EntryType::BlockDevice, libc::S_IFBLK),
            _ => (FileType::Fifo, EntryType::Fifo, libc::S_IFIFO),
        };
        let dev = if kind == EntryType::Fifo {
            0
        } else {
            rustix::fs::makedev(meta.devmajor, meta.devminor)
        };
        rustix::fs::mknodat(
            &*at.dir,
            at.cn.as_c_str(),
            ft,
            Mode::from_raw_mode(0o600),
            dev,
        )
        .map_err(|x| ioe(e, "creating the device node or FIFO")(x.into()))?;
        let held = Held::created(&*at.dir, &at.name, ifmt, dev)
            .map_err(ioe(e, "holding the new device node or FIFO"))?;
        let x = self.apply_node_attrs(meta, rel, &held, at.owner, true)?;
        let mut m = record(meta, rel, kind, None, x);
        if kind != EntryType::Fifo {
            m.rdev = Some((meta.devmajor, meta.devminor));
            self.summary.counts.char_devices += u64::from(kind == EntryType::CharDevice);
            self.summary.counts.block_devices += u64::from(kind == EntryType::BlockDevice);
        } else {
            self.summary.counts.fifos += 1;
        }
        self.keep(&m)
    }

    /// A hard link, only to an entry this archive already extracted.
    fn hard_link(&mut self, meta: &EntryMeta, at: &Place) -> Result<(), ExtractError> {
        let (e, rel) = (&meta.path, &at.rel);
        let target = normalize(&meta.link).map_err(|r| ExtractError::HardLink {
            entry: escape_bytes(e),
            target: escape_bytes(&meta.link),
            reason: format!("the target name {r}"),
        })?;
        let refuse = |reason: &str| ExtractError::HardLink {
            entry: escape_bytes(e),
            target: escape_bytes(&meta.link),
            reason: reason.to_string(),
        };
        if &target == rel {
            return Err(refuse("links to itself"));
        }
        let source = self
            .summary
            .manifest
            .hard_link_source(&target)
            .map_err(ioe(e, "looking up the link's target in the manifest"))?;
        let Some(source) = source else {
            return Err(refuse(
                "the target is not an entry extracted earlier from this archive",
            ));
        };
        let (tp, tn) = split_parent(&target);
        let (tp, tn) = (tp.to_vec(), tn.to_vec());
        let dir = self.parent(e, &at.parent_rel, true)?;
        self.clear(e, &dir, &at.name, false)?;
        let tdir = self.parent(e, &tp, false)?;
        rustix::fs::linkat(&*tdir, &tn[..], &*dir, at.cn.as_c_str(), AtFlags::empty())
            .map_err(|x| ioe(e, "creating the hard link")(x.into()))?;
        let mut m = record(meta, rel, EntryType::File, None, BTreeMap::new());
        m.hardlink = Some(target);
        self.summary
            .manifest
            .insert_hard_link(&m, &source)
            .map_err(ioe(e, "recording the entry in the manifest"))?;
        self.summary.counts.hardlinks += 1;
        Ok(())
    }

    /// Adds `m` to the manifest.
    fn keep(&mut self, m: &ManifestEntry) -> Result<(), ExtractError> {
        self.summary
            .manifest
            .insert(m)
            .map_err(ioe(&m.path, "recording the entry in the manifest"))
    }

    /// Writes a regular file's data (sparse segments at their offsets) and returns the
    /// content hash ([`ContentHasher`]).
    fn write_content<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        meta: &EntryMeta,
        file: &std::fs::File,
    ) -> Result<[u8; 32], ExtractError> {
        let e = &meta.path;
        let mut h = ContentHasher::new();
        match &meta.sparse {
            None => {
                let mut w = io::BufWriter::with_capacity(0, file);
                loop {
                    let n = tar.read_data(&mut self.buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&self.buf[..n]);
                    w.write_all(&self.buf[..n]).map_err(ioe(e, "writing"))?;
                }
            }
            Some(map) => {
                let mut pos = 0u64;
                for &(off, len) in map {
                    h.zeros(off - pos);
                    let mut woff = off;
                    let mut left = len;
                    while left > 0 {
                        let want = (left.min(self.buf.len() as u64)) as usize;
                        let n = tar.read_data(&mut self.buf[..want])?;
                        if n == 0 {
                            return Err(ExtractError::Invalid {
                                entry: escape_bytes(e),
                                reason: "sparse data shorter than its map".into(),
                            });
                        }
                        h.update(&self.buf[..n]);
                        file.write_all_at(&self.buf[..n], woff)
                            .map_err(ioe(e, "writing"))?;
                        woff += n as u64;
                        left -= n as u64;
                    }
                    pos = off + len;
                }
                // only now, with every byte of the body received, give the file its size
                file.set_len(meta.size)
                    .map_err(ioe(e, "setting the size"))?;
                h.zeros(meta.size - pos);
            }
        }
        Ok(h.finish())
    }

    /// Owner, mode, xattrs and (for non-directories) times on an open file or directory.
    fn apply_attrs(
        &mut self,
        meta: &EntryMeta,
        rel: &[u8],
        fd: &OwnedFd,
        owner: crate::sys::Owner,
        is_dir: bool,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, ExtractError> {
        let e = &meta.path;
        crate::sys::fchown(fd, owner).map_err(ioe(e, "changing the owner"))?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))
            .map_err(|x| ioe(e, "changing the mode")(x.into()))?;
        let x = self.apply_xattrs(meta, rel, &XTarget::Fd(fd), is_dir);
        if !is_dir {
            rustix::fs::futimens(fd, &timestamps(meta.mtime))
                .map_err(|x| ioe(e, "setting the times")(x.into()))?;
        }
        Ok(x)
    }

    /// Owner, mode, xattrs, times on a symlink or node just created and held: never by
    /// name, so nothing renamed over it meanwhile (a symlink to a server file, a hard
    /// link) is changed instead.
    fn apply_node_attrs(
        &mut self,
        meta: &EntryMeta,
        rel: &[u8],
        held: &Held,
        owner: crate::sys::Owner,
        chmod: bool,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, ExtractError> {
        let e = &meta.path;
        held.chown(owner).map_err(ioe(e, "changing the owner"))?;
        if chmod {
            held.chmod(meta.mode & 0o7777)
                .map_err(ioe(e, "changing the mode"))?;
        }
        let x = self.apply_xattrs(meta, rel, &XTarget::Held(held), false);
        held.set_times(&timestamps(meta.mtime))
            .map_err(ioe(e, "setting the times"))?;
        Ok(x)
    }

    fn apply_xattrs(
        &mut self,
        meta: &EntryMeta,
        rel: &[u8],
        t: &XTarget<'_>,
        is_dir: bool,
    ) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut wanted: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (k, v) in &meta.xattrs {
            if xattr_allowed(k) {
                wanted.insert(k.clone(), v.clone());
            } else {
                self.warn(format!(
                    "entry {}: xattr {} not restored (namespace not supported)",
                    escape_bytes(&meta.path),
                    escape_bytes(k)
                ));
            }
        }
        let mut later = self.acls_from_text(meta, &mut wanted, is_dir);
        for (k, v) in &wanted {
            if is_dir && k == DEFAULT_ACL.as_bytes() {
                later.push((DEFAULT_ACL, AclValue::Binary(v.clone())));
            } else if let Err(err) = t.set_xattr(k, v) {
                self.warn(format!(
                    "entry {}: cannot set xattr {}: {err}",
                    escape_bytes(&meta.path),
                    escape_bytes(k)
                ));
            }
        }
        if !later.is_empty() {
            self.defer(meta, rel, t, later);
        }
        wanted
    }

    /// Converts the ACL texts that have no binary xattr: into `wanted` when they name
    /// no one, else returned to be resolved at the end.
    fn acls_from_text(
        &mut self,
        meta: &EntryMeta,
        wanted: &mut BTreeMap<Vec<u8>, Vec<u8>>,
        is_dir: bool,
    ) -> Vec<(&'static str, AclValue)> {
        let mut later = Vec::new();
        let acls: [(&'static str, &Option<Vec<u8>>, bool); 2] = [
            ("system.posix_acl_access", &meta.acl_access, true),
            (DEFAULT_ACL, &meta.acl_default, false),
        ];
        for (name, text, access) in acls {
            let Some(text) = text else { continue };
            if wanted.contains_key(name.as_bytes()) || (!access && !is_dir) {
                continue;
            }
            match acl::text_to_xattr(text, &|_, _| None, access) {
                Ok(Some(v)) => {
                    wanted.insert(name.as_bytes().to_vec(), v);
                }
                Ok(None) => {}
                Err(acl::AclError::Unresolved { .. }) => {
                    later.push((name, AclValue::Named(text.clone())))
                }
                Err(err) => self.warn(format!(
                    "entry {}: {name} not restored: {err}",
                    escape_bytes(&meta.path)
                )),
            }
        }
        later
    }

    /// Remembers ACLs to set at the end, on the inode `t` is now.
    fn defer(
        &mut self,
        meta: &EntryMeta,
        rel: &[u8],
        t: &XTarget<'_>,
        later: Vec<(&'static str, AclValue)>,
    ) {
        let identity = match t.identity() {
            Ok(id) => id,
            Err(err) => {
                return self.warn(format!(
                    "entry {}: ACLs not restored: {err}",
                    escape_bytes(&meta.path)
                ))
            }
        };
        for (name, value) in later {
            self.deferred_acls.push(DeferredAcl {
                path: rel.to_vec(),
                name,
                value,
                identity,
            });
        }
    }

    /// End of archive: the deferred ACLs (default ACLs, and names resolved with the
    /// image's passwd/group), then directory times, deepest first, then the
    /// hard-link groups of the manifest.
    fn finish(&mut self) -> Result<(), ExtractError> {
        let list = std::mem::take(&mut self.deferred_acls);
        let (manifest, warnings, budget) =
            (&mut self.summary.manifest, &mut self.warnings, &self.budget);
        let mut stored: Result<(), ExtractError> = Ok(());
        deferred::apply_all(&self.root, list, |d, outcome| match outcome {
            Outcome::Set(Some(v)) => {
                let set = manifest.set_xattr(&d.path, d.name.as_bytes(), v);
                if let (Err(err), true) = (set, stored.is_ok()) {
                    stored = Err(ioe(&d.path, "recording its ACL")(err));
                }
            }
            Outcome::Set(None) => {}
            Outcome::Failed(err) => warnings.push(
                budget,
                format!(
                    "entry {}: {} not restored: {err}",
                    display_path(&d.path),
                    d.name
                ),
            ),
        });
        stored?;
        self.directory_times()?;
        self.summary
            .manifest
            .resolve_hardlinks()
            .map_err(ioe(b"", "grouping the hard links of the manifest"))
    }

    fn note(&mut self, note: String) {
        self.notes.push(&self.budget, note);
    }

    fn warn(&mut self, warning: String) {
        self.warnings.push(&self.budget, warning);
    }

    /// Counts `meta` against the entry, manifest and metadata budgets before it
    /// is extracted: its record in the manifest store (path, link target,
    /// xattrs), and what it keeps in memory until the end (deferred ACLs).
    fn spend(&mut self, meta: &EntryMeta) -> Result<(), ExtractError> {
        let entry = escape_bytes(&meta.path);
        if let Kind::Other(_) = meta.kind {
            // skipped: it keeps only a note, and notes are bounded by count
            return Ok(self.spent.entry(&self.budget, &entry, (0, 0))?);
        }
        let mut record = ENTRY_BOOKKEEPING + (meta.path.len() + meta.link.len()) as u64;
        let mut kept = 0;
        for (k, v) in &meta.xattrs {
            record += (k.len() + v.len()) as u64;
            if k == DEFAULT_ACL.as_bytes() {
                kept += deferred_cost(&meta.path, v.len());
            }
        }
        for text in [&meta.acl_access, &meta.acl_default].into_iter().flatten() {
            record += text.len() as u64;
            kept += deferred_cost(&meta.path, text.len());
        }
        Ok(self.spent.entry(&self.budget, &entry, (record, kept))?)
    }

    /// Directory times, deepest first (setting them earlier would be undone
    /// by every entry written inside), as the manifest has them at the end.
    fn directory_times(&mut self) -> Result<(), ExtractError> {
        self.cache = None;
        let (root, warnings, budget) = (&self.root, &mut self.warnings, &self.budget);
        self.summary
            .manifest
            .directories_deepest_first(|p, sec, nsec| {
                let t = timestamps(Mtime { sec, nsec });
                let res = if p.is_empty() {
                    rustix::fs::futimens(root.fd(), &t).map_err(errno_io)
                } else {
                    let (parent, name) = split_parent(p);
                    root.open_dir(parent).and_then(|d| {
                        rustix::fs::utimensat(&d, name, &t, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(errno_io)
                    })
                };
                if let Err(err) = res {
                    warnings.push(
                        budget,
                        format!("directory {}: times not restored: {err}", display_path(p)),
                    );
                }
            })
            .map_err(ioe(b"", "reading the directories of the manifest"))
    }
}
