//! Copying a file or a tree into a tmpfs or an NFS directory, as `cp -a`
//! would for what a statelite path holds: contents, modes, owners and
//! symlinks (not followed). What is already at the destination is merged
//! into: directories stay, files are replaced.

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::Path;

/// Copies `from` (a file, a directory or a symlink) to `to`, creating `to`'s
/// missing parents as plain 0755 directories.
pub fn copy_all(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    copy_one(from, to)
}

fn copy_one(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        match fs::symlink_metadata(to) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                fs::remove_file(to)?;
                fs::create_dir(to)?;
            }
            Err(_) => fs::create_dir(to)?,
        }
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_one(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        remove_non_dir(to)?;
        if ft.is_symlink() {
            symlink(fs::read_link(from)?, to)?;
        } else if ft.is_file() {
            fs::copy(from, to)?;
        } else {
            // devices, FIFOs and sockets have no place in a statelite path
            return Ok(());
        }
    }
    lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    if !ft.is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

fn remove_non_dir(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Appends the contents of `from` to the file `to` (created if missing).
pub fn append(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut src = fs::File::open(from)?;
    let mut dst = fs::OpenOptions::new().create(true).append(true).open(to)?;
    io::copy(&mut src, &mut dst).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_merge_and_keep_modes_and_links() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b/deep"));
        fs::create_dir_all(a.join("sub")).unwrap();
        fs::write(a.join("sub/f"), "new").unwrap();
        fs::set_permissions(a.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        symlink("sub/f", a.join("l")).unwrap();
        fs::create_dir_all(b.join("sub")).unwrap();
        fs::write(b.join("sub/f"), "old").unwrap();
        fs::write(b.join("kept"), "kept").unwrap();
        copy_all(&a, &b).unwrap();
        assert_eq!(fs::read_to_string(b.join("sub/f")).unwrap(), "new");
        assert_eq!(fs::metadata(b.join("sub/f")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_link(b.join("l")).unwrap(), Path::new("sub/f"));
        assert_eq!(fs::read_to_string(b.join("kept")).unwrap(), "kept");
        append(&a.join("sub/f"), &t.path().join("c/cat")).unwrap();
        append(&a.join("sub/f"), &t.path().join("c/cat")).unwrap();
        assert_eq!(
            fs::read_to_string(t.path().join("c/cat")).unwrap(),
            "newnew"
        );
    }
}
