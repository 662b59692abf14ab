//! rpm's SQLite database (rpm 4.16 and later: RHEL 9, Rocky and Alma 9,
//! Fedora, openSUSE): the installed packages of an image, read on the server
//! without rpm.
//!
//! The database comes from a node we do not trust. It is opened through a
//! descriptor from [`Root::open_regular`] (no symlink followed), as an
//! immutable, read-only SQLite file (nothing is written beside it, no lock
//! taken), with the schema untrusted (`trusted_schema = OFF`, defensive
//! mode) and every header checked against its own bounds. At most
//! [`MAX_PACKAGES`] packages and headers up to [`MAX_HEADER`] bytes are read.
//!
//! Each row of `Packages` is an rpm header without its 8-byte magic: the
//! count of index entries and the length of the data store (big-endian
//! 32-bit), the entries (tag, type, offset, count), then the store.

use std::os::fd::AsRawFd;

use rusqlite::{Connection, OpenFlags};

use crate::beneath::Root;
use crate::packages::{regular_size, Package};

/// Most packages listed (a large server has a few thousand).
pub const MAX_PACKAGES: usize = 200_000;
/// Largest header read (kernel packages are the largest, a few MiB).
pub const MAX_HEADER: i64 = 64 << 20;

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_I18NSTRING: u32 = 9;

/// What was read: the packages (sorted), and why the list may be short.
pub struct RpmList {
    pub packages: Vec<Package>,
    pub note: Option<String>,
}

/// The packages of the rpm database at `rel` beneath `root`.
pub fn read(root: &Root, rel: &[u8]) -> Result<RpmList, String> {
    let fd = root
        .open_regular(rel, rustix::fs::OFlags::RDONLY)
        .map_err(|e| format!("the rpm database could not be opened: {e}"))?;
    let uri = format!("file:/proc/self/fd/{}?immutable=1", fd.as_raw_fd());
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags).map_err(unreadable)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(unreadable)?;
    conn.execute_batch("PRAGMA trusted_schema = OFF; PRAGMA cell_size_check = ON;")
        .map_err(unreadable)?;
    let mut list = rows(&conn).map_err(unreadable)?;
    if wal_pending(root, rel) {
        list.note = Some(
            "the rpm database has changes not yet merged from its write-ahead log \
             (rpm was interrupted on the node); the list may miss the latest transaction"
                .into(),
        );
    }
    list.packages
        .sort_by(|a, b| (&a.name, &a.version, &a.arch).cmp(&(&b.name, &b.version, &b.arch)));
    Ok(list)
}

fn unreadable(e: rusqlite::Error) -> String {
    format!("the rpm database could not be read: {e}")
}

fn rows(conn: &Connection) -> rusqlite::Result<RpmList> {
    let mut stmt = conn
        .prepare("SELECT CASE WHEN length(blob) <= ?1 THEN blob END FROM Packages ORDER BY hnum")?;
    let mut rows = stmt.query([MAX_HEADER])?;
    let (mut packages, mut bad, mut more) = (Vec::new(), 0u64, false);
    while let Some(row) = rows.next()? {
        if packages.len() >= MAX_PACKAGES {
            more = true;
            break;
        }
        let blob: Option<Vec<u8>> = row.get(0).unwrap_or(None);
        match blob.as_deref().and_then(package) {
            Some(p) => packages.push(p),
            None => bad += 1,
        }
    }
    let note = match (bad, more) {
        (0, false) => None,
        (_, true) => Some(format!("only the first {MAX_PACKAGES} packages are listed")),
        (n, _) => Some(format!(
            "{n} entries of the rpm database are not valid package headers and are not listed"
        )),
    };
    Ok(RpmList { packages, note })
}

/// A write-ahead log beside the database with content in it.
fn wal_pending(root: &Root, rel: &[u8]) -> bool {
    regular_size(root, &[rel, b"-wal"].concat()).is_some_and(|n| n > 0)
}

/// Name, `[epoch:]version-release` and arch of one header; None when it is
/// not a well-formed header or has no name or version.
pub fn package(blob: &[u8]) -> Option<Package> {
    let h = Header::parse(blob)?;
    let name = h.string(TAG_NAME)?;
    let version = h.string(TAG_VERSION)?;
    let release = h.string(TAG_RELEASE).unwrap_or_default();
    let mut full = match h.int32(TAG_EPOCH) {
        Some(e) => format!("{e}:{version}"),
        None => version,
    };
    if !release.is_empty() {
        full = format!("{full}-{release}");
    }
    Some(Package {
        name,
        version: full,
        arch: h.string(TAG_ARCH).unwrap_or_else(|| "(none)".into()),
    })
}

