//! What can go wrong in a pack, each case worded once for the admin.

use std::path::{Path, PathBuf};

use xcat_image::linkfarm::swap::FarmError;
use xcat_image::pack::PackError as ArchiveError;
use xcat_jobkit::{is_disk_full, ImageDefError, LockError, TaskFailed};
use xcat_plugin::{ClientGone, HandlerError};

use crate::boot::BootError;

/// Why packimage stopped.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Not defined, no rootimgdir, no tree.
    #[error(transparent)]
    Image(#[from] ImageDefError),
    /// Another job holds the image, or its lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Surveying or writing the archive failed (mksquashfs's failure included).
    #[error("{command} {image} failed: {source}; the previous archive, if any, is unchanged")]
    Archive {
        /// The command packing (`packimage`, or liteimg for its ramdisk archive).
        command: &'static str,
        image: String,
        #[source]
        source: ArchiveError,
    },
    /// A liteimg'd tree's link farm could not be swapped back for packing; the
    /// entries already swapped are linked again.
    #[error("packimage {image} failed: its statelite link farm could not be swapped back for packing: {source}; the tree is as liteimg left it")]
    SwapBack {
        image: String,
        #[source]
        source: FarmError,
    },
    /// The archive is in place; the link farm is not whole again.
    #[error("packimage: {image} was packed, but its statelite link farm could not be made again: {source}; run liteimg {image} to make it")]
    Restore {
        image: String,
        #[source]
        source: FarmError,
    },
    /// The archive is in place; the kernel, add-on or iPXE script are not.
    #[error("packimage: {image} was packed, but its boot files failed: {source}")]
    Boot {
        image: String,
        #[source]
        source: BootError,
    },
    /// `inner` happened because the image's filesystem is full (or over quota).
    #[error("{inner}; free space in {} and retry", dir.display())]
    NoSpace {
        dir: PathBuf,
        #[source]
        inner: Box<PackError>,
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

impl PackError {
    /// A failed survey or pack of `image` in `dir` by `command`.
    pub fn archive(command: &'static str, image: &str, dir: &Path, e: ArchiveError) -> PackError {
        match e {
            ArchiveError::Cancelled => PackError::Cancelled,
            source => PackError::Archive {
                command,
                image: image.to_string(),
                source,
            }
            .or_no_space(dir),
        }
    }

    /// Failed boot files of `image` in `dir`.
    pub fn boot(image: &str, dir: &Path, e: BootError) -> PackError {
        match e {
            BootError::Cancelled => PackError::Cancelled,
            source => PackError::Boot {
                image: image.to_string(),
                source,
            }
            .or_no_space(dir),
        }
    }

    /// Decided from the errno, never from the words of a message.
    fn or_no_space(self, dir: &Path) -> PackError {
        if is_disk_full(&self) {
            PackError::NoSpace {
                dir: dir.to_path_buf(),
                inner: Box::new(self),
            }
        } else {
            self
        }
    }
}

impl From<ClientGone> for PackError {
    fn from(_: ClientGone) -> Self {
        PackError::ClientGone
    }
}

impl From<PackError> for HandlerError {
    fn from(e: PackError) -> Self {
        match e {
            PackError::Cancelled => HandlerError::Cancelled,
            PackError::ClientGone => HandlerError::ClientGone,
            // The client gets the sentence; the daemon logs the sources beneath it.
            e => HandlerError::typed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn io_failure(errno: i32) -> ArchiveError {
        ArchiveError::Io {
            what: "writing",
            path: "/install/img/.rootimg.pack-1".into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn a_full_disk_is_told_by_its_errno() {
        let dir = Path::new("/install/img");
        let e = PackError::archive("packimage", "img", dir, io_failure(libc::ENOSPC));
        assert!(matches!(e, PackError::NoSpace { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.starts_with("packimage img failed: writing /install/img/.rootimg.pack-1: "));
        assert!(text.ends_with(
            "; the previous archive, if any, is unchanged; free space in /install/img and retry"
        ));
        let e = PackError::archive("packimage", "img", dir, io_failure(libc::EIO));
        assert!(matches!(e, PackError::Archive { .. }), "{e:?}");
        // mksquashfs's words about space are its own: no errno, no hint.
        let words = ArchiveError::Mksquashfs("No space left on device".into());
        assert!(matches!(
            PackError::archive("packimage", "img", dir, words),
            PackError::Archive { .. }
        ));
    }

    #[test]
    fn cancellation_and_a_gone_client_are_not_failures() {
        let dir = Path::new("/x");
        let e = PackError::archive("packimage", "img", dir, ArchiveError::Cancelled);
        assert!(matches!(HandlerError::from(e), HandlerError::Cancelled));
        let e = PackError::boot("img", dir, BootError::Cancelled);
        assert!(matches!(HandlerError::from(e), HandlerError::Cancelled));
        let e = PackError::from(ClientGone);
        assert!(matches!(HandlerError::from(e), HandlerError::ClientGone));
        let e = PackError::Image(ImageDefError::NotDefined { image: "n".into() });
        assert!(
            matches!(HandlerError::from(e), HandlerError::Typed(e) if e.to_string().starts_with("image n is not defined"))
        );
    }
}
