//! The manifest of an extraction, kept on disk while the archive streams in.
//!
//! A node chooses how many entries its archive has, so a manifest held in
//! memory grows with the node's choice (about 600 bytes an entry: a root
//! filesystem of a million entries, or a hostile archive of millions of
//! empty files, is hundreds of megabytes). [`ManifestStore`] keeps the
//! records in a private temporary SQLite database instead (deleted by the
//! library when closed, never named in the file system), keyed by path
//! bytes, so memory stays at its page cache ([`CACHE_KIB`]) however many
//! entries arrive, lookups stay logarithmic and the TSV form is written in
//! path order straight from the index.
//!
//! Hard links are recorded with the path of the entry holding the data
//! (`source`, the first non-link member) and take that entry's attributes,
//! and the group's leader, when the archive ends ([`ManifestStore::resolve_hardlinks`]):
//! constant work per link, no in-memory link graph. Extended attribute
//! sets live in their own table, so the members of a hard-link group share
//! one stored set (a thousand links to a file with a megabyte of xattrs are
//! not a gigabyte on disk).

use crate::manifest::{
    write_tsv_header, write_tsv_line, EntryType, Manifest, ManifestEntry, Xattrs,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// Page cache of the store's database, in KiB: the store's whole memory.
pub const CACHE_KIB: u32 = 8 * 1024;

const SCHEMA: &str = "
    PRAGMA journal_mode = OFF;
    PRAGMA synchronous = OFF;
    PRAGMA temp_store = FILE;
    CREATE TABLE entry (
        path BLOB PRIMARY KEY, kind TEXT NOT NULL, mode INTEGER NOT NULL,
        uid INTEGER NOT NULL, gid INTEGER NOT NULL, size INTEGER NOT NULL,
        mtime_sec INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL, hash BLOB,
        rdev_major INTEGER, rdev_minor INTEGER, link BLOB, hardlink BLOB,
        xattrs INTEGER, source BLOB
    ) WITHOUT ROWID;
    CREATE INDEX entry_source ON entry (source) WHERE source IS NOT NULL;
    CREATE TABLE xattrs (id INTEGER PRIMARY KEY, value BLOB NOT NULL);
";

const COLUMNS: &str = "path, kind, mode, uid, gid, size, mtime_sec, mtime_nsec, hash, \
                       rdev_major, rdev_minor, link, hardlink, xattrs";

/// A manifest on disk: see the module documentation.
pub struct ManifestStore {
    // A mutex only so the store is `Sync` (summaries are shared by reference
    // across awaits); one thread uses it at a time.
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for ManifestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestStore").finish_non_exhaustive()
    }
}

fn sql(e: rusqlite::Error) -> io::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            io::Error::from_raw_os_error(libc::ENOSPC)
        }
        e => io::Error::other(format!("manifest store: {e}")),
    }
}

/// Stored integers are SQLite's signed 64 bits; unsigned values keep their bits.
fn int(v: u64) -> i64 {
    v as i64
}

impl ManifestStore {
    /// An empty store in a new private temporary database.
    pub fn new() -> io::Result<ManifestStore> {
        let conn = Connection::open("").map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        conn.execute_batch(&format!("PRAGMA cache_size = -{CACHE_KIB}; BEGIN"))
            .map_err(sql)?;
        Ok(ManifestStore {
            conn: Mutex::new(conn),
        })
    }

