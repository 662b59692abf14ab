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
//! against [`Limits`] before it is buffered; that includes what several extension
//! headers add up to for one entry, so chaining them gains nothing. File data is never
//! buffered here: the caller pulls it with [`TarReader::read_data`]. Every size, offset
//! and count taken from the archive is combined with checked arithmetic: a value that
//! would overflow is a [`TarError::Malformed`], never a wrapped number.
//!
//! Global pax headers (`g`) are honoured for attributes (mtime, uid, gid, device
//! numbers, ACLs, xattrs) but their `path`, `linkpath` and `size` keywords are
//! ignored: applied literally they would give every later entry the same name. Their
//! `GNU.sparse.*` keywords are ignored too (a sparse map describes one entry's data).
//! What they keep is bounded by [`Limits::max_pax_global`] and
//! [`Limits::max_pax_global_keywords`], and their xattrs are shared by every entry
//! ([`Xattrs`]), not copied into each.
//!
//! The header layout and its codecs live in [`header`], shared with the archive
//! writer of xcat-image's `pack`. [`escape`] renders archive bytes (names, values)
//! for messages. The `test-support` feature adds `testing::TarBuilder`, which
//! writes crafted (also hostile) archives with the same codecs.
//!
//! No I/O beyond the [`Read`] it is given, and no async runtime: the daemon's
//! capture and the boot-time unpacker of the initrd both use it.

pub mod escape;
pub mod header;
#[cfg(feature = "test-support")]
pub mod testing;

use escape::escape_bytes;
use header::*;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use header::{parse_pax, parse_pax_time, Kind, Mtime, PaxRecord};

/// Bounds on attacker-controlled metadata. Exceeding one is a [`TarError::Limit`]
/// naming the field (in the error text, `max_path` and so on). The daemon's
/// `[capture.limits]` configuration may override any of them.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Limits {
    /// Longest accepted entry path or link target, in bytes (Linux's `PATH_MAX`).
    pub max_path: usize,
    /// Largest single pax extended header (`x` or `g`) body, in bytes.
    pub max_pax: u64,
    /// Most bytes of pax `x` header bodies for one entry, all chained headers
    /// together. GNU tar writes one header per entry; a file's xattr names fit in
    /// 64 KiB (`listxattr`) and its ACLs in a few KiB, so 4 MiB is generous.
    pub max_pax_entry: u64,
    /// Most pax records for one entry, all `x` headers together. Each costs some
    /// bookkeeping beyond its bytes, so tiny records are bounded by count: a file
    /// carries at most about 9,400 xattrs (64 KiB of names), far below 65,536.
    pub max_pax_records: usize,
    /// Most bytes (keywords plus values) the global (`g`) headers may keep; they
    /// apply to every later entry. GNU tar writes none; 64 KiB is one full set of
    /// xattrs.
    pub max_pax_global: u64,
    /// Most keywords the global headers may keep (each xattr is one).
    pub max_pax_global_keywords: usize,
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
            max_pax_entry: 4 * 1024 * 1024,
            max_pax_records: 65_536,
            max_pax_global: 64 * 1024,
            max_pax_global_keywords: 1024,
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
    /// Metadata larger than the configured limit; `budget` names the [`Limits`] field.
    #[error(
        "archive entry at byte {offset}: {what} is {size}, over the limit of {limit} \
         (tar limit {budget}; raise it only if the node really holds such metadata)"
    )]
    Limit {
        offset: u64,
        what: String,
        size: u64,
        limit: u64,
        budget: &'static str,
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
    /// Device numbers of a character or block device (0 for other kinds).
    pub devmajor: u32,
    pub devminor: u32,
    /// `SCHILY.xattr.*` pairs, names without the prefix.
    pub xattrs: Xattrs,
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

/// One xattr: (name without the `SCHILY.xattr.` prefix, value).
pub type Xattr = (Vec<u8>, Vec<u8>);

/// An entry's xattrs: one value per name (the last the archive gives), in name
/// order. Those of global headers are shared by every entry rather than copied
/// into each; the entry's own override them.
#[derive(Debug, Clone, Default)]
pub struct Xattrs {
    /// From global headers: sorted by name, unique.
    global: Arc<[Xattr]>,
    /// The entry's own: sorted by name, unique.
    own: Vec<Xattr>,
}

impl Xattrs {
    /// Combines the shared global set with the entry's own pairs in archive order
    /// (a name given twice keeps its last value). Sorting keeps this O(n log n)
    /// whatever the archive repeats.
    fn new(global: Arc<[Xattr]>, mut own: Vec<Xattr>) -> Xattrs {
        // stable: among equal names the archive order stays, so the last one wins
        own.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<Xattr> = Vec::with_capacity(own.len());
        for x in own {
            match unique.last_mut() {
                Some(last) if last.0 == x.0 => *last = x,
                _ => unique.push(x),
            }
        }
        Xattrs {
            global,
            own: unique,
        }
    }

    /// Every (name, value), in name order.
    pub fn iter(&self) -> XattrIter<'_> {
        XattrIter {
            global: &self.global,
            own: &self.own,
        }
    }

    /// The value of `name`, if the entry has it.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.as_slice() == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.own.is_empty()
    }
}

