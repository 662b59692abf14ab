//! A cpio "newc" stream (`070701`, and `070702` whose checksums are not
//! checked: the whole file's SHA-256 is) into a [`Tree`].
//!
//! Hard links: entries of one inode (same `ino` and device, `nlink` > 1) are
//! one file. By the convention of GNU cpio and the kernel's initramfs, only
//! the last of them carries the data; an earlier, empty one is made first and
//! linked again to the one with data when it comes.

use super::{Meta, Mtime, Node, Summary, Tree, UnpackError, Xattr};
use crate::error::Say;
use std::collections::HashMap;
use std::io::{self, Read};
use xcat_beneath::Root;

const HEADER: usize = 110;
/// Longest name, with its NUL (Linux's `PATH_MAX`).
const MAX_NAME: u64 = 4096;
const TRAILER: &[u8] = b"TRAILER!!!";
const NO_XATTRS: &[Xattr] = &[];

/// The fields of a newc header this unpacker uses.
#[derive(Debug, Clone, Copy)]
struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    size: u64,
    dev: (u32, u32),
    rdev: (u32, u32),
}

/// The entries of one hard-linked inode seen so far.
#[derive(Default)]
struct Group {
    /// The name whose inode the others share.
    holder: Vec<u8>,
    members: Vec<Vec<u8>>,
}

/// Unpacks the cpio newc stream `r` into `root`.
pub fn unpack_cpio(r: impl Read, root: &Root, say: Say) -> Result<Summary, UnpackError> {
    let mut c = CpioReader {
        r,
        offset: 0,
        remaining: 0,
        padding: 0,
    };
    let mut tree = Tree::new(root, say);
    let mut groups: HashMap<(u32, u32, u32), Group> = HashMap::new();
    let mut name = Vec::with_capacity(256);
    loop {
        let h = c.header(&mut name)?;
        if name == TRAILER {
            break;
        }
        let m = Meta {
            mode: h.mode & 0o7777,
            uid: h.uid.into(),
            gid: h.gid.into(),
            mtime: Mtime {
                sec: h.mtime.into(),
                nsec: 0,
            },
        };
        match h.mode & libc::S_IFMT {
            libc::S_IFREG if h.nlink > 1 => {
                let g = groups.entry((h.dev.0, h.dev.1, h.ino)).or_default();
                linked_file(&mut tree, &mut c, g, &name, &m, h.size)?
            }
            libc::S_IFREG => tree.file(&name, &m, h.size, None, NO_XATTRS, |b| c.data(b))?,
            libc::S_IFDIR => tree.directory(&name, &m, NO_XATTRS)?,
            libc::S_IFLNK => {
                let target = c.link_target(&name, h.size)?;
                tree.symlink(&name, &target, &m, NO_XATTRS)?
            }
            libc::S_IFCHR => tree.node(
                &name,
                Node::Char {
                    major: h.rdev.0,
                    minor: h.rdev.1,
                },
                &m,
                NO_XATTRS,
            )?,
            libc::S_IFBLK => tree.node(
                &name,
                Node::Block {
                    major: h.rdev.0,
                    minor: h.rdev.1,
                },
                &m,
                NO_XATTRS,
            )?,
            libc::S_IFIFO => tree.node(&name, Node::Fifo, &m, NO_XATTRS)?,
            // sockets (a packer never stores them) and unknown types
            _ => tree.skip(),
        }
    }
    tree.finish()
}

/// One entry of a hard-linked inode; see the module documentation.
fn linked_file(
    tree: &mut Tree<'_>,
    c: &mut CpioReader<impl Read>,
    g: &mut Group,
    name: &[u8],
    m: &Meta,
    size: u64,
) -> Result<(), UnpackError> {
    if size == 0 && !g.holder.is_empty() {
        tree.hardlink(name, &g.holder)?;
    } else {
        tree.file(name, m, size, None, NO_XATTRS, |b| c.data(b))?;
        // the earlier names (all empty) take this inode
        for other in &g.members {
            tree.hardlink(other, name)?;
        }
        g.holder = name.to_vec();
    }
    g.members.push(name.to_vec());
    Ok(())
}

