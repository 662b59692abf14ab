//! The capture itself: from preflight to a published, registered image,
//! as named phases.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{info, warn};
use xcat_image::beneath::Root;
use xcat_image::publish::PublishOutcome;
use xcat_image::report::{
    CaptureReport, ChurnReport, ConsistencyReport, CountsReport, PhaseTiming, Sizes,
};
use xcat_image::signature::{key_if_present, SigningKey};
use xcat_image::sysclean::SyscleanAction;
use xcat_jobkit::figures::{bytes, rate, secs};
use xcat_jobkit::{blocking, holder_text, lock_image, now_unix, utc_text, with_progress};
use xcat_plugin::{Context, Request, Responder};

use crate::archive::{self, Finished};
use crate::audit;
use crate::consistent;
use crate::error::CaptureError;
use crate::job::{Deadline, Job};
use crate::journal::Staging;
use crate::options::Options;
use crate::pipeline;
use crate::plan::{self, Plan};
use crate::progress;
use crate::settle;
use crate::target;

/// Phase durations for the report.
#[derive(Default)]
struct Timings(Vec<PhaseTiming>);

impl Timings {
    fn since(&mut self, phase: &str, t: Instant) {
        self.0.push(PhaseTiming {
            phase: phase.into(),
            seconds: t.elapsed().as_secs_f64(),
        });
    }
}

/// What a capture brought back, before it is published.
struct Captured {
    finished: Finished,
    churn: ChurnReport,
    consistency: ConsistencyReport,
    actions: Vec<SyscleanAction>,
    audit: audit::Audit,
}

pub async fn run(
    node: &str,
    opts: &Options,
    cwd: Option<&str>,
    ctx: &Context,
    out: &Responder,
) -> Result<(), CaptureError> {
    // Everything up to publication runs against the wall-time budget; the
    // `--pack` sub-request has its own.
    let (timed, deadline) = Deadline::start(ctx, ctx.settings.capture.max_wall_secs);
    let done = capture_and_publish(node, opts, cwd, &timed, out).await;
    match done.map_err(|e| deadline.explain(node, e))? {
        Some(p) => pack_or_next(&p, opts, ctx, out).await,
        None => Ok(()),
    }
}

/// The capture up to its announcement; the plan, or None after `--dry-run`.
async fn capture_and_publish(
    node: &str,
    opts: &Options,
    cwd: Option<&str>,
    ctx: &Context,
    out: &Responder,
) -> Result<Option<Plan>, CaptureError> {
    let t0 = Instant::now();
    let started_at = now_unix();
    let mut timings = Timings::default();
    let p = plan::plan(node, opts, cwd, ctx, out).await?;
    timings.since("preflight", t0);
    plan::describe_plan(&p, opts, out).await?;
    plan::check_space(&p)?;
    if opts.dry_run {
        plan::dry_run(&p, out).await?;
        return Ok(None);
    }
    let holder = holder_text("capimage", node, ctx.identity.user.as_deref(), started_at);
    let lock = lock_image(&p.target.dir, &p.target.imagename, &holder)?;
    let capture = &ctx.settings.capture;
    let job = Job::new(lock, capture, p.budget(&capture.budget));
    let staging = Staging::prepare(&ctx.settings, &p.target.dir, job.hold.clone())?;
    let captured = match capture_into(&p, opts, ctx, out, (&staging.path, &job), &mut timings).await
    {
        Ok(c) => c,
        Err(e) => return Err(abandon(staging, &p, e, (ctx, out)).await),
    };
    let t = Instant::now();
    let outcome = staging.publish(node, opts.keep).await?;
    timings.since("publish", t);
    let when = utc_text(now_unix());
    let key = signing_key(ctx, out).await?;
    let signed_by = key.as_ref().map(|k| k.fingerprint());
    target::register(
        ctx,
        &p.target,
        node,
        &p.pf.kernel,
        opts,
        &when,
        signed_by.as_deref(),
    )
    .await?;
    let mut notes = captured.finished.summary.notes.clone();
    notes.push(copy_kernel(&p, &job).await?);
    let warnings = warnings(&captured);
    let report = report(
        &p,
        &captured,
        (started_at, notes, warnings, signed_by),
        timings,
    );
    write_records(&p.target.dir, &report, &captured.finished.summary.manifest)?;
    sign(&p.target.dir, key, out).await?;
    drop(job);
    announce(&p, &captured, &report, &outcome, t0.elapsed(), out).await?;
    Ok(Some(p))
}

