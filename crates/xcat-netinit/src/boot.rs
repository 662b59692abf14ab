//! `xcat-netinit boot NEWROOT`: the image from `imgurl=` made the new root.
//!
//! 1. The command line ([`crate::cmdline`]): `imgurl=` (an `http://` URL naming
//!    an address), `rootlimit=`.
//! 2. The record `<imgurl>.info` ([`crate::record`]); a 404 is said ("no
//!    checksum published") and the image goes unverified. With `imgkey=`, the
//!    image directory's signed `image-record.txt` must verify with that key
//!    and name the packed file (and its `.info`): its size and SHA-256 are
//!    then the ones checked ([`crate::signed`]).
//! 3. RAM: the record's `ram_mib` against `MemTotal`.
//! 4. cpio or tar: a tmpfs at NEWROOT (`rootlimit=`, else the record's
//!    `tree_bytes` + 10% + 64 MiB), then fetch → verify → decompress → unpack on
//!    three threads ([`stream`]). squashfs: the file stored under the run
//!    directory and verified, loop-mounted read-only, a tmpfs for the overlay's
//!    upper and work directories, the overlay at NEWROOT ([`squashfs`]).
//!
//! Whatever fails after a mount unmounts it again (and removes the stored
//! squashfs): `/init` retries from a clean state, and a root whose checksum
//! turned out wrong is never booted.

use crate::cmdline::{Cmdline, Size};
use crate::decompress::{self, DecompressError};
use crate::error::{Exit, Failure, Say};
use crate::fetch::{fetch_error, Fetch, FetchError, FetchOptions};
use crate::http::{Url, UrlError};
use crate::loopdev;
use crate::mount;
use crate::pipeline::{self, pump, PumpError};
use crate::progress::{mib, Progress};
use crate::record::{self, Compression, Format, Record};
use crate::unpack::{self, Summary, UnpackError};
use crate::verify::{Verifier, VerifyError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use xcat_beneath::Root;

/// Where `boot` reads and keeps things; [`Settings::from_env`] for the binary.
#[derive(Clone)]
pub struct Settings {
    pub cmdline: PathBuf,
    pub meminfo: PathBuf,
    /// The squashfs file and its mount points (`/run/xcat-netinit`).
    pub rundir: PathBuf,
    /// Where the loop devices are (`/dev`).
    pub dev: PathBuf,
    pub fetch: FetchOptions,
    pub say: Say,
}

impl Settings {
    /// The real paths, or the ones the `XCAT_NETINIT_*` variables name.
    pub fn from_env(say: Say) -> Settings {
        let var = |name: &str, default: &str| {
            PathBuf::from(std::env::var_os(name).unwrap_or_else(|| default.into()))
        };
        Settings {
            cmdline: var("XCAT_NETINIT_CMDLINE", "/proc/cmdline"),
            meminfo: var("XCAT_NETINIT_MEMINFO", "/proc/meminfo"),
            rundir: var("XCAT_NETINIT_RUNDIR", "/run/xcat-netinit"),
            dev: PathBuf::from("/dev"),
            fetch: FetchOptions::default(),
            say,
        }
    }
}

/// What `boot` made.
#[derive(Debug, Clone)]
pub struct Booted {
    pub format: Format,
    /// Bytes of the packed file.
    pub bytes: u64,
    pub verified: bool,
    /// For cpio and tar.
    pub summary: Option<Summary>,
}

/// The queue depth between the stages, in 1 MiB buffers.
const DEPTH: usize = 4;

/// The most bytes a record may have.
const MAX_RECORD: u64 = 64 * 1024;

/// Headroom of the root tmpfs over the tree's recorded size.
const TMPFS_MARGIN: u64 = 64 << 20;

/// Runs the whole boot step; see the module documentation.
pub fn boot(newroot: &Path, s: &Settings) -> Result<Booted, Failure> {
    let cmd = read_cmdline(&s.cmdline)?;
    let url = image_url(&cmd)?;
    let (mut record, info) = fetch_record(&url, s)?;
    if let Some(key) = &cmd.imgkey {
        crate::signed::require(&url, info.as_deref(), &mut record, key, s)?;
    }
    let (format, compression) = archive_kind(&url, &record)?;
    let mem_total = check_ram(&url, &record, format, &s.meminfo)?;
    clean_stale(newroot, s);
    let image = Image {
        url,
        record,
        format,
        compression,
        rootlimit: cmd.rootlimit,
        mem_total,
    };
    match format {
        Format::Cpio | Format::Tar => stream_into_tmpfs(newroot, &image, s),
        Format::Squashfs => squashfs(newroot, &image, s),
    }
}

/// What is known of the image once the record is read.
struct Image {
    url: Url,
    record: Record,
    format: Format,
    compression: Compression,
    rootlimit: Option<Size>,
    mem_total: u64,
}

impl Image {
    fn name(&self) -> &str {
        self.url.file_name()
    }
}

/// `/proc/cmdline` (or the file the settings name), parsed; the failure
/// lines `/init` shows.
pub fn read_cmdline(path: &Path) -> Result<Cmdline, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Exit::Retry,
            format!("reading {}", path.display()),
            e.to_string(),
            "/init must mount /proc before running xcat-netinit",
        )
    })?;
    Cmdline::parse(&text).map_err(|e| {
        Failure::new(
            Exit::Cmdline,
            "kernel command line",
            e.to_string(),
            "correct the node's boot parameters (nodeset, bootparams.addkcmdline) and boot it again",
        )
    })
}

