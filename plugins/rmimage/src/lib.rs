//! `rmimage`: remove an image's files from this server.
//!
//! ```text
//! rmimage [-V|--verbose] <imagename> [--xcatdef]
//! ```
//! Removes the image directory (`linuximage.rootimgdir`, else
//! `<installdir>/netboot/<osvers>/<osarch>/<profile>`, else the directory
//! named by an `<os>-<arch>-<method>-<profile>` image name) with everything
//! in it: the tree (capimage keeps it in `.private/`, `rootimg` links
//! there), its generations, the kernel, initrds, every packed archive with
//! its record (liteimg's `rootimg-statelite.gz` too, which xCAT's rmimage
//! leaves behind) and the boot files; then what nodeset copied to
//! `<tftpdir>/xcat/osimage/<image>/`.
//! With `--xcatdef` the osimage and linuximage rows go too.
//!
//! The tree came from a node and is hostile: nothing beneath the image
//! directory is followed through a symlink (a link is removed itself), no
//! mounted filesystem beneath it is entered (rmimage refuses while one is
//! there), and nothing outside the directory is removed. A capture or pack
//! of the image holds its lock: rmimage refuses while it runs.
#![forbid(unsafe_code)]

mod remove;

use std::path::PathBuf;
use std::sync::Arc;

use xcat_jobkit::{blocking, holder_text, lock_image, now_unix};
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

pub use remove::{check_dir, RemoveError};

const SYNTAX: Syntax = Syntax::new(
    "rmimage",
    "Usage:
  rmimage [-V|--verbose] <imagename> [--xcatdef]
  rmimage [-h|--help|-?]
  rmimage [-v|--version]",
);

#[derive(Debug, clap::Parser)]
struct Args {
    /// Say where the image directory was found.
    #[arg(short = 'V', long = "verbose")]
    verbose: bool,
    /// Remove the osimage and linuximage rows too.
    #[arg(long = "xcatdef")]
    xcatdef: bool,
    words: Vec<String>,
}

pub struct RmImage;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(RmImage)]
}

#[async_trait]
impl Handler for RmImage {
    fn commands(&self) -> &'static [&'static str] {
        &["rmimage"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let image = match args.words.as_slice() {
            [w] => w.clone(),
            [] => return Err(SYNTAX.error("rmimage needs an image name")),
            [_, extra, ..] => return Err(SYNTAX.error(format!("unexpected argument \"{extra}\""))),
        };
        if !plain(&image) {
            return Err(SYNTAX.error(format!("{image:?} is not an image name")));
        }
        run(&image, &args, &ctx, &out).await
    }
}

/// A name usable as one path component.
fn plain(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0'])
}

fn failed(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Failed(e.to_string())
}

async fn install_dir(ctx: &Context) -> Result<PathBuf, HandlerError> {
    Ok(match ctx.db.site("installdir").await? {
        Some(d) => PathBuf::from(d),
        None => ctx.settings.install_dir.clone(),
    })
}

async fn tftp_dir(ctx: &Context) -> Result<PathBuf, HandlerError> {
    Ok(match ctx.db.site("tftpdir").await? {
        Some(d) => PathBuf::from(d),
        None => ctx.settings.tftp_dir.clone(),
    })
}

