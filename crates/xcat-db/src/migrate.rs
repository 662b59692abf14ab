//! Schema migrations, applied in order; `schema_version` records the last
//! one done. Version 1 creates every catalogue table with its unique key
//! index. Version 2 adds `table_versions` and the triggers that maintain it.
//! Version 3 creates the catalogue tables the boot commands added (`chain`,
//! `mac`, `networks`, `bootparams`, `nodehm`, `hwinv`): every statement is
//! `IF NOT EXISTS`, so it creates just the tables an older database lacks.
//! Version 4 does the same for the tables the object commands (`mkdef`,
//! `lsdef`, ...) added: `nodegroup`, `servicenode`, `postscripts`, `ipmi`,
//! `vpd`, `routes`, `zone`, the kit tables and the others of xCAT's schema
//! whose objects are served. Version 5 adds the columns a catalogue table
//! gained to an older database's table (`osimage.nfsrootopts`, xCAT 2.19's).
//! Version 6 creates the hardware-control tables node attributes map to
//! (`ppc`, `ppcdirect`, `ppchcp`, `mp`, `openbmc`, `nics`, `vm`,
//! `switches`).

use sqlx::{Any, Executor, Row, Transaction};

use crate::transaction::with_retries;
use crate::{schema, table_versions, Backend, Db, DbError};

const SCHEMA_VERSION: i64 = 6;

impl Db {
    /// Bring the schema up to [`SCHEMA_VERSION`]; retried because several
    /// daemons may start on one fresh database at once.
    pub(crate) async fn migrate(&self) -> Result<(), DbError> {
        with_retries(5, 50, || self.migrate_once()).await
    }

    async fn migrate_once(&self) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Serialise concurrent first starts of several daemons.
            tx.execute("SELECT pg_advisory_xact_lock(738201)").await?;
        }
        let current = schema_version(&mut tx).await?;
        if current > SCHEMA_VERSION {
            return Err(DbError::Invalid(format!(
                "database schema version {current} is newer than this program ({SCHEMA_VERSION}); upgrade xcatd"
            )));
        }
        if current < 1 {
            create_missing_tables(&mut tx, self.backend).await?;
            record_version(&mut tx, 1).await?;
        }
        if current < 2 {
            table_versions::install(&mut tx, self.backend).await?;
            record_version(&mut tx, 2).await?;
        }
        for version in [3, 4] {
            if current < version {
                create_missing_tables(&mut tx, self.backend).await?;
                record_version(&mut tx, version).await?;
            }
        }
        if current < 5 {
            add_missing_columns(&mut tx, self.backend).await?;
            record_version(&mut tx, 5).await?;
        }
        if current < 6 {
            create_missing_tables(&mut tx, self.backend).await?;
            record_version(&mut tx, 6).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Every catalogue column its table lacks, added (as TEXT, like the others).
async fn add_missing_columns(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
) -> Result<(), DbError> {
    let sql = match backend {
        Backend::Sqlite => "SELECT name FROM pragma_table_info($1)",
        Backend::Postgres => {
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_name = $1 AND table_schema = current_schema()"
        }
    };
    for t in schema::TABLES {
        let have: Vec<String> = sqlx::query(sql)
            .bind(t.name)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        for c in t.columns.iter().filter(|c| !have.iter().any(|h| h == *c)) {
            tx.execute(schema::add_column_sql(t, c).as_str()).await?;
        }
    }
    Ok(())
}

/// Every catalogue table and its key index that does not exist yet.
async fn create_missing_tables(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
) -> Result<(), DbError> {
    for t in schema::TABLES {
        tx.execute(schema::create_table_sql(t, backend).as_str())
            .await?;
        tx.execute(schema::create_key_index_sql(t).as_str()).await?;
    }
    Ok(())
}

/// The last migration done (0 for a new database).
async fn schema_version(tx: &mut Transaction<'static, Any>) -> Result<i64, DbError> {
    tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await?;
    let current: Option<i64> = sqlx::query("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    Ok(current.unwrap_or(0))
}

async fn record_version(tx: &mut Transaction<'static, Any>, version: i64) -> Result<(), DbError> {
    sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
        .bind(version)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
