//! Reading errors by their kind, not their wording.

use std::error::Error;
use std::io;

/// Whether `e`, or anything in its chain of sources, is an I/O error saying the
/// filesystem is full (`ENOSPC`) or the quota is used up (`EDQUOT`): the one case
/// where the admin's fix is to free space.
pub fn is_disk_full(e: &(dyn Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                return true;
            }
            // An io::Error wrapping another error reports that one's source, not
            // the wrapped error itself: look inside.
            if let Some(inner) = io.get_ref() {
                if is_disk_full(inner) {
                    return true;
                }
            }
        }
        cur = e.source();
    }
    false
}

/// `e` and its sources, `: `-joined, for the log (a source whose text the message
/// already contains is not repeated).
pub fn error_chain(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("writing {what}")]
    struct Outer {
        what: &'static str,
        #[source]
        source: io::Error,
    }

    #[test]
    fn disk_full_is_found_by_errno_anywhere_in_the_chain() {
        let full = |errno| Outer {
            what: "the archive",
            source: io::Error::from_raw_os_error(errno),
        };
        assert!(is_disk_full(&full(libc::ENOSPC)));
        assert!(is_disk_full(&full(libc::EDQUOT)));
        assert!(!is_disk_full(&full(libc::EIO)));
        let wrapped = io::Error::other(full(libc::ENOSPC));
        assert!(is_disk_full(&wrapped));
        // The words alone do not count.
        let words = io::Error::other("No space left on device");
        assert!(!is_disk_full(&words));
    }

    #[test]
    fn chain_for_the_log() {
        let e = Outer {
            what: "the archive",
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let text = error_chain(&e);
        assert!(
            text.starts_with("writing the archive: No space left on device"),
            "{text}"
        );
        let plain = io::Error::other("plain");
        assert_eq!(error_chain(&plain), "plain");
    }
}
