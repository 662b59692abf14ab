//! `xcat-netinit nfsroot NEWROOT`: a statelite node's read-only NFS root
//! (`root=nfs:<server>:<dir>[:<options>]`, as nodeset writes it).
//!
//! The tree is mounted read-only under the run directory, the initrd's
//! `/rootfs-additions` (the netboot DHCP, host key and status units) copied
//! into a small tmpfs there, and NEWROOT made a read-only overlay of the two,
//! the additions on top: the shared tree is never written and no node can
//! write to it, yet every node gets the units a stateless node gets.
//! The run directory moves into the image with `/run`, so the layers stay.

use crate::cmdline::Cmdline;
use crate::copy;
use crate::error::{Exit, Failure, Say};
use crate::mount;
use crate::nfs::{self, Share};
use rustix::mount::MountFlags;
use std::path::Path;

/// Mounts the NFS root at `newroot`; `additions` is the initrd's
/// `/rootfs-additions`, `rundir` where the layers go.
pub fn mount_root(
    newroot: &Path,
    cmd: &Cmdline,
    additions: &Path,
    rundir: &Path,
    say: &Say,
) -> Result<String, Failure> {
    let value = cmd.nfsroot.as_deref().ok_or_else(|| {
        Failure::new(
            Exit::Cmdline,
            "nfsroot",
            "the command line has no root=nfs:<server>:<dir>",
            "run nodeset for this node again",
        )
    })?;
    let (share, opts) = Share::parse_root(value).map_err(|e| {
        Failure::new(
            Exit::Cmdline,
            "root=nfs:",
            e.to_string(),
            "correct noderes.nfsserver or the image directory, then nodeset",
        )
    })?;
    let retry = |what: &str, e: std::io::Error| {
        Failure::new(
            Exit::Retry,
            what.to_string(),
            e.to_string(),
            "check the NFS server and its export of the image (osimage.nfsrootopts)",
        )
    };
    let tree = rundir.join("nfsroot");
    let top = rundir.join("additions");
    for p in [&tree, &top, newroot] {
        mount::unmount_stale(p);
    }
    let tree_mount = nfs::mount_retrying(&share, &tree, &opts, true, nfs::default_retry(), say)
        .map_err(|e| retry(&format!("mounting the NFS root {share}"), e))?;
    let top_mount = mount::tmpfs(&top, None)
        .map_err(|e| retry("mounting a tmpfs for the rootfs additions", e))?;
    if additions.is_dir() {
        copy::copy_all(additions, &top).map_err(|e| retry("copying the rootfs additions", e))?;
    }
    std::fs::create_dir_all(newroot).map_err(|e| retry("making NEWROOT", e))?;
    let data = format!("lowerdir={}:{}", top.display(), tree.display());
    let root = mount::mount("overlay", newroot, "overlay", MountFlags::RDONLY, &data)
        .map_err(|e| retry("mounting the read-only overlay on the NFS root", e))?;
    root.keep();
    top_mount.keep();
    tree_mount.keep();
    Ok(share.to_string())
}
