//! Small helpers shared by the modules.

/// The rendering of archive bytes for messages and the manifest, defined beside
/// the tar reader that names entries with it.
pub use xcat_tar::escape::{escape_bytes, unescape_bytes};

/// Display form of an image-relative path: `/` for the root, else `/` + escaped path.
pub fn display_path(rel: &[u8]) -> String {
    format!("/{}", escape_bytes(rel))
}
