//! A streaming tar reader written for untrusted input.
//!
//! Supported: v7, ustar (with `prefix`), GNU (`L` long names, `K` long links, old
//! `S` sparse with extension blocks, base-256 numbers), POSIX pax (`x` per-entry and
//! `g` global headers, fractional `mtime`, big `size`, `SCHILY.xattr.*`,
//! `SCHILY.acl.*`, `SCHILY.devmajor/devminor`) and the three pax sparse formats GNU
//! tar writes (0.0 `GNU.sparse.offset/numbytes` pairs, 0.1 `GNU.sparse.map`, 1.0 map
//! stored ahead of the data).
//!
//! Memory is bounded: headers are processed one 512-byte block at a time, and every
//! variable-size piece of metadata (pax records, long names, sparse maps) is checked
//! against [`Limits`] before it is buffered. File data is never buffered here: the
//! caller pulls it with [`TarReader::read_data`].
//!
//! Global pax headers (`g`) are honoured for attributes (mtime, uid, xattrs...) but
//! their `path`, `linkpath` and `size` keywords are ignored: applied literally they
//! would give every later entry the same name.

use crate::util::escape_bytes;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const BLOCK: usize = 512;

/// Bounds on attacker-controlled metadata.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest accepted entry path or link target, in bytes.
    pub max_path: usize,
    /// Largest pax extended header (`x` or `g`) body.
    pub max_pax: u64,
    /// Largest single xattr value (the kernel's own limit is 64 KiB).
    pub max_xattr_value: usize,
    /// Most segments in one sparse map (16 bytes of memory each).
    pub max_sparse_segments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_path: 4096,
            max_pax: 1024 * 1024,
            max_xattr_value: 65536,
            max_sparse_segments: 1 << 20,
        }
    }
}

/// Errors of the archive format itself (not of applying it to disk).
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// The stream ended early: a header, a body or the end-of-archive marker is missing.
    #[error("archive truncated at byte {offset}: {what}")]
    Truncated { offset: u64, what: String },
    /// A header failed its checksum: corrupt stream or not a tar archive.
    #[error("bad header checksum at byte {offset} (corrupt stream or not a tar archive)")]
    Checksum { offset: u64 },
    /// A field or an extended header is malformed.
    #[error("malformed archive at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    /// Metadata larger than the configured limit.
    #[error("archive entry at byte {offset}: {what} is {size} bytes, over the limit of {limit}")]
    Limit {
        offset: u64,
        what: String,
        size: u64,
        limit: u64,
    },
    /// The underlying reader failed.
    #[error("reading the archive stream at byte {offset}: {source}")]
    Io { offset: u64, source: io::Error },
}

/// Entry type, from the typeflag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
    /// A typeflag we do not handle; its data is skipped.
    Other(u8),
}

/// Modification time with nanoseconds; seconds may be negative (before 1970).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Mtime {
    pub sec: i64,
    pub nsec: u32,
}

/// Everything known about one entry once its headers are read.
#[derive(Debug, Clone)]
pub struct EntryMeta {
    /// Path exactly as the archive names it (not yet normalised).
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (07777).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Logical file size (the real size for sparse files).
    pub size: u64,
    pub mtime: Mtime,
    /// Symlink target or hard-link target.
    pub link: Vec<u8>,
    pub devmajor: u32,
    pub devminor: u32,
    /// `SCHILY.xattr.*` pairs in archive order, names without the prefix.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `SCHILY.acl.access` text, when present.
    pub acl_access: Option<Vec<u8>>,
    /// `SCHILY.acl.default` text, when present.
    pub acl_default: Option<Vec<u8>>,
    /// For sparse files: (offset, length) of every data segment; holes elsewhere.
    pub sparse: Option<Vec<(u64, u64)>>,
    /// Data bytes that follow in the archive (after any in-body sparse map).
    pub stored_size: u64,
    /// Byte offset of the entry's first header in the stream.
    pub header_offset: u64,
}

/// Pulls entries out of a tar stream.
pub struct TarReader<R> {
    r: R,
    offset: u64,
    limits: Limits,
    globals: Vec<(Vec<u8>, Vec<u8>)>,
    remaining: u64,
    padding: u64,
    current: Vec<u8>,
    finished: bool,
    counter: Option<Arc<AtomicU64>>,
    /// Non-fatal remarks (unsupported keywords, lone zero block...).
    pub notes: Vec<String>,
}