/// A failed or cancelled capture: remove the partial tree and any snapshot
/// left on the node, and say what that means for the image.
async fn abandon(
    staging: Staging,
    p: &Plan,
    e: CaptureError,
    (ctx, out): (&Context, &Responder),
) -> CaptureError {
    let dir = staging.dir.clone();
    staging.discard().await;
    consistent::remove_left(&p.consistency, ctx, (&p.node, &p.addr), out).await;
    warn!(node = %p.node, error = %e, "capture failed; staging removed");
    if matches!(e, CaptureError::Cancelled) {
        // The dispatcher answers with a bare "cancelled": say what it
        // means for the image (the client may be gone: ignore errors).
        let _ = out
            .info(format!(
                "capimage: capture of {} cancelled; the partial tree was removed and the \
                 previous image in {} is unchanged",
                p.node,
                dir.display()
            ))
            .await;
    }
    e
}

/// Stream the node's tree into `staging`, with a progress line every second.
async fn stream(
    p: &Plan,
    ctx: &Context,
    out: &Responder,
    (staging, job): (&Path, &Job),
    acls: bool,
) -> Result<Finished, CaptureError> {
    let script =
        pipeline::consistent_script(&p.consistency, &p.excludes, &p.ex.include, p.wire, acls);
    let site = p.site(staging, job);
    let mut run = archive::start(ctx, &site, &script, p.wire)?;
    let started = Instant::now();
    let prog = run.progress.clone();
    let extracted = with_progress(&mut run.extraction, out, &ctx.cancel, || {
        progress::line(
            &p.node,
            prog.bytes.load(Ordering::Relaxed),
            p.estimate,
            prog.entries.load(Ordering::Relaxed),
            started.elapsed(),
        )
    })
    .await;
    run.finish(extracted, ctx).await
}

async fn capture_into(
    p: &Plan,
    opts: &Options,
    ctx: &Context,
    out: &Responder,
    (staging, job): (&Path, &Job),
    timings: &mut Timings,
) -> Result<Captured, CaptureError> {
    let t = Instant::now();
    let acls = p.pf.has("tar-acls");
    let mut finished = stream(p, ctx, out, (staging, job), acls).await?;
    timings.since("capture", t);
    let mounts: Vec<String> = p.pf.captured().iter().map(|m| m.point.clone()).collect();
    let consistency = consistent::report(&p.consistency, &mounts, &finished.node_err.prelude);
    out.info(consistent::summary_line(&p.node, &consistency))
        .await?;
    let t = Instant::now();
    let churn = settle_churn(p, ctx, (staging, job), acls, &mut finished).await?;
    timings.since("settle", t);
    let summary = &finished.summary;
    out.info(format!(
        "capimage: received {} entries ({} of files) from {}",
        summary.entries,
        bytes(summary.content_bytes),
        p.node
    ))
    .await?;
    let t = Instant::now();
    let mut actions = prepare_tree(p, opts, ctx, out, (staging, job)).await?;
    crate::signing::refresh_manifest(&mut finished.summary.manifest, staging, &actions).map_err(
        CaptureError::io("record sysclean's changes in the manifest of", staging),
    )?;
    timings.since("sysclean", t);
    let t = Instant::now();
    let audit = audit::run((staging, job), opts.scrub, &mut finished.summary.manifest).await?;
    audit::announce(&p.node, &audit, out).await?;
    actions.extend(audit.scrubbed.iter().cloned());
    timings.since("audit", t);
    Ok(Captured {
        finished,
        churn,
        consistency,
        actions,
        audit,
    })
}

/// Find what changed or appeared during the stream, and re-read what changed.
async fn settle_churn(
    p: &Plan,
    ctx: &Context,
    (staging, job): (&Path, &Job),
    acls: bool,
    f: &mut Finished,
) -> Result<ChurnReport, CaptureError> {
    let site = p.site(staging, job);
    let mut churn = settle::initial(&f.node_err);
    let since_start = settle::walk_since_start(
        ctx,
        &site,
        (&p.excludes, &p.ex.include),
        &f.node_err,
        &f.summary.manifest,
        &mut churn,
    )
    .await;
    CaptureError::check_cancelled(ctx)?;
    let (summary, node_err) = (&mut f.summary, &f.node_err);
    settle::reread(
        ctx,
        &site,
        acls,
        summary,
        node_err,
        &since_start,
        &mut churn,
    )
    .await?;
    CaptureError::check_cancelled(ctx)?;
    Ok(churn)
}

