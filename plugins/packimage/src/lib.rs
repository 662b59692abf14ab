//! `packimage`: pack an image's rootimg into the archive nodes boot, with the kernel
//! and boot files beside it.
//!
//! ```text
//! packimage [-m cpio|tar|squashfs] [-c gzip|pigz|xz|zstd] <imagename>
//! ```
//! Works on any osimage whose `linuximage.rootimgdir` holds a `rootimg/` tree. The
//! archive (`rootimg.cpio.gz|xz|zst`, `rootimg.tar.gz|xz|zst`, `rootimg.sfs`) is written
//! under a temporary name and renamed into place, then its record `<archive>.info`
//! (size, SHA-256, tree estimate, the RAM a node needs); only then are stale archives
//! of other names removed with their records. The RAM need is printed and kept per
//! format in `osimage.description` (`[ram cpio=900MiB ...]`, docs/packimage.md). One
//! pack or capture per image directory at a time (the image lock capimage uses).
//! Compression runs on all cores. A tree liteimg made a statelite link farm in
//! (it has `.statelite/litefile.save`) is packed as the plain stateless image:
//! each link entry's original is back at its path while the archive is written
//! ([`xcat_image::linkfarm::swap`]), liteimg's own paths are left out, and the
//! farm is made again afterwards, a failed pack included. The archive step is
//! [`archive`], which liteimg uses for `rootimg-statelite.gz` too. Then [`boot`]
//! lays out `kernel`,
//! `initrd-netboot.cpio.*` and `boot.ipxe`, `linuximage.kernelver` is updated to
//! the kernel used, and the stateless initrd (`initrd-stateless.gz`,
//! plugin-geninitrd) is built when it is missing or stale for that kernel.
#![forbid(unsafe_code)]

pub mod archive;
pub mod boot;
mod error;

use std::path::{Path, PathBuf};

use plugin_geninitrd::{GenInitrdError, InitrdOutcome, InitrdSpec, INITRD_FILE};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xcat_image::linkfarm::{self, swap::Swapped};
use xcat_image::pack::compress::Compression;
use xcat_image::pack::{self, record, Format, PackOutcome, PackSpec};
use xcat_image::publish::ImageLock;
use xcat_image::signature;
use xcat_jobkit::figures::{bytes, percent, rate, remaining};
use xcat_jobkit::{blocking, holder_text, lock_image, now_unix, CancelBridge};
use xcat_plugin::args::{Parsed, Syntax};
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

pub use archive::{Archive, Written};
pub use boot::{BootFiles, BootSizes};
pub use error::PackError;

pub struct PackImage;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(PackImage)]
}

pub const USAGE: &str =
    "Usage: packimage [-m|--method cpio|tar|squashfs] [-c|--compress gzip|pigz|xz|zstd] <imagename>\n       \
                         packimage -h|--help\n       packimage -v|--version";

/// The command's name and usage for the shared parser.
pub const SYNTAX: Syntax = Syntax::new("packimage", USAGE);

/// What to pack, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackArgs {
    pub image: String,
    pub spec: PackSpec,
}

/// packimage's options as clap reads them (xCAT's `-m` and `-c`, plus zstd).
#[derive(Debug, clap::Parser)]
struct Cli {
    #[arg(short = 'm', long = "method", value_parser = method)]
    method: Option<Format>,
    #[arg(short = 'c', long = "compress", value_parser = compressor)]
    compress: Option<Compression>,
    images: Vec<String>,
}

fn method(v: &str) -> Result<Format, String> {
    Format::parse(v).ok_or_else(|| format!("unknown archive method {v:?} (cpio, tar or squashfs)"))
}

fn compressor(v: &str) -> Result<Compression, String> {
    Compression::parse(v)
        .filter(|c| *c != Compression::None)
        .ok_or_else(|| format!("unknown compressor {v:?} (gzip, pigz, xz or zstd)"))
}

