//! Sysclean: strip node identity and secrets from a captured tree so every node that
//! boots it gets its own identity.
//!
//! Everything runs on the staging tree through [`crate::beneath::Root`]: no path is
//! resolved through one of the image's symlinks (a `/etc/machine-id -> /etc/shadow`
//! symlink in the image is replaced by an empty file, it never truncates what it points
//! to, and a symlinked `/etc/ssh` is reported and left alone). Removing a symlink
//! removes the link itself. Each action is returned as a [`SyscleanAction`].

use crate::beneath::{explain, lstat_at, Root};
use crate::util::display_path;
use rustix::fs::{AtFlags, Mode, OFlags};
use std::io;
use std::path::Path;

/// One thing sysclean did or noticed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyscleanAction {
    /// `removed`, `truncated`, `replaced`, `edited`, `warning` or `skipped`.
    pub action: String,
    /// Image path (`/etc/machine-id`).
    pub path: String,
    pub detail: String,
}

pub(crate) fn act(action: &str, rel: &[u8], detail: impl Into<String>) -> SyscleanAction {
    SyscleanAction {
        action: action.into(),
        path: display_path(rel),
        detail: detail.into(),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// Filesystem types of fstab lines that are not local disks and stay active.
const PSEUDO_FS: &[&str] = &[
    "tmpfs",
    "proc",
    "sysfs",
    "devpts",
    "devtmpfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "hugetlbfs",
    "mqueue",
    "pstore",
    "efivarfs",
    "configfs",
    "fusectl",
    "bpf",
    "binfmt_misc",
    "ramfs",
    "rpc_pipefs",
    "nfsd",
    "autofs",
];

/// Whether an fstab device names a local disk.
fn disk_device(dev: &str) -> bool {
    [
        "UUID=",
        "LABEL=",
        "PARTUUID=",
        "PARTLABEL=",
        "/dev/sd",
        "/dev/vd",
        "/dev/hd",
        "/dev/xvd",
        "/dev/nvme",
        "/dev/mapper/",
        "/dev/disk/",
        "/dev/md",
        "/dev/dm-",
        "/dev/mmcblk",
    ]
    .iter()
    .any(|p| dev.starts_with(p))
}

/// Comments out local-disk lines of an fstab text; returns the new text and the lines changed.
pub fn clean_fstab(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len() + 64);
    let mut changed = Vec::new();
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        let fields: Vec<&str> = t.split_whitespace().collect();
        let disk = !t.starts_with('#')
            && fields.len() >= 3
            && disk_device(fields[0])
            && !PSEUDO_FS.contains(&fields[2]);
        if disk {
            out.push_str("#xcat-capimage: ");
            changed.push(line.trim_end().to_string());
        }
        out.push_str(line);
    }
    (out, changed)
}

/// Drops `HWADDR=` and `UUID=` lines from an ifcfg file's text.
pub fn clean_ifcfg(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut dropped = Vec::new();
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("HWADDR=") || t.starts_with("UUID=") {
            dropped.push(line.trim_end().to_string());
        } else {
            out.push_str(line);
        }
    }
    (out, dropped)
}

struct Cleaner {
    root: Root,
    out: Vec<SyscleanAction>,
}

impl Cleaner {
    fn error(&mut self, rel: &[u8], what: &str, e: &io::Error) {
        let why = explain(e).map(|s| format!(" ({s})")).unwrap_or_default();
        self.out
            .push(act("skipped", rel, format!("{what}: {e}{why}")));
    }

