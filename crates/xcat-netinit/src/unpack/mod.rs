//! Unpacking an archive stream into NEWROOT ([`tar::unpack_tar`],
//! [`cpio::unpack_cpio`]), both through one [`Tree`].
//!
//! Confinement: a name with a `..` component or a leading `/` is refused (the
//! packer writes neither; an archive that has one is not ours). Every parent
//! directory is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! ...)` from NEWROOT's descriptor ([`xcat_beneath::Root`]), so an entry "through"
//! a symlink the archive made earlier fails instead of landing outside; the
//! last component is created with `O_CREAT | O_EXCL | O_NOFOLLOW`, `mkdirat`,
//! `symlinkat`, `mknodat` or `linkat` (no `AT_SYMLINK_FOLLOW`) on that parent,
//! and changed with `f*` calls on the new descriptor or `*at` calls that do
//! not follow it. Whatever stands at a name already (an earlier entry of the
//! same name) is removed first, never written through; a directory stays a
//! directory. NEWROOT is a fresh tmpfs that nothing else writes, so a name
//! this process has just created is still what it created.
//!
//! Order of the attributes: data, size, owner (which clears setuid bits and
//! file capabilities), mode, xattrs (`security.capability` among them, after
//! the data since a write clears it too), times. Directory times are set at
//! the end, when nothing more is created inside; so are directories' default
//! ACLs, which would otherwise be inherited by every entry unpacked beneath.
//!
//! Speed: one data buffer of 1 MiB for the whole archive, the parent
//! directories of recent entries kept open (archives list a directory's
//! entries together), no system call that the entry does not need (no chown
//! to the owner a new file already has).

pub mod cpio;
pub mod holes;
pub mod tar;

use crate::CHUNK;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use xcat_beneath::owner::{fchown, lchown_at, Owner};
use xcat_beneath::{explain, lstat_at, normalize, proc_path, split_parent, Root};
use xcat_tar::escape::escape_bytes;
pub use xcat_tar::{Mtime, Xattr};

/// Why an unpack stopped.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream is malformed (not the reading of it: see `Stream`).
    #[error("{0}")]
    Tar(xcat_tar::TarError),
    #[error("malformed cpio archive at byte {offset}: {reason}")]
    Cpio { offset: u64, reason: String },
    /// An entry that would leave NEWROOT or go through a symlink.
    #[error("entry {entry}: {why}")]
    Unsafe { entry: String, why: String },
    #[error("entry {entry}: {op}: {source}")]
    Io {
        entry: String,
        op: &'static str,
        source: io::Error,
    },
    /// Reading the stream failed (the fetching or decompressing stage says why).
    #[error("reading the archive: {0}")]
    Stream(io::Error),
}

impl UnpackError {
    /// Whether the archive itself is at fault (corrupt or hostile).
    pub fn archive_fault(&self) -> bool {
        matches!(
            self,
            UnpackError::Tar(_) | UnpackError::Cpio { .. } | UnpackError::Unsafe { .. }
        )
    }

    /// Whether the tree did not fit (the tmpfs is full).
    pub fn no_space(&self) -> bool {
        let errno = match self {
            UnpackError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        };
        matches!(errno, Some(libc::ENOSPC) | Some(libc::ENOMEM))
    }
}

impl From<xcat_tar::TarError> for UnpackError {
    fn from(e: xcat_tar::TarError) -> UnpackError {
        match e {
            xcat_tar::TarError::Io { source, .. } => UnpackError::Stream(source),
            other => UnpackError::Tar(other),
        }
    }
}

/// What was unpacked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub fifos: u64,
    /// Entries of kinds that are not unpacked (sockets, unknown tar types).
    pub skipped: u64,
    /// Logical bytes of regular files.
    pub bytes: u64,
}

/// The attributes every entry carries.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Permission bits with setuid, setgid, sticky (07777).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: Mtime,
}

/// Device and FIFO kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Fifo,
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
}

