//! Manifests: one record per tree entry (path, type, mode, owner, size, mtime,
//! content hash, device numbers, link target, hard-link group, xattrs).
//!
//! Built while extracting ([`crate::extract`]) or by walking an existing tree
//! ([`scan_tree`]), so a captured image can be compared with its source.
//!
//! # File format (TSV)
//! The first line is `#xcat-image-manifest v2`, the second names the columns:
//! `path type mode uid gid size mtime sha256 rdev link hardlink xattrs`, tab-separated.
//! One line per entry, sorted by path bytes. Byte strings (paths, link targets, xattr
//! names) use [`crate::util::escape_bytes`] (so non-UTF-8 names, spaces, tabs and
//! newlines are unambiguous); paths are written `/`-rooted (`/` is the root itself).
//! `type` is one of `f d l c b p s`; `mode` is 4-digit octal (permission bits incl.
//! setuid/setgid/sticky); `mtime` is `seconds.nanoseconds`; `hash` is the hex
//! [`ContentHasher`] digest of regular files (SHA-256 over the SHA-256 of each data
//! run and the length of each run of zeros, holes read as zeros); `rdev` is
//! `major:minor`; `hardlink` is the smallest path of the entry's hard-link group;
//! `xattrs` is `name=hexvalue` joined by `,`, or `=` for a hard link whose xattrs are
//! its group leader's (they are one inode's: a thousand links to a file with a
//! megabyte of xattrs are not a gigabyte of text). Absent values are `-`. (v1 had
//! no `=` and hashed content as SHA-256 over per-MiB SHA-256 leaves.)
//! Directory, symlink and device sizes are recorded as 0.

use crate::beneath::{list_dir_fd, lstat_at, proc_path, Root};
use crate::util::{display_path, escape_bytes, unescape_bytes};
use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

/// The TSV form's two header lines.
pub(crate) fn write_tsv_header(w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "{HEADER}")?;
    writeln!(w, "{COLUMNS}")
}

/// One entry's TSV line; `same_as_leader` writes its xattrs as `=` (a hard
/// link whose xattrs are its group leader's).
pub(crate) fn write_tsv_line(
    w: &mut impl Write,
    e: &ManifestEntry,
    same_as_leader: bool,
) -> io::Result<()> {
    let xattrs = if e.xattrs.is_empty() {
        "-".to_string()
    } else if same_as_leader {
        "=".to_string()
    } else {
        e.xattrs
            .iter()
            .map(|(k, v)| format!("{}={}", escape_bytes(k), hex::encode(v)))
            .collect::<Vec<_>>()
            .join(",")
    };
    writeln!(
        w,
        "{}\t{}\t{:04o}\t{}\t{}\t{}\t{}.{:09}\t{}\t{}\t{}\t{}\t{}",
        display_path(&e.path),
        e.kind.letter(),
        e.mode,
        e.uid,
        e.gid,
        e.size,
        e.mtime_sec,
        e.mtime_nsec,
        e.content_hash
            .map(hex::encode)
            .unwrap_or_else(|| "-".into()),
        e.rdev
            .map(|(a, b)| format!("{a}:{b}"))
            .unwrap_or_else(|| "-".into()),
        opt_bytes(&e.link),
        e.hardlink
            .as_ref()
            .map(|h| display_path(h))
            .unwrap_or_else(|| "-".into()),
        xattrs
    )
}

/// Entry type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryType {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl EntryType {
    pub(crate) fn letter(self) -> char {
        match self {
            EntryType::File => 'f',
            EntryType::Dir => 'd',
            EntryType::Symlink => 'l',
            EntryType::CharDevice => 'c',
            EntryType::BlockDevice => 'b',
            EntryType::Fifo => 'p',
            EntryType::Socket => 's',
        }
    }

    pub(crate) fn from_letter(c: &str) -> Option<EntryType> {
        Some(match c {
            "f" => EntryType::File,
            "d" => EntryType::Dir,
            "l" => EntryType::Symlink,
            "c" => EntryType::CharDevice,
            "b" => EntryType::BlockDevice,
            "p" => EntryType::Fifo,
            "s" => EntryType::Socket,
            _ => return None,
        })
    }

    fn from_mode(mode: u32) -> EntryType {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => EntryType::Dir,
            libc::S_IFLNK => EntryType::Symlink,
            libc::S_IFCHR => EntryType::CharDevice,
            libc::S_IFBLK => EntryType::BlockDevice,
            libc::S_IFIFO => EntryType::Fifo,
            libc::S_IFSOCK => EntryType::Socket,
            _ => EntryType::File,
        }
    }
}