impl Cli {
    /// One image; the defaults are cpio and gzip, and squashfs is always zstd.
    fn pack_args(self) -> Result<PackArgs, HandlerError> {
        let mut images = self.images.into_iter();
        let Some(image) = images.next() else {
            return Err(SYNTAX.error("packimage needs the name of the image (osimage) to pack"));
        };
        if let Some(extra) = images.next() {
            return Err(SYNTAX.error(format!("packimage packs one image; unexpected {extra:?}")));
        }
        let format = self.method.unwrap_or(Format::Cpio);
        let compression = match format {
            Format::Squashfs => Compression::Zstd,
            _ => self.compress.unwrap_or(Compression::Gzip),
        };
        let spec = PackSpec {
            format,
            compression,
            level: None,
            threads: 0,
        };
        Ok(PackArgs { image, spec })
    }
}

/// Parses packimage's arguments.
pub fn parse(args: &[String]) -> Result<Parsed<PackArgs>, HandlerError> {
    SYNTAX.parse::<Cli>(args)?.and_then(Cli::pack_args)
}

/// One progress line of `command`.
pub fn progress_line(
    command: &str,
    image: &str,
    read: u64,
    total: u64,
    entries: u64,
    written: u64,
    elapsed: Duration,
) -> String {
    let left = remaining(read, total, elapsed)
        .map(|d| format!(", about {:.0}s left", d.as_secs_f64()))
        .unwrap_or_default();
    format!(
        "{command}: {image}: {} of ~{} read{}, {entries} entries, {} written, {}{left}",
        bytes(read),
        bytes(total),
        percent(read, total),
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
        let parsed = parse(req.args())?;
        let Some(PackArgs { image, spec }) = SYNTAX.answer(parsed, &out).await? else {
            return Ok(());
        };
        Ok(run(&image, spec, &ctx, &out).await?)
    }
}

/// The pack, phase by phase. The image stays locked until its boot files are made.
async fn run(image: &str, spec: PackSpec, ctx: &Context, out: &Responder) -> Result<(), PackError> {
    let t0 = Instant::now();
    let job = Job::resolve(ctx, image).await?;
    let lock = job.lock(ctx)?;
    let cancel = CancelBridge::new(&ctx.cancel);
    // Dropped before the lock: a pack that stops early puts the farm back too.
    let farm = job.swap_link_farm(out).await?;
    let name = spec.file_name();
    let packed = job
        .archive(&name, spec, farm.is_some())
        .write(&cancel, ctx, out)
        .await?;
    job.restore_link_farm(farm).await?;
    job.report_ram(&packed.outcome, packed.sizes, ctx, out)
        .await?;
    let boot = job.boot_files(spec, &cancel).await?;
    let initrd = job.initrd(boot.kernel.as_deref(), ctx, &cancel).await?;
    job.sign(&packed.outcome, ctx, out).await?;
    drop(lock);
    drop(cancel);
    job.report_boot(&boot, ctx, out).await?;
    job.report_initrd(initrd, &boot, out).await?;
    job.summary(spec, &packed, t0.elapsed(), out).await
}

/// The image to pack, as `linuximage` describes it.
struct Job {
    image: String,
    /// The image directory (`linuximage.rootimgdir`).
    dir: PathBuf,
    rootimg: PathBuf,
    /// `linuximage.kernelver`: the kernel the node ran at capture.
    kernel: Option<String>,
    netdrivers: Vec<String>,
}

/// What became of the stateless initrd.
enum InitrdStep {
    /// The image has no kernel (the boot files said so).
    NoKernel,
    UpToDate(String),
    Built(InitrdOutcome),
    Failed(GenInitrdError),
}

impl Job {
    async fn resolve(ctx: &Context, image: &str) -> Result<Job, PackError> {
        let def = xcat_jobkit::image_def(&ctx.db, image).await?;
        Ok(Job {
            image: def.image,
            dir: def.dir,
            rootimg: def.rootimg,
            kernel: def.kernelver,
            netdrivers: def.netdrivers,
        })
    }

    fn lock(&self, ctx: &Context) -> Result<ImageLock, PackError> {
        let user = ctx.identity.user.as_deref();
        let holder = holder_text("packimage", &self.image, user, now_unix());
        let lock = lock_image(&self.dir, &self.image, &holder)?;
        // Temporary files of a killed pack: only ours to remove while we hold the lock.
        let _ = pack::cleanup_temp(&self.dir);
        Ok(lock)
    }

