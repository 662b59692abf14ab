//! The `site` values nodeset reads, once per request.

use std::path::PathBuf;

use xcat_plugin::{Context, Db};

/// Site settings, with xCAT's defaults.
#[derive(Debug, Clone)]
pub struct Site {
    /// `site.installdir`, else the daemon's install directory.
    pub install_dir: PathBuf,
    /// `site.tftpdir`, else the daemon's TFTP root.
    pub tftp_dir: PathBuf,
    /// `site.httpport`, else the boot service's port, else 80.
    pub http_port: String,
    /// `site.httpmethod` (http).
    pub http_method: String,
    /// `site.xcatdport` (3001).
    pub xcatd_port: String,
    /// `site.xcatiport` when set and not xCAT's default 3002 (the initrd
    /// assumes 3002 unless told: xCAT never told it).
    pub xcati_port: Option<String>,
    /// `site.nodestatus` is n/N/0: nodes are told not to report status.
    pub no_node_status: bool,
    /// `site.useflowcontrol` (0).
    pub flow_control: String,
    /// `site.xcatdebugmode` when 1 or 2.
    pub debug_mode: Option<String>,
    /// `site.dhcpsetup` is not n/no/0: nodeset runs makedhcp.
    pub dhcp_setup: bool,
    /// This server's name, for the summary line.
    pub server_name: String,
    /// The public half of the image-signing key, which vouches for image
    /// records (None: the server has no key, or it cannot be read).
    pub image_key: Option<Vec<u8>>,
}

async fn value(db: &Db, key: &str) -> Result<Option<String>, xcat_db::DbError> {
    Ok(db
        .site(key)
        .await?
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty()))
}

impl Site {
    pub async fn read(ctx: &Context) -> Result<Site, xcat_db::DbError> {
        let db = &ctx.db;
        let s = &ctx.settings;
        let boot_port = s.http.port().map(|p| p.to_string());
        let xcati_port = value(db, "xcatiport").await?.filter(|p| p != "3002");
        let nodestatus = value(db, "nodestatus").await?;
        let dhcp = value(db, "dhcpsetup").await?;
        let debug = value(db, "xcatdebugmode").await?;
        Ok(Site {
            install_dir: value(db, "installdir")
                .await?
                .map(PathBuf::from)
                .unwrap_or_else(|| s.install_dir.clone()),
            tftp_dir: value(db, "tftpdir")
                .await?
                .map(PathBuf::from)
                .unwrap_or_else(|| s.tftp_dir.clone()),
            http_port: value(db, "httpport")
                .await?
                .or(boot_port)
                .unwrap_or_else(|| "80".into()),
            http_method: value(db, "httpmethod")
                .await?
                .unwrap_or_else(|| "http".into()),
            xcatd_port: value(db, "xcatdport")
                .await?
                .unwrap_or_else(|| "3001".into()),
            xcati_port,
            no_node_status: matches!(nodestatus.as_deref(), Some("n" | "N" | "0")),
            flow_control: value(db, "useflowcontrol")
                .await?
                .unwrap_or_else(|| "0".into()),
            debug_mode: debug.filter(|d| d == "1" || d == "2"),
            dhcp_setup: !dhcp.is_some_and(|d| is_no(&d)),
            server_name: s.server_name.clone(),
            image_key: xcat_image::signature::key_if_present(&s.image_key)
                .ok()
                .flatten()
                .map(|k| k.public_key()),
        })
    }

    /// `:<port>` for URLs, empty for 80.
    pub fn port_suffix(&self) -> String {
        if self.http_port == "80" {
            String::new()
        } else {
            format!(":{}", self.http_port)
        }
    }
}

/// n, no, 0 (any case): the switch is off.
fn is_no(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "n" | "no" | "0")
}
