//! A streaming writer of POSIX pax tar archives with extended attributes, the format
//! GNU tar writes with `--format=posix --xattrs` and reads back with
//! `--xattrs --xattrs-include='*'`.
//!
//! Each entry is a ustar header, preceded by a pax extended header (`x`) when
//! something does not fit ustar: a path or link target longer than ustar allows,
//! a size of 8 GiB or more, ids above 2097151, an mtime with nanoseconds or out of
//! the octal range, and extended attributes (`SCHILY.xattr.<name>=<raw value>`, the
//! keyword GNU tar and libarchive use; POSIX ACLs travel as their
//! `system.posix_acl_*` attributes). Device numbers that overflow use GNU's base-256
//! encoding. Names are raw bytes (no charset conversion). Sockets cannot be
//! represented in tar and are left to the caller to skip.
//!
//! A file with holes is written as GNU tar writes it with `--sparse
//! --sparse-version=1.0` ([`TarWriter::append_sparse`]): the pax header carries
//! `GNU.sparse.major=1`, `GNU.sparse.minor=0`, `GNU.sparse.name` (the real path) and
//! `GNU.sparse.realsize`; the ustar header names `<dir>/GNUSparseFile.0/<name>` and
//! declares the stored size; the data starts with the map (decimal numbers, one a
//! line: the segment count, then offset and length of each) padded to a block, then
//! the data segments back to back. GNU tar (and our reader) extract it with its
//! holes, whatever their options; a reader unaware of sparse files extracts the map
//! and the data under the made-up name rather than a wrong file under the real one.

use crate::tar::header::{self, typeflag, Header, BLOCK};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::ops::Range;

/// Entry types the writer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        // the reader's kinds carry the one typeflag table
        header::Kind::from(self).typeflag()
    }
}

impl From<Kind> for header::Kind {
    fn from(k: Kind) -> header::Kind {
        match k {
            Kind::File => header::Kind::File,
            Kind::Dir => header::Kind::Directory,
            Kind::Symlink => header::Kind::Symlink,
            Kind::HardLink => header::Kind::HardLink,
            Kind::CharDevice => header::Kind::CharDevice,
            Kind::BlockDevice => header::Kind::BlockDevice,
            Kind::Fifo => header::Kind::Fifo,
        }
    }
}

/// One entry's metadata.
#[derive(Debug, Clone)]
pub struct TarEntry<'a> {
    /// Archive path (as it will appear, e.g. `./etc/passwd`; a directory may end in `/`).
    pub path: &'a [u8],
    pub kind: Kind,
    /// Permission bits (07777).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// Data size (regular files only).
    pub size: u64,
    /// Symlink target or hard-link target path.
    pub link: Option<&'a [u8]>,
    pub rdev: (u32, u32),
    pub xattrs: Option<&'a BTreeMap<Vec<u8>, Vec<u8>>>,
}

static ZEROS: [u8; 65536] = [0; 65536];