/// Parent directories kept open.
const CACHED_DIRS: usize = 16;

/// The xattr set at the end, not with its directory (see the module documentation).
const DEFAULT_ACL: &[u8] = b"system.posix_acl_default";

/// NEWROOT while an archive is unpacked into it.
pub struct Tree<'r> {
    root: &'r Root,
    /// Recently used directories, most recent first.
    dirs: Vec<(Vec<u8>, Rc<OwnedFd>)>,
    dir_times: Vec<(Vec<u8>, Mtime)>,
    /// (directory, value) of default ACLs, set at the end.
    default_acls: Vec<(Vec<u8>, Vec<u8>)>,
    me: (u32, u32),
    buf: Vec<u8>,
    summary: Summary,
    xattr_failures: u64,
    first_xattr_failure: Option<String>,
    say: crate::error::Say,
}

/// The error mapper for an operation on `entry`.
fn at<'a>(entry: &'a [u8], op: &'static str) -> impl Fn(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        entry: escape_bytes(entry),
        op,
        source,
    }
}

/// The error mapper for resolving the directory of `entry`: a refusal of the
/// confined lookup (through a symlink, out of the root, through a file) is
/// [`UnpackError::Unsafe`].
fn resolving(entry: &[u8]) -> impl Fn(io::Error) -> UnpackError + '_ {
    move |source| match explain(&source) {
        Some(why) => UnpackError::Unsafe {
            entry: escape_bytes(entry),
            why: why.to_string(),
        },
        None => at(entry, "opening its directory")(source),
    }
}

/// The root-relative form of an archive name; `..` and absolute names refused.
pub fn relative(raw: &[u8]) -> Result<Vec<u8>, UnpackError> {
    let unsafe_name = |why: &str| UnpackError::Unsafe {
        entry: escape_bytes(raw),
        why: why.to_string(),
    };
    if raw.starts_with(b"/") {
        return Err(unsafe_name("is an absolute name"));
    }
    normalize(raw).map_err(unsafe_name)
}

