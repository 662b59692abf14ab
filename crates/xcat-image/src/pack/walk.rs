//! Pre-order walk of an image tree for the archive writers.
//!
//! The tree is untrusted content (it came from a node), so nothing in it is ever
//! followed: directories are opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)` relative to their parent's fd, entries are
//! `lstat`ed (`AT_SYMLINK_NOFOLLOW`), files are opened `O_NOFOLLOW` and checked to be
//! the inode that was `lstat`ed. Mount points inside the tree are recorded as
//! directories but not entered (a bind mount of the management node's `/proc` into a
//! rootimg must never end up in an archive). Names are visited in byte order, so an
//! archive of the same tree is the same archive. Paths the caller excludes
//! ([`walk_except`]: a statelite tree's own directories) are neither visited nor
//! entered.

use crate::beneath::{list_dir_fd, lstat_at, proc_path, resolve_flags, Root};
use rustix::fs::{Mode, OFlags, Stat};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// One entry of the walk.
pub struct Entry<'a> {
    /// Root-relative path; empty for the root itself.
    pub path: &'a [u8],
    pub stat: &'a Stat,
    dir: &'a OwnedFd,
    name: &'a [u8],
}

/// Errors of a walk: an I/O error on a path, a visitor's own error, or cancellation.
#[derive(Debug, thiserror::Error)]
pub enum WalkError<E: std::error::Error + 'static> {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(transparent)]
    Visit(E),
    #[error("cancelled")]
    Cancelled,
}

impl Entry<'_> {
    /// `st_mode & S_IFMT`.
    pub fn file_type(&self) -> u32 {
        self.stat.st_mode & libc::S_IFMT
    }

    /// Opens the regular file for reading, refusing anything that is not the inode the
    /// walk saw (replaced meanwhile, or a symlink).
    pub fn open(&self) -> io::Result<std::fs::File> {
        let name: &[u8] = if self.name.is_empty() {
            b"."
        } else {
            self.name
        };
        let fd = rustix::fs::openat(
            self.dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        if st.st_ino != self.stat.st_ino || st.st_dev != self.stat.st_dev {
            return Err(io::Error::other("replaced while packing"));
        }
        Ok(std::fs::File::from(fd))
    }

    /// The target of a symlink.
    pub fn read_link(&self) -> io::Result<Vec<u8>> {
        Ok(rustix::fs::readlinkat(self.dir, self.name, Vec::new())?.into_bytes())
    }

    /// All extended attributes (a final symlink is not followed).
    pub fn xattrs(&self) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        crate::manifest::read_xattrs_path(&proc_path(self.dir, self.name)?)
    }

    /// Modification time as (seconds, nanoseconds).
    #[allow(clippy::unnecessary_cast)]
    pub fn mtime(&self) -> (i64, u32) {
        (self.stat.st_mtime as i64, self.stat.st_mtime_nsec as u32)
    }
}

fn io_at<E: std::error::Error>(path: &[u8]) -> impl FnOnce(io::Error) -> WalkError<E> + '_ {
    move |source| WalkError::Io {
        path: crate::util::display_path(path),
        source,
    }
}

/// Walks `root` in pre-order (a directory before its contents, names in byte order),
/// calling `visit` for every entry including the root (empty path). `cancel` is checked
/// before every entry.
pub fn walk<E, F>(root: &Path, cancel: &AtomicBool, visit: F) -> Result<(), WalkError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(&Entry<'_>) -> Result<(), E>,
{
    walk_except(root, &[], cancel, visit)
}

/// [`walk`] leaving out `exclude` (root-relative paths such as `.statelite` or
/// `etc/init.d/statelite`): such an entry is neither visited nor entered.
pub fn walk_except<E, F>(
    root: &Path,
    exclude: &[&str],
    cancel: &AtomicBool,
    visit: F,
) -> Result<(), WalkError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(&Entry<'_>) -> Result<(), E>,
{
    let r = Root::open(root).map_err(io_at(b""))?;
    let rootfd = r.open_dir(b"").map_err(io_at(b""))?;
    walk_from(rootfd, exclude, cancel, visit)
}

/// [`walk`] from an already open directory (e.g. one resolved beneath an image root
/// with [`Root::open_dir`], so no symlink of the image leads the walk elsewhere).
pub fn walk_fd<E, F>(rootfd: OwnedFd, cancel: &AtomicBool, visit: F) -> Result<(), WalkError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(&Entry<'_>) -> Result<(), E>,
{
    walk_from(rootfd, &[], cancel, visit)
}

fn walk_from<E, F>(
    rootfd: OwnedFd,
    exclude: &[&str],
    cancel: &AtomicBool,
    mut visit: F,
) -> Result<(), WalkError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(&Entry<'_>) -> Result<(), E>,
{
    let st = rustix::fs::fstat(&rootfd).map_err(|e| io_at(b"")(e.into()))?;
    visit(&Entry {
        path: b"",
        stat: &st,
        dir: &rootfd,
        name: b"",
    })
    .map_err(WalkError::Visit)?;
    let mut path = Vec::with_capacity(4096);
    let walk = Walk {
        dev: st.st_dev,
        exclude,
        cancel,
    };
    walk_dir(&walk, &rootfd, &mut path, &mut visit)
}

/// What stays the same over one walk.
struct Walk<'a> {
    /// The root's filesystem: mount points beneath it are not entered.
    dev: u64,
    exclude: &'a [&'a str],
    cancel: &'a AtomicBool,
}

impl Walk<'_> {
    fn excluded(&self, path: &[u8]) -> bool {
        self.exclude.iter().any(|x| x.as_bytes() == path)
    }
}

fn walk_dir<E, F>(
    w: &Walk<'_>,
    dir: &OwnedFd,
    path: &mut Vec<u8>,
    visit: &mut F,
) -> Result<(), WalkError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(&Entry<'_>) -> Result<(), E>,
{
    let mut names = list_dir_fd(dir).map_err(io_at(path))?;
    names.sort();
    let base = path.len();
    for name in names {
        if w.cancel.load(Ordering::Relaxed) {
            return Err(WalkError::Cancelled);
        }
        path.truncate(base);
        if base > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        if w.excluded(path) {
            continue;
        }
        let Some(st) = lstat_at(dir, &name).map_err(io_at(path))? else {
            continue; // removed meanwhile
        };
        visit(&Entry {
            path,
            stat: &st,
            dir,
            name: &name,
        })
        .map_err(WalkError::Visit)?;
        #[allow(clippy::unnecessary_cast)]
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR && st.st_dev as u64 == w.dev {
            let sub = rustix::fs::openat2(
                dir,
                &name[..],
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                resolve_flags(),
            )
            .map_err(|e| io_at(path)(e.into()))?;
            walk_dir(w, &sub, path, visit)?;
        }
    }
    path.truncate(base);
    Ok(())
}
