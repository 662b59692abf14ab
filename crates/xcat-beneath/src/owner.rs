//! The one module of this crate allowed to use `unsafe`: rustix 0.38 makes
//! constructing a `Uid` / `Gid` from a raw number `unsafe`, because `-1` means "leave
//! unchanged" to the kernel. [`Owner`] rejects that value before constructing.

use rustix::fs::{AtFlags, Gid, Uid};
use std::os::fd::AsFd;

/// A uid/gid pair that is known not to be the `-1` sentinel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    /// Builds an owner; `None` when either id does not fit in 32 bits or is
    /// `u32::MAX` (which chown would treat as "do not change").
    pub fn new(uid: u64, gid: u64) -> Option<Owner> {
        let uid = u32::try_from(uid).ok().filter(|&u| u != u32::MAX)?;
        let gid = u32::try_from(gid).ok().filter(|&g| g != u32::MAX)?;
        Some(Owner { uid, gid })
    }

    pub fn uid(self) -> u32 {
        self.uid
    }

    pub fn gid(self) -> u32 {
        self.gid
    }

    fn ids(self) -> (Uid, Gid) {
        // SAFETY: `Owner::new` guarantees neither id is u32::MAX (the -1 sentinel),
        // which is the only invariant `from_raw` asks callers to uphold.
        unsafe { (Uid::from_raw(self.uid), Gid::from_raw(self.gid)) }
    }
}

/// `fchown` on an open file or directory.
pub fn fchown(fd: impl AsFd, owner: Owner) -> std::io::Result<()> {
    let (u, g) = owner.ids();
    rustix::fs::fchown(fd, Some(u), Some(g))?;
    Ok(())
}

/// `fchownat(fd, "", AT_EMPTY_PATH)`: changes the inode `fd` refers to, which may be an
/// `O_PATH` descriptor of a symlink or device node (plain `fchown` refuses those).
pub fn chown_empty_path(fd: impl AsFd, owner: Owner) -> std::io::Result<()> {
    let (u, g) = owner.ids();
    rustix::fs::chownat(fd, c"", Some(u), Some(g), AtFlags::EMPTY_PATH)?;
    Ok(())
}

/// `fchownat(dir, name, AT_SYMLINK_NOFOLLOW)`: changes `name` in the directory `dir`
/// itself (a symlink is changed, never followed).
pub fn lchown_at(dir: impl AsFd, name: &[u8], owner: Owner) -> std::io::Result<()> {
    let (u, g) = owner.ids();
    rustix::fs::chownat(dir, name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}