/// Streaming pax writer.
pub struct TarWriter<W: Write> {
    out: W,
    pos: u64,
    pending: Option<u64>,
    skipped_xattrs: u64,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            pos: 0,
            pending: None,
            skipped_xattrs: 0,
        }
    }

    /// Extended attributes that could not be stored (a name containing `=`).
    pub fn skipped_xattrs(&self) -> u64 {
        self.skipped_xattrs
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, n: u64) -> io::Result<()> {
        self.put(&ZEROS[..header::padding(n) as usize])
    }

    /// Writes the headers of an entry. A regular file's data (exactly `size` bytes)
    /// must follow through [`Self::data_from`].
    pub fn append(&mut self, e: &TarEntry<'_>) -> io::Result<()> {
        if self.pending.is_some() {
            return Err(io::Error::other("tar: previous entry's data not written"));
        }
        let size = if e.kind == Kind::File { e.size } else { 0 };
        let link = e.link.unwrap_or(b"");
        let split = header::split_ustar(e.path);
        let mut pax = Vec::new();
        if split.is_none() {
            header::push_pax_record(&mut pax, b"path", e.path);
        }
        self.pax_records(&mut pax, e, size, link);
        let (prefix, name) = split.unwrap_or((b"", e.path));
        self.headers(e, &pax, (prefix, name), size)?;
        if size > 0 {
            self.pending = Some(size);
        }
        Ok(())
    }

    /// Writes the headers of a regular file with holes and its map: `map` holds the
    /// (offset, length) of each data segment within `e.size` bytes, in order. The
    /// segments' data (their lengths added up) must follow through
    /// [`Self::data_from`], back to back.
    pub fn append_sparse(&mut self, e: &TarEntry<'_>, map: &[(u64, u64)]) -> io::Result<()> {
        if self.pending.is_some() {
            return Err(io::Error::other("tar: previous entry's data not written"));
        }
        if e.kind != Kind::File {
            return Err(io::Error::other("tar: only a regular file can be sparse"));
        }
        let mut end = 0;
        for &(off, len) in map {
            end = match off.checked_add(len) {
                Some(x) if off >= end && x <= e.size => x,
                _ => return Err(io::Error::other("tar: sparse map out of order or too long")),
            };
        }
        let text = super::sparse::map_text(map, e.size);
        let data: u64 = super::sparse::data_bytes(map);
        let stored = text.len() as u64 + header::padding(text.len() as u64) + data;
        let mut pax = Vec::new();
        header::push_pax_record(&mut pax, b"GNU.sparse.major", b"1");
        header::push_pax_record(&mut pax, b"GNU.sparse.minor", b"0");
        header::push_pax_record(&mut pax, b"GNU.sparse.name", e.path);
        let real = e.size.to_string();
        header::push_pax_record(&mut pax, b"GNU.sparse.realsize", real.as_bytes());
        self.pax_records(&mut pax, e, stored, b"");
        let made_up = sparse_name(e.path);
        let split = header::split_ustar(&made_up).unwrap_or((b"", &made_up));
        self.headers(e, &pax, split, stored)?;
        self.put(&text)?;
        self.pad(text.len() as u64)?;
        if data > 0 {
            self.pending = Some(data);
        }
        Ok(())
    }

    /// The pax header (when there are records) and the ustar header of an entry
    /// stored under `(prefix, name)` with `size` bytes of data.
    fn headers(
        &mut self,
        e: &TarEntry<'_>,
        pax: &[u8],
        (prefix, name): (&[u8], &[u8]),
        size: u64,
    ) -> io::Result<()> {
        if !pax.is_empty() {
            self.pax_header(e.path, pax)?;
        }
        self.put(&ustar_block(&Ustar {
            name,
            prefix,
            flag: e.kind.flag(),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size,
            mtime: e.mtime_sec,
            link: e.link.unwrap_or(b""),
            rdev: e.rdev,
        }))
    }

    /// Appends to `pax` the records for what the ustar header cannot hold (but the
    /// path, which the caller decides on), and the xattrs.
    fn pax_records(&mut self, pax: &mut Vec<u8>, e: &TarEntry<'_>, size: u64, link: &[u8]) {
        let mut record = |key: &[u8], value: &[u8]| header::push_pax_record(pax, key, value);
        if link.len() > header::LINKNAME.len() {
            record(b"linkpath", link);
        }
        if size > 0o77777777777 {
            record(b"size", size.to_string().as_bytes());
        }
        if e.uid > 0o7777777 {
            record(b"uid", e.uid.to_string().as_bytes());
        }
        if e.gid > 0o7777777 {
            record(b"gid", e.gid.to_string().as_bytes());
        }
        if e.mtime_nsec != 0 || e.mtime_sec < 0 || e.mtime_sec > 0o77777777777 {
            record(
                b"mtime",
                header::pax_time(e.mtime_sec, e.mtime_nsec).as_bytes(),
            );
        }
        for (k, v) in e.xattrs.into_iter().flatten() {
            if k.contains(&b'=') || k.contains(&0) || k.is_empty() {
                self.skipped_xattrs += 1;
                continue;
            }
            record(&[&b"SCHILY.xattr."[..], k].concat(), v);
        }
    }

    /// The `x` header and body carrying `pax` for the entry at `path`, named the
    /// way GNU tar names it (`./PaxHeaders/<base name>`).
    fn pax_header(&mut self, path: &[u8], pax: &[u8]) -> io::Result<()> {
        let base = path
            .strip_suffix(b"/")
            .unwrap_or(path)
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or(b"");
        let mut name = b"./PaxHeaders/".to_vec();
        name.extend_from_slice(&base[..base.len().min(header::NAME.len() - name.len())]);
        self.put(&ustar_block(&Ustar {
            name: &name,
            prefix: b"",
            flag: typeflag::PAX_LOCAL,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: pax.len() as u64,
            mtime: 0,
            link: b"",
            rdev: (0, 0),
        }))?;
        self.put(pax)?;
        self.pad(pax.len() as u64)
    }
    /// Copies a regular file's data: exactly the declared size (zero-padded when the
    /// source ends early, cut when it grew). Returns the bytes read from `r`.
    pub fn data_from(&mut self, r: &mut dyn Read) -> io::Result<u64> {
        let size = self
            .pending
            .take()
            .ok_or_else(|| io::Error::other("tar: no entry expects data"))?;
        let read = super::copy_exact(r, size, |b| self.put(b))?;
        self.pad(size)?;
        Ok(read)
    }

    /// Writes the two zero blocks that end an archive and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.pending.is_some() {
            return Err(io::Error::other("tar: last entry's data not written"));
        }
        self.put(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The name a sparse entry's ustar header carries, GNU tar's
/// `%d/GNUSparseFile.%p/%f` with a fixed 0 for the process id (the same tree gives
/// the same archive), cut to fit the ustar fields: only a reader that does not know
/// sparse files uses it.
fn sparse_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut name = [dir, b"GNUSparseFile.0/", base].concat();
    if header::split_ustar(&name).is_none() {
        let base = &base[..base.len().min(header::NAME.len() - 16)];
        name = [&b"GNUSparseFile.0/"[..], base].concat();
    }
    name
}

