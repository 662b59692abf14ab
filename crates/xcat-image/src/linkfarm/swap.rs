//! A liteimg'd tree as it was before liteimg, for as long as packimage packs
//! it: the archive of a statelite image's tree is a plain stateless image,
//! so each link entry's original is put back at its path while the archive
//! is written, and the link farm is made again afterwards, also when the
//! pack fails or is cancelled (xCAT's packimage swaps the same way).

use std::io;
use std::path::Path;

use super::{in_place, link, saved, unlink};
use crate::beneath::Root;

/// An entry whose link farm could not be swapped back or made again.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FarmError {
    /// The entry's path (the tree's, or the record's, when those failed).
    pub path: String,
    #[source]
    pub source: io::Error,
}

fn at(path: &str) -> impl FnOnce(io::Error) -> FarmError {
    let path = path.to_string();
    move |source| FarmError { path, source }
}

/// A tree whose link entries are swapped back to their originals.
/// [`Swapped::restore`], or dropping it, makes their link farm again.
#[derive(Debug)]
pub struct Swapped {
    root: Root,
    /// The entries swapped back (the last one perhaps half-way), in order.
    paths: Vec<String>,
}

/// Swaps back every link entry of the tree's `litefile.save` whose farm is
/// whole ([`in_place`]): both links go and the original comes back from
/// `.default`. Entries beneath a link directory come back with it; an
/// entry whose farm is not liteimg's as it made it is left as it is. None
/// when no liteimg ran on the tree. A failure half-way makes the farm of
/// the entries already swapped again before it returns.
pub fn swap_back(rootimg: &Path) -> Result<Option<Swapped>, FarmError> {
    let root = Root::open(rootimg).map_err(at(&rootimg.display().to_string()))?;
    let Some(entries) = saved::read(&root).map_err(at(saved::SAVED))? else {
        return Ok(None);
    };
    let mut swapped = Swapped {
        root,
        paths: Vec::new(),
    };
    for e in entries
        .iter()
        .filter(|e| e.is_link() && !e.beneath_a_link(&entries))
    {
        if !in_place(&swapped.root, &e.path).map_err(at(&e.path))? {
            continue;
        }
        // Recorded before it starts: link() makes a half-undone farm whole.
        swapped.paths.push(e.path.clone());
        unlink(&swapped.root, &e.path).map_err(at(&e.path))?;
    }
    Ok(Some(swapped))
}

impl Swapped {
    /// The entries swapped back.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// Makes the link farm of every swapped entry again, as liteimg left it.
    /// Every entry is tried; the first failure is returned.
    pub fn restore(mut self) -> Result<(), FarmError> {
        self.relink()
    }

    fn relink(&mut self) -> Result<(), FarmError> {
        let mut first = None;
        for path in std::mem::take(&mut self.paths) {
            if let Err(source) = link(&self.root, &path) {
                first.get_or_insert(FarmError { path, source });
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Swapped {
    /// A pack that failed, was cancelled or panicked leaves the tree as
    /// liteimg made it all the same.
    fn drop(&mut self) {
        if let Err(e) = self.relink() {
            tracing::warn!(
                "the statelite link farm of {} is not whole again: {e}; run liteimg on the image",
                self.root.path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::PathBuf;

    /// Every entry beneath `dir`: path, type, link target, mode.
    fn listing(dir: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let target = fs::read_link(&p).unwrap_or_default();
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                let kind = format!("{:?}", m.file_type());
                let mode = m.permissions().mode() & 0o7777;
                out.push(format!("{rel} {kind} {} {mode:o}", target.display()));
                if m.is_dir() {
                    walk(base, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    /// A tree liteimg made: `/etc/adjtime` and `/etc/ssh/` linked (with
    /// `/etc/ssh/sshd_config` beneath the latter), `/etc/mtab` left to the
    /// kernel, `/var/` not a link entry.
    fn liteimged() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().to_path_buf();
        fs::create_dir_all(p.join("etc/ssh")).unwrap();
        fs::create_dir_all(p.join("var/log")).unwrap();
        fs::write(p.join("etc/adjtime"), "0.0 0 0.0\n").unwrap();
        fs::set_permissions(p.join("etc/adjtime"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(p.join("etc/ssh/sshd_config"), "Port 22\n").unwrap();
        symlink("../proc/self/mounts", p.join("etc/mtab")).unwrap();
        let root = Root::open(&p).unwrap();
        for path in ["/etc/adjtime", "/etc/ssh/", "/etc/mtab"] {
            link(&root, path).unwrap();
        }
        let lines: Vec<String> = [
            "link /etc/adjtime",
            "link /etc/mtab",
            "link /etc/ssh/",
            "link /etc/ssh/sshd_config",
            "tmpfs /var/",
        ]
        .iter()
        .map(|l| format!("img: {l}"))
        .collect();
        saved::write(&root, &lines).unwrap();
        (t, p)
    }

    #[test]
    fn originals_are_back_while_swapped_and_the_farm_after() {
        let (_t, p) = liteimged();
        let before = listing(&p);
        let s = swap_back(&p).unwrap().expect("a liteimg'd tree");
        assert_eq!(s.paths(), ["/etc/adjtime", "/etc/ssh/"]);
        assert!(!fs::symlink_metadata(p.join("etc/ssh"))
            .unwrap()
            .is_symlink());
        for (path, content) in [
            ("etc/adjtime", "0.0 0 0.0\n"),
            ("etc/ssh/sshd_config", "Port 22\n"),
        ] {
            let m = fs::symlink_metadata(p.join(path)).unwrap();
            assert!(m.is_file(), "{path} is not the original file");
            assert_eq!(fs::read_to_string(p.join(path)).unwrap(), content);
        }
        assert_eq!(
            fs::read_link(p.join("etc/mtab")).unwrap(),
            Path::new("../proc/self/mounts")
        );
        s.restore().unwrap();
        assert_eq!(listing(&p), before);
    }

    #[test]
    fn dropping_it_makes_the_farm_again() {
        let (_t, p) = liteimged();
        let before = listing(&p);
        let s = swap_back(&p).unwrap().unwrap();
        assert_ne!(listing(&p), before);
        drop(s);
        assert_eq!(listing(&p), before);
    }

    #[test]
    fn a_tree_liteimg_never_touched_is_none() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join(".default")).unwrap();
        assert!(swap_back(t.path()).unwrap().is_none());
    }

    #[test]
    fn a_failure_half_way_puts_back_what_was_swapped() {
        let (_t, p) = liteimged();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), p.join("srv")).unwrap();
        let root = Root::open(&p).unwrap();
        let mut lines: Vec<String> = ["/etc/adjtime", "/etc/ssh/", "/srv/data"]
            .iter()
            .map(|f| format!("img: link {f}"))
            .collect();
        saved::write(&root, &lines).unwrap();
        let before = listing(&p);
        let e = swap_back(&p).unwrap_err();
        assert_eq!(e.path, "/srv/data");
        assert_eq!(listing(&p), before);
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        // A link the admin replaced is not liteimg's any more: left alone.
        lines.pop();
        saved::write(&root, &lines).unwrap();
        fs::remove_file(p.join("etc/adjtime")).unwrap();
        fs::write(p.join("etc/adjtime"), "mine\n").unwrap();
        let s = swap_back(&p).unwrap().unwrap();
        assert_eq!(s.paths(), ["/etc/ssh/"]);
        assert_eq!(fs::read_to_string(p.join("etc/adjtime")).unwrap(), "mine\n");
    }
}
