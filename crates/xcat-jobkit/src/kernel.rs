//! The one kernel copier: `<image>/rootimg/boot/vmlinuz-<kver>` to `<image>/kernel`.
//!
//! The image is untrusted content (it came from a node), so the source is resolved
//! beneath the image root without following any symbolic link
//! ([`xcat_image::beneath::Root`]): an image whose `boot/vmlinuz-*` points at a file
//! of the management node gets an error, never a copy of that file. The copy is
//! written under a temporary name and renamed into place, so a node booting at that
//! moment reads the previous kernel or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use xcat_image::beneath::{self, Root};
use xcat_image::pack;

use crate::natural_cmp;

/// The kernel's name in the image directory.
pub const KERNEL_FILE: &str = "kernel";

/// Longest kernel version accepted (Linux's own `uname -r` field holds 64 bytes).
pub const MAX_KERNEL_VERSION: usize = 64;

/// Checks that `kver` (what the node's `uname -r` said: untrusted) can be put into
/// a path as one name: `boot/vmlinuz-<kver>`, `lib/modules/<kver>`. Only the
/// characters kernel versions use (letters, digits, `.`, `_`, `+`, `~`, `-`), no
/// `..`, at most [`MAX_KERNEL_VERSION`] bytes; otherwise why not.
pub fn check_kernel_version(kver: &str) -> Result<(), &'static str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._+~-".contains(c);
    if kver.is_empty() {
        Err("the kernel version is empty")
    } else if kver.len() > MAX_KERNEL_VERSION {
        Err("the kernel version is longer than 64 bytes")
    } else if !kver.chars().all(allowed) {
        Err("the kernel version has characters other than letters, digits and . _ + ~ -")
    } else if kver.contains("..") {
        Err("the kernel version contains \"..\"")
    } else {
        Ok(())
    }
}