impl<'a> IntoIterator for &'a Xattrs {
    type Item = &'a Xattr;
    type IntoIter = XattrIter<'a>;
    fn into_iter(self) -> XattrIter<'a> {
        self.iter()
    }
}

/// Merges the two sorted lists of [`Xattrs`]; on equal names the entry's own wins.
pub struct XattrIter<'a> {
    global: &'a [Xattr],
    own: &'a [Xattr],
}

impl<'a> Iterator for XattrIter<'a> {
    type Item = &'a Xattr;
    fn next(&mut self) -> Option<&'a Xattr> {
        let take_own = match (self.global.first(), self.own.first()) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(g), Some(o)) => {
                if g.0 == o.0 {
                    self.global = &self.global[1..];
                }
                o.0 <= g.0
            }
        };
        let list = if take_own {
            &mut self.own
        } else {
            &mut self.global
        };
        let (first, rest) = list.split_first()?;
        *list = rest;
        Some(first)
    }
}

/// What the global (`g`) headers have set so far; see the module documentation.
#[derive(Default)]
struct GlobalPax {
    /// Attribute keywords (`uid`, `mtime`, ACLs...), applied to every entry.
    attrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// xattrs by name (without the prefix).
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// `xattrs` as every entry shares it; rebuilt after each global header.
    shared: Arc<[Xattr]>,
    /// Keyword and value bytes held in `attrs` and `xattrs`.
    bytes: u64,
    /// Whether a note already says that global keywords were ignored.
    noted: bool,
}

impl GlobalPax {
    /// Sets a keyword (an xattr when `xattr`), replacing an earlier value.
    fn set(&mut self, xattr: bool, k: &[u8], v: &[u8]) {
        let map = if xattr {
            &mut self.xattrs
        } else {
            &mut self.attrs
        };
        self.bytes += (k.len() + v.len()) as u64;
        if let Some(old) = map.insert(k.to_vec(), v.to_vec()) {
            self.bytes -= (k.len() + old.len()) as u64;
        }
    }

    fn keywords(&self) -> usize {
        self.attrs.len() + self.xattrs.len()
    }
}