/// Extended attributes by name. Shared, not copied, between the entries of one
/// hard-link group: a thousand links to a file with a megabyte of xattrs must
/// not cost a gigabyte.
pub type Xattrs = Arc<BTreeMap<Vec<u8>, Vec<u8>>>;

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Root-relative path; empty for the root.
    pub path: Vec<u8>,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// [`ContentHasher`] digest of regular files.
    pub content_hash: Option<[u8; 32]>,
    pub rdev: Option<(u32, u32)>,
    pub link: Option<Vec<u8>>,
    /// Smallest path of the hard-link group this entry belongs to (groups of 2+ only).
    pub hardlink: Option<Vec<u8>>,
    /// Shared by the members of a hard-link group (one inode, one set).
    pub xattrs: Xattrs,
    /// 512-byte blocks allocated on disk (scans only; not written to the TSV file).
    pub blocks: Option<u64>,
}

/// A whole tree, keyed by path bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: BTreeMap<Vec<u8>, ManifestEntry>,
}

/// One difference between two manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: Vec<u8>,
    /// Which field differs (`missing`, `mode`, `xattr user.foo`...).
    pub field: String,
    pub left: String,
    pub right: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {} != {}",
            display_path(&self.path),
            self.field,
            self.left,
            self.right
        )
    }
}

fn opt_bytes(v: &Option<Vec<u8>>) -> String {
    v.as_ref()
        .map(|b| escape_bytes(b))
        .unwrap_or_else(|| "-".into())
}

const HEADER: &str = "#xcat-image-manifest v2";
const COLUMNS: &str =
    "#path\ttype\tmode\tuid\tgid\tsize\tmtime\thash\trdev\tlink\thardlink\txattrs";

impl Manifest {
    /// Adds or replaces an entry.
    pub fn insert(&mut self, e: ManifestEntry) {
        self.entries.insert(e.path.clone(), e);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks up an entry by root-relative path.
    pub fn get(&self, path: &[u8]) -> Option<&ManifestEntry> {
        self.entries.get(path)
    }

    /// Turns raw hard-link records (`hardlink` = the archive's link target) into
    /// groups: every member gets the group's smallest path, and the link entries take
    /// the inode attributes (content, mode, owner, xattrs) of the entry they link to,
    /// sharing its xattrs. Linear in the number of links, whatever their shape (a
    /// chain of links to links, or thousands to one file).
    pub fn resolve_hardlinks(&mut self) {
        let links: Vec<(Vec<u8>, Vec<u8>)> = self
            .entries
            .values()
            .filter_map(|e| e.hardlink.clone().map(|t| (e.path.clone(), t)))
            .collect();
        if links.is_empty() {
            return;
        }
        let mut sets = LinkSets::default();
        for (a, b) in &links {
            let (a, b) = (sets.id(a), sets.id(b));
            sets.union(a, b);
        }
        for members in sets.groups() {
            self.share_inode(&members);
        }
    }

    /// Gives every member of one hard-link group the attributes of the one
    /// member that is not itself a link record (the file the links lead to).
    fn share_inode(&mut self, members: &[Vec<u8>]) {
        let leader = members.iter().min().cloned();
        let source = members
            .iter()
            .filter_map(|m| self.entries.get(m))
            .find(|e| e.hardlink.is_none())
            .cloned();
        let hardlink = leader.filter(|_| members.len() > 1);
        for m in members {
            let Some(e) = self.entries.get_mut(m) else {
                continue;
            };
            if let Some(src) = source.as_ref().filter(|s| s.path != *m) {
                e.kind = src.kind;
                e.mode = src.mode;
                e.uid = src.uid;
                e.gid = src.gid;
                e.size = src.size;
                e.mtime_sec = src.mtime_sec;
                e.mtime_nsec = src.mtime_nsec;
                e.content_hash = src.content_hash;
                e.rdev = src.rdev;
                e.link = src.link.clone();
                e.xattrs = Arc::clone(&src.xattrs);
            }
            e.hardlink = hardlink.clone();
        }
    }

    /// Writes the TSV form described in the module documentation.
    pub fn write_tsv(&self, mut w: impl Write) -> io::Result<()> {
        write_tsv_header(&mut w)?;
        for e in self.entries.values() {
            let same = self.leader_xattrs(e).is_some_and(|x| *x == e.xattrs);
            write_tsv_line(&mut w, e, same)?;
        }
        Ok(())
    }

    /// The xattrs of `e`'s hard-link group leader, when `e` is another member.
    fn leader_xattrs(&self, e: &ManifestEntry) -> Option<&Xattrs> {
        let leader = e.hardlink.as_ref().filter(|l| **l != e.path)?;
        Some(&self.entries.get(leader)?.xattrs)
    }

    /// Parses the TSV form.
    pub fn parse_tsv(text: &str) -> Result<Manifest, String> {
        let mut m = Manifest::default();
        let mut as_leader = Vec::new();
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err("not an xcat-image manifest (missing header line)".into());
        }
        for (no, line) in lines.enumerate() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let bad = |what: &str| format!("manifest line {}: bad {what}", no + 2);
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 12 {
                return Err(bad("column count"));
            }
            let path_of = |s: &str| -> Option<Vec<u8>> { unescape_bytes(s.strip_prefix('/')?) };
            let (sec, nsec) = f[6].split_once('.').ok_or_else(|| bad("mtime"))?;
            let mut xattrs = BTreeMap::new();
            if f[11] == "=" {
                as_leader.push((no + 2, path_of(f[0]).ok_or_else(|| bad("path"))?));
            } else if f[11] != "-" {
                for kv in f[11].split(',') {
                    let (k, v) = kv.split_once('=').ok_or_else(|| bad("xattr"))?;
                    xattrs.insert(
                        unescape_bytes(k).ok_or_else(|| bad("xattr name"))?,
                        hex::decode(v).map_err(|_| bad("xattr value"))?,
                    );
                }
            }
            let e = ManifestEntry {
                path: path_of(f[0]).ok_or_else(|| bad("path"))?,
                kind: EntryType::from_letter(f[1]).ok_or_else(|| bad("type"))?,
                mode: u32::from_str_radix(f[2], 8).map_err(|_| bad("mode"))?,
                uid: f[3].parse().map_err(|_| bad("uid"))?,
                gid: f[4].parse().map_err(|_| bad("gid"))?,
                size: f[5].parse().map_err(|_| bad("size"))?,
                mtime_sec: sec.parse().map_err(|_| bad("mtime"))?,
                mtime_nsec: nsec.parse().map_err(|_| bad("mtime"))?,
                content_hash: if f[7] == "-" {
                    None
                } else {
                    let v = hex::decode(f[7]).map_err(|_| bad("hash"))?;
                    Some(v.try_into().map_err(|_| bad("hash"))?)
                },
                rdev: if f[8] == "-" {
                    None
                } else {
                    let (a, b) = f[8].split_once(':').ok_or_else(|| bad("rdev"))?;
                    Some((
                        a.parse().map_err(|_| bad("rdev"))?,
                        b.parse().map_err(|_| bad("rdev"))?,
                    ))
                },
                link: if f[9] == "-" {
                    None
                } else {
                    Some(unescape_bytes(f[9]).ok_or_else(|| bad("link"))?)
                },
                hardlink: if f[10] == "-" {
                    None
                } else {
                    Some(path_of(f[10]).ok_or_else(|| bad("hardlink"))?)
                },
                xattrs: Arc::new(xattrs),
                blocks: None,
            };
            m.insert(e);
        }
        for (line, path) in as_leader {
            let x = m.entries.get(&path).and_then(|e| m.leader_xattrs(e));
            let x = x
                .filter(|x| !x.is_empty())
                .cloned()
                .ok_or_else(|| format!("manifest line {line}: bad xattrs (= but no leader's)"))?;
            if let Some(e) = m.entries.get_mut(&path) {
                e.xattrs = x;
            }
        }
        Ok(m)
    }

    /// Field-by-field comparison, for readable test failures and audits. `self` is the
    /// left side. The `blocks` field is not compared.
    pub fn diff(&self, other: &Manifest) -> Vec<Difference> {
        let mut out = Diffs(Vec::new());
        for (p, a) in &self.entries {
            match other.entries.get(p) {
                Some(b) => out.entry(p, a, b),
                None => out.field(p, "missing", "present".into(), "absent".into()),
            }
        }
        for p in other
            .entries
            .keys()
            .filter(|p| !self.entries.contains_key(*p))
        {
            out.field(p, "missing", "absent".into(), "present".into());
        }
        out.0
    }
}

