//! Exclusion lists: where they are found, how they are read, and how they
//! become the node-side `find` expression.
//!
//! Lines are `find -path` globs relative to `/` (`./var/cache/*`). `#` starts
//! a comment, blank lines are skipped, `+PATTERN` re-includes paths under an
//! excluded tree, and `#INCLUDE:FILE#` reads another list in place.

use std::path::{Path, PathBuf};

use xcat_image::sys::Credentials;
use xcat_jobkit::client_file::read_capped;

/// Used when no exlist file applies.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "./tmp/*",
    "./proc/*",
    "./sys/*",
    "./dev/*",
    "./run/*",
    "./xcatpost/*",
    "./install/*",
];

/// The effective exclusion list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExList {
    pub exclude: Vec<String>,
    pub include: Vec<String>,
    /// Where it came from (None: the built-in default).
    pub source: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExListError {
    #[error("cannot read exclusion list {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Bad {
        path: PathBuf,
        line: usize,
        msg: String,
    },
}

impl ExList {
    pub fn builtin() -> ExList {
        ExList {
            exclude: DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect(),
            include: Vec::new(),
            source: None,
        }
    }

    /// Read a list file of the installation (and what it includes).
    pub fn read(path: &Path) -> Result<ExList, ExListError> {
        let mut list = ExList {
            source: Some(path.to_path_buf()),
            ..Default::default()
        };
        let mut left = MAX_TOTAL_BYTES;
        read_into(path, &mut list, 0, &mut left)?;
        Ok(list)
    }

    /// Read a list file a client named (`-x FILE`) with `requester`'s own
    /// rights, includes too: the daemon reads as root, the requester may not.
    pub fn read_as(path: &Path, requester: Credentials) -> Result<ExList, ExListError> {
        let p = path.to_path_buf();
        xcat_jobkit::client_file::as_user(requester, move || ExList::read(&p)).map_err(
            |source| ExListError::Read {
                path: path.to_path_buf(),
                source,
            },
        )?
    }
}

/// `rhels9.4` -> `rh`, `sles15.5` -> `sles`, `ubuntu22.04` -> `ubuntu`:
/// the leading letters of the os name, as xCAT names its per-distro directories.
pub fn distname(os: &str) -> String {
    let letters: String = os.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    if letters.starts_with("rhel") || letters.starts_with("rhels") {
        "rh".into()
    } else {
        letters
    }
}

/// Candidate files in lookup order.
pub fn candidates(
    install_dir: &Path,
    share_dir: &Path,
    os: &str,
    arch: &str,
    profile: &str,
) -> Vec<PathBuf> {
    let dist = distname(os);
    let dirs = [
        install_dir.join("custom/netboot").join(&dist),
        share_dir.join("netboot").join(&dist),
    ];
    let stems = [
        format!("{profile}.{os}.{arch}"),
        format!("{profile}.{os}"),
        format!("{profile}.{arch}"),
        profile.to_string(),
    ];
    let mut v = Vec::new();
    for d in &dirs {
        for s in &stems {
            for suffix in ["imgcapture.exlist", "capimage.exlist"] {
                v.push(d.join(format!("{s}.{suffix}")));
            }
        }
    }
    v
}

/// The first readable candidate, or the built-in list.
pub fn find(
    install_dir: &Path,
    share_dir: &Path,
    os: &str,
    arch: &str,
    profile: &str,
) -> Result<ExList, ExListError> {
    for c in candidates(install_dir, share_dir, os, arch, profile) {
        if std::fs::File::open(&c).is_ok() {
            return ExList::read(&c);
        }
    }
    Ok(ExList::builtin())
}

const MAX_INCLUDE_DEPTH: usize = 8;
/// Largest list file; lists are a few hundred bytes.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most bytes read for one list, its includes together (a list including
/// the same file many times).
const MAX_TOTAL_BYTES: u64 = 4 << 20;

fn normalize(pat: &str) -> String {
    // `find -path` never sees a trailing slash: `./var/cache/` means `./var/cache`.
    let p = pat.trim();
    let p = if p.len() > 1 {
        p.trim_end_matches('/')
    } else {
        p
    };
    if let Some(rest) = p.strip_prefix("./") {
        format!("./{rest}")
    } else if let Some(rest) = p.strip_prefix('/') {
        format!("./{rest}")
    } else if p == "." {
        ".".into()
    } else {
        format!("./{p}")
    }
}

fn read_into(
    path: &Path,
    list: &mut ExList,
    depth: usize,
    left: &mut u64,
) -> Result<(), ExListError> {
    let read_err = |source| ExListError::Read {
        path: path.to_path_buf(),
        source,
    };
    let text = read_capped(path, MAX_FILE_BYTES.min(*left)).map_err(read_err)?;
    *left -= text.len() as u64;
    let text = String::from_utf8_lossy(&text);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let bad = |msg: String| ExListError::Bad {
            path: path.to_path_buf(),
            line: i + 1,
            msg,
        };
        if let Some(rest) = line.strip_prefix("#INCLUDE:") {
            let file = rest.strip_suffix('#').unwrap_or(rest).trim();
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(bad(format!(
                    "#INCLUDE nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)"
                )));
            }
            let inc = Path::new(file);
            let inc = if inc.is_absolute() {
                inc.to_path_buf()
            } else {
                path.parent().unwrap_or(Path::new("/")).join(inc)
            };
            read_into(&inc, list, depth + 1, left)?;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('\0') {
            return Err(bad("NUL byte in pattern".into()));
        }
        // What is echoed (`--dry-run`, `-V`) must be a list, not any file:
        // the message names the line, never its content.
        let pattern = line.strip_prefix('+').unwrap_or(line);
        if !(pattern.starts_with('/') || pattern.starts_with("./") || pattern == ".")
            || line.chars().any(char::is_control)
        {
            return Err(bad(
                "not an exclusion pattern (patterns start with ./ or /): is this an exclusion list?"
                    .into(),
            ));
        }
        if let Some(inc) = line.strip_prefix('+') {
            list.include.push(normalize(inc));
        } else {
            list.exclude.push(normalize(line));
        }
    }
    Ok(())
}

