//! Locking, staging and atomic publication of an image directory.
//!
//! Layout of an image directory `<dir>` (served to nodes as it is, so it stays
//! readable by all):
//! * `.private/` — mode 0700, owned by root: every tree a node sent lives in it, so
//!   that nothing of a node's tree (setuid programs, file capabilities, device
//!   nodes) is reachable by a local user of the server;
//!   * `.private/rootimg/` — the published tree;
//!   * `.private/rootimg.gen-<N>/` — previous trees, `N` counting up (highest = newest);
//!   * `.private/rootimg.gen-<N>.records/` — the image directory's manifest and
//!     signed record as they were when that tree was published ([`TREE_RECORDS`],
//!     hard links: their writers replace them by rename, never in place), so an
//!     earlier generation can still be verified;
//!   * `.private/.rootimg.staging-<pid>-<random>/` — a capture in progress (same
//!     filesystem, so publication is a rename);
//! * `rootimg` — a symbolic link to `.private/rootimg`: the path xCAT's admins and
//!   tools use keeps working for root, and leads nowhere for anyone else;
//! * `.capimage.lock` — `flock`ed by the running capture; holds a line describing it.
//!
//! An image directory of the earlier layout (a real `rootimg/` beside its
//! generations) is moved into `.private/` by [`private_dir`], under the lock.
//!
//! Publication is two renames: `rootimg -> rootimg.gen-<N+1>`, then
//! `staging -> rootimg`. **Crash rule**: if the process dies between them, `rootimg` is
//! missing and the newest generation is the previous image; [`recover`] (run at daemon
//! start and before each capture, with the lock held) renames the newest generation
//! back to `rootimg`. A crash before the first rename leaves a staging directory, which
//! [`cleanup_stale`] removes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const LOCK_NAME: &str = ".capimage.lock";
const STAGING_PREFIX: &str = ".rootimg.staging-";
const GEN_PREFIX: &str = "rootimg.gen-";
/// The directory of an image's trees, closed to everyone but root.
pub const PRIVATE: &str = ".private";
const ROOTIMG: &str = "rootimg";
/// The image directory's files that describe its published tree.
pub const TREE_RECORDS: [&str; 2] = ["capimage-manifest.tsv", "image-record.txt"];
const RECORDS_SUFFIX: &str = ".records";

/// Generation `n` of image directory `dir`: its tree and the directory of
/// its records ([`TREE_RECORDS`]).
pub fn generation(dir: &Path, n: u64) -> (PathBuf, PathBuf) {
    let private = dir.join(PRIVATE);
    (
        private.join(format!("{GEN_PREFIX}{n}")),
        private.join(format!("{GEN_PREFIX}{n}{RECORDS_SUFFIX}")),
    )
}

fn records_of(gen: &Path) -> PathBuf {
    let mut p = gen.as_os_str().to_owned();
    p.push(RECORDS_SUFFIX);
    PathBuf::from(p)
}

/// Keep `image_dir`'s current records for the tree about to become `gen`:
/// hard links in `gen`'s records directory (made anew).
fn keep_records(image_dir: &Path, gen: &Path) -> io::Result<()> {
    let records = records_of(gen);
    remove_tree(&records)?;
    fs::DirBuilder::new().mode(0o700).create(&records)?;
    for name in TREE_RECORDS {
        match fs::hard_link(image_dir.join(name), records.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// What `<dir>/rootimg` points at.
fn rootimg_link() -> PathBuf {
    Path::new(PRIVATE).join(ROOTIMG)
}

/// The private directory of image directory `dir`, made (mode 0700) or closed
/// again if it was opened, with the trees of the earlier layout moved into it
/// and `<dir>/rootimg` pointing into it. Run with the image lock held.
pub fn private_dir(dir: &Path) -> Result<PathBuf, PublishError> {
    let private = dir.join(PRIVATE);
    match fs::DirBuilder::new().mode(0o700).create(&private) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("creating", &private)(e)),
    }
    // Not through a symlink, and 0700 whatever someone made of it.
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&private)
        .map_err(io_err("opening", &private))?;
    f.set_permissions(fs::Permissions::from_mode(0o700))
        .map_err(io_err("closing to other users", &private))?;
    migrate_earlier_layout(dir, &private)?;
    let link = dir.join(ROOTIMG);
    if fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(rootimg_link(), &link).map_err(io_err("linking", &link))?;
    }
    Ok(private)
}

