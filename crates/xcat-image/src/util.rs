//! Small helpers shared by the modules.

/// The rendering of archive bytes for messages and the manifest, defined beside
/// the tar reader that names entries with it.
pub use xcat_tar::escape::{escape_bytes, unescape_bytes};

/// Write `path` whole (mode 0644) through a temporary name beside it:
/// `fill` writes the content, which is synced to disk before the rename, so
/// a reader or a crash sees the old file or the new one. A failure removes
/// the temporary file and leaves `path` as it was.
pub fn write_synced(
    path: &std::path::Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        let mut w = std::io::BufWriter::new(f);
        fill(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Display form of an image-relative path: `/` for the root, else `/` + escaped path.
pub fn display_path(rel: &[u8]) -> String {
    format!("/{}", escape_bytes(rel))
}
