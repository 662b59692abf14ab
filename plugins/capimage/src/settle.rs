//! After the stream: settle what the live node changed while it was read.
//!
//! * A walk lists the entries whose inode changed since the capture began
//!   (ctime): those not in the image appeared after the listing; those in
//!   it changed during the read, even where tar could not see it (a rename
//!   onto the name replaces the inode tar was reading, not its content).
//! * The files that changed, by tar's word or by ctime, are read once more
//!   (with their parent directories, whose times the re-read would
//!   otherwise disturb). A file unchanged on the second read (by tar and by
//!   ctime) replaces the first copy; one that changed again, or cannot be
//!   re-read safely (not a regular file, a hard-link member, a name that is
//!   not UTF-8 or holds a newline, past the re-read budget), is reported as
//!   possibly inconsistent; one that is gone by then is removed from the
//!   image, as if it had vanished before the first read.
//! * After snapshots there is no walk: what changed later is simply not in
//!   the image, and reading it live would undo the snapshot's consistency.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use xcat_image::beneath::{split_parent, Root};
use xcat_image::manifest::EntryType;
use xcat_image::report::ChurnReport;
use xcat_image::ExtractSummary;
use xcat_image::ManifestStore;
use xcat_plugin::Context;
use xcat_remote::Remote;

use crate::archive::{self, Finished};
use crate::churn::{relative, sample_push, NodeStderr, MAX_CHANGED};
use crate::error::CaptureError;
use crate::pipeline::{self, Wire};

/// Most bytes of names put on one re-read command line (bash's single
/// argument limit is 128 KiB, and the names are quoted twice).
const REREAD_NAME_BUDGET: usize = 32 * 1024;
/// Most bytes of names the walk after the stream may return (bounded memory).
const WALK_OUTPUT_LIMIT: usize = 16 << 20;
/// How long the walk after the stream may take.
const WALK_TIMEOUT: Duration = Duration::from_secs(300);

pub use crate::archive::Site;

/// The churn figures of a finished stream, before settling.
pub fn initial(node_err: &NodeStderr) -> ChurnReport {
    let mut churn = ChurnReport {
        vanished: node_err.vanished.clone(),
        ..Default::default()
    };
    churn.changed.count = node_err.changed_count;
    for p in dedup(&node_err.changed) {
        if churn.changed.first.len() < crate::churn::FIRST_FEW {
            churn.changed.first.push(show(&p));
        }
    }
    churn
}

fn show(rel: &[u8]) -> String {
    xcat_image::util::display_path(rel)
}

fn dedup(v: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut seen = BTreeSet::new();
    v.iter()
        .filter(|p| seen.insert(p.to_vec()))
        .cloned()
        .collect()
}

/// Every name that changed during the read: tar's, then the walk's that
/// tar did not name (these are added to `churn.changed`).
fn changed_names(
    node_err: &NodeStderr,
    since_start: &SinceStart,
    churn: &mut ChurnReport,
) -> Vec<Vec<u8>> {
    let mut names = dedup(&node_err.changed);
    let by_tar: BTreeSet<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
    let more: Vec<Vec<u8>> = since_start
        .changed
        .iter()
        .filter(|n| !by_tar.contains(n.as_slice()))
        .cloned()
        .collect();
    for n in &more {
        sample_push(&mut churn.changed, n);
    }
    churn.changed.count += since_start.changed_uncounted;
    names.extend(more);
    names
}

/// Which changed files can be re-read: regular files of one link, with
/// UTF-8 names free of newlines, within the budget. The rest are possibly
/// inconsistent.
fn plan_reread(
    names: &[Vec<u8>],
    uncounted: u64,
    manifest: &ManifestStore,
    churn: &mut ChurnReport,
) -> std::io::Result<Vec<Vec<u8>>> {
    let mut files = Vec::new();
    let mut budget = REREAD_NAME_BUDGET;
    for p in names {
        let plain = manifest
            .get(p)?
            .is_some_and(|e| e.kind == EntryType::File && e.hardlink.is_none());
        let fits = std::str::from_utf8(p).is_ok() && !p.contains(&b'\n') && p.len() + 3 <= budget;
        if plain && fits {
            budget -= p.len() + 3;
            files.push(p.clone());
        } else {
            sample_push(&mut churn.possibly_inconsistent, p);
        }
    }
    // Names beyond what was remembered cannot be re-read.
    churn.possibly_inconsistent.count += uncounted;
    Ok(files)
}

