//! The only module of this crate allowed to use `unsafe`: rustix 0.38 makes
//! constructing a `Uid` / `Gid` from a raw number `unsafe`, because `-1` means "leave
//! unchanged" to the kernel. We reject that value before constructing. The owner
//! type and its chown calls live in xcat-beneath (re-exported here).

use rustix::fs::{Gid, Uid};

pub use xcat_beneath::owner::{chown_empty_path, fchown, Owner};

/// A local user's credentials, for a thread that acts for that user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Credentials {
    /// `None` when an id is `u32::MAX` (the "leave unchanged" sentinel).
    pub fn new(uid: u32, gid: u32, groups: Vec<u32>) -> Option<Credentials> {
        let ok = |id: &u32| *id != u32::MAX;
        (ok(&uid) && ok(&gid) && groups.iter().all(ok)).then_some(Credentials { uid, gid, groups })
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Gives the calling thread, and it alone, these credentials for good
    /// (real, effective and saved ids, and the supplementary groups): Linux keeps
    /// credentials per thread, and rustix makes these raw system calls, without
    /// the C library's broadcast to every thread. Call it only on a thread made
    /// for the purpose, which ends afterwards; the daemon's other threads stay
    /// root.
    pub fn assume_in_this_thread(&self) -> std::io::Result<()> {
        // SAFETY: `Credentials::new` refused the u32::MAX sentinel for every id,
        // the only invariant `from_raw` asks callers to uphold.
        let (uid, gid, groups) = unsafe {
            (
                Uid::from_raw(self.uid),
                Gid::from_raw(self.gid),
                self.groups
                    .iter()
                    .map(|g| Gid::from_raw(*g))
                    .collect::<Vec<_>>(),
            )
        };
        // Groups and gid first: once the uid is not root, they cannot change.
        rustix::thread::set_thread_groups(&groups)?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
        Ok(())
    }
}
