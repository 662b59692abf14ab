//! Where the image goes: from the node's attributes, or an existing osimage.

use std::path::PathBuf;

use xcat_plugin::{Context, HandlerError};

use crate::options::Options;

/// The image a capture produces.
#[derive(Debug, Clone)]
pub struct Target {
    pub imagename: String,
    /// `<dir>`; the tree goes to `<dir>/rootimg`.
    pub dir: PathBuf,
    pub os: String,
    pub arch: String,
    pub profile: String,
    /// The image already existed (`-o`).
    pub existing: bool,
}

fn missing(node: &str, col: &str) -> HandlerError {
    HandlerError::Failed(format!(
        "{node} has no nodetype.{col}; set it first, e.g. `chtab node={node} nodetype.{col}=VALUE` \
         (or on one of its groups)"
    ))
}

/// os, arch and profile become directory and file names (the image
/// directory, the exclusion-list lookup): refuse anything that could climb.
fn check_names(node: &str, names: &[(&str, &str)]) -> Result<(), HandlerError> {
    for (what, v) in names {
        if v.is_empty() || v.contains('/') || *v == "." || *v == ".." || v.contains('\0') {
            return Err(HandlerError::Failed(format!(
                "{node}: {what} {v:?} cannot be used as a directory name"
            )));
        }
    }
    Ok(())
}

/// The install directory: `site.installdir`, else the daemon's setting.
pub async fn install_dir(ctx: &Context) -> Result<PathBuf, HandlerError> {
    Ok(match ctx.db.site("installdir").await? {
        Some(d) if !d.trim().is_empty() => PathBuf::from(d.trim()),
        _ => ctx.settings.install_dir.clone(),
    })
}

/// Normalise the architecture names xCAT uses (`x86_64`, `ppc64le`, `aarch64`).
pub fn same_arch(a: &str, b: &str) -> bool {
    let norm = |s: &str| match s {
        "x86-64" | "amd64" => "x86_64".to_string(),
        "arm64" => "aarch64".to_string(),
        other => other.to_string(),
    };
    norm(a) == norm(b)
}

pub async fn resolve(ctx: &Context, node: &str, opts: &Options) -> Result<Target, HandlerError> {
    let attrs = ctx
        .db
        .node_attrs(&[node.to_string()], "nodetype", &["os", "arch", "profile"])
        .await?;
    let mut a = attrs.get(node).cloned().unwrap_or_default();
    // An attribute set to nothing is as good as missing.
    a.retain(|_, v| !v.trim().is_empty());
    let os = a.get("os").cloned().ok_or_else(|| missing(node, "os"))?;
    let arch = a
        .get("arch")
        .cloned()
        .ok_or_else(|| missing(node, "arch"))?;
    let install = install_dir(ctx).await?;

    if let Some(img) = &opts.osimage {
        let os_row = ctx.db.get_row("osimage", img).await?.ok_or_else(|| {
            HandlerError::Failed(format!(
                "osimage {img} is not defined; create it (chtab imagename={img} osimage.osvers=...) or omit -o"
            ))
        })?;
        let li_row = ctx.db.get_row("linuximage", img).await?.ok_or_else(|| {
            HandlerError::Failed(format!(
                "linuximage {img} is not defined; set linuximage.rootimgdir for it"
            ))
        })?;
        if let Some(v) = os_row.get("osvers") {
            if v != &os {
                return Err(HandlerError::Failed(format!(
                    "osimage {img} is for {v} but {node} runs {os} (nodetype.os); pick a matching image"
                )));
            }
        }
        if let Some(v) = os_row.get("osarch") {
            if !same_arch(v, &arch) {
                return Err(HandlerError::Failed(format!(
                    "osimage {img} is for {v} but {node} is {arch} (nodetype.arch); pick a matching image"
                )));
            }
        }
        let dir = li_row
            .get("rootimgdir")
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                HandlerError::Failed(format!(
                    "linuximage {img} has no rootimgdir; set linuximage.rootimgdir"
                ))
            })?;
        // A relative directory would land wherever the daemon happens to run.
        if !dir.starts_with('/') {
            return Err(HandlerError::Failed(format!(
                "linuximage.rootimgdir of {img} is {dir:?}, not an absolute path; set it to the image's full path"
            )));
        }
        let profile = opts
            .profile
            .clone()
            .or_else(|| os_row.get("profile").cloned())
            .or_else(|| a.get("profile").cloned())
            .ok_or_else(|| missing(node, "profile"))?;
        check_names(node, &[("os", &os), ("arch", &arch), ("profile", &profile)])?;
        return Ok(Target {
            imagename: img.clone(),
            dir: PathBuf::from(dir),
            os,
            arch,
            profile,
            existing: true,
        });
    }

    let profile = opts
        .profile
        .clone()
        .or_else(|| a.get("profile").cloned())
        .ok_or_else(|| missing(node, "profile"))?;
    check_names(node, &[("os", &os), ("arch", &arch), ("profile", &profile)])?;
    Ok(Target {
        imagename: format!("{os}-{arch}-netboot-{profile}"),
        dir: install.join("netboot").join(&os).join(&arch).join(&profile),
        os,
        arch,
        profile,
        existing: false,
    })
}

/// Upsert the osimage and linuximage rows of a captured image.
pub async fn register(
    ctx: &Context,
    t: &Target,
    node: &str,
    kernel: &str,
    opts: &Options,
    when: &str,
) -> Result<(), HandlerError> {
    let description = format!("captured from {node} at {when}");
    let dir = t.dir.display().to_string();
    ctx.db
        .upsert(
            "osimage",
            &[("imagename", &t.imagename)],
            &[
                ("profile", &t.profile),
                ("imagetype", "linux"),
                ("provmethod", "netboot"),
                ("osname", "Linux"),
                ("osvers", &t.os),
                ("osarch", &t.arch),
                ("description", &description),
            ],
        )
        .await?;
    let mut li: Vec<(&str, &str)> = vec![("rootimgdir", &dir), ("kernelver", kernel)];
    if let Some(b) = &opts.bootif {
        li.push(("nodebootif", b));
    }
    if let Some(n) = &opts.netdrivers {
        li.push(("netdrivers", n));
    }
    ctx.db
        .upsert("linuximage", &[("imagename", &t.imagename)], &li)
        .await?;
    Ok(())
}