    /// Removes a non-directory entry (a symlink itself, never its target).
    fn remove(&mut self, rel: &[u8], why: &str) {
        match self.root.lstat(rel) {
            Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                self.out
                    .push(act("skipped", rel, "is a directory, left alone"));
                return;
            }
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return,
            Err(e) => return self.error(rel, "cannot inspect", &e),
        }
        match self.root.unlink(rel) {
            Ok(true) => self.out.push(act("removed", rel, why)),
            Ok(false) => {}
            Err(e) => self.error(rel, "cannot remove", &e),
        }
    }

    /// Lists a directory; missing directories give an empty list, symlinked ones a note.
    fn list(&mut self, rel: &[u8]) -> Vec<Vec<u8>> {
        match self.root.list_dir(rel) {
            Ok(mut v) => {
                v.sort();
                v
            }
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
                    && !self.is_symlink(rel) =>
            {
                Vec::new()
            }
            Err(e) => {
                self.error(rel, "cannot list", &e);
                Vec::new()
            }
        }
    }

    fn is_symlink(&self, rel: &[u8]) -> bool {
        matches!(self.root.lstat(rel), Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFLNK)
    }

    fn is_regular(&self, rel: &[u8]) -> bool {
        matches!(self.root.lstat(rel), Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFREG)
    }

    fn machine_id(&mut self) {
        let rel: &[u8] = b"etc/machine-id";
        let st = match self.root.lstat(rel) {
            Ok(Some(st)) => st,
            Ok(None) => return,
            Err(e) => return self.error(rel, "cannot inspect", &e),
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            // checked again on the held inode: the lstat above may be stale already
            match self.root.open_regular(rel, OFlags::WRONLY | OFlags::TRUNC) {
                Ok(_) => self.out.push(act(
                    "truncated",
                    rel,
                    "emptied; systemd generates a new id at first boot",
                )),
                Err(e) => self.error(rel, "cannot truncate", &e),
            }
            return;
        }
        // a symlink or anything else: replace it by an empty regular file, never touching
        // what a symlink points to
        let res = (|| -> io::Result<()> {
            let dir = self.root.open_dir(b"etc")?;
            rustix::fs::unlinkat(&dir, "machine-id", AtFlags::empty())?;
            let fd = rustix::fs::openat(
                &dir,
                "machine-id",
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o444),
            )?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o444))?;
            Ok(())
        })();
        match res {
            Ok(()) => self.out.push(act(
                "replaced",
                rel,
                "was not a regular file (e.g. a symlink); replaced by an empty file",
            )),
            Err(e) => self.error(rel, "cannot replace", &e),
        }
    }

    fn edit(&mut self, rel: &[u8], f: impl Fn(&str) -> (String, Vec<String>), what: &str) {
        if !self.is_regular(rel) {
            if self.is_symlink(rel) {
                self.out
                    .push(act("skipped", rel, "is a symlink; not edited"));
            }
            return;
        }
        let data = match self.root.read_file(rel, 4 << 20) {
            Ok(d) => d,
            Err(e) => return self.error(rel, "cannot read", &e),
        };
        let Ok(text) = String::from_utf8(data) else {
            self.out
                .push(act("skipped", rel, "not UTF-8 text; not edited"));
            return;
        };
        let (new, changed) = f(&text);
        if changed.is_empty() {
            return;
        }
        match self.root.rewrite_file(rel, new.as_bytes()) {
            Ok(()) => self.out.push(act(
                "edited",
                rel,
                format!("{what}: {}", changed.join(" | ")),
            )),
            Err(e) => self.error(rel, "cannot rewrite", &e),
        }
    }

    fn old_logs(&mut self, dir: &[u8], depth: usize) {
        if depth > 32 {
            return;
        }
        let fd = match self.root.open_dir(dir) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return,
            Err(e) => return self.error(dir, "cannot open", &e),
        };
        for name in self.list(dir) {
            let rel = join(dir, &name);
            let Ok(Some(st)) = lstat_at(&fd, &name) else {
                continue;
            };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => self.old_logs(&rel, depth + 1),
                libc::S_IFREG if rotated_log(&name) => self.remove(&rel, "rotated log"),
                _ => {}
            }
        }
    }
}

