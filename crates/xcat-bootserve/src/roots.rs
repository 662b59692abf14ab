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
    refresh: tokio::sync::Mutex<()>,
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
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directories now, re-read when due. Requests arriving during a
    /// re-read wait for it (one re-read at a time), so none of them sees
    /// the empty set that precedes the first one.
    pub async fn current(&self) -> Arc<Mapped> {
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let _one = self.refresh.lock().await;
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let (current, known) = {
            let s = self.state();
            (s.current.clone(), s.version)
        };
        let version = self.version().await;
        let reopen = version.is_none() || version != known || !current.complete();
        let paths = if reopen { self.paths().await } else { None };
        let mut next = current;
        if let Some((install, tftp)) = paths {
            let opened = tokio::task::spawn_blocking(move || Mapped::open(&install, &tftp));
            next = Arc::new(opened.await.unwrap_or_default());
        }
        let mut s = self.state();
        (s.current, s.version, s.checked) = (next.clone(), version, Some(Instant::now()));
        next
    }

    /// The directories, when checked less than [`RECHECK`] ago.
    fn fresh(&self) -> Option<Arc<Mapped>> {
        let s = self.state();
        let recent = s.checked.is_some_and(|t| t.elapsed() < RECHECK);
        recent.then(|| s.current.clone())
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
