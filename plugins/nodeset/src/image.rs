//! The image a node boots: its definition (osimage and linuximage rows), the
//! files in its directory (kernel, initrd, the packed root filesystem), and
//! the copy of kernel and initrd into `<tftpdir>/xcat/osimage/<image>/`.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use xcat_db::{Attrs, Db, DbError};

use crate::ram::RamNeeds;

/// The packed root filesystems nodeset can boot, in the order that breaks an
/// mtime tie. The newest of those present wins, so a leftover of another
/// format older than the last pack is never chosen.
pub const PACKED_NAMES: &[&str] = &[
    "rootimg.cpio.gz",
    "rootimg.cpio.xz",
    "rootimg.cpio.zst",
    "rootimg.tar.gz",
    "rootimg.tar.xz",
    "rootimg.tar.zst",
    "rootimg.sfs",
    "rootimg.gz",
];

/// What a ramdisk statelite node boots: the liteimg'd tree, packed by liteimg.
pub const STATELITE_PACKED: &str = "rootimg-statelite.gz";

/// How an image's nodes get their root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// `provmethod=netboot`: a packed image unpacked into RAM.
    Stateless,
    /// `provmethod=statelite`, `rootfstype=ramdisk`: `rootimg-statelite.gz` in RAM.
    StateliteRamdisk,
    /// `provmethod=statelite`, `rootfstype=nfs` (xCAT's default): the tree
    /// itself, mounted read-only over NFS.
    StateliteNfs,
}

/// The initrd name nodes are given (and the tftp copy's name).
pub const INITRD: &str = xcat_image::pack::record::STATELESS_INITRD;
/// The older name xCAT falls back to.
const INITRD_OLD: &str = "initrd.gz";

/// One image definition, as nodeset needs it.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub provmethod: String,
    pub osvers: String,
    pub osarch: String,
    pub profile: String,
    pub rootimgdir: PathBuf,
    /// `osimage.description` (where packimage keeps each format's RAM need).
    pub description: String,
    pub root: RootKind,
    /// `osimage.nfsrootopts`: the NFS root's extra mount options.
    pub nfsrootopts: Option<String>,
    pub linux: Attrs,
}

