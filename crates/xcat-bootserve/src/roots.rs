//! The two directories the URL prefixes map to, and when they are read.
//!
//! From the database (`Roots::from_site`): `site.installdir` (else the
//! daemon's `install_dir`) and `site.tftpdir` (else its `tftp_dir`), read at
//! start and again when the `site` table's change counter has moved, looked
//! at no more than once per [`RECHECK`] (so a request costs no database
//! round trip, and a `chdef -t site installdir=...` takes effect within a
//! second). A directory that cannot be opened answers 404 for its prefix
//! and is tried again at the next check.
//!
//! Each directory is held open (`xcat_image::beneath::Root`); every file is
//! resolved beneath that descriptor.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xcat_image::beneath::Root;

use crate::urlpath::Prefix;

/// The most often the site table's counter is looked at.
pub const RECHECK: Duration = Duration::from_secs(1);

/// The directories as opened at one time.
#[derive(Debug, Default)]
pub struct Mapped {
    pub install: Option<Root>,
    pub tftp: Option<Root>,
}

impl Mapped {
    /// Open both (a missing one stays `None`, logged).
    fn open(install: &Path, tftp: &Path) -> Mapped {
        let open = |p: &Path| match Root::open(p) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(dir = %p.display(), error = %e, "boot service: cannot open a served directory; its prefix answers 404");
                None
            }
        };
        Mapped {
            install: open(install),
            tftp: open(tftp),
        }
    }

    pub fn root(&self, p: Prefix) -> Option<&Root> {
        match p {
            Prefix::Install => self.install.as_ref(),
            Prefix::Tftpboot => self.tftp.as_ref(),
        }
    }

    fn complete(&self) -> bool {
        self.install.is_some() && self.tftp.is_some()
    }
}

/// Where the directories come from.
pub struct Roots {
    source: Source,
    state: Mutex<State>,
}

enum Source {
    Fixed {
        install: PathBuf,
        tftp: PathBuf,
    },
    Site {
        db: xcat_db::Db,
        default_install: PathBuf,
        default_tftp: PathBuf,
    },
}

struct State {
    current: Arc<Mapped>,
    checked: Option<Instant>,
    version: Option<i64>,
}

impl Roots {
    /// Fixed directories (tests, embedding programs).
    pub fn fixed(install: &Path, tftp: &Path) -> Roots {
        Roots::with(Source::Fixed {
            install: install.to_path_buf(),
            tftp: tftp.to_path_buf(),
        })
    }

    /// `site.installdir` and `site.tftpdir`, with the daemon's settings as
    /// the defaults; see the module's documentation for when they are read.
    pub fn from_site(db: xcat_db::Db, default_install: &Path, default_tftp: &Path) -> Roots {
        Roots::with(Source::Site {
            db,
            default_install: default_install.to_path_buf(),
            default_tftp: default_tftp.to_path_buf(),
        })
    }

    fn with(source: Source) -> Roots {
        Roots {
            source,
            state: Mutex::new(State {
                current: Arc::new(Mapped::default()),
                checked: None,
                version: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directories now, re-read when due.
    pub async fn current(&self) -> Arc<Mapped> {
        let (current, due, known) = {
            let s = self.state();
            let due = s.checked.map_or(true, |t| t.elapsed() >= RECHECK);
            (s.current.clone(), due, s.version)
        };
        if !due {
            return current;
        }
        self.state().checked = Some(Instant::now());
        let version = self.version().await;
        if version.is_some() && version == known && current.complete() {
            return current;
        }
        let Some((install, tftp)) = self.paths().await else {
            return current;
        };
        let fresh = Arc::new(
            tokio::task::spawn_blocking(move || Mapped::open(&install, &tftp))
                .await
                .unwrap_or_default(),
        );
        let mut s = self.state();
        s.current = fresh.clone();
        s.version = version;
        fresh
    }

    /// The site table's change counter (None: fixed directories, or unknown).
    async fn version(&self) -> Option<i64> {
        match &self.source {
            Source::Fixed { .. } => Some(0),
            Source::Site { db, .. } => db.site_version().await.ok().flatten(),
        }
    }

    /// The two paths now; None when the database cannot be read (the
    /// directories held stay in use).
    async fn paths(&self) -> Option<(PathBuf, PathBuf)> {
        match &self.source {
            Source::Fixed { install, tftp } => Some((install.clone(), tftp.clone())),
            Source::Site {
                db,
                default_install,
                default_tftp,
            } => {
                let install = site_dir(db, "installdir", default_install).await;
                let tftp = site_dir(db, "tftpdir", default_tftp).await;
                match (install, tftp) {
                    (Ok(i), Ok(t)) => Some((i, t)),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, "boot service: cannot read site.installdir/tftpdir; keeping the directories in use");
                        None
                    }
                }
            }
        }
    }
}

/// A site directory value, else the default.
async fn site_dir(
    db: &xcat_db::Db,
    key: &str,
    default: &Path,
) -> Result<PathBuf, xcat_db::DbError> {
    Ok(match db.site(key).await? {
        Some(v) if !v.trim().is_empty() => PathBuf::from(v.trim()),
        _ => default.to_path_buf(),
    })
}
