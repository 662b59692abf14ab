//! Where the image goes: from the node's attributes, or an existing osimage.

use std::path::PathBuf;

use xcat_db::Attrs;
use xcat_plugin::Context;

use crate::error::CaptureError;
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

/// os, arch and profile become directory and file names (the image
/// directory, the exclusion-list lookup): refuse anything that could climb.
fn check_names(node: &str, names: &[(&'static str, &str)]) -> Result<(), CaptureError> {
    for (what, v) in names {
        if v.is_empty() || v.contains('/') || *v == "." || *v == ".." || v.contains('\0') {
            return Err(CaptureError::BadName {
                node: node.to_string(),
                what,
                value: v.to_string(),
            });
        }
    }
    Ok(())
}

/// The install directory: `site.installdir`, else the daemon's setting.
pub async fn install_dir(ctx: &Context) -> Result<PathBuf, CaptureError> {
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

/// What the node's `nodetype` row says (set to nothing counts as missing).
struct NodeType {
    node: String,
    os: String,
    arch: String,
    profile: Option<String>,
}

impl NodeType {
    async fn read(ctx: &Context, node: &str) -> Result<NodeType, CaptureError> {
        let attrs = ctx
            .db
            .node_attrs(&[node.to_string()], "nodetype", &["os", "arch", "profile"])
            .await?;
        let mut a = attrs.get(node).cloned().unwrap_or_default();
        a.retain(|_, v| !v.trim().is_empty());
        let mut take = |column: &'static str| {
            a.remove(column).ok_or_else(|| CaptureError::MissingAttr {
                node: node.to_string(),
                column,
            })
        };
        let (os, arch) = (take("os")?, take("arch")?);
        Ok(NodeType {
            node: node.to_string(),
            os,
            arch,
            profile: a.remove("profile"),
        })
    }

    /// The profile: `given`, else the node's own; checked, with os and
    /// arch, as directory names.
    fn profile(&self, given: Option<String>) -> Result<String, CaptureError> {
        let node = &self.node;
        let profile =
            given
                .or_else(|| self.profile.clone())
                .ok_or_else(|| CaptureError::MissingAttr {
                    node: node.clone(),
                    column: "profile",
                })?;
        check_names(
            node,
            &[
                ("os", &self.os),
                ("arch", &self.arch),
                ("profile", &profile),
            ],
        )?;
        Ok(profile)
    }
}

/// Where the capture of `node` goes: the existing image `-o` names, else
/// the one its attributes name under the install directory.
pub async fn resolve(ctx: &Context, node: &str, opts: &Options) -> Result<Target, CaptureError> {
    let nt = NodeType::read(ctx, node).await?;
    match &opts.osimage {
        Some(img) => existing(ctx, img, nt, opts).await,
        None => {
            let install = install_dir(ctx).await?;
            let profile = nt.profile(opts.profile.clone())?;
            Ok(Target {
                imagename: format!("{}-{}-netboot-{profile}", nt.os, nt.arch),
                dir: install
                    .join("netboot")
                    .join(&nt.os)
                    .join(&nt.arch)
                    .join(&profile),
                os: nt.os,
                arch: nt.arch,
                profile,
                existing: false,
            })
        }
    }
}

/// `-o IMAGE`: its rows must exist, be for the node's os and arch, and
/// name an absolute image directory.
async fn existing(
    ctx: &Context,
    img: &str,
    nt: NodeType,
    opts: &Options,
) -> Result<Target, CaptureError> {
    let image = || img.to_string();
    let os_row = ctx
        .db
        .get_row("osimage", img)
        .await?
        .ok_or_else(|| CaptureError::NoOsimage { image: image() })?;
    let li_row = ctx
        .db
        .get_row("linuximage", img)
        .await?
        .ok_or_else(|| CaptureError::NoLinuximage { image: image() })?;
    check_match(img, &nt, &os_row)?;
    let dir = rootimgdir(img, &li_row)?;
    let profile = nt.profile(
        opts.profile
            .clone()
            .or_else(|| os_row.get("profile").cloned()),
    )?;
    Ok(Target {
        imagename: image(),
        dir: PathBuf::from(dir),
        os: nt.os,
        arch: nt.arch,
        profile,
        existing: true,
    })
}

/// The osimage's `osvers` and `osarch`, where set, against the node's.
fn check_match(img: &str, nt: &NodeType, os_row: &Attrs) -> Result<(), CaptureError> {
    if let Some(v) = os_row.get("osvers").filter(|v| **v != nt.os) {
        return Err(CaptureError::ImageOs {
            image: img.to_string(),
            image_os: v.clone(),
            node: nt.node.clone(),
            os: nt.os.clone(),
        });
    }
    if let Some(v) = os_row.get("osarch").filter(|v| !same_arch(v, &nt.arch)) {
        return Err(CaptureError::ImageArch {
            image: img.to_string(),
            image_arch: v.clone(),
            node: nt.node.clone(),
            arch: nt.arch.clone(),
        });
    }
    Ok(())
}

/// `linuximage.rootimgdir`, which must be set and absolute (a relative
/// directory would land wherever the daemon happens to run).
fn rootimgdir(img: &str, li_row: &Attrs) -> Result<String, CaptureError> {
    let dir = li_row
        .get("rootimgdir")
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| CaptureError::NoRootimgdir {
            image: img.to_string(),
        })?;
    if !dir.starts_with('/') {
        return Err(CaptureError::RelativeRootimgdir {
            image: img.to_string(),
            dir,
        });
    }
    Ok(dir)
}

/// Upsert the osimage and linuximage rows of a captured image.
pub async fn register(
    ctx: &Context,
    t: &Target,
    node: &str,
    kernel: &str,
    opts: &Options,
    when: &str,
    signed_by: Option<&str>,
) -> Result<(), CaptureError> {
    let mut description = format!("captured from {node} at {when}");
    if let Some(fp) = signed_by {
        description.push_str(&format!(", manifest signed by {fp}"));
    }
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