/// Why an image cannot be used (the request fails for `osimage=`, the nodes
/// naming it fail for bare `osimage`).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("Cannot find the OS image {0} in the osimage table.")]
    NotFound(String),
    #[error("osimage.provmethod for {0} must be set.")]
    NoProvmethod(String),
    #[error("osimage.provmethod, osimage.osvers, osimage.osarch and osimage.profile for {0} must be set")]
    Incomplete(String),
    #[error("OS image name must be specified in nodetype.provmethod")]
    NotAnImageName,
    #[error("osimage {0} has provmethod {1}: this daemon boots netboot (stateless) and statelite images only")]
    NotNetboot(String, String),
    #[error(
        "osimage.rootfstype of {0} is {1:?}: a statelite image's is nfs (the default) or ramdisk"
    )]
    BadRootFsType(String, String),
    #[error("osimage name {0:?} cannot be a directory name")]
    BadName(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// An image name usable as one directory name.
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

impl Image {
    /// Read `name`'s definition: provmethod, osvers, osarch and profile
    /// must be set (xCAT's bare `osimage` rule; with `osimage=` it failed
    /// later, per node, for the same gap).
    pub async fn load(db: &Db, name: &str, install_dir: &Path) -> Result<Image, ImageError> {
        if matches!(name, "install" | "netboot" | "statelite") {
            return Err(ImageError::NotAnImageName);
        }
        if !plain_name(name) {
            return Err(ImageError::BadName(name.to_string()));
        }
        let os = db.get_row("osimage", name).await?;
        let os = os.ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        let get = |k: &str| os.get(k).cloned().unwrap_or_default();
        let (provmethod, osvers, osarch, profile) = (
            get("provmethod"),
            get("osvers"),
            get("osarch"),
            get("profile"),
        );
        if provmethod.is_empty() {
            return Err(ImageError::NoProvmethod(name.to_string()));
        }
        if [&osvers, &osarch, &profile].iter().any(|v| v.is_empty()) {
            return Err(ImageError::Incomplete(name.to_string()));
        }
        let root = match (provmethod.as_str(), get("rootfstype").trim()) {
            ("netboot", _) => RootKind::Stateless,
            ("statelite", "ramdisk") => RootKind::StateliteRamdisk,
            ("statelite", "nfs" | "") => RootKind::StateliteNfs,
            ("statelite", other) => {
                return Err(ImageError::BadRootFsType(name.into(), other.into()))
            }
            _ => return Err(ImageError::NotNetboot(name.to_string(), provmethod)),
        };
        let linux = db.get_row("linuximage", name).await?.unwrap_or_default();
        let rootimgdir = match linux.get("rootimgdir") {
            Some(d) => PathBuf::from(d),
            None => install_dir
                .join("netboot")
                .join(&osvers)
                .join(&osarch)
                .join(&profile),
        };
        Ok(Image {
            name: name.to_string(),
            provmethod,
            osvers,
            osarch,
            profile,
            rootimgdir,
            description: get("description"),
            root,
            nfsrootopts: Some(get("nfsrootopts")).filter(|v| !v.trim().is_empty()),
            linux,
        })
    }

    /// `chain.currstate`: `<provmethod> <os>-<arch>-<profile>`.
    pub fn currstate(&self) -> String {
        format!(
            "{} {}-{}-{}",
            self.provmethod, self.osvers, self.osarch, self.profile
        )
    }

    /// `<tftpdir>/xcat/osimage/<image>`.
    pub fn tftp_dir(&self, tftp_root: &Path) -> PathBuf {
        tftp_root.join("xcat/osimage").join(&self.name)
    }

    /// The path of the copy relative to the TFTP root (`xcat/osimage/<img>`).
    pub fn tftp_rel(&self) -> String {
        format!("xcat/osimage/{}", self.name)
    }
}

/// What nodes of one image are given, once its files are found and copied.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub image: Image,
    /// The packed file's name in the image directory (`rootimg`, the tree,
    /// for an NFS root).
    pub packed: String,
    /// The kernel has an EFI stub (iPXE on UEFI can boot it directly).
    pub efi_stub: bool,
    /// The RAM booting the packed file takes, and the other formats'.
    pub ram: RamNeeds,
    /// The fingerprint of this server's image-signing key when the image
    /// directory's record verifies with it and names the packed file: the
    /// node's initrd is told (`imgkey=`) to boot nothing else.
    pub signed_by: Option<String>,
    /// What the admin should know (which archive, why).
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

/// Why an image's nodes cannot be given it (each of its nodes fails with this).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FilesError {
    #[error("Did you run \"packimage\"? The kernel cannot be found at {} on {server}", .dir.join("kernel").display())]
    NoKernel { dir: PathBuf, server: String },
    #[error("No initrd at {} (nor {INITRD_OLD}) on {server}: build the image's stateless initrd (geninitrd {image}, or packimage), then run nodeset again", .dir.join(INITRD).display())]
    NoInitrd {
        dir: PathBuf,
        image: String,
        server: String,
    },
    #[error("No packed image for {platform} found in {} on {server} (looked for {}): run packimage {image}", .dir.display(), PACKED_NAMES.join(", "))]
    NoPacked {
        /// `platform <os>, architecture <arch>, and profile <profile>`.
        platform: String,
        dir: PathBuf,
        image: String,
        server: String,
    },
    #[error("No packed image for {platform}: {} is missing on {server}, please run \"liteimg {image}\" to create it.", .dir.join(STATELITE_PACKED).display())]
    NoLitePacked {
        platform: String,
        dir: PathBuf,
        image: String,
        server: String,
    },
    #[error("{} on {server} has not been through liteimg (it has no .statelite): run \"liteimg {image}\", then nodeset", .dir.join("rootimg").display())]
    NotLiteimged {
        dir: PathBuf,
        image: String,
        server: String,
    },
    #[error("Copying to {} failed: {reason}", .to.display())]
    Copy { to: PathBuf, reason: String },
}

/// The newest packed file of `dir` (ties: [`PACKED_NAMES`] order), and the
/// others present, for the note. Only regular files count: the boot service
/// serves nothing through a symlink.
pub fn choose_packed(dir: &Path) -> Option<(String, Vec<String>)> {
    let mut found: Vec<(&str, SystemTime)> = PACKED_NAMES
        .iter()
        .filter_map(|n| {
            let m = fs::symlink_metadata(dir.join(n)).ok()?;
            if m.is_file() {
                Some((*n, m.modified().ok()?))
            } else {
                None
            }
        })
        .collect();
    // Stable sort: equal times keep the fixed order.
    found.sort_by_key(|f| std::cmp::Reverse(f.1));
    let mut names = found.into_iter().map(|(n, _)| n.to_string());
    let best = names.next()?;
    Some((best, names.collect()))
}

