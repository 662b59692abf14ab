//! First-start defaults.

use sqlx::{Any, Transaction};

use crate::sql::Insert;
use crate::write::key_exists;
use crate::{Db, DbError};

impl Db {
    /// First-start defaults, inserted only when missing (idempotent):
    /// policy 1 `root` allow, policy 1.2 `<server_name>` trusted, and site
    /// `xcatdport=3001`, `master=<server_name>`, `installdir=<install_dir>` (the daemon's configured install directory),
    /// `domain=localdomain`.
    pub async fn seed_defaults(&self, server_name: &str, install_dir: &str) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let policies: [(&str, &str, &str); 2] =
            [("1", "root", "allow"), ("1.2", server_name, "trusted")];
        for (prio, name, rule) in policies {
            insert_missing(
                &mut tx,
                "policy",
                &["priority", "name", "rule"],
                &[prio, name, rule],
            )
            .await?;
        }
        let site: [(&str, &str); 4] = [
            ("xcatdport", "3001"),
            ("master", server_name),
            ("installdir", install_dir),
            ("domain", "localdomain"),
        ];
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