fn zero_block(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

fn cstr_field(f: &[u8]) -> &[u8] {
    match f.iter().position(|&b| b == 0) {
        Some(p) => &f[..p],
        None => f,
    }
}

/// Parses a numeric header field: octal text, or GNU base-256 when the top bit of the
/// first byte is set (0x80 positive, 0xff negative).
fn parse_num(f: &[u8]) -> Result<i128, String> {
    if f.is_empty() {
        return Ok(0);
    }
    if f[0] & 0x80 != 0 {
        let negative = f[0] == 0xff;
        if f[0] != 0x80 && !negative {
            return Err("bad base-256 number".into());
        }
        if f.len() > 16 {
            // only the low 15 bytes may be significant for an i128
            let sign = if negative { 0xff } else { 0x00 };
            if f[1..f.len() - 15].iter().any(|&b| b != sign) {
                return Err("base-256 number too large".into());
            }
        }
        let start = f.len().saturating_sub(15).max(1);
        let mut v: i128 = if negative { -1 } else { 0 };
        for &b in &f[start..] {
            v = (v << 8) | i128::from(b);
        }
        return Ok(v);
    }
    let mut v: i128 = 0;
    let mut seen = false;
    for &b in f {
        match b {
            b'0'..=b'7' => {
                seen = true;
                v = v * 8 + i128::from(b - b'0');
                if v > i128::from(u64::MAX) {
                    return Err("octal number too large".into());
                }
            }
            b' ' | 0 if !seen => continue,
            b' ' | 0 => break,
            _ => return Err(format!("bad octal digit {:?}", b as char)),
        }
    }
    Ok(v)
}

fn parse_u64(f: &[u8], what: &str) -> Result<u64, String> {
    let v = parse_num(f).map_err(|e| format!("{what}: {e}"))?;
    u64::try_from(v).map_err(|_| format!("{what}: negative or too large"))
}

fn parse_dec(v: &[u8], what: &str) -> Result<u64, String> {
    let s = std::str::from_utf8(v).map_err(|_| format!("{what}: not a number"))?;
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("{what}: not a number: {s:?}"))
}

/// Parses a pax time (`-12.5`, `1795630474.207379268`) into seconds and nanoseconds.
pub fn parse_pax_time(v: &[u8]) -> Option<Mtime> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let sec: i64 = int.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        nsec += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
    }
    if !neg {
        return Some(Mtime { sec, nsec });
    }
    if nsec == 0 {
        Some(Mtime { sec: -sec, nsec: 0 })
    } else {
        Some(Mtime {
            sec: -sec - 1,
            nsec: 1_000_000_000 - nsec,
        })
    }
}

/// One pax record: (keyword, value).
pub type PaxRecord = (Vec<u8>, Vec<u8>);

/// Splits a pax extended header body into (keyword, value) records, in order.
pub fn parse_pax(data: &[u8]) -> Result<Vec<PaxRecord>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        // GNU tar and others may pad the body with NULs
        if data[i] == 0 {
            if data[i..].iter().all(|&b| b == 0) {
                break;
            }
            return Err("NUL inside pax header".into());
        }
        let sp = data[i..]
            .iter()
            .position(|&b| b == b' ')
            .ok_or("pax record without length")?;
        let len = parse_dec(&data[i..i + sp], "pax record length")? as usize;
        if len <= sp + 1 || len > data.len() - i {
            return Err("pax record length out of range".into());
        }
        let rec = &data[i + sp + 1..i + len];
        let rec = rec
            .strip_suffix(b"\n")
            .ok_or("pax record not terminated by newline")?;
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or("pax record without '='")?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        i += len;
    }
    Ok(out)
}

#[derive(Default)]
struct SparseInfo {
    major: Option<u64>,
    minor: Option<u64>,
    realsize: Option<u64>,
    name: Option<Vec<u8>>,
    map01: Option<Vec<u8>>,
    pairs00: Vec<(u64, u64)>,
    pending_offset: Option<u64>,
}

impl<R: Read> TarReader<R> {
    /// Wraps a reader. `counter`, when given, is advanced by every byte consumed.
    pub fn new(r: R, limits: Limits, counter: Option<Arc<AtomicU64>>) -> Self {
        TarReader {
            r,
            offset: 0,
            limits,
            globals: Vec::new(),
            remaining: 0,
            padding: 0,
            current: Vec::new(),
            finished: false,
            counter,
            notes: Vec::new(),
        }
    }

