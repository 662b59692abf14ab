//! Path resolution confined to a root directory.
//!
//! Every lookup goes through `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV` relative to a directory fd of the root:
//! the kernel refuses `..` escapes, absolute paths, any symlink on the way (the
//! image's `/etc -> /host/etc` cannot redirect us), `/proc` magic links and mount
//! crossings. Final components are then handled with `*at` calls on the parent fd
//! using flags that never follow a symlink (`O_NOFOLLOW`, `O_EXCL`,
//! `AT_SYMLINK_NOFOLLOW`, `unlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`).
//!
//! [`owner`] holds the uid/gid pair chown takes, the one `unsafe` shim here. The crate
//! needs only rustix and libc: the daemon (through xcat-image, which re-exports it as
//! `beneath`) and the initrd's static unpacker share it.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod owner;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The resolve flags every confined lookup uses.
pub fn resolve_flags() -> ResolveFlags {
    ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV
}

/// An open root directory under which all paths are resolved.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// Normalises an archive path into a root-relative one: leading `/` and `./` are
/// dropped (absolute names are made relative, as GNU tar does), empty and `.`
/// components are skipped, and `..` anywhere is refused. The empty result means the
/// root itself.
pub fn normalize(path: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err("contains a '..' component"),
            c => {
                if c.len() > 255 {
                    return Err("has a component longer than 255 bytes");
                }
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// Most symlinks [`Root::resolve`] reads for one path (Linux's own limit).
pub const MAX_LINKS: usize = 40;

/// The components of a path, without empty ones and `.`.
fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// Splits a normalised relative path into (parent, last component).
pub fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// A path component as a C string (no NUL inside: tar names are checked earlier).
pub fn cname(name: &[u8]) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a name"))
}

/// Explains the errno values `openat2` uses for refused resolutions.
pub fn explain(e: &io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(libc::ELOOP) => Some("the path goes through a symbolic link"),
        Some(libc::EXDEV) => Some("the path escapes the root or crosses a mount point"),
        Some(libc::ENOTDIR) => Some("a path component is not a directory"),
        _ => None,
    }
}

