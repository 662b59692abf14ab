//! Removing an image directory without ever leaving it.
//!
//! Deletion goes through `std::fs::remove_dir_all`, which walks by open
//! directory descriptors and never follows a symbolic link (a link is
//! unlinked itself, wherever it points), so a hostile tree cannot turn the
//! walk onto a host directory. What it does not guard against, checked
//! before: a filesystem mounted beneath the directory (it would be walked
//! into), a directory that is itself a symlink (its target would be
//! emptied), and a directory that holds the install, TFTP or state root.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use xcat_image::publish::ImageLock;

/// Why the directory is not removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("refusing to remove {}: {why}", .dir.display())]
    Refused { dir: PathBuf, why: String },
    #[error("{} is mounted beneath the image directory {}: unmount it first", .mount, .dir.display())]
    Mounted { dir: PathBuf, mount: String },
    #[error("cannot remove {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RemoveError + '_ {
    move |source| RemoveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn refused(dir: &Path, why: impl Into<String>) -> RemoveError {
    RemoveError::Refused {
        dir: dir.to_path_buf(),
        why: why.into(),
    }
}

/// Is `dir` one rmimage may empty? Ok(false) when it does not exist.
pub fn check_dir(dir: &Path, protected: &[PathBuf]) -> Result<bool, RemoveError> {
    if !dir.is_absolute()
        || dir
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(refused(
            dir,
            "the image directory must be an absolute path without . or ..",
        ));
    }
    if dir.parent().is_none() {
        return Err(refused(dir, "it is the root directory"));
    }
    if let Some(p) = protected.iter().find(|p| p.starts_with(dir)) {
        return Err(refused(dir, format!("it holds {}", p.display())));
    }
    let m = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(dir)(e)),
    };
    if m.file_type().is_symlink() {
        return Err(refused(
            dir,
            "it is a symbolic link (only a real directory is removed, so nothing outside it goes)",
        ));
    }
    if !m.is_dir() {
        return Err(refused(dir, "it is not a directory"));
    }
    let real = fs::canonicalize(dir).map_err(io_err(dir))?;
    let mounts = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err(Path::new("/proc/self/mountinfo")))?;
    if let Some(mount) = mount_beneath(&mounts, &real) {
        return Err(RemoveError::Mounted {
            dir: dir.to_path_buf(),
            mount,
        });
    }
    Ok(true)
}

/// The first mount point of `mountinfo` at or beneath `dir` (compared in
/// the file's own escaped form: `\040` for a space, ...).
fn mount_beneath(mountinfo: &str, dir: &Path) -> Option<String> {
    let escaped: String = dir
        .to_string_lossy()
        .chars()
        .map(|c| match c {
            ' ' => "\\040".to_string(),
            '\t' => "\\011".to_string(),
            '\n' => "\\012".to_string(),
            '\\' => "\\134".to_string(),
            c => c.to_string(),
        })
        .collect();
    let prefix = format!("{escaped}/");
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .find(|mp| *mp == escaped || mp.starts_with(&prefix))
        .map(str::to_string)
}

/// Remove everything in `dir`, then its lock file and `dir` itself; the
/// lock is held until the rest is gone. Returns a line per entry removed.
pub fn image_dir(dir: &Path, lock: ImageLock) -> Result<Vec<String>, RemoveError> {
    let mut lines = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    names.sort();
    for p in names.iter().filter(|p| p.as_path() != lock.path()) {
        let is_dir = fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        tree(p)?;
        let what = if is_dir { "directory" } else { "file" };
        lines.push(format!("Removing {what} {}", p.display()));
    }
    let lock_path = lock.path().to_path_buf();
    let _ = fs::remove_file(&lock_path);
    drop(lock);
    match fs::remove_dir(dir) {
        Ok(()) => lines.push(format!("Removing directory {}", dir.display())),
        // A job that started after the lock went has made it anew: its files stay.
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
        Err(e) => return Err(io_err(dir)(e)),
    }
    Ok(lines)
}

/// Remove `p` (a tree, a file, or a symlink itself). Ok(false) when absent.
pub fn tree(p: &Path) -> Result<bool, RemoveError> {
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(p)(e)),
    };
    if m.is_dir() {
        fs::remove_dir_all(p).map_err(io_err(p))?;
    } else {
        fs::remove_file(p).map_err(io_err(p))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_beneath() {
        let info = "36 35 98:0 / /install/netboot/img\\040a/rootimg/dev rw - devtmpfs udev rw\n\
                    37 35 98:0 / /install/netboot/imgb rw - ext4 /dev/sda1 rw\n";
        let found = mount_beneath(info, Path::new("/install/netboot/img a"));
        assert_eq!(
            found.as_deref(),
            Some("/install/netboot/img\\040a/rootimg/dev")
        );
        assert_eq!(mount_beneath(info, Path::new("/install/netboot/img")), None);
        assert!(mount_beneath(info, Path::new("/install/netboot/imgb")).is_some());
    }

    #[test]
    fn refusals() {
        let t = tempfile::tempdir().unwrap();
        let inst = t.path().join("install");
        fs::create_dir(&inst).unwrap();
        let protected = [inst.clone()];
        for bad in [Path::new("relative/dir"), Path::new("/"), t.path(), &inst] {
            assert!(check_dir(bad, &protected).is_err(), "{}", bad.display());
        }
        assert!(check_dir(&inst.join("netboot/../x"), &protected).is_err());
        assert!(!check_dir(&inst.join("missing"), &protected).unwrap());
        let link = inst.join("link");
        std::os::unix::fs::symlink(t.path(), &link).unwrap();
        assert!(check_dir(&link, &protected)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        let real = inst.join("img");
        fs::create_dir(&real).unwrap();
        assert!(check_dir(&real, &protected).unwrap());
    }
}
