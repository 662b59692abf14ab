//! An image as `linuximage` describes it, for the jobs that work on its tree
//! (packimage, geninitrd): one lookup, one set of messages.

use std::path::PathBuf;

use xcat_db::Db;

/// What the jobs need of an image's `linuximage` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDef {
    pub image: String,
    /// The image directory (`linuximage.rootimgdir`).
    pub dir: PathBuf,
    /// The tree itself (capimage keeps it in the image's private directory).
    pub rootimg: PathBuf,
    /// `linuximage.kernelver`: the kernel the node ran at capture.
    pub kernelver: Option<String>,
    /// `linuximage.netdrivers`, split at commas.
    pub netdrivers: Vec<String>,
}

/// Why an image has no tree to work on.
#[derive(Debug, thiserror::Error)]
pub enum ImageDefError {
    #[error(
        "image {image} is not defined in linuximage; capture one with capimage or set linuximage.rootimgdir"
    )]
    NotDefined { image: String },
    #[error("linuximage {image} has no rootimgdir; set linuximage.rootimgdir for it")]
    NoRootimgdir { image: String },
    #[error(
        "{} is not a directory: image {image} has no root tree (capture it with capimage, or fix \
         linuximage.rootimgdir)",
        rootimg.display()
    )]
    NoTree { image: String, rootimg: PathBuf },
    #[error(transparent)]
    Db(#[from] xcat_db::DbError),
}

/// `linuximage.netdrivers` as a list: `igb, mynic.ko,,e1000e` is `igb`, `mynic.ko`, `e1000e`.
pub fn split_netdrivers(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

/// Reads the definition of `image`, whose tree must exist.
pub async fn image_def(db: &Db, image: &str) -> Result<ImageDef, ImageDefError> {
    let li = db.get_row("linuximage", image).await?;
    let li = li.ok_or_else(|| ImageDefError::NotDefined {
        image: image.to_string(),
    })?;
    let dir = li
        .get("rootimgdir")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| ImageDefError::NoRootimgdir {
            image: image.to_string(),
        })?;
    let Some(rootimg) = xcat_image::publish::published_tree(&dir) else {
        return Err(ImageDefError::NoTree {
            image: image.to_string(),
            rootimg: dir.join("rootimg"),
        });
    };
    Ok(ImageDef {
        image: image.to_string(),
        dir,
        rootimg,
        kernelver: li.get("kernelver").filter(|k| !k.is_empty()).cloned(),
        netdrivers: li
            .get("netdrivers")
            .map(|s| split_netdrivers(s))
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netdrivers_are_split_at_commas() {
        assert_eq!(
            split_netdrivers(" igb, mynic.ko,,e1000e "),
            ["igb", "mynic.ko", "e1000e"]
        );
        assert!(split_netdrivers(" , ").is_empty());
    }
}
