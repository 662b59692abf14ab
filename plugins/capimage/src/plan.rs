//! What a capture will do, known after one preflight round trip: the
//! target image, the node's mounts and tools, the exclusions, the wire
//! compression and the size estimate; and the checks made before anything
//! is transferred.

use std::path::Path;
use std::time::Duration;

use xcat_image::budget::Budget;
use xcat_jobkit::figures::bytes;
use xcat_plugin::{Context, Responder};
use xcat_remote::Remote;

use crate::archive::Site;
use crate::consistent::Consistency;
use crate::error::CaptureError;
use crate::exlist::{self, ExList};
use crate::job::Job;
use crate::options::Options;
use crate::pipeline::{self, Wire};
use crate::preflight::{self, Preflight};
use crate::target::{self, Target};

/// Free space required beyond the estimate: 10% plus this.
const SPACE_MARGIN: u64 = 256 << 20;

/// The logical size of all files a capture may bring, as a multiple of what
/// the node reports in use on the captured filesystems, plus a margin. The
/// factor covers filesystems that compress (btrfs, zfs: more logical bytes
/// than blocks used) and the margin sparse files (holes use no blocks); the
/// ceiling stops a node that sends terabytes of holes, which packimage would
/// read as zeros.
const LOGICAL_FACTOR: u64 = 4;
const LOGICAL_MARGIN: u64 = 16 << 30;

/// Everything known after preflight.
pub struct Plan {
    pub node: String,
    pub addr: String,
    pub target: Target,
    pub pf: Preflight,
    pub ex: ExList,
    pub excludes: Vec<String>,
    pub wire: Wire,
    pub estimate: u64,
    /// Snapshots and the package manager's lock.
    pub consistency: Consistency,
}

pub async fn plan(
    node: &str,
    opts: &Options,
    cwd: Option<&str>,
    ctx: &Context,
    out: &Responder,
) -> Result<Plan, CaptureError> {
    let target = target::resolve(ctx, node, opts).await?;
    let ex = exclusion_list(opts, cwd, ctx, &target).await?;
    let addr = xcat_jobkit::node_address(&ctx.db, node).await?;
    out.info(format!("capimage: checking {node} ({addr})"))
        .await?;
    let pf = preflight(ctx, node, &addr, &target).await?;
    let wire = pipeline::choose(opts.compress, pf.has("zstd"), pf.has("gzip")).map_err(|tool| {
        CaptureError::NoCompressor {
            node: node.to_string(),
            tool,
        }
    })?;
    let skipped: Vec<String> = pf.skipped().iter().map(|m| m.point.clone()).collect();
    let consistency = Consistency::plan(opts.snapshot, &pf, node)?;
    let mut excludes = pipeline::effective_excludes(&ex, &skipped);
    excludes.extend(Consistency::excludes(&pf));
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
        consistency,
    })
}

impl Plan {
    /// The extraction's ceilings: the logical size from the node's usage.
    /// Where every archive pass of this capture runs and lands.
    pub fn site<'a>(&'a self, staging: &'a Path, job: &'a Job) -> Site<'a> {
        Site {
            node: &self.node,
            addr: &self.addr,
            staging,
            image_dir: &self.target.dir,
            job,
        }
    }

    /// `base` (the configured budget) with its logical-size ceiling narrowed
    /// to what this node can really hold.
    pub fn budget(&self, base: &Budget) -> Budget {
        logical_budget(base, self.estimate)
    }
}

/// `base`, its sum of logical sizes at most what a node with `used` bytes in
/// use on its captured filesystems can hold (the configured ceiling stays
/// when it is lower).
fn logical_budget(base: &Budget, used: u64) -> Budget {
    let from_node = used
        .saturating_mul(LOGICAL_FACTOR)
        .saturating_add(LOGICAL_MARGIN);
    if from_node >= base.max_logical_bytes {
        return base.clone();
    }
    Budget {
        max_logical_bytes: from_node,
        logical_source: format!(
            "{LOGICAL_FACTOR} times the {} the node reports in use, plus {}",
            bytes(used),
            bytes(LOGICAL_MARGIN)
        ),
        ..base.clone()
    }
}

