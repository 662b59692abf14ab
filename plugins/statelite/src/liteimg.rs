//! `liteimg [-V] <image>`: make a statelite image's tree ready for its
//! litefile entries (see [`xcat_image::linkfarm`]), idempotent and
//! reversible; with `osimage.rootfstype=ramdisk`, then pack the whole tree as
//! the archive a ramdisk statelite node boots (`rootimg-statelite.gz`).
//!
//! The entries are the image's merged litefile rows (`ilitefile`), with
//! `tmpfs,rw` rewritten to `link` and checked as xCAT checks them. What the
//! last run applied is kept in `.statelite/litefile.save` (xCAT's format,
//! the `ilitefile` lines): an entry whose link option is gone or changed
//! is undone first (the original file comes back from `.default`), then
//! every `link` entry is made, unless it is already in place. Entries
//! beneath a `link` directory need nothing in the tree: they move with it.
//!
//! The ramdisk archive is the tree as it is, link farm, `.statelite` and
//! `.default` included (the node's initrd unpacks it into RAM and the boot
//! fills `.statelite` from `.default`), gzip cpio newc as xCAT writes it,
//! with its record beside it, through packimage's archive step. With
//! `rootfstype=nfs`, or none (xCAT's default is nfs), the tree itself is the
//! node's root and nothing is packed.

use std::path::Path;

use plugin_packimage::Archive;
use xcat_image::beneath::Root;
use xcat_image::linkfarm::{self, for_liteimg, saved, Entry, Linked, STATE_DIR};
use xcat_image::pack::compress::Compression;
use xcat_image::pack::{self, Format, PackSpec, STATELITE_ARCHIVE};
use xcat_jobkit::figures::bytes;
use xcat_jobkit::{blocking, holder_text, image_def, lock_image, now_unix, CancelBridge, ImageDef};
use xcat_plugin::args::Syntax;
use xcat_plugin::{Context, HandlerError, HandlerRequest, HandlerResult, Responder};

use crate::entries::file_line;
use crate::lookup::Tables;
use crate::validate;

pub const LITEIMG: Syntax = Syntax::new(
    "liteimg",
    "Usage:
  liteimg [-V|--verbose] <imagename>
  liteimg [-h|--help]
  liteimg [-v|--version]",
);

#[derive(Debug, clap::Parser)]
struct Args {
    #[arg(short = 'V', long = "verbose")]
    verbose: bool,
    words: Vec<String>,
}

fn failed(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Failed(e.to_string())
}

pub async fn liteimg(req: &HandlerRequest, ctx: &Context, out: &Responder) -> HandlerResult {
    let Some(args) = LITEIMG.read::<Args>(req.args(), out).await? else {
        return Ok(());
    };
    let image = match args.words.as_slice() {
        [w] => w.clone(),
        [] => return Err(LITEIMG.error("liteimg needs an image name")),
        [_, extra, ..] => return Err(LITEIMG.error(format!("unexpected argument \"{extra}\""))),
    };
    let Some(os) = ctx.db.get_row("osimage", &image).await? else {
        return Err(failed(format!(
            "Cannot find image '{image}' from the osimage table."
        )));
    };
    if os.get("provmethod").map(String::as_str) != Some("statelite") {
        return Err(failed(
            "Please make sure that osimage.provmethod is set to statelite before calling this command.",
        ));
    }
    let def = image_def(&ctx.db, &image)
        .await
        .map_err(HandlerError::typed)?;
    let files = Tables::new(&ctx.db).files(&image).await?;
    let entries = for_liteimg(files);
    validate::check(&entries).map_err(failed)?;
    let holder = holder_text("liteimg", &image, ctx.identity.user.as_deref(), now_unix());
    let lock = lock_image(&def.dir, &image, &holder).map_err(HandlerError::typed)?;
    let (rootimg, name) = (def.rootimg.clone(), image.clone());
    // The lock goes with the work: a request dropped meanwhile does not free
    // the image while its tree changes.
    let (lock, report) = blocking(move || {
        let report = apply(&rootimg, &name, &entries);
        (lock, report)
    })
    .await
    .map_err(failed)?;
    for line in report.map_err(failed)?.lines(args.verbose) {
        out.info(line).await?;
    }
    out.info(format!("Modifying {} done.", def.rootimg.display()))
        .await?;
    if os.get("rootfstype").map(String::as_str) == Some("ramdisk") {
        pack_ramdisk(&def, ctx, out).await?;
    }
    drop(lock);
    Ok(())
}