fn image_url(cmd: &Cmdline) -> Result<Url, Failure> {
    let bad =
        |why: String, todo: &str| Failure::new(Exit::Cmdline, "kernel command line", why, todo);
    let text = cmd.imgurl.as_deref().ok_or_else(|| {
        bad(
            "there is no imgurl=".into(),
            "run nodeset <node> osimage=<image> on the management node so the boot script names the image",
        )
    })?;
    Url::parse(text).map_err(|e| match e {
        UrlError::NotAnAddress { .. } => bad(
            e.to_string(),
            "give the server by IP address (noderes.tftpserver or nfsserver, or leave them unset for the master) and run nodeset again",
        ),
        UrlError::NotHttp(_) => bad(
            e.to_string(),
            "set site.httpmethod to http and run nodeset again",
        ),
        UrlError::Malformed(_) => bad(e.to_string(), "correct imgurl= and boot again"),
    })
}

/// The record and its bytes, or an empty one (nothing to check against)
/// when the server has none.
fn fetch_record(url: &Url, s: &Settings) -> Result<(Record, Option<Vec<u8>>), Failure> {
    let info = url.with_suffix(".info");
    let Some(raw) = fetch_small(&info, s)? else {
        (s.say)(&format!(
            "fetching {info}: no checksum published (404); the image is not verified, \
             and RAM and tmpfs size are not checked (packimage writes the record)"
        ));
        return Ok((Record::default(), None));
    };
    let text = String::from_utf8_lossy(&raw);
    let record = Record::parse(&text).map_err(|e| refused_record(&info, e.to_string()))?;
    Ok((record, Some(raw)))
}

/// A small file of the image directory (a record, at most 64 KiB), or None
/// when the server has none (404, not waited for).
pub(crate) fn fetch_small(url: &Url, s: &Settings) -> Result<Option<Vec<u8>>, Failure> {
    let opts = FetchOptions {
        retry_not_found: false,
        ..s.fetch
    };
    let mut text = Vec::new();
    let res = Fetch::new(url.clone(), opts, s.say.clone())
        .take(MAX_RECORD + 1)
        .read_to_end(&mut text);
    match res.as_ref().map_err(fetch_error) {
        Ok(_) if text.len() as u64 > MAX_RECORD => {
            Err(refused_record(url, "it is larger than 64 KiB".into()))
        }
        Ok(_) => Ok(Some(text)),
        Err(Some(FetchError::NotFound)) => Ok(None),
        Err(_) => {
            let e = res.unwrap_err();
            Err(Failure::new(
                Exit::Retry,
                format!("fetching {url}"),
                e.to_string(),
                "check the server's HTTP service for the image directory",
            ))
        }
    }
}