/// The image directory, from the definition or the name (xCAT's order).
async fn image_dir(
    ctx: &Context,
    image: &str,
    verbose: bool,
    out: &Responder,
) -> Result<PathBuf, HandlerError> {
    let os = ctx.db.get_row("osimage", image).await?.unwrap_or_default();
    if let Some(m) = os.get("provmethod") {
        if !matches!(m.as_str(), "netboot" | "statelite" | "raw" | "sysclone") {
            return Err(failed(format!(
                "Invalid method \"{m}\": rmimage removes netboot, statelite, sysclone or raw image files only"
            )));
        }
    }
    let li = ctx
        .db
        .get_row("linuximage", image)
        .await?
        .unwrap_or_default();
    if let Some(d) = li.get("rootimgdir") {
        if verbose {
            out.info(format!(
                "For osimage {image}: rootimgdir = {d} in linuximage table"
            ))
            .await?;
        }
        return Ok(PathBuf::from(d));
    }
    let parts = match (os.get("osvers"), os.get("osarch"), os.get("profile")) {
        (Some(v), Some(a), Some(p)) => [v.clone(), a.clone(), p.clone()],
        _ => name_parts(image).ok_or_else(|| failed(format!("Invalid image name {image}: no osimage definition gives its directory, and it is not <os>-<arch>-<method>-<profile>")))?,
    };
    if parts.iter().any(|p| !plain(p)) {
        return Err(failed(format!("Invalid image name {image}")));
    }
    let [v, a, p] = parts;
    Ok(install_dir(ctx)
        .await?
        .join("netboot")
        .join(v)
        .join(a)
        .join(p))
}

/// `<os>-<arch>-<method>-<profile>` (the profile may hold dashes).
fn name_parts(image: &str) -> Option<[String; 3]> {
    let mut it = image.splitn(4, '-');
    let (os, arch, method, profile) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let ok = [os, arch, profile].iter().all(|s| !s.is_empty())
        && matches!(method, "netboot" | "statelite" | "raw" | "sysclone");
    ok.then(|| [os.to_string(), arch.to_string(), profile.to_string()])
}

async fn run(image: &str, args: &Args, ctx: &Context, out: &Responder) -> HandlerResult {
    let dir = image_dir(ctx, image, args.verbose, out).await?;
    if args.verbose {
        out.info(format!("image directory is {}", dir.display()))
            .await?;
    }
    let protected = [
        install_dir(ctx).await?,
        tftp_dir(ctx).await?,
        ctx.settings.state_dir.clone(),
    ];
    let exists = check_dir(&dir, &protected).map_err(HandlerError::typed)?;
    if exists {
        let holder = holder_text("rmimage", image, ctx.identity.user.as_deref(), now_unix());
        let lock = lock_image(&dir, image, &holder).map_err(HandlerError::typed)?;
        let d = dir.clone();
        let removed = blocking(move || remove::image_dir(&d, lock))
            .await
            .map_err(failed)?;
        for line in removed.map_err(HandlerError::typed)? {
            out.info(line).await?;
        }
    } else {
        out.info(format!(
            "Image directory {} does not exist: no image files to remove",
            dir.display()
        ))
        .await?;
    }
    let copy = tftp_dir(ctx).await?.join("xcat/osimage").join(image);
    let c = copy.clone();
    if blocking(move || remove::tree(&c))
        .await
        .map_err(failed)?
        .map_err(HandlerError::typed)?
    {
        out.info(format!("Removing directory {}", copy.display()))
            .await?;
    }
    out.info("Image files have been removed from this management node.")
        .await?;
    definition(image, args.xcatdef, ctx, out).await
}

async fn definition(image: &str, xcatdef: bool, ctx: &Context, out: &Responder) -> HandlerResult {
    if !xcatdef {
        if ctx.db.get_row("osimage", image).await?.is_some() {
            out.info(format!(
                "The osimage definition {image} is kept (rmimage --xcatdef also removes it)"
            ))
            .await?;
        }
        return Ok(());
    }
    let n = ctx.db.delete("osimage", &[("imagename", image)]).await?
        + ctx.db.delete("linuximage", &[("imagename", image)]).await?;
    if n == 0 {
        out.info(format!("No osimage definition named {image}"))
            .await?;
    } else {
        out.info(format!("osimage definition for {image} is removed."))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        assert_eq!(
            name_parts("rocky9-x86_64-netboot-compute-big"),
            Some(["rocky9".into(), "x86_64".into(), "compute-big".into()])
        );
        assert_eq!(name_parts("rocky9-x86_64-install-compute"), None);
        assert_eq!(name_parts("img1"), None);
        assert!(!plain("../etc") && !plain("..") && plain("img1"));
    }
}