/// Escape glob metacharacters so a literal path (a mount point) can be used
/// in a `find -path` pattern.
pub fn glob_escape(path: &str) -> String {
    let mut s = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distnames_follow_xcat() {
        assert_eq!(distname("rhels9.4"), "rh");
        assert_eq!(distname("sles15.5"), "sles");
        assert_eq!(distname("ubuntu22.04"), "ubuntu");
        assert_eq!(distname("debian12"), "debian");
    }

    #[test]
    fn lookup_order_prefers_custom_and_specific_names() {
        let c = candidates(
            Path::new("/i"),
            Path::new("/s"),
            "rhels9.4",
            "x86_64",
            "compute",
        );
        assert_eq!(
            c[0],
            Path::new("/i/custom/netboot/rh/compute.rhels9.4.x86_64.imgcapture.exlist")
        );
        assert_eq!(
            c[1],
            Path::new("/i/custom/netboot/rh/compute.rhels9.4.x86_64.capimage.exlist")
        );
        assert_eq!(
            c[2],
            Path::new("/i/custom/netboot/rh/compute.rhels9.4.imgcapture.exlist")
        );
        assert_eq!(
            c[6],
            Path::new("/i/custom/netboot/rh/compute.imgcapture.exlist")
        );
        assert_eq!(
            c[8],
            Path::new("/s/netboot/rh/compute.rhels9.4.x86_64.imgcapture.exlist")
        );
        assert_eq!(c.len(), 16);
    }

    #[test]
    fn files_with_includes_and_reincludes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("more.exlist"), "./var/log/*\n").unwrap();
        std::fs::write(
            d.path().join("main.exlist"),
            "# comment\n\n./var/cache/*\n/opt/big/\n+./var/cache/keep*\n#INCLUDE:more.exlist#\n",
        )
        .unwrap();
        let l = ExList::read(&d.path().join("main.exlist")).unwrap();
        assert_eq!(l.exclude, vec!["./var/cache/*", "./opt/big", "./var/log/*"]);
        assert_eq!(l.include, vec!["./var/cache/keep*"]);
        std::fs::write(d.path().join("loop.exlist"), "#INCLUDE:loop.exlist#\n").unwrap();
        assert!(ExList::read(&d.path().join("loop.exlist"))
            .unwrap_err()
            .to_string()
            .contains("deeper"));
        let found = find(d.path(), d.path(), "debian12", "x86_64", "nosuch").unwrap();
        assert_eq!(found, ExList::builtin());
    }

    #[test]
    fn a_file_that_is_not_a_list_is_refused_without_echoing_it() {
        let d = tempfile::tempdir().unwrap();
        let shadow = d.path().join("shadow");
        std::fs::write(&shadow, "root:$6$secret-hash:19000:0:99999:7:::\n").unwrap();
        let e = ExList::read(&shadow).unwrap_err().to_string();
        assert!(e.contains("shadow:1: not an exclusion pattern"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        for odd in ["/dev/zero", "/dev/null"] {
            let e = ExList::read(Path::new(odd)).unwrap_err().to_string();
            assert!(e.ends_with(": not a regular file"), "{e}");
        }
        let big = d.path().join("big.exlist");
        std::fs::write(&big, "./a\n".repeat(300_000)).unwrap();
        let e = ExList::read(&big).unwrap_err().to_string();
        assert!(e.ends_with(": larger than 1048576 bytes"), "{e}");
        // Including one file over and over meets the total ceiling.
        let part = d.path().join("part.exlist");
        std::fs::write(&part, "./a\n".repeat(200_000)).unwrap();
        let many = d.path().join("many.exlist");
        std::fs::write(&many, "#INCLUDE:part.exlist#\n".repeat(100)).unwrap();
        let e = ExList::read(&many).unwrap_err().to_string();
        assert!(e.contains("part.exlist: larger than"), "{e}");
    }

    #[test]
    #[ignore = "needs root: ./scripts/test-all runs it"]
    fn a_clients_list_is_read_with_the_requesters_rights() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let list = d.path().join("mine.exlist");
        std::fs::write(&list, "./var/cache/*\n#INCLUDE:/etc/shadow#\n").unwrap();
        let nobody = || xcat_jobkit::client_file::local_user(None);
        // The include names a file the requester may not read: refused as such.
        let e = ExList::read_as(&list, nobody()).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read exclusion list /etc/shadow: "),
            "{e}"
        );
        assert!(e.contains("ermission denied"), "{e}");
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = ExList::read_as(&list, nobody()).unwrap_err().to_string();
        assert!(
            e.contains("mine.exlist") && e.contains("ermission denied"),
            "{e}"
        );
        std::fs::write(&list, "./var/cache/*\n").unwrap();
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            ExList::read_as(&list, nobody()).unwrap().exclude,
            ["./var/cache/*"]
        );
    }

    #[test]
    fn glob_escaping() {
        assert_eq!(glob_escape("/mnt/a*b[1]"), "/mnt/a\\*b\\[1\\]");
    }
}
