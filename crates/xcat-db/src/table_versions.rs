//! The `table_versions` counters: one row per [`VERSIONED_TABLES`] table,
//! bumped by triggers on every change, so writes from any program or any
//! daemon sharing the database count. Readers compare counters to learn
//! whether what they cached is still current.

use sqlx::{Any, Executor, Row, Transaction};

use crate::schema::q;
use crate::{Backend, Db, DbError};

/// Tables whose every change bumps their counter: the node cache depends on
/// exactly these, `nodelist` for the nodes and groups and `site` for
/// `excludenodes`.
pub(crate) const VERSIONED_TABLES: [&str; 2] = ["nodelist", "site"];

/// The counters of [`VERSIONED_TABLES`], in that order (None: row missing,
/// which never matches, so nothing is cached against it).
pub(crate) type Versions = [Option<i64>; VERSIONED_TABLES.len()];

/// Create the counter table, its rows and the triggers (migration 2).
pub(crate) async fn install(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
) -> Result<(), DbError> {
    tx.execute(
        "CREATE TABLE IF NOT EXISTS table_versions \
         (name VARCHAR(64) PRIMARY KEY, version BIGINT NOT NULL)",
    )
    .await?;
    for t in VERSIONED_TABLES {
        sqlx::query(
            "INSERT INTO table_versions (name, version) VALUES ($1, 0) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(t)
        .execute(&mut **tx)
        .await?;
    }
    for sql in trigger_sql(backend) {
        tx.execute(sql.as_str()).await?;
    }
    Ok(())
}

impl Db {
    /// The counters of [`VERSIONED_TABLES`], as committed now.
    pub(crate) async fn versions(&self) -> Result<Versions, DbError> {
        let rows = sqlx::query("SELECT name, version FROM table_versions")
            .fetch_all(&self.pool)
            .await?;
        let mut v: Versions = [None; VERSIONED_TABLES.len()];
        for r in rows {
            let name: String = r.try_get(0)?;
            let version: i64 = r.try_get(1)?;
            if let Some(i) = VERSIONED_TABLES.iter().position(|t| *t == name) {
                v[i] = Some(version);
            }
        }
        Ok(v)
    }

    /// The `site` table's change counter: readers that cache a site value
    /// (the boot service's directories) re-read it when this moves.
    pub async fn site_version(&self) -> Result<Option<i64>, DbError> {
        let v = self.versions().await?;
        Ok(VERSIONED_TABLES
            .iter()
            .position(|t| *t == "site")
            .and_then(|i| v[i]))
    }
}

/// DDL of the triggers. SQLite has only row triggers (one counter update
/// per row; writes are serialised anyway); PostgreSQL gets statement
/// triggers, TRUNCATE included, so a bulk write bumps the counter once.
fn trigger_sql(backend: Backend) -> Vec<String> {
    let mut out = Vec::new();
    match backend {
        Backend::Sqlite => {
            for t in VERSIONED_TABLES {
                for ev in ["INSERT", "UPDATE", "DELETE"] {
                    out.push(format!(
                        "CREATE TRIGGER IF NOT EXISTS {} AFTER {ev} ON {} FOR EACH ROW BEGIN \
                         UPDATE table_versions SET version = version + 1 WHERE name = '{t}'; END",
                        q(&format!("xcat_version_{t}_{}", ev.to_lowercase())),
                        q(t)
                    ));
                }
            }
        }
        Backend::Postgres => {
            out.push(
                "CREATE OR REPLACE FUNCTION xcat_bump_table_version() RETURNS trigger \
                 LANGUAGE plpgsql AS $$ BEGIN \
                 UPDATE table_versions SET version = version + 1 WHERE name = TG_TABLE_NAME; \
                 RETURN NULL; END $$"
                    .to_string(),
            );
            for t in VERSIONED_TABLES {
                out.push(format!(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} \
                     FOR EACH STATEMENT EXECUTE FUNCTION xcat_bump_table_version()",
                    q(&format!("xcat_version_{t}")),
                    q(t)
                ));
            }
        }
    }
    out
}