pub(crate) fn refused_record(info: &Url, why: String) -> Failure {
    Failure::new(
        Exit::Refused,
        format!("reading {info}"),
        why,
        "run packimage again for this image on the management node",
    )
}

/// The format and compression: the record's, else the file name's.
fn archive_kind(url: &Url, r: &Record) -> Result<(Format, Compression), Failure> {
    let by_name = record::from_name(url.path());
    let format = r.format.or(by_name.map(|k| k.0));
    let compression = r.compression.or(by_name.map(|k| k.1));
    match (format, compression) {
        (Some(Format::Squashfs), _) => Ok((Format::Squashfs, Compression::None)),
        (Some(f), Some(c)) => Ok((f, c)),
        (Some(f), None) => Ok((f, Compression::None)),
        (None, _) => Err(Failure::new(
            Exit::Refused,
            format!("image {url}"),
            "neither a record nor the file name tells its format",
            "name it rootimg.<cpio|tar>[.gz|.xz|.zst] or rootimg.sfs, or pack it with packimage",
        )),
    }
}

/// `MemTotal` in bytes, after checking it against the record's `ram_mib`.
fn check_ram(url: &Url, r: &Record, format: Format, meminfo: &Path) -> Result<u64, Failure> {
    let text = std::fs::read_to_string(meminfo).unwrap_or_default();
    let Some(total) = crate::meminfo::mem_total(&text) else {
        return Err(Failure::new(
            Exit::Retry,
            format!("reading {}", meminfo.display()),
            "no MemTotal line",
            "/init must mount /proc before running xcat-netinit",
        ));
    };
    let have = total >> 20;
    match r.ram_mib {
        Some(need) if need > have => Err(Failure::new(
            Exit::NoRam,
            format!("image {}", url.file_name()),
            format!(
                "the image needs {need} MiB of RAM to boot as {}, this node has {have} MiB",
                format.name()
            ),
            match format {
                Format::Squashfs => "boot it on a node with more RAM, or make the image smaller",
                _ => "pack it as squashfs (packimage -m squashfs), which needs less, or boot a node with more RAM",
            },
        )),
        _ => Ok(total),
    }
}

/// Unmounts what an interrupted earlier run left mounted.
fn clean_stale(newroot: &Path, s: &Settings) {
    for p in [
        newroot.to_path_buf(),
        s.rundir.join("rw"),
        s.rundir.join("lower"),
    ] {
        let n = mount::unmount_stale(&p);
        if n > 0 {
            (s.say)(&format!(
                "unmounted {n} mount(s) an earlier attempt left at {}",
                p.display()
            ));
        }
    }
}

/// The root tmpfs's size: `rootlimit=`, else the tree's recorded size plus
/// margin, but never less than the kernel's own default (half the RAM): the
/// running system writes logs and temporary files into it, and a tmpfs takes
/// RAM only for what it holds.
fn root_size(image: &Image, s: &Settings) -> Option<Size> {
    let size = image.rootlimit.or_else(|| {
        let t = image.record.tree_bytes?;
        Some(Size::Bytes(
            (t + t / 10 + TMPFS_MARGIN).max(image.mem_total / 2),
        ))
    });
    if size.is_none() {
        (s.say)("no rootlimit= and no recorded tree size: the root tmpfs may take half the RAM");
    }
    size
}