/// The boot skeleton, then sysclean (unless `--no-sysclean`), on the
/// staging tree; each action is reported as it is listed.
async fn prepare_tree(
    p: &Plan,
    opts: &Options,
    ctx: &Context,
    out: &Responder,
    (staging, job): (&Path, &Job),
) -> Result<Vec<SyscleanAction>, CaptureError> {
    let root = staging.to_path_buf();
    let sysclean_on = opts.sysclean;
    let hold = job.hold.clone();
    let actions = blocking(move || -> std::io::Result<Vec<SyscleanAction>> {
        let _hold = hold;
        let mut actions: Vec<SyscleanAction> = xcat_image::skeleton::ensure_skeleton(&root)?
            .into_iter()
            .map(|a| SyscleanAction {
                action: format!("skeleton {}", a.action),
                path: a.path,
                detail: a.detail,
            })
            .collect();
        if sysclean_on {
            actions.extend(xcat_image::sysclean::sysclean(&root)?);
        }
        Ok(actions)
    })
    .await?
    .map_err(|source| CaptureError::Prepare {
        node: p.node.clone(),
        source,
    })?;
    CaptureError::check_cancelled(ctx)?;
    // Warnings are reported with the summary; "kept" skeleton entries are no news.
    for a in actions
        .iter()
        .filter(|a| a.action != "warning" && a.action != "skeleton kept")
    {
        let line = format!("capimage: {} {} {}", a.action, a.path, a.detail);
        out.info(line.trim_end().to_string()).await?;
    }
    Ok(actions)
}

/// The kernel the node runs, for the boot files (packimage builds the
/// rest), copied out of the image without following its links; the note
/// for the report.
async fn copy_kernel(p: &Plan, job: &Job) -> Result<String, CaptureError> {
    let (dir, kver) = (p.target.dir.clone(), p.pf.kernel.clone());
    let hold = job.hold.clone();
    let copied = blocking(move || {
        let _hold = hold;
        let root = dir.join("rootimg");
        let root = Root::open(&root).map_err(CaptureError::io("open", root))?;
        xcat_jobkit::copy_kernel(&root, &kver, &dir).map_err(|e| {
            if e.is_missing() {
                CaptureError::NoKernel { kver }
            } else {
                CaptureError::Kernel(e)
            }
        })
    })
    .await?;
    Ok(match copied {
        Ok(_) => format!(
            "kernel {} copied to {}",
            p.pf.kernel,
            p.target.dir.join("kernel").display()
        ),
        Err(note) => note.to_string(),
    })
}

/// Everything worth a warning: the node's own messages, what extraction
/// could not restore, files possibly inconsistent, sysclean's warnings.
fn warnings(c: &Captured) -> Vec<String> {
    let node_err = &c.finished.node_err;
    let mut warnings = node_err.warnings.clone();
    if node_err.dropped > 0 {
        warnings.push(format!(
            "... and {} more node-side messages",
            node_err.dropped
        ));
    }
    warnings.extend(c.finished.summary.warnings.iter().cloned());
    warnings.extend(settle::warnings(&c.churn));
    warnings.extend(
        c.actions
            .iter()
            .filter(|a| a.action == "warning")
            .map(|a| format!("{}: {}", a.path, a.detail)),
    );
    warnings
}

fn report(
    p: &Plan,
    c: &Captured,
    (started_at, notes, warnings, signed_by): (u64, Vec<String>, Vec<String>, Option<String>),
    timings: Timings,
) -> CaptureReport {
    let summary = &c.finished.summary;
    CaptureReport {
        tool: "capimage".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        source_node: p.node.clone(),
        image_name: p.target.imagename.clone(),
        image_dir: p.target.dir.display().to_string(),
        kernel: p.pf.kernel.clone(),
        arch: p.pf.arch.clone(),
        started_at,
        finished_at: now_unix(),
        sizes: Sizes {
            transferred_bytes: c.finished.transferred,
            archive_bytes: summary.archive_bytes,
            content_bytes: summary.content_bytes,
            estimated_bytes: p.estimate,
            packed_bytes: None,
        },
        counts: CountsReport::from_counts(summary.entries, &summary.counts),
        exclusions: p.excludes.clone(),
        sysclean: c.actions.clone(),
        warnings,
        notes,
        timings: timings.0,
        churn: c.churn.clone(),
        signed_by,
        consistency: c.consistency.clone(),
        secrets: c.audit.secrets.clone(),
        packages: c.audit.packages.clone(),
    }
}