    /// The archive step over this image's tree; a statelite tree leaves out
    /// what only statelite uses.
    fn archive<'a>(&'a self, name: &'a str, spec: PackSpec, statelite: bool) -> Archive<'a> {
        Archive {
            command: "packimage",
            image: &self.image,
            dir: &self.dir,
            rootimg: &self.rootimg,
            exclude: if statelite {
                linkfarm::STATELITE_PATHS
            } else {
                &[]
            },
            name,
            spec,
            kernel: self.kernel.as_deref(),
        }
    }

    /// Swaps a liteimg'd tree's link farm back (None for any other tree).
    async fn swap_link_farm(&self, out: &Responder) -> Result<Option<Swapped>, PackError> {
        let root = self.rootimg.clone();
        let farm = blocking(move || linkfarm::swap::swap_back(&root))
            .await?
            .map_err(|source| PackError::SwapBack {
                image: self.image.clone(),
                source,
            })?;
        if let Some(f) = &farm {
            out.info(format!(
                "packimage: {}: a statelite tree, packed as the stateless image: the originals of its {} link entries are in place while it is packed, and {} are left out",
                self.image,
                f.paths().len(),
                linkfarm::STATELITE_PATHS.join(", ")
            ))
            .await?;
        }
        Ok(farm)
    }

    /// Makes the link farm [`Job::swap_link_farm`] swapped back again.
    async fn restore_link_farm(&self, farm: Option<Swapped>) -> Result<(), PackError> {
        let Some(farm) = farm else {
            return Ok(());
        };
        blocking(move || farm.restore())
            .await?
            .map_err(|source| PackError::Restore {
                image: self.image.clone(),
                source,
            })
    }

    /// The RAM a node needs for the format just packed: one line, and its entry in
    /// `osimage.description` (see [`ram_line`]).
    async fn report_ram(
        &self,
        outcome: &PackOutcome,
        sizes: BootSizes,
        ctx: &Context,
        out: &Responder,
    ) -> Result<(), PackError> {
        let rec = &outcome.record;
        out.info(ram_line(&self.image, rec, sizes)).await?;
        let Some(row) = ctx.db.get_row("osimage", &self.image).await? else {
            out.info(format!(
                "packimage: {}: no osimage row, so the RAM need is not recorded in osimage.description",
                self.image
            ))
            .await?;
            return Ok(());
        };
        let old = row.get("description").map(String::as_str).unwrap_or("");
        let new = record::set_description_ram(old, rec.format, rec.ram_mib);
        if new != old {
            ctx.db
                .upsert(
                    "osimage",
                    &[("imagename", &self.image)],
                    &[("description", &new)],
                )
                .await?;
        }
        Ok(())
    }

    /// Kernel, boot add-on and iPXE script ([`boot::build`]).
    async fn boot_files(
        &self,
        spec: PackSpec,
        cancel: &CancelBridge,
    ) -> Result<BootFiles, PackError> {
        let (d, r, k, n, c) = (
            self.dir.clone(),
            self.rootimg.clone(),
            self.kernel.clone(),
            self.netdrivers.clone(),
            cancel.flag(),
        );
        blocking(move || boot::build(&d, &r, k.as_deref(), &n, &spec, &c))
            .await?
            .map_err(|e| PackError::boot(&self.image, &self.dir, e))
    }

    /// The stateless initrd for kernel `kver`, built when it is missing or stale
    /// ([`plugin_geninitrd::needs_rebuild`]). Its failure is not the pack's: the
    /// archive and boot files stand, and the report says what to fix.
    async fn initrd(
        &self,
        kver: Option<&str>,
        ctx: &Context,
        cancel: &CancelBridge,
    ) -> Result<InitrdStep, PackError> {
        let Some(kver) = kver else {
            return Ok(InitrdStep::NoKernel);
        };
        let spec = InitrdSpec::new(
            &self.dir,
            &self.rootimg,
            kver,
            &self.netdrivers,
            &ctx.settings.initrd,
        );
        let flag = cancel.flag();
        let step = blocking(move || {
            let root = match xcat_image::beneath::Root::open(&spec.rootimg) {
                Ok(r) => r,
                Err(source) => {
                    let path = spec.rootimg.clone();
                    return InitrdStep::Failed(GenInitrdError::Open { path, source });
                }
            };
            if plugin_geninitrd::needs_rebuild(&spec.dir, &root, &spec.kver).is_none() {
                return InitrdStep::UpToDate(spec.kver);
            }
            match plugin_geninitrd::build(&spec, &flag) {
                Ok(o) => InitrdStep::Built(o),
                Err(e) => InitrdStep::Failed(e),
            }
        })
        .await?;
        match step {
            InitrdStep::Failed(GenInitrdError::Cancelled) => Err(PackError::Cancelled),
            step => Ok(step),
        }
    }

