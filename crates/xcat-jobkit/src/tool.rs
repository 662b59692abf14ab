//! Running a local program (mksquashfs, depmod, ...) from blocking code.
//!
//! The runner itself lives in xcat-image, beneath every crate that starts a
//! local program (the packer runs mksquashfs through it, and xcat-image
//! cannot depend on this crate); image jobs reach it here, beside the rest of
//! their toolkit.

pub use xcat_image::tool::{LocalTool, ToolError, STDERR_TAIL};