/// Disjoint sets of paths (union-find with path halving and union by size), to
/// group hard links in near-linear time.
#[derive(Default)]
struct LinkSets {
    ids: HashMap<Vec<u8>, usize>,
    paths: Vec<Vec<u8>>,
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl LinkSets {
    fn id(&mut self, p: &[u8]) -> usize {
        if let Some(&i) = self.ids.get(p) {
            return i;
        }
        let i = self.paths.len();
        self.ids.insert(p.to_vec(), i);
        self.paths.push(p.to_vec());
        self.parent.push(i);
        self.size.push(1);
        i
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a] < self.size[b] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b] = a;
        self.size[a] += self.size[b];
    }

    /// The paths of each set.
    fn groups(mut self) -> Vec<Vec<Vec<u8>>> {
        let mut by_root: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
        for i in 0..self.paths.len() {
            let r = self.find(i);
            by_root
                .entry(r)
                .or_default()
                .push(std::mem::take(&mut self.paths[i]));
        }
        by_root.into_values().collect()
    }
}

/// The differences found so far.
struct Diffs(Vec<Difference>);

impl Diffs {
    /// Notes `field` of `p` when its two renderings differ.
    fn field(&mut self, p: &[u8], field: &str, l: String, r: String) {
        if l != r {
            self.0.push(Difference {
                path: p.to_vec(),
                field: field.to_string(),
                left: l,
                right: r,
            });
        }
    }

