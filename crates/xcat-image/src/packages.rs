//! The software of a captured image: its package manager's list of installed
//! packages and the kernels it holds.
//!
//! The tree comes from a node we do not trust, so everything is read through
//! [`Root`] (no symlink followed, only regular files opened) and bounded: a
//! dpkg status file larger than [`STATUS_MAX`] is not read, and at most
//! [`MAX_KERNELS`] kernel versions are kept. dpkg's status file is plain text
//! and parsed here; rpm's SQLite database is read by [`crate::rpmdb`]; its
//! older formats (Berkeley DB before rpm 4.16, SUSE's ndb) are only noticed.

use crate::beneath::Root;
use crate::util::escape_bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Largest dpkg status file read (a desktop install is a few MiB).
pub const STATUS_MAX: u64 = 64 * 1024 * 1024;
/// Kernel versions kept.
pub const MAX_KERNELS: usize = 1000;

const DPKG_STATUS: &[u8] = b"var/lib/dpkg/status";
/// Where rpm keeps its SQLite database: the classic place and the one of
/// newer distributions (where `/var/lib/rpm` is a symlink to it).
const RPM_SQLITE: &[&[u8]] = &[
    b"var/lib/rpm/rpmdb.sqlite",
    b"usr/lib/sysimage/rpm/rpmdb.sqlite",
];
/// rpm's older databases: Berkeley DB, and SUSE's ndb.
const RPM_OTHER: &[&[u8]] = &[
    b"var/lib/rpm/Packages",
    b"usr/lib/sysimage/rpm/Packages",
    b"var/lib/rpm/Packages.db",
    b"usr/lib/sysimage/rpm/Packages.db",
];

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// What [`list`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PackageReport {
    /// `dpkg`, `rpm` or `none`.
    pub manager: String,
    /// Installed packages, by name.
    pub packages: Vec<Package>,
    pub count: u64,
    /// Kernel versions: the directories of `/lib/modules` and
    /// `/usr/lib/modules`, and the `/boot/vmlinuz-<version>` files.
    pub kernels: Vec<String>,
    /// Why the list is incomplete or missing.
    pub note: Option<String>,
}

/// Lists the packages and kernels of the image at `root`.
pub fn list(root: &Root) -> PackageReport {
    list_bounded(root, STATUS_MAX)
}

fn list_bounded(root: &Root, status_max: u64) -> PackageReport {
    let mut r = PackageReport {
        manager: "none".into(),
        kernels: kernels(root),
        ..PackageReport::default()
    };
    if regular_size(root, DPKG_STATUS).is_some() {
        r.manager = "dpkg".into();
        match read_status(root, status_max) {
            Ok(text) => r.packages = parse_dpkg_status(&text),
            Err(why) => r.note = Some(why),
        }
    } else if let Some(db) = RPM_SQLITE.iter().find(|p| regular_size(root, p).is_some()) {
        r.manager = "rpm".into();
        match crate::rpmdb::read(root, db) {
            Ok(l) => (r.packages, r.note) = (l.packages, l.note),
            Err(why) => r.note = Some(why),
        }
    } else if RPM_OTHER.iter().any(|p| regular_size(root, p).is_some()) {
        r.manager = "rpm".into();
        r.note = Some(
            "the rpm database is in Berkeley DB or ndb format (rpm before 4.16, e.g. RHEL 8), \
             which is not read on the server; run `rpm -qa` on the node for the list"
                .into(),
        );
    }
    r.count = r.packages.len() as u64;
    r
}

/// The size of `rel` when it is a regular file (not a symlink to one).
pub(crate) fn regular_size(root: &Root, rel: &[u8]) -> Option<u64> {
    let st = root.lstat(rel).ok()??;
    (st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(st.st_size as u64)
}

fn read_status(root: &Root, max: u64) -> Result<Vec<u8>, String> {
    let too_large = || format!("the dpkg status file is larger than {max} bytes and was not read");
    if regular_size(root, DPKG_STATUS).is_some_and(|s| s > max) {
        return Err(too_large());
    }
    root.read_file(DPKG_STATUS, max).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            too_large()
        } else {
            format!("the dpkg status file could not be read: {e}")
        }
    })
}

/// The installed packages of a dpkg status file (stanzas of `Field: value`
/// lines separated by blank lines; lines starting with a space or tab continue
/// the previous field), sorted by name.
pub fn parse_dpkg_status(text: &[u8]) -> Vec<Package> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            out.extend(std::mem::take(&mut cur).installed());
        } else if !matches!(line[0], b' ' | b'\t') {
            cur.field(line);
        }
    }
    out.extend(cur.installed());
    out.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    out
}

#[derive(Default)]
struct Stanza {
    package: Option<String>,
    version: String,
    arch: String,
    installed: bool,
}

impl Stanza {
    fn field(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned();
        match &line[..colon] {
            b"Package" => self.package = Some(value),
            b"Version" => self.version = value,
            b"Architecture" => self.arch = value,
            b"Status" => self.installed = value.ends_with(" installed"),
            _ => {}
        }
    }

    fn installed(self) -> Option<Package> {
        let name = self.package.filter(|_| self.installed)?;
        Some(Package {
            name,
            version: self.version,
            arch: self.arch,
        })
    }
}

