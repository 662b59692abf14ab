//! A streaming writer of the cpio "newc" format (`070701`), the format the Linux kernel
//! unpacks as initramfs and xCAT's `rootimg.cpio.*` uses.
//!
//! Layout of an entry: a 110-byte ASCII header (magic and 13 fields of 8 hex digits:
//! ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
//! rdevminor, namesize including the NUL, check), the name and a NUL padded to a
//! multiple of 4, then the data padded to a multiple of 4. A symlink's data is its
//! target. The archive ends with an entry named `TRAILER!!!` and is padded to 512
//! bytes as GNU cpio does.
//!
//! Limits of the format (the callers report them as losses or errors): sizes,
//! mtimes, ids and device numbers are 32-bit (no file of 4 GiB or more, no mtime
//! before 1970 or after 2106, no sub-second time), and there is no room for
//! extended attributes. Hard links share an inode number; by the convention GNU cpio
//! and the kernel's `gen_init_cpio` follow, only the last link of a group carries the
//! data, the earlier ones have size 0.

use std::io::{self, Read, Write};

/// What a header says about one entry.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub ino: u32,
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub size: u64,
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

/// The largest size a newc entry can declare.
pub const MAX_SIZE: u64 = u32::MAX as u64;

/// Streaming newc writer.
pub struct CpioWriter<W: Write> {
    out: W,
    pos: u64,
    next_ino: u32,
    pending_data: Option<u64>,
}

fn pad4(n: u64) -> usize {
    ((4 - (n % 4)) % 4) as usize
}

static ZEROS: [u8; 65536] = [0; 65536];

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            pos: 0,
            next_ino: 1,
            pending_data: None,
        }
    }

    /// A fresh inode number (numbers are ours, not the source tree's: real inode
    /// numbers may exceed 32 bits, and two files sharing a number would be unpacked
    /// as hard links).
    pub fn next_ino(&mut self) -> u32 {
        let i = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1).max(1);
        i
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Writes a header (and name). For a non-empty entry, exactly `h.size` bytes
    /// must follow through [`Self::data`] or [`Self::data_from`].
    pub fn header(&mut self, h: &Header<'_>) -> io::Result<()> {
        if self.pending_data.is_some() {
            return Err(io::Error::other("cpio: previous entry's data not written"));
        }
        if h.size > MAX_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cpio newc cannot hold a file of 4 GiB or more",
            ));
        }
        if h.name.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NUL byte in a name",
            ));
        }
        let namesize = h.name.len() as u64 + 1;
        let text = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            h.ino,
            h.mode,
            h.uid,
            h.gid,
            h.nlink,
            h.mtime,
            h.size as u32,
            0,
            0,
            h.rdev_major,
            h.rdev_minor,
            namesize as u32,
            0
        );
        self.put(text.as_bytes())?;
        self.put(h.name)?;
        self.put(&[0])?;
        let p = pad4(110 + namesize);
        self.put(&ZEROS[..p])?;
        if h.size > 0 {
            self.pending_data = Some(h.size);
        }
        Ok(())
    }

    /// The data of the entry whose header was just written, in memory.
    pub fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.data_from(&mut &bytes[..]).map(|_| ())
    }

    /// Copies the data of the entry whose header was just written from `r`. Exactly the
    /// declared size is written: a source that ends early is padded with zeros and one
    /// that grew is cut. Returns the bytes actually read from `r`.
    pub fn data_from(&mut self, r: &mut dyn Read) -> io::Result<u64> {
        let size = self
            .pending_data
            .take()
            .ok_or_else(|| io::Error::other("cpio: no entry expects data"))?;
        let read = super::copy_exact(r, size, |b| self.put(b))?;
        let p = pad4(size);
        self.put(&ZEROS[..p])?;
        Ok(read)
    }

    /// Writes the trailer, pads to 512 bytes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(&Header {
            name: b"TRAILER!!!",
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            size: 0,
            rdev_major: 0,
            rdev_minor: 0,
        })?;
        let p = ((512 - (self.pos % 512)) % 512) as usize;
        self.put(&ZEROS[..p])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The attributes of a directory a [`CpioTree`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirMeta {
    /// `S_IFDIR` and the permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
}

/// Decides the attributes of each directory a [`CpioTree`] writes by itself;
/// `None` means root's 0755 at the archive's time.
pub type DirMetaFn<'a> = Box<dyn FnMut(&[u8]) -> io::Result<Option<DirMeta>> + 'a>;

/// A newc archive built up by path, as initramfs images are: every entry's parent
/// directories are written before it, each once, and every file and symlink is
/// root's with one link and the archive's time. What goes in, and in which order,
/// is the caller's (the same calls give the same archive).
pub struct CpioTree<'a, W: Write> {
    w: CpioWriter<W>,
    dirs: std::collections::BTreeSet<Vec<u8>>,
    mtime: u32,
    dir_meta: DirMetaFn<'a>,
}

impl<'a, W: Write> CpioTree<'a, W> {
    /// An archive into `out` whose entries carry `mtime`.
    pub fn new(out: W, mtime: u32) -> Self {
        CpioTree::with_dir_meta(out, mtime, Box::new(|_| Ok(None)))
    }

    /// Like [`CpioTree::new`], with the directories' attributes from `dir_meta`.
    pub fn with_dir_meta(out: W, mtime: u32, dir_meta: DirMetaFn<'a>) -> Self {
        CpioTree {
            w: CpioWriter::new(out),
            dirs: Default::default(),
            mtime,
            dir_meta,
        }
    }