fn stream_into_tmpfs(newroot: &Path, image: &Image, s: &Settings) -> Result<Booted, Failure> {
    let size = root_size(image, s);
    let mounted = mount::tmpfs(newroot, size).map_err(|e| {
        Failure::new(
            Exit::Retry,
            format!("mounting a tmpfs at {}", newroot.display()),
            e.to_string(),
            "the initrd's kernel needs tmpfs",
        )
    })?;
    let res = Root::open(newroot)
        .map_err(|e| {
            Failure::new(
                Exit::Retry,
                format!("opening {}", newroot.display()),
                e.to_string(),
                "this retries",
            )
        })
        .and_then(|root| stream(image, &root, size, s));
    match res {
        Ok(booted) => {
            mounted.keep();
            Ok(booted)
        }
        Err(f) => {
            if let Err(e) = mounted.unmount() {
                (s.say)(&format!("unmounting {}: {e}", newroot.display()));
            }
            Err(f)
        }
    }
}

/// What the fetching stage ended with.
#[derive(Debug, thiserror::Error)]
enum StageError {
    #[error("{0}")]
    Fetch(FetchError),
    #[error("{0}")]
    Verify(VerifyError),
    #[error("{0}")]
    Io(io::Error),
    #[error(transparent)]
    Gone(#[from] pipeline::Gone),
}

/// Fetches into `tx`, checking size and checksum, then ends or fails the stream.
fn fetch_stage(
    mut fetch: Fetch,
    mut v: Verifier,
    tx: pipeline::Sender,
    say: Say,
) -> Result<u64, StageError> {
    if let Err(e) = fetch.open() {
        tx.fail(io::Error::other(e.to_string()));
        return Err(StageError::Fetch(e));
    }
    let mut progress = Progress::new(
        say.clone(),
        fetch.url().file_name().to_string(),
        fetch.total(),
    );
    let mut done = 0u64;
    let res = pump(&mut fetch, &tx, |b| {
        v.update(b).map_err(io::Error::other)?;
        done += b.len() as u64;
        progress.tick(done);
        Ok(())
    });
    let res = match res {
        Ok(n) => v.finish().map_err(StageError::Verify).map(|_| n),
        Err(PumpError::Gone(g)) => return Err(StageError::Gone(g)),
        Err(PumpError::Check(e)) => {
            Err(inner::<VerifyError>(e).map_or_else(StageError::Io, StageError::Verify))
        }
        Err(PumpError::Read(e)) => Err(read_error(e)),
    };
    match &res {
        Ok(n) => {
            say(&progress.summary(*n));
            tx.end();
        }
        Err(e) => tx.fail(io::Error::other(e.to_string())),
    }
    res
}

/// The three stages of a streamed unpack, and the verdict.
fn stream(image: &Image, root: &Root, size: Option<Size>, s: &Settings) -> Result<Booted, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let fetch = Fetch::new(image.url.clone(), s.fetch, s.say.clone())
        .expect_size(image.record.size)
        .stop_on(stop.clone());
    let verifier = Verifier::new(&image.record);
    let verified = verifier.checks();
    let (tx, rx) = pipeline::channel(DEPTH);
    let say = s.say.clone();
    let fetcher = std::thread::spawn(move || fetch_stage(fetch, verifier, tx, say));
    let (mut input, decompressor) = match image.compression {
        Compression::None => (rx, None),
        c => {
            let (tx2, rx2) = pipeline::channel(DEPTH);
            let t = std::thread::spawn(move || decompress::run(c, rx, tx2));
            (rx2, Some(t))
        }
    };
    let unpacked = match image.format {
        Format::Tar => unpack::tar::unpack_tar(&mut input, root, s.say.clone()),
        _ => unpack::cpio::unpack_cpio(&mut input, root, s.say.clone()),
    };
    // the rest (the archive's padding) is read, so the fetch reaches the end
    // of the file and checks it
    let drained = unpacked.as_ref().ok().map(|_| input.drain());
    stop.store(unpacked.is_err(), Ordering::Relaxed);
    drop(input);
    let decompressed = decompressor.map(|t| t.join());
    let fetched = fetcher.join();
    let what = format!("unpacking {}", image.name());
    let bytes = match fetched {
        Ok(Ok(n)) => n,
        Ok(Err(StageError::Gone(_))) => 0,
        Ok(Err(e)) => return Err(fetch_failure(image, e)),
        Err(_) => {
            return Err(Failure::new(
                Exit::Retry,
                what,
                "the fetching thread panicked",
                "this retries",
            ))
        }
    };
    match decompressed {
        Some(Ok(Err(e @ DecompressError::Corrupt { .. }))) => {
            return Err(Failure::new(
                Exit::Refused,
                what,
                e.to_string(),
                "the archive is corrupt: run packimage again for this image",
            ))
        }
        Some(Err(_)) => {
            return Err(Failure::new(
                Exit::Retry,
                what,
                "the decompressing thread panicked",
                "this retries",
            ))
        }
        _ => {}
    }
    let summary = unpacked.map_err(|e| unpack_failure(&what, e, size, image.mem_total))?;
    if let Some(Err(e)) = drained {
        return Err(Failure::new(
            Exit::Retry,
            what,
            e.to_string(),
            "this retries",
        ));
    }
    Ok(Booted {
        format: image.format,
        bytes,
        verified,
        summary: Some(summary),
    })
}