    /// A store holding the records of `m` as they are (hard-link groups
    /// already resolved).
    pub fn from_manifest(m: &Manifest) -> io::Result<ManifestStore> {
        let mut s = ManifestStore::new()?;
        for e in m.entries.values() {
            s.insert(e)?;
        }
        Ok(s)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces the record of `e.path`.
    pub fn insert(&mut self, e: &ManifestEntry) -> io::Result<()> {
        let conn = self.conn();
        let xattrs = store_xattrs(&conn, &e.xattrs)?;
        insert_row(&conn, e, xattrs, None)
    }

    /// Where a hard link to `target` gets its data: the path of the entry
    /// holding it (`target` itself, or `target`'s own source when `target`
    /// is a link). None when `target` is not a stored non-directory.
    pub fn hard_link_source(&self, target: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let conn = self.conn();
        let found: Option<(String, Option<Vec<u8>>)> = conn
            .prepare_cached("SELECT kind, source FROM entry WHERE path = ?1")
            .and_then(|mut s| {
                s.query_row([target], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(sql)?;
        Ok(match found {
            Some((kind, _)) if kind == "d" => None,
            Some((_, source)) => Some(source.unwrap_or_else(|| target.to_vec())),
            None => None,
        })
    }

    /// Records the hard link `e`, whose data is the entry at `source` (from
    /// [`ManifestStore::hard_link_source`]); its attributes are taken from
    /// there when the archive ends.
    pub fn insert_hard_link(&mut self, e: &ManifestEntry, source: &[u8]) -> io::Result<()> {
        insert_row(&self.conn(), e, None, Some(source))
    }

    /// The record of `path`.
    pub fn get(&self, path: &[u8]) -> io::Result<Option<ManifestEntry>> {
        let conn = self.conn();
        let row = conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM entry WHERE path = ?1"))
            .and_then(|mut s| s.query_row([path], raw_row).optional())
            .map_err(sql)?;
        let mut sets = XattrSets::default();
        row.map(|r| sets.entry(&conn, r)).transpose()
    }

    /// True when `path` has a record.
    pub fn contains(&self, path: &[u8]) -> io::Result<bool> {
        let conn = self.conn();
        conn.prepare_cached("SELECT 1 FROM entry WHERE path = ?1")
            .and_then(|mut s| s.exists([path]))
            .map_err(sql)
    }

    /// Forgets the record of `path`.
    pub fn remove(&mut self, path: &[u8]) -> io::Result<()> {
        let conn = self.conn();
        conn.prepare_cached("DELETE FROM entry WHERE path = ?1")
            .and_then(|mut s| s.execute([path]))
            .map_err(sql)?;
        Ok(())
    }

    /// Number of records.
    pub fn len(&self) -> io::Result<u64> {
        let conn = self.conn();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM entry", [], |r| r.get(0))
            .map_err(sql)?;
        Ok(n as u64)
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Sets (or replaces) one xattr of the record of `path`, if there is one.
    pub fn set_xattr(&mut self, path: &[u8], name: &[u8], value: Vec<u8>) -> io::Result<()> {
        let Some(mut e) = self.get(path)? else {
            return Ok(());
        };
        Arc::make_mut(&mut e.xattrs).insert(name.to_vec(), value);
        let conn = self.conn();
        let id = store_xattrs(&conn, &e.xattrs)?;
        conn.prepare_cached("UPDATE entry SET xattrs = ?1 WHERE path = ?2")
            .and_then(|mut s| s.execute(params![id, path]))
            .map_err(sql)?;
        Ok(())
    }

    /// End of the archive: every hard link takes the attributes of the entry
    /// holding its data, and every member of a group (that entry included)
    /// names the group's smallest path as its `hardlink`.
    pub fn resolve_hardlinks(&mut self) -> io::Result<()> {
        let conn = self.conn();
        conn.execute_batch(
            "UPDATE entry SET (kind, mode, uid, gid, size, mtime_sec, mtime_nsec, hash,
                               rdev_major, rdev_minor, link, xattrs)
                 = (s.kind, s.mode, s.uid, s.gid, s.size, s.mtime_sec, s.mtime_nsec, s.hash,
                    s.rdev_major, s.rdev_minor, s.link, s.xattrs)
                 FROM entry AS s WHERE entry.source = s.path;
             CREATE TEMP TABLE grp AS
                 SELECT source, min(min(path), source) AS leader FROM entry
                 WHERE source IS NOT NULL GROUP BY source;
             UPDATE entry SET hardlink = grp.leader FROM grp
                 WHERE entry.source = grp.source OR entry.path = grp.source;
             DROP TABLE grp;",
        )
        .map_err(sql)
    }

    /// Directories and their modification times, each after everything
    /// beneath it (reverse path order: a parent's path is a prefix of its
    /// children's, so it sorts before them).
    pub fn directories_deepest_first(&self, mut f: impl FnMut(&[u8], i64, u32)) -> io::Result<()> {
        let conn = self.conn();
        let mut s = conn
            .prepare(
                "SELECT path, mtime_sec, mtime_nsec FROM entry WHERE kind = 'd' ORDER BY path DESC",
            )
            .map_err(sql)?;
        let mut rows = s.query([]).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            let path: Vec<u8> = r.get(0).map_err(sql)?;
            f(&path, r.get(1).map_err(sql)?, r.get(2).map_err(sql)?);
        }
        Ok(())
    }

    /// Every record in path order.
    pub fn for_each(&self, mut f: impl FnMut(ManifestEntry) -> io::Result<()>) -> io::Result<()> {
        self.scan(|e, _| f(e))
    }

    /// Writes the TSV form ([`Manifest::write_tsv`]'s format) in path order.
    pub fn write_tsv(&self, mut w: impl Write) -> io::Result<()> {
        write_tsv_header(&mut w)?;
        self.scan(|e, same_as_leader| write_tsv_line(&mut w, &e, same_as_leader))
    }

    /// The whole manifest in memory (for small trees and tests).
    pub fn to_manifest(&self) -> io::Result<Manifest> {
        let mut m = Manifest::default();
        self.for_each(|e| {
            m.insert(e);
            Ok(())
        })?;
        Ok(m)
    }

    /// Every record in path order, with whether its xattrs are its group
    /// leader's stored set.
    fn scan(&self, mut f: impl FnMut(ManifestEntry, bool) -> io::Result<()>) -> io::Result<()> {
        let conn = self.conn();
        let cols: Vec<String> = COLUMNS.split(", ").map(|c| format!("e.{c}")).collect();
        let mut s = conn
            .prepare(&format!(
                "SELECT {}, l.xattrs FROM entry AS e LEFT JOIN entry AS l \
                 ON l.path = e.hardlink AND l.path <> e.path ORDER BY e.path",
                cols.join(", ")
            ))
            .map_err(sql)?;
        let mut rows = s.query([]).map_err(sql)?;
        let mut sets = XattrSets::default();
        while let Some(r) = rows.next().map_err(sql)? {
            let leader: Option<i64> = r.get(14).map_err(sql)?;
            let raw = raw_row(r).map_err(sql)?;
            let same = raw.xattrs.is_some() && leader == raw.xattrs;
            f(sets.entry(&conn, raw)?, same)?;
        }
        Ok(())
    }
}

fn insert_row(
    conn: &Connection,
    e: &ManifestEntry,
    xattrs: Option<i64>,
    source: Option<&[u8]>,
) -> io::Result<()> {
    let (major, minor) = e.rdev.unzip();
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO entry ({COLUMNS}, source) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            e.path,
            e.kind.letter().to_string(),
            e.mode,
            e.uid,
            e.gid,
            int(e.size),
            e.mtime_sec,
            e.mtime_nsec,
            e.content_hash.as_ref().map(|h| &h[..]),
            major,
            minor,
            e.link,
            e.hardlink,
            xattrs,
            source,
        ])
    })
    .map_err(sql)?;
    Ok(())
}