    /// Every field of an entry present on both sides.
    fn entry(&mut self, p: &[u8], a: &ManifestEntry, b: &ManifestEntry) {
        let kind = |e: &ManifestEntry| e.kind.letter().to_string();
        self.field(p, "type", kind(a), kind(b));
        self.field(
            p,
            "mode",
            format!("{:04o}", a.mode),
            format!("{:04o}", b.mode),
        );
        self.field(p, "uid", a.uid.to_string(), b.uid.to_string());
        self.field(p, "gid", a.gid.to_string(), b.gid.to_string());
        self.field(p, "size", a.size.to_string(), b.size.to_string());
        let mtime = |e: &ManifestEntry| format!("{}.{:09}", e.mtime_sec, e.mtime_nsec);
        self.field(p, "mtime", mtime(a), mtime(b));
        let hash = |e: &ManifestEntry| format!("{:?}", e.content_hash.map(hex::encode));
        self.field(p, "hash", hash(a), hash(b));
        self.field(p, "rdev", format!("{:?}", a.rdev), format!("{:?}", b.rdev));
        self.field(p, "link", opt_bytes(&a.link), opt_bytes(&b.link));
        self.field(
            p,
            "hardlink",
            opt_bytes(&a.hardlink),
            opt_bytes(&b.hardlink),
        );
        self.xattrs(p, a, b);
    }

    /// Extended attributes: those of `a` in its order, then those only `b` has.
    fn xattrs(&mut self, p: &[u8], a: &ManifestEntry, b: &ManifestEntry) {
        for (k, v) in a.xattrs.iter() {
            let other = b
                .xattrs
                .get(k)
                .map(hex::encode)
                .unwrap_or_else(|| "absent".into());
            self.field(
                p,
                &format!("xattr {}", escape_bytes(k)),
                hex::encode(v),
                other,
            );
        }
        for k in b.xattrs.keys().filter(|k| !a.xattrs.contains_key(*k)) {
            let name = format!("xattr {}", escape_bytes(k));
            self.field(p, &name, "absent".into(), hex::encode(&b.xattrs[k]));
        }
    }
}

/// Granularity of the content hash: content is looked at in aligned blocks of
/// this many bytes, and a block of zeros costs nothing whether it was sent or is
/// a hole.
pub const HASH_BLOCK: usize = 64;

/// The manifest's content hash, a function of the logical content alone (where
/// a file's holes are, or whether its zeros were written out, does not matter),
/// costing O(1) per hole however long, so a sparse file declaring a huge size
/// cannot keep us hashing.
///
/// Definition: cut the content into [`HASH_BLOCK`]-byte blocks at multiples of
/// 64 (the last may be shorter). Maximal runs of blocks that are not all zeros
/// are *data runs*, maximal runs of all-zero blocks are *gaps*. With `D(r)` the
/// SHA-256 of a data run's bytes, `le64` a little-endian u64 and `D0` the first
/// data run (`SHA-256("")` when the content starts with a gap or is empty), the
/// digest is `SHA-256(D0 || le64(gap1) || D1 || le64(gap2) || D2 ... [|| le64(last
/// gap)])`, gap lengths in bytes. A file without 64 aligned zero bytes is then
/// `SHA-256(SHA-256(content))`. The records are fixed-size and the first run is
/// always present, so the encoding is unambiguous.
#[derive(Clone)]
pub struct ContentHasher {
    /// The current data run.
    run: Sha256,
    /// The outer digest over runs and gaps.
    outer: Sha256,
    /// Zero bytes seen since the current data run ended.
    gap: u64,
    /// The part of the current block received so far.
    block: [u8; HASH_BLOCK],
    filled: usize,
}

impl Default for ContentHasher {
    fn default() -> Self {
        ContentHasher {
            run: Sha256::new(),
            outer: Sha256::new(),
            gap: 0,
            block: [0; HASH_BLOCK],
            filled: 0,
        }
    }
}

impl ContentHasher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one complete block (or the short last one).
    fn block_done(&mut self, b: &[u8]) {
        if b.iter().all(|&x| x == 0) {
            self.gap += b.len() as u64;
            return;
        }
        self.data(b);
    }

    /// Adds bytes known to belong to data blocks.
    fn data(&mut self, b: &[u8]) {
        if self.gap > 0 {
            let run = std::mem::take(&mut self.run).finalize();
            self.outer.update(run);
            self.outer.update(self.gap.to_le_bytes());
            self.gap = 0;
        }
        self.run.update(b);
    }

    /// Adds content bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.filled > 0 {
            let k = (HASH_BLOCK - self.filled).min(data.len());
            self.block[self.filled..self.filled + k].copy_from_slice(&data[..k]);
            self.filled += k;
            data = &data[k..];
            if self.filled < HASH_BLOCK {
                return;
            }
            let b = self.block;
            self.filled = 0;
            self.block_done(&b);
        }
        let whole = data.len() - data.len() % HASH_BLOCK;
        // consecutive data blocks go to the run hasher in one call
        let (mut start, mut i) = (0, 0);
        while i < whole {
            let b = &data[i..i + HASH_BLOCK];
            if b.iter().all(|&x| x == 0) {
                if start < i {
                    self.data(&data[start..i]);
                }
                self.gap += HASH_BLOCK as u64;
                start = i + HASH_BLOCK;
            }
            i += HASH_BLOCK;
        }
        if start < whole {
            self.data(&data[start..whole]);
        }
        let rest = &data[whole..];
        self.block[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// Adds `n` zero bytes (a hole) in constant time.
    pub fn zeros(&mut self, mut n: u64) {
        if self.filled > 0 {
            let k = n.min((HASH_BLOCK - self.filled) as u64) as usize;
            self.update(&[0u8; HASH_BLOCK][..k]);
            n -= k as u64;
        }
        if n == 0 {
            return;
        }
        // now at a block boundary: whole zero blocks are gap, the rest starts a block
        let tail = (n % HASH_BLOCK as u64) as usize;
        self.gap += n - tail as u64;
        self.update(&[0u8; HASH_BLOCK][..tail]);
    }

    /// The final digest.
    pub fn finish(mut self) -> [u8; 32] {
        if self.filled > 0 {
            let b = self.block;
            self.block_done(&b[..self.filled]);
        }
        self.outer.update(self.run.finalize());
        if self.gap > 0 {
            self.outer.update(self.gap.to_le_bytes());
        }
        self.outer.finalize().into()
    }
}