/// Does the kernel at `path` carry an EFI stub? The PE signature followed by
/// the x86-64 machine type within its first 512 bytes, as xCAT tests it.
pub fn has_efi_stub(path: &Path) -> bool {
    let mut head = Vec::with_capacity(512);
    let read = fs::File::open(path).and_then(|f| f.take(512).read_to_end(&mut head));
    read.is_ok() && head.windows(6).any(|w| w == b"PE\0\0\x64\x86")
}

fn regular(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// Find the image's files and copy kernel and initrd to the TFTP root
/// (unless `no_update` and the copies are there). Blocking.
pub fn prepare(
    image: Image,
    tftp_root: &Path,
    (server, key): (&str, Option<&[u8]>),
    no_update: bool,
) -> Result<Prepared, FilesError> {
    let dir = image.rootimgdir.clone();
    let kernel = dir.join("kernel");
    if !regular(&kernel) {
        return Err(FilesError::NoKernel {
            dir,
            server: server.into(),
        });
    }
    let initrd = [INITRD, INITRD_OLD]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| regular(p))
        .ok_or_else(|| FilesError::NoInitrd {
            dir: dir.clone(),
            image: image.name.clone(),
            server: server.into(),
        })?;
    let (packed, others) = root_files(&image, server)?;
    let mut notes = vec![packed_note(&image, &packed, &others)];
    let ram = match image.root {
        RootKind::StateliteNfs => RamNeeds::default(),
        _ => crate::ram::needs(&dir, &packed, &others, &image.description),
    };
    let to = image.tftp_dir(tftp_root);
    let present = regular(&to.join("kernel")) && regular(&to.join(INITRD));
    if no_update && present {
        notes.push(format!(
            "{}: --noupdateinitrd: kept kernel and initrd in {}",
            image.name,
            to.display()
        ));
    } else {
        copy_boot_files(&kernel, &initrd, &to)?;
    }
    let efi_stub = has_efi_stub(&to.join("kernel"));
    let mut warnings = Vec::new();
    let signed_by = match image.root {
        RootKind::StateliteNfs => None,
        _ => signed_by(&dir, &packed, key, &mut warnings),
    };
    if !efi_stub {
        warnings.push(format!(
            "the kernel of {} has no EFI stub: UEFI nodes are told to boot from their next device",
            image.name
        ));
    }
    Ok(Prepared {
        image,
        packed,
        efi_stub,
        ram,
        signed_by,
        notes,
        warnings,
    })
}

/// This server's fingerprint when `dir`'s record verifies with its public
/// key and vouches for `packed`. A record that does not verify is a warning
/// (its nodes then boot the file unchecked against it, as without a record).
fn signed_by(
    dir: &Path,
    packed: &str,
    key: Option<&[u8]>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    use xcat_image::signature::{fingerprint, ImageRecord};
    let key = key?;
    match ImageRecord::read_verified(dir, key) {
        Ok(Some(r)) if r.files.contains_key(packed) => Some(fingerprint(key)),
        Ok(_) => None,
        Err(e) => {
            warnings.push(format!(
                "{e}: its nodes are not told to check {packed} against it (run packimage again)"
            ));
            None
        }
    }
}

/// What the image's nodes are given as their root: the packed file (and the
/// other packed files present), or the tree for an NFS root.
fn root_files(image: &Image, server: &str) -> Result<(String, Vec<String>), FilesError> {
    let dir = &image.rootimgdir;
    let platform = format!(
        "platform {}, architecture {}, and profile {}",
        image.osvers, image.osarch, image.profile
    );
    let (dir, name, server) = (dir.clone(), image.name.clone(), server.to_string());
    match image.root {
        RootKind::Stateless => choose_packed(&dir).ok_or(FilesError::NoPacked {
            platform,
            dir,
            image: name,
            server,
        }),
        RootKind::StateliteRamdisk if regular(&dir.join(STATELITE_PACKED)) => {
            Ok((STATELITE_PACKED.into(), Vec::new()))
        }
        RootKind::StateliteRamdisk => Err(FilesError::NoLitePacked {
            platform,
            dir,
            image: name,
            server,
        }),
        RootKind::StateliteNfs => {
            let state = fs::symlink_metadata(dir.join("rootimg/.statelite"));
            if state.is_ok_and(|m| m.is_dir()) {
                Ok(("rootimg".into(), Vec::new()))
            } else {
                Err(FilesError::NotLiteimged {
                    dir,
                    image: name,
                    server,
                })
            }
        }
    }
}

