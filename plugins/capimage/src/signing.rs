//! The published tree's manifest and the image's signed record.
//!
//! The manifest is built while the archive streams in, so it holds what the
//! node sent; the boot skeleton and sysclean then change a few entries.
//! Those entries and their directories are read again from the tree, so the
//! manifest beside the image describes the tree as published (what
//! `imgverify` compares it with). Then the record signs the manifest with
//! the server's image-signing key.

use std::io;
use std::path::Path;

use xcat_image::manifest::scan_entry;
use xcat_image::signature::{update_record, RecordUpdate, SignatureError, SigningKey};
use xcat_image::sysclean::SyscleanAction;
use xcat_image::util::unescape_bytes;
use xcat_image::ManifestStore;

/// Actions that did not change the tree.
fn changed_nothing(a: &SyscleanAction) -> bool {
    matches!(a.action.as_str(), "warning" | "skipped" | "skeleton kept")
}

/// Re-read every entry `actions` changed, and its directory, into `store`.
pub fn refresh_manifest(
    store: &mut ManifestStore,
    root: &Path,
    actions: &[SyscleanAction],
) -> io::Result<()> {
    let mut paths: Vec<Vec<u8>> = Vec::new();
    for a in actions.iter().filter(|a| !changed_nothing(a)) {
        let rel = unescape_bytes(a.path.trim_start_matches('/'))
            .ok_or_else(|| io::Error::other(format!("sysclean path {:?}", a.path)))?;
        let parent = rel
            .iter()
            .rposition(|&b| b == b'/')
            .map(|i| rel[..i].to_vec())
            .unwrap_or_default();
        paths.push(rel);
        paths.push(parent);
    }
    paths.sort();
    paths.dedup();
    for rel in paths {
        match scan_entry(root, &rel)? {
            Some(e) => store.insert(&e)?,
            None => store.remove(&rel)?,
        }
    }
    Ok(())
}

/// Sign the image directory's record (the manifest, anew): the key's
/// fingerprint, or None when the server has no image-signing key.
pub fn sign_capture(
    dir: &Path,
    key: Option<&SigningKey>,
) -> Result<Option<String>, SignatureError> {
    let Some(key) = key else {
        // the last capture's record vouches for a manifest that is gone
        let old = dir.join(xcat_image::signature::RECORD);
        match std::fs::remove_file(&old) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(SignatureError::Io {
                    path: old,
                    source: e,
                })
            }
            _ => return Ok(None),
        }
    };
    let update = RecordUpdate {
        fresh: true,
        add: &["capimage-manifest.tsv"],
        ..Default::default()
    };
    update_record(dir, key, update)?;
    Ok(Some(key.fingerprint()))
}
