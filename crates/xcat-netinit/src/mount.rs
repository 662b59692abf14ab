//! The mounts `boot` makes, each held by a [`Mounted`] guard that unmounts it
//! when dropped, unless [`Mounted::keep`] said it is the result: a failed
//! boot leaves nothing mounted behind it.

use crate::cmdline::Size;
use rustix::mount::{MountFlags, UnmountFlags};
use std::io;
use std::path::{Path, PathBuf};

/// A mount this process made.
#[derive(Debug)]
pub struct Mounted {
    at: PathBuf,
    keep: bool,
}

impl Mounted {
    pub fn path(&self) -> &Path {
        &self.at
    }

    /// Leaves it mounted.
    pub fn keep(mut self) {
        self.keep = true;
    }

    /// Unmounts now, saying whether that worked.
    pub fn unmount(mut self) -> io::Result<()> {
        self.keep = true;
        unmount(&self.at)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.keep {
            let _ = unmount(&self.at);
        }
    }
}

/// Unmounts `at`; if it is busy, detaches it (it goes once unused).
pub fn unmount(at: &Path) -> io::Result<()> {
    match rustix::mount::unmount(at, UnmountFlags::empty()) {
        Err(rustix::io::Errno::BUSY) => Ok(rustix::mount::unmount(at, UnmountFlags::DETACH)?),
        r => Ok(r?),
    }
}

/// The tmpfs `size=` option's value.
pub fn size_option(s: Size) -> String {
    match s {
        Size::Bytes(b) => b.to_string(),
        Size::Percent(p) => format!("{p}%"),
    }
}

/// A tmpfs at `at` (created if missing), of `size` (the kernel's default, half
/// the RAM, when `None`), its root directory mode 0755.
pub fn tmpfs(at: &Path, size: Option<Size>) -> io::Result<Mounted> {
    std::fs::create_dir_all(at)?;
    let mut data = String::from("mode=0755");
    if let Some(s) = size {
        data.push_str(&format!(",size={}", size_option(s)));
    }
    mount("tmpfs", at, "tmpfs", MountFlags::empty(), &data)
}

/// The squashfs on the block device `dev`, read-only.
pub fn squashfs(dev: &Path, at: &Path) -> io::Result<Mounted> {
    std::fs::create_dir_all(at)?;
    mount(dev, at, "squashfs", MountFlags::RDONLY, "")
}

/// An overlay of the read-only `lower` with `upper` and `work` (on one
/// writable file system) at `at`.
pub fn overlay(lower: &Path, upper: &Path, work: &Path, at: &Path) -> io::Result<Mounted> {
    std::fs::create_dir_all(at)?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        option_path(lower)?,
        option_path(upper)?,
        option_path(work)?
    );
    mount("overlay", at, "overlay", MountFlags::empty(), &data)
}

/// A path as a mount option value: the separators of the option string
/// cannot be escaped there, so a path holding one is refused.
fn option_path(p: &Path) -> io::Result<String> {
    let s = p
        .to_str()
        .filter(|s| !s.contains([',', ':', '\\']))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} cannot be given to overlayfs", p.display()),
            )
        })?;
    Ok(s.to_string())
}

/// One mount(2), held by its guard.
pub fn mount(
    src: impl AsRef<Path>,
    at: &Path,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> io::Result<Mounted> {
    rustix::mount::mount(src.as_ref(), at, fstype, flags, data)?;
    Ok(Mounted {
        at: at.to_path_buf(),
        keep: false,
    })
}

/// Whether `p` is a mount point: it lies on another file system than its
/// parent (the same inode as its parent: the root of the namespace).
pub fn is_mount_point(p: &Path) -> bool {
    let (Ok(st), Ok(up)) = (rustix::fs::lstat(p), rustix::fs::lstat(p.join(".."))) else {
        return false;
    };
    st.st_dev != up.st_dev || st.st_ino == up.st_ino
}

/// Unmounts what an earlier, interrupted run left at `p` (every layer of it).
/// Returns how many mounts went.
pub fn unmount_stale(p: &Path) -> usize {
    let mut n = 0;
    while n < 16 && is_mount_point(p) && unmount(p).is_ok() {
        n += 1;
    }
    n
}
