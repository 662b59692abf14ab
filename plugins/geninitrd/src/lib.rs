//! `geninitrd`: the stateless initrd of an image, `<rootimgdir>/initrd-stateless.gz`.
//!
//! ```text
//! geninitrd <imagename>
//! ```
//! The initrd boots a node from the network into the packed image: the image's
//! own kernel modules (NIC, disk, squashfs, overlay, loop, plus
//! `linuximage.netdrivers`) with their firmware, the server's static busybox and
//! xcat-netinit, and our `/init` ([`build`], docs/geninitrd.md). The kernel is
//! `linuximage.kernelver` (else the image's newest, in natural version order),
//! copied to `<rootimgdir>/kernel` beside the initrd so the two always match.
//! packimage calls [`build`] itself when [`needs_rebuild`] says the initrd is
//! missing or stale; it shares [`modules`] (which modules, in which order) and
//! [`additions`] (the files laid over the booted image) with this crate.
#![forbid(unsafe_code)]

pub mod additions;
pub mod build;
pub mod elf;
mod error;
pub mod modules;

use std::sync::Arc;

use xcat_image::beneath::Root;
use xcat_jobkit::figures::bytes;
use xcat_jobkit::{blocking, holder_text, lock_image, now_unix, CancelBridge, ImageDef};
use xcat_plugin::args::{Parsed, Syntax};
use xcat_plugin::boot::InitrdSettings;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

pub use build::{build, needs_rebuild, InitrdOutcome, InitrdSpec, Stale, INITRD_FILE};
pub use error::{BinaryProblem, GenInitrdError};

pub struct GenInitrd;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(GenInitrd)]
}

pub const USAGE: &str =
    "Usage: geninitrd <imagename>\n       geninitrd -h|--help\n       geninitrd -v|--version";

/// The command's name and usage for the shared parser.
pub const SYNTAX: Syntax = Syntax::new("geninitrd", USAGE);

#[derive(Debug, clap::Parser)]
struct Cli {
    images: Vec<String>,
}

impl Cli {
    fn image(self) -> Result<String, HandlerError> {
        let mut images = self.images.into_iter();
        let Some(image) = images.next() else {
            return Err(SYNTAX.error("geninitrd needs the name of the image (osimage)"));
        };
        if let Some(extra) = images.next() {
            return Err(SYNTAX.error(format!(
                "geninitrd builds one image's initrd; unexpected {extra:?}"
            )));
        }
        Ok(image)
    }
}

/// Parses geninitrd's arguments: the image name.
pub fn parse(args: &[String]) -> Result<Parsed<String>, HandlerError> {
    SYNTAX.parse::<Cli>(args)?.and_then(Cli::image)
}

impl InitrdOutcome {
    /// `initrd-stateless.gz built (12 modules, 3 firmware files, 4.1 MiB)`.
    pub fn summary(&self) -> String {
        format!(
            "{INITRD_FILE} built ({} modules, {} firmware files, {})",
            self.modules,
            self.firmware,
            bytes(self.bytes)
        )
    }
}

#[async_trait]
impl Handler for GenInitrd {
    fn commands(&self) -> &'static [&'static str] {
        &["geninitrd"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let parsed = parse(req.args())?;
        let Some(image) = SYNTAX.answer(parsed, &out).await? else {
            return Ok(());
        };
        Ok(run(&image, &ctx, &out).await?)
    }
}

/// What one run made: the kernel copied and the initrd.
struct Made {
    kver: String,
    kernel_bytes: u64,
    initrd: InitrdOutcome,
    warnings: Vec<String>,
}

async fn run(image: &str, ctx: &Context, out: &Responder) -> Result<(), GenInitrdError> {
    let def = xcat_jobkit::image_def(&ctx.db, image).await?;
    let user = ctx.identity.user.as_deref();
    let holder = holder_text("geninitrd", image, user, now_unix());
    let lock = lock_image(&def.dir, image, &holder)?;
    // Temporary files of a killed job: only ours to remove while we hold the lock.
    let _ = xcat_image::pack::cleanup_temp(&def.dir);
    out.info(format!(
        "geninitrd: building the stateless initrd of {image} in {}",
        def.dir.display()
    ))
    .await?;
    let cancel = CancelBridge::new(&ctx.cancel);
    let (d, settings, flag) = (def.clone(), ctx.settings.initrd.clone(), cancel.flag());
    let made = blocking(move || make(&d, &settings, &flag))
        .await?
        .map_err(|e| e.or_no_space(&def.dir))?;
    drop(lock);
    report(&def, &made, ctx, out).await
}

/// Chooses the kernel, copies it beside the initrd, builds the initrd.
fn make(
    def: &ImageDef,
    settings: &InitrdSettings,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<Made, GenInitrdError> {
    let root = Root::open(&def.rootimg).map_err(|source| GenInitrdError::Open {
        path: def.rootimg.clone(),
        source,
    })?;
    let mut warnings = Vec::new();
    let kver = xcat_jobkit::choose_kernel(&root, def.kernelver.as_deref(), &mut warnings)
        .ok_or_else(|| GenInitrdError::NoKernels {
            rootimg: def.rootimg.clone(),
        })?;
    let spec = InitrdSpec::new(&def.dir, &def.rootimg, &kver, &def.netdrivers, settings);
    let initrd = build(&spec, cancel)?;
    // Only once the initrd is in place: a failed build leaves kernel and initrd
    // as they were, matching each other.
    let kernel_bytes = xcat_jobkit::copy_kernel(&root, &kver, &def.dir)?;
    Ok(Made {
        kver,
        kernel_bytes,
        initrd,
        warnings,
    })
}

async fn report(
    def: &ImageDef,
    made: &Made,
    ctx: &Context,
    out: &Responder,
) -> Result<(), GenInitrdError> {
    let image = &def.image;
    for w in made.warnings.iter().chain(&made.initrd.warnings) {
        out.warning(format!("geninitrd: {image}: {w}")).await?;
    }
    for n in &made.initrd.notes {
        out.info(format!("geninitrd: {image}: {n}")).await?;
    }
    out.info(format!(
        "geninitrd: {image}: kernel {} ({} bytes) in {}",
        made.kver,
        made.kernel_bytes,
        def.dir.join(xcat_jobkit::kernel::KERNEL_FILE).display()
    ))
    .await?;
    if def.kernelver.as_deref() != Some(made.kver.as_str()) {
        ctx.db
            .upsert(
                "linuximage",
                &[("imagename", image)],
                &[("kernelver", &made.kver)],
            )
            .await?;
        out.info(format!(
            "geninitrd: {image}: linuximage.kernelver set to {}",
            made.kver
        ))
        .await?;
    }
    out.info(format!(
        "geninitrd: {image}: {} for kernel {} in {}",
        made.initrd.summary(),
        made.kver,
        made.initrd.path.display()
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Parsed<String>, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(|e| e.to_string())
    }

    #[test]
    fn one_image_name() {
        assert_eq!(p(&["img"]).unwrap(), Parsed::Run("img".to_string()));
        assert!(p(&[]).unwrap_err().contains("needs the name of the image"));
        assert!(p(&["a", "b"]).unwrap_err().contains("unexpected \"b\""));
        assert!(p(&["-x", "img"]).unwrap_err().contains("unknown option"));
        assert_eq!(p(&["-h"]).unwrap(), Parsed::Help);
    }
}