fn openat2_retry(dirfd: impl AsFd, rel: &[u8], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let path: &[u8] = if rel.is_empty() { b"." } else { rel };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            dirfd.as_fd(),
            path,
            flags | OFlags::CLOEXEC,
            mode,
            resolve_flags(),
        ) {
            Ok(fd) => return Ok(fd),
            // the kernel asks for a retry when a concurrent rename raced the lookup
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Root {
    /// Opens `path` (trusted, chosen by us) as the root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The root's own fd.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The root's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a file or directory beneath the root with extra `flags`. A symlink as
    /// the final component fails with `ELOOP` like any other.
    pub fn open_beneath(&self, rel: &[u8], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        openat2_retry(&self.fd, rel, flags | OFlags::NOFOLLOW, mode)
    }

    /// Opens an existing directory beneath the root.
    pub fn open_dir(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        self.open_beneath(rel, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
    }

    /// Opens the directory `rel`, creating missing components with `mode` (root-owned).
    /// Returns the fd and whether anything was created.
    pub fn ensure_dir(&self, rel: &[u8], mode: Mode) -> io::Result<(OwnedFd, bool)> {
        match self.open_dir(rel) {
            Ok(fd) => return Ok((fd, false)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let mut cur = openat2_retry(
            &self.fd,
            b"",
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )?;
        let mut created = false;
        for comp in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            match rustix::fs::mkdirat(&cur, comp, mode) {
                Ok(()) => created = true,
                Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            cur = openat2_retry(
                &cur,
                comp,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW,
                Mode::empty(),
            )?;
        }
        Ok((cur, created))
    }

    /// `lstat` of `rel` (the final component is not followed); `None` when absent.
    pub fn lstat(&self, rel: &[u8]) -> io::Result<Option<rustix::fs::Stat>> {
        let (parent, name) = split_parent(rel);
        let dir = match self.open_dir(parent) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        lstat_at(&dir, name)
    }

    /// Removes the non-directory `rel` (a symlink is removed itself, never followed).
    /// Returns false when it did not exist.
    pub fn unlink(&self, rel: &[u8]) -> io::Result<bool> {
        let (parent, name) = split_parent(rel);
        let dir = match self.open_dir(parent) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(e) => return Err(e),
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Lists the names in directory `rel` (without `.` and `..`).
    pub fn list_dir(&self, rel: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let fd = self.open_dir(rel)?;
        list_dir_fd(&fd)
    }

    /// The target of the symlink `rel` itself.
    pub fn read_link(&self, rel: &[u8]) -> io::Result<Vec<u8>> {
        let (parent, name) = split_parent(rel);
        let dir = self.open_dir(parent)?;
        Ok(rustix::fs::readlinkat(&dir, name, Vec::new())?.into_bytes())
    }

    /// Resolves `rel` as a program chrooted into the root would see it: each
    /// symlink on the way is read (never followed by the kernel) and its target
    /// taken relative to the root (an absolute target) or to the link's directory;
    /// `..` stops at the root. Returns the path of what `rel` names, with no
    /// symlink left in it, or `ENOENT` when a component is missing, `ELOOP` after
    /// [`MAX_LINKS`] links. Images link their files to each other
    /// (`lib -> usr/lib`, `ice.pkg -> ice-1.3.36.0.pkg`); nothing is ever looked up
    /// outside the root.
    pub fn resolve(&self, rel: &[u8]) -> io::Result<Vec<u8>> {
        let mut todo: Vec<Vec<u8>> = components(rel).rev().map(<[u8]>::to_vec).collect();
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == b".." {
                done.pop();
                continue;
            }
            done.push(c);
            let here = done.join(&b'/');
            let st = self
                .lstat(&here)?
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = self.read_link(&here)?;
            done.pop();
            if target.starts_with(b"/") {
                done.clear();
            }
            todo.extend(components(&target).rev().map(<[u8]>::to_vec));
        }
        Ok(done.join(&b'/'))
    }

    /// Holds the inode at `rel` (never following a symlink) without opening it.
    pub fn hold(&self, rel: &[u8]) -> io::Result<Held> {
        Held::from_fd(openat2_retry(
            &self.fd,
            rel,
            OFlags::PATH | OFlags::NOFOLLOW,
            Mode::empty(),
        )?)
    }

    /// Opens the regular file `rel` beneath the root with `flags` (`O_RDONLY`,
    /// `O_WRONLY|O_TRUNC`...). Its type is checked before it is opened: opening a
    /// device node (a watchdog, a tape drive) has effects of its own, and the image
    /// chooses what sits at any of its paths.
    pub fn open_regular(&self, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        let held = self.hold(rel)?;
        held.require(libc::S_IFREG)?;
        held.reopen(flags)
    }

    /// Reads a regular file beneath the root, at most `max` bytes (larger is an error),
    /// opened as [`Root::open_regular`] does.
    pub fn read_file(&self, rel: &[u8], max: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut f = std::fs::File::from(self.open_regular(rel, OFlags::RDONLY)?);
        let mut v = Vec::new();
        (&mut f).take(max + 1).read_to_end(&mut v)?;
        if v.len() as u64 > max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
        }
        Ok(v)
    }

    /// Replaces the content of regular file `rel` atomically (temporary file in the
    /// same directory, then `renameat`), keeping its owner and mode.
    pub fn rewrite_file(&self, rel: &[u8], content: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let (parent, name) = split_parent(rel);
        let dir = self.open_dir(parent)?;
        let st = lstat_at(&dir, name)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut tmp = b".".to_vec();
        tmp.extend_from_slice(name);
        tmp.extend_from_slice(format!(".capimage-{}", std::process::id()).as_bytes());
        let _ = rustix::fs::unlinkat(&dir, &tmp[..], AtFlags::empty());
        let fd = rustix::fs::openat(
            &dir,
            &tmp[..],
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let owner = crate::owner::Owner::new(st.st_uid.into(), st.st_gid.into());
        let mut f = std::fs::File::from(fd);
        let res = (|| -> io::Result<()> {
            f.write_all(content)?;
            if let Some(o) = owner {
                crate::owner::fchown(&f, o)?;
            }
            rustix::fs::fchmod(&f, Mode::from_raw_mode(st.st_mode & 0o7777))?;
            f.sync_all()?;
            rustix::fs::renameat(&dir, &tmp[..], &dir, name)?;
            Ok(())
        })();
        if res.is_err() {
            let _ = rustix::fs::unlinkat(&dir, &tmp[..], AtFlags::empty());
        }
        res
    }
}

/// An inode held through an `O_PATH` descriptor: the inode itself is never opened (no
/// device driver runs), and every later operation acts on exactly this inode through
/// `/proc/self/fd/<n>`, whatever is renamed over its path meanwhile. Through that magic
/// link even a symlink is acted on itself, never followed.
#[derive(Debug)]
pub struct Held {
    fd: OwnedFd,
    st: rustix::fs::Stat,
}

impl Held {
    fn from_fd(fd: OwnedFd) -> io::Result<Held> {
        let st = rustix::fs::fstat(&fd)?;
        Ok(Held { fd, st })
    }

    /// Holds `name` (a single component) in the directory `dir`, never following it.
    pub fn at(dir: impl AsFd, name: &[u8]) -> io::Result<Held> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Held::from_fd(fd)
    }

    /// Holds the entry this process has just created as `name` in `dir`, refusing
    /// anything else put there meanwhile: it must be of file type `ifmt` (`S_IF*`),
    /// owned by us, with a single link (a hard link to some other file has more) and,
    /// for devices, the device number `rdev`.
    pub fn created(dir: impl AsFd, name: &[u8], ifmt: u32, rdev: u64) -> io::Result<Held> {
        let h = Held::at(dir, name)?;
        let ours = h.st.st_mode & libc::S_IFMT == ifmt
            && h.st.st_uid == rustix::process::geteuid().as_raw()
            && h.st.st_nlink == 1
            && (ifmt != libc::S_IFCHR && ifmt != libc::S_IFBLK || h.st.st_rdev == rdev);
        if !ours {
            return Err(io::Error::other(
                "replaced by another file while being created (a local user raced the extraction)",
            ));
        }
        Ok(h)
    }

    /// (device, inode number, file type): what identifies this inode.
    pub fn identity(&self) -> (u64, u64, u32) {
        identity(&self.st)
    }

    /// Fails unless the inode is of file type `ifmt` (`S_IF*`).
    pub fn require(&self, ifmt: u32) -> io::Result<()> {
        if self.st.st_mode & libc::S_IFMT == ifmt {
            return Ok(());
        }
        let what = match ifmt {
            libc::S_IFDIR => "not a directory",
            _ => "not a regular file",
        };
        Err(io::Error::new(io::ErrorKind::InvalidInput, what))
    }

    /// `/proc/self/fd/<n>` naming this inode.
    pub fn proc(&self) -> io::Result<CString> {
        cname(
            format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&self.fd)
            )
            .as_bytes(),
        )
    }

    /// Opens this inode itself with `flags`; the caller checked its type first.
    pub fn reopen(&self, flags: OFlags) -> io::Result<OwnedFd> {
        let fd = rustix::fs::open(
            self.proc()?.as_c_str(),
            flags | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if identity(&rustix::fs::fstat(&fd)?) != self.identity() {
            return Err(io::Error::other("the file changed while being opened"));
        }
        Ok(fd)
    }

    /// Sets the owner (of a symlink itself, too).
    pub fn chown(&self, owner: crate::owner::Owner) -> io::Result<()> {
        crate::owner::chown_empty_path(&self.fd, owner)
    }

    /// Sets the permission bits (not possible on a symlink).
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        rustix::fs::chmod(self.proc()?.as_c_str(), Mode::from_raw_mode(mode))?;
        Ok(())
    }

    /// Sets one xattr (on a symlink: only `trusted.*` and `security.*` are allowed).
    pub fn set_xattr(&self, name: &[u8], value: &[u8]) -> io::Result<()> {
        let name = cname(name)?;
        rustix::fs::setxattr(
            self.proc()?.as_c_str(),
            name.as_c_str(),
            value,
            rustix::fs::XattrFlags::empty(),
        )?;
        Ok(())
    }

    /// Sets access and modification times.
    pub fn set_times(&self, t: &rustix::fs::Timestamps) -> io::Result<()> {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            self.proc()?.as_c_str(),
            t,
            AtFlags::empty(),
        )?;
        Ok(())
    }
}

