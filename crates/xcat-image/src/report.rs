//! `capimage-report.json`: what a capture did, for the admin and for audits.

use crate::extract::Counts;
use crate::sysclean::SyscleanAction;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;

/// Time spent in one phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub phase: String,
    pub seconds: f64,
}

/// Byte figures of a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Bytes received over the transport (compressed when compression was used).
    pub transferred_bytes: u64,
    /// Uncompressed archive bytes.
    pub archive_bytes: u64,
    /// Logical size of all regular files.
    pub content_bytes: u64,
    /// The node's estimate from preflight (bytes in use).
    pub estimated_bytes: u64,
    /// Size of the packed image, when packed.
    pub packed_bytes: Option<u64>,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CaptureReport {
    pub tool: String,
    pub tool_version: String,
    pub source_node: String,
    pub image_name: String,
    pub image_dir: String,
    pub kernel: String,
    pub arch: String,
    /// Unix time (seconds) the capture started and finished.
    pub started_at: u64,
    pub finished_at: u64,
    pub sizes: Sizes,
    pub counts: CountsReport,
    pub exclusions: Vec<String>,
    pub sysclean: Vec<SyscleanAction>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    pub timings: Vec<PhaseTiming>,
    /// What the node changed while it was read (a busy node is normal).
    #[serde(default)]
    pub churn: ChurnReport,
    /// The fingerprint of the image-signing key that signs the manifest
    /// (`image-record.txt`); None: the image is not signed.
    #[serde(default)]
    pub signed_by: Option<String>,
    /// How the tree was read: snapshots, live, the package manager's lock.
    #[serde(default)]
    pub consistency: ConsistencyReport,
    /// Secrets found in the published tree (after sysclean, and after
    /// `--scrub` removed them: then `sysclean` lists what it did).
    #[serde(default)]
    pub secrets: crate::secrets::SecretReport,
    /// The image's packages and kernel module trees.
    #[serde(default)]
    pub packages: crate::packages::PackageReport,
}

/// How consistent the captured tree is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyReport {
    /// `--snapshot` as given: `auto`, `require` or `off`.
    pub mode: String,
    /// Captured mount points read from a read-only snapshot, taken at once.
    pub snapshotted: Vec<String>,
    /// Captured mount points read live (see `churn` for what moved).
    pub live: Vec<String>,
    /// The package manager's lock: `held during the read (...)`, `held while
    /// the snapshots were taken (...)`, `no package manager lock on the
    /// node`, or `not held: <why>`.
    pub package_lock: String,
}

/// A count of entries and the first few of their paths (`/`-rooted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySample {
    pub count: u64,
    pub first: Vec<String>,
}

/// Entries the live node changed between the listing and the read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChurnReport {
    /// Listed, then gone when read: not in the image.
    pub vanished: EntrySample,
    /// Created after the listing: not in the image.
    pub appeared: EntrySample,
    /// Entries that changed while they were read: tar saw the content
    /// change, or their inode changed (ctime) after the capture began.
    pub changed: EntrySample,
    /// How many of the changed files were read again, unchanged this time.
    pub reread: u64,
    /// Files whose copy in the image may mix old and new content (changed
    /// again on the re-read, or not re-readable): check them before booting.
    pub possibly_inconsistent: EntrySample,
    /// Why the appeared count is missing, when it could not be taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appeared_not_counted: Option<String>,
}

/// Entry counts (mirrors [`Counts`], deserialisable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsReport {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub char_devices: u64,
    pub block_devices: u64,
    pub fifos: u64,
    pub skipped: u64,
}

impl CountsReport {
    /// From the extractor's counts.
    pub fn from_counts(entries: u64, c: &Counts) -> Self {
        CountsReport {
            entries,
            files: c.files,
            dirs: c.dirs,
            symlinks: c.symlinks,
            hardlinks: c.hardlinks,
            char_devices: c.char_devices,
            block_devices: c.block_devices,
            fifos: c.fifos,
            skipped: c.skipped,
        }
    }
}

impl CaptureReport {
    /// Writes the report as pretty JSON to `path` atomically (temporary name, fsync, rename).
    pub fn write_to(&self, path: &Path) -> io::Result<()> {
        crate::util::write_synced(path, |w| {
            serde_json::to_writer_pretty(&mut *w, self).map_err(io::Error::other)?;
            w.write_all(b"\n")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("capimage-report.json");
        let r = CaptureReport {
            tool: "capimage".into(),
            tool_version: "0.1.0".into(),
            source_node: "node1".into(),
            kernel: "6.1.0-18-amd64".into(),
            sizes: Sizes {
                archive_bytes: 10,
                ..Default::default()
            },
            sysclean: vec![SyscleanAction {
                action: "removed".into(),
                path: "/etc/ssh/ssh_host_rsa_key".into(),
                detail: String::new(),
            }],
            timings: vec![PhaseTiming {
                phase: "extract".into(),
                seconds: 1.5,
            }],
            ..Default::default()
        };
        r.write_to(&p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["source_node"], "node1");
        assert_eq!(v["sizes"]["archive_bytes"], 10);
        assert_eq!(v["sysclean"][0]["path"], "/etc/ssh/ssh_host_rsa_key");
        assert_eq!(v["timings"][0]["seconds"], 1.5);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
