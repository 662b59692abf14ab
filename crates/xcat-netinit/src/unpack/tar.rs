//! A tar stream (the packer's pax with xattrs, or anything GNU tar writes)
//! through the shared reader of `xcat-tar` into a [`Tree`].

use super::{Meta, Node, Summary, Tree, UnpackError};
use crate::error::Say;
use std::io::Read;
use xcat_beneath::Root;
use xcat_tar::{Kind, Limits, TarReader};

/// The reader's remarks said at most (each is one line).
const NOTES: usize = 5;

/// Unpacks the tar stream `r` into `root`.
pub fn unpack_tar(r: impl Read, root: &Root, say: Say) -> Result<Summary, UnpackError> {
    let mut tr = TarReader::new(r, Limits::default(), None);
    let mut tree = Tree::new(root, say.clone());
    let mut acl_text = 0u64;
    while let Some(e) = tr.next_entry()? {
        if e.acl_access.is_some() || e.acl_default.is_some() {
            acl_text += 1;
        }
        let m = Meta {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
        };
        let (path, x) = (&e.path[..], &e.xattrs);
        match e.kind {
            Kind::File => tree.file(path, &m, e.size, e.sparse.as_deref(), x, |b| {
                Ok(tr.read_data(b)?)
            })?,
            Kind::Directory => tree.directory(path, &m, x)?,
            Kind::Symlink => tree.symlink(path, &e.link, &m, x)?,
            Kind::HardLink => tree.hardlink(path, &e.link)?,
            Kind::CharDevice => tree.node(path, char_dev(e.devmajor, e.devminor), &m, x)?,
            Kind::BlockDevice => tree.node(path, block_dev(e.devmajor, e.devminor), &m, x)?,
            Kind::Fifo => tree.node(path, Node::Fifo, &m, x)?,
            Kind::Other(_) => tree.skip(),
        }
    }
    for note in tr.notes.iter().take(NOTES) {
        say(&format!("tar: {note}"));
    }
    if acl_text > 0 {
        say(&format!(
            "tar: {acl_text} entries carry ACLs as SCHILY.acl text, which is not applied \
             (the packer stores ACLs as system.posix_acl_* xattrs)"
        ));
    }
    tree.finish()
}

fn char_dev(major: u32, minor: u32) -> Node {
    Node::Char { major, minor }
}

fn block_dev(major: u32, minor: u32) -> Node {
    Node::Block { major, minor }
}
