//! Exclusion lists: where they are found, how they are read, and how they
//! become the node-side `find` expression.
//!
//! Lines are `find -path` globs relative to `/` (`./var/cache/*`). `#` starts
//! a comment, blank lines are skipped, `+PATTERN` re-includes paths under an
//! excluded tree, and `#INCLUDE:FILE#` reads another list in place.

use std::path::{Path, PathBuf};

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

    /// Read a list file (and what it includes).
    pub fn read(path: &Path) -> Result<ExList, ExListError> {
        let mut list = ExList {
            source: Some(path.to_path_buf()),
            ..Default::default()
        };
        read_into(path, &mut list, 0)?;
        Ok(list)
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

fn read_into(path: &Path, list: &mut ExList, depth: usize) -> Result<(), ExListError> {
    let text = std::fs::read(path).map_err(|source| ExListError::Read {
        path: path.to_path_buf(),
        source,
    })?;
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
            read_into(&inc, list, depth + 1)?;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('\0') {
            return Err(bad("NUL byte in pattern".into()));
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
    fn glob_escaping() {
        assert_eq!(glob_escape("/mnt/a*b[1]"), "/mnt/a\\*b\\[1\\]");
    }
}
