//! `.statelite/litefile.save`: what the last liteimg applied to a tree, in
//! xCAT's format (the `ilitefile` lines, `<image>: <options> <file>`). The
//! next liteimg reads it to know what to undo, and packimage to know which
//! link entries to swap back.

use std::io;

use rustix::fs::{Mode, OFlags};

use super::{for_liteimg, Entry, STATE_DIR};
use crate::beneath::{lstat_at, Root};

/// The record's path beneath the tree's root.
pub const SAVED: &str = ".statelite/litefile.save";
const NAME: &str = "litefile.save";
/// More than any litefile table needs; a larger file is not ours.
const SAVED_MAX: u64 = 4 << 20;

/// The entries the last liteimg applied; None when it never ran on the tree.
pub fn read(root: &Root) -> io::Result<Option<Vec<Entry>>> {
    let text = match root.read_file(SAVED.as_bytes(), SAVED_MAX) {
        Ok(t) => t,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&text);
    // xCAT's trees may hold the table's own `tmpfs,rw`: read as liteimg applied it.
    Ok(Some(for_liteimg(text.lines().filter_map(|l| {
        let mut w = l.split_whitespace().skip(1);
        let (options, path) = (w.next()?, w.next()?);
        Some((path.to_string(), options.to_string()))
    }))))
}

/// Replaces the record with `lines` (the `ilitefile` lines of what the tree
/// now holds), creating `.statelite` and the file when missing.
pub fn write(root: &Root, lines: &[String]) -> io::Result<()> {
    let (dir, _) = root.ensure_dir(STATE_DIR.as_bytes(), Mode::from_raw_mode(0o755))?;
    if lstat_at(&dir, NAME.as_bytes())?.is_none() {
        rustix::fs::openat(
            &dir,
            NAME,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
    }
    let mut text = lines.join("\n");
    text.push('\n');
    root.rewrite_file(SAVED.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_and_a_tree_without_it_has_none() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        assert_eq!(read(&root).unwrap(), None);
        let lines = [
            "img: link          /etc/adjtime".to_string(),
            "img: tmpfs,rw      /etc/ssh/".to_string(),
            "img: persistent    /var/".to_string(),
        ];
        write(&root, &lines).unwrap();
        let got = read(&root).unwrap().unwrap();
        let pairs: Vec<(&str, &str)> = got
            .iter()
            .map(|e| (e.options.as_str(), e.path.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("link", "/etc/adjtime"),
                ("link", "/etc/ssh/"),
                ("persistent", "/var/")
            ]
        );
        write(&root, &lines[2..]).unwrap();
        assert_eq!(
            read(&root).unwrap().unwrap().len(),
            1,
            "replaced, not appended"
        );
    }
}
