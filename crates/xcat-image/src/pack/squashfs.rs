//! Squashfs archives: written by mksquashfs, run through the one tool runner.

use super::{compress, PackError, PackProgress, Tree, TreeStats};
use crate::tool::{LocalTool, ToolError};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs mksquashfs from `tree` into `tmp`, keeping `bytes_out` at the size of
/// what it has written so far; it reports no entries or content bytes.
pub(super) fn mksquashfs(
    tree: Tree<'_>,
    tmp: &Path,
    threads: usize,
    progress: &PackProgress,
    cancel: &AtomicBool,
) -> Result<TreeStats, PackError> {
    let threads = if threads == 0 {
        compress::cores()
    } else {
        threads
    };
    let mut tool = LocalTool::new("mksquashfs")
        .arg(tree.root)
        .arg(tmp)
        .args(["-noappend", "-comp", "zstd", "-Xcompression-level", "3"])
        .args(["-processors", &threads.to_string()])
        .args(["-one-file-system", "-no-progress", "-quiet"]);
    if !tree.exclude.is_empty() {
        // Paths relative to the source; -e takes the rest of the command line.
        tool = tool.arg("-e").args(tree.exclude.iter().copied());
    }
    let run = tool.run(cancel, || {
        if let Ok(m) = fs::metadata(tmp) {
            progress.bytes_out.store(m.len(), Ordering::Relaxed);
        }
    });
    match run {
        Ok(_) => Ok(TreeStats::default()),
        Err(ToolError::Spawn { source, .. }) => Err(PackError::Mksquashfs(format!(
            "cannot run mksquashfs ({source}); install squashfs-tools or pick -m cpio or -m tar"
        ))),
        Err(ToolError::Wait { source, .. }) => Err(PackError::Mksquashfs(source.to_string())),
        Err(ToolError::Failed {
            status,
            stderr_tail,
            ..
        }) => Err(PackError::Mksquashfs(format!(
            "{status}: {}",
            stderr_tail
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        ))),
        Err(ToolError::Cancelled { .. }) => Err(PackError::Cancelled),
    }
}