fn packed_note(img: &Image, packed: &str, others: &[String]) -> String {
    let image = &img.name;
    if img.root == RootKind::StateliteNfs {
        let tree = img.rootimgdir.join(packed);
        return format!("{image}: nodes mount {} read-only over NFS", tree.display());
    }
    if others.is_empty() {
        format!("{image}: nodes boot {packed}")
    } else {
        format!(
            "{image}: nodes boot {packed}, the newest of {packed}, {} (older formats are left over from earlier packs)",
            others.join(", ")
        )
    }
}

/// Copy `kernel` and `initrd` into `to` as `kernel` and `initrd-stateless.gz`,
/// each through a temporary name and a rename.
fn copy_boot_files(kernel: &Path, initrd: &Path, to: &Path) -> Result<(), FilesError> {
    let fail = |reason: io::Error| FilesError::Copy {
        to: to.to_path_buf(),
        reason: reason.to_string(),
    };
    fs::create_dir_all(to).map_err(fail)?;
    for (from, name) in [(kernel, "kernel"), (initrd, INITRD)] {
        copy_atomic(from, &to.join(name)).map_err(fail)?;
    }
    Ok(())
}

/// Copy `from` (not through a symlink) to `to` by a temporary name beside it.
fn copy_atomic(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)?;
    let tmp = crate::files::temp_name(to);
    let result = (|| {
        let mut dst = fs::File::create(&tmp)?;
        io::copy(&mut src, &mut dst)?;
        dst.sync_all()?;
        fs::rename(&tmp, to)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn touch(dir: &Path, name: &str, age_secs: u64) {
        let p = dir.join(name);
        fs::write(&p, name).unwrap();
        let t = SystemTime::now() - Duration::from_secs(age_secs);
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn newest_packed_wins_and_ties_keep_the_order() {
        let t = tempfile::tempdir().unwrap();
        assert!(choose_packed(t.path()).is_none());
        touch(t.path(), "rootimg.cpio.gz", 100);
        touch(t.path(), "rootimg.sfs", 10);
        let (best, others) = choose_packed(t.path()).unwrap();
        assert_eq!(best, "rootimg.sfs", "the stale cpio.gz is not chosen");
        assert_eq!(others, ["rootimg.cpio.gz"]);
        touch(t.path(), "rootimg.tar.zst", 10);
        touch(t.path(), "rootimg.cpio.xz", 10);
        let (best, _) = choose_packed(t.path()).unwrap();
        assert_eq!(best, "rootimg.cpio.xz", "a tie goes to the fixed order");
        // A symlink is never chosen, however new.
        std::os::unix::fs::symlink("/etc/hostname", t.path().join("rootimg.cpio.gz.x")).ok();
        fs::remove_file(t.path().join("rootimg.cpio.xz")).unwrap();
        fs::remove_file(t.path().join("rootimg.tar.zst")).unwrap();
        fs::remove_file(t.path().join("rootimg.sfs")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", t.path().join("rootimg.sfs")).unwrap();
        assert_eq!(choose_packed(t.path()).unwrap().0, "rootimg.cpio.gz");
    }

    #[test]
    fn efi_stub_signature() {
        let t = tempfile::tempdir().unwrap();
        let k = t.path().join("k");
        let mut head = vec![0u8; 512];
        head[..2].copy_from_slice(b"MZ");
        head[0x80..0x86].copy_from_slice(b"PE\0\0\x64\x86");
        fs::write(&k, &head).unwrap();
        assert!(has_efi_stub(&k));
        head[0x84] = 0x4c; // i386 machine type
        fs::write(&k, &head).unwrap();
        assert!(!has_efi_stub(&k));
        assert!(!has_efi_stub(&t.path().join("missing")));
    }
}
