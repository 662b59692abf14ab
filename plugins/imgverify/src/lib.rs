//! `imgverify`: is an image still what this server published?
//!
//! ```text
//! imgverify <imagename> [--generation N]
//! ```
//! Checks, in the image directory (`linuximage.rootimgdir`):
//! * `image-record.txt` verifies with this server's image-signing key;
//! * every file it names (the manifest, packed archives and their records,
//!   kernel, initrd) has its recorded size and SHA-256;
//! * the tree (`rootimg`) matches the manifest entry by entry: content,
//!   type, mode, owner, mtime, device, link target, hard links, xattrs
//!   (file capabilities, SELinux labels, ACLs).
//!
//! With `--generation N` the earlier tree `.private/rootimg.gen-N` is
//! checked against the manifest and record it was published with (kept in
//! `.private/rootimg.gen-N.records`); the packed files of the image
//! directory are the current tree's and are not checked then.
//!
//! Every difference is one line; any difference, a bad signature or a
//! missing record makes the command fail.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use xcat_image::signature::{fingerprint, FileProblem, ImageRecord, SigningKey, RECORD};
use xcat_image::{scan_tree_parallel, Difference, Manifest};
use xcat_jobkit::blocking;
use xcat_plugin::args::Syntax;
use xcat_plugin::{
    async_trait, Context, Handler, HandlerError, HandlerRequest, HandlerResult, Responder,
};

/// The manifest capimage writes beside the tree.
const MANIFEST: &str = "capimage-manifest.tsv";

const SYNTAX: Syntax = Syntax::new(
    "imgverify",
    "Usage:
  imgverify <imagename> [--generation N]
  imgverify [-h|--help|-?]
  imgverify [-v|--version]",
);

#[derive(Debug, clap::Parser)]
struct Args {
    /// An earlier generation (`.private/rootimg.gen-N`) instead of `rootimg`.
    #[arg(long = "generation")]
    generation: Option<u64>,
    words: Vec<String>,
}

pub struct ImgVerify;

pub fn handlers() -> Vec<Arc<dyn Handler>> {
    vec![Arc::new(ImgVerify)]
}

#[async_trait]
impl Handler for ImgVerify {
    fn commands(&self) -> &'static [&'static str] {
        &["imgverify"]
    }

    async fn process(&self, req: HandlerRequest, ctx: Context, out: Responder) -> HandlerResult {
        let Some(args) = SYNTAX.read::<Args>(req.args(), &out).await? else {
            return Ok(());
        };
        let image = match args.words.as_slice() {
            [w] => w.clone(),
            [] => return Err(SYNTAX.error("imgverify needs an image name")),
            [_, extra, ..] => return Err(SYNTAX.error(format!("unexpected argument \"{extra}\""))),
        };
        let def = xcat_jobkit::image_def(&ctx.db, &image)
            .await
            .map_err(failed)?;
        let key = ctx.settings.image_key.clone();
        let target = Target::of(&def.dir, &def.rootimg, args.generation).map_err(failed)?;
        let shown = target.shown(&image);
        let found = blocking(move || verify(&target, &key))
            .await
            .map_err(failed)?
            .map_err(failed)?;
        report(&shown, &found, &out).await
    }
}

fn failed(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Failed(e.to_string())
}

/// What one verification found.
struct Found {
    fingerprint: String,
    files: usize,
    file_problems: Vec<FileProblem>,
    differences: Vec<Difference>,
}

/// What is checked: a tree, and the directory of the records it was
/// published with.
struct Target {
    root: PathBuf,
    records: PathBuf,
    generation: Option<u64>,
}

impl Target {
    fn of(dir: &Path, rootimg: &Path, generation: Option<u64>) -> Result<Target, String> {
        let Some(n) = generation else {
            return Ok(Target {
                root: rootimg.to_path_buf(),
                records: dir.to_path_buf(),
                generation,
            });
        };
        let (root, records) = xcat_image::publish::generation(dir, n);
        if !root.is_dir() {
            return Err(format!(
                "{} has no generation {n} ({} is missing)",
                dir.display(),
                root.display()
            ));
        }
        if !records.is_dir() {
            return Err(format!(
                "generation {n} of {} kept no records (it was published before generations kept them)",
                dir.display()
            ));
        }
        Ok(Target {
            root,
            records,
            generation,
        })
    }

    /// How the image is named in the output.
    fn shown(&self, image: &str) -> String {
        match self.generation {
            Some(n) => format!("{image} generation {n}"),
            None => image.to_string(),
        }
    }
}

fn verify(target: &Target, key_path: &Path) -> Result<Found, String> {
    let (dir, root) = (target.records.as_path(), target.root.as_path());
    let key = SigningKey::load(key_path)
        .map_err(|e| format!("cannot verify without this server's image-signing key: {e}"))?;
    let public = key.public_key();
    let mut record = ImageRecord::read_verified(dir, &public)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "{} has no {RECORD}: the image was never signed here (capture it again with an image-signing key)",
                dir.display()
            )
        })?;
    if !record.files.contains_key(MANIFEST) {
        return Err(format!("{RECORD} does not vouch for {MANIFEST}"));
    }
    if target.generation.is_some() {
        // the packed files beside it are the current tree's
        record.files.retain(|name, _| name == MANIFEST);
    }
    let file_problems = record.check_files(dir);
    // A manifest that differs from its record says nothing about the tree.
    let differences = if file_problems.iter().any(|p| p.name() == MANIFEST) {
        Vec::new()
    } else {
        tree_differences(&dir.join(MANIFEST), root)?
    };
    Ok(Found {
        fingerprint: fingerprint(&public),
        files: record.files.len(),
        file_problems,
        differences,
    })
}

/// The manifest (as signed) against the tree as it is now.
fn tree_differences(manifest: &Path, root: &Path) -> Result<Vec<Difference>, String> {
    let text =
        std::fs::read_to_string(manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let recorded =
        Manifest::parse_tsv(&text).map_err(|e| format!("{}: {e}", manifest.display()))?;
    // hashing is most of the time: every core reads files
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let now = scan_tree_parallel(root, threads).map_err(|e| format!("{}: {e}", root.display()))?;
    Ok(recorded.diff(&now))
}

async fn report(image: &str, found: &Found, out: &Responder) -> HandlerResult {
    for p in &found.file_problems {
        out.error(format!("imgverify: {image}: {p}")).await?;
    }
    for d in &found.differences {
        out.error(format!("imgverify: {image}: {}", describe(d)))
            .await?;
    }
    let bad = found.file_problems.len() + found.differences.len();
    if bad > 0 {
        return Err(HandlerError::Failed(format!(
            "imgverify: {image}: {bad} difference(s) from the record signed by {}",
            found.fingerprint
        )));
    }
    out.info(format!(
        "imgverify: {image}: the tree and {} recorded file(s) match the record signed by {}",
        found.files, found.fingerprint
    ))
    .await?;
    Ok(())
}

/// A difference as the admin reads it: added, removed or changed.
fn describe(d: &Difference) -> String {
    let path = xcat_image::util::display_path(&d.path);
    match (d.field.as_str(), d.left.as_str()) {
        ("missing", "present") => format!("{path}: removed (in the manifest, not in the tree)"),
        ("missing", _) => format!("{path}: added (in the tree, not in the manifest)"),
        ("hash", _) => format!(
            "{path}: content changed (sha256): recorded {}, now {}",
            d.left, d.right
        ),
        (field, _) => format!(
            "{path}: {field} changed: recorded {}, now {}",
            d.left, d.right
        ),
    }
}