/// [`ContentHasher`] digest of a regular file, skipping holes (`SEEK_DATA`/`SEEK_HOLE`).
pub(crate) fn hash_fd(fd: &OwnedFd, size: u64) -> io::Result<[u8; 32]> {
    use rustix::fs::{seek, SeekFrom};
    let mut h = ContentHasher::new();
    let mut pos = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let file = std::fs::File::from(fd.try_clone()?);
    while pos < size {
        let data = match seek(fd, SeekFrom::Data(pos as i64)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => size,
            Err(e) => return Err(e.into()),
        };
        let data = data.min(size);
        h.zeros(data - pos);
        pos = data;
        if pos >= size {
            break;
        }
        let hole = seek(fd, SeekFrom::Hole(pos as i64))
            .map(|x| x.min(size))
            .unwrap_or(size);
        while pos < hole {
            let want = ((hole - pos) as usize).min(buf.len());
            let n = std::os::unix::fs::FileExt::read_at(&file, &mut buf[..want], pos)?;
            if n == 0 {
                // file shrank under us: treat the rest as zeros
                h.zeros(size - pos);
                pos = size;
                break;
            }
            h.update(&buf[..n]);
            pos += n as u64;
        }
    }
    Ok(h.finish())
}

/// Reads all xattrs of `path` without following a final symlink.
pub(crate) fn read_xattrs_path(path: &std::ffi::CStr) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(out),
            Err(e) => return Err(e.into()),
        }
        if names.len() > 1 << 22 {
            return Err(io::Error::other("xattr list too large"));
        }
    };
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let mut val = vec![0u8; 65536];
        match rustix::fs::lgetxattr(path, name, &mut val) {
            Ok(k) => {
                val.truncate(k);
                out.insert(name.to_vec(), val);
            }
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Walks the tree at `root` (never following symlinks, never leaving its filesystem)
/// and records every entry. Regular files are hashed; hard links are grouped by
/// (device, inode). FIFOs and devices are never opened.
pub fn scan_tree(root: &Path) -> io::Result<Manifest> {
    scan(root, None)
}

/// [`scan_tree`] with the regular files hashed on `threads` threads: the
/// walk records every entry first, then the files are read, biggest first,
/// each reopened beneath the root and checked to be the inode the walk saw.
pub fn scan_tree_parallel(root: &Path, threads: usize) -> io::Result<Manifest> {
    scan(root, Some(threads.max(1)))
}

/// One walk of the tree; with `threads`, file contents are hashed after it.
fn scan(root: &Path, threads: Option<usize>) -> io::Result<Manifest> {
    let r = Root::open(root)?;
    let rootfd = r.open_dir(b"")?;
    let st = rustix::fs::fstat(&rootfd)?;
    let mut w = Walk {
        m: Manifest::default(),
        inodes: HashMap::new(),
        dev: st.st_dev,
        deferred: threads.map(|_| Vec::new()),
    };
    let xattrs = Arc::new(read_xattrs_path(&proc_path(&rootfd, b"")?)?);
    w.m.insert(entry_from_stat(Vec::new(), &st, None, None, xattrs));
    walk(&rootfd, Vec::new(), &mut w)?;
    if let (Some(n), Some(files)) = (threads, w.deferred.take()) {
        for (path, sha) in hash_files(&r, files, n)? {
            if let Some(e) = w.m.entries.get_mut(&path) {
                e.content_hash = Some(sha);
            }
        }
    }
    let mut m = w.m;
    for (_, mut paths) in w.inodes {
        if paths.len() < 2 {
            continue;
        }
        paths.sort();
        let leader = paths[0].clone();
        for p in paths {
            if let Some(e) = m.entries.get_mut(&p) {
                e.hardlink = Some(leader.clone());
            }
        }
    }
    Ok(m)
}

/// What a walk has found so far.
struct Walk {
    m: Manifest,
    inodes: HashMap<(u64, u64), Vec<Vec<u8>>>,
    dev: u64,
    /// Regular files left to hash (path, inode, size); None: hashed as walked.
    deferred: Option<Vec<(Vec<u8>, u64, u64)>>,
}

/// The content hash of the open file `fd`, which must still be the inode
/// `ino` the walk saw at `path` (an error says the tree changed meanwhile).
fn hash_if_same(fd: &OwnedFd, ino: u64, path: &[u8]) -> io::Result<[u8; 32]> {
    let st = rustix::fs::fstat(fd)?;
    #[allow(clippy::unnecessary_cast)]
    if st.st_ino as u64 != ino {
        return Err(io::Error::other(format!(
            "{} changed while scanning",
            display_path(path)
        )));
    }
    #[allow(clippy::unnecessary_cast)]
    hash_fd(fd, st.st_size as u64)
}

/// Hash `files` on `threads` threads; the first error stops them all.
fn hash_files(
    r: &Root,
    mut files: Vec<(Vec<u8>, u64, u64)>,
    threads: usize,
) -> io::Result<Vec<(Vec<u8>, [u8; 32])>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    files.sort_by_key(|f| std::cmp::Reverse(f.2));
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let one = |(path, ino, _): &(Vec<u8>, u64, u64)| -> io::Result<[u8; 32]> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        hash_if_same(&r.open_beneath(path, flags, Mode::empty())?, *ino, path)
    };
    let work = || -> io::Result<Vec<(Vec<u8>, [u8; 32])>> {
        let mut out = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let Some(f) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            match one(f) {
                Ok(sha) => out.push((f.0.clone(), sha)),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(out)
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        let mut all = Vec::new();
        for h in handles {
            let part = h
                .join()
                .map_err(|_| io::Error::other("a hashing thread panicked"))??;
            all.extend(part);
        }
        Ok(all)
    })
}

