//! Statelite's link farm (xCAT's `liteMe`/`recoverFiles`), made and unmade
//! beneath the tree's root only. liteimg makes it; packimage swaps it back
//! while it packs the plain image ([`swap`]).
//!
//! For a `link` entry (`link`, `link,ro`, `link,con`, `link,persistent`) at
//! `/a/b/f`: the original moves to `.default/a/b/f` (an empty file, or an
//! empty directory for a path ending in `/`, when the image has none);
//! `.statelite/tmpfs/a/b/f` becomes a relative link to it; `/a/b/f`
//! becomes a relative link to `.statelite/tmpfs/a/b/f`. At boot a tmpfs is
//! mounted on `.statelite` and filled from `.default`, so the path is
//! writable per node. Other options leave the tree alone: the boot mounts
//! over the path itself. What the last liteimg applied is kept in the tree
//! ([`saved`]).
//!
//! The tree came from a node and is hostile: every path is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from the root's
//! descriptor (`xcat-beneath`), so a symlink the node planted (`/etc ->
//! /`, `.default -> /root`) is refused, never followed, and nothing outside
//! the tree is touched.

pub mod saved;
pub mod swap;

use std::io;
use std::os::fd::OwnedFd;

use crate::beneath::{lstat_at, split_parent, Root};
use rustix::fs::{AtFlags, Mode, OFlags};

/// The directories liteimg owns at the top of the tree.
pub const DEFAULT_DIR: &str = ".default";
pub const STATE_DIR: &str = ".statelite";

/// What a statelite tree holds besides the image itself, each with
/// everything beneath it: liteimg's two directories, the backups xCAT's
/// liteimg keeps of changed entries, and the boot script it copies in. A
/// stateless archive of the tree leaves them out, as xCAT's packimage does.
pub const STATELITE_PATHS: &[&str] = &[
    STATE_DIR,
    DEFAULT_DIR,
    ".statebackup",
    "etc/init.d/statelite",
];

/// One litefile entry as liteimg works on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub options: String,
    pub path: String,
}

impl Entry {
    pub fn is_link(&self) -> bool {
        self.options.starts_with("link")
    }

    /// A path ending in `/` names a directory.
    pub fn is_dir(&self) -> bool {
        self.path.ends_with('/')
    }

    /// Whether `other` lies beneath this entry (a directory).
    pub fn holds(&self, other: &Entry) -> bool {
        self.is_dir() && other.path != self.path && other.path.starts_with(&self.path)
    }

    /// Whether a `link` directory of `all` holds this entry: it moves with
    /// that directory and has no links of its own.
    pub fn beneath_a_link(&self, all: &[Entry]) -> bool {
        all.iter().any(|p| p.is_link() && p.holds(self))
    }
}

/// The entries liteimg applies: `tmpfs,rw` (the default of an empty option)
/// becomes `link`, as xCAT has done since 2.5.
pub fn for_liteimg(entries: impl IntoIterator<Item = (String, String)>) -> Vec<Entry> {
    entries
        .into_iter()
        .map(|(path, options)| Entry {
            options: if options == "tmpfs,rw" {
                "link".into()
            } else {
                options
            },
            path,
        })
        .collect()
}

/// What [`link`] did for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linked {
    /// The link farm was made for it now.
    Made,
    /// It was already in place (an earlier liteimg).
    Already,
    /// `/etc/mtab` already links to the kernel's mount list.
    Mtab,
}

/// A table path as a path relative to the root: no leading or trailing `/`.
pub fn relative(path: &str) -> &str {
    path.trim_start_matches('/').trim_end_matches('/')
}

/// `../` once per directory above `rel`'s own directory.
fn up(rel: &str) -> String {
    "../".repeat(rel.matches('/').count())
}

/// The target `/<rel>` links to.
fn path_link(rel: &str) -> String {
    format!("{}{STATE_DIR}/tmpfs/{rel}", up(rel))
}

/// The target `.statelite/tmpfs/<rel>` links to (two levels more).
fn state_link(rel: &str) -> String {
    format!("../../{}{DEFAULT_DIR}/{rel}", up(rel))
}

fn join(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else {
        format!("{a}/{b}")
    }
}

fn dir_mode() -> Mode {
    Mode::from_raw_mode(0o755)
}