/// An rpm header's index and data store, bounds-checked once.
struct Header<'a> {
    index: &'a [u8],
    data: &'a [u8],
}

impl<'a> Header<'a> {
    fn parse(blob: &'a [u8]) -> Option<Header<'a>> {
        // a header as it is in a package file starts with its magic
        let b = match blob.strip_prefix(&[0x8e, 0xad, 0xe8][..]) {
            Some(_) => blob.get(8..)?,
            None => blob,
        };
        let il = be32(b, 0)? as usize;
        let dl = be32(b, 4)? as usize;
        let index_end = il.checked_mul(16)?.checked_add(8)?;
        Some(Header {
            index: b.get(8..index_end)?,
            data: b.get(index_end..index_end.checked_add(dl)?)?,
        })
    }

    /// The first entry with `tag`: (type, offset).
    fn entry(&self, tag: u32) -> Option<(u32, usize)> {
        self.index.chunks_exact(16).find_map(|e| {
            (be32(e, 0)? == tag).then(|| Some((be32(e, 4)?, be32(e, 8)? as usize)))?
        })
    }

    fn string(&self, tag: u32) -> Option<String> {
        let (ty, off) = self.entry(tag)?;
        if ty != TYPE_STRING && ty != TYPE_I18NSTRING {
            return None;
        }
        let rest = self.data.get(off..)?;
        let end = rest.iter().position(|&c| c == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn int32(&self, tag: u32) -> Option<u32> {
        let (ty, off) = self.entry(tag)?;
        (ty == TYPE_INT32).then(|| be32(self.data, off))?
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(s.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with `entries` (tag, type, value): strings NUL-terminated,
    /// numbers big-endian, in the order given.
    fn header(entries: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let (mut index, mut data) = (Vec::new(), Vec::<u8>::new());
        for (tag, ty, v) in entries {
            for n in [*tag, *ty, data.len() as u32, 1] {
                index.extend(n.to_be_bytes());
            }
            data.extend(*v);
        }
        let mut h = (entries.len() as u32).to_be_bytes().to_vec();
        h.extend((data.len() as u32).to_be_bytes());
        h.extend(index);
        h.extend(data);
        h
    }

    #[test]
    fn name_epoch_version_release_arch() {
        let h = header(&[
            (TAG_NAME, TYPE_STRING, b"bash\0"),
            (TAG_VERSION, TYPE_STRING, b"5.1.8\0"),
            (TAG_RELEASE, TYPE_STRING, b"9.el9\0"),
            (TAG_EPOCH, TYPE_INT32, &2u32.to_be_bytes()),
            (TAG_ARCH, TYPE_STRING, b"x86_64\0"),
        ]);
        let p = package(&h).unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.arch.as_str()),
            ("bash", "2:5.1.8-9.el9", "x86_64")
        );
        // with the magic of a package file's header
        let mut file = vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
        file.extend(&h);
        assert_eq!(package(&file), Some(p));
        // gpg-pubkey entries have no arch
        let k = header(&[
            (TAG_NAME, TYPE_STRING, b"gpg-pubkey\0"),
            (TAG_VERSION, TYPE_STRING, b"fd431d51\0"),
        ]);
        assert_eq!(package(&k).unwrap().arch, "(none)");
    }

    #[test]
    fn hostile_headers_are_refused_not_trusted() {
        let good = header(&[
            (TAG_NAME, TYPE_STRING, b"a\0"),
            (TAG_VERSION, TYPE_STRING, b"1\0"),
        ]);
        assert!(package(&good).is_some());
        // every truncation, and lengths that point past the blob
        for n in 0..good.len() {
            assert_eq!(package(&good[..n]), None, "truncated to {n}");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(package(&huge), None);
        let mut far = good.clone();
        far[8 + 8..8 + 12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(package(&far), None, "offset past the store");
        // a string without its NUL, a number where a string belongs
        let open = header(&[
            (TAG_NAME, TYPE_STRING, b"a"),
            (TAG_VERSION, TYPE_STRING, b"1"),
        ]);
        assert_eq!(package(&open), None);
        let typed = header(&[
            (TAG_NAME, TYPE_INT32, b"abcd"),
            (TAG_VERSION, TYPE_STRING, b"1\0"),
        ]);
        assert_eq!(package(&typed), None);
        assert_eq!(package(b""), None);
    }
}
