//! Throwaway PostgreSQL databases for test suites and benchmarks (feature
//! `test-support`), and the raw-driver read the table benchmarks compare the
//! table layer with.
//!
//! The administrative statements run on a thread of their own with its own
//! small runtime, so the guard works the same from plain `#[test]`s, from
//! async tests, and in `Drop`, which cannot await.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::{with_database, DbError};

/// The environment variable naming the PostgreSQL server tests run against.
pub const PG_URL_VAR: &str = "XCATD_TEST_PG_URL";

const PG_URL_MISSING: &str = "XCATD_TEST_PG_URL is not set: the PostgreSQL tests must run. \
Run ./scripts/test-all (it starts a private server and sets the variable), or start one with \
`tests/testbed/pg.sh start DIR PORT` and export the URL it prints as XCATD_TEST_PG_URL";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A uniquely named database, created on a PostgreSQL server for one test
/// (or one benchmark run) and dropped, forcibly, when the guard goes: also
/// when the test panics, so failed runs leave nothing behind.
#[derive(Debug)]
pub struct TempDatabase {
    server: String,
    name: String,
    url: String,
}

impl TempDatabase {
    /// A new database on the server named by `XCATD_TEST_PG_URL`.
    ///
    /// # Panics
    /// When the variable is missing or empty, or the database cannot be
    /// created: a suite that promises both backends must fail, never
    /// silently skip PostgreSQL.
    #[track_caller]
    pub fn from_env() -> TempDatabase {
        let server = match std::env::var(PG_URL_VAR) {
            Ok(u) if !u.is_empty() => u,
            _ => panic!("{PG_URL_MISSING}"),
        };
        TempDatabase::create_on(&server)
            .unwrap_or_else(|e| panic!("cannot create a test database on {PG_URL_VAR}: {e}"))
    }

    /// A new database on the server at `server_url` (any database URL of
    /// that server; it is used for the `CREATE` and `DROP` statements).
    pub fn create_on(server_url: &str) -> Result<TempDatabase, DbError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "xcattest_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        admin(server_url, &format!("CREATE DATABASE \"{name}\""))?;
        Ok(TempDatabase {
            url: with_database(server_url, &name),
            server: server_url.to_string(),
            name,
        })
    }

    /// The URL of the new database, for `Db::connect` or a daemon.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The new database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = admin(&self.server, &sql) {
            // A second panic while unwinding would abort and hide the first.
            if std::thread::panicking() {
                eprintln!("cannot drop test database {}: {e}", self.name);
            } else {
                panic!("cannot drop test database {}: {e}", self.name);
            }
        }
    }
}

/// Run one statement on the server at `server_url`.
fn admin(server_url: &str, sql: &str) -> Result<(), DbError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| DbError::Invalid(format!("cannot start a runtime: {e}")))?;
            rt.block_on(async {
                let mut c = PgConnection::connect(server_url).await?;
                sqlx::query(sql).execute(&mut c).await?;
                c.close().await?;
                Ok(())
            })
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Reads every `nodelist` row (node and groups) of the database at `url`
/// straight through the SQLite or PostgreSQL driver, on a new connection,
/// bypassing everything this crate adds (the `Any` driver, the pool, the
/// schema checks, the node cache); returns how many rows came back. The
/// benchmarks' baseline: what any expansion that reads the table must cost.
pub async fn raw_nodelist_read(url: &str) -> Result<usize, DbError> {
    if url.starts_with("sqlite:") {
        Ok(read_nodelist::<SqliteConnection>(url).await?)
    } else {
        Ok(read_nodelist::<PgConnection>(url).await?)
    }
}

/// [`raw_nodelist_read`] over one driver's own connection type.
async fn read_nodelist<C>(url: &str) -> Result<usize, sqlx::Error>
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    for<'q> <C::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, C::Database>,
    (String, Option<String>): for<'r> sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
{
    let mut c = C::connect(url).await?;
    let rows: Vec<(String, Option<String>)> = sqlx::query_as("SELECT node, groups FROM nodelist")
        .fetch_all(&mut c)
        .await?;
    c.close().await?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Db;

    #[tokio::test]
    async fn the_raw_read_sees_every_nodelist_row() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("raw.db").display());
        let db = Db::connect(&url).await.unwrap();
        let rows: Vec<Vec<Option<String>>> = (0..25)
            .map(|i| vec![Some(format!("n{i}")), Some("all".into())])
            .collect();
        db.insert_rows("nodelist", &["node", "groups"], &rows)
            .await
            .unwrap();
        db.close().await;
        assert_eq!(raw_nodelist_read(&url).await.unwrap(), 25);
    }
}
