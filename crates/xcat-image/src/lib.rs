//! Image trees for `capimage`: turning an untrusted tar stream from a node into a
//! netboot root tree, and managing that tree on the management node.
//!
//! * [`tar`]: our own streaming tar parser (ustar, GNU, pax, every GNU sparse flavour),
//!   the `xcat-tar` crate re-exported under its old path. We do not use a third-party
//!   tar crate because the archive comes from a node we do not trust and we need full
//!   control over limits, sparse handling and path checks.
//! * [`extract`]: the safe extractor. Every path is resolved beneath the staging root
//!   with `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS)`, so the
//!   image's own symlinks are never followed.
//! * [`manifest`]: per-entry records (built while extracting, or by scanning a tree),
//!   stored as TSV, with a readable diff; [`manifest_store`] keeps an extraction's
//!   records on disk, so memory does not grow with the archive.
//! * [`skeleton`], [`sysclean`], [`publish`], [`report`]: the later capture steps.
//! * [`secrets`]: the secrets left in a captured tree (keys, credentials, password
//!   hashes, tokens in histories), reported without their content and scrubbed on
//!   request; [`packages`]: the tree's installed packages and kernels
//!   ([`rpmdb`]: rpm's SQLite database, read without rpm).
//! * [`pack`]: packing a tree into the archive nodes boot.
//! * [`linkfarm`]: statelite's link farm in a tree (liteimg makes it, packimage
//!   swaps it back while it packs) and liteimg's record of it.
//! * [`tool`]: the one runner of local programs (mksquashfs here, depmod and the
//!   like in the image jobs, through xcat-jobkit).
//!
//! Only [`sys`] contains `unsafe` code (constructing uid/gid values); everything else
//! goes through `rustix`'s safe wrappers.
#![deny(unsafe_code)]

pub mod acl;
pub mod budget;
mod deferred;
pub mod extract;
pub mod linkfarm;
pub mod manifest;
pub mod manifest_store;
pub mod pack;
pub mod packages;
pub mod publish;
pub mod report;
pub mod rpmdb;
pub mod secrets;
pub mod signature;
pub mod skeleton;
#[allow(unsafe_code)]
pub mod sys;
pub mod sysclean;
pub mod tool;
pub mod util;

/// Path resolution beneath a root directory (openat2, no symlinks followed).
pub use xcat_beneath as beneath;
/// The tar reader, its header codecs and (feature `test-support`) the archive builder.
pub use xcat_tar as tar;

pub use extract::{
    extract, extract_async, ExtractError, ExtractOptions, ExtractSummary, Limits, Progress,
};
pub use manifest::{scan_tree, scan_tree_parallel, Difference, EntryType, Manifest, ManifestEntry};
pub use manifest_store::ManifestStore;
