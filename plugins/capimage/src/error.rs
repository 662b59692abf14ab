//! What can go wrong in a capture, each case worded once for the admin: what
//! failed, what it means for the image, and what to do.
//!
//! The phases return [`CaptureError`]; the handler turns it into one
//! [`HandlerError`] whose sentence the client reads and whose sources (the
//! errno, the extractor's refusal, ssh's failure) the daemon logs.

use std::io;
use std::path::PathBuf;

use xcat_image::publish::PublishError;
use xcat_image::tar::TarError;
use xcat_image::ExtractError;
use xcat_jobkit::figures::bytes;
use xcat_jobkit::{is_disk_full, KernelCopyError, LockError, TaskFailed};
use xcat_plugin::{ClientGone, Context, HandlerError};
use xcat_remote::RemoteError;

use crate::exlist::ExListError;

/// Why a capture stopped (or, for the kernel copy, what the report notes).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    // The target image.
    #[error(
        "{node} has no nodetype.{column}; set it first, e.g. `chtab node={node} nodetype.{column}=VALUE` \
         (or on one of its groups)"
    )]
    MissingAttr { node: String, column: &'static str },
    /// os, arch or profile would not be a plain directory name.
    #[error("{node}: {what} {value:?} cannot be used as a directory name")]
    BadName {
        node: String,
        what: &'static str,
        value: String,
    },
    #[error(
        "osimage {image} is not defined; create it (chtab imagename={image} osimage.osvers=...) or omit -o"
    )]
    NoOsimage { image: String },
    #[error("linuximage {image} is not defined; set linuximage.rootimgdir for it")]
    NoLinuximage { image: String },
    #[error(
        "osimage {image} is for {image_os} but {node} runs {os} (nodetype.os); pick a matching image"
    )]
    ImageOs {
        image: String,
        image_os: String,
        node: String,
        os: String,
    },
    #[error(
        "osimage {image} is for {image_arch} but {node} is {arch} (nodetype.arch); pick a matching image"
    )]
    ImageArch {
        image: String,
        image_arch: String,
        node: String,
        arch: String,
    },
    #[error("linuximage {image} has no rootimgdir; set linuximage.rootimgdir")]
    NoRootimgdir { image: String },
    #[error(
        "linuximage.rootimgdir of {image} is {dir:?}, not an absolute path; set it to the image's full path"
    )]
    RelativeRootimgdir { image: String, dir: String },

    // What the plan and preflight find.
    #[error(transparent)]
    ExList(#[from] ExListError),
    /// The compressor asked for with `--transport-compress` is missing.
    #[error("{node}: {tool} is not installed on the node; use --transport-compress none or auto")]
    NoCompressor { node: String, tool: &'static str },
    /// `--snapshot require` on a node where some filesystem cannot be snapshotted.
    #[error("{node}: --snapshot require: {why}; use --snapshot auto to read the rest live")]
    Snapshot { node: String, why: String },
    /// Reaching the node failed (preflight, or starting a stream). Boxed, as
    /// the other large sources are, to keep every `Result` small.
    #[error(transparent)]
    Remote(Box<RemoteError>),
    #[error("{node}: the preflight check failed (exit {code}): {stderr}")]
    Preflight {
        node: String,
        code: i32,
        stderr: String,
    },
    #[error(
        "{node} is not a diskful node: / is {fstype}; capimage captures nodes installed on a local disk"
    )]
    NotDiskful { node: String, fstype: String },
    /// `uname -r` said something that cannot name a file of the image.
    #[error("{node}: refused the kernel version {kver:?} the node reports: {why}")]
    KernelVersion {
        node: String,
        kver: String,
        why: &'static str,
    },
    #[error("{node}: cannot tell what / is (no entry for / in /proc/self/mounts)")]
    UnknownRoot { node: String },
    #[error("{node} runs {node_arch} but nodetype.arch says {arch}; correct nodetype.arch")]
    NodeArch {
        node: String,
        node_arch: String,
        arch: String,
    },
    #[error("{node} has no {what}; install it on the node and retry")]
    MissingTool { node: String, what: &'static str },
    #[error(
        "not enough space for the image of {node} in {}: {} free, about {} needed; free space or \
         move the install directory",
        dir.display(), bytes(*free), bytes(*needed)
    )]
    NotEnoughSpace {
        node: String,
        dir: PathBuf,
        free: u64,
        needed: u64,
    },

    // The image directory.
    /// Another job holds the image (its holder text is in the message), or
    /// the lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A file or directory of the capture's own could not be made or read.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The staging tree could not be made.
    #[error(transparent)]
    Staging(PublishError),
    #[error("cannot publish the image of {node}: {source}; the previous image is unchanged")]
    Publish { node: String, source: PublishError },

    // The stream from the node.
    #[error("internal error: no stdout from ssh")]
    NoStdout,
    #[error("internal error: extraction task: {0}")]
    ExtractionTask(#[source] tokio::task::JoinError),
    /// ssh itself failed while the stream ran.
    #[error(
        "capture of {node} failed: {source}; the previous image is unchanged; check that {node} is up \
         and reachable, then retry"
    )]
    Ssh {
        node: String,
        source: Box<RemoteError>,
    },
    #[error(
        "capture of {node} failed: the archive stream ended but ssh did not exit within {secs}s; \
         the previous image is unchanged; check {node} and retry"
    )]
    SshLingered { node: String, secs: u64 },
    #[error(
        "capture of {node} failed: the stream ended without the node's final status \
         (the node died or the connection was cut); the previous image is unchanged"
    )]
    NoFinalStatus { node: String },
    /// A node-side stage failed: `why` gives the stage statuses (or ssh's
    /// exit), `detail` the offending stderr lines.
    #[error(
        "capture of {node} failed on the node ({why}){}; the previous image is unchanged",
        colon(detail)
    )]
    NodeFailed {
        node: String,
        why: String,
        detail: String,
    },
    /// Extraction failed because the image filesystem is full (by the errno).
    #[error(
        "capture of {node} failed: {source}; free space in {} and retry; the previous image is unchanged",
        dir.display()
    )]
    DiskFull {
        node: String,
        dir: PathBuf,
        source: ExtractError,
    },
    /// The extractor refused what the node sent.
    #[error(
        "capture of {node} failed: {source}; {node} sent an unsafe or malformed archive: check the tar it \
         runs (`command -v tar`) and whether the node is compromised; the previous image is unchanged"
    )]
    UnsafeArchive { node: String, source: ExtractError },
    /// Any other extraction failure (the stream broke, an entry could not be written).
    #[error("capture of {node} failed: {source}; the previous image is unchanged")]
    Extract { node: String, source: ExtractError },

    /// A budget of the daemon's `[capture]` section was crossed.
    #[error(
        "capture of {node} stopped: it ran longer than {secs}s (the capture budget max_wall_secs); \
         the previous image is unchanged; exclude more with -x or raise max_wall_secs in [capture]"
    )]
    WallTime { node: String, secs: u64 },
    #[error(
        "capture of {node} stopped: {node} sent more than {} (the capture budget max_read_bytes); \
         the previous image is unchanged; exclude more with -x or raise max_read_bytes in [capture]",
        bytes(*limit)
    )]
    ReadBudget { node: String, limit: u64 },
    /// The transport decoder refused the stream (a corrupt stream, or a zstd
    /// window above the one the node is asked for).
    #[error(
        "capture of {node} failed: its compressed stream was refused: {why} (a zstd window \
         over {} is refused; the node is asked for zstd -1); check the node's zstd, or use \
         --transport-compress none; the previous image is unchanged",
        bytes(1u64 << crate::pipeline::ZSTD_WINDOW_LOG_MAX)
    )]
    Decode { node: String, why: String },

    // The captured tree and what is written beside it.
    #[error("cannot prepare the captured tree of {node}: {source}")]
    Prepare { node: String, source: io::Error },
    #[error("cannot remove {path} from the image: {source}")]
    Remove { path: String, source: io::Error },
    /// Not fatal: noted in the report.
    #[error(
        "the image has no boot/vmlinuz-{kver}; packimage will pick the newest kernel in /boot"
    )]
    NoKernel { kver: String },
    /// Not fatal: noted in the report.
    #[error(transparent)]
    Kernel(KernelCopyError),
    #[error(
        "the image of {node} was captured, but packing it failed; run packimage {image} again"
    )]
    PackFailed { node: String, image: String },

    #[error(transparent)]
    Task(#[from] TaskFailed),
    #[error(transparent)]
    Db(#[from] xcat_db::DbError),
    #[error("cancelled")]
    Cancelled,
    #[error("the client is gone")]
    ClientGone,
}

/// `: detail`, or nothing for no detail.
fn colon(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl CaptureError {
    /// `Cancelled` once the request's token has fired.
    pub fn check_cancelled(ctx: &Context) -> Result<(), CaptureError> {
        ctx.check_cancelled().map_err(|_| CaptureError::Cancelled)
    }

    /// A failed file operation on `path` (`what`: create, write, open).
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| CaptureError::Io { what, path, source }
    }

    /// The error for a stream the daemon cut short.
    pub fn cut(node: &str, cut: &crate::archive::Cut) -> Self {
        let node = node.to_string();
        match cut {
            crate::archive::Cut::Budget { limit } => CaptureError::ReadBudget {
                node,
                limit: *limit,
            },
            crate::archive::Cut::Decode(why) => CaptureError::Decode {
                node,
                why: why.clone(),
            },
        }
    }

    /// The error for an extraction of `node`'s stream into `dir` that
    /// failed, with the hint that fits: free space (judged by the errno, not
    /// the text), or a suspect node.
    pub fn extraction(node: &str, dir: &std::path::Path, source: ExtractError) -> Self {
        let node = node.to_string();
        if is_disk_full(&source) {
            return CaptureError::DiskFull {
                node,
                dir: dir.to_path_buf(),
                source,
            };
        }
        match source {
            ExtractError::Archive(TarError::Truncated { .. } | TarError::Io { .. }) => {
                CaptureError::Extract { node, source }
            }
            ExtractError::UnsafePath { .. }
            | ExtractError::HardLink { .. }
            | ExtractError::Invalid { .. }
            | ExtractError::Archive(_) => CaptureError::UnsafeArchive { node, source },
            _ => CaptureError::Extract { node, source },
        }
    }
}

impl From<RemoteError> for CaptureError {
    fn from(e: RemoteError) -> Self {
        CaptureError::Remote(Box::new(e))
    }
}

impl From<ClientGone> for CaptureError {
    fn from(_: ClientGone) -> Self {
        CaptureError::ClientGone
    }
}

impl From<CaptureError> for HandlerError {
    fn from(e: CaptureError) -> Self {
        match e {
            CaptureError::Cancelled => HandlerError::Cancelled,
            CaptureError::ClientGone => HandlerError::ClientGone,
            // The client gets the sentence; the daemon logs the sources beneath it.
            e => HandlerError::typed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write_failed(errno: i32) -> ExtractError {
        ExtractError::Io {
            entry: "/usr/bin/x".into(),
            what: "write".into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn a_full_disk_is_told_by_its_errno() {
        let dir = Path::new("/install/netboot/img");
        // ENOSPC, then EIO.
        let full = CaptureError::extraction("n1", dir, write_failed(28));
        assert!(matches!(full, CaptureError::DiskFull { .. }), "{full:?}");
        let full = full.to_string();
        assert!(
            full.contains("free space in /install/netboot/img and retry"),
            "{full}"
        );
        let other = CaptureError::extraction("n1", dir, write_failed(5)).to_string();
        assert!(!other.contains("free space"), "{other}");
    }

    #[test]
    fn a_refused_entry_points_at_the_node() {
        let e = ExtractError::UnsafePath {
            entry: "../etc/passwd".into(),
            reason: "climbs out of the image".into(),
        };
        let text = CaptureError::extraction("n1", Path::new("/img"), e).to_string();
        assert!(
            text.contains("n1 sent an unsafe or malformed archive")
                && text.ends_with("; the previous image is unchanged"),
            "{text}"
        );
    }

    #[test]
    fn the_node_failure_names_stages_and_lines() {
        let e = CaptureError::NodeFailed {
            node: "n1".into(),
            why: "tar exit 2".into(),
            detail: "tar: ./x: Cannot open: Permission denied".into(),
        };
        assert_eq!(
            e.to_string(),
            "capture of n1 failed on the node (tar exit 2): tar: ./x: Cannot open: Permission \
             denied; the previous image is unchanged"
        );
        let bare = CaptureError::NodeFailed {
            node: "n1".into(),
            why: "exit 3".into(),
            detail: String::new(),
        };
        assert_eq!(
            bare.to_string(),
            "capture of n1 failed on the node (exit 3); the previous image is unchanged"
        );
    }

    #[test]
    fn cancellation_and_a_gone_client_are_not_failures() {
        assert!(matches!(
            HandlerError::from(CaptureError::Cancelled),
            HandlerError::Cancelled
        ));
        assert!(matches!(
            HandlerError::from(CaptureError::from(ClientGone)),
            HandlerError::ClientGone
        ));
        let e = CaptureError::NoOsimage { image: "x".into() };
        assert!(
            matches!(HandlerError::from(e), HandlerError::Typed(e) if e.to_string().starts_with("osimage x is not defined"))
        );
    }

    #[test]
    fn the_log_gets_the_source_beneath_the_sentence() {
        let e = CaptureError::io("write", "/img/capimage-report.json")(
            io::Error::from_raw_os_error(28),
        );
        let h = HandlerError::from(e);
        let chain = xcat_jobkit::error_chain(&h);
        assert!(
            chain.starts_with("cannot write /img/capimage-report.json: No space left on device"),
            "{chain}"
        );
    }
}
