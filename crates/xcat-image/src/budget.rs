//! What one extraction may cost, beyond the per-field limits of the tar
//! parser ([`crate::tar::Limits`]): the archive comes from a node we do not
//! trust, so every resource it can make the daemon spend has a ceiling, and
//! crossing one fails the extraction with an error naming the entry and the
//! budget (the previous image stays).
//!
//! Every field has a safe default; the daemon's `[capture.budget]` configuration
//! section overrides them.
//!
//! # Why these defaults
//!
//! The daemon should stay under about 100 MiB during any capture, so the
//! bookkeeping an archive can make the extractor keep until its end (the manifest,
//! the set of extracted paths, directory times, deferred ACLs) gets 64 MiB: the
//! rest is the daemon itself, the 128 KiB data buffer, the decoder and the parser's
//! per-entry limits.
//!
//! What one entry keeps was measured (peak RSS over a 300,000-entry extraction of
//! empty files with 49-byte paths, release build): 595 bytes per entry, that is
//! about 450 bytes of fixed cost (the 192-byte manifest record, its map node and
//! key, the slot in the set of extracted paths) plus the path three times (manifest
//! key, record, extracted set). The extractor charges each entry that estimate plus
//! its link target and xattrs (`ENTRY_BOOKKEEPING` in the extractor), so the
//! metadata budget is what bounds memory; at typical 60-byte paths 64 MiB is
//! about 100,000 entries. A node with more (a full server install reaches
//! 300,000; 1 million entries need about 640 MiB) is captured by raising
//! `max_metadata_bytes` for it, knowingly.
//!
//! `max_entries` (2 million) bounds the count when the metadata budget is raised
//! for such a node: time and the manifest file grow with it. `max_notes` (1,000)
//! bounds the notes and warnings listed (each is one line naming an entry, at most
//! a few KiB with the parser's path limit): beyond it they are counted in one line,
//! so a million skipped entries cost a counter, not a million strings.

use serde::Deserialize;

/// Ceilings for one extraction.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Most entries (files, directories, links, devices...) in one archive.
    pub max_entries: u64,
    /// Most bytes of bookkeeping kept in memory over the whole archive: the
    /// per-entry records with their names, link targets and xattrs, and the
    /// ACLs kept for the end (notes are bounded by `max_notes`).
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
            max_entries: 2_000_000,
            max_metadata_bytes: 64 << 20,
            max_logical_bytes: None,
            max_notes: 1000,
        }
    }
}

/// An exceeded budget: the extraction stops here.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "entry {entry}: refused: the archive goes over the budget {budget} ({} would be \
     {size}, at most {limit}); raise [capture.budget] {budget} if the node really is that \
     large",
    counted(budget)
)]
pub struct Exceeded {
    /// The entry that went over.
    pub entry: String,
    /// The budget's configuration name (`max_entries`...).
    pub budget: &'static str,
    pub size: u64,
    pub limit: u64,
}

/// What the budget named `budget` counts, for messages.
fn counted(budget: &str) -> &'static str {
    match budget {
        "max_entries" => "the number of entries",
        _ => "the bytes of metadata kept in memory",
    }
}

/// What one extraction has spent so far, checked against its [`Budget`].
#[derive(Debug, Default)]
pub(crate) struct Spent {
    entries: u64,
    metadata: u64,
}

impl Spent {
    /// Counts one more entry, which keeps `metadata` bytes of bookkeeping.
    pub fn entry(&mut self, b: &Budget, entry: &str, metadata: u64) -> Result<(), Exceeded> {
        self.entries += 1;
        if self.entries > b.max_entries {
            return Err(Exceeded {
                entry: entry.to_string(),
                budget: "max_entries",
                size: self.entries,
                limit: b.max_entries,
            });
        }
        self.metadata(b, entry, metadata)
    }

    /// Counts `bytes` more of metadata kept until the end of the extraction.
    pub fn metadata(&mut self, b: &Budget, entry: &str, bytes: u64) -> Result<(), Exceeded> {
        self.metadata = self.metadata.saturating_add(bytes);
        if self.metadata > b.max_metadata_bytes {
            return Err(Exceeded {
                entry: entry.to_string(),
                budget: "max_metadata_bytes",
                size: self.metadata,
                limit: b.max_metadata_bytes,
            });
        }
        Ok(())
    }
}

/// A list of remarks of which at most [`Budget::max_notes`] are kept one by one; the
/// rest are counted, and [`Remarks::finish`] adds one line saying how many.
#[derive(Debug, Default)]
pub(crate) struct Remarks {
    pub list: Vec<String>,
    unlisted: u64,
}

impl Remarks {
    pub fn push(&mut self, b: &Budget, remark: String) {
        if self.list.len() < b.max_notes {
            self.list.push(remark);
        } else {
            self.unlisted += 1;
        }
    }

    /// The remarks, with the count of those not listed.
    pub fn finish(mut self, kind: &str) -> Vec<String> {
        if self.unlisted > 0 {
            self.list.push(format!(
                "{} more {kind} not listed (budget max_notes)",
                self.unlisted
            ));
        }
        self.list
    }
}
