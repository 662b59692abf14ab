//! Ceilings over one whole extraction: what an untrusted archive may make the
//! extractor hold, write or leave for later steps, however it is shaped.
//!
//! [`crate::tar::Limits`] bounds each piece of metadata of one entry; a
//! [`Budget`] bounds the sum over the archive. Every exceeded budget is one
//! [`Exceeded`] error naming the entry and the budget, and the extraction stops.

/// Ceilings over one extraction ([`crate::ExtractOptions::budget`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Most entries in the archive.
    pub max_entries: u64,
    /// Most metadata bytes kept (pax records, xattrs, names, notes).
    pub max_metadata_bytes: u64,
    /// Most logical bytes of regular files, summed over the archive (holes
    /// included: a later packing step reads every one of them). Callers that
    /// know the source's size set it from that (capimage: the node's usage).
    pub max_logical_bytes: u64,
    /// Where `max_logical_bytes` comes from, for the error (`4 times the 2.1 GB
    /// the node reports in use, plus 16 GiB`); empty for the default.
    pub logical_source: String,
    /// Largest logical size of one regular file (holes included).
    pub max_file_logical_bytes: u64,
    /// Most notes and warnings kept in the summary.
    pub max_notes: usize,
}

/// Bytes in one tebibyte.
const TIB: u64 = 1 << 40;

impl Default for Budget {
    /// Defaults that no real root filesystem reaches, and far below what
    /// would keep the extractor (or a packer reading holes as zeros) busy
    /// for days.
    fn default() -> Self {
        Budget {
            max_entries: 20_000_000,
            max_metadata_bytes: 64 << 20,
            max_logical_bytes: 16 * TIB,
            logical_source: String::new(),
            max_file_logical_bytes: TIB,
            max_notes: 1000,
        }
    }
}

/// A budget an archive went over.
#[derive(Debug, Clone, thiserror::Error)]
#[error("entry {entry}: {what} would be {size} bytes, over the budget of {limit} ({hint})")]
pub struct Exceeded {
    /// The entry that went over.
    pub entry: String,
    /// What was counted (`logical size`, `logical size of all files`...).
    pub what: String,
    pub size: u64,
    pub limit: u64,
    /// What the budget is and what to do about it.
    pub hint: String,
}

impl Budget {
    /// Checks a regular file of `size` logical bytes arriving when `so_far`
    /// logical bytes were already extracted; `entry` names it in the error.
    pub fn check_file(&self, entry: &str, size: u64, so_far: u64) -> Result<(), Exceeded> {
        let over = |what: &str, size: u64, limit: u64, source: &str| Exceeded {
            entry: entry.to_string(),
            what: what.to_string(),
            size,
            limit,
            hint: format!(
                "{source}holes of sparse files count; exclude the file from the capture if \
                 it really is that large"
            ),
        };
        if size > self.max_file_logical_bytes {
            let limit = self.max_file_logical_bytes;
            return Err(over("its logical size", size, limit, ""));
        }
        let total = so_far.saturating_add(size);
        if total > self.max_logical_bytes {
            let source = match self.logical_source.as_str() {
                "" => String::new(),
                s => format!("the budget is {s}; "),
            };
            let what = "the logical size of all files";
            return Err(over(what, total, self.max_logical_bytes, &source));
        }
        Ok(())
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
