//! The image lock as jobs take it: one holder text, one busy message.
//!
//! Built on [`xcat_image::publish::lock_image_dir`] (a non-blocking `flock` on the
//! image directory's lock file, which holds the holder's description). Whoever finds
//! the image busy reads that description, so every job writes it the same way.

use std::path::{Path, PathBuf};

use xcat_image::publish::{self, ImageLock, PublishError};

use crate::time::utc_text;

/// Why an image could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another job holds the image; `holder` is its description.
    #[error(
        "image {image} ({}) is busy: {holder}; wait for the job already running to finish, or cancel it",
        dir.display()
    )]
    Busy {
        image: String,
        dir: PathBuf,
        holder: String,
    },
    #[error("cannot lock {}: {source}", dir.display())]
    Failed {
        dir: PathBuf,
        #[source]
        source: PublishError,
    },
}

/// What a running job writes into the lock: `capimage of n1 by alice (xcatd pid 42)
/// started at 2026-11-25 20:23:24 UTC`. `subject` is what the job works on (a node,
/// an image), `user` the requester (None: unauthenticated).
pub fn holder_text(command: &str, subject: &str, user: Option<&str>, started_unix: u64) -> String {
    format!(
        "{command} of {subject} by {} (xcatd pid {}) started at {}",
        user.unwrap_or("(unauthenticated)"),
        std::process::id(),
        utc_text(started_unix)
    )
}

/// Takes the lock of image `image` in `dir` without waiting, recording `holder`
/// (see [`holder_text`]). Held until the returned lock is dropped.
pub fn lock_image(dir: &Path, image: &str, holder: &str) -> Result<ImageLock, LockError> {
    publish::lock_image_dir(dir, holder).map_err(|e| match e {
        PublishError::Busy { holder, .. } => LockError::Busy {
            image: image.to_string(),
            dir: dir.to_path_buf(),
            holder,
        },
        source => LockError::Failed {
            dir: dir.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_names_job_user_pid_and_readable_time() {
        let h = holder_text("packimage", "img1", Some("alice"), 1_795_638_204);
        assert_eq!(
            h,
            format!(
                "packimage of img1 by alice (xcatd pid {}) started at 2026-11-25 20:23:24 UTC",
                std::process::id()
            )
        );
        assert!(holder_text("capimage", "n1", None, 0).contains("by (unauthenticated) "));
    }

    #[test]
    fn a_second_job_is_refused_at_once_with_the_holder() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("img");
        let held = lock_image(&dir, "img1", "capimage of nodeX by test").unwrap();
        let e = lock_image(&dir, "img1", "packimage of img1").unwrap_err();
        assert!(matches!(e, LockError::Busy { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("image img1 ({}) is busy: ", dir.display())),
            "{text}"
        );
        // What both commands' users look for: the holder, and that it is running.
        assert!(
            text.contains("is busy: capimage of nodeX by test"),
            "{text}"
        );
        assert!(text.contains("already running"), "{text}");
        drop(held);
        lock_image(&dir, "img1", "packimage of img1").unwrap();
    }

    #[test]
    fn other_failures_name_the_directory() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let e = lock_image(&file, "img1", "h").unwrap_err();
        assert!(matches!(e, LockError::Failed { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot lock {}: ", file.display())),
            "{e}"
        );
    }
}