fn is_link(st: &rustix::fs::Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

fn link_target(dir: &OwnedFd, name: &str) -> io::Result<String> {
    let t = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(t.to_string_lossy().into_owned())
}

/// `rel`'s directory and its own name.
fn parent_and_name(rel: &str) -> (&str, &str) {
    let (parent, name) = split_parent(rel.as_bytes());
    (
        std::str::from_utf8(parent).unwrap_or(""),
        std::str::from_utf8(name).unwrap_or(""),
    )
}

/// The directory `rel`, or None when it is missing.
fn dir_if_there(root: &Root, rel: &str) -> io::Result<Option<OwnedFd>> {
    match root.open_dir(rel.as_bytes()) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `.statelite/tmpfs/<rel>`.
fn state_path(rel: &str) -> String {
    join(&format!("{STATE_DIR}/tmpfs"), rel)
}

/// Whether `rel` is a symlink to exactly `target` (false when a directory
/// on the way is missing).
fn links_to(root: &Root, rel: &str, target: &str) -> io::Result<bool> {
    let (parent, name) = parent_and_name(rel);
    let Some(dir) = dir_if_there(root, parent)? else {
        return Ok(false);
    };
    Ok(match lstat_at(&dir, name.as_bytes())? {
        Some(st) if is_link(&st) => link_target(&dir, name)? == target,
        _ => false,
    })
}

/// Whether the link farm of the entry at `path` is whole, as [`link`] made
/// it: both links with their targets, and the original in `.default`.
/// Anything else (the admin replaced a link, `/etc/mtab` left to the
/// kernel's mount list) is not liteimg's to swap.
pub fn in_place(root: &Root, path: &str) -> io::Result<bool> {
    let rel = relative(path);
    Ok(links_to(root, rel, &path_link(rel))?
        && links_to(root, &state_path(rel), &state_link(rel))?
        && root.lstat(join(DEFAULT_DIR, rel).as_bytes())?.is_some())
}

fn conflict(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, what)
}

/// Make the link farm for the entry at `path` (a directory when it ends in
/// `/`).
pub fn link(root: &Root, path: &str) -> io::Result<Linked> {
    let rel = relative(path);
    let (parent, name) = parent_and_name(rel);
    let (dir, _) = root.ensure_dir(parent.as_bytes(), dir_mode())?;
    let want = path_link(rel);
    let current = lstat_at(&dir, name.as_bytes())?;
    if current.as_ref().is_some_and(is_link) {
        let t = link_target(&dir, name)?;
        if t == want {
            return Ok(Linked::Already);
        }
        if rel == "etc/mtab" && (t.ends_with("proc/self/mounts") || t.ends_with("proc/mounts")) {
            return Ok(Linked::Mtab);
        }
    }
    let (defaults, _) = root.ensure_dir(join(DEFAULT_DIR, parent).as_bytes(), dir_mode())?;
    if lstat_at(&defaults, name.as_bytes())?.is_some() {
        if current.is_some() {
            return Err(conflict(format!(
                "both /{rel} and /{DEFAULT_DIR}/{rel} exist in the image; remove the one that is not the original and run liteimg again"
            )));
        }
    } else if current.is_some() {
        rustix::fs::renameat(&dir, name, &defaults, name)?;
    } else if path.ends_with('/') {
        rustix::fs::mkdirat(&defaults, name, dir_mode())?;
    } else {
        rustix::fs::openat(
            &defaults,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
    }
    let (state, _) = root.ensure_dir(state_path(parent).as_bytes(), dir_mode())?;
    replace_link(&state, name, &state_link(rel))?;
    rustix::fs::symlinkat(want.as_str(), &dir, name)?;
    Ok(Linked::Made)
}

/// `name` in `dir` as a symlink to `target`, whatever symlink was there.
fn replace_link(dir: &OwnedFd, name: &str, target: &str) -> io::Result<()> {
    match lstat_at(dir, name.as_bytes())? {
        Some(st) if is_link(&st) => rustix::fs::unlinkat(dir, name, AtFlags::empty())?,
        Some(_) => {
            return Err(conflict(format!(
                "{name} in {STATE_DIR}/tmpfs is not a link; remove {STATE_DIR} from the image and run liteimg again"
            )))
        }
        None => {}
    }
    rustix::fs::symlinkat(target, dir, name)?;
    Ok(())
}

/// Undo [`link`] for `path`: the link goes, the original comes back from
/// `.default`. Returns whether the original was restored.
pub fn unlink(root: &Root, path: &str) -> io::Result<bool> {
    let rel = relative(path);
    let (parent, name) = parent_and_name(rel);
    let Some(dir) = dir_if_there(root, parent)? else {
        return Ok(false);
    };
    match lstat_at(&dir, name.as_bytes())? {
        Some(st) if is_link(&st) && link_target(&dir, name)? == path_link(rel) => {
            rustix::fs::unlinkat(&dir, name, AtFlags::empty())?;
        }
        // Not our link (the admin replaced it): leave everything as it is.
        Some(_) => return Ok(false),
        None => {}
    }
    let state = state_path(rel);
    if root.lstat(state.as_bytes())?.is_some_and(|st| is_link(&st)) {
        root.unlink(state.as_bytes())?;
    }
    let Some(defaults) = dir_if_there(root, &join(DEFAULT_DIR, parent))? else {
        return Ok(false);
    };
    if lstat_at(&defaults, name.as_bytes())?.is_none() {
        return Ok(false);
    }
    rustix::fs::renameat(&defaults, name, &dir, name)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc/ssh")).unwrap();
        fs::write(t.path().join("etc/ssh/sshd_config"), "Port 22\n").unwrap();
        fs::write(t.path().join("etc/adjtime"), "0.0 0 0.0\n").unwrap();
        let r = Root::open(t.path()).unwrap();
        (t, r)
    }

    #[test]
    fn a_file_links_through_the_state_dir_to_its_default_and_back() {
        let (t, r) = tree();
        assert_eq!(link(&r, "/etc/adjtime").unwrap(), Linked::Made);
        let p = t.path();
        assert_eq!(
            fs::read_link(p.join("etc/adjtime")).unwrap(),
            std::path::Path::new("../.statelite/tmpfs/etc/adjtime")
        );
        assert_eq!(
            fs::read_link(p.join(".statelite/tmpfs/etc/adjtime")).unwrap(),
            std::path::Path::new("../../../.default/etc/adjtime")
        );
        // Through both links, from the image's own root: the original.
        assert_eq!(
            fs::read_to_string(p.join("etc/adjtime")).unwrap(),
            "0.0 0 0.0\n"
        );
        assert_eq!(link(&r, "/etc/adjtime").unwrap(), Linked::Already);
        assert!(unlink(&r, "/etc/adjtime").unwrap());
        assert!(!fs::symlink_metadata(p.join("etc/adjtime"))
            .unwrap()
            .is_symlink());
        assert_eq!(
            fs::read_to_string(p.join("etc/adjtime")).unwrap(),
            "0.0 0 0.0\n"
        );
        assert!(fs::symlink_metadata(p.join(".statelite/tmpfs/etc/adjtime")).is_err());
    }

    #[test]
    fn a_directory_moves_whole_and_a_missing_one_is_made_empty() {
        let (t, r) = tree();
        link(&r, "/etc/ssh/").unwrap();
        let p = t.path();
        assert_eq!(
            fs::read_to_string(p.join("etc/ssh/sshd_config")).unwrap(),
            "Port 22\n"
        );
        link(&r, "/var/lib/misc/").unwrap();
        assert!(p.join(".default/var/lib/misc").is_dir());
        assert!(
            p.join("var/lib/misc").is_dir(),
            "resolves to the empty default"
        );
        assert!(unlink(&r, "/etc/ssh/").unwrap());
        assert!(p.join("etc/ssh/sshd_config").is_file());
    }

    #[test]
    fn planted_links_are_refused_not_followed() {
        let (t, r) = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "x").unwrap();
        symlink(outside.path(), t.path().join(".default")).unwrap();
        assert!(link(&r, "/etc/adjtime").is_err());
        symlink(outside.path(), t.path().join("opt")).unwrap();
        assert!(link(&r, "/opt/secret").is_err());
        assert!(unlink(&r, "/opt/secret").is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
        assert_eq!(
            fs::read_to_string(outside.path().join("secret")).unwrap(),
            "x"
        );
    }

    #[test]
    fn tmpfs_rw_becomes_link() {
        let v = for_liteimg([("/etc/ssh/".to_string(), "tmpfs,rw".to_string())]);
        assert_eq!(
            v,
            vec![Entry {
                options: "link".into(),
                path: "/etc/ssh/".into()
            }]
        );
    }

    #[test]
    fn in_place_only_while_the_whole_farm_is_there() {
        let (t, r) = tree();
        assert!(!in_place(&r, "/etc/adjtime").unwrap());
        link(&r, "/etc/adjtime").unwrap();
        link(&r, "/etc/ssh/").unwrap();
        assert!(in_place(&r, "/etc/adjtime").unwrap() && in_place(&r, "/etc/ssh/").unwrap());
        fs::remove_file(t.path().join(".default/etc/adjtime")).unwrap();
        assert!(!in_place(&r, "/etc/adjtime").unwrap(), "no original");
        fs::remove_file(t.path().join(".statelite/tmpfs/etc/ssh")).unwrap();
        symlink("elsewhere", t.path().join(".statelite/tmpfs/etc/ssh")).unwrap();
        assert!(!in_place(&r, "/etc/ssh/").unwrap(), "not liteimg's link");
    }

    #[test]
    fn mtab_linked_to_the_mount_list_is_left_alone() {
        let (t, r) = tree();
        symlink("../proc/self/mounts", t.path().join("etc/mtab")).unwrap();
        assert_eq!(link(&r, "/etc/mtab").unwrap(), Linked::Mtab);
        assert!(!in_place(&r, "/etc/mtab").unwrap());
        assert_eq!(
            fs::read_link(t.path().join("etc/mtab")).unwrap(),
            std::path::Path::new("../proc/self/mounts")
        );
    }
}