/// A real `<dir>/rootimg` and `<dir>/rootimg.gen-<N>` (the earlier layout, or a
/// tree an admin made) move into `private`.
fn migrate_earlier_layout(dir: &Path, private: &Path) -> Result<(), PublishError> {
    let mut trees: Vec<PathBuf> = generations(dir)?.into_iter().map(|g| g.1).collect();
    let rootimg = dir.join(ROOTIMG);
    if fs::symlink_metadata(&rootimg).is_ok_and(|m| m.is_dir()) {
        trees.push(rootimg);
    }
    for t in trees {
        let to = private.join(t.file_name().expect("a tree has a name"));
        rename_noreplace(&t, &to).map_err(io_err("moving into the private directory", &t))?;
    }
    Ok(())
}

/// The published tree of `dir` to read: `<dir>/.private/rootimg`, or a real
/// `<dir>/rootimg` (a tree made by hand); None when there is none. A `rootimg`
/// symlink elsewhere is not followed.
pub fn published_tree(dir: &Path) -> Option<PathBuf> {
    let link = dir.join(ROOTIMG);
    let m = fs::symlink_metadata(&link).ok()?;
    let tree = if m.is_dir() {
        link
    } else if m.file_type().is_symlink() && fs::read_link(&link).ok()? == rootimg_link() {
        dir.join(rootimg_link())
    } else {
        return None;
    };
    fs::symlink_metadata(&tree)
        .is_ok_and(|m| m.is_dir())
        .then_some(tree)
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Another capture holds the image directory; the text is its description.
    #[error("another capture is running for {dir}: {holder}")]
    Busy { dir: PathBuf, holder: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> PublishError {
    let (what, path) = (what.to_string(), path.to_path_buf());
    move |source| PublishError::Io { what, path, source }
}

/// Holds the per-image lock while alive (the kernel drops the `flock` when the file
/// closes, also when the daemon dies).
#[derive(Debug)]
pub struct ImageLock {
    _file: File,
    path: PathBuf,
}

impl ImageLock {
    /// The lock file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the lock of image directory `dir` (created if missing) without waiting, and
/// writes `description` (node, pid, start time...) into it. When another job holds it,
/// fails at once with [`PublishError::Busy`] carrying that job's description.
pub fn lock_image_dir(dir: &Path, description: &str) -> Result<ImageLock, PublishError> {
    fs::create_dir_all(dir).map_err(io_err("creating image directory", dir))?;
    let path = dir.join(LOCK_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err("opening lock file", &path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim().to_string();
            let holder = if holder.is_empty() {
                "(no description)".to_string()
            } else {
                holder
            };
            return Err(PublishError::Busy {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(e) => return Err(io_err("locking", &path)(e.into())),
    }
    (|| -> io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{description}")?;
        file.flush()
    })()
    .map_err(io_err("writing lock file", &path))?;
    Ok(ImageLock { _file: file, path })
}

/// Twelve hex digits from the kernel's random source (the clock if it fails):
/// for names that must not collide with another run's.
pub fn random_suffix() -> String {
    let mut b = [0u8; 6];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b.copy_from_slice(&t.subsec_nanos().to_le_bytes().repeat(2)[..6]);
    }
    hex::encode(b)
}

/// Creates a fresh staging directory `<dir>/.private/.rootimg.staging-<pid>-<random>`.
pub fn create_staging(dir: &Path) -> Result<PathBuf, PublishError> {
    let p = private_dir(dir)?.join(format!(
        "{STAGING_PREFIX}{}-{}",
        std::process::id(),
        random_suffix()
    ));
    fs::create_dir(&p).map_err(io_err("creating staging directory", &p))?;
    Ok(p)
}

fn generations(dir: &Path) -> Result<Vec<(u64, PathBuf)>, PublishError> {
    let mut out = Vec::new();
    for ent in fs::read_dir(dir).map_err(io_err("listing", dir))? {
        let ent = ent.map_err(io_err("listing", dir))?;
        let name = ent.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix(GEN_PREFIX))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((n, ent.path()));
    }
    out.sort();
    Ok(out)
}

/// What [`publish`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Where the previous `rootimg` went, if there was one.
    pub previous: Option<PathBuf>,
    /// Generations removed because of `keep`.
    pub pruned: Vec<PathBuf>,
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )?;
    Ok(())
}

/// Makes `staging` the new `<dir>/rootimg`, keeping the old tree as the newest
/// generation and removing generations beyond the `keep` newest.
pub fn publish(dir: &Path, staging: &Path, keep: usize) -> Result<PublishOutcome, PublishError> {
    let image_dir = dir;
    let dir = &private_dir(dir)?;
    let rootimg = dir.join(ROOTIMG);
    let mut outcome = PublishOutcome::default();
    if fs::symlink_metadata(&rootimg).is_ok() {
        let next = generations(dir)?.last().map(|g| g.0 + 1).unwrap_or(1);
        let gen = dir.join(format!("{GEN_PREFIX}{next}"));
        // before anything moves: a failure here leaves the image as it was
        keep_records(image_dir, &gen).map_err(io_err("keeping the records of", &gen))?;
        rename_noreplace(&rootimg, &gen)
            .map_err(io_err("moving the previous image aside to", &gen))?;
        outcome.previous = Some(gen);
    }
    rename_noreplace(staging, &rootimg).map_err(io_err("publishing the new image as", &rootimg))?;
    sync_dir(dir);
    let gens = generations(dir)?;
    let excess = gens.len().saturating_sub(keep);
    for (_, p) in gens.into_iter().take(excess) {
        remove_tree(&p).map_err(io_err("removing old generation", &p))?;
        let records = records_of(&p);
        remove_tree(&records).map_err(io_err("removing old generation", &records))?;
        outcome.pruned.push(p);
    }
    Ok(outcome)
}

/// Applies the crash rule: when `rootimg` is missing but generations exist, the newest
/// generation is renamed back to `rootimg`. Returns the generation restored.
pub fn recover(dir: &Path) -> Result<Option<PathBuf>, PublishError> {
    if !dir.exists() {
        return Ok(None);
    }
    let dir = &private_dir(dir)?;
    let rootimg = dir.join(ROOTIMG);
    if fs::symlink_metadata(&rootimg).is_ok() {
        return Ok(None);
    }
    let Some((_, newest)) = generations(dir)?.pop() else {
        return Ok(None);
    };
    rename_noreplace(&newest, &rootimg).map_err(io_err("restoring", &newest))?;
    // the image directory's records are still this tree's own
    let records = records_of(&newest);
    remove_tree(&records).map_err(io_err("removing", &records))?;
    sync_dir(dir);
    Ok(Some(newest))
}

/// Removes a tree without following symlinks inside it (std's `remove_dir_all` is
/// symlink-safe; a top-level symlink is removed itself).
fn remove_tree(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes leftover staging directories of `dir` (a crashed or killed capture). Run it
/// at daemon start and, with the image lock held, before each capture.
pub fn cleanup_stale(dir: &Path) -> Result<Vec<PathBuf>, PublishError> {
    // The earlier layout kept staging trees in `dir` itself.
    let mut removed = cleanup_stale_in(dir)?;
    if fs::symlink_metadata(dir.join(PRIVATE)).is_ok() {
        removed.extend(cleanup_stale_in(&private_dir(dir)?)?);
    }
    Ok(removed)
}

fn cleanup_stale_in(dir: &Path) -> Result<Vec<PathBuf>, PublishError> {
    let mut removed = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io_err("listing", dir)(e)),
    };
    for ent in rd {
        let ent = ent.map_err(io_err("listing", dir))?;
        if ent
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(STAGING_PREFIX))
        {
            let p = ent.path();
            remove_tree(&p).map_err(io_err("removing stale staging directory", &p))?;
            removed.push(p);
        }
    }
    Ok(removed)
}

/// Removes one staging directory (after a failed or cancelled capture).
pub fn discard_staging(staging: &Path) -> Result<(), PublishError> {
    remove_tree(staging).map_err(io_err("removing staging directory", staging))
}