/// The kernel versions of the image, sorted.
fn kernels(root: &Root) -> Vec<String> {
    let mut out = BTreeSet::new();
    for dir in [&b"lib/modules"[..], b"usr/lib/modules"] {
        for name in root.list_dir(dir).unwrap_or_default() {
            let rel = [dir, b"/", &name].concat();
            let is_dir = root
                .lstat(&rel)
                .ok()
                .flatten()
                .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
            if is_dir && out.len() < MAX_KERNELS {
                out.insert(escape_bytes(&name));
            }
        }
    }
    for name in root.list_dir(b"boot").unwrap_or_default() {
        let Some(version) = name.strip_prefix(b"vmlinuz-") else {
            continue;
        };
        let rel = [&b"boot/"[..], &name].concat();
        if !version.is_empty() && regular_size(root, &rel).is_some() && out.len() < MAX_KERNELS {
            out.insert(escape_bytes(version));
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn put(root: &Path, rel: &str, content: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    const STATUS: &str = "Package: zlib1g\nStatus: install ok installed\nPriority: optional\n\
        Architecture: amd64\nVersion: 1:1.2.13.dfsg-1\nDescription: compression library\n \
        zlib is a library implementing the deflate compression method\n .\n \
        Version: 9.9 (a continuation line, not a field)\n\n\
        Package: oldpkg\nStatus: deinstall ok config-files\nArchitecture: all\nVersion: 0.1\n\n\n\
        Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b2\n\
        Description: GNU Bourne Again SHell\n multi-line";

    #[test]
    fn dpkg_installed_packages() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "var/lib/dpkg/status", STATUS.as_bytes());
        let r = list(&Root::open(d.path()).unwrap());
        let p = |name: &str, version: &str| Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
        };
        assert_eq!(r.manager, "dpkg");
        assert_eq!(
            r.packages,
            vec![p("bash", "5.2.15-2+b2"), p("zlib1g", "1:1.2.13.dfsg-1")]
        );
        assert_eq!((r.count, r.note), (2, None));
    }

    #[test]
    fn crlf_and_held_packages() {
        let text = b"Package: a\r\nStatus: hold ok installed\r\nVersion: 1\r\n\r\n\
            Package: b\nStatus: install ok half-installed\nVersion: 2\n";
        let got = parse_dpkg_status(text);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].name.as_str(), got[0].version.as_str()), ("a", "1"));
        assert!(parse_dpkg_status(b"").is_empty());
        assert!(parse_dpkg_status(b"\xff\xfe: \x00\n \n:\n").is_empty());
    }

    #[test]
    fn oversized_status_is_noted() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "var/lib/dpkg/status", STATUS.as_bytes());
        let root = Root::open(d.path()).unwrap();
        let r = list_bounded(&root, 100);
        assert_eq!((r.manager.as_str(), r.count), ("dpkg", 0));
        assert!(r.note.unwrap().contains("larger than 100 bytes"));
        // a sparse file beyond the real bound is refused without being read
        let f = std::fs::File::create(d.path().join("var/lib/dpkg/status")).unwrap();
        f.set_len(STATUS_MAX + 1).unwrap();
        let r = list(&root);
        assert!(r.packages.is_empty() && r.note.is_some(), "{r:?}");
    }

    #[test]
    fn kernels_and_no_database() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("lib/modules/6.1.0-13-amd64")).unwrap();
        std::fs::create_dir_all(p.join("usr/lib/modules/6.1.0-13-amd64")).unwrap();
        std::fs::create_dir_all(p.join("usr/lib/modules/5.10.0-28-amd64")).unwrap();
        put(p, "lib/modules/not-a-dir", b"");
        put(p, "boot/vmlinuz-6.5.0-1-amd64", b"kernel");
        std::os::unix::fs::symlink("vmlinuz-6.5.0-1-amd64", p.join("boot/vmlinuz")).unwrap();
        std::os::unix::fs::symlink("/tmp", p.join("boot/vmlinuz-linked")).unwrap();
        let r = list(&Root::open(p).unwrap());
        assert_eq!(r.manager, "none");
        assert_eq!((r.count, r.note), (0, None));
        assert_eq!(
            r.kernels,
            vec!["5.10.0-28-amd64", "6.1.0-13-amd64", "6.5.0-1-amd64"]
        );
    }

    #[test]
    fn old_rpm_databases_are_noted_a_broken_one_named() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "var/lib/rpm/Packages", b"\0\0\0\0\x61\x15\x06\0");
        let r = list(&Root::open(d.path()).unwrap());
        assert_eq!(r.manager, "rpm");
        assert!(r.packages.is_empty());
        assert!(r.note.unwrap().contains("Berkeley DB"));
        put(
            d.path(),
            "usr/lib/sysimage/rpm/rpmdb.sqlite",
            b"SQLite format 3\0garbage",
        );
        let r = list(&Root::open(d.path()).unwrap());
        assert_eq!((r.manager.as_str(), r.count), ("rpm", 0));
        assert!(
            r.note
                .as_deref()
                .unwrap_or_default()
                .contains("could not be read"),
            "{r:?}"
        );
        // a symlinked status file is not the image's database
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        std::os::unix::fs::symlink("/var/lib/dpkg/status", d.path().join("var/lib/dpkg/status"))
            .unwrap();
        assert_eq!(list(&Root::open(d.path()).unwrap()).manager, "none");
    }
}