    async fn report_initrd(
        &self,
        step: InitrdStep,
        boot: &BootFiles,
        out: &Responder,
    ) -> Result<(), PackError> {
        let image = &self.image;
        match step {
            InitrdStep::NoKernel => {}
            InitrdStep::UpToDate(kver) => {
                out.info(format!(
                    "packimage: {image}: {INITRD_FILE} is up to date for kernel {kver}"
                ))
                .await?
            }
            InitrdStep::Built(o) => {
                // The add-on carries the same additions: its words are already out.
                for w in o.warnings.iter().filter(|w| !boot.warnings.contains(w)) {
                    out.warning(format!("packimage: {image}: {w}")).await?;
                }
                for n in o.notes.iter().filter(|n| !boot.notes.contains(n)) {
                    out.info(format!("packimage: {image}: {n}")).await?;
                }
                out.info(format!("packimage: {image}: {}", o.summary()))
                    .await?;
            }
            InitrdStep::Failed(e) => {
                out.warning(format!(
                    "packimage: {image}: no new {INITRD_FILE}: {e}; nodeset boots nodes from this image with it                      (run geninitrd {image} once fixed)"
                ))
                .await?
            }
        }
        Ok(())
    }

    /// The boot files' warnings and notes; records the kernel used when it changed.
    async fn report_boot(
        &self,
        boot: &BootFiles,
        ctx: &Context,
        out: &Responder,
    ) -> Result<(), PackError> {
        let image = &self.image;
        for w in &boot.warnings {
            out.warning(format!("packimage: {image}: {w}")).await?;
        }
        for n in &boot.notes {
            out.info(format!("packimage: {image}: {n}")).await?;
        }
        if let Some(k) = boot
            .kernel
            .as_ref()
            .filter(|k| self.kernel.as_ref() != Some(*k))
        {
            ctx.db
                .upsert("linuximage", &[("imagename", image)], &[("kernelver", k)])
                .await?;
            out.info(format!(
                "packimage: {image}: linuximage.kernelver set to {k}"
            ))
            .await?;
        }
        Ok(())
    }

    /// Add the packed archive, its record and the boot files to the image's
    /// signed record; unsigned (with a warning) when there is no key or the
    /// record does not verify.
    async fn sign(
        &self,
        outcome: &PackOutcome,
        ctx: &Context,
        out: &Responder,
    ) -> Result<(), PackError> {
        let key = match signature::key_if_present(&ctx.settings.image_key) {
            Ok(Some(k)) => k,
            Ok(None) => return Ok(()),
            Err(e) => {
                out.warning(format!("packimage: {}: not signed: {e}", self.image))
                    .await?;
                return Ok(());
            }
        };
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut add: Vec<String> = name(&outcome.record_path).into_iter().collect();
        // the archive's digest was taken as it was written (its .info)
        let archive = name(&outcome.path).unwrap_or_default();
        let digested: Vec<(String, u64, [u8; 32])> = match hex::decode(&outcome.record.sha256)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
        {
            Some(sha) => vec![(archive, outcome.record.size, sha)],
            None => {
                add.push(archive);
                Vec::new()
            }
        };
        for boot in ["kernel", INITRD_FILE] {
            if self.dir.join(boot).is_file() {
                add.push(boot.to_string());
            }
        }
        let forget: Vec<String> = outcome.removed.iter().filter_map(|p| name(p)).collect();
        let dir = self.dir.clone();
        let update = move || {
            let add: Vec<&str> = add.iter().map(String::as_str).collect();
            let digested: Vec<(&str, u64, [u8; 32])> = digested
                .iter()
                .map(|(n, s, h)| (n.as_str(), *s, *h))
                .collect();
            let update = signature::RecordUpdate {
                fresh: false,
                add: &add,
                digested: &digested,
                forget: &forget,
            };
            signature::update_record(&dir, &key, update).map(|()| key.fingerprint())
        };
        match blocking(update).await? {
            Ok(fp) => {
                out.info(format!(
                    "packimage: {}: signed {} (image-signing key {fp})",
                    self.image,
                    signature::RECORD
                ))
                .await?
            }
            Err(e) => {
                out.warning(format!("packimage: {}: not signed: {e}", self.image))
                    .await?
            }
        }
        Ok(())
    }