fn entry_from_stat(
    path: Vec<u8>,
    st: &rustix::fs::Stat,
    sha: Option<[u8; 32]>,
    link: Option<Vec<u8>>,
    xattrs: Xattrs,
) -> ManifestEntry {
    let kind = EntryType::from_mode(st.st_mode);
    let rdev = matches!(kind, EntryType::CharDevice | EntryType::BlockDevice)
        .then(|| (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)));
    #[allow(clippy::unnecessary_cast)]
    ManifestEntry {
        path,
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: if kind == EntryType::File {
            st.st_size as u64
        } else {
            0
        },
        mtime_sec: st.st_mtime as i64,
        mtime_nsec: st.st_mtime_nsec as u32,
        content_hash: sha,
        rdev,
        link,
        hardlink: None,
        xattrs,
        blocks: Some(st.st_blocks as u64),
    }
}

/// The entry `name` of `dir` (recorded as `path`), with its stat; None when
/// it is not there. Regular files are hashed, symlinks read, nothing followed.
fn entry_at(
    dir: &OwnedFd,
    name: &[u8],
    path: Vec<u8>,
    hash: bool,
) -> io::Result<Option<(ManifestEntry, rustix::fs::Stat)>> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(None);
    };
    let kind = EntryType::from_mode(st.st_mode);
    let xattrs = Arc::new(read_xattrs_path(&proc_path(dir, name)?)?);
    let mut sha = None;
    let mut link = None;
    match kind {
        EntryType::File if hash => {
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            #[allow(clippy::unnecessary_cast)]
            let ino = st.st_ino as u64;
            sha = Some(hash_if_same(&fd, ino, &path)?);
        }
        EntryType::Symlink => {
            link = Some(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes());
        }
        _ => {}
    }
    Ok(Some((entry_from_stat(path, &st, sha, link, xattrs), st)))
}

/// One entry of the tree at `root` as [`scan_tree`] records it (its
/// hard-link group left unset), or None when it is not there. `rel` is
/// relative, without the leading `/` (empty: the root itself).
pub fn scan_entry(root: &Path, rel: &[u8]) -> io::Result<Option<ManifestEntry>> {
    let r = Root::open(root)?;
    if rel.is_empty() {
        let fd = r.open_dir(b"")?;
        let st = rustix::fs::fstat(&fd)?;
        let xattrs = Arc::new(read_xattrs_path(&proc_path(&fd, b"")?)?);
        return Ok(Some(entry_from_stat(Vec::new(), &st, None, None, xattrs)));
    }
    let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&b""[..], rel),
    };
    let dir = match r.open_dir(parent) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(entry_at(&dir, name, rel.to_vec(), true)?.map(|(e, _)| e))
}

