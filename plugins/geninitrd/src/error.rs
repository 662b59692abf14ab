//! What can go wrong building an initrd, each case worded once for the admin.

use std::io;
use std::path::{Path, PathBuf};

use xcat_jobkit::{is_disk_full, ImageDefError, KernelCopyError, LockError, TaskFailed};
use xcat_plugin::{ClientGone, HandlerError};

use crate::modules::IndexError;

/// Why a binary of the server cannot go into the initrd.
#[derive(Debug, thiserror::Error)]
pub enum BinaryProblem {
    #[error("does not exist")]
    Missing,
    #[error("cannot be read: {0}")]
    Unreadable(#[source] io::Error),
    #[error("is not an ELF executable")]
    NotElf,
    #[error("is dynamically linked (it names a program interpreter), and the initrd has no shared libraries")]
    NotStatic,
    #[error("is built for {binary}, but the image's kernel is {kernel}")]
    Machine { binary: String, kernel: String },
}

/// What to do about a binary of setting `[initrd] <setting>`.
fn binary_hint(setting: &str) -> &'static str {
    match setting {
        "busybox" => {
            "install Debian's busybox-static (apt-get install busybox-static), or set [initrd] busybox in \
             xcatd.toml to a static busybox"
        }
        _ => "build it with scripts/build-netinit, or set [initrd] netinit in xcatd.toml to it",
    }
}

/// Why geninitrd stopped.
#[derive(Debug, thiserror::Error)]
pub enum GenInitrdError {
    /// Not defined, no rootimgdir, no tree.
    #[error(transparent)]
    Image(#[from] ImageDefError),
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the image has no kernel (boot/vmlinuz-*) in {}; install a kernel package in the image, then run geninitrd \
         again",
        rootimg.display()
    )]
    NoKernels { rootimg: PathBuf },
    #[error(
        "the image has no kernel {kver} (boot/vmlinuz-{kver} in {}, a regular file); install it in the image or fix \
         linuximage.kernelver",
        rootimg.display()
    )]
    NoKernel { kver: String, rootimg: PathBuf },
    #[error(
        "the image has no modules for kernel {kver} (lib/modules/{kver} or usr/lib/modules/{kver} in {}); install \
         the kernel's modules in the image, then run geninitrd again",
        rootimg.display()
    )]
    NoModules { kver: String, rootimg: PathBuf },
    #[error(
        "cannot put {setting} into the initrd: {} ([initrd] {setting}) {why}; {}",
        path.display(),
        binary_hint(setting)
    )]
    Binary {
        setting: &'static str,
        path: PathBuf,
        #[source]
        why: BinaryProblem,
    },
    #[error(transparent)]
    Index(IndexError),
    #[error("cannot read the module {path} of the image: {source}")]
    Module {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the firmware {path} of the image: {source}")]
    Firmware {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}: {source}; the previous initrd, if any, is unchanged", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Kernel(#[from] KernelCopyError),
    /// Another job holds the image, or its lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// `inner` happened because the image's filesystem is full (or over quota).
    #[error("{inner}; free space in {} and retry", dir.display())]
    NoSpace {
        dir: PathBuf,
        #[source]
        inner: Box<GenInitrdError>,
    },
    #[error(transparent)]
    Task(#[from] TaskFailed),
    #[error(transparent)]
    Db(#[from] xcat_db::DbError),
    #[error("cancelled")]
    Cancelled,
    #[error("the client is gone")]
    ClientGone,
}

impl GenInitrdError {
    /// Decided from the errno, never from the words of a message.
    pub fn or_no_space(self, dir: &Path) -> GenInitrdError {
        if is_disk_full(&self) {
            GenInitrdError::NoSpace {
                dir: dir.to_path_buf(),
                inner: Box::new(self),
            }
        } else {
            self
        }
    }
}

impl From<IndexError> for GenInitrdError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::Cancelled => GenInitrdError::Cancelled,
            e => GenInitrdError::Index(e),
        }
    }
}

impl From<ClientGone> for GenInitrdError {
    fn from(_: ClientGone) -> Self {
        GenInitrdError::ClientGone
    }
}

impl From<GenInitrdError> for HandlerError {
    fn from(e: GenInitrdError) -> Self {
        match e {
            GenInitrdError::Cancelled => HandlerError::Cancelled,
            GenInitrdError::ClientGone => HandlerError::ClientGone,
            e => HandlerError::typed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_message_names_the_setting_and_the_way_out() {
        let e = GenInitrdError::Binary {
            setting: "busybox",
            path: "/bin/busybox".into(),
            why: BinaryProblem::NotStatic,
        };
        let t = e.to_string();
        assert!(t.starts_with("cannot put busybox into the initrd: /bin/busybox ([initrd] busybox) is dynamically"), "{t}");
        assert!(t.contains("busybox-static"), "{t}");
        let e = GenInitrdError::Binary {
            setting: "netinit",
            path: "/usr/sbin/xcat-netinit".into(),
            why: BinaryProblem::Missing,
        };
        let t = e.to_string();
        assert!(
            t.contains("([initrd] netinit) does not exist; build it with scripts/build-netinit"),
            "{t}"
        );
    }

    #[test]
    fn a_full_disk_is_told_by_its_errno() {
        let e = GenInitrdError::Write {
            path: "/install/img/initrd-stateless.gz".into(),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let e = e.or_no_space(Path::new("/install/img"));
        assert!(matches!(e, GenInitrdError::NoSpace { .. }), "{e:?}");
        assert!(
            e.to_string()
                .ends_with("free space in /install/img and retry"),
            "{e}"
        );
        assert!(matches!(
            HandlerError::from(GenInitrdError::Cancelled),
            HandlerError::Cancelled
        ));
    }
}
