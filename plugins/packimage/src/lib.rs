//! `packimage`: pack an image's rootimg into the archive nodes boot, with the kernel
//! and boot files beside it.
//!
//! ```text
//! packimage [-m cpio|tar|squashfs] [-c gzip|pigz|xz|zstd] <imagename>
//! ```
//! Works on any osimage whose `linuximage.rootimgdir` holds a `rootimg/` tree. The
//! archive (`rootimg.cpio.gz|xz|zst`, `rootimg.tar.gz|xz|zst`, `rootimg.sfs`) is written
//! under a temporary name and renamed into place; only then are stale archives of
//! other names removed. One pack or capture per image directory at a time (the image
//! lock capimage uses). Compression runs on all cores. Then [`boot`] lays out
//! `kernel`, `initrd-netboot.cpio.*` and `boot.ipxe`, and `linuximage.kernelver` is
//! updated to the kernel used.
#![forbid(unsafe_code)]

pub mod boot;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xcat_image::pack::compress::Compression;
use xcat_image::pack::{self, Format, PackError, PackProgress, PackSpec};
use xcat_image::publish::{self, PublishError};
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

pub struct PackImage;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(PackImage)]
}

pub const USAGE: &str =
    "Usage: packimage [-m cpio|tar|squashfs] [-c gzip|pigz|xz|zstd] <imagename>\n       \
                         packimage -h|--help\n       packimage -v|--version";

/// Parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Help,
    Version,
    Run { image: String, spec: PackSpec },
}

/// Parses packimage's arguments (xCAT's `-m` and `-c`, plus zstd). Defaults: cpio, gzip.
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut format = Format::Cpio;
    let mut comp = Compression::Gzip;
    let mut image = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            it.next()
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        match opt {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-v" | "--version" => return Ok(Parsed::Version),
            "-m" | "--method" => {
                let v = value(opt)?;
                format = Format::parse(&v).ok_or_else(|| {
                    format!("unknown archive method {v:?} (cpio, tar or squashfs)")
                })?;
            }
            "-c" | "--compress" => {
                let v = value(opt)?;
                comp = Compression::parse(&v)
                    .filter(|c| *c != Compression::None)
                    .ok_or_else(|| format!("unknown compressor {v:?} (gzip, pigz, xz or zstd)"))?;
            }
            o if o.starts_with('-') && o.len() > 1 => return Err(format!("unknown option {o}")),
            word => {
                if image.replace(word.to_string()).is_some() {
                    return Err(format!("packimage packs one image; unexpected {word:?}"));
                }
            }
        }
    }
    let image = image
        .ok_or_else(|| "packimage needs the name of the image (osimage) to pack".to_string())?;
    if format == Format::Squashfs {
        comp = Compression::Zstd;
    }
    Ok(Parsed::Run {
        image,
        spec: PackSpec {
            format,
            compression: comp,
            level: None,
            threads: 0,
        },
    })
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn rate(n: u64, d: Duration) -> String {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        return "-".into();
    }
    format!("{}/s", bytes((n as f64 / s) as u64))
}

/// One progress line.
pub fn progress_line(
    image: &str,
    read: u64,
    total: u64,
    entries: u64,
    written: u64,
    elapsed: Duration,
) -> String {
    let pct = read
        .saturating_mul(100)
        .checked_div(total)
        .map(|p| format!(" ({}%)", p.min(100)))
        .unwrap_or_default();
    let r = read as f64 / elapsed.as_secs_f64().max(0.001);
    let left = if r > 0.0 && total > read {
        format!(", about {:.0}s left", (total - read) as f64 / r)
    } else {
        String::new()
    };
    format!(
        "packimage: {image}: {} of ~{} read{pct}, {entries} entries, {} written, {}{left}",
        bytes(read),
        bytes(total),
        bytes(written),
        rate(read, elapsed)
    )
}

#[async_trait]
impl Handler for PackImage {
    fn commands(&self) -> &'static [&'static str] {
        &["packimage"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let (image, spec) = match parse(req.args()) {
            Ok(Parsed::Help) => {
                out.info(USAGE).await?;
                return Ok(());
            }
            Ok(Parsed::Version) => {
                out.data(format!(
                    "packimage {} (xcatd-rs)",
                    env!("CARGO_PKG_VERSION")
                ))
                .await?;
                return Ok(());
            }
            Ok(Parsed::Run { image, spec }) => (image, spec),
            Err(msg) => return Err(HandlerError::Usage(format!("{msg}\n{USAGE}"))),
        };
        run(&image, spec, &ctx, &out).await
    }
}