/// `capimage-report.json` and `capimage-manifest.tsv` beside the tree.
fn write_records(
    dir: &Path,
    report: &CaptureReport,
    manifest: &xcat_image::ManifestStore,
) -> Result<(), CaptureError> {
    let report_path = dir.join("capimage-report.json");
    report
        .write_to(&report_path)
        .map_err(CaptureError::io("write", &report_path))?;
    write_manifest(manifest, &dir.join("capimage-manifest.tsv"))
}

/// The server's image-signing key. An image without a signature is still
/// usable, so a missing or unreadable key is a warning, not a failed capture.
async fn signing_key(ctx: &Context, out: &Responder) -> Result<Option<SigningKey>, CaptureError> {
    let path = &ctx.settings.image_key;
    match key_if_present(path) {
        Ok(Some(k)) => return Ok(Some(k)),
        Ok(None) => {
            out.warning(format!(
                "capimage: the image is not signed: no image-signing key at {} (xcatd init makes one)",
                path.display()
            ))
            .await?
        }
        Err(e) => out.warning(format!("capimage: the image is not signed: {e}")).await?,
    }
    Ok(None)
}

/// Sign the new manifest with `key`, or remove the last capture's record.
async fn sign(dir: &Path, key: Option<SigningKey>, out: &Responder) -> Result<(), CaptureError> {
    match crate::signing::sign_capture(dir, key.as_ref()) {
        Ok(Some(fp)) => {
            out.info(format!(
                "capimage: manifest signed in {} (image-signing key {fp})",
                dir.join(xcat_image::signature::RECORD).display()
            ))
            .await?
        }
        Ok(None) => {}
        Err(e) => {
            out.warning(format!("capimage: the image is not signed: {e}"))
                .await?
        }
    }
    Ok(())
}

/// The warnings and the summary the admin reads at the end.
async fn announce(
    p: &Plan,
    c: &Captured,
    report: &CaptureReport,
    outcome: &PublishOutcome,
    elapsed: std::time::Duration,
    out: &Responder,
) -> Result<(), CaptureError> {
    let (node, dir, summary) = (&p.node, &p.target.dir, &c.finished.summary);
    for w in report.warnings.iter().take(20) {
        out.warning(format!("{node}: {w}")).await?;
    }
    out.info(format!(
        "capimage: captured {node} into {} ({}): {} entries, {} of files, {} transferred in {}, {}",
        p.target.imagename,
        dir.join("rootimg").display(),
        summary.entries,
        bytes(summary.content_bytes),
        bytes(c.finished.transferred),
        secs(elapsed),
        rate(summary.archive_bytes, elapsed)
    ))
    .await?;
    if let Some(line) = settle::summary_line(node, &c.churn) {
        out.info(line).await?;
    }
    if let Some(prev) = &outcome.previous {
        out.info(format!(
            "capimage: the previous image was kept as {}",
            prev.display()
        ))
        .await?;
    }
    let report_path = dir.join("capimage-report.json");
    out.info(format!("capimage: report in {}", report_path.display()))
        .await?;
    info!(node = %node, image = %p.target.imagename, entries = summary.entries, seconds = elapsed.as_secs_f64(), "capture published");
    Ok(())
}

/// `--pack`: packimage as a sub-request; otherwise the next steps.
async fn pack_or_next(
    p: &Plan,
    opts: &Options,
    ctx: &Context,
    out: &Responder,
) -> Result<(), CaptureError> {
    let image = &p.target.imagename;
    let Some(spec) = &opts.pack else {
        out.info(format!(
            "capimage: next: packimage {image} ; then nodeset <noderange> osimage={image}"
        ))
        .await?;
        return Ok(());
    };
    out.info(format!("capimage: packing {image} ({})", spec.file_name()))
        .await?;
    let args = crate::options::packimage_args(spec, image);
    let code = ctx
        .sub_request(Request::new("packimage", args))
        .forward(out)
        .await?;
    if code != 0 {
        return Err(CaptureError::PackFailed {
            node: p.node.clone(),
            image: image.clone(),
        });
    }
    Ok(())
}

fn write_manifest(m: &xcat_image::ManifestStore, path: &Path) -> Result<(), CaptureError> {
    xcat_image::util::write_synced(path, |w| m.write_tsv(w))
        .map_err(CaptureError::io("write", path))
}
