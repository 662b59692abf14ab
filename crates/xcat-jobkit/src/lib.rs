//! The image-job toolkit: everything the image jobs (`capimage`, `packimage`,
//! `geninitrd`) share, written once.
//!
//! An image job takes an image directory's lock, runs blocking work off the async
//! runtime, reports progress once a second, runs local programs, and copies the
//! image's kernel beside it. Each of those lives here so the commands behave, and
//! word their messages, the same way:
//!
//! * [`figures`]: byte, rate and duration text for progress and summary lines;
//! * [`time`]: readable UTC times (lock holders, `osimage.description`);
//! * [`lock`]: the image lock, its holder text and its one busy message;
//! * [`task`]: the blocking-task bridge and the cancellation bridge;
//! * [`progress`]: the once-a-second progress ticker;
//! * [`node`]: where a node is reached (`hosts.ip`, else its name);
//! * [`tool`]: running a local program (mksquashfs, depmod, ...);
//! * [`kernel`]: the kernel choice (natural order) and the one kernel copier into
//!   `<image>/kernel`;
//! * [`image`]: an image's `linuximage` definition and its tree;
//! * [`replace`]: replacing a small file whole (temporary dot-name, rename);
//! * [`errors`]: deciding "disk full" from the errno, and error chains for the log.
#![forbid(unsafe_code)]

pub mod client_file;
pub mod errors;
pub mod figures;
pub mod image;
pub mod kernel;
pub mod lock;
pub mod node;
pub mod progress;
pub mod replace;
pub mod task;
pub mod time;
pub mod tool;

/// Natural order of versions and names (`6.1.0-9` < `6.1.0-18`, `node2` < `node10`):
/// the noderange ordering, so kernels and nodes sort by the same rule.
pub use xcat_db::noderange::natural_cmp;

pub use errors::{error_chain, is_disk_full};
pub use image::{image_def, ImageDef, ImageDefError};
pub use kernel::{
    check_kernel_version, choose_kernel, copy_kernel, image_kernels, KernelCopyError,
    KernelCopyFailure,
};
pub use lock::{holder_text, lock_image, LockError};
pub use node::{node_address, node_addresses};
pub use progress::with_progress;
pub use task::{blocking, CancelBridge, TaskFailed};
pub use time::{civil, now_unix, utc_text, Civil};
pub use tool::{LocalTool, ToolError};