/// (device, inode number, file type) of a status.
pub fn identity(st: &rustix::fs::Stat) -> (u64, u64, u32) {
    (st.st_dev, st.st_ino, st.st_mode & libc::S_IFMT)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `None` when absent.
pub fn lstat_at(dir: impl AsFd, name: &[u8]) -> io::Result<Option<rustix::fs::Stat>> {
    let name: &[u8] = if name.is_empty() { b"." } else { name };
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Names in an open directory, without `.` and `..`.
pub fn list_dir_fd(fd: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let mut dir = rustix::fs::Dir::read_from(fd)?;
    let mut out = Vec::new();
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

/// Path through `/proc/self/fd` naming `name` inside the directory `dirfd`. Used only
/// for the `l*xattr` calls on symlinks and device nodes, which have no fd-based
/// variant that works on them: the kernel resolves the magic link to the directory we
/// already hold, then `name` (a single component) is not followed by the `l*` call.
pub fn proc_path(dirfd: &impl std::os::fd::AsRawFd, name: &[u8]) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}/", dirfd.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    cname(&p)
}

/// Convenience for `CStr` names.
pub fn as_cstr(c: &CString) -> &CStr {
    c.as_c_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Links inside an image resolve inside it, absolute ones from its root,
    /// and no `..` or absolute target reaches the directory around it.
    #[test]
    fn links_resolve_as_inside_a_chroot() {
        use std::os::unix::fs::symlink;
        let top = tempfile::tempdir().unwrap();
        let r = top.path().join("root");
        std::fs::create_dir_all(r.join("usr/lib/firmware/intel/ice/ddp")).unwrap();
        std::fs::write(r.join("usr/lib/firmware/intel/ice/ddp/ice-1.3.pkg"), b"pkg").unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink(
            "ice-1.3.pkg",
            r.join("usr/lib/firmware/intel/ice/ddp/ice.pkg"),
        )
        .unwrap();
        symlink("/usr/lib/firmware", r.join("usr/fw")).unwrap();
        std::fs::write(top.path().join("outside"), b"host file").unwrap();
        symlink("../../../../outside", r.join("usr/lib/up")).unwrap();
        symlink("/../outside", r.join("abs-up")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let root = Root::open(&r).unwrap();
        let got = |p: &str| {
            root.resolve(p.as_bytes())
                .map(|v| String::from_utf8(v).unwrap())
        };
        let pkg = "usr/lib/firmware/intel/ice/ddp/ice-1.3.pkg";
        assert_eq!(got("lib/firmware/intel/ice/ddp/ice.pkg").unwrap(), pkg);
        assert_eq!(got("usr/fw/intel/./ice/ddp/ice.pkg").unwrap(), pkg);
        assert_eq!(
            got("/lib/firmware/../firmware/intel/ice/ddp/ice-1.3.pkg").unwrap(),
            pkg
        );
        // Both stop at the root: "outside" is looked up in the image, where it is not.
        for p in ["usr/lib/up", "abs-up"] {
            let e = got(p).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{p}: {e}");
        }
        assert_eq!(got("loop").unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert_eq!(got("").unwrap(), "");
    }

    /// What a local user could rename over a node between its creation and its chmod:
    /// a symlink to a server file, or a hard link to one. Neither is taken for the
    /// node, and the server file keeps its mode.
    #[test]
    fn a_created_entry_is_held_only_if_it_is_still_ours() {
        let top = tempfile::tempdir().unwrap();
        let server_file = top.path().join("shadow");
        std::fs::write(&server_file, b"secret").unwrap();
        std::fs::set_permissions(&server_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dir = rustix::fs::open(top.path(), OFlags::DIRECTORY, Mode::empty()).unwrap();
        std::os::unix::fs::symlink(&server_file, top.path().join("node")).unwrap();
        std::fs::hard_link(&server_file, top.path().join("linked")).unwrap();
        for (name, ifmt) in [("node", libc::S_IFIFO), ("linked", libc::S_IFREG)] {
            let e = Held::created(&dir, name.as_bytes(), ifmt, 0).unwrap_err();
            assert!(e.to_string().contains("replaced"), "{name}: {e}");
        }
        // a symlink held is changed itself, never what it points to
        let held = Held::at(&dir, b"node").unwrap();
        assert!(
            held.chmod(0o666).is_err(),
            "a symlink has no mode of its own"
        );
        held.set_times(&rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 5,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 5,
                tv_nsec: 0,
            },
        })
        .unwrap();
        let meta = std::fs::metadata(&server_file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_ne!(std::os::unix::fs::MetadataExt::mtime(&meta), 5);
        // the FIFO really made here is held and changed
        rustix::fs::mknodat(&dir, "fifo", rustix::fs::FileType::Fifo, Mode::empty(), 0).unwrap();
        let fifo = Held::created(&dir, b"fifo", libc::S_IFIFO, 0).unwrap();
        fifo.chmod(0o640).unwrap();
        let mode = std::fs::symlink_metadata(top.path().join("fifo"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o640);
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize(b"./a/b").unwrap(), b"a/b");
        assert_eq!(normalize(b"/etc//passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert_eq!(normalize(b"a/./b/").unwrap(), b"a/b");
        assert!(normalize(b"../x").is_err());
        assert!(normalize(b"a/../../x").is_err());
        assert!(normalize(b"a/..").is_err());
        assert_eq!(normalize(b"a/..b").unwrap(), b"a/..b");
        assert_eq!(split_parent(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_parent(b"c"), (&b""[..], &b"c"[..]));
    }
}
