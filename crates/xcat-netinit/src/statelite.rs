//! `xcat-netinit statelite NEWROOT`: the statelite paths of a root that is
//! already at NEWROOT (unpacked `rootimg-statelite.gz`, or the read-only NFS
//! root), before `switch_root`, as xCAT's `rc.statelite` lays them out:
//!
//! * a tmpfs on `/.statelite` (the image's own `.statelite`, with liteimg's
//!   links, is hidden by it), with `tmpfs/` for per-boot copies;
//! * `STATEMNT=<server>:<dir>` mounted, `<node>/` made in it on the first
//!   boot, and `<dir>/<node>` mounted on `/.statelite/persistent`
//!   (`MNTOPTS=` options);
//! * the node's `litetree` and `litefile` entries asked of xcatd
//!   ([`crate::xcatreq`]); every litetree directory mounted read-only on
//!   `/.statelite/mnt/<n>` (n by priority) with its own mount options (xCAT
//!   ignores them);
//! * each litefile entry applied ([`apply`]), parents before children;
//! * what was done written to `/.statelite/statelite.log`.
//!
//! A mount or request that keeps failing is an error (`/init` says so and
//! tries again); one entry that cannot be applied is a line in the log and
//! on the console, and the others still are.

use crate::cmdline::Cmdline;
use crate::copy;
use crate::error::{Exit, Failure, Say};
use crate::mount::{self, Mounted};
use crate::nfs::{self, Share};
use crate::retry::Retry;
use crate::xcatreq;
use rustix::mount::MountFlags;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Below NEWROOT.
pub const STATE_DIR: &str = ".statelite";
/// The xCAT default for the persistent mount when `MNTOPTS=` is empty
/// (NFSv3 words the kernel also takes for NFSv4).
const DEFAULT_MNTOPTS: &str = "nolock,tcp,timeo=14,rsize=32768";

/// What one litefile entry asks for (xCAT's option words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `link` (and `tmpfs,rw`, which liteimg made a link): liteimg's links
    /// point into `/.statelite/tmpfs`; the copy made there is the file.
    Link,
    /// `tmpfs`, `rw`: a copy in the tmpfs, bind-mounted over the path.
    Tmpfs,
    /// `persistent`: a copy kept on the persistent mount, bind-mounted.
    Persistent,
    /// `link,persistent`: liteimg's link leads to the persistent copy.
    LinkPersistent,
    /// `ro`: the first litetree directory holding it, bind-mounted read-only.
    Ro,
    /// `link,ro`: liteimg's link leads to the litetree's file.
    LinkRo,
    /// `con`: every litetree's copy of the file, concatenated, bind-mounted.
    Con,
    /// `link,con`: the same, reached through liteimg's link.
    LinkCon,
    /// `localdisk`: a copy kept on the node's disk (a file system labelled
    /// `xcat-local`, [`crate::localdisk`]), bind-mounted; in RAM without one.
    Localdisk,
}

impl Kind {
    pub fn parse(options: &str) -> Option<Kind> {
        Some(match options {
            "link" | "tmpfs,rw" => Kind::Link,
            "tmpfs" | "rw" | "tempfs" | "" => Kind::Tmpfs,
            "persistent" => Kind::Persistent,
            "link,persistent" => Kind::LinkPersistent,
            "ro" => Kind::Ro,
            "link,ro" => Kind::LinkRo,
            "con" => Kind::Con,
            "link,con" => Kind::LinkCon,
            "localdisk" => Kind::Localdisk,
            _ => return None,
        })
    }
}

/// One litefile entry as the daemon sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub options: String,
    pub kind: Kind,
    /// Relative to the root, with its trailing `/` for a directory.
    pub rel: String,
}

