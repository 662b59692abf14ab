//! A tree written through the cpio and tar writers, with its figures.

use super::walk::{self, Entry};
use super::{cpio, from_walk, io_err, sparse, tarwrite, PackError, PackProgress, Tally, Tree};
use crate::util::display_path;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Figures of a written archive.
#[derive(Debug, Clone, Default)]
pub struct TreeStats {
    pub entries: u64,
    pub content_bytes: u64,
    /// Files whose size changed while they were read (the archive holds the size
    /// seen at `lstat`, zero-padded or cut).
    pub changed: Tally,
    /// Sockets left out (tar).
    pub skipped_sockets: u64,
    /// Files written with their holes (tar's sparse entries).
    pub sparse_files: u64,
}

impl TreeStats {
    /// Counts `got` content bytes read for `path`, whose archive entry
    /// declared `size` (a difference means the file changed while read).
    fn content(&mut self, path: &[u8], size: u64, got: u64, progress: &PackProgress) {
        if got != size {
            self.changed.add(path);
        }
        self.content_bytes += got;
        progress.bytes_in.fetch_add(got, Ordering::Relaxed);
    }

    /// Counts one entry written.
    fn entry(&mut self, progress: &PackProgress) {
        self.entries += 1;
        progress.entries.fetch_add(1, Ordering::Relaxed);
    }
}

/// The size as the archive writers take it.
#[allow(clippy::unnecessary_cast)]
fn size_of(st: &rustix::fs::Stat) -> u64 {
    st.st_size as u64
}

/// The hard-link group key of a regular file with more than one link.
#[allow(clippy::unnecessary_cast)]
fn link_key(st: &rustix::fs::Stat) -> Option<(u64, u64)> {
    (st.st_nlink as u64 > 1).then_some((st.st_dev as u64, st.st_ino as u64))
}

/// Opens the content of a hard-link group member by its archive name.
type OpenData<'a> = dyn FnMut(&[u8]) -> io::Result<Box<dyn Read>> + 'a;

/// One cpio hard-link group member: path, mode, uid, gid, mtime, size.
type Member = (Vec<u8>, u32, u32, u32, u32, u64);

/// A hard-link group waiting for its last member (cpio newc puts the data
/// after the last one).
struct Pending {
    ino: u32,
    nlink: u64,
    members: Vec<Member>,
}

fn mtime32(sec: i64) -> u32 {
    sec.clamp(0, u32::MAX as i64) as u32
}

/// Writes `tree` as a cpio newc archive to `out` (uncompressed; wrap `out` in an
/// encoder). Files of 4 GiB or more are an error naming them.
pub fn write_cpio<W: Write>(
    tree: Tree<'_>,
    out: W,
    progress: &PackProgress,
    cancel: &AtomicBool,
) -> Result<(W, TreeStats), PackError> {
    let mut cpio = CpioTree {
        w: cpio::CpioWriter::new(out),
        stats: TreeStats::default(),
        groups: HashMap::new(),
        huge: Tally::default(),
        progress,
    };
    walk::walk_except(tree.root, tree.exclude, cancel, |e: &Entry<'_>| {
        cpio.entry(e)
    })
    .map_err(from_walk)?;
    if cpio.huge.count > 0 {
        return Err(PackError::TooLarge(cpio.huge));
    }
    cpio.unfinished_groups(tree.root)?;
    let out = cpio
        .w
        .finish()
        .map_err(io_err("writing the archive", "trailer"))?;
    Ok((out, cpio.stats))
}

/// The cpio writer's state over one walk.
struct CpioTree<'p, W: Write> {
    w: cpio::CpioWriter<W>,
    stats: TreeStats,
    groups: HashMap<(u64, u64), Pending>,
    /// Files too large for cpio newc: reported together at the end.
    huge: Tally,
    progress: &'p PackProgress,
}