fn timestamps(m: Mtime) -> Timestamps {
    let t = Timespec {
        tv_sec: m.sec,
        tv_nsec: m.nsec.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl<'r> Tree<'r> {
    pub fn new(root: &'r Root, say: crate::error::Say) -> Tree<'r> {
        Tree {
            root,
            dirs: Vec::with_capacity(CACHED_DIRS),
            dir_times: Vec::new(),
            default_acls: Vec::new(),
            me: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            buf: vec![0u8; CHUNK],
            summary: Summary::default(),
            xattr_failures: 0,
            first_xattr_failure: None,
            say,
        }
    }

    /// The directory `rel` (root-relative), from the cache or opened beneath
    /// the root; missing directories are created (0755, as GNU tar does).
    fn dir(&mut self, rel: &[u8]) -> io::Result<Rc<OwnedFd>> {
        if let Some(i) = self.dirs.iter().position(|(k, _)| k == rel) {
            let fd = self.dirs[i].1.clone();
            if i > 0 {
                self.dirs.swap(0, i);
            }
            return Ok(fd);
        }
        let fd = match self.root.open_dir(rel) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.root.ensure_dir(rel, Mode::from_raw_mode(0o755))?.0
            }
            Err(e) => return Err(e),
        };
        Ok(self.remember(rel.to_vec(), fd))
    }

    fn remember(&mut self, rel: Vec<u8>, fd: OwnedFd) -> Rc<OwnedFd> {
        let fd = Rc::new(fd);
        if self.dirs.len() == CACHED_DIRS {
            self.dirs.pop();
        }
        self.dirs.insert(0, (rel, fd.clone()));
        fd
    }

    /// The parent directory of `rel` and its last component.
    fn parent<'p>(
        &mut self,
        raw: &[u8],
        rel: &'p [u8],
    ) -> Result<(Rc<OwnedFd>, &'p [u8]), UnpackError> {
        let (parent, name) = split_parent(rel);
        let dir = self.dir(parent).map_err(resolving(raw))?;
        Ok((dir, name))
    }

    /// Runs `make` (a creation with "fail if it exists" semantics); if the name
    /// is taken, removes what is there and runs it once more.
    fn make<T>(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        make: impl Fn(&OwnedFd, &[u8]) -> rustix::io::Result<T>,
    ) -> io::Result<T> {
        match make(dir, name) {
            Err(Errno::EXIST) => {
                self.remove(dir, name)?;
                Ok(make(dir, name)?)
            }
            r => Ok(r?),
        }
    }

    /// Removes `name` (a symlink itself, a directory only if empty).
    fn remove(&mut self, dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
        let Some(st) = lstat_at(dir, name)? else {
            return Ok(());
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
            // a cached descriptor may be of the directory just removed
            self.dirs.clear();
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        }
        Ok(())
    }

    /// The owner to set, if it differs from the creator's (ours). Only root
    /// gives files away; run as anyone else (tests), entries stay the
    /// caller's, as GNU tar does for other users.
    fn owner(&self, m: &Meta) -> Option<Owner> {
        if self.me.0 != 0 {
            return None;
        }
        Owner::new(m.uid, m.gid).filter(|o| (o.uid(), o.gid()) != self.me)
    }

    fn xattr_failed(&mut self, raw: &[u8], name: &[u8], e: io::Error) {
        self.xattr_failures += 1;
        if self.first_xattr_failure.is_none() {
            self.first_xattr_failure = Some(format!(
                "{} on {}: {e}",
                escape_bytes(name),
                escape_bytes(raw)
            ));
        }
    }

    /// A regular file: `size` logical bytes whose stored data, pulled from
    /// `src` (0 = the stream ended), fills the segments of `map` (a sparse
    /// map; `None`: one segment, the whole file).
    pub fn file<'x>(
        &mut self,
        raw: &[u8],
        m: &Meta,
        size: u64,
        map: Option<&[(u64, u64)]>,
        xattrs: impl IntoIterator<Item = &'x Xattr>,
        mut src: impl FnMut(&mut [u8]) -> Result<usize, UnpackError>,
    ) -> Result<(), UnpackError> {
        let rel = relative(raw)?;
        let (dir, name) = self.parent(raw, &rel)?;
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = self
            .make(&dir, name, |d, n| {
                rustix::fs::openat(d, n, flags, Mode::from_raw_mode(0o600))
            })
            .map_err(at(raw, "creating it"))?;
        let file = File::from(fd);
        let whole = [(0, size)];
        let mut end = 0u64;
        for &(offset, len) in map.unwrap_or(&whole) {
            end = end.max(self.segment(raw, &file, offset, len, &mut src)?);
        }
        if end != size {
            file.set_len(size).map_err(at(raw, "setting its size"))?;
        }
        if let Some(o) = self.owner(m) {
            fchown(&file, o).map_err(at(raw, "setting its owner"))?;
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(m.mode & 0o7777))
            .map_err(|e| at(raw, "setting its mode")(e.into()))?;
        for (n, v) in xattrs {
            if let Err(e) = rustix::fs::fsetxattr(&file, &n[..], v, XattrFlags::empty()) {
                self.xattr_failed(raw, n, e.into());
            }
        }
        rustix::fs::futimens(&file, &timestamps(m.mtime))
            .map_err(|e| at(raw, "setting its times")(e.into()))?;
        self.summary.files += 1;
        self.summary.bytes += size;
        Ok(())
    }

    /// Copies `len` stored bytes to `offset..`; returns the end of the last write.
    fn segment(
        &mut self,
        raw: &[u8],
        file: &File,
        mut offset: u64,
        len: u64,
        src: &mut impl FnMut(&mut [u8]) -> Result<usize, UnpackError>,
    ) -> Result<u64, UnpackError> {
        let mut left = len;
        let mut end = 0;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let n = src(&mut self.buf[..want])?;
            if n == 0 {
                return Err(UnpackError::Stream(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the data of {} ends early", escape_bytes(raw)),
                )));
            }
            if let Some(e) =
                holes::write_at(file, &self.buf[..n], offset).map_err(at(raw, "writing it"))?
            {
                end = e;
            }
            offset += n as u64;
            left -= n as u64;
        }
        Ok(end)
    }

    /// A directory (the root itself for `.`); an existing one is kept.
    pub fn directory<'x>(
        &mut self,
        raw: &[u8],
        m: &Meta,
        xattrs: impl IntoIterator<Item = &'x Xattr>,
    ) -> Result<(), UnpackError> {
        let rel = relative(raw)?;
        let fd = if rel.is_empty() {
            self.dir(b"").map_err(at(raw, "opening it"))?
        } else {
            self.make_directory(raw, &rel)?
        };
        if let Some(o) = self.owner(m) {
            fchown(&*fd, o).map_err(at(raw, "setting its owner"))?;
        }
        rustix::fs::fchmod(&*fd, Mode::from_raw_mode(m.mode & 0o7777))
            .map_err(|e| at(raw, "setting its mode")(e.into()))?;
        for (n, v) in xattrs {
            if n == DEFAULT_ACL {
                self.default_acls.push((rel.clone(), v.clone()));
            } else if let Err(e) = rustix::fs::fsetxattr(&*fd, &n[..], v, XattrFlags::empty()) {
                self.xattr_failed(raw, n, e.into());
            }
        }
        self.dir_times.push((rel, m.mtime));
        self.summary.dirs += 1;
        Ok(())
    }

    fn make_directory(&mut self, raw: &[u8], rel: &[u8]) -> Result<Rc<OwnedFd>, UnpackError> {
        let (dir, name) = self.parent(raw, rel)?;
        let mkdir = |d: &OwnedFd, n: &[u8]| rustix::fs::mkdirat(d, n, Mode::from_raw_mode(0o700));
        match mkdir(&dir, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = lstat_at(&*dir, name).map_err(at(raw, "looking at it"))?;
                if st.is_none_or(|st| st.st_mode & libc::S_IFMT != libc::S_IFDIR) {
                    self.make(&dir, name, mkdir)
                        .map_err(at(raw, "creating it"))?;
                }
            }
            Err(e) => return Err(at(raw, "creating it")(e.into())),
        }
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&*dir, name, flags, Mode::empty())
            .map_err(|e| at(raw, "opening it")(e.into()))?;
        Ok(self.remember(rel.to_vec(), fd))
    }

    /// A symbolic link (its target is stored as given: it is never followed here).
    pub fn symlink<'x>(
        &mut self,
        raw: &[u8],
        target: &[u8],
        m: &Meta,
        xattrs: impl IntoIterator<Item = &'x Xattr>,
    ) -> Result<(), UnpackError> {
        let rel = relative(raw)?;
        let (dir, name) = self.parent(raw, &rel)?;
        self.make(&dir, name, |d, n| rustix::fs::symlinkat(target, d, n))
            .map_err(at(raw, "creating it"))?;
        self.finish_node(raw, &dir, name, m, None, xattrs)?;
        self.summary.symlinks += 1;
        Ok(())
    }

    /// A FIFO or device node.
    pub fn node<'x>(
        &mut self,
        raw: &[u8],
        kind: Node,
        m: &Meta,
        xattrs: impl IntoIterator<Item = &'x Xattr>,
    ) -> Result<(), UnpackError> {
        let rel = relative(raw)?;
        let (dir, name) = self.parent(raw, &rel)?;
        let (ft, dev) = match kind {
            Node::Fifo => (FileType::Fifo, 0),
            Node::Char { major, minor } => {
                (FileType::CharacterDevice, rustix::fs::makedev(major, minor))
            }
            Node::Block { major, minor } => {
                (FileType::BlockDevice, rustix::fs::makedev(major, minor))
            }
        };
        let mode = Mode::from_raw_mode(m.mode & 0o777);
        self.make(&dir, name, |d, n| rustix::fs::mknodat(d, n, ft, mode, dev))
            .map_err(at(raw, "creating it"))?;
        self.finish_node(raw, &dir, name, m, Some(m.mode), xattrs)?;
        match kind {
            Node::Fifo => self.summary.fifos += 1,
            _ => self.summary.devices += 1,
        }
        Ok(())
    }

    /// Owner, mode (`None` for a symlink, which has none), xattrs and times of
    /// a name just created in `dir`, none of which follows it.
    fn finish_node<'x>(
        &mut self,
        raw: &[u8],
        dir: &OwnedFd,
        name: &[u8],
        m: &Meta,
        mode: Option<u32>,
        xattrs: impl IntoIterator<Item = &'x Xattr>,
    ) -> Result<(), UnpackError> {
        if let Some(o) = self.owner(m) {
            lchown_at(dir, name, o).map_err(at(raw, "setting its owner"))?;
        }
        if let Some(mode) = mode {
            // a node this process has just made, not a symlink: nothing to follow
            rustix::fs::chmodat(
                dir,
                name,
                Mode::from_raw_mode(mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|e| at(raw, "setting its mode")(e.into()))?;
        }
        let mut xattrs = xattrs.into_iter().peekable();
        if xattrs.peek().is_some() {
            let path = proc_path(dir, name).map_err(at(raw, "naming it"))?;
            for (n, v) in xattrs {
                if let Err(e) = rustix::fs::lsetxattr(&path, &n[..], v, XattrFlags::empty()) {
                    self.xattr_failed(raw, n, e.into());
                }
            }
        }
        rustix::fs::utimensat(dir, name, &timestamps(m.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| at(raw, "setting its times")(e.into()))?;
        Ok(())
    }

    /// A hard link to `target`, an entry unpacked earlier.
    pub fn hardlink(&mut self, raw: &[u8], target: &[u8]) -> Result<(), UnpackError> {
        let rel = relative(raw)?;
        let to = relative(target)?;
        if rel == to {
            return Ok(());
        }
        let (tdir, tname) = self.parent(target, &to)?;
        let (dir, name) = self.parent(raw, &rel)?;
        self.make(&dir, name, |d, n| {
            rustix::fs::linkat(&*tdir, tname, d, n, AtFlags::empty())
        })
        .map_err(at(raw, "linking it"))?;
        self.summary.hardlinks += 1;
        Ok(())
    }

    /// An entry of a kind that is not unpacked.
    pub fn skip(&mut self) {
        self.summary.skipped += 1;
    }

    /// Sets what waited for the end (default ACLs, then directory times) and
    /// says what could not be set.
    pub fn finish(mut self) -> Result<Summary, UnpackError> {
        for (rel, value) in std::mem::take(&mut self.default_acls) {
            let res = self.root.open_dir(&rel).and_then(|fd| {
                Ok(rustix::fs::fsetxattr(
                    &fd,
                    DEFAULT_ACL,
                    &value,
                    XattrFlags::empty(),
                )?)
            });
            if let Err(e) = res {
                self.xattr_failed(&rel, DEFAULT_ACL, e);
            }
        }
        self.dirs.clear();
        for (rel, mtime) in self.dir_times.iter().rev() {
            let fd = match self.root.open_dir(rel) {
                Ok(fd) => fd,
                // replaced by a later entry of the same name
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(at(rel, "opening it")(e)),
            };
            rustix::fs::futimens(&fd, &timestamps(*mtime))
                .map_err(|e| at(rel, "setting its times")(e.into()))?;
        }
        if let Some(first) = &self.first_xattr_failure {
            (self.say)(&format!(
                "{} extended attribute(s) could not be set (the kernel may lack support for them), first: {first}",
                self.xattr_failures
            ));
        }
        Ok(self.summary)
    }
}