    async fn summary(
        &self,
        spec: PackSpec,
        packed: &Written,
        total: Duration,
        out: &Responder,
    ) -> Result<(), PackError> {
        let outcome = &packed.outcome;
        // mksquashfs reports no content bytes: the survey's count stands in.
        let read = if spec.format == Format::Squashfs {
            packed.survey.bytes
        } else {
            outcome.stats.content_bytes
        };
        let ratio = if outcome.bytes > 0 {
            read as f64 / outcome.bytes as f64
        } else {
            0.0
        };
        out.info(format!(
            "packimage: packed {} into {} ({}, {:.2}x smaller than its {} of files) in {:.1}s, {}; total {:.1}s",
            self.image,
            outcome.path.display(),
            bytes(outcome.bytes),
            ratio,
            bytes(read),
            packed.time.as_secs_f64(),
            rate(read, packed.time),
            total.as_secs_f64()
        ))
        .await?;
        Ok(())
    }
}

/// `packimage: <image>: a node needs N MiB of RAM to boot it as <format> (...)`,
/// with what the figure is made of ([`record::ram_need`]).
pub fn ram_line(image: &str, rec: &record::PackRecord, sizes: BootSizes) -> String {
    let held = match rec.format {
        Format::Squashfs => format!("the {} squashfs file held in RAM", bytes(rec.size)),
        _ => format!("tree {} + 10%", bytes(rec.tree_bytes)),
    };
    let initrd = match sizes.initrd {
        Some(n) => format!("initrd {}", bytes(n)),
        None => format!(
            "initrd {} assumed: {} is not built yet",
            bytes(record::INITRD_ASSUMED_BYTES),
            record::STATELESS_INITRD
        ),
    };
    format!(
        "packimage: {image}: a node needs {} MiB of RAM to boot it as {} ({held}, kernel {}, {initrd}, {} MiB for the running system)",
        rec.ram_mib,
        rec.format.name(),
        bytes(sizes.kernel),
        record::HEADROOM_MIB
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Parsed<PackArgs>, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(|e| e.to_string())
    }

    #[test]
    fn options() {
        let Parsed::Run(PackArgs { image, spec }) = p(&["-m", "tar", "-c", "pigz", "img"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(image, "img");
        assert_eq!(
            (spec.format, spec.compression),
            (Format::Tar, Compression::Gzip)
        );
        assert_eq!(spec.file_name(), "rootimg.tar.gz");
        let Parsed::Run(PackArgs { spec, .. }) = p(&["img"]).unwrap() else {
            panic!()
        };
        assert_eq!(spec.file_name(), "rootimg.cpio.gz");
        let Parsed::Run(PackArgs { spec, .. }) = p(&["-c", "zstd", "img"]).unwrap() else {
            panic!()
        };
        assert_eq!(spec.file_name(), "rootimg.cpio.zst");
        let Parsed::Run(PackArgs { spec, .. }) = p(&["--method=squashfs", "img"]).unwrap() else {
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
            "packimage",
            "img",
            50 << 20,
            100 << 20,
            10,
            20 << 20,
            Duration::from_secs(1),
        );
        assert!(l.starts_with("packimage: img: "), "{l}");
        assert!(l.contains("(50%)") && l.contains("about 1s left"), "{l}");
    }
}
