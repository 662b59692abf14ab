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
//!
//! The header layout and its codecs live in [`header`], shared with the archive
//! writer of `pack`.

pub mod header;
#[cfg(feature = "test-support")]
pub mod testing;

use crate::util::escape_bytes;
use header::*;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use header::{parse_pax, parse_pax_time, Kind, Mtime, PaxRecord};

/// Bounds on attacker-controlled metadata.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
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
        self.discard(padding(size), &format!("padding of {what}"))?;
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
        self.skip_current()?;
        let mut ext = Extensions::default();
        let mut blk = [0u8; BLOCK];
        loop {
            let hdr_off = self.offset;
            if !self.read_block(&mut blk, "a header")? {
                return Err(self.truncated("end of stream without the end-of-archive marker"));
            }
            if is_zero_block(&blk) {
                self.end_of_archive(hdr_off)?;
                return Ok(None);
            }
            if !checksum_ok(&blk) {
                return Err(TarError::Checksum { offset: hdr_off });
            }
            let size = parse_u64(&blk[SIZE], "size").map_err(malformed_at(hdr_off))?;
            if !self.read_extension(blk[TYPEFLAG], size, hdr_off, &mut ext)? {
                return self.build_entry(&blk, hdr_off, size, ext).map(Some);
            }
        }
    }

    /// Skips what the caller left unread of the current entry's data, and its padding.
    fn skip_current(&mut self) -> Result<(), TarError> {
        let rest = self.remaining + self.padding;
        let name = escape_bytes(&self.current);
        self.discard(rest, &format!("data of entry {name}"))?;
        self.remaining = 0;
        self.padding = 0;
        Ok(())
    }

    /// After a zero block. Some writers end with a single zero block or put junk
    /// after the first one; either still ends the archive, with a note.
    fn end_of_archive(&mut self, hdr_off: u64) -> Result<(), TarError> {
        let mut next = [0u8; BLOCK];
        let more = self.read_block(&mut next, "the end-of-archive marker")?;
        if more && !is_zero_block(&next) {
            self.notes.push(format!(
                "lone zero block at byte {hdr_off}: treated as end of archive"
            ));
        } else if !more {
            self.notes.push(format!(
                "single zero block at byte {hdr_off} ends the archive"
            ));
        }
        self.finished = true;
        Ok(())
    }

    /// Reads the body of an extension header (pax, GNU long name) into `ext`.
    /// Returns false, reading nothing, for an entry's own header.
    fn read_extension(
        &mut self,
        flag: u8,
        size: u64,
        hdr_off: u64,
        ext: &mut Extensions,
    ) -> Result<bool, TarError> {
        match flag {
            typeflag::PAX_LOCAL => {
                let recs = self.read_pax(size, "pax extended header", hdr_off)?;
                ext.pax.extend(recs);
            }
            typeflag::PAX_GLOBAL => {
                let recs = self.read_pax(size, "pax global header", hdr_off)?;
                self.set_globals(recs, hdr_off)?;
            }
            typeflag::GNU_LONG_NAME => {
                ext.long_name = Some(self.read_long_name(size, "GNU long name", hdr_off)?);
            }
            typeflag::GNU_LONG_LINK => {
                ext.long_link = Some(self.read_long_name(size, "GNU long link name", hdr_off)?);
            }
            typeflag::GNU_MULTI_VOLUME | typeflag::GNU_OLD_NAMES => {
                return Err(self.malformed(
                    hdr_off,
                    "multi-volume / old GNU name entries are not supported",
                ));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn read_pax(
        &mut self,
        size: u64,
        what: &str,
        hdr_off: u64,
    ) -> Result<Vec<PaxRecord>, TarError> {
        let body = self.read_body(size, self.limits.max_pax, what, hdr_off)?;
        parse_pax(&body).map_err(|e| self.malformed(hdr_off, e))
    }

    /// Records of a `g` header; a keyword given again replaces the earlier value.
    fn set_globals(&mut self, recs: Vec<PaxRecord>, hdr_off: u64) -> Result<(), TarError> {
        for (k, v) in recs {
            // see the module documentation
            if matches!(&k[..], b"path" | b"linkpath" | b"size") {
                continue;
            }
            self.globals.retain(|(gk, _)| *gk != k);
            self.globals.push((k, v));
        }
        if self.globals.len() > 10_000 {
            return Err(self.malformed(hdr_off, "too many global pax keywords"));
        }
        Ok(())
    }

    /// The body of an `L` or `K` header: a name, usually NUL-terminated (hence the
    /// one byte allowed beyond the path limit).
    fn read_long_name(&mut self, size: u64, what: &str, hdr_off: u64) -> Result<Vec<u8>, TarError> {
        let mut body = self.read_body(size, self.limits.max_path as u64 + 1, what, hdr_off)?;
        while body.last() == Some(&0) {
            body.pop();
        }
        Ok(body)
    }

    /// Combines an entry's own header with what its extension headers said.
    fn build_entry(
        &mut self,
        blk: &[u8; BLOCK],
        hdr_off: u64,
        hdr_size: u64,
        ext: Extensions,
    ) -> Result<EntryMeta, TarError> {
        let mut d = Draft::from_header(blk, hdr_off, hdr_size)?;
        if let Some(l) = ext.long_name {
            d.path = l;
        }
        if let Some(l) = ext.long_link {
            d.link = l;
        }
        let records: Vec<PaxRecord> = self.globals.iter().cloned().chain(ext.pax).collect();
        for (k, v) in records {
            self.apply_record(&mut d, k, v, hdr_off)?;
        }
        d.meta.kind = Kind::from_typeflag(blk[TYPEFLAG], &d.path);
        self.resolve_sparse(blk, &mut d, hdr_off)?;
        self.check_names(&d.path, &d.link, hdr_off)?;
        Ok(self.start_entry(d))
    }

    /// Applies one pax record to the entry being built.
    fn apply_record(
        &mut self,
        d: &mut Draft,
        k: Vec<u8>,
        v: Vec<u8>,
        hdr_off: u64,
    ) -> Result<(), TarError> {
        let m = malformed_at(hdr_off);
        let meta = &mut d.meta;
        match &k[..] {
            b"path" => d.path = v,
            b"linkpath" => d.link = v,
            b"size" => {
                meta.size = parse_dec(&v, "size").map_err(m)?;
                meta.stored_size = meta.size;
            }
            b"uid" => meta.uid = parse_dec(&v, "uid").map_err(m)?,
            b"gid" => meta.gid = parse_dec(&v, "gid").map_err(m)?,
            b"mtime" => {
                meta.mtime = parse_pax_time(&v).ok_or_else(|| bad_pax_value(hdr_off, "mtime"))?
            }
            b"SCHILY.devmajor" => meta.devmajor = parse_dec(&v, "devmajor").map_err(m)? as u32,
            b"SCHILY.devminor" => meta.devminor = parse_dec(&v, "devminor").map_err(m)? as u32,
            b"SCHILY.acl.access" => meta.acl_access = Some(v),
            b"SCHILY.acl.default" => meta.acl_default = Some(v),
            _ if k.starts_with(b"GNU.sparse.") => {
                self.apply_sparse_record(&mut d.sparse, &k, v, hdr_off)?
            }
            _ if k.starts_with(b"SCHILY.xattr.") => self.apply_xattr(meta, &k, v, hdr_off)?,
            _ if k.starts_with(b"LIBARCHIVE.xattr.") => {
                self.notes.push(format!(
                    "entry at byte {hdr_off}: LIBARCHIVE.xattr keyword ignored (use GNU tar's SCHILY.xattr)"
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The `GNU.sparse.*` keywords of the three pax sparse formats; which format
    /// the entry uses is decided once all records are read.
    fn apply_sparse_record(
        &self,
        sp: &mut SparseInfo,
        k: &[u8],
        v: Vec<u8>,
        hdr_off: u64,
    ) -> Result<(), TarError> {
        let m = malformed_at(hdr_off);
        match k {
            b"GNU.sparse.major" => sp.major = Some(parse_dec(&v, "sparse major").map_err(m)?),
            b"GNU.sparse.minor" => sp.minor = Some(parse_dec(&v, "sparse minor").map_err(m)?),
            b"GNU.sparse.size" | b"GNU.sparse.realsize" => {
                sp.realsize = Some(parse_dec(&v, "sparse size").map_err(m)?)
            }
            b"GNU.sparse.name" => sp.name = Some(v),
            b"GNU.sparse.map" => sp.map01 = Some(v),
            b"GNU.sparse.offset" => {
                sp.pending_offset = Some(parse_dec(&v, "sparse offset").map_err(m)?)
            }
            b"GNU.sparse.numbytes" => {
                let n = parse_dec(&v, "sparse numbytes").map_err(m)?;
                let off = sp
                    .pending_offset
                    .take()
                    .ok_or_else(|| bad_pax_value(hdr_off, "GNU.sparse.numbytes without offset"))?;
                if sp.pairs00.len() >= self.limits.max_sparse_segments {
                    return Err(self.limit_err(hdr_off, "sparse map", sp.pairs00.len() as u64));
                }
                sp.pairs00.push((off, n));
            }
            // GNU.sparse.numblocks only announces how many pairs follow
            _ => {}
        }
        Ok(())
    }

    fn apply_xattr(
        &self,
        meta: &mut EntryMeta,
        k: &[u8],
        v: Vec<u8>,
        hdr_off: u64,
    ) -> Result<(), TarError> {
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
        Ok(())
    }

    /// Sets the sparse map and real size, when the entry has them, and checks them.
    fn resolve_sparse(
        &mut self,
        blk: &[u8; BLOCK],
        d: &mut Draft,
        hdr_off: u64,
    ) -> Result<(), TarError> {
        if let Some((map, realsize)) = self.sparse_map(blk, d, hdr_off)? {
            validate_sparse(&map, realsize, d.meta.stored_size)
                .map_err(|e| self.malformed(hdr_off, e))?;
            d.meta.sparse = Some(map);
            d.meta.size = realsize;
            // pax sparse files are stored under a made-up name; this is the real one
            if let Some(name) = d.sparse.name.take() {
                d.path = name;
            }
        }
        Ok(())
    }

    /// The sparse map and real size, from whichever of the four forms the entry
    /// uses: old GNU `S` header, or pax 1.0, 0.1 or 0.0.
    fn sparse_map(
        &mut self,
        blk: &[u8; BLOCK],
        d: &mut Draft,
        hdr_off: u64,
    ) -> Result<Option<(SparseMap, u64)>, TarError> {
        if blk[TYPEFLAG] == typeflag::GNU_SPARSE {
            let map = self.read_old_gnu_sparse(blk, hdr_off)?;
            let real =
                parse_u64(&blk[GNU_REALSIZE], "sparse realsize").map_err(malformed_at(hdr_off))?;
            return Ok(Some((map, real)));
        }
        let sp = &mut d.sparse;
        let (map, missing_size) = if sp.major == Some(1) && sp.minor == Some(0) {
            let map = self.read_sparse_1_0(&mut d.meta, hdr_off)?;
            (map, "sparse 1.0 without GNU.sparse.realsize")
        } else if sp.major.is_some() {
            return Err(self.malformed(hdr_off, "unsupported GNU sparse format version"));
        } else if let Some(text) = sp.map01.take() {
            let map = self.parse_sparse_0_1(&text, hdr_off)?;
            (map, "sparse 0.1 without GNU.sparse.size")
        } else if !sp.pairs00.is_empty() {
            let map = std::mem::take(&mut sp.pairs00);
            (map, "sparse 0.0 without GNU.sparse.size")
        } else {
            return Ok(None);
        };
        let real = sp
            .realsize
            .ok_or_else(|| self.malformed(hdr_off, missing_size))?;
        Ok(Some((map, real)))
    }

    /// The 0.1 map: one `GNU.sparse.map` record of comma-separated offset,size pairs.
    fn parse_sparse_0_1(&self, text: &[u8], hdr_off: u64) -> Result<Vec<(u64, u64)>, TarError> {
        let nums: Result<Vec<u64>, _> = text
            .split(|&b| b == b',')
            .map(|n| parse_dec(n, "sparse map"))
            .collect();
        let nums = nums.map_err(malformed_at(hdr_off))?;
        if nums.len() % 2 != 0 {
            return Err(self.malformed(hdr_off, "odd number of values in GNU.sparse.map"));
        }
        if nums.len() / 2 > self.limits.max_sparse_segments {
            return Err(self.limit_err(hdr_off, "sparse map", (nums.len() / 2) as u64));
        }
        Ok(nums.chunks(2).map(|c| (c[0], c[1])).collect())
    }

    /// Names must be present, within the limits and free of NUL (no system call
    /// could take such a name).
    fn check_names(&self, path: &[u8], link: &[u8], hdr_off: u64) -> Result<(), TarError> {
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
                what: format!("link target of {}", escape_bytes(path)),
                size: link.len() as u64,
                limit: self.limits.max_path as u64,
            });
        }
        if path.contains(&0) || link.contains(&0) {
            return Err(self.malformed(hdr_off, "NUL byte in a name"));
        }
        Ok(())
    }

    /// Final sizes (only regular files have a logical size), and the reader's
    /// state for the entry's data.
    fn start_entry(&mut self, d: Draft) -> EntryMeta {
        let mut meta = d.meta;
        meta.path = d.path;
        meta.link = d.link;
        if matches!(meta.kind, Kind::File) && meta.sparse.is_none() {
            meta.size = meta.stored_size;
        }
        if !matches!(meta.kind, Kind::File) {
            meta.size = 0;
        }
        self.current = meta.path.clone();
        // the 1.0 map consumed whole blocks, so padding follows from the data alone
        self.remaining = meta.stored_size;
        self.padding = padding(meta.stored_size);
        meta
    }

    fn limit_err(&self, off: u64, what: &str, size: u64) -> TarError {
        TarError::Limit {
            offset: off,
            what: what.into(),
            size,
            limit: self.limits.max_sparse_segments as u64,
        }
    }

    /// The old GNU map: four entries in the header, 21 in each extension block
    /// that follows while the "extended" flag is set.
    fn read_old_gnu_sparse(
        &mut self,
        blk: &[u8; BLOCK],
        hdr_off: u64,
    ) -> Result<Vec<(u64, u64)>, TarError> {
        let mut map = Vec::new();
        push_sparse_entries(&blk[GNU_SPARSE_MAP], &mut map).map_err(malformed_at(hdr_off))?;
        let mut extended = blk[GNU_IS_EXTENDED] != 0;
        let mut ext = [0u8; BLOCK];
        while extended {
            if !self.read_block(&mut ext, "a sparse extension header")? {
                return Err(self.truncated("sparse extension header"));
            }
            push_sparse_entries(&ext[EXT_SPARSE_MAP], &mut map).map_err(malformed_at(hdr_off))?;
            if map.len() > self.limits.max_sparse_segments {
                return Err(self.limit_err(hdr_off, "sparse map", map.len() as u64));
            }
            extended = ext[EXT_IS_EXTENDED] != 0;
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

/// (offset, length) of each data segment of a sparse file.
type SparseMap = Vec<(u64, u64)>;

/// What extension headers said about the entry whose own header follows them.
#[derive(Default)]
struct Extensions {
    /// Records of `x` headers, in order.
    pax: Vec<PaxRecord>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
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

/// An entry while its headers are combined. The names stay out of `meta` until
/// the sparse keywords, which may rename the entry, are resolved.
struct Draft {
    meta: EntryMeta,
    path: Vec<u8>,
    link: Vec<u8>,
    sparse: SparseInfo,
}

impl Draft {
    /// What the entry's own header block says.
    fn from_header(blk: &[u8; BLOCK], hdr_off: u64, hdr_size: u64) -> Result<Draft, TarError> {
        let m = malformed_at(hdr_off);
        let mode = (parse_u64(&blk[MODE], "mode").map_err(&m)? & 0o7777) as u32;
        let uid = parse_u64(&blk[UID], "uid").map_err(&m)?;
        let gid = parse_u64(&blk[GID], "gid").map_err(&m)?;
        let mt = parse_num(&blk[MTIME]).map_err(&m)?;
        let sec = i64::try_from(mt).map_err(|_| m("mtime out of range".into()))?;
        // device numbers are only meaningful for devices; junk elsewhere is ignored
        let devmajor = parse_u64(&blk[DEVMAJOR], "devmajor").unwrap_or(0);
        let devminor = parse_u64(&blk[DEVMINOR], "devminor").unwrap_or(0);
        let meta = EntryMeta {
            path: Vec::new(),
            kind: Kind::File,
            mode,
            uid,
            gid,
            size: hdr_size,
            mtime: Mtime { sec, nsec: 0 },
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
        Ok(Draft {
            meta,
            path: header_path(blk),
            link: cstr_field(&blk[LINKNAME]).to_vec(),
            sparse: SparseInfo::default(),
        })
    }
}

/// The name in a header block, joined to the ustar `prefix` when there is one
/// (GNU-format headers use that area for other fields).
fn header_path(blk: &[u8; BLOCK]) -> Vec<u8> {
    let name = cstr_field(&blk[NAME]);
    let prefix = if &blk[MAGIC] == USTAR_MAGIC {
        cstr_field(&blk[PREFIX])
    } else {
        b""
    };
    if prefix.is_empty() {
        return name.to_vec();
    }
    [prefix, b"/", name].concat()
}

fn malformed_at(offset: u64) -> impl Fn(String) -> TarError {
    move |reason| TarError::Malformed { offset, reason }
}

fn bad_pax_value(offset: u64, what: &str) -> TarError {
    TarError::Malformed {
        offset,
        reason: format!("bad pax {what} value"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_validation() {
        assert!(validate_sparse(&[(0, 10), (100, 5), (200, 0)], 200, 15).is_ok());
        assert!(validate_sparse(&[(100, 5), (0, 10)], 200, 15).is_err());
        assert!(validate_sparse(&[(0, 10)], 5, 10).is_err());
        assert!(validate_sparse(&[(0, 10)], 50, 11).is_err());
    }
}
