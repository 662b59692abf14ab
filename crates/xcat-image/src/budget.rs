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
//! The daemon should stay under about 100 MiB during any capture. The per-entry
//! records (the manifest) are therefore kept on disk while the archive streams
//! in ([`crate::manifest_store`]: memory is its page cache, a few MiB, whatever
//! the number of entries), and only what must wait for the end in memory, the
//! deferred ACLs (default ACLs of directories, ACLs naming users or groups),
//! counts against `max_metadata_bytes` (64 MiB: real trees defer a few hundred;
//! the rest of the 100 MiB is the daemon itself, the 128 KiB data buffer, the
//! decoder and the parser's per-entry limits).
//!
//! `max_manifest_bytes` (4 GiB) bounds the disk the manifest store may fill:
//! each entry is charged 120 bytes (its record and index entry, measured) plus
//! its path, link target and xattrs (`ENTRY_BOOKKEEPING` in the extractor). A
//! full server install (300,000 entries) is about 60 MB, a large HPC image of a
//! million entries about 200 MB, so every real root filesystem passes.
//!
//! `max_entries` (5 million) bounds the count, and with it time and the manifest
//! file. `max_notes` (1,000) bounds the notes and warnings listed (each is one
//! line naming an entry, at most a few KiB with the parser's path limit): beyond it
//! they are counted in one line, so a million skipped entries cost a counter, not
//! a million strings.
//!
//! The logical size of regular files (holes included, since a packer reads them
//! as zeros) has two ceilings: `max_file_logical_bytes` for one file (1 TiB) and
//! `max_logical_bytes` over the archive (16 TiB by default; capimage sets it from
//! what the node reports in use).

use serde::Deserialize;

/// Bytes in one tebibyte.
const TIB: u64 = 1 << 40;

/// Ceilings for one extraction.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Most entries (files, directories, links, devices...) in one archive.
    pub max_entries: u64,
    /// Most bytes of bookkeeping kept in memory until the archive ends: the
    /// ACLs set at the end (notes are bounded by `max_notes`, records are on
    /// disk and bounded by `max_manifest_bytes`).
    pub max_metadata_bytes: u64,
    /// Most bytes of per-entry records (with their names, link targets and
    /// xattrs) the manifest store keeps on disk during the extraction.
    pub max_manifest_bytes: u64,
    /// Most logical bytes of regular files, summed over the archive (holes
    /// included: a later packing step reads every one of them). Callers that
    /// know the source's size set it from that (capimage: the node's usage).
    pub max_logical_bytes: u64,
    /// Where `max_logical_bytes` comes from, for the error (`4 times the 2.1 GB
    /// the node reports in use, plus 16 GiB`); empty for a configured value.
    #[serde(skip)]
    pub logical_source: String,
    /// Largest logical size of one regular file (holes included).
    pub max_file_logical_bytes: u64,
    /// Most notes and warnings listed one by one; the rest are counted.
    pub max_notes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_entries: 5_000_000,
            max_metadata_bytes: 64 << 20,
            max_manifest_bytes: 4 << 30,
            max_logical_bytes: 16 * TIB,
            logical_source: String::new(),
            max_file_logical_bytes: TIB,
            max_notes: 1000,
        }
    }
}

/// An exceeded budget: the extraction stops here.
#[derive(Debug, Clone, thiserror::Error)]
#[error("entry {entry}: {what} would be {size}, over the budget {budget} of {limit}; {hint}")]
pub struct Exceeded {
    /// The entry that went over.
    pub entry: String,
    /// The budget's configuration name (`max_entries`...).
    pub budget: &'static str,
    /// What was counted (`the number of entries`, `its logical size`...).
    pub what: &'static str,
    pub size: u64,
    pub limit: u64,
    /// What the budget is and what to do about it.
    pub hint: String,
}

impl Exceeded {
    /// Over a budget an admin sets in `[capture.budget]`.
    fn configured(
        entry: &str,
        budget: &'static str,
        what: &'static str,
        size: u64,
        limit: u64,
    ) -> Self {
        Exceeded {
            entry: entry.to_string(),
            budget,
            what,
            size,
            limit,
            hint: format!("raise [capture.budget] {budget} if the node really is that large"),
        }
    }
}

impl Budget {
    /// Checks a regular file of `size` logical bytes arriving when `so_far`
    /// logical bytes were already extracted; `entry` names it in the error.
    pub fn check_file(&self, entry: &str, size: u64, so_far: u64) -> Result<(), Exceeded> {
        let holes = "holes of sparse files count; exclude the file from the capture if it \
                     really is that large";
        if size > self.max_file_logical_bytes {
            let budget = "max_file_logical_bytes";
            let mut e = Exceeded::configured(
                entry,
                budget,
                "its logical size",
                size,
                self.max_file_logical_bytes,
            );
            e.hint = holes.to_string();
            return Err(e);
        }
        let total = so_far.saturating_add(size);
        if total > self.max_logical_bytes {
            let what = "the logical size of all files";
            let mut e = Exceeded::configured(
                entry,
                "max_logical_bytes",
                what,
                total,
                self.max_logical_bytes,
            );
            e.hint = match self.logical_source.as_str() {
                "" => holes.to_string(),
                s => format!("the budget is {s}; {holes}"),
            };
            return Err(e);
        }
        Ok(())
    }
}

/// What one extraction has spent so far, checked against its [`Budget`].
#[derive(Debug, Default)]
pub(crate) struct Spent {
    entries: u64,
    metadata: u64,
    manifest: u64,
}

impl Spent {
    /// Counts one more entry, whose record takes `record` bytes of the
    /// manifest store and which keeps `metadata` bytes in memory to the end.
    pub fn entry(
        &mut self,
        b: &Budget,
        entry: &str,
        (record, metadata): (u64, u64),
    ) -> Result<(), Exceeded> {
        self.entries += 1;
        if self.entries > b.max_entries {
            let what = "the number of entries";
            return Err(Exceeded::configured(
                entry,
                "max_entries",
                what,
                self.entries,
                b.max_entries,
            ));
        }
        self.manifest = self.manifest.saturating_add(record);
        if self.manifest > b.max_manifest_bytes {
            let what = "the bytes of records in the manifest store";
            return Err(Exceeded::configured(
                entry,
                "max_manifest_bytes",
                what,
                self.manifest,
                b.max_manifest_bytes,
            ));
        }
        self.metadata(b, entry, metadata)
    }

    /// Counts `bytes` more of metadata kept until the end of the extraction.
    pub fn metadata(&mut self, b: &Budget, entry: &str, bytes: u64) -> Result<(), Exceeded> {
        self.metadata = self.metadata.saturating_add(bytes);
        if self.metadata > b.max_metadata_bytes {
            let what = "the bytes of metadata kept in memory";
            let limit = b.max_metadata_bytes;
            return Err(Exceeded::configured(
                entry,
                "max_metadata_bytes",
                what,
                self.metadata,
                limit,
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_and_the_sum_are_both_bounded() {
        let b = Budget {
            max_logical_bytes: 100,
            max_file_logical_bytes: 60,
            ..Budget::default()
        };
        b.check_file("a", 60, 40).unwrap();
        let e = b.check_file("big", 61, 0).unwrap_err();
        assert!(
            e.to_string().starts_with("entry big: its logical size"),
            "{e}"
        );
        let e = b.check_file("c", 50, 60).unwrap_err();
        assert_eq!((e.size, e.limit), (110, 100));
        assert!(b.check_file("d", 1, u64::MAX).is_err());
    }
}
