//! After the stream: settle what the live node changed while it was read.
//!
//! * Files that changed during the read are read once more (with their
//!   parent directories, whose times the re-read would otherwise disturb).
//!   A file unchanged on the second read replaces the first copy; one that
//!   changed again, or cannot be re-read safely (a hard-link member, a name
//!   that is not UTF-8, past the re-read budget), is reported as possibly
//!   inconsistent; one that is gone by then is removed from the image, as if
//!   it had vanished before the first read.
//! * Entries that appeared after the listing are counted by a second walk
//!   that lists only entries whose inode changed since the capture began,
//!   compared with what was extracted.

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
use crate::churn::{relative, sample_push, NodeStderr};
use crate::error::CaptureError;
use crate::pipeline::{self, Wire};

/// Most bytes of names put on one re-read command line (bash's single
/// argument limit is 128 KiB, and the names are quoted twice).
const REREAD_NAME_BUDGET: usize = 32 * 1024;
/// Most bytes of names the appeared walk may return (bounded memory).
const APPEARED_OUTPUT_LIMIT: usize = 16 << 20;
/// How long the appeared walk may take.
const APPEARED_TIMEOUT: Duration = Duration::from_secs(300);

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

/// Which changed files can be re-read: regular files of one link, with
/// UTF-8 names, within the budget. The rest are possibly inconsistent.
fn plan_reread(
    node_err: &NodeStderr,
    manifest: &ManifestStore,
    churn: &mut ChurnReport,
) -> std::io::Result<Vec<Vec<u8>>> {
    let mut files = Vec::new();
    let mut budget = REREAD_NAME_BUDGET;
    for p in dedup(&node_err.changed) {
        let plain = manifest
            .get(&p)?
            .is_some_and(|e| e.kind == EntryType::File && e.hardlink.is_none());
        let fits = std::str::from_utf8(&p).is_ok() && p.len() + 3 <= budget;
        if plain && fits {
            budget -= p.len() + 3;
            files.push(p);
        } else {
            sample_push(&mut churn.possibly_inconsistent, &p);
        }
    }
    // Names beyond what was remembered cannot be re-read.
    churn.possibly_inconsistent.count += node_err.changed_count - node_err.changed.len() as u64;
    Ok(files)
}

/// The re-read's list: each file's parent directories, then the files.
fn reread_list(files: &[Vec<u8>]) -> Vec<String> {
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
    dirs.iter()
        .map(|d| name(d))
        .chain(files.iter().map(|f| name(f)))
        .collect()
}

/// Read the files that changed during the stream once more; updates the
/// summary's manifest and counts and the churn figures.
pub async fn reread(
    ctx: &Context,
    site: &Site<'_>,
    acls: bool,
    summary: &mut ExtractSummary,
    node_err: &NodeStderr,
    churn: &mut ChurnReport,
) -> Result<(), CaptureError> {
    let files = plan_reread(node_err, &summary.manifest, churn)
        .map_err(CaptureError::io("read the manifest of", site.staging))?;
    if files.is_empty() {
        return Ok(());
    }
    let script = pipeline::reread_script(&reread_list(&files), acls);
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

/// Count the entries created after the listing: a second walk lists only
/// entries whose inode changed since the capture began; those not in the
/// image appeared. Never fails the capture: a walk that cannot be done is
/// recorded in `appeared_not_counted`. Not after snapshots (below).
pub async fn count_appeared_live(
    ctx: &Context,
    site: &Site<'_>,
    patterns: (&[String], &[String]),
    node_err: &NodeStderr,
    manifest: &ManifestStore,
    churn: &mut ChurnReport,
) {
    // With snapshots, what was created later is simply not in the image,
    // and re-reading it live would undo the snapshot's consistency.
    let snapshotted = node_err
        .prelude
        .iter()
        .any(|c| matches!(c, crate::churn::PreludeNote::Snapshotted(_)));
    if !snapshotted {
        let started = node_err.started.as_deref();
        count_appeared(ctx, site, patterns, started, manifest, churn).await;
    }
}

async fn count_appeared(
    ctx: &Context,
    site: &Site<'_>,
    (excludes, includes): (&[String], &[String]),
    started: Option<&str>,
    manifest: &ManifestStore,
    churn: &mut ChurnReport,
) {
    let Some(since) = started.and_then(|s| s.trim().parse::<u64>().ok()) else {
        churn.appeared_not_counted = Some("the node did not report its clock".into());
        return;
    };
    let remote = Remote::new(ctx.settings.ssh.clone())
        .with_cancel(ctx.cancel.clone())
        .with_output_limit(APPEARED_OUTPUT_LIMIT);
    let script = pipeline::appeared_script(excludes, includes, since);
    let cmd = pipeline::command(&script);
    let out = match remote
        .run(site.node, site.addr, &cmd, Some(APPEARED_TIMEOUT))
        .await
    {
        // find exits 1 when entries vanish under the walk; -1 is a signal.
        Ok(o) if (0..=1).contains(&o.code()) => o,
        Ok(o) => {
            churn.appeared_not_counted = Some(format!(
                "the walk failed (exit {}): {}",
                o.code(),
                o.stderr.trim()
            ));
            return;
        }
        Err(e) => {
            churn.appeared_not_counted = Some(format!("the walk failed: {e}"));
            return;
        }
    };
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let rel = relative(name);
        // a name the store cannot answer for is not counted as appeared
        if !manifest.contains(&rel).unwrap_or(true) {
            sample_push(&mut churn.appeared, &rel);
        }
    }
    if out.stdout_truncated {
        churn.appeared_not_counted = Some(format!(
            "the walk's listing was cut at {} MiB: at least {} appeared",
            APPEARED_OUTPUT_LIMIT >> 20,
            churn.appeared.count
        ));
    }
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
        assert_eq!(
            reread_list(&files),
            vec![".", "./a/b", "./a/b/f", "./top", "./a/b/g"]
        );
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
        let files = plan_reread(&ne, &m, &mut churn).unwrap();
        assert_eq!(files, vec![b"plain".to_vec()]);
        assert_eq!(churn.possibly_inconsistent.count, 3);
        assert_eq!(
            churn.possibly_inconsistent.first,
            vec!["/linked", "/dir", "/missing"]
        );
    }
}
