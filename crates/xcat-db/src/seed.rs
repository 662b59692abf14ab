//! First-start defaults.

use sqlx::{Any, Transaction};

use crate::sql::Insert;
use crate::write::key_exists;
use crate::{Db, DbError};

/// What the daemon's configuration contributes to the first-start rows.
#[derive(Debug, Clone, Copy)]
pub struct SiteSeeds<'a> {
    /// This server's short hostname (`site.master`, the trusted policy row).
    pub server_name: &'a str,
    /// The configured install directory (`site.installdir`).
    pub install_dir: &'a str,
    /// The configured TFTP root (`site.tftpdir`).
    pub tftp_dir: &'a str,
    /// The boot service's port (`site.httpport`), when it is configured.
    pub http_port: Option<u16>,
    /// The install monitor's port (`site.xcatiport`, where booting nodes
    /// report their status; xCAT seeds 3002), when one is to be seeded.
    pub status_port: Option<u16>,
}

impl Db {
    /// First-start defaults, inserted only when missing (idempotent):
    /// policy 1 `root` allow, policy 1.2 `<server_name>` trusted, 4.7 and 4.8
    /// `litefile` and `litetree` allow (for anyone), the `xcatdefaults`
    /// postscripts row (xCAT's default scripts), and site
    /// `xcatdport=3001`, `master`, `installdir`, `tftpdir`, `httpport` (when
    /// the boot service is configured), `xcatiport` (when given) from
    /// `seeds`, and `domain=localdomain`.
    pub async fn seed_defaults(&self, seeds: &SiteSeeds<'_>) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        // The two rows a statelite node needs at boot, before it has a
        // certificate (xCAT's 4.7 and 4.8): it asks for its litefile and
        // litetree entries, and nothing else is open to it.
        let policies: [(&str, &'static str, &str, &str); 4] = [
            ("1", "name", "root", "allow"),
            ("1.2", "name", seeds.server_name, "trusted"),
            ("4.7", "commands", "litefile", "allow"),
            ("4.8", "commands", "litetree", "allow"),
        ];
        for (prio, col, value, rule) in policies {
            insert_missing(
                &mut tx,
                "policy",
                &["priority", col, "rule"],
                &[prio, value, rule],
            )
            .await?;
        }
        // xCAT's default scripts of every node: the object commands show
        // them in each node's lists and keep them out of its own rows.
        insert_missing(
            &mut tx,
            "postscripts",
            &["node", "postscripts", "postbootscripts"],
            &["xcatdefaults", "syslog,remoteshell,syncfiles", "otherpkgs"],
        )
        .await?;
        let http_port = seeds.http_port.map(|p| p.to_string());
        let status_port = seeds.status_port.map(|p| p.to_string());
        let mut site: Vec<(&str, &str)> = vec![
            ("xcatdport", "3001"),
            ("master", seeds.server_name),
            ("installdir", seeds.install_dir),
            ("tftpdir", seeds.tftp_dir),
            ("domain", "localdomain"),
            // As xCAT's installer sets it: requests are audited once an
            // admin names what to skip instead.
            ("auditskipcmds", "ALL"),
        ];
        if let Some(p) = &http_port {
            site.push(("httpport", p));
        }
        if let Some(p) = &status_port {
            site.push(("xcatiport", p));
        }
        for (k, v) in site {
            insert_missing(&mut tx, "site", &["key", "value"], &[k, v]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Insert one row unless a row with its key (the first column) exists;
/// values are stored as given, an empty one included.
async fn insert_missing(
    tx: &mut Transaction<'static, Any>,
    table: &'static str,
    cols: &[&'static str],
    values: &[&str],
) -> Result<(), DbError> {
    if key_exists(tx, table, &[(cols[0], values[0])]).await? {
        return Ok(());
    }
    let sql = Insert::new(table, cols).sql(1);
    let mut qy = sqlx::query(&sql);
    for v in values {
        qy = qy.bind(*v);
    }
    qy.execute(&mut **tx).await?;
    Ok(())
}