impl<W: Write> CpioTree<'_, W> {
    fn entry(&mut self, e: &Entry<'_>) -> Result<(), PackError> {
        // "." and "./etc/..." as `find . | cpio -o` writes them: GNU cpio applies a
        // directory's times when the archive leaves it, which it detects by prefix.
        let mut name = b".".to_vec();
        if !e.path.is_empty() {
            name.push(b'/');
            name.extend_from_slice(e.path);
        }
        let size = size_of(e.stat);
        let mtime = mtime32(e.mtime().0);
        let regular = e.file_type() == libc::S_IFREG;
        if regular && size > cpio::MAX_SIZE {
            self.huge.add(e.path);
            return Ok(());
        }
        match link_key(e.stat).filter(|_| regular) {
            Some(key) => self.hard_link(e, key, name, mtime, size),
            None => self.single(e, &name, mtime, size),
        }
    }

    /// A member of a hard-link group: held until the group is complete.
    fn hard_link(
        &mut self,
        e: &Entry<'_>,
        key: (u64, u64),
        name: Vec<u8>,
        mtime: u32,
        size: u64,
    ) -> Result<(), PackError> {
        let st = e.stat;
        let ino = match self.groups.get(&key) {
            Some(g) => g.ino,
            None => self.w.next_ino(),
        };
        #[allow(clippy::unnecessary_cast)]
        let g = self.groups.entry(key).or_insert_with(|| Pending {
            ino,
            nlink: st.st_nlink as u64,
            members: Vec::new(),
        });
        g.members
            .push((name, st.st_mode, st.st_uid, st.st_gid, mtime, size));
        if g.members.len() as u64 >= g.nlink {
            let g = self.groups.remove(&key).expect("group present");
            let mut open = |_: &[u8]| -> io::Result<Box<dyn Read>> { Ok(Box::new(e.open()?)) };
            self.write_group(&g, &mut open)?;
        }
        Ok(())
    }

    /// Any entry but a hard-link group member.
    fn single(
        &mut self,
        e: &Entry<'_>,
        name: &[u8],
        mtime: u32,
        size: u64,
    ) -> Result<(), PackError> {
        let st = e.stat;
        let t = e.file_type();
        let wr = |p: &[u8]| io_err("writing the archive at", display_path(p));
        let ino = self.w.next_ino();
        let (rmaj, rmin) = if t == libc::S_IFCHR || t == libc::S_IFBLK {
            (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev))
        } else {
            (0, 0)
        };
        let target = if t == libc::S_IFLNK {
            Some(
                e.read_link()
                    .map_err(io_err("reading", display_path(e.path)))?,
            )
        } else {
            None
        };
        let data_size = match (&target, t) {
            (Some(l), _) => l.len() as u64,
            (None, libc::S_IFREG) => size,
            _ => 0,
        };
        self.w
            .header(&cpio::Header {
                name,
                ino,
                mode: st.st_mode,
                uid: st.st_uid,
                gid: st.st_gid,
                nlink: if t == libc::S_IFDIR { 2 } else { 1 },
                mtime,
                size: data_size,
                rdev_major: rmaj,
                rdev_minor: rmin,
            })
            .map_err(wr(e.path))?;
        if let Some(l) = target {
            if !l.is_empty() {
                self.w.data(&l).map_err(wr(e.path))?;
            }
        } else if data_size > 0 {
            let mut f = e.open().map_err(io_err("reading", display_path(e.path)))?;
            let got = self.w.data_from(&mut f).map_err(wr(e.path))?;
            self.stats.content(e.path, data_size, got, self.progress);
        }
        self.stats.entry(self.progress);
        Ok(())
    }

    /// Writes a hard-link group: every member's header, the data after the last.
    fn write_group(&mut self, g: &Pending, data: &mut OpenData<'_>) -> Result<(), PackError> {
        let n = g.members.len();
        for (i, (path, mode, uid, gid, mtime, size)) in g.members.iter().enumerate() {
            let last = i + 1 == n;
            let size = if last { *size } else { 0 };
            self.w
                .header(&cpio::Header {
                    name: path,
                    ino: g.ino,
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    nlink: n as u32,
                    mtime: *mtime,
                    size,
                    rdev_major: 0,
                    rdev_minor: 0,
                })
                .map_err(io_err("writing the archive at", display_path(path)))?;
            if size > 0 {
                let mut r = data(path).map_err(io_err("reading", display_path(path)))?;
                let got = self
                    .w
                    .data_from(&mut r)
                    .map_err(io_err("writing the archive at", display_path(path)))?;
                self.stats.content(path, size, got, self.progress);
            }
            self.stats.entry(self.progress);
        }
        Ok(())
    }

    /// Hard-link groups with links outside the tree: write what we have.
    fn unfinished_groups(&mut self, root: &Path) -> Result<(), PackError> {
        let r = crate::beneath::Root::open(root)
            .map_err(io_err("opening", root.display().to_string()))?;
        let mut rest: Vec<Pending> = self.groups.drain().map(|(_, g)| g).collect();
        rest.sort_by(|a, b| a.members[0].0.cmp(&b.members[0].0));
        for g in rest {
            let mut open = |p: &[u8]| -> io::Result<Box<dyn Read>> {
                let fd = r.open_regular(p, rustix::fs::OFlags::RDONLY)?;
                Ok(Box::new(File::from(fd)))
            };
            self.write_group(&g, &mut open)?;
        }
        Ok(())
    }
}