/// The fields of one ustar header block, as the writer fills them.
struct Ustar<'a> {
    name: &'a [u8],
    prefix: &'a [u8],
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    link: &'a [u8],
    rdev: (u32, u32),
}

/// Encodes a header block. Ids, size and mtime too big for their octal fields are
/// written as 0 because the pax header carries them; device numbers have no pax
/// record here and use base-256 instead.
fn ustar_block(u: &Ustar<'_>) -> [u8; BLOCK] {
    let mut h = Header::ustar();
    h.set_bytes(header::NAME, u.name);
    h.set_number(header::MODE, u64::from(u.mode & 0o7777));
    octal_or_zero(&mut h, header::UID, u.uid);
    octal_or_zero(&mut h, header::GID, u.gid);
    octal_or_zero(&mut h, header::SIZE, u.size);
    octal_or_zero(&mut h, header::MTIME, u64::try_from(u.mtime).unwrap_or(0));
    h.set_typeflag(u.flag);
    h.set_bytes(header::LINKNAME, u.link);
    if matches!(u.flag, typeflag::CHAR_DEVICE | typeflag::BLOCK_DEVICE) {
        h.set_number(header::DEVMAJOR, u64::from(u.rdev.0));
        h.set_number(header::DEVMINOR, u64::from(u.rdev.1));
    }
    h.set_bytes(header::PREFIX, u.prefix);
    h.finish()
}

fn octal_or_zero(h: &mut Header, field: Range<usize>, v: u64) {
    if !h.set_octal(field.clone(), v) {
        h.set_octal(field, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::{Limits, TarReader};

    fn file<'a>(path: &'a [u8], size: u64) -> TarEntry<'a> {
        TarEntry {
            path,
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 0,
            size,
            link: None,
            rdev: (0, 0),
            xattrs: None,
        }
    }

    #[test]
    fn sparse_entry_reads_back_with_its_map_and_real_name() {
        let long = [&b"./"[..], &[b'n'; 150], b"/", &[b'f'; 90]].concat();
        let size = 10u64 << 30;
        let map = [(4096u64, 3u64), (8u64 << 30, 2u64)];
        let mut w = TarWriter::new(Vec::new());
        w.append_sparse(&file(&long, size), &map).unwrap();
        w.data_from(&mut &b"abcde"[..]).unwrap();
        let a = w.finish().unwrap();
        // pax header and body, ustar header, map block, one data block, two end blocks
        assert_eq!(a.len(), 512 * 7, "{}", a.len());
        let mut r = TarReader::new(&a[..], Limits::default(), None);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.path, long);
        assert_eq!(e.size, size);
        // the file ends in a hole: the map closes with an empty segment at its size
        let declared = [(4096u64, 3u64), (8u64 << 30, 2u64), (size, 0)];
        assert_eq!(e.sparse.as_deref(), Some(&declared[..]));
        let mut buf = [0u8; 16];
        let n = r.read_data(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"abcde");
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn sparse_maps_must_be_ordered_and_within_the_file() {
        let mut w = TarWriter::new(Vec::new());
        for bad in [&[(10u64, 5u64), (12, 1)][..], &[(0, 101)], &[(u64::MAX, 2)]] {
            assert!(w.append_sparse(&file(b"./f", 100), bad).is_err(), "{bad:?}");
        }
        let dir = TarEntry {
            kind: Kind::Dir,
            ..file(b"./d/", 0)
        };
        assert!(w.append_sparse(&dir, &[]).is_err());
        // A file of holes only has no data to follow.
        w.append_sparse(&file(b"./h", 1 << 40), &[]).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn made_up_names_fit_ustar() {
        assert_eq!(
            sparse_name(b"./var/log/lastlog"),
            b"./var/log/GNUSparseFile.0/lastlog"
        );
        assert_eq!(sparse_name(b"f"), b"GNUSparseFile.0/f");
        let deep = [&b"./"[..], &[b'd'; 300], b"/", &[b'f'; 200]].concat();
        let n = sparse_name(&deep);
        assert!(header::split_ustar(&n).is_some(), "{}", n.len());
        assert!(n.starts_with(b"GNUSparseFile.0/fff"));
    }
}