    /// The directory `rel` (and its parents), unless already written.
    pub fn dir(&mut self, rel: &[u8]) -> io::Result<()> {
        if rel.is_empty() || self.dirs.contains(rel) {
            return Ok(());
        }
        self.parents(rel)?;
        let m = (self.dir_meta)(rel)?.unwrap_or(DirMeta {
            mode: libc::S_IFDIR | 0o755,
            uid: 0,
            gid: 0,
            mtime: self.mtime,
        });
        let ino = self.w.next_ino();
        self.w.header(&Header {
            name: rel,
            ino,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            nlink: 2,
            mtime: m.mtime,
            size: 0,
            rdev_major: 0,
            rdev_minor: 0,
        })?;
        self.dirs.insert(rel.to_vec());
        Ok(())
    }

    fn parents(&mut self, rel: &[u8]) -> io::Result<()> {
        match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => self.dir(&rel[..i]),
            None => Ok(()),
        }
    }

    /// The header of a root-owned entry with one link, after its parents.
    fn leaf(&mut self, rel: &[u8], mode: u32, size: u64, rdev: (u32, u32)) -> io::Result<()> {
        self.parents(rel)?;
        let ino = self.w.next_ino();
        self.w.header(&Header {
            name: rel,
            ino,
            mode,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: self.mtime,
            size,
            rdev_major: rdev.0,
            rdev_minor: rdev.1,
        })
    }

    /// A regular file of `size` bytes read from `data`, with permission bits `perm`.
    pub fn file(
        &mut self,
        rel: &[u8],
        perm: u32,
        data: &mut dyn Read,
        size: u64,
    ) -> io::Result<()> {
        self.leaf(rel, libc::S_IFREG | perm, size, (0, 0))?;
        if size > 0 {
            self.w.data_from(data)?;
        }
        Ok(())
    }

    /// A regular file with the content `bytes`.
    pub fn bytes(&mut self, rel: &[u8], perm: u32, bytes: &[u8]) -> io::Result<()> {
        self.file(rel, perm, &mut &bytes[..], bytes.len() as u64)
    }

    pub fn symlink(&mut self, rel: &[u8], target: &[u8]) -> io::Result<()> {
        self.leaf(rel, libc::S_IFLNK | 0o777, target.len() as u64, (0, 0))?;
        self.w.data(target)
    }

    /// A character device node (`/dev/console`: the kernel opens it for init).
    pub fn char_device(&mut self, rel: &[u8], perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.leaf(rel, libc::S_IFCHR | perm, 0, (major, minor))
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let mut w = CpioWriter::new(Vec::new());
        w.header(&Header {
            name: b"a",
            ino: 1,
            mode: 0o100644,
            uid: 2,
            gid: 3,
            nlink: 1,
            mtime: 0x5f,
            size: 3,
            rdev_major: 0,
            rdev_minor: 0,
        })
        .unwrap();
        w.data(b"xyz").unwrap();
        let v = w.finish().unwrap();
        assert_eq!(&v[..6], b"070701");
        assert_eq!(&v[6..14], b"00000001");
        assert_eq!(&v[14..22], b"000081a4");
        assert_eq!(&v[94..102], b"00000002"); // namesize "a\0"
        assert_eq!(&v[110..112], b"a\0"); // 112 is a multiple of 4
        assert_eq!(&v[112..115], b"xyz");
        assert_eq!(v[115], 0);
        assert_eq!(v.len() % 512, 0);
        let too_big = CpioWriter::new(Vec::new()).header(&Header {
            name: b"big",
            ino: 1,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            size: 1 << 32,
            rdev_major: 0,
            rdev_minor: 0,
        });
        assert!(too_big.is_err());
    }

    #[test]
    fn a_tree_writes_each_parent_once_and_first() {
        let mut t = CpioTree::with_dir_meta(
            Vec::new(),
            7,
            Box::new(|rel: &[u8]| {
                Ok((rel == b"etc").then_some(DirMeta {
                    mode: libc::S_IFDIR | 0o700,
                    uid: 5,
                    gid: 6,
                    mtime: 9,
                }))
            }),
        );
        t.bytes(b"etc/a/b", 0o644, b"x").unwrap();
        t.symlink(b"etc/a/c", b"b").unwrap();
        t.char_device(b"dev/console", 0o600, 5, 1).unwrap();
        t.dir(b"etc/a").unwrap();
        let v = t.finish().unwrap();
        // (name, mode, uid, mtime, rdev major) of each header
        let mut seen = Vec::new();
        let mut pos = 0;
        while &v[pos..pos + 6] == b"070701" {
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&v[pos + 6 + 8 * i..pos + 14 + 8 * i]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (namesize, size) = (field(11) as usize, field(6) as usize);
            let name = String::from_utf8(v[pos + 110..pos + 110 + namesize - 1].to_vec()).unwrap();
            seen.push((name.clone(), field(1), field(2), field(5), field(9)));
            if name == "TRAILER!!!" {
                break;
            }
            pos += 110 + namesize + pad4(110 + namesize as u64);
            pos += size + pad4(size as u64);
        }
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc",
                "etc/a",
                "etc/a/b",
                "etc/a/c",
                "dev",
                "dev/console",
                "TRAILER!!!"
            ]
        );
        assert_eq!(seen[0].1, 0o40700);
        assert_eq!((seen[0].2, seen[0].3), (5, 9), "etc's own attributes");
        assert_eq!(
            (seen[1].1, seen[1].2, seen[1].3),
            (0o40755, 0, 7),
            "the default"
        );
        assert_eq!((seen[5].1, seen[5].4), (0o20600, 5));
    }
}