struct CpioReader<R> {
    r: R,
    offset: u64,
    /// Data of the current entry not read yet, and the padding after it.
    remaining: u64,
    padding: u64,
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

impl<R: Read> CpioReader<R> {
    fn malformed(&self, reason: impl Into<String>) -> UnpackError {
        UnpackError::Cpio {
            offset: self.offset,
            reason: reason.into(),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), UnpackError> {
        let n = crate::pipeline::read_full(&mut self.r, buf).map_err(UnpackError::Stream)?;
        self.offset += n as u64;
        if n < buf.len() {
            return Err(self.malformed(format!("the archive ends inside {what}")));
        }
        Ok(())
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), UnpackError> {
        let got =
            io::copy(&mut (&mut self.r).take(n), &mut io::sink()).map_err(UnpackError::Stream)?;
        self.offset += got;
        if got < n {
            return Err(self.malformed(format!("the archive ends inside {what}")));
        }
        Ok(())
    }

    /// The next header and its name (into `name`, without the NUL); what the
    /// previous entry left unread is skipped first.
    fn header(&mut self, name: &mut Vec<u8>) -> Result<Header, UnpackError> {
        let rest = self.remaining + self.padding;
        self.skip(rest, "an entry's data")?;
        let mut h = [0u8; HEADER];
        self.read_exact(&mut h, "a header")?;
        if &h[..6] != b"070701" && &h[..6] != b"070702" {
            return Err(self.malformed("not a cpio newc header (magic 070701)"));
        }
        let mut f = [0u32; 13];
        for (i, v) in f.iter_mut().enumerate() {
            let field = &h[6 + 8 * i..14 + 8 * i];
            *v = std::str::from_utf8(field)
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or_else(|| self.malformed("a header field is not 8 hex digits"))?;
        }
        let namesize = u64::from(f[11]);
        if namesize == 0 || namesize > MAX_NAME {
            return Err(self.malformed(format!("name size {namesize}")));
        }
        name.clear();
        name.resize(namesize as usize, 0);
        let mut buf = std::mem::take(name);
        let read = self.read_exact(&mut buf, "a name");
        *name = buf;
        read?;
        if name.pop() != Some(0) || name.contains(&0) {
            return Err(self.malformed("a name that is not NUL-terminated"));
        }
        self.skip(pad4(HEADER as u64 + namesize), "a name's padding")?;
        let size = u64::from(f[6]);
        self.remaining = size;
        self.padding = pad4(size);
        Ok(Header {
            ino: f[0],
            mode: f[1],
            uid: f[2],
            gid: f[3],
            nlink: f[4],
            mtime: f[5],
            size,
            dev: (f[7], f[8]),
            rdev: (f[9], f[10]),
        })
    }

    /// Up to `buf.len()` bytes of the current entry's data; 0 at its end.
    fn data(&mut self, buf: &mut [u8]) -> Result<usize, UnpackError> {
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = loop {
            match self.r.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => break r.map_err(UnpackError::Stream)?,
            }
        };
        if n == 0 {
            return Err(self.malformed("the archive ends inside an entry's data"));
        }
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }

    /// A symlink's data: its target.
    fn link_target(&mut self, name: &[u8], size: u64) -> Result<Vec<u8>, UnpackError> {
        let bad = |c: &Self| {
            c.malformed(format!(
                "symlink {}: a target of {size} bytes",
                xcat_tar::escape::escape_bytes(name)
            ))
        };
        if size == 0 || size >= MAX_NAME {
            return Err(bad(self));
        }
        let mut t = vec![0u8; size as usize];
        self.read_exact(&mut t, "a symlink target")?;
        self.remaining = 0;
        if t.contains(&0) {
            return Err(bad(self));
        }
        Ok(t)
    }
}
