//! The capture itself: from preflight to a published, registered image.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};
use xcat_image::publish::{self, ImageLock, PublishError};
use xcat_image::report::{CaptureReport, ChurnReport, CountsReport, PhaseTiming, Sizes};
use xcat_plugin::{Context, HandlerError, HandlerResult, Request, Responder, Settings};
use xcat_remote::Remote;

use crate::archive::{self, Finished};
use crate::exlist::{self, ExList};
use crate::options::Options;
use crate::pipeline::{self, Wire};
use crate::preflight::{self, Preflight};
use crate::progress;
use crate::settle::{self, Site};
use crate::target::{self, Target};

/// Free space required beyond the estimate: 10% plus this.
const SPACE_MARGIN: u64 = 256 << 20;

fn fail(msg: impl Into<String>) -> HandlerError {
    HandlerError::Failed(msg.into())
}

/// `2026-11-25 20:23:24 UTC` for a Unix time: what an admin reads in
/// `osimage.description` and in a busy image's lock message.
fn utc_text(t: u64) -> String {
    let (days, secs) = (t / 86_400, t % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The node's address: `hosts.ip` when set, else its name.
async fn address(ctx: &Context, node: &str) -> Result<String, HandlerError> {
    let attrs = ctx
        .db
        .node_attrs(&[node.to_string()], "hosts", &["ip"])
        .await?;
    Ok(attrs
        .get(node)
        .and_then(|a| a.get("ip"))
        .filter(|ip| !ip.is_empty())
        .cloned()
        .unwrap_or_else(|| node.to_string()))
}

/// Bytes available to root-less writers on the filesystem holding `dir` (or
/// its nearest existing ancestor).
fn available_bytes(dir: &Path) -> Option<u64> {
    let mut p = dir;
    loop {
        if p.exists() {
            let st = rustix::fs::statvfs(p).ok()?;
            return Some(st.f_bavail.saturating_mul(st.f_frsize));
        }
        p = p.parent()?;
    }
}

/// Journal entry: the image directory of a running capture, so that a
/// killed daemon's staging tree is removed at its next start.
struct Journal {
    path: PathBuf,
}

impl Journal {
    fn create(settings: &Settings, dir: &Path) -> Result<Journal, HandlerError> {
        let jdir = crate::journal_dir(settings);
        std::fs::create_dir_all(&jdir)
            .map_err(|e| fail(format!("cannot create {}: {e}", jdir.display())))?;
        let path = jdir.join(format!("{}-{}", std::process::id(), now_unix_nanos()));
        std::fs::write(&path, dir.as_os_str().as_encoded_bytes())
            .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
        Ok(Journal { path })
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn now_unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Clean up after captures a killed daemon left behind: restore a published
/// tree interrupted between its two renames, remove staging trees. Called by
/// the daemon at start; returns what it did, for the log.
pub fn recover_at_start(settings: &Settings) -> Vec<String> {
    let mut done = Vec::new();
    let jdir = crate::journal_dir(settings);
    let Ok(entries) = std::fs::read_dir(&jdir) else {
        return done;
    };
    for e in entries.flatten() {
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue;
        };
        let dir = PathBuf::from(String::from_utf8_lossy(&bytes).into_owned());
        match publish::lock_image_dir(
            &dir,
            &format!("recovery by xcatd (pid {})", std::process::id()),
        ) {
            Ok(_lock) => {
                if let Ok(Some(g)) = publish::recover(&dir) {
                    done.push(format!(
                        "{}: restored rootimg from {}",
                        dir.display(),
                        g.display()
                    ));
                }
                if let Ok(removed) = publish::cleanup_stale(&dir) {
                    for r in removed {
                        done.push(format!(
                            "{}: removed stale staging tree {}",
                            dir.display(),
                            r.display()
                        ));
                    }
                }
                let _ = std::fs::remove_file(e.path());
            }
            Err(err) => done.push(format!("{}: left alone: {err}", dir.display())),
        }
    }
    done
}

/// Everything known after preflight.
struct Plan {
    node: String,
    addr: String,
    target: Target,
    pf: Preflight,
    ex: ExList,
    excludes: Vec<String>,
    wire: Wire,
    estimate: u64,
}

async fn plan(
    node: &str,
    opts: &Options,
    cwd: Option<&str>,
    ctx: &Context,
    out: &Responder,
) -> Result<Plan, HandlerError> {
    let target = target::resolve(ctx, node, opts).await?;
    let install = target::install_dir(ctx).await?;
    let ex = match &opts.exlist {
        Some(p) => {
            let p = if p.is_relative() {
                Path::new(cwd.unwrap_or("/")).join(p)
            } else {
                p.clone()
            };
            ExList::read(&p).map_err(|e| fail(e.to_string()))?
        }
        None => exlist::find(
            &install,
            &ctx.settings.share_dir,
            &target.os,
            &target.arch,
            &target.profile,
        )
        .map_err(|e| fail(e.to_string()))?,
    };
    let addr = address(ctx, node).await?;
    let remote = Remote::new(ctx.settings.ssh.clone()).with_cancel(ctx.cancel.clone());
    out.info(format!("capimage: checking {node} ({addr})"))
        .await?;
    let res = remote
        .run(
            node,
            &addr,
            preflight::SCRIPT,
            Some(Duration::from_secs(120)),
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
    ctx.check_cancelled()?;
    if !res.success() {
        return Err(fail(format!(
            "{node}: the preflight check failed (exit {}): {}",
            res.code(),
            res.stderr.trim()
        )));
    }
    let pf = preflight::parse(&res.stdout_text());
    pf.check_diskful(node).map_err(fail)?;
    if !target::same_arch(&pf.arch, &target.arch) {
        return Err(fail(format!(
            "{node} runs {} but nodetype.arch says {}; correct nodetype.arch",
            pf.arch, target.arch
        )));
    }
    for (tool, what) in [
        ("tar", "GNU tar"),
        ("tar-xattrs", "GNU tar with --xattrs support"),
        ("find", "find"),
        ("bash", "bash"),
    ] {
        if !pf.has(tool) {
            return Err(fail(format!(
                "{node} has no {what}; install it on the node and retry"
            )));
        }
    }
    let wire = pipeline::choose(opts.compress, pf.has("zstd"), pf.has("gzip"))
        .map_err(|m| fail(format!("{node}: {m}")))?;
    let skipped: Vec<String> = pf.skipped().iter().map(|m| m.point.clone()).collect();
    let excludes = pipeline::effective_excludes(&ex, &skipped);
    let estimate = pf.used_bytes();
    Ok(Plan {
        node: node.to_string(),
        addr,
        target,
        pf,
        ex,
        excludes,
        wire,
        estimate,
    })
}

async fn describe_plan(p: &Plan, opts: &Options, out: &Responder) -> HandlerResult {
    let captured: Vec<String> =
        p.pf.captured()
            .iter()
            .map(|m| format!("{} ({})", m.point, m.fstype))
            .collect();
    let skipped: Vec<String> =
        p.pf.skipped()
            .iter()
            .map(|m| format!("{} ({})", m.point, m.fstype))
            .collect();
    out.info(format!(
        "capimage: {} runs kernel {} on {}; image {} in {}",
        p.node,
        p.pf.kernel,
        p.pf.arch,
        p.target.imagename,
        p.target.dir.display()
    ))
    .await?;
    out.info(format!("capimage: capturing {}", captured.join(", ")))
        .await?;
    if !skipped.is_empty() {
        out.info(format!("capimage: skipping mounts {}", skipped.join(", ")))
            .await?;
    }
    out.info(format!(
        "capimage: about {} in use; transport compression {}; exclusion list {}",
        progress::bytes(p.estimate),
        p.wire.name(),
        p.ex.source
            .as_ref()
            .map(|s| s.display().to_string())
            .unwrap_or_else(|| "(built-in default)".into())
    ))
    .await?;
    if opts.verbose || opts.dry_run {
        for e in &p.excludes {
            out.info(format!("  exclude {e}")).await?;
        }
        for i in &p.ex.include {
            out.info(format!("  include {i}")).await?;
        }
    }
    Ok(())
}

/// Stream the node's tree into `staging`, with a progress line every second.
async fn stream(
    p: &Plan,
    ctx: &Context,
    out: &Responder,
    staging: &Path,
    acls: bool,
) -> Result<Finished, HandlerError> {
    let script = pipeline::script(&p.excludes, &p.ex.include, p.wire, acls);
    let mut run = archive::start(
        ctx,
        (&p.node, &p.addr),
        &script,
        p.wire,
        staging,
        &p.target.dir,
    )?;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // After a slow client send, skip missed ticks instead of bursting lines.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let extracted = loop {
        tokio::select! {
            r = &mut run.extraction => break r,
            _ = tick.tick() => {
                let line = progress::line(
                    &p.node,
                    run.progress.bytes.load(Ordering::Relaxed),
                    p.estimate,
                    run.progress.entries.load(Ordering::Relaxed),
                    started.elapsed(),
                );
                // A client that cannot take progress must not stall the capture.
                if out.sinfo(line).await.is_err() {
                    ctx.cancel.cancel();
                }
            }
        }
    };
    run.finish(extracted, ctx).await
}

pub async fn run(
    node: &str,
    opts: &Options,
    cwd: Option<&str>,
    ctx: &Context,
    out: &Responder,
) -> HandlerResult {
    let t0 = Instant::now();
    let started_at = now_unix();
    let mut timings = Vec::new();
    let p = plan(node, opts, cwd, ctx, out).await?;
    timings.push(PhaseTiming {
        phase: "preflight".into(),
        seconds: t0.elapsed().as_secs_f64(),
    });
    describe_plan(&p, opts, out).await?;

    let need = p.estimate + p.estimate / 10 + SPACE_MARGIN;
    if let Some(avail) = available_bytes(&p.target.dir) {
        if avail < need {
            return Err(fail(format!(
                "not enough space for the image of {node} in {}: {} free, about {} needed; free space or \
                 move the install directory",
                p.target.dir.display(),
                progress::bytes(avail),
                progress::bytes(need)
            )));
        }
    }
    if opts.dry_run {
        out.info(format!(
            "capimage: dry run: nothing transferred; about {} would be captured from {node} into {}",
            progress::bytes(p.estimate),
            p.target.dir.join("rootimg").display()
        ))
        .await?;
        return Ok(());
    }

    let who = ctx
        .identity
        .user
        .clone()
        .unwrap_or_else(|| "(unauthenticated)".into());
    let description = format!(
        "capimage of {node} by {who} (xcatd pid {}) started at {}",
        std::process::id(),
        utc_text(started_at)
    );
    let lock: ImageLock = match publish::lock_image_dir(&p.target.dir, &description) {
        Ok(l) => l,
        Err(PublishError::Busy { holder, .. }) => {
            return Err(fail(format!(
                "a capture into {} is already running: {holder}; wait for it or cancel it",
                p.target.dir.display()
            )))
        }
        Err(e) => return Err(fail(format!("cannot lock {}: {e}", p.target.dir.display()))),
    };
    let dir = p.target.dir.clone();
    let _ = publish::recover(&dir);
    let _ = publish::cleanup_stale(&dir);
    let journal = Journal::create(&ctx.settings, &dir)?;
    let staging = publish::create_staging(&dir).map_err(|e| fail(e.to_string()))?;

    let result = capture_into(&p, opts, ctx, out, &staging, &mut timings).await;
    let (
        Finished {
            summary,
            node_err,
            transferred,
        },
        churn,
        actions,
    ) = match result {
        Ok(v) => v,
        Err(e) => {
            let staging2 = staging.clone();
            let _ = tokio::task::spawn_blocking(move || publish::discard_staging(&staging2)).await;
            drop(journal);
            drop(lock);
            warn!(node, error = %e, "capture failed; staging removed");
            if matches!(e, HandlerError::Cancelled) {
                // The dispatcher answers with a bare "cancelled": say what it
                // means for the image (the client may be gone: ignore errors).
                let _ = out
                    .info(format!(
                        "capimage: capture of {node} cancelled; the partial tree was removed and the \
                         previous image in {} is unchanged",
                        dir.display()
                    ))
                    .await;
            }
            return Err(e);
        }
    };

    // Publish: from here on the new tree is the image.
    let t_pub = Instant::now();
    let keep = opts.keep;
    let (dir2, staging2) = (dir.clone(), staging.clone());
    let outcome = tokio::task::spawn_blocking(move || publish::publish(&dir2, &staging2, keep))
        .await
        .map_err(|e| fail(format!("internal error: {e}")))?;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || publish::discard_staging(&staging)).await;
            return Err(fail(format!(
                "cannot publish the image of {node}: {e}; the previous image is unchanged"
            )));
        }
    };
    drop(journal);
    timings.push(PhaseTiming {
        phase: "publish".into(),
        seconds: t_pub.elapsed().as_secs_f64(),
    });

    let when = utc_text(now_unix());
    target::register(ctx, &p.target, node, &p.pf.kernel, opts, &when).await?;

    // The kernel the node runs, for the boot files (packimage builds the rest).
    let mut notes = summary.notes.clone();
    let kernel_src = dir
        .join("rootimg/boot")
        .join(format!("vmlinuz-{}", p.pf.kernel));
    if kernel_src.is_file() {
        let tmp = dir.join(".kernel.tmp");
        if std::fs::copy(&kernel_src, &tmp).is_ok()
            && std::fs::rename(&tmp, dir.join("kernel")).is_ok()
        {
            notes.push(format!(
                "kernel {} copied to {}",
                p.pf.kernel,
                dir.join("kernel").display()
            ));
        }
    } else {
        notes.push(format!(
            "the image has no boot/vmlinuz-{}; packimage will pick the newest kernel in /boot",
            p.pf.kernel
        ));
    }
    let mut warnings = node_err.warnings.clone();
    if node_err.dropped > 0 {
        warnings.push(format!(
            "... and {} more node-side messages",
            node_err.dropped
        ));
    }
    warnings.extend(summary.warnings.iter().cloned());
    warnings.extend(settle::warnings(&churn));
    warnings.extend(
        actions
            .iter()
            .filter(|a| a.action == "warning")
            .map(|a| format!("{}: {}", a.path, a.detail)),
    );
    let report = CaptureReport {
        tool: "capimage".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        source_node: node.to_string(),
        image_name: p.target.imagename.clone(),
        image_dir: dir.display().to_string(),
        kernel: p.pf.kernel.clone(),
        arch: p.pf.arch.clone(),
        started_at,
        finished_at: now_unix(),
        sizes: Sizes {
            transferred_bytes: transferred,
            archive_bytes: summary.archive_bytes,
            content_bytes: summary.content_bytes,
            estimated_bytes: p.estimate,
            packed_bytes: None,
        },
        counts: CountsReport::from_counts(summary.entries, &summary.counts),
        exclusions: p.excludes.clone(),
        sysclean: actions.clone(),
        warnings: warnings.clone(),
        notes,
        timings,
        churn: churn.clone(),
    };
    let report_path = dir.join("capimage-report.json");
    report
        .write_to(&report_path)
        .map_err(|e| fail(format!("cannot write {}: {e}", report_path.display())))?;
    let manifest_path = dir.join("capimage-manifest.tsv");
    write_manifest(&summary.manifest, &manifest_path)?;
    drop(lock);

    for w in warnings.iter().take(20) {
        out.warning(format!("{node}: {w}")).await?;
    }
    let elapsed = t0.elapsed();
    out.info(format!(
        "capimage: captured {node} into {} ({}): {} entries, {} of files, {} transferred in {}, {}",
        p.target.imagename,
        dir.join("rootimg").display(),
        summary.entries,
        progress::bytes(summary.content_bytes),
        progress::bytes(transferred),
        progress::secs(elapsed),
        progress::rate(summary.archive_bytes, elapsed)
    ))
    .await?;
    if let Some(line) = settle::summary_line(node, &churn) {
        out.info(line).await?;
    }
    if let Some(prev) = &outcome.previous {
        out.info(format!(
            "capimage: the previous image was kept as {}",
            prev.display()
        ))
        .await?;
    }
    out.info(format!("capimage: report in {}", report_path.display()))
        .await?;
    info!(node, image = %p.target.imagename, entries = summary.entries, seconds = elapsed.as_secs_f64(), "capture published");

    if let Some((method, comp)) = &opts.pack {
        out.info(format!(
            "capimage: packing {} ({method}, {comp})",
            p.target.imagename
        ))
        .await?;
        let sub = ctx.sub_request(Request::new(
            "packimage",
            vec![
                "-m".into(),
                method.clone(),
                "-c".into(),
                comp.clone(),
                p.target.imagename.clone(),
            ],
        ));
        let code = sub.forward(out).await?;
        if code != 0 {
            return Err(fail(format!(
                "the image of {node} was captured, but packing it failed; run packimage {} again",
                p.target.imagename
            )));
        }
    } else {
        out.info(format!(
            "capimage: next: packimage {} ; then nodeset <noderange> osimage={}",
            p.target.imagename, p.target.imagename
        ))
        .await?;
    }
    Ok(())
}