/// Stores one xattr set (none for an empty one) and returns its id.
fn store_xattrs(conn: &Connection, x: &BTreeMap<Vec<u8>, Vec<u8>>) -> io::Result<Option<i64>> {
    if x.is_empty() {
        return Ok(None);
    }
    let mut blob = Vec::new();
    for (k, v) in x {
        for part in [k, v] {
            blob.extend_from_slice(&(part.len() as u32).to_le_bytes());
            blob.extend_from_slice(part);
        }
    }
    conn.prepare_cached("INSERT INTO xattrs (value) VALUES (?1)")
        .and_then(|mut s| s.execute([blob]))
        .map_err(sql)?;
    Ok(Some(conn.last_insert_rowid()))
}

fn decode_xattrs(blob: &[u8]) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let bad = || io::Error::other("manifest store: a stored xattr set is corrupt");
    let mut out = BTreeMap::new();
    let mut rest = blob;
    let take = |rest: &mut &[u8]| -> io::Result<Vec<u8>> {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_le_bytes(*len) as usize;
        let (part, tail) = (tail.get(..len).ok_or_else(bad)?, &tail[len..]);
        *rest = tail;
        Ok(part.to_vec())
    };
    while !rest.is_empty() {
        let k = take(&mut rest)?;
        let v = take(&mut rest)?;
        out.insert(k, v);
    }
    Ok(out)
}

/// A row as stored: the entry without its xattrs, and their set's id.
struct RawRow {
    entry: ManifestEntry,
    xattrs: Option<i64>,
}

fn raw_row(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    let kind: String = r.get(1)?;
    let hash: Option<Vec<u8>> = r.get(8)?;
    let major: Option<u32> = r.get(9)?;
    let minor: Option<u32> = r.get(10)?;
    let size: i64 = r.get(5)?;
    Ok(RawRow {
        entry: ManifestEntry {
            path: r.get(0)?,
            kind: EntryType::from_letter(&kind).unwrap_or(EntryType::File),
            mode: r.get(2)?,
            uid: r.get(3)?,
            gid: r.get(4)?,
            size: size as u64,
            mtime_sec: r.get(6)?,
            mtime_nsec: r.get(7)?,
            content_hash: hash.and_then(|h| h.try_into().ok()),
            rdev: major.zip(minor),
            link: r.get(11)?,
            hardlink: r.get(12)?,
            xattrs: Arc::default(),
            blocks: None,
        },
        xattrs: r.get(13)?,
    })
}

/// Xattr sets loaded by id, so the members of a group share one in memory
/// too. Only the last few are kept: group members are adjacent in path
/// order often enough, and a bound matters more than a perfect share.
#[derive(Default)]
struct XattrSets(HashMap<i64, Xattrs>);

impl XattrSets {
    const KEEP: usize = 64;