/// `*.gz`, `*.old` and numbered rotations (`*.1`, `*.2`...).
fn rotated_log(name: &[u8]) -> bool {
    if name.ends_with(b".gz") || name.ends_with(b".old") {
        return true;
    }
    match name.iter().rposition(|&b| b == b'.') {
        Some(i) if i + 1 < name.len() => name[i + 1..].iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// Runs every sysclean action on the tree at `root`.
pub fn sysclean(root: &Path) -> io::Result<Vec<SyscleanAction>> {
    let mut c = Cleaner {
        root: Root::open(root)?,
        out: Vec::new(),
    };
    c.identity();
    c.network();
    c.remove(b"var/lib/systemd/random-seed", "random seed");
    c.remove(b"root/.bash_history", "shell history");
    let homes = c.list(b"home");
    for h in &homes {
        c.remove(&join(&join(b"home", h), b".bash_history"), "shell history");
    }
    c.old_logs(b"var/log", 0);
    Ok(c.out)
}

impl Cleaner {
    /// What makes a node itself: host keys, machine ids, device names, disks.
    fn identity(&mut self) {
        for name in self.list(b"etc/ssh") {
            if name.starts_with(b"ssh_host_")
                && (name.ends_with(b"key") || name.ends_with(b"key.pub"))
            {
                self.remove(
                    &join(b"etc/ssh", &name),
                    "SSH host key (regenerated at first boot)",
                );
            }
        }
        self.machine_id();
        self.remove(b"var/lib/dbus/machine-id", "D-Bus machine id");
        self.remove(
            b"etc/udev/rules.d/70-persistent-net.rules",
            "persistent network device names",
        );
        self.edit(b"etc/fstab", clean_fstab, "local disk lines commented out");
        self.lvm();
    }

    /// LVM's record of the captured node's disks: its devices file would
    /// hide a booted node's own disks from LVM, and the metadata backups
    /// describe volume groups the node does not have.
    fn lvm(&mut self) {
        self.remove(
            b"etc/lvm/devices/system.devices",
            "LVM devices file (the captured node's disks)",
        );
        for dir in [&b"etc/lvm/backup"[..], b"etc/lvm/archive"] {
            for name in self.list(dir) {
                self.remove(
                    &join(dir, &name),
                    "LVM metadata backup of the captured node's volume groups",
                );
            }
        }
    }

    /// Interface hardware addresses and DHCP leases.
    fn network(&mut self) {
        for dir in [
            &b"etc/sysconfig/network-scripts"[..],
            b"etc/sysconfig/network",
        ] {
            for name in self.list(dir) {
                if name.starts_with(b"ifcfg-") {
                    self.edit(&join(dir, &name), clean_ifcfg, "HWADDR/UUID lines dropped");
                }
            }
        }
        for dir in [&b"var/lib/dhcp"[..], b"var/lib/dhclient"] {
            for name in self.list(dir) {
                let rel = join(dir, &name);
                if !matches!(self.root.lstat(&rel), Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                {
                    self.remove(&rel, "DHCP lease");
                }
            }
        }
        for name in self.list(b"var/lib/NetworkManager") {
            if name.ends_with(b".lease") {
                self.remove(&join(b"var/lib/NetworkManager", &name), "DHCP lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_rules() {
        let t = "# comment\nUUID=abc / ext4 defaults 0 1\n/dev/sda2 none swap sw 0 0\nproc /proc proc defaults 0 0\n\
                 tmpfs /tmp tmpfs defaults 0 0\nserver:/x /mnt nfs defaults 0 0\n/dev/mapper/vg-home /home xfs defaults 0 2\n\
                 LABEL=scratch /scratch tmpfs defaults 0 0\n";
        let (n, changed) = clean_fstab(t);
        assert_eq!(changed.len(), 3, "{changed:?}");
        assert!(n.contains("#xcat-capimage: UUID=abc / ext4"));
        assert!(n.contains("#xcat-capimage: /dev/sda2 none swap"));
        assert!(n.contains("#xcat-capimage: /dev/mapper/vg-home"));
        assert!(
            n.contains("\nproc /proc proc")
                && n.contains("\nserver:/x /mnt nfs")
                && n.contains("\nLABEL=scratch")
        );
        assert!(n.starts_with("# comment\n"));
    }

    #[test]
    fn ifcfg_and_logs() {
        let (n, d) =
            clean_ifcfg("DEVICE=eth0\nHWADDR=00:11:22:33:44:55\n  UUID=x\nBOOTPROTO=dhcp\n");
        assert_eq!(n, "DEVICE=eth0\nBOOTPROTO=dhcp\n");
        assert_eq!(d.len(), 2);
        assert!(rotated_log(b"syslog.1") && rotated_log(b"dpkg.log.2.gz") && rotated_log(b"x.old"));
        assert!(!rotated_log(b"syslog") && !rotated_log(b"Xorg.0.log") && !rotated_log(b"a."));
    }
}