/// Whether `rel` in the image is a regular file itself (not through a symlink).
pub fn is_regular(root: &Root, rel: &str) -> bool {
    matches!(root.lstat(rel.as_bytes()), Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// The kernel versions the image has a `boot/vmlinuz-<kver>` of (a regular file),
/// oldest first in natural order (`6.1.0-9` before `6.1.0-18`), never string order.
pub fn image_kernels(root: &Root) -> Vec<String> {
    let mut versions: Vec<String> = root
        .list_dir(b"boot")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| String::from_utf8(n).ok())
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
        .filter(|v| {
            check_kernel_version(v).is_ok() && is_regular(root, &format!("boot/vmlinuz-{v}"))
        })
        .collect();
    versions.sort_by(|a, b| natural_cmp(a, b));
    versions
}

/// Picks the kernel: `recorded` (`linuximage.kernelver`, the kernel the node ran at
/// capture) when the image has it, else the newest in `/boot` (with a warning).
/// None when the image has no kernel at all.
pub fn choose_kernel(
    root: &Root,
    recorded: Option<&str>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let versions = image_kernels(root);
    if let Some(k) = recorded.filter(|k| versions.iter().any(|v| v == k)) {
        return Some(k.to_string());
    }
    let newest = versions.last()?.clone();
    warnings.push(match recorded {
        Some(k) => format!(
            "the image has no kernel {k} (linuximage.kernelver, the kernel the node ran at capture); \
             using the newest kernel in its /boot: {newest}"
        ),
        None => format!("no kernel version recorded for the image; using the newest kernel in its /boot: {newest}"),
    });
    Some(newest)
}

/// Why the kernel could not be copied.
#[derive(Debug, thiserror::Error)]
#[error("cannot copy the kernel {kver} of the image to {}: {why}", dest.display())]
pub struct KernelCopyError {
    pub kver: String,
    pub dest: PathBuf,
    #[source]
    pub why: KernelCopyFailure,
}

impl KernelCopyError {
    /// The image has no `boot/vmlinuz-<kver>` at all (worth a note, not an alarm).
    pub fn is_missing(&self) -> bool {
        matches!(self.why, KernelCopyFailure::Missing(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KernelCopyFailure {
    #[error("{0}")]
    Missing(#[source] io::Error),
    /// A symbolic link, a path leaving the image, or not a regular file.
    #[error("{0}")]
    Unsafe(&'static str),
    #[error("{0}")]
    Io(#[source] io::Error),
}

/// Copies the kernel `kver` of the image rooted at `root` to `<image_dir>/kernel`
/// (atomically); returns its size.
pub fn copy_kernel(root: &Root, kver: &str, image_dir: &Path) -> Result<u64, KernelCopyError> {
    let fail = |why| KernelCopyError {
        kver: kver.to_string(),
        dest: image_dir.join(KERNEL_FILE),
        why,
    };
    let mut src = open_kernel(root, kver).map_err(fail)?;
    write_atomically(&mut src, image_dir, KERNEL_FILE).map_err(|e| fail(KernelCopyFailure::Io(e)))
}

fn open_kernel(root: &Root, kver: &str) -> Result<File, KernelCopyFailure> {
    check_kernel_version(kver).map_err(KernelCopyFailure::Unsafe)?;
    let rel = format!("boot/vmlinuz-{kver}");
    // NONBLOCK: a FIFO planted under that name must not hang the job in open().
    let fd = root
        .open_beneath(
            rel.as_bytes(),
            OFlags::RDONLY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| match (e.raw_os_error(), beneath::explain(&e)) {
            (Some(libc::ENOENT), _) => KernelCopyFailure::Missing(e),
            (_, Some(why)) => KernelCopyFailure::Unsafe(why),
            _ => KernelCopyFailure::Io(e),
        })?;
    let src = File::from(fd);
    if !src.metadata().map_err(KernelCopyFailure::Io)?.is_file() {
        return Err(KernelCopyFailure::Unsafe("not a regular file"));
    }
    Ok(src)
}

/// `src` into `dir/name` through a temporary file that a failure removes.
fn write_atomically(src: &mut File, dir: &Path, name: &str) -> io::Result<u64> {
    let tmp = pack::temp_path(dir, name);
    let res = (|| {
        let mut dst = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let n = io::copy(src, &mut dst)?;
        dst.flush()?;
        pack::install(&tmp, dir, name)?;
        Ok(n)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// `<t>/img/rootimg/boot` and the image directory `<t>/img`.
    fn image() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("img");
        let rootimg = dir.join("rootimg");
        fs::create_dir_all(rootimg.join("boot")).unwrap();
        (t, dir, rootimg)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn copies_and_replaces_the_kernel() {
        let (_t, dir, rootimg) = image();
        fs::write(rootimg.join("boot/vmlinuz-6.1.0-9"), b"new kernel").unwrap();
        fs::write(dir.join("kernel"), b"old").unwrap();
        let root = Root::open(&rootimg).unwrap();
        assert_eq!(copy_kernel(&root, "6.1.0-9", &dir).unwrap(), 10);
        assert_eq!(fs::read(dir.join("kernel")).unwrap(), b"new kernel");
        assert_eq!(
            entries(&dir),
            ["kernel", "rootimg"],
            "no temporary file left"
        );
    }

    #[test]
    fn refuses_a_symlink_that_points_outside_the_image() {
        let (t, dir, rootimg) = image();
        let secret = t.path().join("host-secret");
        fs::write(&secret, b"not for nodes").unwrap();
        symlink(&secret, rootimg.join("boot/vmlinuz-6.1")).unwrap();
        let root = Root::open(&rootimg).unwrap();
        let e = copy_kernel(&root, "6.1", &dir).unwrap_err();
        assert!(matches!(e.why, KernelCopyFailure::Unsafe(_)), "{e:?}");
        assert!(!e.is_missing());
        assert!(
            e.to_string().starts_with(&format!(
                "cannot copy the kernel 6.1 of the image to {}: ",
                dir.join("kernel").display()
            )),
            "{e}"
        );
        assert_eq!(entries(&dir), ["rootimg"], "nothing was copied");
    }

    #[test]
    fn refuses_a_boot_directory_that_leads_elsewhere() {
        let (t, dir, rootimg) = image();
        let elsewhere = t.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("vmlinuz-6.1"), b"x").unwrap();
        fs::remove_dir(rootimg.join("boot")).unwrap();
        symlink(&elsewhere, rootimg.join("boot")).unwrap();
        let root = Root::open(&rootimg).unwrap();
        let e = copy_kernel(&root, "6.1", &dir).unwrap_err();
        assert!(matches!(e.why, KernelCopyFailure::Unsafe(_)), "{e:?}");
        let e = copy_kernel(&root, "../elsewhere/x", &dir).unwrap_err();
        assert!(matches!(e.why, KernelCopyFailure::Unsafe(_)), "{e:?}");
        assert!(!dir.join("kernel").exists());
    }

    #[test]
    fn refuses_a_kernel_link_to_a_server_key() {
        // What a hostile node sends: boot/vmlinuz-<kver> -> the server's ssh key.
        let (t, dir, rootimg) = image();
        let key = t.path().join("root/.ssh/id_ed25519");
        fs::create_dir_all(key.parent().unwrap()).unwrap();
        fs::write(&key, b"PRIVATE KEY").unwrap();
        symlink(&key, rootimg.join("boot/vmlinuz-6.1.0-9-amd64")).unwrap();
        // Relative, as a node would write it, climbing out of the image.
        symlink(
            "../../../root/.ssh/id_ed25519",
            rootimg.join("boot/vmlinuz-6.1.0-10"),
        )
        .unwrap();
        let root = Root::open(&rootimg).unwrap();
        for kver in ["6.1.0-9-amd64", "6.1.0-10"] {
            let e = copy_kernel(&root, kver, &dir).unwrap_err();
            assert!(matches!(e.why, KernelCopyFailure::Unsafe(_)), "{e:?}");
        }
        assert_eq!(entries(&dir), ["rootimg"], "nothing was copied");
    }

    #[test]
    fn a_kernel_version_is_one_plain_name() {
        let (t, dir, rootimg) = image();
        fs::write(t.path().join("vmlinuz-x"), b"outside").unwrap();
        fs::write(rootimg.join("boot/vmlinuz-.."), b"dots").unwrap();
        let root = Root::open(&rootimg).unwrap();
        let long = "1".repeat(MAX_KERNEL_VERSION + 1);
        for kver in [
            "../../../vmlinuz-x",
            "..",
            "6.1/../../x",
            "6.1\0x",
            "6.1 x",
            "6.1\nx",
            "",
            &long,
        ] {
            let e = copy_kernel(&root, kver, &dir).unwrap_err();
            assert!(
                matches!(e.why, KernelCopyFailure::Unsafe(_)),
                "{kver:?}: {e:?}"
            );
            assert!(check_kernel_version(kver).is_err(), "{kver:?}");
        }
        assert!(!dir.join("kernel").exists());
        for kver in [
            "6.1.0-18-amd64",
            "5.14.0-362.8.1.el9_3.x86_64",
            "6.6.31+rpt-rpi-v8",
            "4.4.0~rc1",
        ] {
            assert_eq!(check_kernel_version(kver), Ok(()), "{kver}");
        }
    }

    #[test]
    fn the_kernel_is_the_recorded_one_else_the_newest_in_natural_order() {
        let (_t, _dir, rootimg) = image();
        for v in ["6.1.0-9-amd64", "6.1.0-18-amd64", "5.10.0-28-amd64"] {
            fs::write(rootimg.join(format!("boot/vmlinuz-{v}")), b"k").unwrap();
        }
        symlink("vmlinuz-6.1.0-9-amd64", rootimg.join("boot/vmlinuz-9.9")).unwrap();
        let root = Root::open(&rootimg).unwrap();
        assert_eq!(
            image_kernels(&root),
            ["5.10.0-28-amd64", "6.1.0-9-amd64", "6.1.0-18-amd64"],
            "natural order, no symlink"
        );
        let mut w = Vec::new();
        let k = choose_kernel(&root, Some("6.1.0-9-amd64"), &mut w);
        assert_eq!((k.as_deref(), w.len()), (Some("6.1.0-9-amd64"), 0));
        let k = choose_kernel(&root, Some("9.9"), &mut w);
        assert_eq!(
            k.as_deref(),
            Some("6.1.0-18-amd64"),
            "lexically 6.1.0-9 would win"
        );
        assert!(w[0].contains("has no kernel 9.9"), "{w:?}");
        assert!(choose_kernel(&root, None, &mut w).is_some());
        assert!(w[1].starts_with("no kernel version recorded"), "{w:?}");
        fs::remove_dir_all(rootimg.join("boot")).unwrap();
        let root = Root::open(&rootimg).unwrap();
        assert_eq!(choose_kernel(&root, Some("6.1"), &mut w), None);
    }

    #[test]
    fn a_missing_or_odd_kernel_is_told_apart() {
        let (_t, dir, rootimg) = image();
        fs::create_dir(rootimg.join("boot/vmlinuz-dir")).unwrap();
        let root = Root::open(&rootimg).unwrap();
        assert!(copy_kernel(&root, "7.0", &dir).unwrap_err().is_missing());
        let e = copy_kernel(&root, "dir", &dir).unwrap_err();
        assert!(e.to_string().ends_with(": not a regular file"), "{e}");
    }
}