fn fetch_failure(image: &Image, e: StageError) -> Failure {
    let name = image.name();
    match e {
        StageError::Verify(v) => Failure::new(
            Exit::Refused,
            format!("checking {name}"),
            v.to_string(),
            "the image on the server does not match its record: run packimage again for this image",
        ),
        StageError::Fetch(f @ (FetchError::Size { .. } | FetchError::Changed { .. })) => {
            Failure::new(
                Exit::Refused,
                format!("fetching {}", image.url),
                f.to_string(),
                "packimage may be rewriting the image: this retries once it is done",
            )
        }
        StageError::Fetch(f) => Failure::new(
            Exit::Retry,
            format!("fetching {}", image.url),
            f.to_string(),
            "check the server's HTTP service for the image directory",
        ),
        StageError::Io(e) => Failure::new(
            Exit::Retry,
            format!("fetching {}", image.url),
            e.to_string(),
            "this retries",
        ),
        StageError::Gone(_) => Failure::new(
            Exit::Retry,
            format!("fetching {}", image.url),
            "the unpacking stopped",
            "this retries",
        ),
    }
}

fn unpack_failure(what: &str, e: UnpackError, size: Option<Size>, mem_total: u64) -> Failure {
    if e.archive_fault() {
        return Failure::new(
            Exit::Refused,
            what,
            e.to_string(),
            "the archive is corrupt or was not made by packimage: run packimage again for this image",
        );
    }
    if e.no_space() {
        let limit = size.map_or("half the RAM".to_string(), |s| mib(s.bytes(mem_total)));
        return Failure::new(
            Exit::NoRam,
            what,
            format!("the tree does not fit in the root tmpfs ({limit}): {e}"),
            "raise rootlimit= (or leave it unset), or boot a node with more RAM",
        );
    }
    Failure::new(Exit::Retry, what, e.to_string(), "this retries")
}

/// A file removed when dropped, unless kept.
struct Stored {
    path: PathBuf,
    keep: bool,
}