/// Pulls entries out of a tar stream.
pub struct TarReader<R> {
    r: R,
    offset: u64,
    limits: Limits,
    globals: GlobalPax,
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
            globals: GlobalPax::default(),
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
    /// `budget` names the [`Limits`] field `limit` comes from.
    fn read_body(
        &mut self,
        size: u64,
        (limit, budget): (u64, &'static str),
        what: &str,
        hdr_off: u64,
    ) -> Result<Vec<u8>, TarError> {
        check_limit(hdr_off, size, (limit, budget), || format!("{what} (bytes)"))?;
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
        let name = escape_bytes(&self.current);
        // start_entry checked this sum; checked again so no path can wrap
        let rest = self.remaining.checked_add(self.padding).ok_or_else(|| {
            self.malformed(self.offset, format!("entry {name}: data size overflows"))
        })?;
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
            typeflag::PAX_LOCAL => self.read_local_pax(size, hdr_off, ext)?,
            typeflag::PAX_GLOBAL => {
                let max = (self.limits.max_pax, "max_pax");
                let body = self.read_body(size, max, "pax global header", hdr_off)?;
                self.set_globals(&body, hdr_off)?;
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

    /// An `x` header: its records join those of earlier `x` headers of the same
    /// entry, within the entry's budgets (bytes and records, all headers together).
    fn read_local_pax(
        &mut self,
        size: u64,
        hdr_off: u64,
        ext: &mut Extensions,
    ) -> Result<(), TarError> {
        // saturated: a sum past u64::MAX is over any limit anyway
        ext.pax_bytes = ext.pax_bytes.saturating_add(size);
        let max = (self.limits.max_pax_entry, "max_pax_entry");
        check_limit(hdr_off, ext.pax_bytes, max, || {
            "pax extended headers of one entry (bytes)".into()
        })?;
        let max = (self.limits.max_pax, "max_pax");
        let body = self.read_body(size, max, "pax extended header", hdr_off)?;
        for rec in pax_records(&body) {
            let (k, v) = rec.map_err(|e| self.malformed(hdr_off, e))?;
            let max = (self.limits.max_pax_records as u64, "max_pax_records");
            check_limit(hdr_off, ext.pax.len() as u64 + 1, max, || {
                "pax records of one entry".into()
            })?;
            ext.pax.push((k.to_vec(), v.to_vec()));
        }
        Ok(())
    }

    /// Records of a `g` header; a keyword given again replaces the earlier value.
    /// Only keywords that apply to every entry are kept (see the module documentation).
    fn set_globals(&mut self, body: &[u8], hdr_off: u64) -> Result<(), TarError> {
        for rec in pax_records(body) {
            let (k, v) = rec.map_err(|e| self.malformed(hdr_off, e))?;
            match k {
                b"uid"
                | b"gid"
                | b"mtime"
                | b"SCHILY.devmajor"
                | b"SCHILY.devminor"
                | b"SCHILY.acl.access"
                | b"SCHILY.acl.default" => self.globals.set(false, k, v),
                _ if k.starts_with(XATTR_PREFIX) => {
                    let name = &k[XATTR_PREFIX.len()..];
                    self.check_xattr_value(name, v, hdr_off)?;
                    self.globals.set(true, name, v);
                }
                _ if k.starts_with(b"GNU.sparse.") || k.starts_with(b"LIBARCHIVE.xattr.") => {
                    self.note_global_ignored(k, hdr_off)
                }
                // path, linkpath, size (see above) and keywords no entry reads
                _ => {}
            }
            self.check_global_budget(hdr_off)?;
        }
        self.globals.shared = self
            .globals
            .xattrs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(())
    }

    fn check_global_budget(&self, hdr_off: u64) -> Result<(), TarError> {
        let (g, l) = (&self.globals, &self.limits);
        let max = (l.max_pax_global_keywords as u64, "max_pax_global_keywords");
        check_limit(hdr_off, g.keywords() as u64, max, || {
            "keywords kept from pax global headers".into()
        })?;
        check_limit(
            hdr_off,
            g.bytes,
            (l.max_pax_global, "max_pax_global"),
            || "keywords kept from pax global headers (bytes)".into(),
        )
    }

    /// One note for the whole archive: a global header may repeat such keywords.
    fn note_global_ignored(&mut self, k: &[u8], hdr_off: u64) {
        if !std::mem::replace(&mut self.globals.noted, true) {
            self.notes.push(format!(
                "pax global header at byte {hdr_off}: keyword {} ignored, as is any later \
                 GNU.sparse or LIBARCHIVE.xattr keyword of a global header",
                escape_bytes(k)
            ));
        }
    }

    /// The body of an `L` or `K` header: a name, usually NUL-terminated (hence the
    /// one byte allowed beyond the path limit).
    fn read_long_name(&mut self, size: u64, what: &str, hdr_off: u64) -> Result<Vec<u8>, TarError> {
        let max = (self.limits.max_path as u64 + 1, "max_path");
        let mut body = self.read_body(size, max, what, hdr_off)?;
        while body.last() == Some(&0) {
            body.pop();
        }
        Ok(body)
    }

    /// Combines an entry's own header with what its extension headers said.
    /// A malformed field is reported with the entry's name as far as it is known.
    fn build_entry(
        &mut self,
        blk: &[u8; BLOCK],
        hdr_off: u64,
        hdr_size: u64,
        ext: Extensions,
    ) -> Result<EntryMeta, TarError> {
        let mut d = Draft::from_header(blk, hdr_off, hdr_size)
            .map_err(|e| name_entry(e, &header_path(blk)))?;
        match self.fill_entry(blk, &mut d, ext, hdr_off) {
            Ok(()) => self.start_entry(d, hdr_off),
            Err(e) => Err(name_entry(e, &d.path)),
        }
    }

    fn fill_entry(
        &mut self,
        blk: &[u8; BLOCK],
        d: &mut Draft,
        ext: Extensions,
        hdr_off: u64,
    ) -> Result<(), TarError> {
        if let Some(l) = ext.long_name {
            d.path = l;
        }
        if let Some(l) = ext.long_link {
            d.link = l;
        }
        // global attributes are few and small (bounded by max_pax_global)
        for (k, v) in &self.globals.attrs {
            self.apply_record(d, k, v.clone(), hdr_off)?;
        }
        for (k, v) in ext.pax {
            self.apply_record(d, &k, v, hdr_off)?;
        }
        let own = std::mem::take(&mut d.xattrs);
        d.meta.xattrs = Xattrs::new(self.globals.shared.clone(), own);
        if d.libarchive_xattrs > 0 {
            self.notes.push(format!(
                "entry at byte {hdr_off}: {} LIBARCHIVE.xattr keyword(s) ignored \
                 (use GNU tar's SCHILY.xattr)",
                d.libarchive_xattrs
            ));
        }
        d.meta.kind = Kind::from_typeflag(blk[TYPEFLAG], &d.path);
        self.resolve_sparse(blk, d, hdr_off)?;
        self.check_names(&d.path, &d.link, hdr_off)
    }

    /// Applies one pax record to the entry being built.
    fn apply_record(
        &self,
        d: &mut Draft,
        k: &[u8],
        v: Vec<u8>,
        hdr_off: u64,
    ) -> Result<(), TarError> {
        let m = malformed_at(hdr_off);
        let meta = &mut d.meta;
        match k {
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
            b"SCHILY.devmajor" => meta.devmajor = pax_dev(&v, "devmajor").map_err(m)?,
            b"SCHILY.devminor" => meta.devminor = pax_dev(&v, "devminor").map_err(m)?,
            b"SCHILY.acl.access" => meta.acl_access = Some(v),
            b"SCHILY.acl.default" => meta.acl_default = Some(v),
            _ if k.starts_with(b"GNU.sparse.") => {
                self.apply_sparse_record(&mut d.sparse, k, v, hdr_off)?
            }
            _ if k.starts_with(XATTR_PREFIX) => {
                let name = &k[XATTR_PREFIX.len()..];
                self.check_xattr_value(name, &v, hdr_off)?;
                d.xattrs.push((name.to_vec(), v));
            }
            _ if k.starts_with(b"LIBARCHIVE.xattr.") => d.libarchive_xattrs += 1,
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
                self.check_segments(hdr_off, sp.pairs00.len() as u64 + 1)?;
                sp.pairs00.push((off, n));
            }
            // GNU.sparse.numblocks only announces how many pairs follow
            _ => {}
        }
        Ok(())
    }

    fn check_xattr_value(&self, name: &[u8], v: &[u8], hdr_off: u64) -> Result<(), TarError> {
        let max = (self.limits.max_xattr_value as u64, "max_xattr_value");
        check_limit(hdr_off, v.len() as u64, max, || {
            format!("the value of xattr {} (bytes)", escape_bytes(name))
        })
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
        // counted before anything is allocated for the numbers
        let values = text.iter().filter(|&&b| b == b',').count() + 1;
        self.check_segments(hdr_off, (values / 2) as u64)?;
        let nums: Result<Vec<u64>, _> = text
            .split(|&b| b == b',')
            .map(|n| parse_dec(n, "sparse map"))
            .collect();
        let nums = nums.map_err(malformed_at(hdr_off))?;
        if nums.len() % 2 != 0 {
            return Err(self.malformed(hdr_off, "odd number of values in GNU.sparse.map"));
        }
        Ok(nums.chunks(2).map(|c| (c[0], c[1])).collect())
    }

    /// Names must be present, within the limits and free of NUL (no system call
    /// could take such a name).
    fn check_names(&self, path: &[u8], link: &[u8], hdr_off: u64) -> Result<(), TarError> {
        if path.is_empty() {
            return Err(self.malformed(hdr_off, "entry with an empty name"));
        }
        let max = (self.limits.max_path as u64, "max_path");
        check_limit(hdr_off, path.len() as u64, max, || {
            "entry path (bytes)".into()
        })?;
        check_limit(hdr_off, link.len() as u64, max, || {
            format!("link target of {} (bytes)", escape_bytes(path))
        })?;
        if path.contains(&0) || link.contains(&0) {
            return Err(self.malformed(hdr_off, "NUL byte in a name"));
        }
        Ok(())
    }

    /// Final sizes (only regular files have a logical size), and the reader's
    /// state for the entry's data.
    fn start_entry(&mut self, d: Draft, hdr_off: u64) -> Result<EntryMeta, TarError> {
        let mut meta = d.meta;
        meta.path = d.path;
        meta.link = d.link;
        if matches!(meta.kind, Kind::File) && meta.sparse.is_none() {
            meta.size = meta.stored_size;
        }
        if !matches!(meta.kind, Kind::File) {
            if meta.sparse.is_some() {
                // only a regular file has holes; a map on anything else
                // would describe data the entry does not have
                return Err(self.malformed(
                    hdr_off,
                    format!(
                        "entry {}: a sparse map on an entry that is not a regular file",
                        escape_bytes(&meta.path)
                    ),
                ));
            }
            meta.size = 0;
        }
        // the 1.0 map consumed whole blocks, so padding follows from the data alone
        let pad = padding(meta.stored_size);
        if meta.stored_size.checked_add(pad).is_none() {
            return Err(self.malformed(
                hdr_off,
                format!(
                    "entry {}: size field {} overflows with its block padding",
                    escape_bytes(&meta.path),
                    meta.stored_size
                ),
            ));
        }
        self.current = meta.path.clone();
        self.remaining = meta.stored_size;
        self.padding = pad;
        Ok(meta)
    }

    fn check_segments(&self, off: u64, n: u64) -> Result<(), TarError> {
        let max = (
            self.limits.max_sparse_segments as u64,
            "max_sparse_segments",
        );
        check_limit(off, n, max, || "sparse map (segments)".into())
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
            self.check_segments(hdr_off, map.len() as u64)?;
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
                // consumed never exceeds stored_size, so this cannot wrap
                if BLOCK as u64 > meta.stored_size - consumed {
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
                        self.check_segments(hdr_off, v)?;
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
    /// Body bytes of those headers (see [`Limits::max_pax_entry`]).
    pax_bytes: u64,
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
    /// The entry's own xattrs in archive order, repeats included.
    xattrs: Vec<Xattr>,
    /// `LIBARCHIVE.xattr.*` records seen (ignored, with one note).
    libarchive_xattrs: usize,
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
        // device numbers are only meaningful for devices (whatever other entries
        // hold there is never used); for a device a bad one is an error, not 0
        let (devmajor, devminor) = match blk[TYPEFLAG] {
            typeflag::CHAR_DEVICE | typeflag::BLOCK_DEVICE => (
                header_dev(&blk[DEVMAJOR], "devmajor").map_err(&m)?,
                header_dev(&blk[DEVMINOR], "devminor").map_err(&m)?,
            ),
            _ => (0, 0),
        };
        let meta = EntryMeta {
            path: Vec::new(),
            kind: Kind::File,
            mode,
            uid,
            gid,
            size: hdr_size,
            mtime: Mtime { sec, nsec: 0 },
            link: Vec::new(),
            devmajor,
            devminor,
            xattrs: Xattrs::default(),
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
            xattrs: Vec::new(),
            libarchive_xattrs: 0,
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

/// The keyword prefix of an xattr in pax records.
const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// A device number must fit the 32 bits the kernel interface takes.
fn dev_number(v: u64, what: &str) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| format!("{what} {v} does not fit a 32-bit device number"))
}

/// A device number from a header field.
fn header_dev(f: &[u8], what: &str) -> Result<u32, String> {
    dev_number(parse_u64(f, what)?, what)
}

/// A device number from a pax record.
fn pax_dev(v: &[u8], what: &str) -> Result<u32, String> {
    dev_number(parse_dec(v, what)?, what)
}

/// A [`TarError::Limit`] when `size` is over `limit`; `budget` names the
/// [`Limits`] field, and `what` is only formatted for the error.
fn check_limit(
    offset: u64,
    size: u64,
    (limit, budget): (u64, &'static str),
    what: impl FnOnce() -> String,
) -> Result<(), TarError> {
    if size <= limit {
        return Ok(());
    }
    Err(TarError::Limit {
        offset,
        what: what(),
        size,
        limit,
        budget,
    })
}

/// Puts the entry's name in a [`TarError::Malformed`] that lacks it.
fn name_entry(e: TarError, path: &[u8]) -> TarError {
    match e {
        TarError::Malformed { offset, reason } if !reason.starts_with("entry ") => {
            TarError::Malformed {
                offset,
                reason: format!("entry {}: {reason}", escape_bytes(path)),
            }
        }
        other => other,
    }
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
    use super::testing::TarBuilder;
    use super::*;
    use std::time::{Duration, Instant};

    /// Every entry of `a`, or the first error.
    fn read_all(a: &[u8], limits: Limits) -> Result<Vec<EntryMeta>, TarError> {
        let mut r = TarReader::new(a, limits, None);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }

    /// The budget a [`TarError::Limit`] names.
    fn budget_of(r: Result<Vec<EntryMeta>, TarError>) -> &'static str {
        match r {
            Err(TarError::Limit { budget, .. }) => budget,
            other => panic!("expected a budget error, got {other:?}"),
        }
    }

    /// A pax body of `n` records `SCHILY.xattr.user.<prefix><i>=<value>`.
    fn xattr_body(prefix: &str, range: std::ops::Range<usize>, value: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for i in range {
            let k = format!("SCHILY.xattr.user.{prefix}{i:06}");
            header::push_pax_record(&mut body, k.as_bytes(), value);
        }
        body
    }

    #[test]
    fn chained_pax_headers_share_one_budget() {
        // each header is within max_pax; together they are not
        let mut b = TarBuilder::new();
        for _ in 0..5 {
            b = b.pax(&[("comment", &vec![b'c'; 1_000_000])]);
        }
        let a = b.file("f", b"x").end();
        let e = read_all(&a, Limits::default()).unwrap_err();
        assert!(e.to_string().contains("max_pax_entry"), "{e}");
        assert_eq!(budget_of(Err(e)), "max_pax_entry");
    }

    #[test]
    fn tiny_pax_records_are_bounded_by_count() {
        // 6 bytes each: parsed records would cost ~25 times the input
        let body = b"6 a=b\n".repeat(70_000);
        let a = TarBuilder::new()
            .pax_body(typeflag::PAX_LOCAL, &body)
            .file("f", b"x")
            .end();
        assert_eq!(
            budget_of(read_all(&a, Limits::default())),
            "max_pax_records"
        );
    }

    #[test]
    fn many_xattrs_are_accepted_last_value_wins() {
        let mut body = xattr_body("x", 0..10_000, b"v");
        header::push_pax_record(&mut body, b"SCHILY.xattr.user.x000007", b"again");
        let a = TarBuilder::new()
            .pax_body(typeflag::PAX_LOCAL, &body)
            .file("f", b"x")
            .end();
        let e = &read_all(&a, Limits::default()).unwrap()[0];
        assert_eq!(e.xattrs.len(), 10_000);
        assert_eq!(e.xattrs.get(b"user.x000007"), Some(&b"again"[..]));
        assert_eq!(e.xattrs.get(b"user.x000008"), Some(&b"v"[..]));
        let names: Vec<&Vec<u8>> = e.xattrs.iter().map(|(n, _)| n).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    }

    #[test]
    fn xattr_deduplication_is_not_quadratic() {
        // 10^5 xattrs over four chained headers: each one searching the ones
        // before it took over a minute
        let mut b = TarBuilder::new();
        for part in 0..4 {
            let body = xattr_body("n", part * 25_000..(part + 1) * 25_000, b"1");
            b = b.pax_body(typeflag::PAX_LOCAL, &body);
        }
        let a = b.file("f", b"x").end();
        let limits = Limits {
            max_pax_entry: 64 << 20,
            max_pax_records: 1 << 20,
            ..Limits::default()
        };
        let t = Instant::now();
        let e = &read_all(&a, limits).unwrap()[0];
        let took = t.elapsed();
        assert_eq!(e.xattrs.len(), 100_000);
        // about 0.3 s unoptimised on a loaded 2-core machine; over a minute before
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }

    #[test]
    fn global_headers_are_bounded() {
        let body = xattr_body("g", 0..2_000, b"v");
        let a = TarBuilder::new()
            .pax_body(typeflag::PAX_GLOBAL, &body)
            .file("f", b"x")
            .end();
        let r = read_all(&a, Limits::default());
        assert_eq!(budget_of(r), "max_pax_global_keywords");
        // few keywords, too many bytes, over several global headers
        let big = vec![b'v'; 40_000];
        let a = TarBuilder::new()
            .global_pax(&[("SCHILY.xattr.user.a", &big)])
            .file("f", b"x")
            .global_pax(&[("SCHILY.xattr.user.b", &big)])
            .file("g", b"x")
            .end();
        assert_eq!(budget_of(read_all(&a, Limits::default())), "max_pax_global");
        // a keyword given again replaces its value: it does not add up
        let a = TarBuilder::new()
            .global_pax(&[("SCHILY.xattr.user.a", &big)])
            .global_pax(&[("SCHILY.xattr.user.a", &big)])
            .file("f", b"x")
            .end();
        assert_eq!(read_all(&a, Limits::default()).unwrap().len(), 1);
    }

    #[test]
    fn global_xattrs_are_shared_and_overridable() {
        let a = TarBuilder::new()
            .global_pax(&[
                ("SCHILY.xattr.user.a", b"global"),
                ("SCHILY.xattr.user.b", b"global"),
                ("uid", b"7"),
                ("GNU.sparse.size", b"5"),
            ])
            .file("one", b"x")
            .pax(&[
                ("SCHILY.xattr.user.a", b"own"),
                ("SCHILY.xattr.user.c", b"own"),
            ])
            .file("two", b"x")
            .end();
        let e = read_all(&a, Limits::default()).unwrap();
        assert!(Arc::ptr_eq(&e[0].xattrs.global, &e[1].xattrs.global));
        assert_eq!(e[0].xattrs.own.len(), 0, "nothing copied into the entry");
        let two: Vec<(&[u8], &[u8])> = e[1]
            .xattrs
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"user.a", b"own"),
            (b"user.b", b"global"),
            (b"user.c", b"own"),
        ];
        assert_eq!(two, want);
        assert_eq!((e[0].uid, e[1].uid), (7, 7));
        assert!(e[0].sparse.is_none(), "a global sparse keyword is ignored");
    }

    #[test]
    fn a_sparse_map_is_only_for_regular_files() {
        // found by the pax fuzz target: a map on a device node outlived the
        // entry's size (0), so the map ended beyond it
        let a = TarBuilder::new()
            .pax(&[("GNU.sparse.size", b"4096"), ("GNU.sparse.map", b"4000,0")])
            .node("d", typeflag::CHAR_DEVICE, (1, 3))
            .end();
        let e = read_all(&a, Limits::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("entry d: a sparse map on an entry that is not a regular file"),
            "{e}"
        );
        let a = TarBuilder::new()
            .pax(&[("GNU.sparse.size", b"4096"), ("GNU.sparse.map", b"4000,0")])
            .file("f", b"")
            .end();
        let e = read_all(&a, Limits::default()).unwrap();
        assert_eq!(
            (e[0].size, e[0].sparse.as_deref()),
            (4096, Some(&[(4000, 0)][..]))
        );
    }

    #[test]
    fn sizes_that_overflow_with_padding_are_malformed() {
        let max = u64::MAX.to_string();
        let a = TarBuilder::new()
            .pax(&[("size", max.as_bytes())])
            .file("f", b"")
            .file("g", b"")
            .end();
        let e = read_all(&a, Limits::default()).unwrap_err();
        assert!(matches!(e, TarError::Malformed { .. }), "{e:?}");
        assert!(e.to_string().contains("entry f: size"), "{e}");
        // the same size in a base-256 header field
        let a = TarBuilder::new()
            .declared("h", typeflag::REGULAR, u64::MAX, b"")
            .end();
        let e = read_all(&a, Limits::default()).unwrap_err();
        assert!(e.to_string().contains("entry h: size"), "{e}");
    }

    #[test]
    fn device_numbers_must_fit_and_parse() {
        let dev = |a: Vec<u8>| read_all(&a, Limits::default()).map(|e| e[0].devmajor);
        let too_big = TarBuilder::new()
            .pax(&[("SCHILY.devmajor", b"4294967296")])
            .node("d", typeflag::CHAR_DEVICE, (1, 1))
            .end();
        let e = dev(too_big).unwrap_err().to_string();
        assert!(
            e.contains("entry d: devmajor 4294967296 does not fit"),
            "{e}"
        );
        let header_too_big = TarBuilder::new()
            .node("d", typeflag::BLOCK_DEVICE, (1 << 32, 1))
            .end();
        assert!(dev(header_too_big).is_err());
        // a malformed header field of a device is an error, not device 0
        let mut junk = TarBuilder::new()
            .node("d", typeflag::CHAR_DEVICE, (1, 1))
            .end();
        let mut blk: [u8; BLOCK] = junk[..BLOCK].try_into().unwrap();
        blk[DEVMAJOR].copy_from_slice(b"12x4567\0");
        set_checksum(&mut blk);
        junk[..BLOCK].copy_from_slice(&blk);
        let e = dev(junk.clone()).unwrap_err().to_string();
        assert!(e.contains("entry d: devmajor: bad octal digit"), "{e}");
        // the same field means nothing for a FIFO
        junk[TYPEFLAG] = typeflag::FIFO;
        let mut blk: [u8; BLOCK] = junk[..BLOCK].try_into().unwrap();
        set_checksum(&mut blk);
        junk[..BLOCK].copy_from_slice(&blk);
        assert_eq!(dev(junk).unwrap(), 0);
        let fits = TarBuilder::new()
            .pax(&[("SCHILY.devmajor", b"4294967295")])
            .node("d", typeflag::CHAR_DEVICE, (1, 1))
            .end();
        assert_eq!(dev(fits).unwrap(), u32::MAX);
    }

    #[test]
    fn sparse_validation() {
        assert!(validate_sparse(&[(0, 10), (100, 5), (200, 0)], 200, 15).is_ok());
        assert!(validate_sparse(&[(100, 5), (0, 10)], 200, 15).is_err());
        assert!(validate_sparse(&[(0, 10)], 5, 10).is_err());
        assert!(validate_sparse(&[(0, 10)], 50, 11).is_err());
    }
}
