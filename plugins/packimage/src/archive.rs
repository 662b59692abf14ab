//! One archive of an image tree, written the way packimage writes its own: the
//! survey (the tree's size for progress, what the format drops, warned about; a
//! cpio's files of 4 GiB or more refused), the pack with a progress line every
//! second and its record, and what the admin should know afterwards.
//! packimage writes `rootimg.<ext>` through it, liteimg a ramdisk statelite
//! image's `rootimg-statelite.gz`; each line starts with the command's name.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xcat_image::pack::PackError as ArchiveError;
use xcat_image::pack::{self, Format, PackOutcome, PackProgress, PackSpec, RecordInputs, Survey};
use xcat_jobkit::figures::bytes;
use xcat_jobkit::{blocking, with_progress, CancelBridge};
use xcat_plugin::{Context, Responder};

use crate::boot::{self, BootSizes};
use crate::{progress_line, PackError};

/// What to pack, where, and whose lines these are. The caller holds the image lock.
#[derive(Debug, Clone, Copy)]
pub struct Archive<'a> {
    /// The command reporting (`packimage`, `liteimg`).
    pub command: &'static str,
    pub image: &'a str,
    /// The image directory the archive goes in.
    pub dir: &'a Path,
    pub rootimg: &'a Path,
    /// Root-relative paths left out (a statelite tree's own, when packimage
    /// packs it as a stateless image).
    pub exclude: &'static [&'static str],
    /// The archive's file name in `dir`.
    pub name: &'a str,
    pub spec: PackSpec,
    /// `linuximage.kernelver`: the kernel whose size the RAM need counts.
    pub kernel: Option<&'a str>,
}

/// What [`Archive::write`] did.
#[derive(Debug)]
pub struct Written {
    pub survey: Survey,
    /// The kernel and initrd the record's RAM need counts.
    pub sizes: BootSizes,
    pub outcome: PackOutcome,
    /// How long writing the archive took.
    pub time: Duration,
}

impl Archive<'_> {
    /// Surveys, packs and reports: the archive and its record are in place
    /// when it returns Ok.
    pub async fn write(
        &self,
        cancel: &CancelBridge,
        ctx: &Context,
        out: &Responder,
    ) -> Result<Written, PackError> {
        let survey = self.survey(cancel, out).await?;
        let sizes = self.boot_sizes().await?;
        let (outcome, time) = self.pack(&survey, sizes, cancel, ctx, out).await?;
        self.report(&outcome, out).await?;
        Ok(Written {
            survey,
            sizes,
            outcome,
            time,
        })
    }

    fn failed(&self, e: ArchiveError) -> PackError {
        PackError::archive(self.command, self.image, self.dir, e)
    }

    /// The tree's size (for progress) and what the format will drop (warned about).
    async fn survey(&self, cancel: &CancelBridge, out: &Responder) -> Result<Survey, PackError> {
        let (root, exclude, flag) = (self.rootimg.to_path_buf(), self.exclude, cancel.flag());
        let survey = blocking(move || {
            pack::survey(
                pack::Tree {
                    root: &root,
                    exclude,
                },
                &flag,
            )
        })
        .await?
        .map_err(|e| self.failed(e))?;
        let (command, image) = (self.command, self.image);
        if self.spec.format == Format::Cpio && survey.huge_files.count > 0 {
            return Err(self.failed(ArchiveError::TooLarge(survey.huge_files.clone())));
        }
        for loss in survey.losses(self.spec.format) {
            out.warning(format!("{command}: {image}: {loss}")).await?;
        }
        out.info(format!(
            "{command}: packing {image} ({} entries, {}) into {} on {} cores",
            survey.entries,
            bytes(survey.bytes),
            self.dir.join(self.name).display(),
            pack::compress::cores()
        ))
        .await?;
        Ok(survey)
    }

    /// The kernel and initrd sizes the RAM need counts.
    async fn boot_sizes(&self) -> Result<BootSizes, PackError> {
        let (d, r) = (self.dir.to_path_buf(), self.rootimg.to_path_buf());
        let k = self.kernel.map(str::to_string);
        Ok(blocking(move || boot::boot_sizes(&d, &r, k.as_deref())).await?)
    }

    /// Writes the archive and its record, with a progress line every second;
    /// returns how long that took too.
    async fn pack(
        &self,
        survey: &Survey,
        sizes: BootSizes,
        cancel: &CancelBridge,
        ctx: &Context,
        out: &Responder,
    ) -> Result<(PackOutcome, Duration), PackError> {
        let progress = Arc::new(PackProgress::default());
        let started = Instant::now();
        let inputs = RecordInputs {
            tree_bytes: survey.tree_bytes,
            kernel_and_initrd_bytes: sizes.total(),
        };
        let task = {
            let (root, exclude, d) = (
                self.rootimg.to_path_buf(),
                self.exclude,
                self.dir.to_path_buf(),
            );
            let (name, spec, p, c) = (
                self.name.to_string(),
                self.spec,
                progress.clone(),
                cancel.flag(),
            );
            blocking(move || {
                let tree = pack::Tree {
                    root: &root,
                    exclude,
                };
                pack::pack(tree, &d, &name, &spec, &inputs, &p, &c)
            })
        };
        let line = || self.progress(&progress, survey.bytes, started.elapsed());
        let outcome = with_progress(task, out, &ctx.cancel, line)
            .await?
            .map_err(|e| self.failed(e))?;
        let time = started.elapsed();
        if ctx.cancel.is_cancelled() {
            return Err(PackError::Cancelled);
        }
        Ok((outcome, time))
    }

    fn progress(&self, p: &PackProgress, total: u64, elapsed: Duration) -> String {
        let written = p.bytes_out.load(Ordering::Relaxed);
        if self.spec.format == Format::Squashfs {
            // mksquashfs runs on its own: only its output file's size is known.
            return format!(
                "{}: {}: mksquashfs has written {}",
                self.command,
                self.image,
                bytes(written)
            );
        }
        progress_line(
            self.command,
            self.image,
            p.bytes_in.load(Ordering::Relaxed),
            total,
            p.entries.load(Ordering::Relaxed),
            written,
            elapsed,
        )
    }

    /// What the admin should know about the archive just written.
    async fn report(&self, outcome: &PackOutcome, out: &Responder) -> Result<(), PackError> {
        let (command, image, stats) = (self.command, self.image, &outcome.stats);
        if stats.changed.count > 0 {
            out.warning(format!(
                "{command}: {image}: {} file(s) changed size while being packed (e.g. {}); the archive holds their size \
                 at the start; run {command} again once the image is quiet",
                stats.changed.count,
                stats.changed.examples.join(", ")
            ))
            .await?;
        }
        if stats.skipped_sockets > 0 {
            out.info(format!(
                "{command}: {image}: {} socket(s) left out (tar has no socket type)",
                stats.skipped_sockets
            ))
            .await?;
        }
        for r in &outcome.removed {
            out.info(format!("{command}: removed the stale {}", r.display()))
                .await?;
        }
        Ok(())
    }
}