    fn entry(&mut self, conn: &Connection, raw: RawRow) -> io::Result<ManifestEntry> {
        let mut e = raw.entry;
        if let Some(id) = raw.xattrs {
            e.xattrs = self.load(conn, id)?;
        }
        Ok(e)
    }

    fn load(&mut self, conn: &Connection, id: i64) -> io::Result<Xattrs> {
        if let Some(x) = self.0.get(&id) {
            return Ok(Arc::clone(x));
        }
        let blob: Vec<u8> = conn
            .prepare_cached("SELECT value FROM xattrs WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)))
            .map_err(sql)?;
        let x = Arc::new(decode_xattrs(&blob)?);
        if self.0.len() >= Self::KEEP {
            self.0.clear();
        }
        self.0.insert(id, Arc::clone(&x));
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryType, xattrs: &[(&str, &str)]) -> ManifestEntry {
        ManifestEntry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 1,
            gid: 2,
            size: 3,
            mtime_sec: 4,
            mtime_nsec: 5,
            content_hash: (kind == EntryType::File).then_some([7; 32]),
            rdev: None,
            link: None,
            hardlink: None,
            xattrs: Arc::new(
                xattrs
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect(),
            ),
            blocks: None,
        }
    }

    #[test]
    fn records_round_trip_and_replace_in_path_order() {
        let mut s = ManifestStore::new().unwrap();
        let mut m = Manifest::default();
        for e in [
            entry("", EntryType::Dir, &[]),
            entry("a-c", EntryType::File, &[("user.x", "1")]),
            entry("a", EntryType::Dir, &[]),
            entry("a/b", EntryType::File, &[]),
        ] {
            s.insert(&e).unwrap();
            m.insert(e);
        }
        let mut dev = entry("a/dev", EntryType::CharDevice, &[]);
        dev.rdev = Some((u32::MAX, 7));
        dev.size = u64::MAX;
        s.insert(&dev).unwrap();
        m.insert(dev);
        let replaced = entry("a-c", EntryType::Symlink, &[]);
        s.insert(&replaced).unwrap();
        m.insert(replaced);
        assert_eq!(s.to_manifest().unwrap(), m);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        s.write_tsv(&mut a).unwrap();
        m.write_tsv(&mut b).unwrap();
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        assert_eq!(s.len().unwrap(), 5);
        s.remove(b"a/b").unwrap();
        assert!(!s.contains(b"a/b").unwrap());
        assert!(s.get(b"a/b").unwrap().is_none());
        let mut dirs = Vec::new();
        s.directories_deepest_first(|p, _, _| dirs.push(p.to_vec()))
            .unwrap();
        assert_eq!(dirs, [b"a".to_vec(), Vec::new()]);
    }

    #[test]
    fn hard_links_take_their_source_and_share_its_xattrs() {
        let mut s = ManifestStore::new().unwrap();
        s.insert(&entry("d", EntryType::Dir, &[])).unwrap();
        s.insert(&entry("m", EntryType::File, &[("user.big", "x")]))
            .unwrap();
        let link = |p: &str| {
            let mut e = entry(p, EntryType::File, &[]);
            e.mode = 0o600;
            e.content_hash = None;
            e
        };
        let mut add = |p: &str, target: &[u8]| {
            let source = s.hard_link_source(target).unwrap();
            if let Some(source) = &source {
                s.insert_hard_link(&link(p), source).unwrap();
            }
            source
        };
        assert_eq!(add("z", b"m").as_deref(), Some(&b"m"[..]));
        // a link to a link joins the same group
        assert_eq!(add("b", b"z").as_deref(), Some(&b"m"[..]));
        assert_eq!(add("x", b"d"), None, "a directory");
        assert_eq!(add("x", b"nosuch"), None);
        s.set_xattr(b"m", b"system.posix_acl_access", b"acl".to_vec())
            .unwrap();
        s.resolve_hardlinks().unwrap();
        let m = s.to_manifest().unwrap();
        for p in ["b", "m", "z"] {
            let e = m.get(p.as_bytes()).unwrap();
            assert_eq!(e.hardlink.as_deref(), Some(&b"b"[..]), "{p}");
            assert_eq!((e.mode, e.content_hash), (0o644, Some([7; 32])), "{p}");
            assert_eq!(e.xattrs.len(), 2, "{p}");
        }
        assert!(m.get(b"d").unwrap().hardlink.is_none());
        let mut tsv = Vec::new();
        s.write_tsv(&mut tsv).unwrap();
        let text = String::from_utf8(tsv).unwrap();
        assert_eq!(text.matches("\t=\n").count(), 2, "{text}");
        assert_eq!(Manifest::parse_tsv(&text).unwrap(), m);
    }
}