/// `<options> <path>` lines (xcatreq's); a line that is not one is said
/// and skipped.
pub fn entries(lines: &[String], say: &Say) -> Vec<Entry> {
    let mut out = Vec::new();
    for l in lines {
        let mut w = l.split_whitespace();
        let (opts, path) = match (w.next(), w.next()) {
            (Some(p), None) if p.starts_with('/') => ("", p),
            (Some(o), Some(p)) => (o, p),
            _ => continue,
        };
        let rel = path.trim_start_matches('/');
        let kind = Kind::parse(opts);
        let clean = !rel.is_empty() && rel.split('/').all(|c| c != "." && c != "..");
        match kind {
            Some(kind) if path.starts_with('/') && clean => out.push(Entry {
                options: opts.to_string(),
                kind,
                rel: rel.to_string(),
            }),
            _ => say(&format!("statelite: litefile entry {l:?} ignored: unknown option or not a plain absolute path")),
        }
    }
    // parents before children: "etc/ssh/" sorts before "etc/ssh/x"
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

/// One litetree directory: `<server>:<dir>[ :<mount options>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub share: Share,
    pub options: String,
}

pub fn trees(lines: &[String], say: &Say) -> Vec<Tree> {
    let mut out = Vec::new();
    for l in lines {
        let mut w = l.split_whitespace();
        let share = w.next().map(Share::parse);
        let options = w.next().and_then(|o| o.strip_prefix(':')).unwrap_or("");
        match share {
            Some(Ok(share)) => out.push(Tree {
                share,
                options: options.to_string(),
            }),
            _ => say(&format!(
                "statelite: litetree entry {l:?} ignored: not <server address>:<dir>"
            )),
        }
    }
    out
}

/// The layout under NEWROOT while entries are applied.
pub struct Layout {
    pub root: PathBuf,
    /// The mounted litetree directories, by priority.
    pub trees: Vec<PathBuf>,
    /// Whether `/.statelite/persistent` is this node's persistent mount.
    pub persistent: bool,
    /// Whether `/.statelite/localdisk` is the node's local disk.
    pub local: bool,
}

impl Layout {
    fn state(&self, sub: &str, rel: &str) -> PathBuf {
        self.root
            .join(STATE_DIR)
            .join(sub)
            .join(rel.trim_end_matches('/'))
    }

    fn in_root(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_end_matches('/'))
    }

    /// The path as the booted node sees it beneath `/.statelite`.
    fn booted(&self, sub: &str, rel: &str) -> PathBuf {
        Path::new("/")
            .join(STATE_DIR)
            .join(sub)
            .join(rel.trim_end_matches('/'))
    }

    /// The litetree copies of `rel`, by priority (index, path).
    fn tree_copies(&self, rel: &str) -> Vec<(usize, PathBuf)> {
        let rel = rel.trim_end_matches('/');
        self.trees
            .iter()
            .enumerate()
            .map(|(i, t)| (i, t.join(rel)))
            .filter(|(_, p)| fs::symlink_metadata(p).is_ok())
            .collect()
    }

    /// What `rel` starts from: the first litetree's copy, else `fallback`.
    fn source(&self, rel: &str, fallback: PathBuf) -> Option<PathBuf> {
        let first = self.tree_copies(rel).into_iter().next().map(|(_, p)| p);
        first.or_else(|| fs::symlink_metadata(&fallback).is_ok().then_some(fallback))
    }

    /// `.default/<rel>`: where liteimg moved a linked path's original.
    fn default_copy(&self, rel: &str) -> PathBuf {
        self.root.join(".default").join(rel.trim_end_matches('/'))
    }
}

/// Fills `to` from `from`, or makes it empty (a directory for `dir/`).
fn fill(from: Option<&Path>, to: &Path, dir: bool) -> io::Result<()> {
    match from {
        Some(f) => copy::copy_all(f, to),
        None if dir => fs::create_dir_all(to),
        None => {
            fs::create_dir_all(to.parent().unwrap_or(Path::new("/")))?;
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(to)
                .map(|_| ())
        }
    }
}

fn bind(from: &Path, to: &Path, read_only: bool) -> io::Result<()> {
    rustix::mount::mount_bind(from, to)?;
    if read_only {
        let flags = MountFlags::BIND | MountFlags::RDONLY;
        rustix::mount::mount_remount(to, flags, "")?;
    }
    Ok(())
}

/// Points `at` (in the tmpfs, where liteimg's link leads) to `target`.
fn relink(at: &Path, target: &Path) -> io::Result<()> {
    if let Some(p) = at.parent() {
        fs::create_dir_all(p)?;
    }
    match fs::symlink_metadata(at) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(at)?,
        Ok(_) => fs::remove_file(at)?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, at)
}

