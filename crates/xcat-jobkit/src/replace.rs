//! Replacing a small file whole: written under a temporary dot-name beside
//! it, then renamed over it. A reader (dnsmasq re-reading its per-node
//! files, a node fetching its boot script) sees the old file or the new
//! one, never part of either; the temporary name starts with a dot, so
//! the boot service (which serves no dot-file) never serves it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A temporary dot-name beside `path`, unique to this process and call;
/// `tag` says who made it (a leftover is recognisable).
pub fn temp_beside(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{tag}-{}-{n}", std::process::id()))
}

/// `content` into `path` with `mode`, through [`temp_beside`] and a
/// rename; a failure removes the temporary file and leaves `path` as it was.
pub fn write_replacing(path: &Path, content: &[u8], mode: u32, tag: &str) -> io::Result<()> {
    let tmp = temp_beside(path, tag);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(content)?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_with_its_mode_and_leaves_no_temporary_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        write_replacing(&p, b"one", 0o644, "test").unwrap();
        write_replacing(&p, b"two", 0o600, "test").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
        let missing = t.path().join("no/such/dir/f");
        assert!(write_replacing(&missing, b"x", 0o644, "test").is_err());
    }
}