type Captured = (
    Finished,
    ChurnReport,
    Vec<xcat_image::sysclean::SyscleanAction>,
);

async fn capture_into(
    p: &Plan,
    opts: &Options,
    ctx: &Context,
    out: &Responder,
    staging: &Path,
    timings: &mut Vec<PhaseTiming>,
) -> Result<Captured, HandlerError> {
    let t = Instant::now();
    let acls = p.pf.has("tar-acls");
    let mut finished = stream(p, ctx, out, staging, acls).await?;
    timings.push(PhaseTiming {
        phase: "capture".into(),
        seconds: t.elapsed().as_secs_f64(),
    });
    let t = Instant::now();
    let churn = settle_churn(p, ctx, staging, acls, &mut finished).await?;
    timings.push(PhaseTiming {
        phase: "settle".into(),
        seconds: t.elapsed().as_secs_f64(),
    });
    let summary = &finished.summary;
    out.info(format!(
        "capimage: received {} entries ({} of files) from {}",
        summary.entries,
        progress::bytes(summary.content_bytes),
        p.node
    ))
    .await?;

    let t = Instant::now();
    let root = staging.to_path_buf();
    let sysclean_on = opts.sysclean;
    let actions = tokio::task::spawn_blocking(
        move || -> std::io::Result<Vec<xcat_image::sysclean::SyscleanAction>> {
            let mut actions: Vec<xcat_image::sysclean::SyscleanAction> =
                xcat_image::skeleton::ensure_skeleton(&root)?
                    .into_iter()
                    .map(|a| xcat_image::sysclean::SyscleanAction {
                        action: format!("skeleton {}", a.action),
                        path: a.path,
                        detail: a.detail,
                    })
                    .collect();
            if sysclean_on {
                actions.extend(xcat_image::sysclean::sysclean(&root)?);
            }
            Ok(actions)
        },
    )
    .await
    .map_err(|e| fail(format!("internal error: {e}")))?
    .map_err(|e| {
        fail(format!(
            "cannot prepare the captured tree of {}: {e}",
            p.node
        ))
    })?;
    ctx.check_cancelled()?;
    // Warnings are reported with the summary; "kept" skeleton entries are no news.
    for a in actions
        .iter()
        .filter(|a| a.action != "warning" && a.action != "skeleton kept")
    {
        out.info(
            format!("capimage: {} {} {}", a.action, a.path, a.detail)
                .trim_end()
                .to_string(),
        )
        .await?;
    }
    timings.push(PhaseTiming {
        phase: "sysclean".into(),
        seconds: t.elapsed().as_secs_f64(),
    });
    Ok((finished, churn, actions))
}

/// Re-read what changed during the stream and count what appeared.
async fn settle_churn(
    p: &Plan,
    ctx: &Context,
    staging: &Path,
    acls: bool,
    f: &mut Finished,
) -> Result<ChurnReport, HandlerError> {
    let site = Site {
        node: &p.node,
        addr: &p.addr,
        staging,
        image_dir: &p.target.dir,
    };
    let mut churn = settle::initial(&f.node_err);
    settle::reread(ctx, &site, acls, &mut f.summary, &f.node_err, &mut churn).await?;
    settle::count_appeared(
        ctx,
        &site,
        (&p.excludes, &p.ex.include),
        f.node_err.started.as_deref(),
        &f.summary.manifest,
        &mut churn,
    )
    .await;
    ctx.check_cancelled()?;
    Ok(churn)
}

fn write_manifest(m: &xcat_image::Manifest, path: &Path) -> Result<(), HandlerError> {
    let tmp = path.with_extension("tsv.tmp");
    let res = (|| -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(f);
        m.write_tsv(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc_text(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc_text(1_795_638_204), "2026-11-25 20:23:24 UTC");
        assert_eq!(super::utc_text(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }
}