/// The copy kept on `sub` (the persistent mount, the local disk) at `rel`:
/// made from `start` (or a litetree's copy) on the first boot only.
fn kept_copy(
    l: &Layout,
    sub: &str,
    e: &Entry,
    start: PathBuf,
) -> io::Result<(PathBuf, &'static str)> {
    let kept = l.state(sub, &e.rel);
    if fs::symlink_metadata(&kept).is_ok() {
        return Ok((kept, "kept"));
    }
    fill(
        l.source(&e.rel, start).as_deref(),
        &kept,
        e.rel.ends_with('/'),
    )?;
    Ok((kept, "first boot: copied"))
}

/// A `persistent` entry on a node without a persistent mount: in RAM.
fn without_persistent(l: &Layout, e: &Entry) -> io::Result<String> {
    let kind = if e.kind == Kind::Persistent {
        Kind::Tmpfs
    } else {
        Kind::Link
    };
    apply(l, &Entry { kind, ..e.clone() })?;
    Ok("kept in RAM: this node has no persistent mount (statelite.statemnt)".into())
}

/// Applies one entry; the returned text says what it became.
pub fn apply(l: &Layout, e: &Entry) -> io::Result<String> {
    let dir = e.rel.ends_with('/');
    let tmp = l.state("tmpfs", &e.rel);
    let target = l.in_root(&e.rel);
    match e.kind {
        Kind::Persistent | Kind::LinkPersistent if !l.persistent => without_persistent(l, e),
        Kind::Link => {
            fill(
                l.source(&e.rel, l.default_copy(&e.rel)).as_deref(),
                &tmp,
                dir,
            )?;
            Ok(format!(
                "copied into {}",
                l.booted("tmpfs", &e.rel).display()
            ))
        }
        Kind::Localdisk if l.local => {
            let (kept, how) = kept_copy(l, "localdisk", e, target.clone())?;
            bind(&kept, &target, false)?;
            Ok(format!("on the local disk ({how})"))
        }
        Kind::Tmpfs | Kind::Localdisk => {
            fill(l.source(&e.rel, target.clone()).as_deref(), &tmp, dir)?;
            bind(&tmp, &target, false)?;
            Ok(match e.kind {
                Kind::Localdisk => format!(
                    "in RAM, bind-mounted: this node has no file system labelled {}",
                    crate::localdisk::LABEL
                ),
                _ => "copied into the tmpfs, bind-mounted".into(),
            })
        }
        Kind::Persistent => {
            let (kept, how) = kept_copy(l, "persistent", e, target.clone())?;
            bind(&kept, &target, false)?;
            Ok(format!("persistent ({how})"))
        }
        Kind::LinkPersistent => {
            let (_, how) = kept_copy(l, "persistent", e, l.default_copy(&e.rel))?;
            relink(&tmp, &l.booted("persistent", &e.rel))?;
            Ok(format!("persistent ({how})"))
        }
        Kind::Ro | Kind::LinkRo => {
            let Some((i, from)) = l.tree_copies(&e.rel).into_iter().next() else {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no litetree directory has it",
                ));
            };
            if e.kind == Kind::Ro {
                bind(&from, &target, true)?;
            } else {
                relink(&tmp, &l.booted(&format!("mnt/{i}"), &e.rel))?;
            }
            Ok(format!("read-only from litetree {i}"))
        }
        Kind::Con | Kind::LinkCon => {
            let _ = fs::remove_file(&tmp);
            fill(None, &tmp, false)?;
            let copies = l.tree_copies(&e.rel);
            for (_, c) in &copies {
                copy::append(c, &tmp)?;
            }
            if e.kind == Kind::Con {
                bind(&tmp, &target, false)?;
            }
            Ok(format!("{} litetree copies concatenated", copies.len()))
        }
    }
}

/// What [`prepare`] did, for its console line.
#[derive(Debug, Default)]
pub struct Done {
    pub applied: usize,
    pub failed: usize,
    pub trees: usize,
    pub persistent: Option<String>,
}

/// What the step mounted and wrote down so far: kept on success, unmounted
/// (in reverse) when a later part fails.
#[derive(Default)]
struct Progress {
    mounts: Vec<Mounted>,
    log: String,
}

impl Progress {
    fn note(&mut self, line: String) {
        self.log.push_str(&line);
        self.log.push('\n');
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            drop(m);
        }
    }
}

