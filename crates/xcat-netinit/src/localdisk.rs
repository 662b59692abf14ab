//! The node's local disk for statelite `localdisk` entries: a file system
//! labelled `xcat-local` (ext2/3/4 or XFS) on any of its block devices,
//! found by reading each device's superblock (the initrd has no blkid
//! database), mounted on `/.statelite/localdisk`. The admin (or the node's
//! first provisioning) makes that file system; the initrd never formats a
//! disk, so no data is lost to a wrong device name.

use crate::mount::{self, Mounted};
use rustix::mount::MountFlags;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The label that marks a node's statelite disk.
pub const LABEL: &str = "xcat-local";

/// A file system type a superblock names, with its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub fstype: &'static str,
    pub label: String,
}

/// Reads the superblock of `dev` (ext2/3/4 at 1024 bytes, XFS at 0).
pub fn probe(dev: &Path) -> io::Result<Option<Found>> {
    let f = File::open(dev)?;
    let mut sb = [0u8; 2048];
    let n = read_full(&f, &mut sb)?;
    let sb = &sb[..n];
    let text = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    if sb.len() >= 1024 + 0x88 && sb[1024 + 0x38..1024 + 0x3a] == [0x53, 0xef] {
        let label = text(&sb[1024 + 0x78..1024 + 0x88]);
        return Ok(Some(Found {
            fstype: "ext4",
            label,
        }));
    }
    if sb.len() >= 120 && &sb[..4] == b"XFSB" {
        let label = text(&sb[108..120]);
        return Ok(Some(Found {
            fstype: "xfs",
            label,
        }));
    }
    Ok(None)
}

fn read_full(f: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The first block device under `dev` (whole disks and partitions, as
/// `/sys/class/block` lists them) whose file system carries [`LABEL`].
pub fn find(sys_block: &Path, dev: &Path) -> Option<(PathBuf, &'static str)> {
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram"))
        .collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let path = dev.join(&n);
        match probe(&path) {
            Ok(Some(f)) if f.label == LABEL => Some((path, f.fstype)),
            _ => None,
        }
    })
}

/// Mounts the node's local disk at `at`, if it has one.
pub fn mount_local(at: &Path) -> io::Result<Option<(PathBuf, Mounted)>> {
    let Some((dev, fstype)) = find(Path::new("/sys/class/block"), Path::new("/dev")) else {
        return Ok(None);
    };
    std::fs::create_dir_all(at)?;
    let m = mount::mount(&dev, at, fstype, MountFlags::empty(), "")?;
    Ok(Some((dev, m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_real_file_systems() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("ext4.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let made = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", LABEL])
            .arg(&img)
            .status()
            .expect("mkfs.ext4 (e2fsprogs)");
        assert!(made.success());
        let found = probe(&img).unwrap().unwrap();
        assert_eq!(
            found,
            Found {
                fstype: "ext4",
                label: LABEL.into()
            }
        );
        let plain = t.path().join("zero.img");
        std::fs::write(&plain, vec![0u8; 4096]).unwrap();
        assert_eq!(probe(&plain).unwrap(), None);
        let mut xfs = vec![0u8; 4096];
        xfs[..4].copy_from_slice(b"XFSB");
        xfs[108..118].copy_from_slice(b"xcat-local");
        std::fs::write(&plain, &xfs).unwrap();
        assert_eq!(probe(&plain).unwrap().unwrap().fstype, "xfs");
        // a directory of devices: the labelled one is found, others skipped
        let sys = t.path().join("sys");
        let dev = t.path().join("dev");
        for d in [&sys, &dev] {
            std::fs::create_dir_all(d).unwrap();
        }
        for n in ["vda", "vdb"] {
            std::fs::create_dir(sys.join(n)).unwrap();
        }
        std::fs::write(dev.join("vda"), vec![0u8; 4096]).unwrap();
        std::fs::copy(&img, dev.join("vdb")).unwrap();
        assert_eq!(find(&sys, &dev), Some((dev.join("vdb"), "ext4")));
    }
}