fn fail(m: impl Into<String>) -> HandlerError {
    HandlerError::Failed(m.into())
}

async fn run(image: &str, spec: PackSpec, ctx: &Context, out: &Responder) -> HandlerResult {
    let t0 = Instant::now();
    let li = ctx.db.get_row("linuximage", image).await?.ok_or_else(|| {
        fail(format!(
            "image {image} is not defined in linuximage; capture one with capimage or set linuximage.rootimgdir"
        ))
    })?;
    let dir = PathBuf::from(li.get("rootimgdir").cloned().ok_or_else(|| {
        fail(format!(
            "linuximage {image} has no rootimgdir; set linuximage.rootimgdir for it"
        ))
    })?);
    let rootimg = dir.join("rootimg");
    match std::fs::symlink_metadata(&rootimg) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Err(fail(format!(
                "{} is not a directory: image {image} has no root tree to pack (capture it with capimage, or fix \
                 linuximage.rootimgdir)",
                rootimg.display()
            )))
        }
    }
    let recorded = li.get("kernelver").cloned();
    let netdrivers: Vec<String> = li
        .get("netdrivers")
        .map(|s| {
            s.split(',')
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect()
        })
        .unwrap_or_default();

    let who = ctx
        .identity
        .user
        .clone()
        .unwrap_or_else(|| "(unauthenticated)".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let description = format!(
        "packimage of {image} by {who} (xcatd pid {}) started at unix time {started}",
        std::process::id()
    );
    let lock = match publish::lock_image_dir(&dir, &description) {
        Ok(l) => l,
        Err(PublishError::Busy { holder, .. }) => {
            return Err(fail(format!(
                "image {image} ({}) is busy: {holder}; wait for it to finish or cancel it",
                dir.display()
            )))
        }
        Err(e) => return Err(fail(format!("cannot lock {}: {e}", dir.display()))),
    };
    let _ = pack::cleanup_temp(&dir);

    let cancel = Arc::new(AtomicBool::new(false));
    let guard = CancelOnDrop(cancel.clone());
    let watcher = {
        let (token, cancel) = (ctx.cancel.clone(), cancel.clone());
        tokio::spawn(async move {
            token.cancelled().await;
            cancel.store(true, Ordering::Relaxed);
        })
    };

    // Survey: total size for progress, and what the format will drop.
    let survey = {
        let (r, c) = (rootimg.clone(), cancel.clone());
        tokio::task::spawn_blocking(move || pack::survey(&r, &c))
            .await
            .map_err(|e| fail(format!("internal error: {e}")))?
    };
    let survey = survey.map_err(|e| map_pack_error(e, image))?;
    if spec.format == Format::Cpio && survey.huge_files.count > 0 {
        return Err(map_pack_error(
            PackError::TooLarge(survey.huge_files.clone()),
            image,
        ));
    }
    for loss in survey.losses(spec.format) {
        out.warning(format!("packimage: {image}: {loss}")).await?;
    }
    out.info(format!(
        "packimage: packing {image} ({} entries, {}) into {} on {} cores",
        survey.entries,
        bytes(survey.bytes),
        dir.join(spec.file_name()).display(),
        pack::compress::cores()
    ))
    .await?;

    let progress = Arc::new(PackProgress::default());
    let t_pack = Instant::now();
    let mut task = {
        let (r, d, p, c) = (
            rootimg.clone(),
            dir.clone(),
            progress.clone(),
            cancel.clone(),
        );
        tokio::task::spawn_blocking(move || pack::pack(&r, &d, &spec, &p, &c))
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let outcome = loop {
        tokio::select! {
            r = &mut task => break r.map_err(|e| fail(format!("internal error: {e}")))?,
            _ = tick.tick() => {
                let line = if spec.format == Format::Squashfs {
                    format!("packimage: {image}: mksquashfs has written {}", bytes(progress.bytes_out.load(Ordering::Relaxed)))
                } else {
                    progress_line(
                        image,
                        progress.bytes_in.load(Ordering::Relaxed),
                        survey.bytes,
                        progress.entries.load(Ordering::Relaxed),
                        progress.bytes_out.load(Ordering::Relaxed),
                        t_pack.elapsed(),
                    )
                };
                if out.sinfo(line).await.is_err() {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        }
    };
    let outcome = outcome.map_err(|e| map_pack_error(e, image))?;
    let pack_time = t_pack.elapsed();
    ctx.check_cancelled()?;
    if outcome.stats.changed.count > 0 {
        out.warning(format!(
            "packimage: {image}: {} file(s) changed size while being packed (e.g. {}); the archive holds their size \
             at the start; pack again once the image is quiet",
            outcome.stats.changed.count,
            outcome.stats.changed.examples.join(", ")
        ))
        .await?;
    }
    if outcome.stats.skipped_sockets > 0 {
        out.info(format!(
            "packimage: {image}: {} socket(s) left out (tar has no socket type)",
            outcome.stats.skipped_sockets
        ))
        .await?;
    }
    for r in &outcome.removed {
        out.info(format!("packimage: removed the stale {}", r.display()))
            .await?;
    }

    // Kernel, boot add-on, iPXE script.
    let boot = {
        let (d, r, k, n) = (
            dir.clone(),
            rootimg.clone(),
            recorded.clone(),
            netdrivers.clone(),
        );
        tokio::task::spawn_blocking(move || boot::build(&d, &r, k.as_deref(), &n, &spec))
            .await
            .map_err(|e| fail(format!("internal error: {e}")))?
    };
    let boot = boot.map_err(|e| {
        fail(format!(
            "packimage: {image} was packed, but its boot files failed: {e}"
        ))
    })?;
    drop(lock);
    drop(guard);
    watcher.abort();
    for w in &boot.warnings {
        out.warning(format!("packimage: {image}: {w}")).await?;
    }
    for n in &boot.notes {
        out.info(format!("packimage: {image}: {n}")).await?;
    }
    if let Some(k) = &boot.kernel {
        if recorded.as_deref() != Some(k.as_str()) {
            ctx.db
                .upsert("linuximage", &[("imagename", image)], &[("kernelver", k)])
                .await?;
            out.info(format!(
                "packimage: {image}: linuximage.kernelver set to {k}"
            ))
            .await?;
        }
    }
    let read = if spec.format == Format::Squashfs {
        survey.bytes
    } else {
        outcome.stats.content_bytes
    };
    let ratio = if outcome.bytes > 0 {
        read as f64 / outcome.bytes as f64
    } else {
        0.0
    };
    out.info(format!(
        "packimage: packed {image} into {} ({}, {:.2}x smaller than its {} of files) in {:.1}s, {}; total {:.1}s",
        outcome.path.display(),
        bytes(outcome.bytes),
        ratio,
        bytes(read),
        pack_time.as_secs_f64(),
        rate(read, pack_time),
        t0.elapsed().as_secs_f64()
    ))
    .await?;
    Ok(())
}

struct CancelOnDrop(Arc<AtomicBool>);
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn map_pack_error(e: PackError, image: &str) -> HandlerError {
    match e {
        PackError::Cancelled => HandlerError::Cancelled,
        e => fail(format!(
            "packimage {image} failed: {e}; the previous archive, if any, is unchanged"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Parsed, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let Parsed::Run { image, spec } = p(&["-m", "tar", "-c", "pigz", "img"]).unwrap() else {
            panic!()
        };
        assert_eq!(image, "img");
        assert_eq!(
            (spec.format, spec.compression),
            (Format::Tar, Compression::Gzip)
        );
        assert_eq!(spec.file_name(), "rootimg.tar.gz");
        let Parsed::Run { spec, .. } = p(&["img"]).unwrap() else {
            panic!()
        };
        assert_eq!(spec.file_name(), "rootimg.cpio.gz");
        let Parsed::Run { spec, .. } = p(&["-c", "zstd", "img"]).unwrap() else {
            panic!()
        };
        assert_eq!(spec.file_name(), "rootimg.cpio.zst");
        let Parsed::Run { spec, .. } = p(&["--method=squashfs", "img"]).unwrap() else {
            panic!()
        };
        assert_eq!(spec.file_name(), "rootimg.sfs");
        assert!(p(&["-m", "zip", "img"]).is_err());
        assert!(p(&["-c", "bzip2", "img"]).is_err());
        assert!(p(&["-x", "img"]).unwrap_err().contains("unknown option"));
        assert!(p(&["a", "b"]).is_err());
        assert!(p(&[]).is_err());
        assert_eq!(p(&["-h"]).unwrap(), Parsed::Help);
        let l = progress_line(
            "img",
            50 << 20,
            100 << 20,
            10,
            20 << 20,
            Duration::from_secs(1),
        );
        assert!(l.contains("(50%)") && l.contains("about 1s left"), "{l}");
    }
}