/// The whole step; see the module documentation.
pub fn prepare(newroot: &Path, cmd: &Cmdline, say: &Say) -> Result<Done, Failure> {
    let state = newroot.join(STATE_DIR);
    let mut p = Progress::default();
    p.mounts.push(state_tmpfs(&state)?);
    let node = cmd.node.as_deref().unwrap_or("");
    let node = node.split('.').next().unwrap_or("").to_string();
    let persistent = persistent_mount(&state, cmd, &node, say)?.map(|(share, m)| {
        p.note(format!("persistent: {share} on /{STATE_DIR}/persistent"));
        p.mounts.push(m);
        share.to_string()
    });
    let xcat = cmd.xcat.as_deref().ok_or_else(|| {
        Failure::new(
            Exit::Cmdline,
            "statelite",
            "the command line has no XCAT=<address>:<port>",
            "run nodeset for this node again",
        )
    })?;
    let files = ask(xcat, "litefile", true, say)?;
    let tree_lines = ask(xcat, "litetree", false, say)?;
    let layout = Layout {
        root: newroot.to_path_buf(),
        local: local_disk(&state, &mut p, say),
        trees: mount_trees(&state, &trees(&tree_lines, say), &mut p, say)?,
        persistent: persistent.is_some(),
    };
    let mut done = apply_all(&layout, &entries(&files, say), &mut p, say);
    done.persistent = persistent;
    mtab_link(newroot, &mut p);
    if let Err(e) = fs::write(state.join("statelite.log"), &p.log) {
        say(&format!("statelite: writing statelite.log: {e}"));
    }
    std::mem::take(&mut p.mounts)
        .into_iter()
        .for_each(Mounted::keep);
    Ok(done)
}

/// The tmpfs on `/.statelite`, with `tmpfs/` and `mnt/` in it.
fn state_tmpfs(state: &Path) -> Result<Mounted, Failure> {
    mount::unmount_stale(state);
    let m = mount::tmpfs(state, None).map_err(|e| {
        let what = format!("mounting a tmpfs on {}", state.display());
        fatal(what, e, "the image lacks /.statelite: run liteimg for it")
    })?;
    for d in ["tmpfs", "mnt"] {
        fs::create_dir_all(state.join(d)).map_err(|e| {
            fatal(
                format!("making {}", state.join(d).display()),
                e,
                "check the initrd's RAM",
            )
        })?;
    }
    Ok(m)
}

/// The node's local disk on `/.statelite/localdisk`, if it has one.
fn local_disk(state: &Path, p: &mut Progress, say: &Say) -> bool {
    match crate::localdisk::mount_local(&state.join("localdisk")) {
        Ok(Some((dev, m))) => {
            p.note(format!(
                "localdisk: {} on /{STATE_DIR}/localdisk",
                dev.display()
            ));
            p.mounts.push(m);
            true
        }
        Ok(None) => false,
        Err(e) => {
            say(&format!(
                "statelite: mounting the local disk: {e}; localdisk entries stay in RAM"
            ));
            false
        }
    }
}

/// Every litetree directory, read-only on `/.statelite/mnt/<n>`.
fn mount_trees(
    state: &Path,
    trees: &[Tree],
    p: &mut Progress,
    say: &Say,
) -> Result<Vec<PathBuf>, Failure> {
    let mut dirs = Vec::new();
    for (i, t) in trees.iter().enumerate() {
        let at = state.join(format!("mnt/{i}"));
        let m = nfs::mount_retrying(&t.share, &at, &t.options, true, nfs::default_retry(), say)
            .map_err(|e| {
                let what = format!("mounting litetree {}", t.share);
                fatal(what, e, "check the litetree server and litetree.mntopts")
            })?;
        p.note(format!(
            "litetree {i}: {} on {} (options {:?})",
            t.share,
            at.display(),
            t.options
        ));
        p.mounts.push(m);
        dirs.push(at);
    }
    Ok(dirs)
}

/// Each entry applied; a failure is a line and the next is applied.
fn apply_all(layout: &Layout, entries: &[Entry], p: &mut Progress, say: &Say) -> Done {
    let mut done = Done {
        trees: layout.trees.len(),
        ..Done::default()
    };
    for e in entries {
        match apply(layout, e) {
            Ok(what) => {
                done.applied += 1;
                p.note(format!("{} /{}: {what}", e.options, e.rel));
            }
            Err(err) => {
                done.failed += 1;
                let line = format!("{} /{}: not applied: {err}", e.options, e.rel);
                say(&format!("statelite: {line}"));
                p.note(line);
            }
        }
    }
    done
}