/// `-x FILE` (relative to the client's directory), else the lookup in the
/// install and share directories.
async fn exclusion_list(
    opts: &Options,
    cwd: Option<&str>,
    ctx: &Context,
    target: &Target,
) -> Result<ExList, CaptureError> {
    let ex = match &opts.exlist {
        Some(p) => ExList::read_as(
            &Path::new(cwd.unwrap_or("/")).join(p),
            xcat_jobkit::client_file::local_user(ctx.identity.user.as_deref()),
        ),
        None => exlist::find(
            &target::install_dir(ctx).await?,
            &ctx.settings.share_dir,
            &target.os,
            &target.arch,
            &target.profile,
        ),
    };
    Ok(ex?)
}

/// One ssh round trip: the node's kernel, arch, mounts, space and tools,
/// checked against what a capture needs.
async fn preflight(
    ctx: &Context,
    node: &str,
    addr: &str,
    target: &Target,
) -> Result<Preflight, CaptureError> {
    let remote = Remote::new(ctx.settings.ssh.clone()).with_cancel(ctx.cancel.clone());
    let res = remote
        .run(
            node,
            addr,
            preflight::SCRIPT,
            Some(Duration::from_secs(120)),
        )
        .await?;
    CaptureError::check_cancelled(ctx)?;
    if !res.success() {
        return Err(CaptureError::Preflight {
            node: node.to_string(),
            code: res.code(),
            stderr: res.stderr.trim().to_string(),
        });
    }
    let pf = preflight::parse(&res.stdout_text());
    pf.check_diskful(node)?;
    // The version names files of the image and rows of the tables: one plain name.
    xcat_jobkit::check_kernel_version(&pf.kernel).map_err(|why| CaptureError::KernelVersion {
        node: node.to_string(),
        kver: pf.kernel.clone(),
        why,
    })?;
    if !target::same_arch(&pf.arch, &target.arch) {
        return Err(CaptureError::NodeArch {
            node: node.to_string(),
            node_arch: pf.arch,
            arch: target.arch.clone(),
        });
    }
    for (tool, what) in [
        ("tar", "GNU tar"),
        ("tar-xattrs", "GNU tar with --xattrs support"),
        ("find", "find"),
        ("bash", "bash"),
    ] {
        if !pf.has(tool) {
            return Err(CaptureError::MissingTool {
                node: node.to_string(),
                what,
            });
        }
    }
    Ok(pf)
}

pub async fn describe_plan(p: &Plan, opts: &Options, out: &Responder) -> Result<(), CaptureError> {
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
        bytes(p.estimate),
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

/// Refuse a capture that cannot fit where the image goes.
pub fn check_space(p: &Plan) -> Result<(), CaptureError> {
    let need = p.estimate + p.estimate / 10 + SPACE_MARGIN;
    match available_bytes(&p.target.dir) {
        Some(avail) if avail < need => Err(CaptureError::NotEnoughSpace {
            node: p.node.clone(),
            dir: p.target.dir.clone(),
            free: avail,
            needed: need,
        }),
        _ => Ok(()),
    }
}

/// What a dry run says instead of capturing.
pub async fn dry_run(p: &Plan, out: &Responder) -> Result<(), CaptureError> {
    out.info(format!(
        "capimage: dry run: nothing transferred; about {} would be captured from {} into {}",
        bytes(p.estimate),
        p.node,
        p.target.dir.join("rootimg").display()
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logical_budget_follows_the_nodes_usage() {
        let b = logical_budget(&Budget::default(), 2 << 30);
        assert_eq!(b.max_logical_bytes, (8 << 30) + LOGICAL_MARGIN);
        // a 16 TiB sparse file from a node using 2 GiB is refused
        assert!(b.check_file("f", 16 << 40, 0).is_err());
        let e = b
            .check_file("g", 20 << 30, 10 << 30)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the node reports in use"), "{e}");
        assert!(b.check_file("f", 5 << 30, 1 << 30).is_ok());
        // the configured ceiling stays when it is the lower
        let base = Budget::default();
        assert_eq!(logical_budget(&base, u64::MAX), base);
    }
}