impl Drop for Stored {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn squashfs(newroot: &Path, image: &Image, s: &Settings) -> Result<Booted, Failure> {
    let retry =
        |what: String, e: io::Error| Failure::new(Exit::Retry, what, e.to_string(), "this retries");
    std::fs::create_dir_all(&s.rundir)
        .map_err(|e| retry(format!("creating {}", s.rundir.display()), e))?;
    let mut stored = Stored {
        path: s.rundir.join("rootimg.sfs"),
        keep: false,
    };
    let (bytes, verified) = download(image, &stored.path, s)?;
    let dev = loopdev::attach_read_only(&stored.path, &s.dev).map_err(|e| {
        retry(
            format!("attaching {} to a loop device", stored.path.display()),
            e,
        )
    })?;
    let lower_dir = s.rundir.join("lower");
    let lower = mount::squashfs(dev.path(), &lower_dir).map_err(|e| {
        Failure::new(
            Exit::Refused,
            format!("mounting {} ({})", image.name(), dev.path().display()),
            e.to_string(),
            "the initrd's kernel needs squashfs (and the image its compression); or run packimage again",
        )
    })?;
    // the mount holds the device now; autoclear frees it with the mount
    drop(dev);
    let rw = mount::tmpfs(&s.rundir.join("rw"), image.rootlimit).map_err(|e| {
        retry(
            format!("mounting a tmpfs at {}", s.rundir.join("rw").display()),
            e,
        )
    })?;
    let (upper, work) = (rw.path().join("upper"), rw.path().join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir(d).map_err(|e| retry(format!("creating {}", d.display()), e))?;
    }
    let top = mount::overlay(lower.path(), &upper, &work, newroot).map_err(|e| {
        Failure::new(
            Exit::Retry,
            format!("mounting the overlay at {}", newroot.display()),
            e.to_string(),
            "the initrd's kernel needs overlayfs",
        )
    })?;
    top.keep();
    rw.keep();
    lower.keep();
    stored.keep = true;
    Ok(Booted {
        format: Format::Squashfs,
        bytes,
        verified,
        summary: None,
    })
}

/// Stores the image at `path`, checking size and checksum; returns its size
/// and whether it was checked against a record.
fn download(image: &Image, path: &Path, s: &Settings) -> Result<(u64, bool), Failure> {
    let mut fetch =
        Fetch::new(image.url.clone(), s.fetch, s.say.clone()).expect_size(image.record.size);
    let mut v = Verifier::new(&image.record);
    let verified = v.checks();
    let fetch_failed = |e: FetchError| fetch_failure(image, StageError::Fetch(e));
    fetch.open().map_err(fetch_failed)?;
    let no_room = |e: io::Error| {
        let exit = match e.raw_os_error() {
            Some(libc::ENOSPC | libc::ENOMEM) => Exit::NoRam,
            _ => Exit::Retry,
        };
        Failure::new(
            exit,
            format!("storing {} in {}", image.name(), path.display()),
            e.to_string(),
            "boot a node with more RAM (squashfs is kept in RAM)",
        )
    };
    let mut file = std::fs::File::create(path).map_err(no_room)?;
    let mut progress = Progress::new(s.say.clone(), image.name().to_string(), fetch.total());
    let mut buf = vec![0u8; crate::CHUNK];
    let mut done = 0u64;
    loop {
        let n = pipeline::read_full(&mut fetch, &mut buf)
            .map_err(|e| fetch_failure(image, read_error(e)))?;
        if n == 0 {
            break;
        }
        v.update(&buf[..n])
            .map_err(|e| fetch_failure(image, StageError::Verify(e)))?;
        file.write_all(&buf[..n]).map_err(no_room)?;
        done += n as u64;
        progress.tick(done);
    }
    v.finish()
        .map_err(|e| fetch_failure(image, StageError::Verify(e)))?;
    (s.say)(&progress.summary(done));
    Ok((done, verified))
}

/// A read error of a [`Fetch`]: the fetch's own error when it is one.
fn read_error(e: io::Error) -> StageError {
    inner::<FetchError>(e).map_or_else(StageError::Io, StageError::Fetch)
}

/// The error of type `T` an I/O error carries, or the I/O error itself.
fn inner<T: std::error::Error + Send + Sync + 'static>(e: io::Error) -> Result<T, io::Error> {
    if !e.get_ref().is_some_and(|i| i.is::<T>()) {
        return Err(e);
    }
    let kind = e.kind();
    match e.into_inner().map(|i| i.downcast::<T>()) {
        Some(Ok(t)) => Ok(*t),
        _ => Err(kind.into()),
    }
}