fn fatal(what: String, e: io::Error, todo: &str) -> Failure {
    Failure::new(Exit::Retry, what, e.to_string(), todo)
}

/// `STATEMNT=<server>:<dir>`: `<dir>/<node>` made if missing, then mounted.
fn persistent_mount(
    state: &Path,
    cmd: &Cmdline,
    node: &str,
    say: &Say,
) -> Result<Option<(Share, Mounted)>, Failure> {
    let Some(statemnt) = cmd.statemnt.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let share = Share::parse(statemnt).map_err(|e| {
        Failure::new(
            Exit::Cmdline,
            "STATEMNT=",
            e.to_string(),
            "set statelite.statemnt to <server address>:<dir>, then nodeset",
        )
    })?;
    if node.is_empty() {
        return Err(Failure::new(
            Exit::Cmdline,
            "statelite",
            "STATEMNT= is set but NODE= is not",
            "run nodeset for this node again",
        ));
    }
    let opts = match cmd.mntopts.as_deref() {
        Some(o) if !o.is_empty() => o,
        _ => DEFAULT_MNTOPTS,
    };
    let at = state.join("persistent");
    let todo = "check the NFS server and its export of statelite.statemnt (and statelite.mntopts)";
    let top = nfs::mount_retrying(&share, &at, opts, false, nfs::default_retry(), say)
        .map_err(|e| fatal(format!("mounting the persistent state {share}"), e, todo))?;
    let mine = at.join(node);
    if let Err(e) = fs::create_dir_all(&mine) {
        return Err(fatal(
            format!("making {}/{node}", share),
            e,
            "the export must be writable by root (no root squash)",
        ));
    }
    top.unmount()
        .map_err(|e| fatal(format!("unmounting {share}"), e, todo))?;
    let share = share.join(node);
    let m = nfs::mount_retrying(&share, &at, opts, false, nfs::default_retry(), say)
        .map_err(|e| fatal(format!("mounting the persistent state {share}"), e, todo))?;
    Ok(Some((share, m)))
}

/// The answer's lines; `must_answer`: an empty answer is tried again (as
/// rc.statelite does, 15 times), since a litefile table is never empty.
fn ask(xcat: &str, command: &str, must_answer: bool, say: &Say) -> Result<Vec<String>, Failure> {
    let retry = Retry {
        tries: 15,
        first_wait: Duration::from_secs(1),
        max_wait: Duration::from_secs(20),
    };
    let answer = || match xcatreq::request(xcat, command, Duration::from_secs(30)) {
        Ok(lines) if !lines.is_empty() || !must_answer => Ok(lines),
        Ok(_) => Err("an empty answer".to_string()),
        Err(e) => Err(e.to_string()),
    };
    retry
        .run(answer, |attempt, why, wait| {
            say(&format!(
                "statelite: {command} from xcatd at {xcat}: {why}; try {attempt} of 15, again in {}s",
                wait.as_secs()
            ))
        })
        .map_err(|_| {
            Failure::new(
                Exit::Retry,
                format!("statelite: {command} from xcatd at {xcat}"),
                "no answer after 15 tries",
                "check that xcatd runs, that this node's address is its hosts.ip, and the policy rows for litefile and litetree",
            )
        })
}

/// `/etc/mtab` as a link to the kernel's list, where the root is writable
/// and it is not one yet.
fn mtab_link(root: &Path, p: &mut Progress) {
    let mtab = root.join("etc/mtab");
    if fs::symlink_metadata(&mtab).is_ok_and(|m| m.file_type().is_symlink()) {
        return;
    }
    let made = fs::remove_file(&mtab)
        .or_else(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .and_then(|_| std::os::unix::fs::symlink("../proc/self/mounts", &mtab));
    p.note(match made {
        Ok(()) => "/etc/mtab: linked to /proc/self/mounts".into(),
        Err(e) => format!("/etc/mtab: left as it is ({e})"),
    });
}

#[cfg(test)]
mod tests;
