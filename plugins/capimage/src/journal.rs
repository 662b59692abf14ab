//! The journal of running captures: one file per capture naming its image
//! directory, so a daemon killed mid-capture restores and cleans that
//! directory at its next start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use xcat_image::publish::{self, ImageLock};
use xcat_plugin::Settings;

use crate::error::CaptureError;

/// Journal entry: the image directory of a running capture, so that a
/// killed daemon's staging tree is removed at its next start.
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn create(settings: &Settings, dir: &Path) -> Result<Journal, CaptureError> {
        let jdir = crate::journal_dir(settings);
        std::fs::create_dir_all(&jdir).map_err(CaptureError::io("create", &jdir))?;
        let path = jdir.join(format!("{}-{}", std::process::id(), now_unix_nanos()));
        std::fs::write(&path, dir.as_os_str().as_encoded_bytes())
            .map_err(CaptureError::io("write", &path))?;
        Ok(Journal { path })
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn now_unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Clean up after captures a killed daemon left behind: restore a published
/// tree interrupted between its two renames, remove staging trees. Called by
/// the daemon at start; returns what it did, for the log.
pub fn recover_at_start(settings: &Settings) -> Vec<String> {
    let mut done = Vec::new();
    let jdir = crate::journal_dir(settings);
    let Ok(entries) = std::fs::read_dir(&jdir) else {
        return done;
    };
    for e in entries.flatten() {
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue;
        };
        let dir = PathBuf::from(String::from_utf8_lossy(&bytes).into_owned());
        match publish::lock_image_dir(
            &dir,
            &format!("recovery by xcatd (pid {})", std::process::id()),
        ) {
            Ok(_lock) => {
                if let Ok(Some(g)) = publish::recover(&dir) {
                    done.push(format!(
                        "{}: restored rootimg from {}",
                        dir.display(),
                        g.display()
                    ));
                }
                if let Ok(removed) = publish::cleanup_stale(&dir) {
                    for r in removed {
                        done.push(format!(
                            "{}: removed stale staging tree {}",
                            dir.display(),
                            r.display()
                        ));
                    }
                }
                let _ = std::fs::remove_file(e.path());
            }
            Err(err) => done.push(format!("{}: left alone: {err}", dir.display())),
        }
    }
    done
}

/// The staging tree of one capture, beside `rootimg/`, with its journal
/// entry: discarded on failure, renamed into place on success.
pub struct Staging {
    pub dir: PathBuf,
    pub path: PathBuf,
    journal: Journal,
    /// The image lock, kept by the blocking work on this tree until it ends.
    hold: Arc<ImageLock>,
}

impl Staging {
    /// Finish what an earlier capture of this image left, then start anew.
    /// `hold` is the image lock the caller took.
    pub fn prepare(
        settings: &Settings,
        dir: &Path,
        hold: Arc<ImageLock>,
    ) -> Result<Staging, CaptureError> {
        let _ = publish::recover(dir);
        let _ = publish::cleanup_stale(dir);
        let journal = Journal::create(settings, dir)?;
        let path = publish::create_staging(dir).map_err(CaptureError::Staging)?;
        Ok(Staging {
            dir: dir.to_path_buf(),
            path,
            journal,
            hold,
        })
    }

    /// Remove the staging tree; the published image stays as it was.
    pub async fn discard(self) {
        let (path, hold) = (self.path.clone(), self.hold.clone());
        let _ = xcat_jobkit::blocking(move || {
            let _hold = hold;
            publish::discard_staging(&path)
        })
        .await;
        drop(self.journal);
    }

    /// Make the staging tree the image (the previous one kept as a
    /// generation, `keep` generations in all).
    pub async fn publish(
        self,
        node: &str,
        keep: usize,
    ) -> Result<publish::PublishOutcome, CaptureError> {
        let (dir, path, hold) = (self.dir.clone(), self.path.clone(), self.hold.clone());
        let published = xcat_jobkit::blocking(move || {
            let _hold = hold;
            publish::publish(&dir, &path, keep)
        });
        match published.await? {
            Ok(o) => Ok(o),
            Err(source) => {
                self.discard().await;
                Err(CaptureError::Publish {
                    node: node.to_string(),
                    source,
                })
            }
        }
    }
}