fn walk(dir: &OwnedFd, prefix: Vec<u8>, w: &mut Walk) -> io::Result<()> {
    let mut names = list_dir_fd(dir)?;
    names.sort();
    for name in names {
        let mut path = prefix.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        let hash = w.deferred.is_none();
        let Some((entry, st)) = entry_at(dir, &name, path.clone(), hash)? else {
            continue;
        };
        let kind = entry.kind;
        #[allow(clippy::unnecessary_cast)]
        if kind != EntryType::Dir && st.st_nlink as u64 > 1 {
            w.inodes
                .entry((st.st_dev as u64, st.st_ino as u64))
                .or_default()
                .push(path.clone());
        }
        #[allow(clippy::unnecessary_cast)]
        if let (EntryType::File, Some(d)) = (kind, w.deferred.as_mut()) {
            d.push((path.clone(), st.st_ino as u64, st.st_size as u64));
        }
        w.m.insert(entry);
        #[allow(clippy::unnecessary_cast)]
        if kind == EntryType::Dir && st.st_dev as u64 == w.dev {
            let sub = rustix::fs::openat2(
                dir,
                &name[..],
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                crate::beneath::resolve_flags(),
            )?;
            walk(&sub, path, w)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_scan_equals_the_serial_one() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        for i in 0..50 {
            std::fs::write(r.join(format!("a/f{i}")), vec![i as u8; i * 1000]).unwrap();
        }
        std::fs::write(r.join("a/b/big"), vec![3u8; 3 << 20]).unwrap();
        std::fs::hard_link(r.join("a/f7"), r.join("a/b/link")).unwrap();
        std::os::unix::fs::symlink("f1", r.join("a/sym")).unwrap();
        let sparse = std::fs::File::create(r.join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        let serial = scan_tree(r).unwrap();
        assert!(serial.get(b"a/b/big").unwrap().content_hash.is_some());
        for threads in [1, 2, 4] {
            let parallel = scan_tree_parallel(r, threads).unwrap();
            assert_eq!(serial.diff(&parallel), Vec::new(), "{threads} threads");
        }
    }

    #[test]
    fn tsv_roundtrip_and_diff() {
        let mut m = Manifest::default();
        let mut x = BTreeMap::new();
        x.insert(b"user.a b".to_vec(), b"\x00\x01".to_vec());
        m.insert(ManifestEntry {
            path: b"a\nb \xff".to_vec(),
            kind: EntryType::File,
            mode: 0o4755,
            uid: 1,
            gid: 2,
            size: 3,
            mtime_sec: -5,
            mtime_nsec: 7,
            content_hash: Some([9; 32]),
            rdev: None,
            link: None,
            hardlink: Some(b"a\nb \xff".to_vec()),
            xattrs: Arc::new(x),
            blocks: None,
        });
        m.insert(ManifestEntry {
            path: Vec::new(),
            kind: EntryType::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            content_hash: None,
            rdev: Some((1, 3)),
            link: Some(b"/x y".to_vec()),
            hardlink: None,
            xattrs: Xattrs::default(),
            blocks: None,
        });
        let mut out = Vec::new();
        m.write_tsv(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        let back = Manifest::parse_tsv(&text).unwrap();
        assert_eq!(back, m);
        assert!(m.diff(&back).is_empty());
        let mut changed = back.clone();
        changed
            .entries
            .get_mut(b"a\nb \xff".as_slice())
            .unwrap()
            .mode = 0o755;
        changed.entries.remove(&Vec::new());
        let d = m.diff(&changed);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d
            .iter()
            .any(|x| x.field == "mode" && x.to_string().contains("4755")));
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    const HASH_LEAF: u64 = 1 << 20;

    #[test]
    fn holes_and_data_hash_alike_and_leaves_matter() {
        let mut a = ContentHasher::new();
        a.update(b"abc");
        a.zeros(3 * HASH_LEAF + 17);
        a.update(b"z");
        let mut b = ContentHasher::new();
        b.update(b"abc");
        b.update(&vec![0u8; (3 * HASH_LEAF + 17) as usize]);
        b.update(b"z");
        assert_eq!(a.clone().finish(), b.finish());
        let mut c = ContentHasher::new();
        c.update(b"abc");
        c.zeros(3 * HASH_LEAF + 18);
        assert_ne!(a.finish(), c.finish());
        // a small file's digest is the SHA-256 of its single leaf's digest
        let mut d = ContentHasher::new();
        d.update(b"hello");
        let leaf: [u8; 32] = Sha256::digest(b"hello").into();
        let expect: [u8; 32] = Sha256::digest(leaf).into();
        assert_eq!(d.finish(), expect);
        // a huge hole is cheap
        let t = std::time::Instant::now();
        let mut h = ContentHasher::new();
        h.zeros(1 << 40);
        h.finish();
        assert!(t.elapsed().as_secs() < 20);
    }
}

#[cfg(test)]
mod hole_tests {
    use super::*;

    /// Hashes `parts`: `Ok(bytes)` sent as data, `Err(n)` a hole of `n` zeros.
    fn digest(parts: &[Result<&[u8], u64>]) -> [u8; 32] {
        let mut h = ContentHasher::new();
        for p in parts {
            match p {
                Ok(b) => h.update(b),
                Err(n) => h.zeros(*n),
            }
        }
        h.finish()
    }

    #[test]
    fn a_hole_of_any_size_costs_constant_time() {
        // a 1-byte file at 2^62: with per-MiB leaves this was 2^42 digests (days)
        let t = std::time::Instant::now();
        let a = digest(&[Err((1 << 62) - 1), Ok(b"x")]);
        let b = digest(&[Err((1 << 62) - 1), Ok(b"y")]);
        assert_ne!(a, b);
        let mut h = ContentHasher::new();
        for _ in 0..200_000 {
            h.zeros(1 << 40);
            h.update(b"z");
        }
        h.finish();
        assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
    }

    #[test]
    fn the_digest_follows_its_definition() {
        let sha = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
        // "ab" and 62 zeros (block 0), two zero blocks, "cd" and 62 zeros (block 3),
        // one more zero block: the zeros inside a data block belong to the run
        let mut outer = sha(&[b"ab".as_slice(), &[0u8; 62]].concat()).to_vec();
        outer.extend_from_slice(&128u64.to_le_bytes());
        outer.extend_from_slice(&sha(&[b"cd".as_slice(), &[0u8; 62]].concat()));
        outer.extend_from_slice(&64u64.to_le_bytes());
        let want = sha(&outer);
        assert_eq!(digest(&[Ok(b"ab"), Err(190), Ok(b"cd"), Err(126)]), want);
        // a file of zeros only: the empty first run, then the gap
        let mut outer = sha(b"").to_vec();
        outer.extend_from_slice(&1000u64.to_le_bytes());
        assert_eq!(digest(&[Err(1000)]), sha(&outer));
        assert_eq!(digest(&[]), sha(&sha(b"")));
    }

    #[test]
    fn holes_and_written_zeros_anywhere_hash_alike() {
        // a small xorshift: the same pseudo-random layouts on every run
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..300 {
            let mut content = Vec::new();
            let mut parts: Vec<(bool, usize, usize)> = Vec::new();
            for _ in 0..next(8) {
                let len = next(300) as usize;
                let hole = next(2) == 0;
                let start = content.len();
                content.extend((0..len).map(|i| {
                    if hole || i % 5 == 0 {
                        0
                    } else {
                        1 + i as u8 % 7
                    }
                }));
                parts.push((hole, start, len));
            }
            let mut h = ContentHasher::new();
            for &(hole, start, len) in &parts {
                if hole {
                    h.zeros(len as u64);
                } else {
                    // data in uneven pieces
                    let mut p = start;
                    while p < start + len {
                        let k = (1 + next(70) as usize).min(start + len - p);
                        h.update(&content[p..p + k]);
                        p += k;
                    }
                }
            }
            let mut whole = ContentHasher::new();
            whole.update(&content);
            assert_eq!(h.finish(), whole.finish(), "layout {parts:?}");
        }
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    fn file(path: &str, link: Option<&str>, xattrs: &Xattrs) -> ManifestEntry {
        ManifestEntry {
            path: path.as_bytes().to_vec(),
            kind: EntryType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            content_hash: None,
            rdev: None,
            link: None,
            hardlink: link.map(|l| l.as_bytes().to_vec()),
            xattrs: xattrs.clone(),
            blocks: None,
        }
    }

    #[test]
    fn hard_link_groups_share_xattrs_in_memory_and_in_the_tsv() {
        let big: Xattrs = Arc::new(BTreeMap::from([(b"user.big".to_vec(), vec![7u8; 60_000])]));
        let none = Xattrs::default();
        let mut m = Manifest::default();
        m.insert(file("f", None, &big));
        // a chain: each link names the one before
        let n = 20_000;
        let mut prev = "f".to_string();
        for i in 0..n {
            let name = format!("l{i:05}");
            m.insert(file(&name, Some(&prev), &none));
            prev = name;
        }
        let t = std::time::Instant::now();
        m.resolve_hardlinks();
        assert!(t.elapsed().as_secs() < 5, "grouping took {:?}", t.elapsed());
        let f = m.get(b"f").unwrap();
        assert_eq!(f.hardlink.as_deref(), Some(&b"f"[..]));
        for e in m.entries.values() {
            assert!(Arc::ptr_eq(&e.xattrs, &f.xattrs), "{:?} copies", e.path);
            assert_eq!(e.hardlink.as_deref(), Some(&b"f"[..]));
        }
        let mut tsv = Vec::new();
        m.write_tsv(&mut tsv).unwrap();
        assert!(
            tsv.len() < 2 << 20,
            "the TSV repeats the xattrs: {} bytes",
            tsv.len()
        );
        let back = Manifest::parse_tsv(std::str::from_utf8(&tsv).unwrap()).unwrap();
        assert_eq!(back, m);
        let b = back.get(b"l00007").unwrap();
        assert!(Arc::ptr_eq(&b.xattrs, &back.get(b"f").unwrap().xattrs));
        // "=" without a leader to take them from is refused
        let text = String::from_utf8(tsv).unwrap();
        let orphan = text.replace("\t/f\t", "\t/nowhere\t");
        assert!(Manifest::parse_tsv(&orphan)
            .unwrap_err()
            .contains("bad xattrs"));
    }
}
