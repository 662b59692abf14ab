//! What one extraction may cost, beyond the per-field limits of the tar
//! parser ([`crate::tar::Limits`]): the archive comes from a node we do not
//! trust, so every resource it can make the daemon spend has a ceiling, and
//! crossing one fails the extraction with an error naming the entry and the
//! budget (the previous image stays).
//!
//! Every field has a safe default; the daemon's `[capture]` configuration
//! section overrides them.

use serde::Deserialize;

/// Ceilings for one extraction.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Most entries (files, directories, links, devices...) in one archive.
    pub max_entries: u64,
    /// Most bytes of metadata kept in memory over the whole archive: names,
    /// link targets, xattrs, pax records and notes.
    pub max_metadata_bytes: u64,
    /// Largest total logical size of the files (holes included); `None`: no
    /// ceiling beyond the per-file one. The caller sets it from what the node
    /// reports as used, so a node cannot claim more than it has.
    pub max_logical_bytes: Option<u64>,
    /// Most notes and warnings listed one by one; the rest are counted.
    pub max_notes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_entries: 10_000_000,
            max_metadata_bytes: 256 << 20,
            max_logical_bytes: None,
            max_notes: 1000,
        }
    }
}