/// Writes `tree` as a pax tar archive with extended attributes to `out`.
/// Sockets are left out (tar has no type for them).
pub fn write_tar<W: Write>(
    tree: Tree<'_>,
    out: W,
    progress: &PackProgress,
    cancel: &AtomicBool,
) -> Result<(W, TreeStats), PackError> {
    let mut tar = TarTree {
        w: tarwrite::TarWriter::new(out),
        stats: TreeStats::default(),
        first: HashMap::new(),
        progress,
    };
    walk::walk_except(tree.root, tree.exclude, cancel, |e: &Entry<'_>| {
        tar.entry(e)
    })
    .map_err(from_walk)?;
    let out = tar
        .w
        .finish()
        .map_err(io_err("writing the archive", "end"))?;
    Ok((out, tar.stats))
}

/// The tar writer's state over one walk.
struct TarTree<'p, W: Write> {
    w: tarwrite::TarWriter<W>,
    stats: TreeStats,
    /// The archive name of each hard-link group's first member.
    first: HashMap<(u64, u64), Vec<u8>>,
    progress: &'p PackProgress,
}

/// The tar entry type of a file type; `None` for a socket.
fn tar_kind(t: u32) -> Option<tarwrite::Kind> {
    use tarwrite::Kind;
    Some(match t {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        libc::S_IFCHR => Kind::CharDevice,
        libc::S_IFBLK => Kind::BlockDevice,
        libc::S_IFIFO => Kind::Fifo,
        _ => return None,
    })
}

impl<W: Write> TarTree<'_, W> {
    fn entry(&mut self, e: &Entry<'_>) -> Result<(), PackError> {
        use tarwrite::{Kind, TarEntry};
        let st = e.stat;
        let t = e.file_type();
        let mut path = b"./".to_vec();
        path.extend_from_slice(e.path);
        if t == libc::S_IFDIR && !e.path.is_empty() {
            path.push(b'/');
        }
        let Some(kind) = tar_kind(t) else {
            self.stats.skipped_sockets += 1;
            return Ok(());
        };
        let size = size_of(st);
        let hardlink = self.earlier_link(kind, st, &path);
        let target = if kind == Kind::Symlink {
            Some(
                e.read_link()
                    .map_err(io_err("reading", display_path(e.path)))?,
            )
        } else {
            None
        };
        let xattrs = e
            .xattrs()
            .map_err(io_err("reading attributes of", display_path(e.path)))?;
        let (sec, nsec) = e.mtime();
        let kind = if hardlink.is_some() {
            Kind::HardLink
        } else {
            kind
        };
        let entry = TarEntry {
            path: &path,
            kind,
            mode: st.st_mode & 0o7777,
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            mtime_sec: sec,
            mtime_nsec: nsec,
            size,
            link: hardlink.as_deref().or(target.as_deref()),
            rdev: (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)),
            xattrs: (!xattrs.is_empty()).then_some(&xattrs),
        };
        if kind == Kind::File && size > 0 {
            self.file(e, &entry)?;
        } else {
            self.w
                .append(&entry)
                .map_err(io_err("writing the archive at", display_path(e.path)))?;
        }
        self.stats.entry(self.progress);
        Ok(())
    }

    /// A regular file with data: a sparse entry when it has holes, else a plain one.
    fn file(&mut self, e: &Entry<'_>, entry: &tarwrite::TarEntry<'_>) -> Result<(), PackError> {
        let wr = || io_err("writing the archive at", display_path(e.path));
        let size = entry.size;
        let f = e.open().map_err(io_err("reading", display_path(e.path)))?;
        let map = if sparse::may_have_holes(e.stat) {
            let m = sparse::data_map(&f, size)
                .map_err(io_err("finding the holes of", display_path(e.path)))?;
            Some(m).filter(|m| !sparse::is_dense(m, size))
        } else {
            None
        };
        let Some(map) = map else {
            self.w.append(entry).map_err(wr())?;
            let got = self.w.data_from(&mut &f).map_err(wr())?;
            self.stats.content(e.path, size, got, self.progress);
            return Ok(());
        };
        self.w.append_sparse(entry, &map).map_err(wr())?;
        let mut r = sparse::SegmentReader::new(&f, &map);
        if sparse::data_bytes(&map) > 0 {
            self.w.data_from(&mut r).map_err(wr())?;
        }
        // the holes count as read: they are the file's content too
        let got = size - r.missing();
        self.stats.content(e.path, size, got, self.progress);
        self.stats.sparse_files += 1;
        Ok(())
    }

    /// For a file seen before under another name (a hard link), that name;
    /// the first member of each group is remembered as `path`.
    fn earlier_link(
        &mut self,
        kind: tarwrite::Kind,
        st: &rustix::fs::Stat,
        path: &[u8],
    ) -> Option<Vec<u8>> {
        let key = link_key(st).filter(|_| kind == tarwrite::Kind::File)?;
        match self.first.get(&key) {
            Some(p) => Some(p.clone()),
            None => {
                self.first.insert(key, path.to_vec());
                None
            }
        }
    }
}
