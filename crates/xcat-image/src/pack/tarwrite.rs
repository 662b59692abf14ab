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

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

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
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::CharDevice => b'3',
            Kind::BlockDevice => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
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

fn octal(field: &mut [u8], v: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

fn base256(field: &mut [u8], v: u64) {
    field.fill(0);
    field[0] = 0x80;
    let n = field.len();
    for (i, b) in v.to_be_bytes().iter().rev().enumerate() {
        if i + 1 < n {
            field[n - 1 - i] = *b;
        }
    }
}

fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "<len> <key>=<value>\n" where <len> counts the whole record including itself.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    loop {
        let total = rest + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// pax time text: seconds and fraction, with correct handling of negative times
/// (-1.5 means 1.5 s before the epoch).
fn pax_time(sec: i64, nsec: u32) -> String {
    if nsec == 0 {
        return sec.to_string();
    }
    if sec >= 0 {
        format!("{sec}.{nsec:09}")
    } else {
        let whole = -(sec + 1);
        format!("-{whole}.{:09}", 1_000_000_000 - nsec)
    }
}

/// Splits a path for ustar's `prefix` (155) and `name` (100) fields.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((&[], path));
    }
    // the name part must be non-empty and ≤ 100; the prefix ≤ 155
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    for (i, &b) in trimmed.iter().enumerate() {
        if b == b'/' && i <= 155 && path.len() - i - 1 <= 100 && i > 0 {
            return Some((&path[..i], &path[i + 1..]));
        }
    }
    None
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
        let p = ((512 - (n % 512)) % 512) as usize;
        self.put(&ZEROS[..p])
    }

    #[allow(clippy::too_many_arguments)]
    fn raw_header(
        &mut self,
        name: &[u8],
        prefix: &[u8],
        flag: u8,
        mode: u32,
        uid: u64,
        gid: u64,
        size: u64,
        mtime: i64,
        link: &[u8],
        rdev: (u32, u32),
    ) -> io::Result<()> {
        let mut h = [0u8; 512];
        let n = name.len().min(100);
        h[..n].copy_from_slice(&name[..n]);
        octal(&mut h[100..108], u64::from(mode & 0o7777));
        if !octal(&mut h[108..116], uid) {
            octal(&mut h[108..116], 0);
        }
        if !octal(&mut h[116..124], gid) {
            octal(&mut h[116..124], 0);
        }
        if !octal(&mut h[124..136], size) {
            octal(&mut h[124..136], 0);
        }
        let mt = u64::try_from(mtime).unwrap_or(0);
        if !octal(&mut h[136..148], mt) {
            octal(&mut h[136..148], 0);
        }
        h[156] = flag;
        let l = link.len().min(100);
        h[157..157 + l].copy_from_slice(&link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if matches!(flag, b'3' | b'4') {
            if !octal(&mut h[329..337], u64::from(rdev.0)) {
                base256(&mut h[329..337], u64::from(rdev.0));
            }
            if !octal(&mut h[337..345], u64::from(rdev.1)) {
                base256(&mut h[337..345], u64::from(rdev.1));
            }
        }
        let p = prefix.len().min(155);
        h[345..345 + p].copy_from_slice(&prefix[..p]);
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.put(&h)
    }

    /// Writes the headers of an entry. A regular file's data (exactly `size` bytes)
    /// must follow through [`Self::data_from`].
    pub fn append(&mut self, e: &TarEntry<'_>) -> io::Result<()> {
        if self.pending.is_some() {
            return Err(io::Error::other("tar: previous entry's data not written"));
        }
        let size = if e.kind == Kind::File { e.size } else { 0 };
        let link = e.link.unwrap_or(b"");
        let mut pax = Vec::new();
        let split = split_ustar(e.path);
        if split.is_none() {
            pax_record(&mut pax, b"path", e.path);
        }
        if link.len() > 100 {
            pax_record(&mut pax, b"linkpath", link);
        }
        if size > 0o77777777777 {
            pax_record(&mut pax, b"size", size.to_string().as_bytes());
        }
        if e.uid > 0o7777777 {
            pax_record(&mut pax, b"uid", e.uid.to_string().as_bytes());
        }
        if e.gid > 0o7777777 {
            pax_record(&mut pax, b"gid", e.gid.to_string().as_bytes());
        }
        if e.mtime_nsec != 0 || e.mtime_sec < 0 || e.mtime_sec > 0o77777777777 {
            pax_record(
                &mut pax,
                b"mtime",
                pax_time(e.mtime_sec, e.mtime_nsec).as_bytes(),
            );
        }
        if let Some(x) = e.xattrs {
            for (k, v) in x {
                if k.contains(&b'=') || k.contains(&0) || k.is_empty() {
                    self.skipped_xattrs += 1;
                    continue;
                }
                let mut key = b"SCHILY.xattr.".to_vec();
                key.extend_from_slice(k);
                pax_record(&mut pax, &key, v);
            }
        }
        if !pax.is_empty() {
            let base = e
                .path
                .strip_suffix(b"/")
                .unwrap_or(e.path)
                .rsplit(|&b| b == b'/')
                .next()
                .unwrap_or(b"");
            let mut name = b"./PaxHeaders/".to_vec();
            name.extend_from_slice(&base[..base.len().min(100 - name.len())]);
            self.raw_header(
                &name,
                b"",
                b'x',
                0o644,
                0,
                0,
                pax.len() as u64,
                0,
                b"",
                (0, 0),
            )?;
            self.put(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let (prefix, name) = split.unwrap_or((b"", e.path));
        self.raw_header(
            name,
            prefix,
            e.kind.flag(),
            e.mode,
            e.uid,
            e.gid,
            size,
            e.mtime_sec,
            link,
            e.rdev,
        )?;
        if size > 0 {
            self.pending = Some(size);
        }
        Ok(())
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
        self.put(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_times() {
        let mut v = Vec::new();
        pax_record(&mut v, b"path", b"abc");
        assert_eq!(v, b"12 path=abc\n");
        let mut v = Vec::new();
        // a record whose length crosses a digit boundary
        pax_record(&mut v, b"k", &[b'x'; 93]);
        assert_eq!(v.len(), 99);
        assert!(v.starts_with(b"99 k="));
        let mut v = Vec::new();
        // one more byte: 2 digits would make 100, so the length needs 3 digits
        pax_record(&mut v, b"k", &[b'x'; 94]);
        assert_eq!(v.len(), 101);
        assert!(v.starts_with(b"101 k="));
        assert_eq!(pax_time(5, 7), "5.000000007");
        assert_eq!(pax_time(-2, 500_000_000), "-1.500000000");
        assert_eq!(pax_time(-2, 0), "-2");
    }

    #[test]
    fn ustar_split() {
        let long = [b"d".repeat(120), b"/".to_vec(), b"f".repeat(90)].concat();
        let (p, n) = split_ustar(&long).unwrap();
        assert_eq!(p.len(), 120);
        assert_eq!(n.len(), 90);
        assert!(split_ustar(&b"x".repeat(300)).is_none());
    }
}