/// The re-read's list: each file's parent directories, then the files;
/// and where the files begin.
fn reread_list(files: &[Vec<u8>]) -> (Vec<String>, usize) {
    let mut dirs = BTreeSet::new();
    for f in files {
        let (parent, _) = split_parent(f);
        dirs.insert(parent.to_vec());
    }
    let name = |p: &[u8]| {
        if p.is_empty() {
            ".".to_string()
        } else {
            format!("./{}", String::from_utf8_lossy(p))
        }
    };
    let list = dirs
        .iter()
        .map(|d| name(d))
        .chain(files.iter().map(|f| name(f)))
        .collect();
    (list, dirs.len())
}

/// Read the files that changed during the stream once more; updates the
/// summary's manifest and counts and the churn figures.
pub async fn reread(
    ctx: &Context,
    site: &Site<'_>,
    acls: bool,
    summary: &mut ExtractSummary,
    node_err: &NodeStderr,
    since_start: &SinceStart,
    churn: &mut ChurnReport,
) -> Result<(), CaptureError> {
    let names = changed_names(node_err, since_start, churn);
    let uncounted =
        node_err.changed_count - node_err.changed.len() as u64 + since_start.changed_uncounted;
    let files = plan_reread(&names, uncounted, &summary.manifest, churn)
        .map_err(CaptureError::io("read the manifest of", site.staging))?;
    if files.is_empty() {
        return Ok(());
    }
    let (list, files_from) = reread_list(&files);
    let script = pipeline::reread_script(&list, files_from, acls);
    let mut run = archive::start(ctx, site, &script, Wire::None)?;
    let extracted = (&mut run.extraction).await;
    let again = run.finish(extracted, ctx).await?;
    merge_reread(site.staging, &files, again, summary, churn)
}

/// Fold the re-read into the first pass: new copies replace old ones, files
/// gone by now leave the image, files that changed again are reported.
fn merge_reread(
    staging: &Path,
    files: &[Vec<u8>],
    again: Finished,
    summary: &mut ExtractSummary,
    churn: &mut ChurnReport,
) -> Result<(), CaptureError> {
    let changed_again: BTreeSet<Vec<u8>> = again.node_err.changed.iter().cloned().collect();
    churn.possibly_inconsistent.count +=
        again.node_err.changed_count - again.node_err.changed.len() as u64;
    let root = Root::open(staging).map_err(CaptureError::io("open", staging))?;
    let store = CaptureError::io("record the manifest of", staging);
    merge_files(&root, files, &again, summary, churn, &changed_again)
        .and_then(|()| merge_directories(&again, summary))
        .map_err(|e| match e {
            Merge::Store(e) => store(e),
            Merge::Capture(e) => e,
        })
}

/// Why a merge step failed: the manifest store, or the tree.
enum Merge {
    Store(std::io::Error),
    Capture(CaptureError),
}

impl From<std::io::Error> for Merge {
    fn from(e: std::io::Error) -> Self {
        Merge::Store(e)
    }
}

/// Each re-read file replaces its first copy, or, gone by now, leaves the image.
fn merge_files(
    root: &Root,
    files: &[Vec<u8>],
    again: &Finished,
    summary: &mut ExtractSummary,
    churn: &mut ChurnReport,
    changed_again: &BTreeSet<Vec<u8>>,
) -> Result<(), Merge> {
    for f in files {
        match again.summary.manifest.get(f)? {
            Some(entry) => {
                summary.manifest.insert(&entry)?;
                if changed_again.contains(f) {
                    sample_push(&mut churn.possibly_inconsistent, f);
                } else {
                    churn.reread += 1;
                }
            }
            None => {
                root.unlink(f).map_err(|source| {
                    Merge::Capture(CaptureError::Remove {
                        path: show(f),
                        source,
                    })
                })?;
                summary.manifest.remove(f)?;
                summary.entries = summary.entries.saturating_sub(1);
                summary.counts.files = summary.counts.files.saturating_sub(1);
                sample_push(&mut churn.vanished, f);
            }
        }
    }
    Ok(())
}