/// `rootimg-statelite.gz` beside the tree (the caller holds the image lock).
async fn pack_ramdisk(def: &ImageDef, ctx: &Context, out: &Responder) -> HandlerResult {
    // What a killed pack left: ours to remove while we hold the lock.
    let _ = pack::cleanup_temp(&def.dir);
    let archive = Archive {
        command: "liteimg",
        image: &def.image,
        dir: &def.dir,
        rootimg: &def.rootimg,
        exclude: &[],
        name: STATELITE_ARCHIVE,
        spec: PackSpec {
            format: Format::Cpio,
            compression: Compression::Gzip,
            level: None,
            threads: 0,
        },
        kernel: def.kernelver.as_deref(),
    };
    let cancel = CancelBridge::new(&ctx.cancel);
    let packed = archive.write(&cancel, ctx, out).await?.outcome;
    out.info(format!(
        "liteimg: packed {} ({}) for rootfstype=ramdisk; a node needs {} MiB of RAM to boot it",
        packed.path.display(),
        bytes(packed.bytes),
        packed.record.ram_mib
    ))
    .await?;
    Ok(())
}

/// What one run did.
#[derive(Default)]
struct Report {
    created_state_dir: Option<String>,
    made: Vec<String>,
    already: usize,
    restored: Vec<String>,
    beneath_links: usize,
}

impl Report {
    fn lines(&self, verbose: bool) -> Vec<String> {
        let mut v: Vec<String> = self
            .created_state_dir
            .iter()
            .map(|d| format!("creating {d}"))
            .collect();
        if verbose {
            v.extend(
                self.restored
                    .iter()
                    .map(|p| format!("restored {p} from .default")),
            );
            v.extend(
                self.made
                    .iter()
                    .map(|p| format!("linked {p} to .statelite/tmpfs{p}")),
            );
        }
        v.push(format!(
            "{} entries linked now, {} already linked, {} restored, {} beneath a linked directory",
            self.made.len(),
            self.already,
            self.restored.len(),
            self.beneath_links
        ));
        v
    }
}

/// Undo what the last run did and this one does not, then make every link.
/// `.statelite/litefile.save` ends up naming what the tree holds, a failure
/// half-way too: the links made so far and the old ones not yet undone, so
/// the next run knows what to undo.
fn apply(rootimg: &Path, image: &str, entries: &[Entry]) -> Result<Report, String> {
    let root = Root::open(rootimg).map_err(|e| format!("{}: {e}", rootimg.display()))?;
    let fail = |p: &str, e: std::io::Error| {
        let at = format!("liteimg: {p} in {}", rootimg.display());
        match xcat_image::beneath::explain(&e) {
            Some(why) => format!(
                "{at}: {why}; name the real path in litefile (a symbolic link in the image is never followed)"
            ),
            None => format!("{at}: {e}"),
        }
    };
    let mut r = Report::default();
    if root
        .lstat(STATE_DIR.as_bytes())
        .map_err(|e| fail(STATE_DIR, e))?
        .is_none()
    {
        r.created_state_dir = Some(rootimg.join(STATE_DIR).display().to_string());
    }
    let mut held = saved::read(&root)
        .map_err(|e| fail(saved::SAVED, e))?
        .unwrap_or_default();
    let steps = undo_then_link(&root, entries, &mut held, &mut r);
    let lines: Vec<String> = match &steps {
        Ok(()) => entries.iter(),
        Err(_) => held.iter(),
    }
    .map(|e| file_line(Some(image), &e.options, &e.path))
    .collect();
    saved::write(&root, &lines).map_err(|e| fail(saved::SAVED, e))?;
    steps.map_err(|(p, e)| fail(&p, e))?;
    Ok(r)
}

/// The changes themselves; `held` follows what the tree holds.
fn undo_then_link(
    root: &Root,
    entries: &[Entry],
    held: &mut Vec<Entry>,
    r: &mut Report,
) -> Result<(), (String, std::io::Error)> {
    let gone: Vec<Entry> = held
        .iter()
        .filter(|old| old.is_link() && !entries.iter().any(|e| e.path == old.path && e.is_link()))
        .cloned()
        .collect();
    for old in gone {
        if linkfarm::unlink(root, &old.path).map_err(|e| (old.path.clone(), e))? {
            r.restored.push(old.path.clone());
        }
        held.retain(|h| h.path != old.path);
    }
    for e in entries.iter().filter(|e| e.is_link()) {
        if e.beneath_a_link(entries) {
            r.beneath_links += 1;
            continue;
        }
        match linkfarm::link(root, &e.path).map_err(|err| (e.path.clone(), err))? {
            Linked::Made => r.made.push(e.path.clone()),
            Linked::Already | Linked::Mtab => r.already += 1,
        }
        held.retain(|h| h.path != e.path);
        held.push(e.clone());
    }
    Ok(())
}
