//! The boot-time skeleton: top-level directories the capture excluded the contents
//! of (or skipped entirely) and the two device nodes an early init needs before devtmpfs
//! is mounted. Everything is created beneath the image root without following the
//! image's symlinks; existing entries are left alone.

use crate::beneath::{lstat_at, Held, Root};
use rustix::fs::{FileType, Mode};
use std::io;
use std::path::Path;

/// One thing the skeleton step did or left alone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkeletonAction {
    pub path: String,
    /// `created` or `kept`.
    pub action: String,
    pub detail: String,
}

const DIRS: [(&str, u32); 5] = [
    ("tmp", 0o1777),
    ("proc", 0o755),
    ("sys", 0o755),
    ("dev", 0o755),
    ("run", 0o755),
];
const NODES: [(&str, u32, u32, u32); 2] = [("dev/console", 5, 1, 0o600), ("dev/null", 1, 3, 0o666)];

/// Creates the missing skeleton entries under `root`, owned by root.
pub fn ensure_skeleton(root: &Path) -> io::Result<Vec<SkeletonAction>> {
    let r = Root::open(root)?;
    let top = r.open_dir(b"")?;
    let root_owner = crate::sys::Owner::new(0, 0).expect("0 is a valid id");
    let mut out = Vec::new();
    for (name, mode) in DIRS {
        match lstat_at(&top, name.as_bytes())? {
            Some(st) => out.push(SkeletonAction {
                path: format!("/{name}"),
                action: "kept".into(),
                detail: format!(
                    "exists (mode {:04o}, type {:o})",
                    st.st_mode & 0o7777,
                    st.st_mode & libc::S_IFMT
                ),
            }),
            None => {
                rustix::fs::mkdirat(&top, name, Mode::from_raw_mode(0o700))?;
                let fd = r.open_dir(name.as_bytes())?;
                crate::sys::fchown(&fd, root_owner)?;
                // explicit chmod: mkdir's mode is filtered by the umask and never sets sticky
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
                out.push(SkeletonAction {
                    path: format!("/{name}"),
                    action: "created".into(),
                    detail: format!("directory {mode:04o}"),
                });
            }
        }
    }
    let dev = match r.open_dir(b"dev") {
        Ok(d) => d,
        Err(e) => {
            out.push(SkeletonAction {
                path: "/dev".into(),
                action: "kept".into(),
                detail: format!("not a usable directory ({e}); nodes not created"),
            });
            return Ok(out);
        }
    };
    for (path, maj, min, mode) in NODES {
        let name = &path[4..];
        if lstat_at(&dev, name.as_bytes())?.is_some() {
            out.push(SkeletonAction {
                path: format!("/{path}"),
                action: "kept".into(),
                detail: "exists".into(),
            });
            continue;
        }
        rustix::fs::mknodat(
            &dev,
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            rustix::fs::makedev(maj, min),
        )?;
        let rdev = rustix::fs::makedev(maj, min);
        // the node is changed through a hold on the inode just made, never by name: the
        // image's dev/ may be writable by others, who could rename a symlink over it
        let held = Held::created(&dev, name.as_bytes(), libc::S_IFCHR, rdev)?;
        held.chown(root_owner)?;
        held.chmod(mode)?;
        out.push(SkeletonAction {
            path: format!("/{path}"),
            action: "created".into(),
            detail: format!("c {maj} {min} {mode:04o}"),
        });
    }
    Ok(out)
}