/// The parent directories were read again too: keep their new metadata.
fn merge_directories(again: &Finished, summary: &mut ExtractSummary) -> Result<(), Merge> {
    again.summary.manifest.for_each(|entry| {
        if entry.kind == EntryType::Dir {
            summary.manifest.insert(&entry)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// What the walk after the stream found in the image: entries (other than
/// directories) whose inode changed since the capture began.
#[derive(Debug, Default)]
pub struct SinceStart {
    pub changed: Vec<Vec<u8>>,
    /// Changed entries past [`MAX_CHANGED`]: counted, not named.
    pub changed_uncounted: u64,
}

/// Walk the live node for entries whose inode changed since the capture
/// began: those not in the image appeared (counted in `churn`), the others
/// are returned. Never fails the capture: a walk that cannot be done is
/// recorded in `appeared_not_counted`. Not after snapshots (see the module
/// comment).
pub async fn walk_since_start(
    ctx: &Context,
    site: &Site<'_>,
    patterns: (&[String], &[String]),
    node_err: &NodeStderr,
    manifest: &ManifestStore,
    churn: &mut ChurnReport,
) -> SinceStart {
    let snapshotted = node_err
        .prelude
        .iter()
        .any(|c| matches!(c, crate::churn::PreludeNote::Snapshotted(_)));
    if snapshotted {
        return SinceStart::default();
    }
    let started = node_err.started.as_deref();
    let Some(since) = started.and_then(|s| s.trim().parse::<u64>().ok()) else {
        churn.appeared_not_counted = Some("the node did not report its clock".into());
        return SinceStart::default();
    };
    match walk(ctx, site, patterns, since).await {
        Ok((listing, cut)) => {
            let found = sort_listing(&listing, manifest, churn);
            if cut {
                churn.appeared_not_counted = Some(format!(
                    "the walk's listing was cut at {} MiB: at least {} appeared",
                    WALK_OUTPUT_LIMIT >> 20,
                    churn.appeared.count
                ));
            }
            found
        }
        Err(why) => {
            churn.appeared_not_counted = Some(why);
            SinceStart::default()
        }
    }
}

/// The walk's listing (type letter and name, NUL-ended), and whether it
/// was cut at the output limit.
async fn walk(
    ctx: &Context,
    site: &Site<'_>,
    (excludes, includes): (&[String], &[String]),
    since: u64,
) -> Result<(Vec<u8>, bool), String> {
    let remote = Remote::new(ctx.settings.ssh.clone())
        .with_cancel(ctx.cancel.clone())
        .with_output_limit(WALK_OUTPUT_LIMIT);
    let script = pipeline::changed_since_script(excludes, includes, since);
    let cmd = pipeline::command(&script);
    match remote
        .run(site.node, site.addr, &cmd, Some(WALK_TIMEOUT))
        .await
    {
        // find exits 1 when entries vanish under the walk; -1 is a signal.
        Ok(o) if (0..=1).contains(&o.code()) => Ok((o.stdout, o.stdout_truncated)),
        Ok(o) => Err(format!(
            "the walk failed (exit {}): {}",
            o.code(),
            o.stderr.trim()
        )),
        Err(e) => Err(format!("the walk failed: {e}")),
    }
}

/// Sort the walk's entries: not in the image, they appeared; in it (and
/// not directories, whose times move with every entry made or removed in
/// them), they changed during the read.
fn sort_listing(listing: &[u8], manifest: &ManifestStore, churn: &mut ChurnReport) -> SinceStart {
    let mut found = SinceStart::default();
    for entry in listing.split(|b| *b == 0).filter(|n| n.len() > 1) {
        let (kind, name) = (entry[0], &entry[1..]);
        let rel = relative(name);
        // a name the store cannot answer for is neither
        match manifest.contains(&rel) {
            Ok(false) => sample_push(&mut churn.appeared, &rel),
            Ok(true) if kind != b'd' => {
                if found.changed.len() < MAX_CHANGED {
                    found.changed.push(rel);
                } else {
                    found.changed_uncounted += 1;
                }
            }
            _ => {}
        }
    }
    found
}

/// The summary line about a busy node, when it changed anything.
pub fn summary_line(node: &str, c: &ChurnReport) -> Option<String> {
    let appeared = match &c.appeared_not_counted {
        Some(_) if c.appeared.count == 0 => "not counted".to_string(),
        _ => c.appeared.count.to_string(),
    };
    if c.vanished.count + c.appeared.count + c.changed.count == 0
        && c.appeared_not_counted.is_none()
    {
        return None;
    }
    Some(format!(
        "capimage: {node} changed while it was read: {} entries vanished (not in the image), \
         {appeared} appeared (not in the image), {} files changed during the read ({} read again, \
         {} possibly inconsistent); details in the report",
        c.vanished.count, c.changed.count, c.reread, c.possibly_inconsistent.count
    ))
}

/// Warnings for the files whose copy may be inconsistent.
pub fn warnings(c: &ChurnReport) -> Vec<String> {
    let mut w: Vec<String> = c
        .possibly_inconsistent
        .first
        .iter()
        .map(|p| format!("{p}: changed while it was read, twice; the copy may be inconsistent"))
        .collect();
    let more = c.possibly_inconsistent.count - c.possibly_inconsistent.first.len() as u64;
    if more > 0 {
        w.push(format!("... and {more} more files possibly inconsistent"));
    }
    if let Some(why) = &c.appeared_not_counted {
        w.push(format!(
            "entries created during the capture were not counted: {why}"
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reread_list_has_parents_first() {
        let files = vec![b"a/b/f".to_vec(), b"top".to_vec(), b"a/b/g".to_vec()];
        let (list, files_from) = reread_list(&files);
        assert_eq!(list, vec![".", "./a/b", "./a/b/f", "./top", "./a/b/g"]);
        assert_eq!(files_from, 2);
    }

    #[test]
    fn only_plain_files_are_reread() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("plain"), "x").unwrap();
        std::fs::write(d.path().join("linked"), "x").unwrap();
        std::fs::hard_link(d.path().join("linked"), d.path().join("linked2")).unwrap();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        let m = xcat_image::scan_tree(d.path()).unwrap();
        let m = ManifestStore::from_manifest(&m).unwrap();
        let mut ne = NodeStderr::default();
        for n in ["plain", "linked", "dir", "missing", "plain"] {
            ne.add(&format!("tar: ./{n}: file changed as we read it"));
        }
        let mut churn = initial(&ne);
        assert_eq!(churn.changed.count, 5);
        assert_eq!(
            churn.changed.first,
            vec!["/plain", "/linked", "/dir", "/missing"]
        );
        let names = changed_names(&ne, &SinceStart::default(), &mut churn);
        let files = plan_reread(&names, 0, &m, &mut churn).unwrap();
        assert_eq!(files, vec![b"plain".to_vec()]);
        assert_eq!(churn.possibly_inconsistent.count, 3);
        assert_eq!(
            churn.possibly_inconsistent.first,
            vec!["/linked", "/dir", "/missing"]
        );
    }
    #[test]
    fn the_walk_sorts_appeared_from_changed_and_the_reread_takes_both() {
        let d = tempfile::tempdir().unwrap();
        for f in ["renamed", "by-tar", "link-target"] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        std::os::unix::fs::symlink("link-target", d.path().join("link")).unwrap();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        let m = xcat_image::scan_tree(d.path()).unwrap();
        let m = ManifestStore::from_manifest(&m).unwrap();
        let listing = b"d./dir\0f./renamed\0f./new\0l./link\0f./by-tar\0";
        let mut ne = NodeStderr::default();
        ne.add("tar: ./by-tar: file changed as we read it");
        let mut churn = initial(&ne);
        let found = sort_listing(listing, &m, &mut churn);
        assert_eq!(churn.appeared.first, vec!["/new"]);
        assert_eq!(
            found.changed,
            vec![b"renamed".to_vec(), b"link".to_vec(), b"by-tar".to_vec()]
        );
        let names = changed_names(&ne, &found, &mut churn);
        assert_eq!(churn.changed.count, 3, "by-tar is counted once");
        assert_eq!(churn.changed.first, vec!["/by-tar", "/renamed", "/link"]);
        let files = plan_reread(&names, 0, &m, &mut churn).unwrap();
        assert_eq!(files, vec![b"by-tar".to_vec(), b"renamed".to_vec()]);
        assert_eq!(churn.possibly_inconsistent.first, vec!["/link"]);
    }
}