    /// Bytes consumed from the stream so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        loop {
            match self.r.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    if let Some(c) = &self.counter {
                        c.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(TarError::Io {
                        offset: self.offset,
                        source: e,
                    })
                }
            }
        }
    }

    /// Fills `buf` completely; returns the number of bytes read (short only at EOF).
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let mut got = 0;
        while got < buf.len() {
            let n = self.read_some(&mut buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    }

    fn truncated(&self, what: impl Into<String>) -> TarError {
        TarError::Truncated {
            offset: self.offset,
            what: what.into(),
        }
    }

    fn read_block(&mut self, blk: &mut [u8; BLOCK], what: &str) -> Result<bool, TarError> {
        let n = self.read_full(blk)?;
        if n == 0 {
            return Ok(false);
        }
        if n < BLOCK {
            return Err(self.truncated(format!("partial block while reading {what}")));
        }
        Ok(true)
    }

    fn discard(&mut self, mut n: u64, what: &str) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.read_some(&mut buf[..want])?;
            if got == 0 {
                return Err(self.truncated(what.to_string()));
            }
            n -= got as u64;
        }
        Ok(())
    }

    /// Reads a whole extension body (pax header, long name) of `size` bytes plus padding.
    fn read_body(
        &mut self,
        size: u64,
        limit: u64,
        what: &str,
        hdr_off: u64,
    ) -> Result<Vec<u8>, TarError> {
        if size > limit {
            return Err(TarError::Limit {
                offset: hdr_off,
                what: what.to_string(),
                size,
                limit,
            });
        }
        let mut v = vec![0u8; size as usize];
        if self.read_full(&mut v)? < v.len() {
            return Err(self.truncated(format!("body of {what}")));
        }
        self.discard(pad(size), &format!("padding of {what}"))?;
        Ok(v)
    }

    fn malformed(&self, off: u64, reason: impl Into<String>) -> TarError {
        TarError::Malformed {
            offset: off,
            reason: reason.into(),
        }
    }

    /// Advances to the next entry, skipping any unread data of the current one.
    /// Returns `None` at the end-of-archive marker.
    pub fn next_entry(&mut self) -> Result<Option<EntryMeta>, TarError> {
        if self.finished {
            return Ok(None);
        }
        let rest = self.remaining + self.padding;
        let name = escape_bytes(&self.current);
        self.discard(rest, &format!("data of entry {name}"))?;
        self.remaining = 0;
        self.padding = 0;

        let mut local: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut longname: Option<Vec<u8>> = None;
        let mut longlink: Option<Vec<u8>> = None;
        let mut blk = [0u8; BLOCK];
        loop {
            let hdr_off = self.offset;
            if !self.read_block(&mut blk, "a header")? {
                return Err(self.truncated("end of stream without the end-of-archive marker"));
            }
            if zero_block(&blk) {
                let mut next = [0u8; BLOCK];
                let more = self.read_block(&mut next, "the end-of-archive marker")?;
                if more && !zero_block(&next) {
                    self.notes.push(format!(
                        "lone zero block at byte {hdr_off}: treated as end of archive"
                    ));
                } else if !more {
                    self.notes.push(format!(
                        "single zero block at byte {hdr_off} ends the archive"
                    ));
                }
                self.finished = true;
                return Ok(None);
            }
            verify_checksum(&blk).map_err(|_| TarError::Checksum { offset: hdr_off })?;
            let typeflag = blk[156];
            let size = parse_u64(&blk[124..136], "size").map_err(|e| self.malformed(hdr_off, e))?;
            match typeflag {
                b'x' => {
                    let body =
                        self.read_body(size, self.limits.max_pax, "pax extended header", hdr_off)?;
                    let recs = parse_pax(&body).map_err(|e| self.malformed(hdr_off, e))?;
                    local.extend(recs);
                    continue;
                }
                b'g' => {
                    let body =
                        self.read_body(size, self.limits.max_pax, "pax global header", hdr_off)?;
                    let recs = parse_pax(&body).map_err(|e| self.malformed(hdr_off, e))?;
                    for (k, v) in recs {
                        if matches!(&k[..], b"path" | b"linkpath" | b"size") {
                            continue;
                        }
                        self.globals.retain(|(gk, _)| *gk != k);
                        self.globals.push((k, v));
                    }
                    if self.globals.len() > 10_000 {
                        return Err(self.malformed(hdr_off, "too many global pax keywords"));
                    }
                    continue;
                }
                b'L' | b'K' => {
                    let what = if typeflag == b'L' {
                        "GNU long name"
                    } else {
                        "GNU long link name"
                    };
                    let mut body =
                        self.read_body(size, self.limits.max_path as u64 + 1, what, hdr_off)?;
                    while body.last() == Some(&0) {
                        body.pop();
                    }
                    if typeflag == b'L' {
                        longname = Some(body);
                    } else {
                        longlink = Some(body);
                    }
                    continue;
                }
                b'M' | b'N' => {
                    return Err(self.malformed(
                        hdr_off,
                        "multi-volume / old GNU name entries are not supported",
                    ));
                }
                _ => {}
            }
            return self
                .build_entry(&blk, hdr_off, size, local, longname, longlink)
                .map(Some);
        }
    }

    fn build_entry(
        &mut self,
        blk: &[u8; BLOCK],
        hdr_off: u64,
        hdr_size: u64,
        local: Vec<(Vec<u8>, Vec<u8>)>,
        longname: Option<Vec<u8>>,
        longlink: Option<Vec<u8>>,
    ) -> Result<EntryMeta, TarError> {
        let typeflag = blk[156];
        let ustar = &blk[257..263] == b"ustar\0";
        let mut path = cstr_field(&blk[0..100]).to_vec();
        if ustar {
            let prefix = cstr_field(&blk[345..500]);
            if !prefix.is_empty() {
                let mut p = prefix.to_vec();
                p.push(b'/');
                p.extend_from_slice(&path);
                path = p;
            }
        }
        let m = |e: String| TarError::Malformed {
            offset: hdr_off,
            reason: e,
        };
        let mode = (parse_u64(&blk[100..108], "mode").map_err(m)? & 0o7777) as u32;
        let uid = parse_u64(&blk[108..116], "uid").map_err(m)?;
        let gid = parse_u64(&blk[116..124], "gid").map_err(m)?;
        let mt = parse_num(&blk[136..148]).map_err(m)?;
        let mtime = Mtime {
            sec: i64::try_from(mt).map_err(|_| self.malformed(hdr_off, "mtime out of range"))?,
            nsec: 0,
        };
        let mut link = cstr_field(&blk[157..257]).to_vec();
        let devmajor = parse_u64(&blk[329..337], "devmajor").unwrap_or(0);
        let devminor = parse_u64(&blk[337..345], "devminor").unwrap_or(0);
        let mut meta = EntryMeta {
            path: Vec::new(),
            kind: Kind::File,
            mode,
            uid,
            gid,
            size: hdr_size,
            mtime,
            link: Vec::new(),
            devmajor: devmajor as u32,
            devminor: devminor as u32,
            xattrs: Vec::new(),
            acl_access: None,
            acl_default: None,
            sparse: None,
            stored_size: hdr_size,
            header_offset: hdr_off,
        };
        if let Some(l) = longname {
            path = l;
        }
        if let Some(l) = longlink {
            link = l;
        }
        let mut sp = SparseInfo::default();
        let records: Vec<(Vec<u8>, Vec<u8>)> = self.globals.iter().cloned().chain(local).collect();
        for (k, v) in records {
            let bad = |what: &str| TarError::Malformed {
                offset: hdr_off,
                reason: format!("bad pax {what} value"),
            };
            match &k[..] {
                b"path" => path = v,
                b"linkpath" => link = v,
                b"size" => {
                    meta.size = parse_dec(&v, "size").map_err(m)?;
                    meta.stored_size = meta.size;
                }
                b"uid" => meta.uid = parse_dec(&v, "uid").map_err(m)?,
                b"gid" => meta.gid = parse_dec(&v, "gid").map_err(m)?,
                b"mtime" => meta.mtime = parse_pax_time(&v).ok_or_else(|| bad("mtime"))?,
                b"SCHILY.devmajor" => meta.devmajor = parse_dec(&v, "devmajor").map_err(m)? as u32,
                b"SCHILY.devminor" => meta.devminor = parse_dec(&v, "devminor").map_err(m)? as u32,
                b"SCHILY.acl.access" => meta.acl_access = Some(v),
                b"SCHILY.acl.default" => meta.acl_default = Some(v),
                b"GNU.sparse.major" => sp.major = Some(parse_dec(&v, "sparse major").map_err(m)?),
                b"GNU.sparse.minor" => sp.minor = Some(parse_dec(&v, "sparse minor").map_err(m)?),
                b"GNU.sparse.size" | b"GNU.sparse.realsize" => {
                    sp.realsize = Some(parse_dec(&v, "sparse size").map_err(m)?)
                }
                b"GNU.sparse.name" => sp.name = Some(v),
                b"GNU.sparse.map" => sp.map01 = Some(v),
                b"GNU.sparse.numblocks" => {}
                b"GNU.sparse.offset" => {
                    sp.pending_offset = Some(parse_dec(&v, "sparse offset").map_err(m)?)
                }
                b"GNU.sparse.numbytes" => {
                    let n = parse_dec(&v, "sparse numbytes").map_err(m)?;
                    let off = sp
                        .pending_offset
                        .take()
                        .ok_or_else(|| bad("GNU.sparse.numbytes without offset"))?;
                    if sp.pairs00.len() >= self.limits.max_sparse_segments {
                        return Err(self.limit_err(hdr_off, "sparse map", sp.pairs00.len() as u64));
                    }
                    sp.pairs00.push((off, n));
                }
                _ if k.starts_with(b"SCHILY.xattr.") => {
                    let name = k[b"SCHILY.xattr.".len()..].to_vec();
                    if v.len() > self.limits.max_xattr_value {
                        return Err(TarError::Limit {
                            offset: hdr_off,
                            what: format!("xattr {}", escape_bytes(&name)),
                            size: v.len() as u64,
                            limit: self.limits.max_xattr_value as u64,
                        });
                    }
                    meta.xattrs.retain(|(n, _)| *n != name);
                    meta.xattrs.push((name, v));
                }
                _ if k.starts_with(b"LIBARCHIVE.xattr.") => {
                    self.notes.push(format!(
                        "entry at byte {hdr_off}: LIBARCHIVE.xattr keyword ignored (use GNU tar's SCHILY.xattr)"
                    ));
                }
                _ => {}
            }
        }

        meta.kind = match typeflag {
            b'0' | 0 | b'7' if path.ends_with(b"/") && typeflag != b'7' => Kind::Directory,
            b'0' | 0 | b'7' | b'S' => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::CharDevice,
            b'4' => Kind::BlockDevice,
            b'5' | b'D' => Kind::Directory,
            b'6' => Kind::Fifo,
            other => Kind::Other(other),
        };

        // Sparse files.
        if typeflag == b'S' {
            let map = self.read_old_gnu_sparse(blk, hdr_off)?;
            let real = parse_u64(&blk[483..495], "sparse realsize").map_err(m)?;
            meta.sparse = Some(map);
            meta.size = real;
        } else if sp.major == Some(1) && sp.minor == Some(0) {
            let map = self.read_sparse_1_0(&mut meta, hdr_off)?;
            meta.sparse = Some(map);
            meta.size = sp
                .realsize
                .ok_or_else(|| self.malformed(hdr_off, "sparse 1.0 without GNU.sparse.realsize"))?;
        } else if sp.major.is_some() {
            return Err(self.malformed(hdr_off, "unsupported GNU sparse format version"));
        } else if let Some(mapv) = sp.map01.take() {
            let nums: Result<Vec<u64>, _> = mapv
                .split(|&b| b == b',')
                .map(|n| parse_dec(n, "sparse map"))
                .collect();
            let nums = nums.map_err(m)?;
            if nums.len() % 2 != 0 {
                return Err(self.malformed(hdr_off, "odd number of values in GNU.sparse.map"));
            }
            if nums.len() / 2 > self.limits.max_sparse_segments {
                return Err(self.limit_err(hdr_off, "sparse map", (nums.len() / 2) as u64));
            }
            meta.sparse = Some(nums.chunks(2).map(|c| (c[0], c[1])).collect());
            meta.size = sp
                .realsize
                .ok_or_else(|| self.malformed(hdr_off, "sparse 0.1 without GNU.sparse.size"))?;
        } else if !sp.pairs00.is_empty() {
            meta.sparse = Some(std::mem::take(&mut sp.pairs00));
            meta.size = sp
                .realsize
                .ok_or_else(|| self.malformed(hdr_off, "sparse 0.0 without GNU.sparse.size"))?;
        }
        if let Some(name) = sp.name.take() {
            if meta.sparse.is_some() {
                path = name;
            }
        }
        if let Some(map) = &meta.sparse {
            validate_sparse(map, meta.size, meta.stored_size)
                .map_err(|e| self.malformed(hdr_off, e))?;
        }

        if path.is_empty() {
            return Err(self.malformed(hdr_off, "entry with an empty name"));
        }
        if path.len() > self.limits.max_path {
            return Err(TarError::Limit {
                offset: hdr_off,
                what: "entry path".into(),
                size: path.len() as u64,
                limit: self.limits.max_path as u64,
            });
        }
        if link.len() > self.limits.max_path {
            return Err(TarError::Limit {
                offset: hdr_off,
                what: format!("link target of {}", escape_bytes(&path)),
                size: link.len() as u64,
                limit: self.limits.max_path as u64,
            });
        }
        if path.contains(&0) || link.contains(&0) {
            return Err(self.malformed(hdr_off, "NUL byte in a name"));
        }
        meta.path = path;
        meta.link = link;
        if matches!(meta.kind, Kind::File) && meta.sparse.is_none() {
            meta.size = meta.stored_size;
        }
        if !matches!(meta.kind, Kind::File) {
            meta.size = 0;
        }
        self.current = meta.path.clone();
        // the 1.0 map consumed whole blocks, so padding follows from the data alone
        self.remaining = meta.stored_size;
        self.padding = pad(meta.stored_size);
        Ok(meta)
    }

    fn limit_err(&self, off: u64, what: &str, size: u64) -> TarError {
        TarError::Limit {
            offset: off,
            what: what.into(),
            size,
            limit: self.limits.max_sparse_segments as u64,
        }
    }

    fn read_old_gnu_sparse(
        &mut self,
        blk: &[u8; BLOCK],
        hdr_off: u64,
    ) -> Result<Vec<(u64, u64)>, TarError> {
        let mut map = Vec::new();
        let push = |map: &mut Vec<(u64, u64)>, e: &[u8]| -> Result<(), String> {
            if e[0] == 0 {
                return Ok(());
            }
            let off = parse_u64(&e[0..12], "sparse offset")?;
            let len = parse_u64(&e[12..24], "sparse numbytes")?;
            map.push((off, len));
            Ok(())
        };
        for i in 0..4 {
            let s = 386 + i * 24;
            push(&mut map, &blk[s..s + 24]).map_err(|e| self.malformed(hdr_off, e))?;
        }
        let mut extended = blk[482] != 0;
        let mut ext = [0u8; BLOCK];
        while extended {
            if !self.read_block(&mut ext, "a sparse extension header")? {
                return Err(self.truncated("sparse extension header"));
            }
            for i in 0..21 {
                let s = i * 24;
                push(&mut map, &ext[s..s + 24]).map_err(|e| self.malformed(hdr_off, e))?;
            }
            if map.len() > self.limits.max_sparse_segments {
                return Err(self.limit_err(hdr_off, "sparse map", map.len() as u64));
            }
            extended = ext[504] != 0;
        }
        Ok(map)
    }

    /// Reads the 1.0 sparse map stored at the start of the entry's data: decimal
    /// numbers each ended by a newline (count, then offset/size pairs), padded to a
    /// whole block. Shrinks `stored_size` to the data that follows the map.
    fn read_sparse_1_0(
        &mut self,
        meta: &mut EntryMeta,
        hdr_off: u64,
    ) -> Result<Vec<(u64, u64)>, TarError> {
        let mut blk = [0u8; BLOCK];
        let mut pos = BLOCK;
        let mut consumed = 0u64;
        let mut count: Option<u64> = None;
        let mut map = Vec::new();
        let mut pending: Option<u64> = None;
        let mut digits: Vec<u8> = Vec::new();
        loop {
            if count == Some(map.len() as u64) && pending.is_none() {
                break;
            }
            if pos == BLOCK {
                if consumed + BLOCK as u64 > meta.stored_size {
                    return Err(self.malformed(hdr_off, "sparse 1.0 map longer than the entry"));
                }
                if !self.read_block(&mut blk, "a sparse map")? {
                    return Err(self.truncated("sparse map"));
                }
                consumed += BLOCK as u64;
                pos = 0;
            }
            let c = blk[pos];
            pos += 1;
            if c == b'\n' {
                let v = parse_dec(&digits, "sparse map").map_err(|e| self.malformed(hdr_off, e))?;
                digits.clear();
                match count {
                    None => {
                        if v > self.limits.max_sparse_segments as u64 {
                            return Err(self.limit_err(hdr_off, "sparse map", v));
                        }
                        count = Some(v);
                    }
                    Some(_) => match pending.take() {
                        None => pending = Some(v),
                        Some(off) => map.push((off, v)),
                    },
                }
            } else if c.is_ascii_digit() && digits.len() < 20 {
                digits.push(c);
            } else {
                return Err(self.malformed(hdr_off, "bad number in sparse 1.0 map"));
            }
        }
        meta.stored_size -= consumed;
        Ok(map)
    }

    /// Reads up to `buf.len()` bytes of the current entry's stored data. Returns 0 once
    /// it is all read. A stream that ends early is a [`TarError::Truncated`] naming the entry.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.remaining) as usize;
        let n = self.read_some(&mut buf[..want])?;
        if n == 0 {
            return Err(self.truncated(format!(
                "data of entry {} ends {} bytes early",
                escape_bytes(&self.current),
                self.remaining
            )));
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// After the end-of-archive marker: reads and discards what is left (the writer pads
    /// to its record size; not reading it would make the remote side see a broken pipe).
    /// At most `max` bytes are drained. Returns the number of bytes drained.
    pub fn drain(&mut self, max: u64) -> Result<u64, TarError> {
        let mut buf = [0u8; 8192];
        let mut total = 0;
        while total < max {
            let n = self.read_some(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        Ok(total)
    }
}

fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Checks that segments are ordered, do not overlap, lie within the real size and add
/// up to the stored data.
fn validate_sparse(map: &[(u64, u64)], realsize: u64, stored: u64) -> Result<(), String> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(off, len) in map {
        if off < end {
            return Err("sparse map segments overlap or are out of order".into());
        }
        end = off.checked_add(len).ok_or("sparse segment overflows")?;
        if end > realsize {
            return Err("sparse segment beyond the file's real size".into());
        }
        total = total.checked_add(len).ok_or("sparse map overflows")?;
    }
    if total != stored {
        return Err(format!(
            "sparse map covers {total} bytes but the entry stores {stored}"
        ));
    }
    Ok(())
}

fn verify_checksum(blk: &[u8; BLOCK]) -> Result<(), ()> {
    let stored = parse_num(&blk[148..156]).map_err(|_| ())?;
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in blk.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    if stored == i128::from(unsigned) || stored == i128::from(signed) {
        Ok(())
    } else {
        Err(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_num(b"0000644\0").unwrap(), 0o644);
        assert_eq!(parse_num(b"   17 \0").unwrap(), 0o17);
        assert_eq!(parse_num(b"\0\0\0\0").unwrap(), 0);
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[11] = 0x01;
        f[10] = 0x02;
        assert_eq!(parse_num(&f).unwrap(), 0x0201);
        let f = [0xffu8; 12];
        assert_eq!(parse_num(&f).unwrap(), -1);
        assert!(parse_num(b"12x4").is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1795630474.207379268"),
            Some(Mtime {
                sec: 1795630474,
                nsec: 207379268
            })
        );
        assert_eq!(parse_pax_time(b"12"), Some(Mtime { sec: 12, nsec: 0 }));
        assert_eq!(
            parse_pax_time(b"-1.5"),
            Some(Mtime {
                sec: -2,
                nsec: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"1.1234567891"),
            Some(Mtime {
                sec: 1,
                nsec: 123456789
            })
        );
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn pax_records() {
        let r = parse_pax(b"12 path=abc\n20 SCHILY.xattr.a=b\n").unwrap();
        assert_eq!(
            r,
            vec![
                (b"path".to_vec(), b"abc".to_vec()),
                (b"SCHILY.xattr.a".to_vec(), b"b".to_vec())
            ]
        );
        // value containing newline and '=' (length-delimited, not line-delimited)
        let r = parse_pax(b"13 path=a\nb=\n").unwrap();
        assert_eq!(r[0].1, b"a\nb=".to_vec());
        assert!(parse_pax(b"99 path=abc\n").is_err());
        assert!(parse_pax(b"5 a=b\n").is_err());
    }

    #[test]
    fn sparse_validation() {
        assert!(validate_sparse(&[(0, 10), (100, 5), (200, 0)], 200, 15).is_ok());
        assert!(validate_sparse(&[(100, 5), (0, 10)], 200, 15).is_err());
        assert!(validate_sparse(&[(0, 10)], 5, 10).is_err());
        assert!(validate_sparse(&[(0, 10)], 50, 11).is_err());
    }
}
